//! Every request, observed once: a request id (taken from `X-Request-Id` when it is sane,
//! generated otherwise, and returned in the response's `X-Request-Id`), one log line, and
//! the HTTP metrics.
//!
//! The log line names the method, the matched route template, the status, the latency, the
//! request id and the dialect. Never a header, a query string or a body: those are where
//! credentials travel. An unmatched path is logged as `unmatched`, not as the path a client
//! sent (which may be anything, a token included).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::{Metrics, with_dialect};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// What the middleware needs: the metrics, and which dialect each route template serves.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub dialects: Arc<HashMap<String, &'static str>>,
}

/// A client's request id is kept only if it is at most 64 characters of `[A-Za-z0-9._-]`:
/// anything else could forge log lines or carry a secret into them.
pub fn sane_request_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}

pub async fn observe(State(t): State<Telemetry>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id(request.headers());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let dialect = route
        .as_deref()
        .and_then(|r| t.dialects.get(r).copied())
        .unwrap_or("none");
    let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
    // Whatever the engine logs while serving this request carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = with_dialect(dialect, next.run(request))
        .instrument(span)
        .await;
    let took = start.elapsed();
    let status = response.status().as_u16();
    t.metrics.request(&route, dialect, status, took);
    // Only the rate limiter answers 429 (RFC 6585 §4), whichever dialect's shape it wears.
    if status == 429 {
        t.metrics.rate_limited(dialect);
    }
    tracing::info!(
        target: "khoa::http",
        method = %method,
        route = %route,
        status,
        latency_ms = took.as_secs_f64() * 1000.0,
        request_id = %id,
        dialect,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Libraries that, at debug or trace level, print what crosses the wire or the database
/// connection (header bytes, rejected bodies, statements): capped at `info` unless the filter
/// names them itself, so that `KHOA_LOG=trace` traces khoa, not the credentials it is sent.
const CAPPED: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "http",
    "axum",
    "tower",
    "tower_http",
    "reqwest",
    "sqlx",
    "rusqlite",
    "mio",
    "tokio",
    "runtime",
    "want",
];

/// The `tracing` filter for `spec` (`KHOA_LOG` / `RUST_LOG` syntax) with `CAPPED` applied.
pub fn log_filter(spec: &str) -> String {
    let named = |target: &str| {
        spec.split(',').any(|d| {
            let t = d.split(['=', '[']).next().unwrap_or_default().trim();
            t == target || t.starts_with(&format!("{target}::"))
        })
    };
    let mut filter = spec.to_owned();
    for target in CAPPED.iter().filter(|t| !named(t)) {
        if !filter.is_empty() {
            filter.push(',');
        }
        filter.push_str(target);
        filter.push_str("=info");
    }
    filter
}

/// Installs the global subscriber: standard error, text or one JSON object per line.
/// `RUST_LOG` wins over `spec` when set (the Rust convention).
pub fn init_logging(spec: &str, format: crate::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| spec.to_owned());
    let filter = EnvFilter::try_new(log_filter(&spec)).unwrap_or_else(|e| {
        eprintln!("invalid log filter {spec:?} ({e}); logging at info");
        EnvFilter::new(log_filter("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        crate::config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        crate::config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_level_libraries_are_capped_unless_named() {
        let f = log_filter("trace");
        assert!(f.starts_with("trace,"));
        assert!(f.contains("hyper=info") && f.contains("sqlx=info") && f.contains("axum=info"));
        let f = log_filter("info,hyper=trace,sqlx::query=debug");
        assert!(!f.contains("hyper=info"), "{f}");
        assert!(!f.contains("sqlx=info"), "{f}");
        assert!(f.contains("hyper_util=info"), "{f}");
        assert!(log_filter("").starts_with("hyper=info"));
    }

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(sane_request_id("abc-123_X.y"));
        assert!(sane_request_id(&"a".repeat(64)));
        assert!(!sane_request_id(&"a".repeat(65)));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("has space"));
        assert!(!sane_request_id("new\nline"));
        assert!(!sane_request_id("Bearer:eyJ"));
    }

    #[test]
    fn a_missing_or_insane_id_is_replaced_by_a_generated_one() {
        let mut headers = HeaderMap::new();
        let generated = request_id(&headers);
        assert_eq!(generated.len(), 32);
        assert_ne!(generated, request_id(&headers));
        headers.insert(REQUEST_ID, HeaderValue::from_static("a b"));
        assert_eq!(request_id(&headers).len(), 32);
        headers.insert(REQUEST_ID, HeaderValue::from_static("client-42"));
        assert_eq!(request_id(&headers), "client-42");
    }
}
