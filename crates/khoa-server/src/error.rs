//! The edge's error type for failures that are not the client's: logged in full with a
//! correlation id, answered with a generic body (STYLE 8).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::error::EngineError;

/// An id to find the log line of a failure the client saw only as "server error".
pub fn correlation_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().r#gen::<u64>())
}

/// 500/503 answers shared by the dialects that have no envelope of their own for them.
#[derive(Debug)]
pub enum ApiError {
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    /// Logs the detail and returns what the client may see: status, code and description.
    pub fn log(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "service unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the service is temporarily unavailable, retry shortly".into(),
                )
            }
            ApiError::Internal(detail) => {
                let id = correlation_id();
                tracing::error!(correlation_id = %id, %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    format!("internal error (correlation id {id})"),
                )
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unavailable(m) => ApiError::Unavailable(m),
            EngineError::Internal(m) => ApiError::Internal(m),
            EngineError::Conflict(m) => ApiError::Internal(format!("unexpected conflict: {m}")),
            EngineError::OAuth(o) => ApiError::Internal(format!("unmapped client error: {o}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, description) = self.log();
        let mut res = (
            status,
            axum::Json(serde_json::json!({ "error": code, "error_description": description })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}
