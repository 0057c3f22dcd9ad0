//! `/auth/verify`, the forward-auth endpoint a proxy calls before it passes a request on: each
//! rule (scopes, methods, seed 000's OTP on mutating methods, the default for unmatched paths)
//! and each refusal, as status, RFC 6750 challenge and `X-Khoa-*` headers.

use khoa_core::model::AccessTokenFormat;
use khoa_server::config::{Config, ForwardAuthConfig, ForwardAuthDefault, ForwardAuthRoute};
use reqwest::header::{CACHE_CONTROL, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use std::str::FromStr;

use crate::helpers::{
    TestApp, access_token_of, refresh_token_of, spawn_app, spawn_app_with, str_of, token_ok,
    www_authenticate,
};

pub const VERIFY_PATH: &str = "/auth/verify";
const USER: &str = "dana@example.test";
const PASSWORD: &str = "dana's password";
/// Issues `orders read` tokens bound to an OTP token (seed 000's policy).
const ORDERS_CLIENT: &str = "orders-app";
/// Issues `read` tokens without an OTP binding.
const READER_CLIENT: &str = "reader-app";

pub fn route(prefix: &str, methods: &[&str], scopes: &[&str], otp: bool) -> ForwardAuthRoute {
    ForwardAuthRoute {
        prefix: prefix.into(),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        otp_on_mutating: otp,
    }
}

/// Orders need `orders` (and the OTP token to change anything), deleting reports needs
/// `admin`, the rest of `/api` any valid token; everything else is denied.
fn rules(c: &mut Config) {
    c.forward_auth = ForwardAuthConfig {
        enabled: true,
        routes: vec![
            route("/api/orders", &[], &["orders"], true),
            route("/api/reports", &["DELETE"], &["admin"], false),
            route("/api", &[], &[], false),
        ],
        ..ForwardAuthConfig::default()
    };
}

/// An app with [`rules`] (adjusted by `tweak`), both clients and the user.
async fn guarded_app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_with(|c| {
        rules(c);
        tweak(c);
    })
    .await;
    app.add_public_client(ORDERS_CLIENT, "orders read offline_access", |c| {
        c.policy.otp = true;
    })
    .await;
    app.add_public_client(READER_CLIENT, "read offline_access", |c| {
        c.policy.access_format = AccessTokenFormat::Opaque;
        c.policy.reuse_window = 0;
    })
    .await;
    app.add_user(USER, PASSWORD, None).await;
    app
}

/// A token response of `client` for the user, with every scope the client allows by default.
async fn login(app: &TestApp, client: &str) -> serde_json::Value {
    token_ok(app.password_grant(client, USER, PASSWORD, None).await).await
}

/// What nginx's `auth_request` sends: `GET /auth/verify` with the original method and URI in
/// `X-Original-*`, and the original request's other headers.
async fn verify(app: &TestApp, method: &str, uri: &str, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("X-Original-Method", method), ("X-Original-URI", uri)];
    all.extend_from_slice(headers);
    app.send(Method::GET, VERIFY_PATH, &all, None).await
}

/// The `sub` khoa's own protected resource reports for `token`.
pub async fn subject_of(app: &TestApp, token: &str) -> String {
    let body: serde_json::Value = app.protected(token).await.json().await.expect("JSON");
    str_of(&body, "sub").to_owned()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn header<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

/// 200 with an empty body and the principal's headers; returns (subject, client, scopes).
async fn assert_granted(res: Response) -> (String, String, String) {
    let status = res.status();
    let owned = |n| header(&res, n).map(str::to_owned);
    let (sub, client, scopes) = (
        owned("x-khoa-subject"),
        owned("x-khoa-client"),
        owned("x-khoa-scopes"),
    );
    assert_eq!(header(&res, CACHE_CONTROL.as_str()), Some("no-store"));
    let body = res.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.is_empty(), "{body}");
    (
        sub.expect("X-Khoa-Subject"),
        client.expect("X-Khoa-Client"),
        scopes.expect("X-Khoa-Scopes"),
    )
}

