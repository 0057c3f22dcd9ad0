//! `khoa-client` against the real server: a token source for every built-in dialect, SNAP and
//! Casso from their definition files, and standard OAuth 2.0; rotation chains over many
//! refreshes; one retry after a revocation. The client's clock is a [`ManualClock`] started at
//! the server's time, so a test moves it past a token's lifetime instead of waiting.

use std::path::Path;
use std::sync::Arc;

use khoa_client::{Clock, Credentials, FileStore, ManualClock, TokenSource};
use khoa_server::demo::{
    BANKHUB_CLIENT, BANKHUB_SECRET, DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME, OAUTH2_PASSWORD,
    OAUTH2_PUBLIC_CLIENT, OAUTH2_SCOPES, OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET,
    OAUTH2_USERNAME, PARTNER_CLIENT, PARTNER_CLIENT_SECRET, PARTNER_CODE, PARTNER_KEY_HEX,
    PARTNER_PASSWORD, PARTNER_USERNAME, VIETQR_PASSWORD, VIETQR_USERNAME,
};
use reqwest::StatusCode;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::helpers::{
    PROTECTED_PATH, TestApp, basic_auth, form_body, spawn_app_with, spawn_demo_app,
};

/// A client clock at the server's time.
fn clock_of(app: &TestApp) -> ManualClock {
    ManualClock::new(app.engine.now() as u64 * 1000)
}

