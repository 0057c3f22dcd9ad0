//! The connection-level limits of the accept loop: request-head size (431), the header-read
//! timeout that closes slow-loris connections, the cap on concurrent connections, and
//! graceful shutdown that a slow client cannot hold up beyond its grace period.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("the server accepts TCP connections")
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: khoa\r\n\r\n";

/// Reads until the connection closes or `within` passes; returns what was read, or `None` if
/// the connection was still open at the deadline.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

/// The first bytes of an answer, if one comes within `within`.
async fn answer_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431() {
    let app = spawn_app_with(|c| c.http.max_header_bytes = 8192).await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-padding", "a".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 431);
    // Below the limit all is well.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-padding", "a".repeat(4_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_disconnected() {
    let app = spawn_app_with(|c| c.http.header_read_timeout_secs = 1).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"POST /connect/token HTTP/1.1\r\nHost: khoa\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    read_to_close(&mut slow, Duration::from_secs(5))
        .await
        .expect("the server closes the connection");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    // A client that sends its request at once is served as usual.
    let mut quick = connect(&app).await;
    quick.write_all(HEALTHZ).await.unwrap();
    let answer = answer_within(&mut quick, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_waits_for_a_free_slot() {
    let app = spawn_app_with(|c| c.http.max_connections = 1).await;
    let mut first = connect(&app).await;
    first.write_all(HEALTHZ).await.unwrap();
    let answer = answer_within(&mut first, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // `first` is kept alive and holds the one slot: `second` is not served…
    let mut second = connect(&app).await;
    second.write_all(HEALTHZ).await.unwrap();
    assert_eq!(
        answer_within(&mut second, Duration::from_millis(500)).await,
        None,
        "served past the cap"
    );
    // …until `first` goes.
    drop(first);
    let answer = answer_within(&mut second, Duration::from_secs(5))
        .await
        .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_bounds_a_slow_one_by_the_grace_period() {
    let app = spawn_app_with(|c| {
        c.http.shutdown_grace_secs = 1;
        c.http.header_read_timeout_secs = 30;
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // An idle kept-alive connection, and one stuck half-way through its headers.
    let mut idle = connect(&app).await;
    idle.write_all(HEALTHZ).await.unwrap();
    answer_within(&mut idle, Duration::from_secs(5))
        .await
        .unwrap();
    let mut stuck = connect(&app).await;
    stuck.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    app.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // Both connections are closed, and no new one is accepted.
    assert!(
        read_to_close(&mut idle, Duration::from_secs(2))
            .await
            .is_some()
    );
    assert!(
        read_to_close(&mut stuck, Duration::from_secs(2))
            .await
            .is_some()
    );
    assert!(
        TcpStream::connect(&address).await.is_err(),
        "still listening"
    );
}
