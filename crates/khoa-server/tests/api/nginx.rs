//! The shipped `docs/nginx/khoa-forward-auth.conf`, run by a real nginx (Debian's package at
//! `/usr/sbin/nginx`, or `$NGINX`) on a free port in front of a tiny upstream, guarded by
//! khoa's `/auth/verify`. Only the three addresses in the file are substituted, so the
//! configuration the documentation ships is the one tested. Without nginx this test fails.

use axum::http::HeaderMap;
use reqwest::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

use crate::forward_auth::{route, subject_of};
use crate::helpers::{
    FORM_CONTENT_TYPE, TestApp, access_token_of, form_body, spawn_demo_app_with, str_of, token_ok,
};
use khoa_core::model::AccessTokenFormat;
use khoa_server::config::ForwardAuthConfig;
use khoa_server::demo::{DERIVATIVE_PASSWORD, DERIVATIVE_USERNAME};

const SHIPPED_CONF: &str = include_str!("../../../../docs/nginx/khoa-forward-auth.conf");
const KHOA_ADDR: &str = "127.0.0.1:8080";
const UPSTREAM_ADDR: &str = "127.0.0.1:9000";
const LISTEN_ADDR: &str = "127.0.0.1:8000";

const USER: &str = "erin@example.test";
const PASSWORD: &str = "erin's password";
/// JWT access tokens that live 2 s (the clock counts whole seconds, see `expiry.rs`).
const SHORT_CLIENT: &str = "short-lived-app";
/// Opaque access tokens.
const READER_CLIENT: &str = "reader-app";

/// nginx running in a temporary prefix; stopped (and its workers with it) on drop.
struct Nginx {
    child: Child,
    dir: TempDir,
    base: String,
}

impl Nginx {
    /// Writes the shipped site config with `khoa` and `upstream` substituted, wraps it in a
    /// minimal main config whose every path lies in a temporary directory, and starts nginx
    /// in the foreground on a free port.
    fn start(khoa: &str, upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("temporary directory");
        let listen = free_port_addr();
        let site = substitute(
            SHIPPED_CONF,
            &[
                (KHOA_ADDR, khoa),
                (UPSTREAM_ADDR, upstream),
                (LISTEN_ADDR, &listen),
            ],
        );
        let d = dir.path().display();
        std::fs::write(dir.path().join("khoa-forward-auth.conf"), site).expect("site config");
        // As root, nginx's workers would otherwise run as `nobody`, which cannot use the temp
        // paths in a 0700 directory.
        let running_as_root = std::fs::metadata(dir.path()).expect("temp dir").uid() == 0;
        let user = if running_as_root { "user root;\n" } else { "" };
        let main = format!(
            "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log {d}/access.log;\n\
                 client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n    include {d}/khoa-forward-auth.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("main config");
        let binary = std::env::var("NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary} (Debian's nginx package): {e}"));
        let mut nginx = Nginx {
            child,
            dir,
            base: format!("http://{listen}"),
        };
        nginx.wait_until_listening(&listen);
        nginx
    }

