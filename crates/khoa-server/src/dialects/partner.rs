//! Encrypted partner login and refresh (seed 002): header `Partner-Code`, body
//! `{"data": hex(IV || AES-256-CBC(json))}` under the partner's key. Answers are plain JSON:
//! a JWT access token and a rotated, JWT-shaped refresh token.
//!
//! Every failure to open the envelope — unknown partner, bad hex, wrong length, bad padding,
//! a wrong key, a plaintext that is not a JSON object — gets one identical answer, so the
//! endpoint is no padding oracle.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use khoa_core::error::{EngineError, ErrorCode};
use khoa_core::grant::{ClientAuth, TokenRequest};
use khoa_core::mint::IssuedTokens;
use khoa_core::partner::EnvelopeError;
use secrecy::SecretString;
use serde::Serialize;

use super::oauth2::no_store;
use crate::config::DialectsConfig;
use crate::error::ApiError;
use crate::limits::ClientIp;
use crate::protocol;
use crate::state::AppState;
use crate::wire::{BodyError, Field, body_bytes, json_object, single_header, string_field};

pub const PARTNER_CODE_HEADER: &str = "partner-code";

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (partner_client, payload) = match open(&state, ip, &headers, body).await {
        Ok(opened) => opened,
        Err(refusal) => return refusal.into_response(),
    };
    let field = |name: &'static str| match string_field(&payload, name) {
        Field::Str(s) => Ok(s.to_owned()),
        _ => Err(Refusal::MissingField(name)),
    };
    let request = (|| {
        let client_id = field("client_id")?;
        // A partner's logins act for the client it is bound to, and no other.
        if client_id != partner_client {
            return Err(Refusal::Unauthorized);
        }
        Ok(TokenRequest {
            username: Some(field("username")?),
            password: Some(SecretString::from(field("password")?)),
            ..TokenRequest::new(
                "password",
                ClientAuth::Post {
                    client_id,
                    secret: SecretString::from(field("client_secret")?),
                },
            )
        })
    })();
    match request {
        Ok(r) => answer(state.engine.token(&r).await),
        Err(refusal) => refusal.into_response(),
    }
}

pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (partner_client, payload) = match open(&state, ip, &headers, body).await {
        Ok(opened) => opened,
        Err(refusal) => return refusal.into_response(),
    };
    let Field::Str(token) = string_field(&payload, "refresh_token") else {
        return Refusal::MissingField("refresh_token").into_response();
    };
    // The envelope opened under the partner's key: that authenticates the partner's client.
    let request = TokenRequest {
        refresh_token: Some(SecretString::from(token.to_owned())),
        ..TokenRequest::new(
            "refresh_token",
            ClientAuth::Attested {
                client_id: partner_client,
            },
        )
    };
    answer(state.engine.token(&request).await)
}

/// Reads the header and body and opens the envelope: the partner's client id and the payload.
/// The source IP's, the partner's and its client's rate limits apply first, before any
/// decryption is spent on the request.
async fn open(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, serde_json::Map<String, serde_json::Value>), Refusal> {
    let code = single_header(headers, PARTNER_CODE_HEADER)
        .map_err(|_| Refusal::RepeatedPartnerCode)?
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or(Refusal::MissingPartnerCode)?;
    let limited = |l: crate::limits::Limited| Refusal::RateLimited(l.retry_after_secs);
    state.limits.check_ip(ip).map_err(limited)?;
    state.limits.check_partner(code).map_err(limited)?;
    let body = body_bytes(body).map_err(|e| match e {
        BodyError::TooLarge => Refusal::TooLarge,
        BodyError::Unreadable => Refusal::MalformedBody,
    })?;
    let outer = json_object(&body).ok_or(Refusal::MalformedBody)?;
    // An empty `data` is a ciphertext that does not open like any other, not a malformed
    // body: answered like one, it would be the one bad `data` with an answer of its own.
    let Some(serde_json::Value::String(data)) = outer.get("data") else {
        return Err(Refusal::MalformedBody);
    };
    let opened = state
        .engine
        .partners()
        .open(code, data)
        .await
        .map_err(|e| match e {
            EnvelopeError::Unavailable(m) => Refusal::Engine(EngineError::Unavailable(m)),
            EnvelopeError::UnknownPartner | EnvelopeError::Undecryptable => Refusal::Envelope,
        })?;
    // Not JSON after decryption is answered like a decryption failure: telling them apart
    // would let a forger learn when the padding was right.
    let payload = json_object(&opened.plaintext).ok_or(Refusal::Envelope)?;
    Ok((opened.partner.client_id, payload))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PartnerToken)]
