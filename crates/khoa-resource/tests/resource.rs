//! The layer against the real khoa: a server started in-process on port 0 over a fresh SQLite
//! database, tokens obtained from its `/connect/token`, and a small axum app behind
//! `KhoaAuthLayer` driven with `oneshot`.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use khoa_core::clock::OsRandom;
use khoa_core::engine::Engine;
use khoa_core::grant::ClientAuth;
use khoa_core::keys::{ACCESS_TOKEN_TYP, KeyRing, REFRESH_TOKEN_TYP, generate_key};
use khoa_core::master_key::MasterKey;
use khoa_core::mint::{KeyRotation, RotationOutcome};
use khoa_core::model::{AccessTokenFormat, Client, GrantType, TokenPolicy};
use khoa_core::scope::ScopeSet;
use khoa_resource::fetch::BoxFuture;
use khoa_resource::{
    FetchError, Fetcher, HyperFetcher, KhoaAuth, KhoaAuthBuilder, KhoaClaims, RequireScopes,
    TokenSource,
};
use khoa_server::config::{Config, PasswordHashConfig};
use khoa_server::startup::App;
use secrecy::SecretString;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tower::ServiceExt;

const AUDIENCE: &str = "khoa";
const JWT_CLIENT: &str = "svc-jwt";
const OPAQUE_CLIENT: &str = "svc-opaque";
const RESOURCE_CLIENT: &str = "orders-api";
const USER: &str = "alice@example.test";
const PASSWORD: &str = "alice's password";
const SECRET: &str = "a-test-client-secret-of-more-than-32-chars";

// ---- khoa ----

struct Khoa {
    issuer: String,
    engine: Arc<Engine>,
    http: reqwest::Client,
    _dir: TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// The real server on port 0 over a fresh SQLite database, with a JWT client, an opaque-token
/// client and the resource server's own confidential client (for introspection).
async fn spawn_khoa() -> Khoa {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        database_url: format!("sqlite://{}", dir.path().join("khoa.db").display()),
        master_key: None,
        master_key_file: Some(dir.path().join("master.key")),
        // Cheap Argon2, as khoa-server's own tests do: nothing here hashes a password.
        password_hash: PasswordHashConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 0,
            max_queue: 0,
        },
        ..Config::default()
    };
    config.validate().expect("a valid test config");
    let app = App::build(config).await.expect("khoa builds");
    let engine = app.state().engine.clone();
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    for (id, format) in [
        (JWT_CLIENT, AccessTokenFormat::Jwt),
        (OPAQUE_CLIENT, AccessTokenFormat::Opaque),
        (RESOURCE_CLIENT, AccessTokenFormat::Jwt),
    ] {
        let scopes = ScopeSet::parse("read write offline_access").expect("valid scopes");
        let client = Client {
            client_id: id.into(),
            name: id.into(),
            secret_hash: None,
            allowed_scopes: scopes.clone(),
            default_scopes: ScopeSet::parse("read write").expect("valid scopes"),
            grant_types: vec![
                GrantType::Password,
                GrantType::ClientCredentials,
                GrantType::RefreshToken,
            ],
            redirect_uris: Vec::new(),
            policy: TokenPolicy {
                access_format: format,
                ..TokenPolicy::default()
            },
            disabled: false,
            created_at: 0,
        };
        engine
            .admin()
            .create_client(client, true, Some(SecretString::from(SECRET)))
            .await
            .expect("client created");
    }
    engine
        .admin()
        .create_user(USER, &SecretString::from(PASSWORD), None)
        .await
        .expect("user created");
    Khoa {
        issuer: engine.config().issuer.clone(),
        engine,
        http: {
            // reqwest's rustls has no crypto provider of its own in this workspace (khoa-client's
            // `agent` feature, unified into the build): ring first, or building it panics.
            khoa_client::install_crypto_provider();
            reqwest::Client::new()
        },
        _dir: dir,
        _shutdown: shutdown,
    }
}

