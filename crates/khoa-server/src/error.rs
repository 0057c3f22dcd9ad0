//! The edge's error type for failures that are not the client's: logged in full with a
//! correlation id, answered with a generic body (STYLE 8).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::error::{EngineError, OAuthError, chain};

/// An id to find the log line of a failure the client saw only as "server error".
pub fn correlation_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().r#gen::<u64>())
}

/// The answers of the endpoints that have no envelope of their own for them: 500/503, and
/// a client error the engine raised where the endpoint expected none (in RFC 6749 §5.2's
/// shape, with its own status — never a 500 for the client's mistake).
#[derive(Debug)]
pub enum ApiError {
    Unavailable(String),
    Internal(Box<dyn std::error::Error + Send + Sync>),
    Refused(OAuthError),
}

impl ApiError {
    /// An internal failure with only a message (no error underneath).
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError::Internal(detail.into().into())
    }

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
            ApiError::Internal(error) => {
                let id = correlation_id();
                let detail = chain(error.as_ref());
                tracing::error!(correlation_id = %id, %detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    format!("internal error (correlation id {id})"),
                )
            }
            ApiError::Refused(e) => (
                StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
                e.code.as_str(),
                e.description.to_string(),
            ),
        }
    }
}

/// Every engine error has its answer here; a new variant fails to compile until it does.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unavailable(m) => ApiError::Unavailable(m),
            internal @ EngineError::Internal(_) => ApiError::Internal(Box::new(internal)),
            // Conflicts come from administration, which no HTTP endpoint does: a bug.
            conflict @ EngineError::Conflict(_) => ApiError::Internal(Box::new(conflict)),
            EngineError::OAuth(o) => ApiError::Refused(o),
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
        let retry_after = match &self {
            ApiError::Unavailable(_) => Some(1),
            ApiError::Refused(e) => e.retry_after(),
            ApiError::Internal(_) => None,
        };
        if let Some(secs) = retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use khoa_core::error::{Detail, ErrorCode};

    #[test]
    fn a_client_error_reaching_the_edge_keeps_its_status_and_code() {
        let locked = OAuthError::new(ErrorCode::InvalidGrant, "locked").with_detail(
            Detail::TemporarilyLocked {
                retry_after_secs: 30,
            },
        );
        let res = ApiError::from(EngineError::from(locked)).into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(res.headers()[header::RETRY_AFTER], "30");
        let res =
            ApiError::from(EngineError::from(OAuthError::invalid_client("no"))).into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn an_internal_error_is_a_generic_500_with_a_correlation_id() {
        let (status, code, description) =
            ApiError::from(EngineError::internal("no current signing key")).log();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(code, "server_error");
        assert!(description.contains("correlation id"), "{description}");
        assert!(
            !description.contains("signing key"),
            "the detail is only logged"
        );
    }
}
