//! Refusals at the protocol level, per dialect (issue 13 §4): repeated credential headers (400),
//! a declared or streamed body over `http.max_body_bytes` (413 at once, RFC 9110 §15.5.14), a
//! wrong method (405), a request that never finishes (408), a body the endpoint cannot read
//! (400) — each in the shape of the dialect that owns the path. And readiness while writes
//! fail: `/readyz` answers 503 while every write would, on a real full disk (a file-size limit
//! on a real `khoa serve`), and 200 again once writes work.
//!
//! A head over `http.max_header_bytes` reaches the router (hyper's buffer cap is twice the
//! limit) and gets the dialect-shaped 431 of `khoa_server::protocol`: its router tests
//! (`protocol::tests`) and `abuse_http::a_request_head_over_the_limit_gets_431`.

use khoa_server::demo::{
    BANKHUB_CLIENT, BANKHUB_SECRET, DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME,
    OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET, PARTNER_CODE, VIETQR_PASSWORD, VIETQR_USERNAME,
};
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cli::{khoa_on, migrated, ok};
use crate::helpers::{
    FORM_CONTENT_TYPE, TestApp, basic_auth, form_body, json_body, plain_basic, spawn_demo_app,
    spawn_demo_app_with, str_of,
};

const OAUTH2_TOKEN: &str = "/connect/token";
const OAUTH2_REVOCATION: &str = "/connect/revocation";
const OAUTH2_INTROSPECTION: &str = "/connect/introspect";
const OAUTH2_REVOKED_JWTS: &str = "/connect/revoked-jwts";
const DERIVATIVE: &str = "/oapi/auth/gen-secret-key/derivative";
const BANKHUB: &str = "/v1/token";
const PARTNER_LOGIN: &str = "/openapi/v1/auth/login";
const PARTNER_REFRESH: &str = "/openapi/v1/auth/refresh";
const VIETQR_TOKEN: &str = "/vqr/api/token_generate";
const VIETQR_SYNC: &str = "/bank/api/transaction-sync";
const PROTECTED: &str = "/api/protected-resource";
const USERINFO: &str = "/connect/userinfo";

/// How long a raw exchange may take: far below the request timeout the tests configure
/// ([`LONG_TIMEOUT_SECS`]), so that an answer after the timeout (a 408) cannot pass.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
const LONG_TIMEOUT_SECS: u64 = 300;
/// The body limit the tests configure.
const LIMIT: usize = 1024;

// ---- each dialect's error shape ----

/// The error shape of the dialect that owns `path`, asserted on `body` with `status`.
fn assert_shape(path: &str, status: u16, body: &Value) {
    match path {
        OAUTH2_TOKEN | OAUTH2_REVOCATION | OAUTH2_INTROSPECTION | OAUTH2_REVOKED_JWTS
        | PROTECTED | USERINFO => {
            assert!(body["error"].is_string(), "{path}: {body}");
            assert!(body["error_description"].is_string(), "{path}: {body}");
        }
        DERIVATIVE => {
            assert_eq!(body["code"], "OAPI_FNO_500", "{path}: {body}");
            assert_eq!(body["messageParams"]["error"], "server_error", "{body}");
            assert_eq!(body["source"], "oapi-bridge-fno", "{body}");
            let description = str_of(&body["messageParams"], "error_description");
            assert!(description.starts_with('-'), "a numeric code first: {body}");
        }
        BANKHUB => {
            assert_eq!(body["code"], status, "{path}: {body}");
            assert!(body["message"].is_string(), "{path}: {body}");
            assert_eq!(body["errors"], Value::Null, "{path}: {body}");
        }
        PARTNER_LOGIN | PARTNER_REFRESH => {
            assert_eq!(body["status"], status, "{path}: {body}");
            assert!(body["error"].is_string(), "{path}: {body}");
            assert!(body["message"].is_string(), "{path}: {body}");
        }
        VIETQR_TOKEN => {
            assert_eq!(body["status"], "FAILED", "{path}: {body}");
            assert!(str_of(body, "message").starts_with('E'), "{path}: {body}");
        }
        VIETQR_SYNC => {
            assert_eq!(body["error"], true, "{path}: {body}");
            assert!(str_of(body, "errorReason").starts_with('E'), "{body}");
            assert!(body["toastMessage"].is_string(), "{path}: {body}");
        }
        other => panic!("no shape known for {other}"),
    }
}

