//! The resource-server side: an extractor that demands a valid bearer token (RFC 6750) and the
//! sample protected resource of seed 004's usage example.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::engine::{BearerError, Principal};

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Authorization, parse_authorization};

pub const PROTECTED_RESOURCE_PATH: &str = "/api/protected-resource";

/// A request whose bearer token khoa validated.
pub struct Authenticated(pub Principal);

/// RFC 6750 §3: 401 with a `WWW-Authenticate: Bearer` challenge.
pub struct BearerRejection {
    description: &'static str,
    unavailable: Option<String>,
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        if let Some(detail) = self.unavailable {
            return ApiError::Unavailable(detail).into_response();
        }
        let challenge = format!(
            "Bearer realm=\"khoa\", error=\"invalid_token\", error_description=\"{}\"",
            self.description
        );
        let body = serde_json::json!({
            "error": "invalid_token",
            "error_description": self.description,
        });
        let mut res = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = BearerRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let reject = |description| BearerRejection {
            description,
            unavailable: None,
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let token = match parse_authorization(header, false) {
            Authorization::Bearer(t) => t,
            Authorization::Absent => return Err(reject("a bearer token is required")),
            _ => return Err(reject("the Authorization header is not a bearer token")),
        };
        match state.engine.validate_bearer(&token).await {
            Ok(p) => Ok(Authenticated(p)),
            Err(BearerError::Invalid(reason)) => {
                tracing::debug!(reason, "bearer token refused");
                Err(reject("the access token is invalid, expired or revoked"))
            }
            Err(BearerError::Unavailable(detail)) => Err(BearerRejection {
                description: "",
                unavailable: Some(detail),
            }),
        }
    }
}

/// `GET /api/protected-resource`: shows who the token speaks for.
pub async fn protected_resource(Authenticated(p): Authenticated) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "message": "access granted",
        "sub": p.subject,
        "client_id": p.client_id,
        "scope": p.scope.to_string(),
        "token_format": p.format.as_str(),
        "expires_at": p.expires_at,
    }))
}