impl Khoa {
    /// An access token from `/connect/token` (client credentials, `client_secret_basic`).
    async fn token(&self, client_id: &str, scope: &str) -> String {
        let res = self
            .http
            .post(format!("{}/connect/token", self.issuer))
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(format!("{client_id}:{SECRET}"))),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&scope={}",
                scope.replace(' ', "+")
            ))
            .send()
            .await
            .expect("the token request completes");
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("a JSON token response");
        body["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned()
    }

    /// The token response of a password grant with `offline_access`: access and refresh token.
    async fn password_tokens(&self, client_id: &str) -> Value {
        let res = self
            .http
            .post(format!("{}/connect/token", self.issuer))
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(format!("{client_id}:{SECRET}"))),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(
                "grant_type=password&username=alice%40example.test&password=alice%27s+password\
                 &scope=read+offline_access",
            )
            .send()
            .await
            .expect("the token request completes");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("a JSON token response")
    }

    /// RFC 7009 revocation at `/connect/revocation`, authenticated as the token's own client.
    async fn revoke(&self, client_id: &str, token: &str) {
        let res = self
            .http
            .post(format!("{}/connect/revocation", self.issuer))
            .header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(format!("{client_id}:{SECRET}"))),
            )
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("token={token}&token_type_hint=access_token"))
            .send()
            .await
            .expect("the revocation request completes");
        assert_eq!(res.status(), StatusCode::OK);
    }

    /// A token signed by khoa's current key over exactly these claims and this `typ`.
    fn sign(&self, typ: &str, claims: &Value) -> String {
        self.engine
            .tokens()
            .key_ring()
            .sign(typ, claims, self.engine.now())
            .expect("khoa signs")
    }

    fn claims(&self) -> Value {
        let now = self.engine.now();
        json!({
            "iss": self.issuer, "sub": "usr_42", "aud": AUDIENCE, "exp": now + 600,
            "iat": now, "jti": "jti-1", "client_id": JWT_CLIENT, "scope": "read",
        })
    }

    fn auth(&self) -> KhoaAuthBuilder {
        KhoaAuth::builder(&self.issuer, AUDIENCE)
            .introspection_client(RESOURCE_CLIENT, SecretString::from(SECRET))
    }
}

// ---- the resource server ----

async fn whoami(KhoaClaims(c): KhoaClaims) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": c.sub, "client_id": c.client_id, "scope": c.scope.to_string(),
        "jti": c.jti, "exp": c.exp, "jwt": c.source == TokenSource::Jwt,
    }))
}

fn resource(auth: &KhoaAuth) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/write",
            get(whoami).route_layer(RequireScopes::new(["write"])),
        )
        .layer(auth.layer())
}

async fn call(
    app: &Router,
    path: &str,
    bearer: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = Request::builder().uri(path);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("a request"))
        .await
        .expect("infallible");
    let status = res.status();
    let challenge = res
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ASCII").to_owned());
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("a body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, challenge, body)
}

async fn assert_invalid_token(app: &Router, token: &str, what: &str) {
    let (status, challenge, body) = call(app, "/whoami", Some(token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    let challenge = challenge.expect("a WWW-Authenticate challenge");
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{what}: {challenge}"
    );
    assert_eq!(body["error"], "invalid_token", "{what}");
}

// ---- JWTs ----

#[tokio::test]
async fn a_valid_jwt_reaches_the_handler_with_its_claims() {
    let khoa = spawn_khoa().await;
    let auth = khoa.auth().build().unwrap();
    let app = resource(&auth);
    let token = khoa.token(JWT_CLIENT, "read").await;

    let (status, _, body) = call(&app, "/whoami", Some(&token)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], JWT_CLIENT);
    assert_eq!(
        body["sub"], JWT_CLIENT,
        "client credentials: the client is the subject"
    );
    assert_eq!(body["scope"], "read");
    assert_eq!(body["jwt"], true);
    assert!(body["jti"].is_string());
    // Served from the cache from now on.
    call(&app, "/whoami", Some(&token)).await;
    assert_eq!(auth.stats().jwks_fetches, 1);
}

