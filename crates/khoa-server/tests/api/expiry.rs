//! Tokens die when their lifetime ends.
//!
//! The engine's clock counts whole seconds, so a token with a TTL of `n` s lives between `n - 1`
//! and `n` s; the tests use 2 s (more than 1 s to prove the token worked) and move the
//! server's clock 3 s forward: nothing waits for the real clock.

use khoa_core::model::AccessTokenFormat;
use reqwest::StatusCode;

use crate::helpers::{
    access_token_of, assert_invalid_token, oauth_error, refresh_token_of, spawn_app, token_ok,
};

const USER: &str = "carol@example.test";
const PASSWORD: &str = "carol's password";
const TTL: i64 = 2;
const WAIT_SECS: i64 = 3;

#[tokio::test]
async fn access_tokens_of_either_format_expire_after_their_ttl() {
    let app = spawn_app().await;
    for (id, format) in [
        ("opaque-app", AccessTokenFormat::Opaque),
        ("jwt-app", AccessTokenFormat::Jwt),
    ] {
        app.add_public_client(id, "read", |c| {
            c.policy.access_format = format;
            c.policy.access_ttl = TTL;
        })
        .await;
    }
    app.add_user(USER, PASSWORD, None).await;
    let mut tokens = Vec::new();
    for id in ["opaque-app", "jwt-app"] {
        let body = token_ok(app.password_grant(id, USER, PASSWORD, None).await).await;
        assert_eq!(body["expires_in"], TTL);
        let token = access_token_of(&body);
        assert_eq!(app.protected(&token).await.status(), StatusCode::OK, "{id}");
        tokens.push(token);
    }

    app.advance(WAIT_SECS);

    for token in tokens {
        assert_invalid_token(app.protected(&token).await).await;
    }
}

#[tokio::test]
async fn a_refresh_token_expires_after_its_ttl() {
    let app = spawn_app().await;
    app.add_public_client("short-refresh", "read offline_access", |c| {
        c.policy.refresh_ttl = TTL;
    })
    .await;
    app.add_user(USER, PASSWORD, None).await;
    let first = token_ok(
        app.password_grant("short-refresh", USER, PASSWORD, Some("read offline_access"))
            .await,
    )
    .await;
    // Redeemable before it expires (and the successor gets a fresh TTL).
    let second = token_ok(
        app.refresh("short-refresh", &refresh_token_of(&first))
            .await,
    )
    .await;

    app.advance(WAIT_SECS);

    let res = app
        .refresh("short-refresh", &refresh_token_of(&second))
        .await;
    oauth_error(res, 400, "invalid_grant").await;
}

#[tokio::test]
async fn no_rotation_extends_a_session_past_its_lifetime() {
    let app = spawn_app().await;
    app.add_public_client("short-session", "read offline_access", |c| {
        c.policy.session_lifetime = TTL;
    })
    .await;
    app.add_user(USER, PASSWORD, None).await;
    let first = token_ok(
        app.password_grant("short-session", USER, PASSWORD, Some("read offline_access"))
            .await,
    )
    .await;
    let second = token_ok(
        app.refresh("short-session", &refresh_token_of(&first))
            .await,
    )
    .await;

    // The access token is capped at the session's end too.
    let expires_in = second["expires_in"].as_i64().expect("a number");
    assert!((1..=TTL).contains(&expires_in), "{second}");

    app.advance(WAIT_SECS);

    let res = app
        .refresh("short-session", &refresh_token_of(&second))
        .await;
    oauth_error(res, 400, "invalid_grant").await;
    assert_invalid_token(app.protected(&access_token_of(&second)).await).await;
}