    fn wait_until_listening(&mut self, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx does not listen:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master (a fast shutdown that takes the workers down too; SIGKILL
    /// would orphan them), SIGKILL only if it does not exit in time.
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process, whose pid we still hold unreaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` with each `from` replaced by its `to`; each must occur exactly once.
fn substitute(text: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (from, to) in pairs {
        assert_eq!(
            out.matches(from).count(),
            1,
            "{from} once in the shipped config"
        );
        out = out.replace(from, to);
    }
    out
}

fn free_port_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").to_string()
}

/// The guarded API: answers every request with what nginx passed on.
async fn spawn_upstream() -> String {
    async fn echo(
        method: axum::http::Method,
        uri: axum::http::Uri,
        h: HeaderMap,
    ) -> axum::Json<Value> {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        axum::Json(json!({
            "method": method.as_str(),
            "path": uri.path(),
            "subject": get("x-khoa-subject"),
            "client": get("x-khoa-client"),
            "scopes": get("x-khoa-scopes"),
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("upstream port");
    let addr = listener.local_addr().expect("upstream address").to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(echo)).await;
    });
    addr
}

/// The demo app (seed 000's derivative login included) with forward auth on: orders need
/// `orders`, derivative orders the OTP token on mutating methods, the rest of `/api` and
/// VietQR's Transaction Sync any valid token.
async fn khoa() -> TestApp {
    let app = spawn_demo_app_with(|c| {
        c.forward_auth = ForwardAuthConfig {
            enabled: true,
            routes: vec![
                route("/api/orders", &[], &["orders"], false),
                route("/api/derivative", &[], &[], true),
                route("/api", &[], &[], false),
                route("/bank/api/transaction-sync", &["POST"], &[], false),
            ],
            ..ForwardAuthConfig::default()
        };
    })
    .await;
    app.add_public_client(SHORT_CLIENT, "read", |c| c.policy.access_ttl = 2)
        .await;
    app.add_public_client(READER_CLIENT, "read", |c| {
        c.policy.access_format = AccessTokenFormat::Opaque;
    })
    .await;
    app.add_user(USER, PASSWORD, None).await;
    app
}

async fn send(
    nginx: &Nginx,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = crate::helpers::http_client().request(method, nginx.url(path));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.body("{\"amount\": 1}")
        .send()
        .await
        .expect("nginx answers")
}

/// nginx passed the request on: 200 and what the upstream saw.
async fn passed(res: Response) -> Value {
    let status = res.status();
    let text = res.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).expect("the upstream's JSON")
}

/// nginx refused: `status`, and the JSON body its error page wrote.
async fn refused(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let text = res.text().await.expect("a body");
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("a JSON error page ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_guards_an_upstream_with_khoa_forward_auth() {
    // Arrange
    let app = khoa().await;
    let upstream = spawn_upstream().await;
    let khoa_addr = app
        .address
        .strip_prefix("http://")
        .expect("an http address");
    let nginx = Nginx::start(khoa_addr, &upstream);
    let short = access_token_of(
        &token_ok(app.password_grant(SHORT_CLIENT, USER, PASSWORD, None).await).await,
    );
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    // A valid token passes; the upstream learns who it speaks for, and a client cannot
    // claim to be someone else with its own X-Khoa-Subject.
    let auth = format!("Bearer {short}");
    let seen = passed(
        send(
            &nginx,
            get.clone(),
            "/api/reports",
            &[("Authorization", &auth), ("X-Khoa-Subject", "mallory")],
        )
        .await,
    )
    .await;
    assert_eq!(seen["subject"], subject_of(&app, &short).await, "{seen}");
    assert_eq!(seen["client"], SHORT_CLIENT, "{seen}");
    assert_eq!(seen["scopes"], "read", "{seen}");

    // No token: 401 with khoa's bare challenge, passed on once; a spoofed subject gets nowhere.
    let res = send(
        &nginx,
        get.clone(),
        "/api/reports",
        &[("X-Khoa-Subject", "mallory")],
    )
    .await;
    let challenges: Vec<_> = res.headers().get_all(WWW_AUTHENTICATE).iter().collect();
    assert_eq!(challenges, ["Bearer realm=\"khoa\""]);
    refused(res, StatusCode::UNAUTHORIZED).await;

    // A token without the route's scope: 403 with khoa's challenge naming it.
    let res = send(
        &nginx,
        get.clone(),
        "/api/orders/1",
        &[("Authorization", &auth)],
    )
    .await;
    let challenge = res.headers().get(WWW_AUTHENTICATE).cloned();
    let body = refused(res, StatusCode::FORBIDDEN).await;
    assert_eq!(body["error"], "insufficient_scope");
    let challenge = challenge.expect("a challenge");
    assert!(
        challenge.to_str().unwrap().contains("scope=\"orders\""),
        "{challenge:?}"
    );

    // Seed 000: a derivative POST needs the session's x-otp-token; a GET does not.
    let login = app
        .post_json(
            "/oapi/auth/gen-secret-key/derivative",
            &[],
            &json!({ "username": DERIVATIVE_USERNAME, "password": DERIVATIVE_PASSWORD }),
        )
        .await;
    let login = token_ok(login).await;
    let derivative = format!("Bearer {}", access_token_of(&login));
    let otp = str_of(&login, "otp_token").to_owned();
    let path = "/api/derivative/orders";
    let res = send(
        &nginx,
        post.clone(),
        path,
        &[("Authorization", &derivative)],
    )
    .await;
    refused(res, StatusCode::FORBIDDEN).await;
    let wrong = "0".repeat(32);
    let res = send(
        &nginx,
        post.clone(),
        path,
        &[("Authorization", &derivative), ("x-otp-token", &wrong)],
    )
    .await;
    refused(res, StatusCode::FORBIDDEN).await;
    let res = send(
        &nginx,
        post.clone(),
        path,
        &[("Authorization", &derivative), ("x-otp-token", &otp)],
    )
    .await;
    let seen = passed(res).await;
    assert_eq!(seen["method"], "POST");
    let derivative_sub = subject_of(&app, &access_token_of(&login)).await;
    assert_eq!(seen["subject"], derivative_sub, "{seen}");
    passed(send(&nginx, get.clone(), path, &[("Authorization", &derivative)]).await).await;

    // A revoked token, opaque or JWT, is refused (RFC 7009 revocation by its client).
    for client in [READER_CLIENT, SHORT_CLIENT] {
        let body = token_ok(app.password_grant(client, USER, PASSWORD, None).await).await;
        let token = access_token_of(&body);
        let revoked = format!("Bearer {token}");
        let reports = "/api/reports";
        passed(send(&nginx, get.clone(), reports, &[("Authorization", &revoked)]).await).await;
        revoke(&app, client, &token).await;
        let res = send(&nginx, get.clone(), reports, &[("Authorization", &revoked)]).await;
        let challenge = res.headers().get(WWW_AUTHENTICATE).cloned();
        refused(res, StatusCode::UNAUTHORIZED).await;
        let challenge = format!("{challenge:?}");
        assert!(challenge.contains("invalid_token"), "{client}: {challenge}");
    }

    // VietQR's Transaction Sync: a bad token gets VietQR's own refusal, E74.
    let res = send(
        &nginx,
        post.clone(),
        "/bank/api/transaction-sync",
        &[("Authorization", "Bearer nope")],
    )
    .await;
    let body = refused(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        body,
        json!({ "error": true, "errorReason": "E74", "toastMessage": "Invalid or expired token", "object": null })
    );
    let seen = passed(
        send(
            &nginx,
            post.clone(),
            "/bank/api/transaction-sync",
            &[("Authorization", &derivative)],
        )
        .await,
    )
    .await;
    assert_eq!(seen["path"], "/bank/api/transaction-sync");

    // The short-lived token, once expired, is refused.
    app.advance(3);
    let res = send(
        &nginx,
        get.clone(),
        "/api/reports",
        &[("Authorization", &auth)],
    )
    .await;
    refused(res, StatusCode::UNAUTHORIZED).await;

    // khoa down: a 503 to retry, in each style, never a 401 or a bare 500.
    app.stop().await;
    let res = send(
        &nginx,
        get.clone(),
        "/api/reports",
        &[("Authorization", &derivative)],
    )
    .await;
    assert_eq!(
        res.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let body = refused(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"], "temporarily_unavailable");
    let res = send(
        &nginx,
        post,
        "/bank/api/transaction-sync",
        &[("Authorization", &derivative)],
    )
    .await;
    let body = refused(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["errorReason"], "E05");
}

/// RFC 7009 revocation of an access token by the public client it was issued to.
async fn revoke(app: &TestApp, client_id: &str, token: &str) {
    let form = form_body(&[
        ("token", token),
        ("token_type_hint", "access_token"),
        ("client_id", client_id),
    ]);
    let res = app
        .send(
            reqwest::Method::POST,
            "/connect/revocation",
            &[("Content-Type", FORM_CONTENT_TYPE)],
            Some(form.into_bytes()),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