pub(crate) struct Success<'a> {
    access_token: &'a str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<i64>,
    token_type: &'static str,
}

fn answer(result: Result<IssuedTokens, EngineError>) -> Response {
    match result {
        Ok(t) => {
            let body = Success {
                access_token: &t.access_token,
                expires_in: t.expires_in,
                refresh_token: t.refresh_token.as_deref(),
                refresh_expires_in: t.refresh_expires_in,
                token_type: IssuedTokens::TOKEN_TYPE,
            };
            no_store((StatusCode::OK, axum::Json(body)).into_response())
        }
        Err(e) => Refusal::Engine(e).into_response(),
    }
}

/// A refusal of the HTTP layer ([`crate::protocol`]) in the partner shape.
pub fn refusal(_: &DialectsConfig, r: protocol::Refusal) -> Response {
    Refusal::Protocol(r).into_response()
}

/// Why a partner request was refused; rendered as `{"status", "error", "message"}`.
#[derive(Debug)]
enum Refusal {
    MissingPartnerCode,
    /// Two `Partner-Code` fields: which partner's key would open the envelope is ambiguous.
    RepeatedPartnerCode,
    Protocol(protocol::Refusal),
    MalformedBody,
    TooLarge,
    /// Unknown partner or an envelope that does not open to a JSON object: one answer for all.
    Envelope,
    MissingField(&'static str),
    Unauthorized,
    /// Over a rate limit: 429 (RFC 6585 §4), retry after the seconds given.
    RateLimited(u64),
    Engine(EngineError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut retry_after = None;
        let (status, error, message): (StatusCode, &str, String) = match self {
            Refusal::MissingPartnerCode => (
                StatusCode::BAD_REQUEST,
                "missing_partner_code",
                "the Partner-Code header is required".into(),
            ),
            Refusal::RepeatedPartnerCode => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the Partner-Code header is repeated".into(),
            ),
            Refusal::Protocol(r) => (r.status(), "invalid_request", r.description().into()),
            Refusal::MalformedBody => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON object with a string field \"data\"".into(),
            ),
            Refusal::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "the request body is too large".into(),
            ),
            Refusal::Envelope => (
                StatusCode::UNAUTHORIZED,
                "invalid_data",
                "data could not be decrypted for this partner".into(),
            ),
            Refusal::MissingField(f) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the payload must carry a string field \"{f}\""),
            ),
            Refusal::RateLimited(secs) => {
                retry_after = Some(secs);
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests: retry after the seconds in Retry-After".into(),
                )
            }
            Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed".into(),
            ),
            Refusal::Engine(EngineError::OAuth(e)) => {
                retry_after = e.retry_after();
                let status = match e.code {
                    ErrorCode::InvalidClient | ErrorCode::InvalidGrant => StatusCode::UNAUTHORIZED,
                    _ => StatusCode::BAD_REQUEST,
                };
                (status, e.code.as_str(), e.description.into_owned())
            }
            Refusal::Engine(other) => {
                let (status, error, message) = ApiError::from(other).log();
                (status, error, message)
            }
        };
        let body = serde_json::json!({
            "status": status.as_u16(),
            "error": error,
            "message": message,
        });
        let mut res = no_store((status, axum::Json(body)).into_response());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            retry_after = Some(1);
        }
        if let Some(secs) = retry_after {
            super::set_retry_after(&mut res, secs);
        }
        res
    }
}
