//! Rate limits: 429 with `Retry-After` (RFC 6585 §4) in each dialect's own error shape, per
//! source IP (and the `X-Forwarded-For` of trusted proxies only), per client, per partner.

use khoa_server::demo::{OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET, PARTNER_CODE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    FORM_CONTENT_TYPE, TestApp, basic_auth, cache_control, form_body, plain_basic,
    spawn_demo_app_with, token_ok,
};

fn retry_after(res: &Response) -> Option<u64> {
    res.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in whole seconds")
    })
}

/// A 429 with `Retry-After` ≥ 1, not cached; returns the body text.
async fn assert_429(res: Response) -> String {
    let status = res.status();
    let secs = retry_after(&res);
    let no_store = cache_control(&res) == Some("no-store");
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(secs.is_some_and(|s| s >= 1), "Retry-After {secs:?}: {text}");
    assert!(no_store || text.starts_with("<!doctype"), "{text}");
    text
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("JSON ({e}): {text}"))
}

async fn post(app: &TestApp, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    app.send(Method::POST, path, headers, Some(body.as_bytes().to_vec()))
        .await
}

#[tokio::test]
async fn over_the_per_ip_limit_every_endpoint_answers_429_in_its_own_shape() {
    let app = spawn_demo_app_with(|c| {
        c.rate_limit.per_ip_per_sec = 1;
        c.rate_limit.burst = 1;
    })
    .await;
    // The one request the bucket holds.
    token_ok(
        app.token_basic(
            OAUTH2_SERVICE_CLIENT,
            OAUTH2_SERVICE_SECRET,
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
    let form = [("Content-Type", FORM_CONTENT_TYPE)];
    let rfc6749 = json!({
        "error": "temporarily_unavailable",
        "error_description": "too many requests: retry after the seconds in Retry-After",
    });
    let cc = form_body(&[("grant_type", "client_credentials")]);
    let basic = basic_auth(OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET);
    let with_basic = [form[0], ("Authorization", basic.as_str())];
    for path in [
        "/connect/token",
        "/connect/revocation",
        "/connect/introspect",
    ] {
        let text = assert_429(post(&app, path, &with_basic, &format!("{cc}&token=x")).await).await;
        assert_eq!(json_of(&text), rfc6749, "{path}");
    }
    // Seed 000: the envelope with its -109 code.
    let text = assert_429(
        app.post_json(
            "/oapi/auth/gen-secret-key/derivative",
            &[],
            &json!({"username": "u", "password": "p"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        json_of(&text)["messageParams"]["error_description"],
        "-109 Quá nhiều yêu cầu, vui lòng thử lại sau"
    );
    assert_eq!(json_of(&text)["code"], "OAPI_FNO_500");
    // Seed 001: {code, message, errors}.
    let auth = plain_basic("bankhub-demo", "x");
    let text = assert_429(post(&app, "/v1/token", &[("Authorization", &auth)], "").await).await;
    assert_eq!(
        json_of(&text),
        json!({"code": 429, "message": "Too Many Requests.", "errors": null})
    );
    // Seed 002: {status, error, message}.
    let text = assert_429(
        app.post_json_raw(
            "/openapi/v1/auth/login",
            &[("Partner-Code", PARTNER_CODE)],
            r#"{"data":"00"}"#,
        )
        .await,
    )
    .await;
    assert_eq!(
        json_of(&text),
        json!({
            "status": 429,
            "error": "rate_limited",
            "message": "too many requests: retry after the seconds in Retry-After",
        })
    );
    // Seed 003: {status: FAILED, message}.
    let text = assert_429(
        post(
            &app,
            "/vqr/api/token_generate",
            &[("Authorization", &auth)],
            "",
        )
        .await,
    )
    .await;
    assert_eq!(
        json_of(&text),
        json!({"status": "FAILED", "message": "E05"})
    );
    // The login form: its own error page.
    let text = assert_429(post(&app, "/connect/authorize", &form, "ui_locales=en").await).await;
    assert!(text.contains("Too many attempts"), "{text}");
}

#[tokio::test]
async fn the_per_client_limit_counts_each_client_on_its_own() {
    let app = spawn_demo_app_with(|c| {
        c.rate_limit.per_client_per_sec = 1;
        c.rate_limit.burst = 2;
    })
    .await;
    let cc = || {
        app.token_basic(
            OAUTH2_SERVICE_CLIENT,
            OAUTH2_SERVICE_SECRET,
            &[("grant_type", "client_credentials")],
        )
    };
    token_ok(cc().await).await;
    token_ok(cc().await).await;
    assert_429(cc().await).await;
    // Another client has a bucket of its own.
    let other = app
        .password_grant("YOUR_CLIENT_ID", "nobody", "wrong", None)
        .await;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_per_partner_limit_applies_before_any_decryption() {
    let app = spawn_demo_app_with(|c| {
        c.rate_limit.per_partner_per_sec = 1;
        c.rate_limit.burst = 1;
    })
    .await;
    let login = async |code: &str| {
        app.post_json_raw(
            "/openapi/v1/auth/login",
            &[("Partner-Code", code)],
            r#"{"data":"00"}"#,
        )
        .await
    };
    assert_eq!(login(PARTNER_CODE).await.status(), StatusCode::UNAUTHORIZED);
    assert_429(login(PARTNER_CODE).await).await;
    assert_eq!(login("OTHER").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let cc = form_body(&[("grant_type", "client_credentials")]);
    let basic = basic_auth(OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET);
    let send = async |app: &TestApp, xff: &str| {
        post(
            app,
            "/connect/token",
            &[
                ("Content-Type", FORM_CONTENT_TYPE),
                ("Authorization", &basic),
                ("X-Forwarded-For", xff),
            ],
            &cc,
        )
        .await
        .status()
    };
    // Behind a trusted proxy (the test client's 127.0.0.1): each forwarded client has a bucket.
    let trusted = spawn_demo_app_with(|c| {
        c.rate_limit.per_ip_per_sec = 1;
        c.rate_limit.burst = 1;
        c.rate_limit.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    assert_eq!(send(&trusted, "203.0.113.1").await, StatusCode::OK);
    assert_eq!(
        send(&trusted, "203.0.113.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&trusted, "203.0.113.2").await, StatusCode::OK);
    // Untrusted: the header is the client's own claim and changes nothing.
    let direct = spawn_demo_app_with(|c| {
        c.rate_limit.per_ip_per_sec = 1;
        c.rate_limit.burst = 1;
    })
    .await;
    assert_eq!(send(&direct, "203.0.113.1").await, StatusCode::OK);
    assert_eq!(
        send(&direct, "203.0.113.2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
