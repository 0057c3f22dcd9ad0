//! Refresh-token rotation (RFC 9700 §4.14.2): single use, a short retry window that answers a
//! retry with the same successor, and reuse detection that revokes the whole family.

use khoa_core::model::AccessTokenFormat;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    TestApp, access_token_of, oauth_error, refresh_token_of, spawn_app, token_ok,
};

const CLIENT: &str = "rotating-app";
const USER: &str = "bob@example.test";
const PASSWORD: &str = "bob's password";

/// An app with a public opaque-token client whose retry window is `window` seconds, and the
/// first token response of a session.
async fn session(window: i64) -> (TestApp, Value) {
    let app = spawn_app().await;
    app.add_public_client(CLIENT, "read offline_access", |c| {
        c.policy.access_format = AccessTokenFormat::Opaque;
        c.policy.reuse_window = window;
    })
    .await;
    app.add_user(USER, PASSWORD, None).await;
    let first = token_ok(
        app.password_grant(CLIENT, USER, PASSWORD, Some("read offline_access"))
            .await,
    )
    .await;
    (app, first)
}

#[tokio::test]
async fn a_refresh_rotates_the_refresh_token_and_issues_a_working_access_token() {
    let (app, first) = session(5).await;
    let rt1 = refresh_token_of(&first);

    let second = token_ok(app.refresh(CLIENT, &rt1).await).await;

    let rt2 = refresh_token_of(&second);
    assert_ne!(rt2, rt1);
    assert_ne!(access_token_of(&second), access_token_of(&first));
    assert_eq!(second["scope"], "offline_access read");
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(
        app.protected(&access_token_of(&second)).await.status(),
        StatusCode::OK
    );
    // The successor is itself redeemable.
    token_ok(app.refresh(CLIENT, &rt2).await).await;
}

#[tokio::test]
async fn a_retry_inside_the_window_returns_the_same_successor() {
    let (app, first) = session(5).await;
    let rt1 = refresh_token_of(&first);
    let second = token_ok(app.refresh(CLIENT, &rt1).await).await;

    let retry = token_ok(app.refresh(CLIENT, &rt1).await).await;

    assert_eq!(refresh_token_of(&retry), refresh_token_of(&second));
    assert_eq!(
        app.protected(&access_token_of(&retry)).await.status(),
        StatusCode::OK
    );
    // The retry did not revoke anything: the successor still rotates.
    token_ok(app.refresh(CLIENT, &refresh_token_of(&second)).await).await;
}

#[tokio::test]
async fn reuse_after_the_window_fails_and_revokes_the_family_including_the_successor() {
    let (app, first) = session(1).await;
    let rt1 = refresh_token_of(&first);
    let second = token_ok(app.refresh(CLIENT, &rt1).await).await;
    let rt2 = refresh_token_of(&second);

    // Time passing is the point: the window is 1 s, and the server's clock moves 2.
    app.advance(2);
    let reuse = app.refresh(CLIENT, &rt1).await;

    oauth_error(reuse, 400, "invalid_grant").await;
    oauth_error(app.refresh(CLIENT, &rt2).await, 400, "invalid_grant").await;
    assert_eq!(
        app.protected(&access_token_of(&second)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Redeems `token` `n` times at once; returns every (status, body).
async fn redeem_concurrently(app: &TestApp, token: &str, n: usize) -> Vec<(StatusCode, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = app.client.clone();
        let url = app.url(crate::helpers::TOKEN_PATH);
        let body = crate::helpers::form_body(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("refresh_token", token),
        ]);
        set.spawn(async move {
            let res = client
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    crate::helpers::FORM_CONTENT_TYPE,
                )
                .body(body)
                .send()
                .await
                .expect("the request completes");
            let status = res.status();
            (status, res.json::<Value>().await.expect("a JSON body"))
        });
    }
    set.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_redemptions_inside_the_window_all_get_the_same_successor() {
    let (app, first) = session(5).await;
    let rt1 = refresh_token_of(&first);

    let answers = redeem_concurrently(&app, &rt1, 50).await;

    assert_eq!(answers.len(), 50);
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let successors: std::collections::HashSet<String> =
        answers.iter().map(|(_, b)| refresh_token_of(b)).collect();
    assert_eq!(successors.len(), 1, "one successor for all: {successors:?}");
    let successor = successors.into_iter().next().unwrap();
    assert_ne!(successor, rt1);
    token_ok(app.refresh(CLIENT, &successor).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_window_exactly_one_of_fifty_concurrent_redemptions_succeeds() {
    let (app, first) = session(0).await;
    let rt1 = refresh_token_of(&first);

    let answers = redeem_concurrently(&app, &rt1, 50).await;

    let winners: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one 200 among 50");
    for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    // Every loser was a reuse outside the (empty) window: the family, winner included, is dead.
    let successor = refresh_token_of(winners[0]);
    oauth_error(app.refresh(CLIENT, &successor).await, 400, "invalid_grant").await;
}