/// A refusal: `status`, a Bearer challenge containing each of `parts`, no `X-Khoa-*` header;
/// returns the challenge.
fn assert_refused(res: &Response, status: StatusCode, parts: &[&str]) -> String {
    assert_eq!(res.status(), status);
    let challenge = www_authenticate(res).expect("a WWW-Authenticate challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"khoa\""),
        "{challenge}"
    );
    for part in parts {
        assert!(challenge.contains(part), "{part} in {challenge}");
    }
    assert!(header(res, "x-khoa-subject").is_none());
    challenge
}

#[tokio::test]
async fn a_valid_token_passes_with_subject_client_and_scopes_headers() {
    let app = guarded_app(|_| {}).await;
    let token = access_token_of(&login(&app, ORDERS_CLIENT).await);

    let auth = bearer(&token);

    let res = verify(
        &app,
        "GET",
        "/api/orders/7?page=2",
        &[("Authorization", &auth)],
    )
    .await;

    let (sub, client, scopes) = assert_granted(res).await;
    assert_eq!(sub, subject_of(&app, &token).await);
    assert_eq!(client, ORDERS_CLIENT);
    assert_eq!(scopes, "offline_access orders read");
}

#[tokio::test]
async fn no_credentials_get_a_bare_challenge_without_an_error_code() {
    let app = guarded_app(|_| {}).await;

    let res = verify(&app, "GET", "/api/orders", &[]).await;

    // RFC 6750 §3.1: a request without authentication carries no error information.
    let challenge = assert_refused(&res, StatusCode::UNAUTHORIZED, &[]);
    assert_eq!(challenge, "Bearer realm=\"khoa\"");
}

#[tokio::test]
async fn an_invalid_or_non_bearer_credential_is_invalid_token() {
    let app = guarded_app(|_| {}).await;

    for authorization in [
        "Bearer not-a-token",
        "Bearer a.b.c",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ] {
        let res = verify(
            &app,
            "GET",
            "/api/orders",
            &[("Authorization", authorization)],
        )
        .await;

        assert_refused(&res, StatusCode::UNAUTHORIZED, &["error=\"invalid_token\""]);
        let body: serde_json::Value = res.json().await.expect("a JSON body");
        assert_eq!(body["error"], "invalid_token", "{authorization}");
    }
}

#[tokio::test]
async fn a_revoked_session_is_invalid_token() {
    let app = guarded_app(|_| {}).await;
    let first = login(&app, READER_CLIENT).await;
    let rt1 = refresh_token_of(&first);
    let second = token_ok(app.refresh(READER_CLIENT, &rt1).await).await;
    let auth = bearer(&access_token_of(&second));
    assert_granted(verify(&app, "GET", "/api/x", &[("Authorization", &auth)]).await).await;

    // Reuse outside the (empty) window revokes the family, this access token with it.
    assert_eq!(
        app.refresh(READER_CLIENT, &rt1).await.status(),
        StatusCode::BAD_REQUEST
    );

    let res = verify(&app, "GET", "/api/x", &[("Authorization", &auth)]).await;
    assert_refused(&res, StatusCode::UNAUTHORIZED, &["error=\"invalid_token\""]);
}

#[tokio::test]
async fn a_missing_scope_is_insufficient_scope_naming_the_route_scopes() {
    let app = guarded_app(|_| {}).await;
    let token = access_token_of(&login(&app, READER_CLIENT).await);

    let res = verify(
        &app,
        "GET",
        "/api/orders",
        &[("Authorization", &bearer(&token))],
    )
    .await;

    assert_refused(
        &res,
        StatusCode::FORBIDDEN,
        &["error=\"insufficient_scope\"", "scope=\"orders\""],
    );
    let body: serde_json::Value = res.json().await.expect("a JSON body");
    assert_eq!(body["scope"], "orders");
}

