//! What arrives from outside: the parsers shared with the dialect definitions
//! ([`khoa_dialect::wire`]), and reading an axum body.

pub use khoa_dialect::wire::*;

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over `http.max_body_bytes`: answer 413.
    TooLarge,
    Unreadable,
}

/// The body bytes, or why there are none.
pub fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, BodyError> {
    body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable
        }
    })
}