/// A source for the built-in `dialect` on `app`, with `creds`.
fn built_in(app: &TestApp, dialect: &str, creds: Credentials, clock: &ManualClock) -> TokenSource {
    TokenSource::built_in(dialect)
        .unwrap()
        .base_url(app.url(""))
        .credentials(creds)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// RFC 7009 revocation of `token`, as `client_id` (with its secret, when it has one).
async fn revoke(app: &TestApp, client_id: &str, secret: Option<&str>, token: &str) {
    let mut form = vec![("token", token)];
    let basic = secret.map(|s| basic_auth(client_id, s));
    if basic.is_none() {
        form.push(("client_id", client_id));
    }
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(b) = &basic {
        headers.push(("Authorization", b));
    }
    let res = app
        .send(
            reqwest::Method::POST,
            "/connect/revocation",
            &headers,
            Some(form_body(&form).into_bytes()),
        )
        .await;
    assert_eq!(res.status(), 200);
}

/// Whether the server accepts `token` at its protected resource.
async fn accepted(app: &TestApp, token: &khoa_client::AccessToken) -> bool {
    app.protected(token.secret()).await.status() == StatusCode::OK
}

#[tokio::test]
async fn every_built_in_dialect_gives_a_token_the_server_accepts() {
    let app = spawn_demo_app().await;
    let clock = clock_of(&app);
    let sources = [
        (
            "oauth2",
            Credentials::client(OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET),
        ),
        (
            "derivative",
            Credentials::default().with_user(DERIVATIVE_USERNAME, DERIVATIVE_PASSWORD),
        ),
        (
            "bankhub",
            Credentials::client(BANKHUB_CLIENT, BANKHUB_SECRET),
        ),
        (
            "partner",
            Credentials::client(PARTNER_CLIENT, PARTNER_CLIENT_SECRET)
                .with_user(PARTNER_USERNAME, PARTNER_PASSWORD)
                .with_partner(PARTNER_CODE, PARTNER_KEY_HEX),
        ),
        (
            "vietqr",
            Credentials::client(VIETQR_USERNAME, VIETQR_PASSWORD),
        ),
    ];
    for (dialect, creds) in sources {
        let source = built_in(&app, dialect, creds, &clock);
        let token = source
            .token()
            .await
            .unwrap_or_else(|e| panic!("{dialect}: {e}"));
        assert!(
            accepted(&app, &token).await,
            "{dialect}: the server refused its token"
        );
        assert!(
            token.expires_at_ms() > clock.now_ms(),
            "{dialect}: a lifetime was read"
        );
        let again = source.token().await.unwrap();
        assert_eq!(again.generation(), token.generation(), "{dialect}: cached");
        assert_eq!(source.stats().token_calls, 1, "{dialect}");
    }
}

#[tokio::test]
async fn the_derivative_login_answers_its_otp_token_beside_the_access_token() {
    let app = spawn_demo_app().await;
    let clock = clock_of(&app);
    let creds = Credentials::default().with_user(DERIVATIVE_USERNAME, DERIVATIVE_PASSWORD);
    let token = built_in(&app, "derivative", creds, &clock)
        .token()
        .await
        .unwrap();
    assert!(token.otp().is_some_and(|o| !o.is_empty()), "{token:?}");
}

/// Seed 004's public client and user, with `offline_access`: refresh tokens that rotate.
fn tripdata_user() -> Credentials {
    Credentials {
        client_id: Some(OAUTH2_PUBLIC_CLIENT.into()),
        scope: Some(OAUTH2_SCOPES.into()),
        ..Credentials::default()
    }
    .with_user(OAUTH2_USERNAME, OAUTH2_PASSWORD)
}

/// Moves the client past the whole lifetime of its token, so the next call must wait for a
/// new one (a refresh when there is a refresh token).
fn expire(clock: &ManualClock, token: &khoa_client::AccessToken) {
    clock.advance_ms(token.expires_at_ms() - clock.now_ms());
}

#[tokio::test]
async fn an_oauth2_rotation_chain_of_twenty_refreshes_never_forks_the_family() {
    let app = spawn_demo_app().await;
    let clock = clock_of(&app);
    let creds = tripdata_user();
    let source = built_in(&app, "oauth2", creds, &clock);
    let mut seen = std::collections::HashSet::new();
    let mut token = source.token().await.unwrap();
    seen.insert(token.secret().to_owned());
    for _ in 0..20 {
        expire(&clock, &token);
        token = source.token().await.unwrap();
        assert!(
            seen.insert(token.secret().to_owned()),
            "a new token each time"
        );
        assert!(accepted(&app, &token).await);
    }
    let stats = source.stats();
    assert_eq!((stats.logins, stats.refreshes), (1, 20), "{stats:?}");
}

#[tokio::test]
async fn the_partner_envelope_logs_in_and_refreshes_through_its_own_endpoint() {
    let app = spawn_demo_app().await;
    let clock = clock_of(&app);
    let creds = Credentials::client(PARTNER_CLIENT, PARTNER_CLIENT_SECRET)
        .with_user(PARTNER_USERNAME, PARTNER_PASSWORD)
        .with_partner(PARTNER_CODE, PARTNER_KEY_HEX);
    let source = built_in(&app, "partner", creds, &clock);
    let mut token = source.token().await.unwrap();
    for _ in 0..5 {
        expire(&clock, &token);
        token = source.token().await.unwrap();
        assert!(accepted(&app, &token).await);
    }
    let stats = source.stats();
    assert_eq!((stats.logins, stats.refreshes), (1, 5), "{stats:?}");
}

#[tokio::test]
async fn a_refused_refresh_falls_back_to_a_fresh_login() {
    let app = spawn_demo_app().await;
    let clock = clock_of(&app);
    let creds = tripdata_user();
    // The store shows the refresh token, which the test then revokes on the server.
    let saved = tempfile::tempdir().unwrap();
    let store = FileStore::new(saved.path()).unwrap();
    let source = TokenSource::built_in("oauth2")
        .unwrap()
        .base_url(app.url(""))
        .credentials(creds)
        .clock(clock.clone())
        .store(store.clone())
        .build()
        .unwrap();
    let first = source.token().await.unwrap();
    let file = std::fs::read_dir(saved.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("the saved token");
    let saved_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let refresh = saved_json["refresh_token"]
        .as_str()
        .expect("a refresh token");
    revoke(&app, OAUTH2_PUBLIC_CLIENT, None, refresh).await;
    expire(&clock, &first);
    let next = source.token().await.unwrap();
    assert!(accepted(&app, &next).await);
    let stats = source.stats();
    assert_eq!(stats.logins, 2, "{stats:?}");
}

#[tokio::test]
async fn a_revoked_token_costs_one_new_token_and_one_retry() {
    let app = spawn_demo_app().await;
    let clock = clock_of(&app);
    let source = built_in(
        &app,
        "oauth2",
        Credentials::client(OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET),
        &clock,
    );
    let http = crate::helpers::http_client();
    let call = || http.get(app.url(PROTECTED_PATH)).build().unwrap();
    assert_eq!(source.send(&http, call()).await.unwrap().status(), 200);
    let old = source.token().await.unwrap();

    revoke(
        &app,
        OAUTH2_SERVICE_CLIENT,
        Some(OAUTH2_SERVICE_SECRET),
        old.secret(),
    )
    .await;
    assert!(!accepted(&app, &old).await, "revoked");

    let res = source.send(&http, call()).await.unwrap();
    assert_eq!(res.status(), 200);
    let stats = source.stats();
    assert_eq!(
        (stats.token_calls, stats.invalidations),
        (2, 1),
        "{stats:?}"
    );
    let new = source.token().await.unwrap();
    assert_ne!(new.generation(), old.generation());
    // Invalidating the old generation again throws nothing away.
    source.invalidate(old.generation());
    assert_eq!(source.token().await.unwrap().generation(), new.generation());
}

fn definition(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../dialects/{name}")),
    )
    .unwrap()
}

#[tokio::test]
async fn snap_signs_its_request_with_the_rsa_key_from_the_definition_file() {
    let defs = tempfile::tempdir().unwrap();
    std::fs::write(defs.path().join("snap.toml"), definition("snap.toml")).unwrap();
    let dir = defs.path().to_owned();
    let app = spawn_app_with(|c| c.dialects.dir = Some(dir)).await;
    app.add_confidential_client("snap-merchant", "read", |_| {})
        .await;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let der = key.to_public_key().to_public_key_der().unwrap().into_vec();
    app.engine
        .admin()
        .add_client_key(
            "snap-merchant",
            Some("k1".into()),
            khoa_core::engine::NewClientKey::RsaPublicKey(der),
        )
        .await
        .unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();

    let clock = clock_of(&app);
    let source = TokenSource::from_file(&defs.path().join("snap.toml"))
        .unwrap()
        .base_url(app.url(""))
        .credentials(
            Credentials {
                client_id: Some("snap-merchant".into()),
                ..Credentials::default()
            }
            .with_signing_key(pem),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = source.token().await.unwrap();
    assert!(accepted(&app, &token).await);
    // `expiresIn` is text there: read as seconds all the same.
    assert!(token.expires_at_ms() > clock.now_ms() + 60_000);
}

#[tokio::test]
async fn casso_exchanges_its_api_key_for_a_token() {
    let defs = tempfile::tempdir().unwrap();
    std::fs::write(defs.path().join("casso.toml"), definition("casso.toml")).unwrap();
    let dir = defs.path().to_owned();
    let app = spawn_app_with(|c| c.dialects.dir = Some(dir)).await;
    let secret = "casso-api-key-0123456789abcdef0123";
    app.add_confidential_client_with_secret("casso", "read", secret, |_| {})
        .await;
    let clock = clock_of(&app);
    let dialect = Arc::new(khoa_client::load_file(&defs.path().join("casso.toml")).unwrap());
    let source = TokenSource::builder(dialect)
        .token_url(app.url("/v1/token"))
        .credentials(Credentials {
            client_secret: Some(secret.to_owned().into()),
            ..Credentials::default()
        })
        .clock(clock)
        .build()
        .unwrap();
    let token = source.token().await.unwrap();
    assert!(accepted(&app, &token).await);
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_backed_off_without_another_call() {
    let app = spawn_demo_app().await;
    let clock = clock_of(&app);
    let source = built_in(
        &app,
        "bankhub",
        Credentials::client(BANKHUB_CLIENT, "not-the-secret"),
        &clock,
    );
    let err = source.token().await.unwrap_err();
    assert!(
        matches!(err, khoa_client::Error::Refused { status: 401, .. }),
        "{err}"
    );
    let again = source.token().await.unwrap_err();
    assert!(
        matches!(again, khoa_client::Error::BackingOff { .. }),
        "{again}"
    );
    assert_eq!(source.stats().token_calls, 1);
    // After the back-off the source tries again, by itself.
    clock.advance_ms(60_000);
    assert!(source.token().await.is_err());
    assert_eq!(source.stats().token_calls, 2);
    // Never a secret in what it says.
    assert!(!format!("{err} {err:?} {source:?}").contains("not-the-secret"));
}
