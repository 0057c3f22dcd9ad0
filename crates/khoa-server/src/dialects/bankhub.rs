//! Bank-hub token (seed 001): `POST /v1/token` with HTTP Basic `client_id:client_secret` and an
//! empty body → `201 {"code": 201, "access_token", "ttl"}`. No refresh token: the client asks
//! again when a protected API answers 401.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::error::{EngineError, ErrorCode};
use khoa_core::grant::TokenRequest;

use super::basic_client_credentials;
use super::oauth2::no_store;
use crate::config::DialectsConfig;
use crate::error::ApiError;
use crate::limits::{ClientIp, Limited};
use crate::protocol::Refusal;
use crate::state::AppState;
use crate::wire::{BodyError, body_bytes, is_empty_body};

pub async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(l) = state.limits.check_ip(ip) {
        return rate_limited(l);
    }
    let request = match parse(&headers, body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    if let Err(l) = state.limits.check_client(request.client.client_id()) {
        return rate_limited(l);
    }
    match state.engine.token(&request).await {
        Ok(t) => {
            let body = serde_json::json!({
                "code": 201,
                "access_token": t.access_token,
                "ttl": t.expires_in,
            });
            no_store((StatusCode::CREATED, axum::Json(body)).into_response())
        }
        Err(EngineError::OAuth(e)) if e.code == ErrorCode::InvalidClient => unauthenticated(),
        Err(EngineError::OAuth(e)) => error(StatusCode::BAD_REQUEST, &e.description),
        Err(other) => {
            let (status, _, description) = ApiError::from(other).log();
            let mut res = error(status, &description);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            res
        }
    }
}

#[allow(
    clippy::result_large_err,
    reason = "the rejection is the finished response, built once per refused request"
)]
fn parse(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenRequest, Response> {
    let body = body_bytes(body).map_err(|e| match e {
        BodyError::TooLarge => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body is too large.",
        ),
        BodyError::Unreadable => error(
            StatusCode::BAD_REQUEST,
            "The request body could not be read.",
        ),
    })?;
    // The document sends no body; real clients also send `{}` with a JSON content type.
    if !is_empty_body(&body) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "The request body must be empty.",
        ));
    }
    basic_client_credentials(headers)
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("The {} header is repeated.", e.0),
            )
        })?
        .ok_or_else(unauthenticated)
}

/// A refusal of the HTTP layer ([`crate::protocol`]) in the family's shape.
pub fn refusal(_: &DialectsConfig, r: Refusal) -> Response {
    error(r.status(), &format!("{}.", r.description()))
}

/// The family's error shape: `{"code", "message", "errors"}`.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "code": status.as_u16(),
        "message": message,
        "errors": null,
    });
    no_store((status, axum::Json(body)).into_response())
}

/// 429 (RFC 6585 §4) in the family's shape, with `Retry-After`.
fn rate_limited(l: Limited) -> Response {
    let mut res = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests.");
    super::set_retry_after(&mut res, l.retry_after_secs);
    res
}

/// "Client ID or Client Secret is invalid or disabled".
fn unauthenticated() -> Response {
    let mut res = error(StatusCode::UNAUTHORIZED, "Unauthenticated.");
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"khoa\""),
    );
    res
}
