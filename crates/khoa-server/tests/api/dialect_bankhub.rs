//! Seed 001, the bank hub's `POST /v1/token`: HTTP Basic `client_id:client_secret` and an empty
//! body give `201 {"code": 201, "access_token", "ttl"}`; every refusal is the family's
//! `{"code", "message", "errors"}`; the token opens protected APIs until it expires.

use khoa_core::model::{AccessTokenFormat, RefreshIssuance};
use khoa_server::demo::{BANKHUB_CLIENT, BANKHUB_SECRET};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::helpers::{
    TestApp, assert_invalid_token, assert_keys, dialect_token_body, is_lower_hex, json_body,
    plain_basic, spawn_demo_app, www_authenticate,
};

const PATH: &str = "/v1/token";

/// `POST /v1/token` with these headers and body (none when `None`).
async fn token(app: &TestApp, headers: &[(&str, &str)], body: Option<&str>) -> Response {
    app.send(
        Method::POST,
        PATH,
        headers,
        body.map(|b| b.as_bytes().to_vec()),
    )
    .await
}

/// The document's request: Basic credentials, no body at all.
async fn documented_request(app: &TestApp, id: &str, secret: &str) -> Response {
    token(app, &[("Authorization", &plain_basic(id, secret))], None).await
}

/// 201 with exactly `code`, `access_token` (40 lower-case hex) and `ttl`; returns the token.
async fn assert_token_created(res: Response, ttl: i64) -> String {
    let body = dialect_token_body(res, StatusCode::CREATED, &["code", "access_token", "ttl"]).await;
    assert!(body["code"].is_u64(), "an integer: {body}");
    assert_eq!(body["code"], 201);
    assert!(body["ttl"].is_u64(), "an integer: {body}");
    assert_eq!(body["ttl"], ttl);
    let token = body["access_token"].as_str().expect("a string").to_owned();
    assert_eq!(token.len(), 40, "{token}");
    assert!(is_lower_hex(&token), "40 lower-case hex digits: {token}");
    token
}

/// The family's error shape, exactly: `{"code": status, "message": "…", "errors": null}`.
async fn assert_family_error(res: Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let challenge = www_authenticate(&res);
    let body: Value = res.json().await.expect("a JSON body");
    assert_eq!(got, status, "{body}");
    assert_keys(&body, &["code", "message", "errors"]);
    assert_eq!(body["code"], status);
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["errors"].is_null(), "{body}");
    if status == 401 {
        let challenge = challenge.expect("a 401 names the Basic scheme");
        assert!(challenge.starts_with("Basic"), "{challenge}");
    }
    body
}

#[tokio::test]
async fn seed_001_request_gets_201_with_code_token_and_ttl() {
    let app = spawn_demo_app().await;

    let res = documented_request(&app, BANKHUB_CLIENT, BANKHUB_SECRET).await;

    assert_token_created(res, 60_000).await;
}

#[tokio::test]
async fn a_json_content_type_with_an_empty_body_or_an_empty_object_is_accepted() {
    let app = spawn_demo_app().await;
    let auth = plain_basic(BANKHUB_CLIENT, BANKHUB_SECRET);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];

    let empty = token(&app, &headers, Some("")).await;
    let object = token(&app, &headers, Some("{}")).await;

    let first = assert_token_created(empty, 60_000).await;
    let second = assert_token_created(object, 60_000).await;
    assert_ne!(first, second, "every call mints a new token");
}

#[tokio::test]
async fn the_bank_hub_token_opens_the_protected_resource() {
    let app = spawn_demo_app().await;
    let token = assert_token_created(
        documented_request(&app, BANKHUB_CLIENT, BANKHUB_SECRET).await,
        60_000,
    )
    .await;

    let res = app.protected(&token).await;

    let resource = json_body(res, StatusCode::OK).await;
    assert_eq!(resource["client_id"], BANKHUB_CLIENT);
    assert_eq!(resource["token_format"], "hex40");
}

#[tokio::test]
async fn missing_credentials_are_401() {
    let app = spawn_demo_app().await;

    let res = token(&app, &[], None).await;

    assert_family_error(res, 401).await;
}

#[tokio::test]
async fn malformed_credentials_are_401() {
    let app = spawn_demo_app().await;
    let no_colon = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, BANKHUB_CLIENT)
    );

    for header in [
        "Basic !!!not-base64!!!",
        no_colon.as_str(),
        "Bearer 5e79079684d93027ed1d7e414b04543b1d6ef164",
        "Digest username=\"bankhub-demo\"",
    ] {
        let res = token(&app, &[("Authorization", header)], None).await;

        assert_family_error(res, 401).await;
    }
}

#[tokio::test]
async fn an_unknown_client_is_401() {
    let app = spawn_demo_app().await;

    let res = documented_request(&app, "no-such-client", BANKHUB_SECRET).await;

    assert_family_error(res, 401).await;
}

#[tokio::test]
async fn a_wrong_secret_is_401_like_an_unknown_client() {
    let app = spawn_demo_app().await;

    let wrong = documented_request(&app, BANKHUB_CLIENT, "not-the-secret-0123456789abcdefgh").await;
    let unknown = documented_request(&app, "no-such-client", BANKHUB_SECRET).await;

    let wrong = assert_family_error(wrong, 401).await;
    let unknown = assert_family_error(unknown, 401).await;
    assert_eq!(
        wrong, unknown,
        "the answer does not say which part was wrong"
    );
}

#[tokio::test]
async fn a_disabled_client_is_401_even_with_the_right_secret() {
    let app = spawn_demo_app().await;
    let secret = "disabled-bank-hub-secret-0123456789abcdef";
    app.add_confidential_client_with_secret("disabled-hub", "bankhub", secret, |c| {
        c.policy.access_format = AccessTokenFormat::Hex40;
        c.disabled = true;
    })
    .await;

    let res = documented_request(&app, "disabled-hub", secret).await;

    assert_family_error(res, 401).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_in_the_same_shape() {
    let app = spawn_demo_app().await;
    let auth = plain_basic(BANKHUB_CLIENT, BANKHUB_SECRET);

    for (content_type, body) in [
        (
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials",
        ),
        ("application/json", "[]"),
        ("text/plain", "hello"),
    ] {
        let res = token(
            &app,
            &[("Authorization", &auth), ("Content-Type", content_type)],
            Some(body),
        )
        .await;

        assert_family_error(res, 400).await;
    }
}

#[tokio::test]
async fn an_expired_bank_hub_token_is_refused_with_401() {
    let app = spawn_demo_app().await;
    let secret = "short-lived-bank-hub-secret-0123456789ab";
    app.add_confidential_client_with_secret("short-hub", "bankhub", secret, |c| {
        c.policy.access_format = AccessTokenFormat::Hex40;
        c.policy.access_ttl = 2;
        c.policy.refresh = RefreshIssuance::Never;
    })
    .await;
    let token = assert_token_created(documented_request(&app, "short-hub", secret).await, 2).await;
    assert_eq!(app.protected(&token).await.status(), StatusCode::OK);

    // The engine's clock counts whole seconds: a 2 s token is certainly dead after 3 s.
    app.advance(3);

    assert_invalid_token(app.protected(&token).await).await;
    // …and, as the document says, calling /v1/token again gets a working one.
    let fresh = assert_token_created(documented_request(&app, "short-hub", secret).await, 2).await;
    assert_eq!(app.protected(&fresh).await.status(), StatusCode::OK);
}
