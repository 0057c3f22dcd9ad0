//! A restart on the same database and master key loses nothing: refresh tokens, signing keys,
//! and so the JWTs signed before it.

use khoa_core::model::AccessTokenFormat;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{access_token_of, jwt_header, refresh_token_of, spawn_app, token_ok};

#[tokio::test]
async fn tokens_and_keys_survive_a_restart_on_the_same_database() {
    // Arrange: a JWT (client_credentials), an opaque access token and a refresh token.
    let app = spawn_app().await;
    let secret = app.add_confidential_client("service", "read", |_| {}).await;
    app.add_public_client("app", "read offline_access", |c| {
        c.policy.access_format = AccessTokenFormat::Opaque;
    })
    .await;
    app.add_user("dave@example.test", "dave's password", None)
        .await;
    let jwt = access_token_of(
        &token_ok(
            app.token_basic("service", &secret, &[("grant_type", "client_credentials")])
                .await,
        )
        .await,
    );
    let session = token_ok(
        app.password_grant(
            "app",
            "dave@example.test",
            "dave's password",
            Some("read offline_access"),
        )
        .await,
    )
    .await;
    let kids_before = app.jwks_kids().await;

    // Act
    let app = app.stop().await.start().await;

    // Assert
    assert_eq!(app.jwks_kids().await, kids_before, "no new signing key");
    assert_eq!(
        jwt_header(&jwt)["kid"].as_str().unwrap(),
        kids_before[0].as_str()
    );
    let resource = app.protected(&jwt).await;
    assert_eq!(resource.status(), StatusCode::OK);
    let resource: Value = resource.json().await.unwrap();
    assert_eq!(resource["sub"], "service");
    assert_eq!(
        app.protected(&access_token_of(&session)).await.status(),
        StatusCode::OK
    );
    let refreshed = token_ok(app.refresh("app", &refresh_token_of(&session)).await).await;
    assert_eq!(
        app.protected(&access_token_of(&refreshed)).await.status(),
        StatusCode::OK
    );
    // The client secret still authenticates.
    token_ok(
        app.token_basic("service", &secret, &[("grant_type", "client_credentials")])
            .await,
    )
    .await;
}
