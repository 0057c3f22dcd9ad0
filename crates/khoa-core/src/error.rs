//! The engine's errors. [`OAuthError`] carries its RFC 6749 §5.2 code and HTTP status (as
//! fosite's `errors.go` does), so every dialect maps the same failure to its own wire shape.

use std::borrow::Cow;
use std::fmt;

use crate::store::StoreError;

/// RFC 6749 §5.2 error codes, plus RFC 6750 §3.1 `invalid_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidToken,
    /// RFC 6749 §4.1.2.1: the authorization endpoint supports no such `response_type`.
    UnsupportedResponseType,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
        }
    }

    /// RFC 6749 §5.2: 400 for everything but a failed client authentication, which is 401.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            _ => 400,
        }
    }
}

/// Finer cause of an error, for dialects whose envelopes distinguish what RFC 6749 lumps
/// together (seed 000 has its own code for a locked account).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Detail {
    #[default]
    None,
    /// Unknown user or wrong password (never which).
    BadCredentials,
    /// The password was right but the account is disabled.
    AccountDisabled,
    /// Too many failed sign-ins: refused, whatever the password, for `retry_after_secs` more
    /// (never 0). Unknown usernames are locked alike, so this reveals no account.
    TemporarilyLocked { retry_after_secs: u64 },
}

/// A client mistake, answered in the dialect's shape with [`ErrorCode::http_status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    /// Human-readable, safe to show the client (RFC 6749 `error_description`): never names which
    /// of username or password was wrong, never echoes a secret.
    pub description: Cow<'static, str>,
    pub detail: Detail,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            detail: Detail::None,
        }
    }
    pub fn with_detail(mut self, detail: Detail) -> Self {
        self.detail = detail;
        self
    }
    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
}

impl OAuthError {
    /// Seconds after which a retry may succeed, for the `Retry-After` header (RFC 9110
    /// §10.2.3) of answers that have one.
    pub fn retry_after(&self) -> Option<u64> {
        match self.detail {
            Detail::TemporarilyLocked { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

/// Everything an engine call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The client's fault; answered in the dialect's error shape.
    #[error("{0}")]
    OAuth(OAuthError),
    /// The database or the password pool cannot take the request now: 503 with Retry-After.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// The thing to create already exists (administration only); names what collided.
    #[error("already exists: {0}")]
    Conflict(String),
    /// Our fault. Logged with its cause and a correlation id; the client sees a generic 500.
    #[error(transparent)]
    Internal(InternalError),
}

impl EngineError {
    /// An internal failure with nothing underneath (a broken invariant).
    pub fn internal(context: impl Into<String>) -> Self {
        EngineError::Internal(InternalError {
            context: context.into(),
            source: None,
        })
    }

    /// An internal failure caused by `source`, kept so that the log line can say what
    /// failed and where ([`std::error::Error::source`]).
    pub fn internal_caused(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        EngineError::Internal(InternalError {
            context: context.into(),
            source: Some(Box::new(source)),
        })
    }
}

/// What failed on our side, and why: `context` says what khoa was doing, `source` (when
/// there is one) is the error of the layer below, not flattened to text.
#[derive(Debug)]
pub struct InternalError {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "internal error: {}", self.context)
    }
}

impl std::error::Error for InternalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// `error: its source: the source's source …`, the whole chain on one log line.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        line.push_str(": ");
        line.push_str(&e.to_string());
        next = e.source();
    }
    line
}

impl From<OAuthError> for EngineError {
    fn from(e: OAuthError) -> Self {
        EngineError::OAuth(e)
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            StoreError::Conflict(what) => EngineError::Conflict(what),
            StoreError::Other(failure) => EngineError::internal_caused("storage", failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_keeps_its_cause_for_the_log_line() {
        let cause = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = EngineError::internal_caused("reading the signing keys", cause);
        let source = std::error::Error::source(&e).expect("the cause is kept");
        assert!(source.to_string().contains("EOF"), "{source}");
        let line = chain(&e);
        assert!(
            line.starts_with("internal error: reading the signing keys: EOF"),
            "{line}"
        );
    }

    #[test]
    fn a_storage_failure_becomes_an_internal_error_caused_by_it() {
        let disk = std::io::Error::other("disk I/O error");
        let e = EngineError::from(StoreError::caused("reading row 7", disk));
        assert!(matches!(e, EngineError::Internal(_)));
        assert_eq!(
            chain(&e),
            "internal error: storage: storage error: reading row 7: disk I/O error"
        );
    }
}
