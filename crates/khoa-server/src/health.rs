//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;

pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";

/// `GET /healthz`: 200 as soon as the server accepts requests. No I/O: the benchmarks use it as
/// the plain-HTTP reference.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 when the database answers and takes writes, 503 otherwise. After a write
/// failed for want of the database (a full disk), the store probes with a real write until one
/// succeeds: a node whose every token request answers 503 must not be sent more of them.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.engine.maintenance().ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %khoa_core::error::chain(&e), "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
