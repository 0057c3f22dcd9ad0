//! RFC 6749 §4.4: a confidential client authenticating as itself.

use serde_json::Value;

use crate::helpers::{is_jwt, oauth_error, spawn_app, token_ok, www_authenticate};

const CLIENT: &str = "billing-service";

fn assert_client_credentials_answer(body: &Value) {
    let token = body["access_token"].as_str().expect("an access_token");
    assert!(
        is_jwt(token),
        "a JWT has three dot-separated parts: {token}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "invoices");
    assert!(
        body.get("refresh_token").is_none(),
        "client_credentials never issues a refresh token (RFC 6749 §4.4.3): {body}"
    );
}

#[tokio::test]
async fn basic_credentials_get_a_jwt_and_no_refresh_token() {
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client(CLIENT, "invoices", |_| {})
        .await;

    let res = app
        .token_basic(CLIENT, &secret, &[("grant_type", "client_credentials")])
        .await;

    let body = token_ok(res).await;
    assert_client_credentials_answer(&body);
    let resource = app.protected(body["access_token"].as_str().unwrap()).await;
    assert_eq!(resource.status(), 200);
    let resource: Value = resource.json().await.unwrap();
    assert_eq!(resource["sub"], CLIENT);
    assert_eq!(resource["client_id"], CLIENT);
}

#[tokio::test]
async fn post_credentials_get_a_jwt_and_no_refresh_token() {
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client(CLIENT, "invoices", |_| {})
        .await;

    let res = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", &secret),
        ])
        .await;

    let body = token_ok(res).await;
    assert_client_credentials_answer(&body);
    assert_eq!(
        app.protected(body["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn offline_access_does_not_bring_a_refresh_token_to_client_credentials() {
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client(CLIENT, "invoices offline_access", |_| {})
        .await;

    let res = app
        .token_basic(
            CLIENT,
            &secret,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "invoices offline_access"),
            ],
        )
        .await;

    let body = token_ok(res).await;
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client_by_either_method() {
    let app = spawn_app().await;
    let secret = app
        .add_confidential_client(CLIENT, "invoices", |_| {})
        .await;
    let wrong = format!("{secret}x");

    let basic = app
        .token_basic(CLIENT, &wrong, &[("grant_type", "client_credentials")])
        .await;
    assert!(www_authenticate(&basic).is_some());
    oauth_error(basic, 401, "invalid_client").await;

    let post = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", &wrong),
        ])
        .await;
    oauth_error(post, 401, "invalid_client").await;
}

#[tokio::test]
async fn a_public_client_cannot_use_client_credentials() {
    let app = spawn_app().await;
    app.add_public_client("public-app", "invoices", |c| {
        c.grant_types
            .push(khoa_core::model::GrantType::ClientCredentials);
    })
    .await;

    let res = app
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "public-app"),
        ])
        .await;

    oauth_error(res, 400, "unauthorized_client").await;
}
