//! RFC 6749 §3.3: what scope a token gets, and when `offline_access` brings a refresh token.

use khoa_core::model::RefreshIssuance;
use khoa_core::scope::ScopeSet;

use crate::helpers::{TestApp, oauth_error, spawn_app, token_ok};

const CLIENT: &str = "scoped-app";
const USER: &str = "scope-user@example.test";
const PASSWORD: &str = "correct horse battery staple";

/// A public client allowed `read write offline_access`, whose default is `read` alone.
async fn app_with_scoped_client() -> TestApp {
    let app = spawn_app().await;
    app.add_public_client(CLIENT, "read write offline_access", |c| {
        c.default_scopes = ScopeSet::parse("read").unwrap();
        c.policy.refresh = RefreshIssuance::OfflineAccess;
    })
    .await;
    app.add_user(USER, PASSWORD, None).await;
    app
}

#[tokio::test]
async fn a_requested_subset_is_granted_exactly() {
    let app = app_with_scoped_client().await;

    let body = token_ok(
        app.password_grant(CLIENT, USER, PASSWORD, Some("write"))
            .await,
    )
    .await;

    assert_eq!(body["scope"], "write");
}

#[tokio::test]
async fn the_granted_scope_is_normalised_to_sorted_unique_tokens() {
    let app = app_with_scoped_client().await;

    let body = token_ok(
        app.password_grant(CLIENT, USER, PASSWORD, Some("write read  write"))
            .await,
    )
    .await;

    assert_eq!(body["scope"], "read write");
}

#[tokio::test]
async fn no_refresh_token_without_offline_access() {
    let app = app_with_scoped_client().await;

    let body = token_ok(
        app.password_grant(CLIENT, USER, PASSWORD, Some("read write"))
            .await,
    )
    .await;

    assert!(
        body.get("refresh_token").is_none(),
        "the key is absent, not null: {body}"
    );
}

#[tokio::test]
async fn offline_access_brings_a_refresh_token() {
    let app = app_with_scoped_client().await;

    let body = token_ok(
        app.password_grant(CLIENT, USER, PASSWORD, Some("read offline_access"))
            .await,
    )
    .await;

    assert_eq!(body["scope"], "offline_access read");
    assert!(body["refresh_token"].is_string(), "{body}");
}

#[tokio::test]
async fn no_scope_requested_gets_the_client_default_scopes() {
    let app = app_with_scoped_client().await;

    let body = token_ok(app.password_grant(CLIENT, USER, PASSWORD, None).await).await;

    assert_eq!(body["scope"], "read");
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn a_scope_outside_the_client_set_is_invalid_scope() {
    let app = app_with_scoped_client().await;

    let res = app
        .password_grant(CLIENT, USER, PASSWORD, Some("read admin"))
        .await;

    oauth_error(res, 400, "invalid_scope").await;
}

#[tokio::test]
async fn a_scope_outside_the_user_set_is_invalid_scope() {
    let app = app_with_scoped_client().await;
    app.add_user("reader@example.test", PASSWORD, Some("read"))
        .await;

    let res = app
        .password_grant(CLIENT, "reader@example.test", PASSWORD, Some("write"))
        .await;

    oauth_error(res, 400, "invalid_scope").await;
}

#[tokio::test]
async fn a_refresh_may_narrow_the_scope_but_not_widen_it() {
    let app = app_with_scoped_client().await;
    let first = token_ok(
        app.password_grant(CLIENT, USER, PASSWORD, Some("read offline_access"))
            .await,
    )
    .await;
    let rt = first["refresh_token"].as_str().unwrap();

    let widened = app
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("refresh_token", rt),
            ("scope", "read write offline_access"),
        ])
        .await;
    oauth_error(widened, 400, "invalid_scope").await;

    let narrowed = token_ok(
        app.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("refresh_token", rt),
            ("scope", "read"),
        ])
        .await,
    )
    .await;
    assert_eq!(narrowed["scope"], "read");
}

#[tokio::test]
async fn a_malformed_scope_is_invalid_scope() {
    let app = app_with_scoped_client().await;

    let res = app
        .password_grant(CLIENT, USER, PASSWORD, Some("read \"write\""))
        .await;

    oauth_error(res, 400, "invalid_scope").await;
}
