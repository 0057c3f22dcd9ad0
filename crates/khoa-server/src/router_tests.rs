//! The router tier (STYLE 14): every built-in dialect's refusal shapes through
//! [`crate::startup::router`] with `oneshot`, no listener and no HTTP client (axum
//! `examples/testing`). The refusals here are answered before the engine is asked, so they
//! show each definition's own error shape, status and headers at every one of its endpoints.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use crate::config::{Config, PasswordHashConfig};
use crate::startup::{App, router};

/// The error body's members at each endpoint, in order: the shape the definitions give.
const SHAPES: [(&str, &[&str]); 13] = [
    ("/connect/token", &["error", "error_description"]),
    ("/connect/revocation", &["error", "error_description"]),
    ("/connect/introspect", &["error", "error_description"]),
    (
        "/oapi/auth/gen-secret-key/derivative",
        &["code", "messageParams", "params", "source", "message"],
    ),
    (
        "/oapi/auth/gen-secret-key/underlying",
        &["code", "messageParams", "params", "source", "message"],
    ),
    ("/v1/token", &["code", "message", "errors"]),
    ("/openapi/v1/auth/login", &["status", "error", "message"]),
    ("/openapi/v1/auth/refresh", &["status", "error", "message"]),
    ("/vqr/api/token_generate", &["status", "message"]),
    (
        "/bank/api/transaction-sync",
        &["error", "errorReason", "toastMessage", "object"],
    ),
    // khoa's own endpoints answer in RFC 6749 §5.2's shape.
    ("/api/protected-resource", &["error", "error_description"]),
    ("/connect/userinfo", &["error", "error_description"]),
    ("/connect/revoked-jwts", &["error", "error_description"]),
];

async fn app(dir: &std::path::Path) -> axum::Router {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.join("khoa.db").display()),
        master_key_file: Some(dir.join("master.key")),
        password_hash: PasswordHashConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 0,
            max_queue: 0,
        },
        ..Config::default()
    };
    config = crate::demo::demo_config(config);
    let app = App::build(config.clone()).await.expect("the app builds");
    router(app.state().clone(), &config)
}

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, header::HeaderMap, Value) {
    let res = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router answers");
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, body)
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_wrong_method_is_405_in_each_endpoints_own_shape_with_allow() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(dir.path()).await;
    for (path, shape) in SHAPES {
        let (status, headers, body) = call(
            &router,
            Request::builder()
                .method(Method::OPTIONS)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}: {body}");
        assert_eq!(keys(&body), shape, "{path}: {body}");
        assert!(headers.contains_key(header::ALLOW), "{path}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_what_the_endpoint_reads_is_400_in_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(dir.path()).await;
    // The token endpoints that read a body, each given one it cannot read.
    for (path, shape) in SHAPES.iter().filter(|(p, _)| {
        !matches!(
            *p,
            "/api/protected-resource" | "/connect/userinfo" | "/connect/revoked-jwts"
        )
    }) {
        let (status, headers, body) = call(
            &router,
            Request::builder()
                .method(Method::POST)
                .uri(*path)
                .header(header::CONTENT_TYPE, "application/json")
                .header("Partner-Code", "P")
                .header(header::AUTHORIZATION, "Basic YTpi")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
        // The Transaction Sync API checks its bearer token first: 401, the same shape.
        let want = if *path == "/bank/api/transaction-sync" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, want, "{path}: {body}");
        assert_eq!(keys(&body), *shape, "{path}: {body}");
        assert_eq!(
            headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_in_each_shape() {
    let dir = tempfile::tempdir().unwrap();
    let router = app(dir.path()).await;
    let big = vec![b'x'; 2 << 20];
    for (path, shape) in SHAPES.iter().take(10) {
        let (status, _, body) = call(
            &router,
            Request::builder()
                .method(Method::POST)
                .uri(*path)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, big.len())
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {body}");
        assert_eq!(keys(&body), *shape, "{path}: {body}");
    }
}
