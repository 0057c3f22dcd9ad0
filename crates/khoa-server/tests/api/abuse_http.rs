//! The connection-level limits of the accept loop: request-head size (431), the header-read
//! timeout that closes slow-loris connections, the cap on concurrent connections and on those
//! of one address, idle connections closed to make room for newcomers, and graceful shutdown
//! that a slow client cannot hold up beyond its grace period.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("the server accepts TCP connections")
}

/// A TCP connection to the app from the loopback address `source` (all of 127/8 is loopback
/// on Linux), not yet used.
async fn connect_from(app: &TestApp, source: [u8; 4]) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("a loopback source address");
    socket
        .connect(app.address.trim_start_matches("http://").parse().unwrap())
        .await
        .expect("the server accepts TCP connections")
}

/// Whether the server closed `stream`: EOF or a reset, without waiting.
fn closed_now(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
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
    // On a dialect's path, in that dialect's error shape (RFC 6585 §5).
    let res = app
        .client
        .post(app.url("/connect/token"))
        .header("x-padding", "a".repeat(10_000))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 431);
    let body: serde_json::Value = res.json().await.expect("a JSON error body");
    assert!(body["error"].is_string(), "{body}");
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
async fn past_the_connection_cap_a_newcomer_waits_for_a_busy_connection_to_finish() {
    let app = spawn_app_with(|c| c.http.max_connections = 1).await;
    // `first` holds the one slot with a request in flight: its body is still to come.
    // `Expect: 100-continue` makes the server say when the handler starts reading it.
    let mut first = connect_from(&app, [127, 0, 0, 2]).await;
    first
        .write_all(
            b"POST /connect/token HTTP/1.1\r\nHost: khoa\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Expect: 100-continue\r\nContent-Length: 29\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = answer_within(&mut first, Duration::from_secs(5))
        .await
        .expect("100 Continue");
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer}");
    // A busy connection is not closed for a newcomer, who is not served…
    let mut second = connect_from(&app, [127, 0, 0, 3]).await;
    second.write_all(HEALTHZ).await.unwrap();
    assert_eq!(
        answer_within(&mut second, Duration::from_millis(500)).await,
        None,
        "served past the cap"
    );
    // …until `first` is answered: idle then, it is closed to make room.
    first
        .write_all(b"grant_type=client_credentials")
        .await
        .unwrap();
    let answer = read_to_close(&mut first, Duration::from_secs(5))
        .await
        .expect("answered, then closed for the newcomer");
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let answer = answer_within(&mut second, Duration::from_secs(5))
        .await
        .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn one_address_at_its_cap_is_closed_and_cannot_crowd_out_other_clients() {
    let app = spawn_app_with(|c| {
        c.http.max_connections = 64;
        c.http.max_connections_per_ip = Some(16);
        // The admitted idle sockets must outlive the test, not the header-read timeout.
        c.http.header_read_timeout_secs = 60;
    })
    .await;
    // 40 idle sockets from 127.0.0.2, as the abusive client did with 1,100.
    let mut abuser = Vec::new();
    for _ in 0..40 {
        abuser.push(connect_from(&app, [127, 0, 0, 2]).await);
    }
    // Another client is served at once: it was queued behind all 40, so by its answer every
    // one of them has been accepted, and admitted or closed.
    let started = Instant::now();
    let mut other = connect_from(&app, [127, 0, 0, 1]).await;
    other.write_all(HEALTHZ).await.unwrap();
    let answer = answer_within(&mut other, Duration::from_secs(5))
        .await
        .expect("another address is served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    // The 24 beyond the cap were closed at once; their FINs may still be on their way.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = abuser.iter().filter(|s| closed_now(s)).count();
    while closed < 24 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        closed = abuser.iter().filter(|s| closed_now(s)).count();
    }
    assert_eq!(closed, 24, "closed beyond the cap of 16");
    // …and the 16 admitted are open still.
    abuser.retain(|s| !closed_now(s));
    assert_eq!(abuser.len(), 16);
    // One of them closing makes room for its address again.
    abuser.pop();
    let served = async {
        loop {
            let mut again = connect_from(&app, [127, 0, 0, 2]).await;
            again.write_all(HEALTHZ).await.unwrap();
            if let Some(answer) = answer_within(&mut again, Duration::from_secs(2)).await {
                return answer;
            }
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the address is admitted again below its cap");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn when_every_slot_is_taken_the_longest_idle_keep_alive_connection_makes_room() {
    let app = spawn_app_with(|c| c.http.max_connections = 2).await;
    // Three addresses: the per-address cap (here 2 as well) is not what is tested.
    let mut oldest = connect_from(&app, [127, 0, 0, 2]).await;
    oldest.write_all(HEALTHZ).await.unwrap();
    assert!(
        answer_within(&mut oldest, Duration::from_secs(5))
            .await
            .is_some()
    );
    let mut recent = connect_from(&app, [127, 0, 0, 3]).await;
    recent.write_all(HEALTHZ).await.unwrap();
    assert!(
        answer_within(&mut recent, Duration::from_secs(5))
            .await
            .is_some()
    );
    // Both kept alive and idle, every slot taken: a newcomer is served all the same…
    let mut newcomer = connect_from(&app, [127, 0, 0, 1]).await;
    newcomer.write_all(HEALTHZ).await.unwrap();
    let answer = answer_within(&mut newcomer, Duration::from_secs(5))
        .await
        .expect("the newcomer is served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // …because the connection idle longest was closed, without an answer, before it got in.
    assert_eq!(
        read_to_close(&mut oldest, Duration::from_secs(5)).await,
        Some(String::new())
    );
    // The other one is still open and still served.
    recent.write_all(HEALTHZ).await.unwrap();
    let answer = answer_within(&mut recent, Duration::from_secs(5))
        .await
        .expect("the more recent connection is kept");
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
