//! Refusals made below the dialects — by the router (405), the request timeout (408), the body
//! and head limits (413, 431) — answered in the shape of the dialect that owns the path, so
//! that a partner's client parses every refusal of its endpoint the way its document says.
//!
//! One middleware, [`shape`], does two things:
//!
//! - **before the handler**, it refuses what the request head already condemns: a declared
//!   `Content-Length` above `http.max_body_bytes` (413, RFC 9110 §15.5.14) at once, instead of
//!   waiting for a body it would refuse anyway (a client that declares 1 GB and sends nothing
//!   held the connection until the 408); and a head above `http.max_header_bytes` (431,
//!   RFC 6585 §5). A chunked body has no declared length: it is refused by the handler's body
//!   extractor once it passes the limit, in the dialect's shape too.
//! - **after the handler**, it re-renders a *bare* refusal (one of the statuses above or a 400,
//!   with no body of our own: axum's 405, tower-http's 408, axum's plain-text rejections) with
//!   the route's renderer. Answers a dialect rendered itself carry `application/json` and pass
//!   untouched.
//!
//! What cannot be shaped: a request hyper cannot parse at all (a broken request line, an
//! invalid header, a bad `Content-Length`) is answered 400 by hyper itself, before any service
//! runs and often before a path is known; and a head above hyper's own buffer cap is answered
//! 431 by hyper the same way. [`hyper_head_cap`] is the cap to give hyper so that heads between
//! `http.max_header_bytes` and it reach this middleware and get the dialect's 431, hyper's
//! bare one staying the backstop for anything larger.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::dialects::{self, RenderRefusal};

/// A refusal made by the HTTP layer rather than by a dialect's handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request could not be read as the endpoint takes it.
    Malformed,
    /// 405 (RFC 9110 §15.5.6); the router's `Allow` header is kept.
    MethodNotAllowed,
    /// 408 (RFC 9110 §15.5.9): the request did not arrive within `http.request_timeout_secs`.
    Timeout,
    /// 413 (RFC 9110 §15.5.14): over `http.max_body_bytes`.
    TooLarge,
    /// 431 (RFC 6585 §5): the head is over `http.max_header_bytes`.
    HeadersTooLarge,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Malformed => StatusCode::BAD_REQUEST,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    fn from_status(status: StatusCode) -> Option<Refusal> {
        Some(match status {
            StatusCode::BAD_REQUEST => Refusal::Malformed,
            StatusCode::METHOD_NOT_ALLOWED => Refusal::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => Refusal::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => Refusal::TooLarge,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Refusal::HeadersTooLarge,
            _ => return None,
        })
    }

    /// English text for the dialects whose error bodies carry a description.
    pub fn description(self) -> &'static str {
        match self {
            Refusal::Malformed => "The request could not be read",
            Refusal::MethodNotAllowed => "The method is not allowed here (see the Allow header)",
            Refusal::Timeout => "The request did not arrive in time",
            Refusal::TooLarge => "The request body is too large",
            Refusal::HeadersTooLarge => "The request header fields are too large",
        }
    }
}

/// What [`shape`] needs: each route's renderer and the two limits it checks.
#[derive(Clone)]
pub struct Protocol {
    /// By route template (`MatchedPath`); paths of no dialect use
    /// [`dialects::standard_refusal`], the `{"error", "error_description"}` shape of khoa's own
    /// endpoints.
    pub renderers: Arc<HashMap<String, RenderRefusal>>,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
}

/// The request-head cap to give hyper: above `max_header_bytes`, so that a head somewhat over
/// the configured limit reaches [`shape`] and is refused in the dialect's shape, and bounded, so
/// that hyper still refuses (bare) a head that is far too large before buffering it.
pub fn hyper_head_cap(max_header_bytes: usize) -> usize {
    max_header_bytes.saturating_mul(2).max(8192)
}

pub async fn shape(State(p): State<Protocol>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| p.renderers.get(m.as_str()).cloned());
    let render = |refusal| match &route {
        Some(render) => render(refusal),
        None => dialects::standard_refusal(refusal),
    };
    if let Some(refusal) = refuse_head(&p, &request) {
        return render(refusal);
    }
    let response = next.run(request).await;
    match Refusal::from_status(response.status()) {
        Some(refusal) if is_bare(response.headers()) => {
            let mut shaped = render(refusal);
            // RFC 9110 §15.5.6: a 405 MUST say which methods the route takes.
            if let Some(allow) = response.headers().get(header::ALLOW) {
                shaped.headers_mut().insert(header::ALLOW, allow.clone());
            }
            shaped
        }
        _ => response,
    }
}

/// What the head alone refuses, before the body is read.
fn refuse_head(p: &Protocol, request: &Request) -> Option<Refusal> {
    if head_size(request) > p.max_header_bytes {
        return Some(Refusal::HeadersTooLarge);
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > p.max_body_bytes as u64 => Some(Refusal::TooLarge),
        _ => None,
    }
}

/// The size of the request head as it came on the wire, to within the few bytes of the
/// request line's spaces and the version: the request line, and each field as `name: value\r\n`.
fn head_size(request: &Request) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |pq| pq.as_str().len());
    let line = request.method().as_str().len() + target + 12;
    request.headers().iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

/// A refusal nobody rendered: no body type, or axum's plain-text rejection text.
fn is_bare(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app() -> Router {
        let mut cfg = crate::config::DialectsConfig::default();
        cfg.enable("bankhub");
        let defined = dialects::registry::load(&cfg, &[]).expect("the built-in definitions load");
        let renderers = dialects::route_dialects(&defined)
            .into_iter()
            .map(|r| (r.path, r.refuse))
            .collect();
        let p = Protocol {
            renderers: Arc::new(renderers),
            max_body_bytes: 1024,
            max_header_bytes: 8192,
        };
        Router::new()
            .route("/v1/token", post(|| async { "never for these tests" }))
            .route("/mine", post(|| async { "never for these tests" }))
            .layer(axum::middleware::from_fn_with_state(p, shape))
    }

    async fn call(req: axum::http::Request<Body>) -> (StatusCode, HeaderMap, serde_json::Value) {
        let res = app().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        let json = serde_json::from_slice(&bytes).expect("a JSON body");
        (parts.status, parts.headers, json)
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_431_in_the_routes_dialect() {
        let req = axum::http::Request::post("/v1/token")
            .header("x-padding", "a".repeat(9000))
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = call(req).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(body["code"], 431, "{body}");
        assert!(body["message"].is_string(), "{body}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_413_before_any_body() {
        let req = axum::http::Request::post("/mine")
            .header("content-length", "1000000")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = call(req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"], "invalid_request", "{body}");
    }

    #[tokio::test]
    async fn a_bare_405_keeps_its_allow_header() {
        let req = axum::http::Request::get("/v1/token")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = call(req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers.get(header::ALLOW).unwrap(), "POST");
        assert_eq!(body["code"], 405, "{body}");
    }

    #[test]
    fn hyper_is_given_room_above_the_configured_head_limit() {
        assert_eq!(hyper_head_cap(8192), 16384);
        assert!(hyper_head_cap(usize::MAX) == usize::MAX);
    }
}