#[tokio::test]
async fn expired_tampered_misaddressed_and_refresh_typed_jwts_are_refused() {
    let khoa = spawn_khoa().await;
    let app = resource(&khoa.auth().build().unwrap());
    let now = khoa.engine.now();
    let with = |k: &str, v: Value| {
        let mut c = khoa.claims();
        c[k] = v;
        c
    };
    assert_eq!(
        call(
            &app,
            "/whoami",
            Some(&khoa.sign(ACCESS_TOKEN_TYP, &khoa.claims()))
        )
        .await
        .0,
        StatusCode::OK,
        "the control token passes"
    );

    let expired = khoa.sign(ACCESS_TOKEN_TYP, &with("exp", json!(now - 3600)));
    assert_invalid_token(&app, &expired, "expired").await;
    let wrong_aud = khoa.sign(ACCESS_TOKEN_TYP, &with("aud", json!("another-api")));
    assert_invalid_token(&app, &wrong_aud, "wrong audience").await;
    let wrong_iss = khoa.sign(ACCESS_TOKEN_TYP, &with("iss", json!("http://evil.test")));
    assert_invalid_token(&app, &wrong_iss, "wrong issuer").await;
    let refresh = khoa.sign(REFRESH_TOKEN_TYP, &khoa.claims());
    assert_invalid_token(&app, &refresh, "rt+jwt").await;

    let real = khoa.token(JWT_CLIENT, "read").await;
    let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("read write");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    assert_invalid_token(&app, &parts.join("."), "tampered payload").await;

    let (status, challenge, _) = call(&app, "/whoami", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer"),
        "RFC 6750 §3.1: no error code"
    );
}

