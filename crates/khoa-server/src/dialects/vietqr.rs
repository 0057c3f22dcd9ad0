//! VietQR `token_generate` (seed 003): `POST /<basepath>/api/token_generate` with HTTP Basic
//! `username:password` → `{access_token, token_type: "Bearer", expires_in}`; and the sample
//! Transaction Sync API the token guards, refusing in VietQR's own error style.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::error::{EngineError, ErrorCode};
use khoa_core::grant::TokenRequest;
use khoa_core::mint::IssuedTokens;

use super::basic_client_credentials;
use super::oauth2::no_store;
use crate::config::DialectsConfig;
use crate::error::ApiError;
use crate::limits::ClientIp;
use crate::protocol::Refusal;
use crate::resource::authenticate;
use crate::state::AppState;
use crate::wire::{BodyError, body_bytes, is_empty_body, json_object};

/// The error codes khoa answers in VietQR's style (listed in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Missing, malformed, repeated, unknown or wrong credentials; an invalid or expired token.
    E74,
    /// The request is not what the API takes: its body, its method, its size, its timing.
    E46,
    /// Server-side failure (database unavailable or internal error).
    E05,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::E74 => "E74",
            Code::E46 => "E46",
            Code::E05 => "E05",
        }
    }
}

pub async fn token_generate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // 429 (RFC 6585 §4) with E05, the code of "not your request's fault, retry": no code of
    // its own, so that a VietQR caller needs nothing new to handle it.
    let rate_limited = |l: crate::limits::Limited| {
        let mut res = failed(StatusCode::TOO_MANY_REQUESTS, Code::E05);
        super::set_retry_after(&mut res, l.retry_after_secs);
        res
    };
    if let Err(l) = state.limits.check_ip(ip) {
        return rate_limited(l);
    }
    let request = match parse(&headers, body) {
        Ok(r) => r,
        Err((status, code)) => return failed(status, code),
    };
    if let Err(l) = state.limits.check_client(request.client.client_id()) {
        return rate_limited(l);
    }
    match state.engine.token(&request).await {
        Ok(t) => {
            let body = serde_json::json!({
                "access_token": t.access_token,
                "token_type": IssuedTokens::TOKEN_TYPE,
                "expires_in": t.expires_in,
            });
            no_store((StatusCode::OK, axum::Json(body)).into_response())
        }
        Err(EngineError::OAuth(e)) if e.code == ErrorCode::InvalidClient => {
            failed(StatusCode::UNAUTHORIZED, Code::E74)
        }
        Err(EngineError::OAuth(_)) => failed(StatusCode::BAD_REQUEST, Code::E46),
        Err(other) => {
            let (status, _, _) = ApiError::from(other).log();
            let mut res = failed(status, Code::E05);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                // RFC 9110 §10.2.3: when to come back, as every other dialect's 503 says.
                super::set_retry_after(&mut res, 1);
            }
            res
        }
    }
}

fn parse(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenRequest, (StatusCode, Code)> {
    let body = body_bytes(body).map_err(|e| match e {
        BodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, Code::E46),
        BodyError::Unreadable => (StatusCode::BAD_REQUEST, Code::E46),
    })?;
    // The document's Java sample sends an empty body; VietQR's caller sends `{}` as JSON.
    if !is_empty_body(&body) {
        return Err((StatusCode::BAD_REQUEST, Code::E46));
    }
    basic_client_credentials(headers)
        .map_err(|_| (StatusCode::BAD_REQUEST, Code::E74))?
        .ok_or((StatusCode::UNAUTHORIZED, Code::E74))
}

/// A refusal of the HTTP layer ([`crate::protocol`]) at `token_generate`: E46, the code of a
/// request the API does not take, with the status that says why.
pub fn refusal(_: &DialectsConfig, r: Refusal) -> Response {
    failed(r.status(), Code::E46)
}

/// The same at the Transaction Sync API, in its response object.
pub fn transaction_sync_refusal(_: &DialectsConfig, r: Refusal) -> Response {
    vietqr_answer(
        r.status(),
        Some(Code::E46),
        r.description(),
        serde_json::Value::Null,
    )
}

/// `{"status": "FAILED", "message": "E74"}`.
fn failed(status: StatusCode, code: Code) -> Response {
    let body = serde_json::json!({ "status": "FAILED", "message": code.as_str() });
    let mut res = no_store((status, axum::Json(body)).into_response());
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"khoa\""),
        );
    }
    res
}

/// VietQR's response object: `{"error", "errorReason", "toastMessage", "object"}`.
fn vietqr_answer(
    status: StatusCode,
    reason: Option<Code>,
    toast: &str,
    object: serde_json::Value,
) -> Response {
    let body = serde_json::json!({
        "error": reason.is_some(),
        "errorReason": reason.map(Code::as_str),
        "toastMessage": toast,
        "object": object,
    });
    (status, axum::Json(body)).into_response()
}

/// The sample Transaction Sync API (`POST /bank/api/transaction-sync` in VietQR's contract):
/// accepts a valid bearer token, refuses others the way VietQR expects to be refused.
pub async fn transaction_sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(rejection) = authenticate(&state, &headers).await {
        return if rejection.is_unavailable() {
            let mut res = vietqr_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Code::E05),
                "Service temporarily unavailable",
                serde_json::Value::Null,
            );
            super::set_retry_after(&mut res, 1);
            res
        } else if rejection.is_bad_request() {
            vietqr_answer(
                StatusCode::BAD_REQUEST,
                Some(Code::E74),
                rejection.description(),
                serde_json::Value::Null,
            )
        } else {
            vietqr_answer(
                StatusCode::UNAUTHORIZED,
                Some(Code::E74),
                "Invalid or expired token",
                serde_json::Value::Null,
            )
        };
    }
    let body = match body_bytes(body) {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return transaction_sync_refusal(&state.config.dialects, Refusal::TooLarge);
        }
        Err(BodyError::Unreadable) => {
            return transaction_sync_refusal(&state.config.dialects, Refusal::Malformed);
        }
    };
    let tx = json_object(&body);
    // `transactionid` is a string in VietQR's contract; another type is refused, not echoed
    // back as "".
    let reference = match tx.as_ref().map(|tx| tx.get("transactionid")) {
        Some(None) => String::new(),
        Some(Some(serde_json::Value::String(id))) => id.clone(),
        _ => {
            return vietqr_answer(
                StatusCode::BAD_REQUEST,
                Some(Code::E46),
                "Invalid transaction data",
                serde_json::Value::Null,
            );
        }
    };
    vietqr_answer(
        StatusCode::OK,
        None,
        "Transaction synced",
        serde_json::json!({ "reftransactionid": reference }),
    )
}
