//! The wire dialects: every one a definition ([`registry`]: the five built-in ones embedded in
//! the binary, and the files of `dialects.dir`), served by one generic adapter ([`generic`]);
//! the code a definition may name is in [`operations`] (what an endpoint does besides issuing
//! tokens) and [`signature`] (request signatures). None holds token logic.

pub mod generic;
pub mod operations;
pub mod registry;
pub mod signature;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use khoa_dialect::Dialect;

use crate::protocol::Refusal;
use crate::state::AppState;

/// Sets `Retry-After` (RFC 9110 §10.2.3) in whole seconds, at least 1: a 0 would invite an
/// immediate retry that is bound to fail again.
pub fn set_retry_after(res: &mut Response, secs: u64) {
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

/// RFC 6749 §5.1: token responses are never cached.
pub fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// A refusal of the HTTP layer ([`crate::protocol`]) at a path of no dialect (khoa's own
/// endpoints), as an RFC 6749 §5.2 error: `invalid_request` is §5.2's code for a request the
/// endpoint cannot take; the status says why.
pub fn standard_refusal(r: Refusal) -> Response {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": r.description(),
    });
    no_store((r.status(), axum::Json(body)).into_response())
}

/// How a route renders a refusal made below its handler ([`crate::protocol`]).
pub type RenderRefusal = Arc<dyn Fn(Refusal) -> Response + Send + Sync>;

/// A served dialect route: its path, the dialect it belongs to (the `dialect` label of metrics
/// and request logs), and how refusals made below its handler are rendered.
pub struct DialectRoute {
    pub path: String,
    pub dialect: &'static str,
    pub refuse: RenderRefusal,
}

/// Every endpoint of every served dialect.
pub fn route_dialects(served: &[Arc<Dialect>]) -> Vec<DialectRoute> {
    let mut r = Vec::new();
    for d in served {
        for (index, e) in d.endpoints.iter().enumerate() {
            let dialect = d.clone();
            r.push(DialectRoute {
                path: e.path.clone(),
                dialect: registry::label(&d.name),
                refuse: Arc::new(move |refusal| {
                    generic::protocol_refusal(&dialect, index, refusal)
                }),
            });
        }
    }
    r
}

/// The routes of every served dialect, at their paths.
pub fn routes(served: &[Arc<Dialect>]) -> Router<AppState> {
    let mut r = Router::new();
    for d in served {
        for (i, e) in d.endpoints.iter().enumerate() {
            r = r.route(&e.path, generic::route(d.clone(), i));
        }
    }
    r
}