#[tokio::test]
async fn a_route_with_methods_applies_to_those_methods_only() {
    let app = guarded_app(|_| {}).await;
    let auth = bearer(&access_token_of(&login(&app, READER_CLIENT).await));

    let delete = verify(
        &app,
        "DELETE",
        "/api/reports/3",
        &[("Authorization", &auth)],
    )
    .await;
    let get = verify(&app, "GET", "/api/reports/3", &[("Authorization", &auth)]).await;

    assert_refused(&delete, StatusCode::FORBIDDEN, &["scope=\"admin\""]);
    // GET falls through to the `/api` route, which any valid token passes.
    assert_granted(get).await;
}

#[tokio::test]
async fn mutating_methods_on_an_otp_route_need_the_sessions_otp_token() {
    let app = guarded_app(|_| {}).await;
    let body = login(&app, ORDERS_CLIENT).await;
    let auth = bearer(&access_token_of(&body));
    let otp = str_of(&body, "otp_token").to_owned();
    let wrong = "0".repeat(32);

    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let missing = verify(&app, method, "/api/orders", &[("Authorization", &auth)]).await;
        let mismatch = verify(
            &app,
            method,
            "/api/orders",
            &[("Authorization", &auth), ("x-otp-token", &wrong)],
        )
        .await;
        let right = verify(
            &app,
            method,
            "/api/orders",
            &[("Authorization", &auth), ("x-otp-token", &otp)],
        )
        .await;

        let a = assert_refused(&missing, StatusCode::FORBIDDEN, &["insufficient_scope"]);
        let b = assert_refused(&mismatch, StatusCode::FORBIDDEN, &["insufficient_scope"]);
        assert!(a.contains("must carry the session's x-otp-token"), "{a}");
        assert!(b.contains("x-otp-token does not match"), "{b}");
        assert_granted(right).await;
    }
    // Reads need the bearer token alone.
    assert_granted(verify(&app, "GET", "/api/orders", &[("Authorization", &auth)]).await).await;
}

#[tokio::test]
async fn a_token_without_an_otp_binding_needs_no_otp_token() {
    let app = guarded_app(|c| c.forward_auth.routes[0].scopes.clear()).await;
    let auth = bearer(&access_token_of(&login(&app, READER_CLIENT).await));

    let res = verify(&app, "POST", "/api/orders", &[("Authorization", &auth)]).await;

    assert_granted(res).await;
}

#[tokio::test]
async fn an_unmatched_path_is_denied_by_default_even_with_a_valid_token() {
    let app = guarded_app(|_| {}).await;
    let auth = bearer(&access_token_of(&login(&app, ORDERS_CLIENT).await));

    for headers in [vec![("Authorization", auth.as_str())], vec![]] {
        let res = verify(&app, "GET", "/admin", &headers).await;

        let challenge = assert_refused(&res, StatusCode::FORBIDDEN, &["insufficient_scope"]);
        assert!(challenge.contains("no forward-auth route"), "{challenge}");
    }
}

#[tokio::test]
async fn default_authenticated_passes_any_valid_token_on_an_unmatched_path() {
    let app = guarded_app(|c| c.forward_auth.default = ForwardAuthDefault::Authenticated).await;
    let auth = bearer(&access_token_of(&login(&app, READER_CLIENT).await));

    assert_granted(verify(&app, "POST", "/admin", &[("Authorization", &auth)]).await).await;
    let anonymous = verify(&app, "POST", "/admin", &[]).await;
    assert_refused(&anonymous, StatusCode::UNAUTHORIZED, &[]);
}

#[tokio::test]
async fn dot_segments_and_escapes_cannot_move_a_request_to_another_rule() {
    let app = guarded_app(|_| {}).await;
    let auth = bearer(&access_token_of(&login(&app, READER_CLIENT).await));

    for uri in ["/api/public/../orders", "/api/%6Frders/1", "//api//orders"] {
        let res = verify(&app, "GET", uri, &[("Authorization", &auth)]).await;

        assert_refused(&res, StatusCode::FORBIDDEN, &["scope=\"orders\""]);
    }
}

