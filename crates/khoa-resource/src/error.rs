//! Why a request was refused, and the RFC 6750 §3 response each reason becomes.

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::claims::Scopes;

/// A refusal. The `&'static str` reasons are for logs and tests; clients only ever see the
/// RFC 6750 error code and a generic description, so that a probe learns nothing about which
/// check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer credentials at all. RFC 6750 §3.1: the challenge then carries no error code.
    #[error("no bearer token")]
    Missing,
    /// A malformed `Authorization` header (RFC 6750 §3.1 `invalid_request`, 400).
    #[error("malformed request: {0}")]
    InvalidRequest(&'static str),
    /// Expired, revoked, malformed, or not ours (`invalid_token`, 401).
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// A valid token without the scopes the route needs (`insufficient_scope`, 403).
    #[error("insufficient scope: {required} required")]
    InsufficientScope { required: Scopes },
    /// The issuer (JWKS, introspection, or a JWT revocation list past its staleness bound) could
    /// not be asked: 503, the token may be fine.
    #[error("token validation unavailable: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 §3.1 error code, if the response carries one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::InvalidRequest(_) => Some("invalid_request"),
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            AuthError::Unavailable(_) => Some("temporarily_unavailable"),
        }
    }

    fn description(&self) -> &'static str {
        match self {
            AuthError::Missing => "a bearer token is required",
            AuthError::InvalidRequest(_) => "the Authorization header is malformed",
            AuthError::InvalidToken(_) => "the access token is invalid, expired or revoked",
            AuthError::InsufficientScope { .. } => {
                "the access token lacks a scope this resource requires"
            }
            AuthError::Unavailable(_) => "the token cannot be validated right now; retry later",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3); none for 503.
    fn challenge(&self) -> Option<String> {
        match self {
            AuthError::Unavailable(_) => None,
            AuthError::Missing => Some("Bearer".to_owned()),
            AuthError::InsufficientScope { required } => Some(format!(
                "Bearer error=\"insufficient_scope\", error_description=\"{}\", scope=\"{required}\"",
                self.description()
            )),
            _ => Some(format!(
                "Bearer error=\"{}\", error_description=\"{}\"",
                self.code().unwrap_or_default(),
                self.description()
            )),
        }
    }
}

/// The HTTP answer: the status, the challenge, and a JSON body in khoa's error shape.
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match &self {
            AuthError::Unavailable(detail) => {
                tracing::warn!(detail, "bearer token could not be validated")
            }
            other => tracing::debug!(reason = %other, "bearer token refused"),
        }
        let mut body = serde_json::Map::new();
        if let Some(code) = self.code() {
            body.insert("error".into(), code.into());
        }
        body.insert("error_description".into(), self.description().into());
        let mut res = Response::new(axum_core::body::Body::from(
            serde_json::Value::Object(body).to_string(),
        ));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self
            .challenge()
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        if matches!(self, AuthError::Unavailable(_)) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge_of(e: AuthError) -> (StatusCode, Option<String>) {
        let res = e.into_response();
        let c = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status(), c)
    }

    #[test]
    fn each_refusal_has_its_rfc_6750_status_and_challenge() {
        assert_eq!(
            challenge_of(AuthError::Missing),
            (StatusCode::UNAUTHORIZED, Some("Bearer".into()))
        );
        let (s, c) = challenge_of(AuthError::InvalidToken("wrong audience"));
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let c = c.unwrap();
        assert!(c.starts_with("Bearer error=\"invalid_token\""), "{c}");
        assert!(!c.contains("audience"), "the reason stays in the logs: {c}");
        let (s, c) = challenge_of(AuthError::InsufficientScope {
            required: Scopes::parse("write read"),
        });
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(c.unwrap().ends_with("scope=\"read write\""));
        let (s, c) = challenge_of(AuthError::Unavailable("down".into()));
        assert_eq!((s, c), (StatusCode::SERVICE_UNAVAILABLE, None));
        let (s, _) = challenge_of(AuthError::InvalidRequest("two headers"));
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
}
