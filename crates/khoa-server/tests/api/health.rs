//! Liveness, readiness, and how the server answers when the database cannot take a write, a
//! path it does not serve, or a request that never finishes.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, oauth_error, spawn_app, spawn_app_with, token_ok};

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .send()
        .await
        .expect("the request completes")
}

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;

    let res = get(&app, "/healthz").await;

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn readyz_answers_ready_while_the_database_answers() {
    let app = spawn_app().await;

    let res = get(&app, "/readyz").await;

    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ready");
}

#[tokio::test]
async fn a_token_request_is_a_clean_503_while_another_process_holds_the_write_lock() {
    // Arrange: a short busy timeout, so that the writer gives up quickly on a held lock.
    let app = spawn_app_with(|c| c.database.busy_timeout_ms = 50).await;
    app.add_public_client("web", "read offline_access", |_| {})
        .await;
    app.add_user("alice", "alice-password", None).await;
    let grant = || app.password_grant("web", "alice", "alice-password", Some("offline_access"));
    // What another process (`khoa user add`, a backup tool) does to the same file: take the
    // write lock. WAL readers carry on; the writer that stores the refresh token cannot.
    let mut holder = SqliteConnectOptions::from_str(&app.config.database_url)
        .expect("the test database URL")
        .connect()
        .await
        .expect("a second connection to the test database");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("the write lock");

    // Act
    let res = grant().await;

    // Assert: RFC 6749 §5.2 `temporarily_unavailable` as a 503 a client may retry, not a 500,
    // and nothing of SQLite's own message in the body.
    let retry_after = res.headers().get(RETRY_AFTER).cloned();
    let body = oauth_error(res, 503, "temporarily_unavailable").await;
    assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    let text = body.to_string().to_ascii_lowercase();
    assert!(
        !text.contains("locked") && !text.contains("sqlite"),
        "{body}"
    );

    // And once the lock is gone, the same request succeeds.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("the lock is released");
    let body = token_ok(grant().await).await;
    assert!(body["refresh_token"].is_string(), "{body}");
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app().await;

    for res in [
        get(&app, "/no/such/path").await,
        app.client
            .post(app.url("/connect/tokens"))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let content_type = res.headers().get(CONTENT_TYPE).cloned();
        assert_eq!(
            content_type.as_ref().map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let body: Value = res.json().await.expect("a JSON body");
        assert_eq!(body, serde_json::json!({ "error": "not_found" }));
    }
}

#[tokio::test]
async fn a_request_whose_body_never_arrives_gets_408() {
    // Arrange: the shortest timeout the configuration allows.
    let app = spawn_app_with(|c| c.http.request_timeout_secs = 1).await;
    let addr = app
        .address
        .strip_prefix("http://")
        .expect("an http address");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();

    // Act: announce 64 bytes of body, send a few and stall (the write half stays open: a
    // closed one would be a truncated body, a 400).
    stream
        .write_all(
            b"POST /connect/token HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 64\r\n\r\n\
              grant_type=pass",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let read_head = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("the answer is readable");
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_head)
        .await
        .expect("the server answers within 10 s");

    // Assert
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}
