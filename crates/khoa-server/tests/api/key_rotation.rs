//! Signing-key rotation on a schedule, as an operator drives it: `khoa keys rotate` in its own
//! process against a running server's database. The next key is published before it signs,
//! takes over at its activation, and the old one stays accepted for the tokens it signed;
//! the JWKS carries cache headers that fit that schedule.
//!
//! Keys are reloaded every second and the JWKS cached one second, so that a lead of a few
//! seconds is safe and the tests wait no longer than that.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use std::time::Duration;
use tokio::process::Command;

use crate::cli::{fails, field, khoa_on, ok, run};
use crate::helpers::{
    JWKS_PATH, TestApp, access_token_of, assert_invalid_token, jwt_claims, jwt_header,
    spawn_app_with, token_ok,
};

/// The CLI with the same key settings as the server of [`fast_app`].
fn khoa_fast(app: &TestApp) -> Command {
    let mut cmd = khoa_on(app.dir.path());
    cmd.env("KHOA_KEYS__RELOAD_SECS", "1")
        .env("KHOA_KEYS__JWKS_MAX_AGE_SECS", "1");
    cmd
}

/// A server reloading keys every second, its JWKS cacheable for one second, with a JWT client.
async fn fast_app() -> (TestApp, String) {
    let app = spawn_app_with(|c| {
        c.keys.reload_secs = 1;
        c.keys.jwks_max_age_secs = 1;
        c.keys.rotation_lead_secs = 2;
    })
    .await;
    let secret = app.add_confidential_client("svc", "read", |_| {}).await;
    (app, secret)
}

async fn mint(app: &TestApp, secret: &str) -> String {
    access_token_of(&token_ok(app.client_credentials("svc", secret).await).await)
}