#[tokio::test]
async fn a_forged_kid_is_refused_and_costs_khoa_at_most_one_fetch_per_interval() {
    let khoa = spawn_khoa().await;
    let auth = khoa.auth().build().unwrap();
    let app = resource(&auth);
    let good = khoa.token(JWT_CLIENT, "read").await;
    assert_eq!(call(&app, "/whoami", Some(&good)).await.0, StatusCode::OK);
    assert_eq!(auth.stats().jwks_fetches, 1);

    // A well-formed token for our issuer and audience, signed by a key khoa never had.
    let master = MasterKey::generate(&OsRandom);
    let now = khoa.engine.now();
    let foreign = KeyRing::load(&[generate_key(&OsRandom, &master, 1, 1)], &master, now).unwrap();
    let forged = foreign.sign(ACCESS_TOKEN_TYP, &khoa.claims(), now).unwrap();
    for _ in 0..25 {
        assert_invalid_token(&app, &forged, "unknown kid").await;
    }

    assert_eq!(
        auth.stats().jwks_fetches,
        2,
        "the first unknown kid costs one refetch, the next 24 inside the interval none"
    );
    assert_eq!(call(&app, "/whoami", Some(&good)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn key_rotation_is_seen_without_restart_and_refetches_stay_bounded() {
    let khoa = spawn_khoa().await;
    let auth = khoa.auth().build().unwrap();
    let app = resource(&auth);
    let before = khoa.token(JWT_CLIENT, "read").await;
    assert_eq!(call(&app, "/whoami", Some(&before)).await.0, StatusCode::OK);
    assert_eq!(auth.stats().jwks_fetches, 1);

    // No lead: the new key signs at once, so the layer meets a kid it has never fetched (with a
    // lead, it would usually have it already from a later JWKS fetch).
    let rotation = khoa
        .engine
        .admin()
        .rotate_signing_key(KeyRotation::After { lead_secs: 0 })
        .await
        .expect("rotation");
    let RotationOutcome::Scheduled { kid: new_kid, .. } = rotation else {
        panic!("no rotation was pending: {rotation:?}");
    };
    let after = khoa.token(JWT_CLIENT, "read").await;
    let kid_of = |t: &str| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(kid_of(&after)["kid"], new_kid.as_str());
    assert_ne!(kid_of(&before)["kid"], kid_of(&after)["kid"]);

    let (status, _, body) = call(&app, "/whoami", Some(&after)).await;

    assert_eq!(
        status,
        StatusCode::OK,
        "the running layer accepts the new key: {body}"
    );
    assert_eq!(
        auth.stats().jwks_fetches,
        2,
        "exactly one refetch for the new kid"
    );
    assert_eq!(
        call(&app, "/whoami", Some(&before)).await.0,
        StatusCode::OK,
        "the previous key stays published"
    );
    for _ in 0..10 {
        assert_eq!(call(&app, "/whoami", Some(&after)).await.0, StatusCode::OK);
    }
    assert_eq!(auth.stats().jwks_fetches, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_a_new_kid_share_one_refetch() {
    let khoa = spawn_khoa().await;
    let auth = khoa.auth().build().unwrap();
    auth.prefetch_jwks().await.expect("khoa is up");
    khoa.engine
        .admin()
        .rotate_signing_key(KeyRotation::After { lead_secs: 0 })
        .await
        .expect("rotation");
    let token = khoa.token(JWT_CLIENT, "read").await;
    let app = resource(&auth);

    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (app, token) = (app.clone(), token.clone());
        set.spawn(async move { call(&app, "/whoami", Some(&token)).await.0 });
    }

    for status in set.join_all().await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(
        auth.stats().jwks_fetches,
        2,
        "the prefetch and one shared refetch"
    );
}

// ---- scopes ----

#[tokio::test]
async fn a_token_without_the_routes_scope_gets_403_insufficient_scope() {
    let khoa = spawn_khoa().await;
    let app = resource(&khoa.auth().build().unwrap());
    let read_only = khoa.token(JWT_CLIENT, "read").await;
    let read_write = khoa.token(JWT_CLIENT, "read write").await;

    let (status, challenge, body) = call(&app, "/write", Some(&read_only)).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    let challenge = challenge.expect("a challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"write\""), "{challenge}");
    assert_eq!(
        call(&app, "/write", Some(&read_write)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "/whoami", Some(&read_only)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn scopes_required_by_the_layer_apply_to_every_route() {
    let khoa = spawn_khoa().await;
    let app = resource(&khoa.auth().required_scopes(["write"]).build().unwrap());
    let read_only = khoa.token(JWT_CLIENT, "read").await;
    assert_eq!(
        call(&app, "/whoami", Some(&read_only)).await.0,
        StatusCode::FORBIDDEN
    );
    let read_write = khoa.token(JWT_CLIENT, "read write").await;
    assert_eq!(
        call(&app, "/whoami", Some(&read_write)).await.0,
        StatusCode::OK
    );
}

// ---- khoa unreachable ----

#[tokio::test]
async fn an_unreachable_issuer_is_503_not_401() {
    let khoa = spawn_khoa().await;
    let token = khoa.token(JWT_CLIENT, "read").await;
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let auth = khoa
        .auth()
        .jwks_url(format!("http://{closed}/.well-known/jwks.json"))
        .build()
        .unwrap();
    let app = resource(&auth);

    let (status, challenge, body) = call(&app, "/whoami", Some(&token)).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(challenge, None);
    for _ in 0..5 {
        assert_eq!(
            call(&app, "/whoami", Some(&token)).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(auth.stats().jwks_fetches, 1, "one attempt per interval");
}

// ---- opaque tokens ----

#[tokio::test]
async fn an_opaque_token_is_refused_when_no_introspection_is_configured() {
    let khoa = spawn_khoa().await;
    let auth = KhoaAuth::builder(&khoa.issuer, AUDIENCE).build().unwrap();
    let app = resource(&auth);
    let opaque = khoa.token(OPAQUE_CLIENT, "read").await;
    assert_eq!(opaque.split('.').count(), 1, "an opaque token");
    assert_invalid_token(&app, &opaque, "opaque without introspection").await;
    assert_eq!(auth.stats().introspections, 0);
}

#[tokio::test]
async fn an_opaque_token_is_introspected_and_the_answer_reused_briefly() {
    let khoa = spawn_khoa().await;
    let auth = khoa.auth().build().unwrap();
    let app = resource(&auth);
    let opaque = khoa.token(OPAQUE_CLIENT, "read write").await;

    let (status, _, body) = call(&app, "/write", Some(&opaque)).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], OPAQUE_CLIENT);
    assert_eq!(body["jwt"], false);
    assert_eq!(body["scope"], "read write");
    call(&app, "/whoami", Some(&opaque)).await;
    let stats = auth.stats();
    assert_eq!(
        (stats.introspections, stats.introspection_cache_hits),
        (1, 1)
    );
    assert_eq!(stats.jwks_fetches, 0, "opaque tokens never touch the JWKS");
}

#[tokio::test]
async fn revoked_and_unknown_opaque_tokens_are_refused() {
    let khoa = spawn_khoa().await;
    let auth = khoa
        .auth()
        .introspection_cache_ttl(Duration::ZERO)
        .build()
        .unwrap();
    let app = resource(&auth);
    let opaque = khoa.token(OPAQUE_CLIENT, "read").await;
    assert_eq!(call(&app, "/whoami", Some(&opaque)).await.0, StatusCode::OK);

    let owner = ClientAuth::Basic {
        client_id: OPAQUE_CLIENT.into(),
        secret: SecretString::from(SECRET),
    };
    khoa.engine
        .tokens()
        .revoke(&owner, &opaque, Some("access_token"))
        .await
        .expect("the owner revokes its token");

    assert_invalid_token(&app, &opaque, "revoked opaque").await;
    assert_invalid_token(&app, "never-issued-by-khoa-0123456789", "unknown opaque").await;
    assert_eq!(auth.stats().introspections, 3, "refusals are not cached");
}

#[tokio::test]
async fn wrong_introspection_credentials_are_503_never_a_pass() {
    let khoa = spawn_khoa().await;
    let auth = KhoaAuth::builder(&khoa.issuer, AUDIENCE)
        .introspection_client(
            RESOURCE_CLIENT,
            SecretString::from("not-the-secret-but-long-enough-000"),
        )
        .build()
        .unwrap();
    let app = resource(&auth);
    let opaque = khoa.token(OPAQUE_CLIENT, "read").await;
    assert_eq!(
        call(&app, "/whoami", Some(&opaque)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_refresh_token_is_never_accepted_as_a_bearer_token() {
    let khoa = spawn_khoa().await;
    let auth = khoa.auth().build().unwrap();
    let app = resource(&auth);
    let tokens = khoa.password_tokens(OPAQUE_CLIENT).await;
    let access = tokens["access_token"].as_str().expect("an access token");
    let refresh = tokens["refresh_token"].as_str().expect("a refresh token");

    let (status, _, body) = call(&app, "/whoami", Some(access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["sub"].as_str().map(|s| s != OPAQUE_CLIENT),
        Some(true),
        "a user subject"
    );

    assert_invalid_token(&app, refresh, "an opaque refresh token, active at khoa").await;
    assert_eq!(auth.stats().introspections, 2);
}

// ---- JWT revocation list ----

/// Calls `/whoami` with `token` until the answer is `want`, failing after `deadline`; returns
/// how long that took.
async fn until_status(app: &Router, token: &str, want: StatusCode, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, _, body) = call(app, "/whoami", Some(token)).await;
        if status == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < deadline,
            "still {status} ({body}) after {deadline:?}, waiting for {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_jwt_revoked_at_khoa_is_refused_within_the_poll_interval() {
    let khoa = spawn_khoa().await;
    let auth = khoa
        .auth()
        .revocation_poll_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(auth.polls_revocation_list());
    let app = resource(&auth);
    let doomed = khoa.token(JWT_CLIENT, "read").await;
    let other = khoa.token(JWT_CLIENT, "read").await;
    assert_eq!(call(&app, "/whoami", Some(&doomed)).await.0, StatusCode::OK);
    assert_eq!(auth.stats().revocation_polls, 1, "the first JWT polls");

    khoa.revoke(JWT_CLIENT, &doomed).await;

    let took = until_status(
        &app,
        &doomed,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(10),
    )
    .await;
    assert_invalid_token(&app, &doomed, "revoked at khoa").await;
    assert_eq!(
        call(&app, "/whoami", Some(&other)).await.0,
        StatusCode::OK,
        "only the revoked jti is refused"
    );
    let stats = auth.stats();
    assert!(stats.revoked_jwts_refused >= 2, "{stats:?}");
    assert_eq!(stats.revocation_poll_failures, 0);
    assert!(
        stats.revocation_polls >= 2,
        "refused after a later poll ({took:?}): {stats:?}"
    );
}

#[tokio::test]
async fn without_an_introspection_client_the_list_is_not_polled_and_revoked_jwts_pass() {
    let khoa = spawn_khoa().await;
    let no_client = KhoaAuth::builder(&khoa.issuer, AUDIENCE)
        .revocation_poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let switched_off = khoa
        .auth()
        .revocation_list(false)
        .revocation_poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let token = khoa.token(JWT_CLIENT, "read").await;
    khoa.revoke(JWT_CLIENT, &token).await;

    for auth in [&no_client, &switched_off] {
        assert!(!auth.polls_revocation_list());
        auth.prefetch_revocation_list().await.unwrap();
        let app = resource(auth);
        for _ in 0..3 {
            // The documented caveat: offline verification alone cannot see the revocation.
            assert_eq!(call(&app, "/whoami", Some(&token)).await.0, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = auth.stats();
        assert_eq!((stats.revocation_polls, stats.revoked_jwts_refused), (0, 0));
    }
}

/// The real HTTP client, except that the revocation list can be made unreachable.
struct ListOutage {
    inner: HyperFetcher,
    down: Arc<AtomicBool>,
}

impl Fetcher for ListOutage {
    fn fetch(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<bytes::Bytes>, FetchError>> {
        if self.down.load(Ordering::SeqCst) && request.uri().path() == "/connect/revoked-jwts" {
            return Box::pin(async { Err(FetchError("connection refused".into())) });
        }
        self.inner.fetch(request)
    }
}

#[tokio::test]
async fn an_unreachable_revocation_list_is_used_while_recent_then_fails_closed_with_503() {
    let khoa = spawn_khoa().await;
    let down = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_millis(100);
    let auth = khoa
        .auth()
        .revocation_poll_interval(interval)
        .revocation_max_staleness(Duration::from_secs(2))
        .fetcher(ListOutage {
            inner: HyperFetcher::new(),
            down: down.clone(),
        })
        .build()
        .unwrap();
    let app = resource(&auth);
    let token = khoa.token(JWT_CLIENT, "read").await;
    assert_eq!(call(&app, "/whoami", Some(&token)).await.0, StatusCode::OK);

    down.store(true, Ordering::SeqCst);
    let polls_before = auth.stats().revocation_polls;
    let outage = Instant::now();
    // Polls fail, but the last list is recent: tokens keep passing.
    while auth.stats().revocation_poll_failures == 0 {
        assert!(outage.elapsed() < Duration::from_secs(10), "no poll failed");
        assert_eq!(call(&app, "/whoami", Some(&token)).await.0, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(call(&app, "/whoami", Some(&token)).await.0, StatusCode::OK);

    until_status(
        &app,
        &token,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(15),
    )
    .await;
    let (status, challenge, body) = call(&app, "/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(challenge, None, "a 503, not a verdict on the token");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(auth.prefetch_revocation_list().await.is_err());
    let stats = auth.stats();
    let polls = stats.revocation_polls - polls_before;
    let bound = outage.elapsed().as_millis() / interval.as_millis() + 2;
    assert!(
        u128::from(polls) <= bound,
        "at most one attempt per interval while down: {polls} > {bound}"
    );
    assert_eq!(stats.revocation_poll_failures, polls);

    down.store(false, Ordering::SeqCst);
    until_status(&app, &token, StatusCode::OK, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_revocation_list_never_fetched_is_503() {
    let khoa = spawn_khoa().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let auth = khoa
        .auth()
        .revocation_list_url(format!("http://{closed}/connect/revoked-jwts"))
        .build()
        .unwrap();
    let app = resource(&auth);
    let token = khoa.token(JWT_CLIENT, "read").await;
    for _ in 0..5 {
        assert_eq!(
            call(&app, "/whoami", Some(&token)).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(auth.stats().revocation_polls, 1, "one attempt per interval");

    let wrong_secret = KhoaAuth::builder(&khoa.issuer, AUDIENCE)
        .introspection_client(
            RESOURCE_CLIENT,
            SecretString::from("not-the-secret-but-long-enough-000"),
        )
        .build()
        .unwrap();
    assert_eq!(
        call(&resource(&wrong_secret), "/whoami", Some(&token))
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE,
        "khoa refusing our credentials is not a verdict on the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_revocation_poll() {
    let khoa = spawn_khoa().await;
    let auth = khoa.auth().build().unwrap();
    auth.prefetch_jwks().await.expect("khoa is up");
    let token = khoa.token(JWT_CLIENT, "read").await;
    let app = resource(&auth);

    for round in 0..2 {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (app, token) = (app.clone(), token.clone());
            set.spawn(async move { call(&app, "/whoami", Some(&token)).await.0 });
        }
        for status in set.join_all().await {
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(
            auth.stats().revocation_polls,
            1,
            "round {round}: 16 concurrent requests, one poll within the interval"
        );
    }
}