#[tokio::test]
async fn traefik_and_envoy_forms_of_the_original_request_are_understood() {
    let app = guarded_app(|_| {}).await;
    let body = login(&app, ORDERS_CLIENT).await;
    let auth = bearer(&access_token_of(&body));

    // Traefik `forwardAuth`: X-Forwarded-Method and X-Forwarded-Uri.
    let traefik = app
        .send(
            Method::GET,
            VERIFY_PATH,
            &[
                ("X-Forwarded-Method", "POST"),
                ("X-Forwarded-Uri", "/api/orders"),
                ("Authorization", &auth),
            ],
            None,
        )
        .await;
    // Envoy `ext_authz`: the original method, and the original path after the prefix.
    let envoy = app
        .send(
            Method::POST,
            "/auth/verify/api/orders",
            &[("Authorization", &auth)],
            None,
        )
        .await;

    assert_refused(&traefik, StatusCode::FORBIDDEN, &["x-otp-token"]);
    assert_refused(&envoy, StatusCode::FORBIDDEN, &["x-otp-token"]);
    let otp = str_of(&body, "otp_token");
    let envoy_ok = app
        .send(
            Method::POST,
            "/auth/verify/api/orders",
            &[("Authorization", &auth), ("x-otp-token", otp)],
            None,
        )
        .await;
    assert_granted(envoy_ok).await;
}

#[tokio::test]
async fn a_request_that_does_not_say_what_it_guards_is_a_400_never_a_500() {
    let app = guarded_app(|_| {}).await;
    let auth = bearer(&access_token_of(&login(&app, READER_CLIENT).await));

    let no_uri = app
        .send(Method::GET, VERIFY_PATH, &[("Authorization", &auth)], None)
        .await;
    let bad_method = verify(&app, "G(E)T", "/api/x", &[("Authorization", &auth)]).await;
    let relative = verify(&app, "GET", "api/x", &[("Authorization", &auth)]).await;
    let odd_method = verify(&app, "PROPFIND", "/api/orders", &[("Authorization", &auth)]).await;

    for res in [no_uri, bad_method, relative] {
        assert_refused(
            &res,
            StatusCode::BAD_REQUEST,
            &["error=\"invalid_request\""],
        );
    }
    // An extension method is an HTTP method like any other: here, one lacking a scope.
    assert_refused(&odd_method, StatusCode::FORBIDDEN, &["scope=\"orders\""]);
}

#[tokio::test]
async fn a_database_that_does_not_answer_is_a_503_with_retry_after_not_a_401() {
    let app = guarded_app(|_| {}).await;
    let auth = bearer(&access_token_of(&login(&app, READER_CLIENT).await));
    let mut db = SqliteConnectOptions::from_str(&app.config.database_url)
        .expect("the test database URL")
        .connect()
        .await
        .expect("a second connection to the test database");
    // An opaque token is looked up in `access_tokens`: take the table away.
    sqlx::raw_sql("ALTER TABLE access_tokens RENAME TO access_tokens_away")
        .execute(&mut db)
        .await
        .expect("the table is renamed");

    let res = verify(&app, "GET", "/api/x", &[("Authorization", &auth)]).await;

    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, RETRY_AFTER.as_str()), Some("1"));
    sqlx::raw_sql("ALTER TABLE access_tokens_away RENAME TO access_tokens")
        .execute(&mut db)
        .await
        .expect("the table is back");
    assert_granted(verify(&app, "GET", "/api/x", &[("Authorization", &auth)]).await).await;
}

#[tokio::test]
async fn the_endpoint_is_off_unless_enabled() {
    let app = spawn_app().await;

    let res = verify(&app, "GET", "/api/x", &[]).await;

    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