/// Every dialect path whose endpoint takes `POST`.
const POST_PATHS: [&str; 9] = [
    OAUTH2_TOKEN,
    OAUTH2_REVOCATION,
    OAUTH2_INTROSPECTION,
    DERIVATIVE,
    BANKHUB,
    PARTNER_LOGIN,
    PARTNER_REFRESH,
    VIETQR_TOKEN,
    VIETQR_SYNC,
];

// ---- raw HTTP/1.1, for what reqwest will not send ----

struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Writes `request` on a fresh connection, keeps the write half open (a closed one would be a
/// truncated body), and reads one answer within [`ANSWER_WITHIN`].
async fn exchange(app: &TestApp, request: &[u8]) -> Answer {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("the server accepts");
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + length {
                    return;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(ANSWER_WITHIN, read)
        .await
        .unwrap_or_else(|_| panic!("no answer within {ANSWER_WITHIN:?}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {text}"));
    Answer {
        status,
        head: head.to_owned(),
        body,
    }
}

fn content_type_of(path: &str) -> &'static str {
    match path {
        OAUTH2_TOKEN | OAUTH2_REVOCATION | OAUTH2_INTROSPECTION => FORM_CONTENT_TYPE,
        _ => "application/json",
    }
}

async fn demo_app() -> TestApp {
    spawn_demo_app_with(|c| {
        c.http.max_body_bytes = LIMIT;
        c.http.request_timeout_secs = LONG_TIMEOUT_SECS;
    })
    .await
}

// ---- 413 ----

#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_at_once_in_each_dialects_shape() {
    let app = demo_app().await;
    for path in POST_PATHS {
        // Headers only: the body announced is never sent. Waiting for it would end in the 408
        // of the (long) request timeout, past `ANSWER_WITHIN`.
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: khoa\r\nContent-Type: {}\r\n\
             Content-Length: 1073741824\r\n\r\n",
            content_type_of(path)
        );

        let answer = exchange(&app, request.as_bytes()).await;

        assert_eq!(answer.status, 413, "{path}: {}", answer.head);
        assert_shape(path, 413, &answer.body);
    }
}

#[tokio::test]
async fn a_chunked_body_that_passes_the_limit_is_413_in_each_dialects_shape() {
    let app = demo_app().await;
    let bearer = vietqr_bearer(&app).await;
    let chunk = "a".repeat(LIMIT);
    for path in POST_PATHS {
        // What the endpoint checks before it reads a body, present and right.
        let credentials = match path {
            PARTNER_LOGIN | PARTNER_REFRESH => format!("Partner-Code: {PARTNER_CODE}\r\n"),
            VIETQR_SYNC => format!("Authorization: Bearer {bearer}\r\n"),
            _ => String::new(),
        };
        // No length declared; two chunks pass the limit, and the body never ends.
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: khoa\r\nContent-Type: {}\r\n{credentials}\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n",
            content_type_of(path),
            chunk.len(),
            chunk.len()
        );

        let answer = exchange(&app, request.as_bytes()).await;

        assert_eq!(answer.status, 413, "{path}: {}", answer.head);
        assert_shape(path, 413, &answer.body);
    }
}