fn kid(token: &str) -> String {
    jwt_header(token)["kid"].as_str().unwrap().to_owned()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Moves the server's clock to at least `at`; returns by how much, for the CLI verbs that
/// must see the same time (`danger_clock_file`).
fn advance_to(app: &TestApp, at: i64) -> i64 {
    let ahead = (at - unix_now() + 1).max(0);
    app.advance(ahead);
    ahead
}

/// Polls until the server publishes exactly `kids` (in order), for at most 5 s.
async fn until_published(app: &TestApp, kids: &[&str]) {
    for _ in 0..50 {
        if app.jwks_kids().await == kids {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("published {:?}, expected {kids:?}", app.jwks_kids().await);
}

async fn rotate(app: &TestApp, args: &[&str]) -> (String, i64) {
    let out = run(khoa_fast(app), &[&["keys", "rotate"], args].concat(), None).await;
    assert!(out.status.success(), "khoa keys rotate: {}", out.stderr);
    let activates_at = field(&out.stdout, "activates_at").trim().parse().unwrap();
    (field(&out.stdout, "next signing key"), activates_at)
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs_and_old_tokens_outlive_the_switch() {
    // Arrange
    let (app, secret) = fast_app().await;
    let old_token = mint(&app, &secret).await;
    let old_kid = kid(&old_token);

    // Act: the CLI, another process, schedules the next key 30 s ahead.
    let (new_kid, activates_at) = rotate(&app, &["--lead", "30"]).await;

    // Assert: the running server publishes it after its next reload, before it signs …
    until_published(&app, &[&old_kid, &new_kid]).await;
    let during_lead = mint(&app, &secret).await;
    assert!(
        jwt_claims(&during_lead)["iat"].as_i64().unwrap() < activates_at,
        "published within the lead"
    );
    assert_eq!(
        kid(&during_lead),
        old_kid,
        "the old key signs until the switch"
    );
    // … signs with it from its activation on …
    let ahead = advance_to(&app, activates_at);
    let after = mint(&app, &secret).await;
    assert_eq!(kid(&after), new_kid);
    assert_eq!(app.protected(&after).await.status(), StatusCode::OK);
    // … and keeps the old key published and accepted for the tokens it signed.
    assert_eq!(app.protected(&old_token).await.status(), StatusCode::OK);
    assert_eq!(app.protected(&during_lead).await.status(), StatusCode::OK);
    assert_eq!(app.jwks_kids().await, [old_kid, new_kid]);
    let clock = app.dir.path().join("clock");
    std::fs::write(&clock, ahead.to_string()).unwrap();
    let mut list = khoa_on(app.dir.path());
    list.env("KHOA_DANGER_CLOCK_FILE", &clock);
    let listed = run(list, &["keys", "list"], None).await;
    assert!(listed.status.success(), "{}", listed.stderr);
    let listed = listed.stdout;
    let states: Vec<&str> = listed
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(states, ["previous", "current"], "{listed}");
}

#[tokio::test]
async fn the_jwks_is_cacheable_for_the_configured_time_and_revalidates_with_its_etag() {
    // Arrange
    let (app, _) = fast_app().await;
    let get = |etag: Option<String>| {
        let mut req = app.client.get(app.url(JWKS_PATH));
        if let Some(etag) = etag {
            req = req.header(IF_NONE_MATCH, etag);
        }
        req.send()
    };

    // Act
    let first = get(None).await.unwrap();
    let etag = first.headers()[ETAG].to_str().unwrap().to_owned();
    let revalidated = get(Some(etag.clone())).await.unwrap();

    // Assert
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[CACHE_CONTROL], "public, max-age=1");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()[ETAG], etag.as_str());
    assert_eq!(revalidated.headers()[CACHE_CONTROL], "public, max-age=1");
    assert!(revalidated.bytes().await.unwrap().is_empty());

    // A new key changes the document and so its tag: the old tag gets the full answer.
    rotate(&app, &["--lead", "10"]).await;
    let mut changed = None;
    for _ in 0..50 {
        let res = get(Some(etag.clone())).await.unwrap();
        if res.status() == StatusCode::OK {
            changed = Some(res);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let changed = changed.expect("the JWKS changes after the reload");
    assert_ne!(changed.headers()[ETAG], etag.as_str());
    let body: serde_json::Value = changed.json().await.unwrap();
    assert_eq!(body["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_lead_shorter_than_reloads_and_caching_is_refused_and_so_is_a_second_pending_rotation() {
    // Arrange: the CLI with the default key settings (max-age 300 s, reload 30 s).
    let (app, _) = fast_app().await;
    let dir = app.dir.path();

    // Act
    let short = fails(dir, &["keys", "rotate", "--lead", "329"], None).await;
    let scheduled = ok(dir, &["keys", "rotate", "--lead", "330"], None).await;
    let pending = fails(dir, &["keys", "rotate"], None).await;

    // Assert
    assert!(
        short.contains("keys.jwks_max_age_secs + keys.reload_secs = 300 + 30 = 330"),
        "{short}"
    );
    assert!(short.contains("--danger-immediate"), "{short}");
    let next = field(&scheduled, "next signing key");
    assert!(pending.contains("already pending"), "{pending}");
    assert!(pending.contains(&next), "names the pending key: {pending}");
    let listed = ok(dir, &["keys", "list"], None).await;
    assert_eq!(
        listed.lines().skip(1).count(),
        2,
        "nothing more scheduled:\n{listed}"
    );
}

#[tokio::test]
async fn danger_immediate_signs_with_a_new_key_at_once_and_refuses_the_old_keys_tokens() {
    // Arrange
    let (app, secret) = fast_app().await;
    let old_token = mint(&app, &secret).await;
    assert_eq!(app.protected(&old_token).await.status(), StatusCode::OK);

    // Act: the default CLI settings would demand a 330 s lead; a compromised key cannot wait.
    let out = ok(
        app.dir.path(),
        &["keys", "rotate", "--danger-immediate"],
        None,
    )
    .await;
    let new_kid = field(&out, "next signing key");

    // Assert: after its reload the server publishes and signs with the new key only …
    until_published(&app, &[&new_kid]).await;
    let new_token = mint(&app, &secret).await;
    assert_eq!(kid(&new_token), new_kid);
    assert_eq!(app.protected(&new_token).await.status(), StatusCode::OK);
    // … and the old key's tokens are refused at once, long before they expire.
    assert_invalid_token(app.protected(&old_token).await).await;
}
