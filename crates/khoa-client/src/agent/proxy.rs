//! The forwarding handler: `/NAME/<path>?<query>` → the upstream's `<base_url>/<path>?<query>`
//! with its token, and the agent's own `/_khoa/healthz` and `/_khoa/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde_json::json;

use super::config::{RESERVED, Upstream};
use super::metrics::Metrics;
use crate::{Error, SendError};

/// The largest request body the agent buffers (it must, to send a request again after a 401).
pub const MAX_BODY: usize = 10 * 1024 * 1024;

pub(crate) struct Shared {
    pub upstreams: BTreeMap<String, Upstream>,
    pub metrics: Metrics,
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(&format!("/{RESERVED}/healthz"), get(healthz))
        .route(&format!("/{RESERVED}/metrics"), get(metrics))
        .fallback(forward)
        .with_state(shared)
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

/// A refusal of the agent's own, as JSON naming the upstream.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    upstream: String,
    message: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn new(status: StatusCode, error: &'static str, upstream: &str, message: String) -> Self {
        Refusal {
            status,
            error,
            upstream: upstream.to_owned(),
            message,
            retry_after: None,
        }
    }

    /// A token the source could not get: "later" (503) when waiting may help, else 502.
    fn token(upstream: &str, e: &Error) -> Self {
        let (status, error, retry_after) = match e {
            Error::Unavailable { retry_after, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                *retry_after,
            ),
            Error::BackingOff { wait, last } if last.is_transient() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                Some(*wait),
            ),
            Error::Config(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "agent_misconfigured",
                None,
            ),
            _ => (StatusCode::BAD_GATEWAY, "token_refused", None),
        };
        Refusal {
            retry_after,
            ..Refusal::new(status, error, upstream, e.to_string())
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.error,
            "upstream": self.upstream,
            "message": self.message,
        });
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: never "0", which would invite an immediate retry.
            let secs = wait.as_millis().div_ceil(1000).max(1);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
        }
        res
    }
}

/// Every request that is not the agent's own.
async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let (name, rest) = split(request.uri().path());
    let (name, rest) = (name.to_owned(), rest.to_owned());
    let Some(upstream) = shared.upstreams.get(&name) else {
        let known: Vec<&str> = shared.upstreams.keys().map(String::as_str).collect();
        let message = format!(
            "no upstream `{name}`; call http://AGENT/NAME/<path> with NAME one of: {}",
            known.join(", ")
        );
        tracing::debug!(target: "khoa::agent", upstream = %name, "no such upstream");
        return Refusal::new(StatusCode::NOT_FOUND, "unknown_upstream", &name, message)
            .into_response();
    };
    shared.metrics.forwarded(&name);
    let res = match send(upstream, request, &rest).await {
        Ok(res) => res,
        Err(refusal) => refusal.into_response(),
    };
    let status = res.status().as_u16();
    shared.metrics.answered(&name, status);
    // The path without its query, where credentials sometimes travel; never a header or body.
    tracing::info!(
        target: "khoa::agent",
        upstream = %name,
        method = %method,
        path = %rest,
        status,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "forwarded"
    );
    res
}

/// `/NAME/rest` → (`NAME`, `/rest`); `/NAME` → (`NAME`, ``).
fn split(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.find('/') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    }
}

/// Whether a path has a `.` or `..` segment (also percent-encoded): a URL parser resolves
/// them, so `/NAME/../x` would leave the upstream's base path.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    })
}

async fn send(upstream: &Upstream, request: Request, rest: &str) -> Result<Response, Refusal> {
    let name = upstream.name.as_str();
    if has_dot_segment(rest) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            name,
            "the path has a `.` or `..` segment".into(),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = read_body(body, name).await?;
    let mut url = format!("{}{rest}", upstream.base);
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let had_length = parts.headers.contains_key(header::CONTENT_LENGTH);
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    // The caller's own credentials never reach the upstream: the source's replace them.
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::CONTENT_LENGTH);
    // The body is already read whole: there is nothing left to wait for a 100 Continue.
    headers.remove(header::EXPECT);
    let mut req = upstream.http.request(parts.method, &url).headers(headers);
    if !body.is_empty() || had_length {
        req = req.body(body);
    }
    let req = req.build().map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            name,
            format!("the request cannot be forwarded: {e}"),
        )
    })?;
    let res = upstream
        .source
        .send(&upstream.http, req)
        .await
        .map_err(|e| match e {
            SendError::Token(e) => Refusal::token(name, &e),
            SendError::Http(e) => Refusal::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                name,
                transport_error(&e),
            ),
        })?;
    Ok(answer(res))
}

/// What went wrong sending to the upstream: reqwest's causes and the URL without its query
/// (a caller's parameters); never a header.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "the upstream did not answer in time"
    } else if e.is_connect() {
        "cannot connect to the upstream"
    } else {
        "the request to the upstream failed"
    };
    let mut text = kind.to_owned();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if let Some(url) = e.url() {
        let mut url = url.clone();
        url.set_query(None);
        text.push_str(&format!(" ({url})"));
    }
    text
}

/// The request body, whole (a request is sent again after a 401), up to [`MAX_BODY`].
async fn read_body(body: Body, upstream: &str) -> Result<Bytes, Refusal> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            upstream,
            format!("the agent forwards request bodies of at most {MAX_BODY} bytes"),
        )),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            upstream,
            format!("reading the request body: {e}"),
        )),
    }
}

/// The upstream's answer, streamed back with its status and end-to-end headers.
fn answer(res: reqwest::Response) -> Response {
    let status = res.status();
    let mut headers = res.headers().clone();
    strip_hop_by_hop(&mut headers);
    let mut out = Response::new(Body::from_stream(res.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// RFC 9110 §7.6.1: the headers of one connection, not to be forwarded — `Connection` and
/// every header it names, and the ones known to be hop-by-hop.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_segment_names_the_upstream_and_the_rest_is_kept_raw() {
        assert_eq!(split("/sepay/v1/a%2Fb"), ("sepay", "/v1/a%2Fb"));
        assert_eq!(split("/sepay"), ("sepay", ""));
        assert_eq!(split("/sepay/"), ("sepay", "/"));
        assert_eq!(split("/"), ("", ""));
    }

    #[test]
    fn dot_segments_are_found_in_any_spelling() {
        assert!(has_dot_segment("/../admin"));
        assert!(has_dot_segment("/a/%2E%2e/b"));
        assert!(has_dot_segment("/a/./b"));
        assert!(!has_dot_segment("/a/..b/.c"));
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop"),
        );
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-end"]);
    }
}