// ---- 405, 408, 400 ----

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_in_each_dialects_shape() {
    let app = spawn_demo_app().await;
    for path in POST_PATHS {
        let res = app.send(Method::GET, path, &[], None).await;

        let allow = res.headers().get("allow").cloned();
        let body = json_body(res, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(
            allow.as_ref().map(|v| v.as_bytes()),
            Some(&b"POST"[..]),
            "{path}"
        );
        assert_shape(path, 405, &body);
    }
    let res = app.send(Method::POST, OAUTH2_REVOKED_JWTS, &[], None).await;
    let body = json_body(res, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_shape(OAUTH2_REVOKED_JWTS, 405, &body);
}

#[tokio::test]
async fn a_request_that_never_finishes_is_408_in_each_dialects_shape() {
    // The shortest timeout the configuration allows; `exchange` waits well beyond it.
    let app = spawn_demo_app_with(|c| c.http.request_timeout_secs = 1).await;
    for path in POST_PATHS {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: khoa\r\nContent-Type: {}\r\n\
             Content-Length: 64\r\n\r\n{{\"a",
            content_type_of(path)
        );

        let answer = exchange(&app, request.as_bytes()).await;

        assert_eq!(answer.status, 408, "{path}: {}", answer.head);
        assert_shape(path, 408, &answer.body);
    }
}

#[tokio::test]
async fn a_body_the_endpoint_cannot_read_is_400_in_each_dialects_shape() {
    let app = spawn_demo_app().await;
    let bearer = vietqr_bearer(&app).await;
    for path in POST_PATHS {
        // Not UTF-8, not JSON, not a form: nothing any endpoint takes.
        let mut headers = vec![("Content-Type", content_type_of(path))];
        let auth = format!("Bearer {bearer}");
        if path == VIETQR_SYNC {
            headers.push(("Authorization", &auth));
        }
        if path.starts_with("/openapi/") {
            headers.push(("Partner-Code", PARTNER_CODE));
        }
        let res = app
            .send(Method::POST, path, &headers, Some(b"\xff\xfe[".to_vec()))
            .await;

        let body = json_body(res, StatusCode::BAD_REQUEST).await;
        assert_shape(path, 400, &body);
    }
}

// ---- repeated credential headers ----

async fn vietqr_bearer(app: &TestApp) -> String {
    let basic = plain_basic(VIETQR_USERNAME, VIETQR_PASSWORD);
    let res = app
        .send(
            Method::POST,
            VIETQR_TOKEN,
            &[("Authorization", &basic)],
            None,
        )
        .await;
    str_of(&json_body(res, StatusCode::OK).await, "access_token").to_owned()
}

/// A token of the demo's confidential OAuth 2.0 client, and its Basic header.
async fn oauth2_service_token(app: &TestApp) -> (String, String) {
    let basic = basic_auth(OAUTH2_SERVICE_CLIENT, OAUTH2_SERVICE_SECRET);
    let res = app
        .send(
            Method::POST,
            OAUTH2_TOKEN,
            &[
                ("Authorization", &basic),
                ("Content-Type", FORM_CONTENT_TYPE),
            ],
            Some(form_body(&[("grant_type", "client_credentials")]).into_bytes()),
        )
        .await;
    let token = str_of(&json_body(res, StatusCode::OK).await, "access_token").to_owned();
    (token, basic)
}

async fn post_form(app: &TestApp, path: &str, auths: &[&str], form: &str) -> reqwest::Response {
    let mut headers = vec![("Content-Type", FORM_CONTENT_TYPE)];
    headers.extend(auths.iter().map(|a| ("Authorization", *a)));
    app.send(Method::POST, path, &headers, Some(form.as_bytes().to_vec()))
        .await
}

#[tokio::test]
async fn a_repeated_authorization_header_is_400_at_the_oauth2_endpoints() {
    let app = spawn_demo_app().await;
    let (token, basic) = oauth2_service_token(&app).await;
    let other = basic_auth("someone-else", "another secret");
    let token_form = form_body(&[("grant_type", "client_credentials")]);
    let introspect_form = form_body(&[("token", &token)]);
    for (path, form) in [
        (OAUTH2_TOKEN, &token_form),
        (OAUTH2_REVOCATION, &introspect_form),
        (OAUTH2_INTROSPECTION, &introspect_form),
    ] {
        // The first header alone would do (introspection first: revocation ends the token).
        if path != OAUTH2_REVOCATION {
            let alone = post_form(&app, path, &[&basic], form).await;
            assert_eq!(alone.status(), StatusCode::OK, "{path}");
        }

        let res = post_form(&app, path, &[&basic, &other], form).await;

        let body = json_body(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["error"], "invalid_request", "{path}: {body}");
    }
    let res = app
        .send(
            Method::GET,
            OAUTH2_REVOKED_JWTS,
            &[("Authorization", &basic), ("Authorization", &other)],
            None,
        )
        .await;
    let body = json_body(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn a_repeated_authorization_header_is_400_at_bankhub_and_vietqr() {
    let app = spawn_demo_app().await;
    let bankhub = plain_basic(BANKHUB_CLIENT, BANKHUB_SECRET);
    let vietqr = plain_basic(VIETQR_USERNAME, VIETQR_PASSWORD);
    let other = plain_basic("someone-else", "another secret");
    for (path, good, ok_status) in [
        (BANKHUB, &bankhub, StatusCode::CREATED),
        (VIETQR_TOKEN, &vietqr, StatusCode::OK),
    ] {
        let alone = app
            .send(Method::POST, path, &[("Authorization", good)], None)
            .await;
        assert_eq!(
            alone.status(),
            ok_status,
            "{path}: the first header alone would do"
        );

        let res = app
            .send(
                Method::POST,
                path,
                &[("Authorization", good), ("Authorization", &other)],
                None,
            )
            .await;

        let body = json_body(res, StatusCode::BAD_REQUEST).await;
        assert_shape(path, 400, &body);
    }
}

#[tokio::test]
async fn a_repeated_partner_code_header_is_400_in_the_partner_shape() {
    let app = spawn_demo_app().await;
    for path in [PARTNER_LOGIN, PARTNER_REFRESH] {
        let res = app
            .post_json(
                path,
                &[("Partner-Code", PARTNER_CODE), ("Partner-Code", "OTHER")],
                &json!({ "data": "00" }),
            )
            .await;

        let body = json_body(res, StatusCode::BAD_REQUEST).await;
        assert_shape(path, 400, &body);
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(str_of(&body, "message").contains("repeated"), "{body}");
    }
}

#[tokio::test]
async fn a_repeated_bearer_is_400_at_the_protected_resource_userinfo_and_transaction_sync() {
    let app = spawn_demo_app().await;
    let (oauth2, _) = oauth2_service_token(&app).await;
    let vietqr = vietqr_bearer(&app).await;
    for (path, token) in [
        (PROTECTED, &oauth2),
        (USERINFO, &oauth2),
        (VIETQR_SYNC, &vietqr),
    ] {
        let bearer = format!("Bearer {token}");
        if path != USERINFO {
            // (userinfo would refuse this token for want of `openid`, 403, a different test.)
            let alone = app
                .post_json(path, &[("Authorization", &bearer)], &json!({}))
                .await;
            assert_eq!(
                alone.status(),
                StatusCode::OK,
                "{path}: one header would do"
            );
        }

        let res = app
            .post_json(
                path,
                &[
                    ("Authorization", &bearer),
                    ("Authorization", "Bearer other"),
                ],
                &json!({}),
            )
            .await;

        let challenge = res.headers().get("www-authenticate").cloned();
        let body = json_body(res, StatusCode::BAD_REQUEST).await;
        assert_shape(path, 400, &body);
        if path != VIETQR_SYNC {
            assert_eq!(body["error"], "invalid_request", "{body}");
            let challenge = challenge.expect("an RFC 6750 §3 challenge");
            assert!(
                challenge
                    .to_str()
                    .unwrap()
                    .contains("error=\"invalid_request\""),
                "{challenge:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_repeated_otp_header_is_400_at_the_protected_resource() {
    let app = spawn_demo_app().await;
    let login = json!({ "username": DERIVATIVE_USERNAME, "password": DERIVATIVE_PASSWORD });
    let tokens = json_body(app.post_json(DERIVATIVE, &[], &login).await, StatusCode::OK).await;
    let bearer = format!("Bearer {}", str_of(&tokens, "access_token"));
    let otp = str_of(&tokens, "otp_token");
    let alone = app
        .post_json(
            PROTECTED,
            &[("Authorization", &bearer), ("x-otp-token", otp)],
            &json!({}),
        )
        .await;
    assert_eq!(alone.status(), StatusCode::OK, "one OTP header would do");

    let res = app
        .post_json(
            PROTECTED,
            &[
                ("Authorization", &bearer),
                ("x-otp-token", otp),
                ("x-otp-token", "another"),
            ],
            &json!({}),
        )
        .await;

    let body = json_body(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["error"], "invalid_request", "{body}");
}

// ---- writes that fail: VietQR's E05, and readiness ----

/// Holds the test database's write lock, as another process can; the writer's short busy
/// timeout then fails every write as unavailable.
async fn hold_write_lock(app: &TestApp) -> sqlx::SqliteConnection {
    let mut holder = SqliteConnectOptions::from_str(&app.config.database_url)
        .expect("the test database URL")
        .connect()
        .await
        .expect("a second connection to the test database");
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("the write lock");
    holder
}

#[tokio::test]
async fn vietqr_e05_carries_retry_after_and_readiness_follows_failing_writes() {
    let app = spawn_demo_app_with(|c| c.database.busy_timeout_ms = 50).await;
    let basic = plain_basic(VIETQR_USERNAME, VIETQR_PASSWORD);
    let headers = [("Authorization", basic.as_str())];
    let token = || app.send(Method::POST, VIETQR_TOKEN, &headers, None);
    let ready = || app.send(Method::GET, "/readyz", &[], None);
    assert_eq!(ready().await.status(), StatusCode::OK);
    let mut holder = hold_write_lock(&app).await;

    // VietQR's opaque token must be stored: the write fails, E05 with when to retry.
    let res = token().await;
    let retry_after = res.headers().get(RETRY_AFTER).cloned();
    let body = json_body(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body, json!({ "status": "FAILED", "message": "E05" }));
    assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    // Every write would fail as that one did: not ready.
    assert_eq!(ready().await.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The lock goes: readiness finds out by itself (its probe write), with no token request.
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(ready().await.status(), StatusCode::OK);
    assert_eq!(token().await.status(), StatusCode::OK);
}

/// A real full disk, without root: `khoa serve` in a child process whose file-size limit
/// (`RLIMIT_FSIZE`) stops the database's files from growing past `limit` bytes. A write past it
/// fails with `EFBIG` (`SIGXFSZ` ignored in the child, as a server on a full disk gets
/// `ENOSPC`), which SQLite reports as an I/O error, exactly the path a full disk takes. Raising
/// the limit on the running process (`prlimit(2)`, allowed on one's own child up to its hard
/// limit) is freeing space.
#[tokio::test]
async fn readyz_is_503_while_the_disk_is_full_and_200_once_writes_work_again() {
    // Arrange: a database and a client, made while the disk has room.
    let dir = migrated().await;
    let secret = "disk-full-client-secret-0123456789abcdef";
    ok(
        dir.path(),
        &[
            "client",
            "add",
            "svc",
            "--secret-stdin",
            "--token-format",
            "opaque",
        ],
        Some(&format!("{secret}\n")),
    )
    .await;
    let db_size = std::fs::metadata(dir.path().join("khoa.db")).unwrap().len();
    // The WAL (empty at start) may grow to about this much: some tokens fit, then none.
    let limit = db_size + 256 * 1024;
    let mut cmd = khoa_on(dir.path());
    cmd.env("KHOA_LISTEN", "127.0.0.1:0")
        .env("KHOA_LOG", "info")
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
    unsafe {
        cmd.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut server = cmd.spawn().expect("khoa serve starts");
    let pid = server.id().expect("a running child") as libc::pid_t;
    // The address from its log line: port 0, no race for a free port, no polling.
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("khoa listening")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                return addr.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("khoa serve exited before listening");
    })
    .await
    .expect("khoa serve listens within 30 s");
    // Keep draining its log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    let http = crate::helpers::http_client();
    let base = format!("http://{addr}");
    let ready = || http.get(format!("{base}/readyz")).send();
    let token = || {
        http.post(format!("{base}{OAUTH2_TOKEN}"))
            .basic_auth("svc", Some(secret))
            .header("Content-Type", FORM_CONTENT_TYPE)
            .body(form_body(&[("grant_type", "client_credentials")]))
            .send()
    };
    assert_eq!(ready().await.unwrap().status(), StatusCode::OK);

    // Act: issue (stored, opaque) tokens until the disk is full.
    let mut issued = 0;
    let refused = loop {
        let res = token().await.unwrap();
        if res.status() != StatusCode::OK {
            break res;
        }
        issued += 1;
        assert!(issued < 10_000, "the file-size limit never stopped a write");
    };

    // Assert: that write was refused as unavailable, and readiness says so.
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        issued > 0,
        "the server issued nothing before the disk filled"
    );
    assert_eq!(
        ready().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        ready().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "still not ready: its own probe write fails too"
    );

    // Space again: readiness recovers on its own, and tokens are issued.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain system call on our own child's id.
    let raised =
        unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &unlimited, std::ptr::null_mut()) };
    assert_eq!(raised, 0, "{}", std::io::Error::last_os_error());
    assert_eq!(ready().await.unwrap().status(), StatusCode::OK);
    assert_eq!(token().await.unwrap().status(), StatusCode::OK);
    server.start_kill().unwrap();
    let _ = server.wait().await;
}

#[tokio::test]
async fn the_openapi_document_lists_these_refusals_for_every_dialect_operation() {
    let app = spawn_demo_app().await;
    let res = app.send(Method::GET, "/openapi.json", &[], None).await;
    let doc = json_body(res, StatusCode::OK).await;
    for path in POST_PATHS {
        let responses = &doc["paths"][path]["post"]["responses"];
        for status in ["400", "408", "413", "431"] {
            assert!(responses[status].is_object(), "{path} lacks {status}");
        }
    }
}
