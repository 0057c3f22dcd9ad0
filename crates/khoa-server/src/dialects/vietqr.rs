//! The sample Transaction Sync API that VietQR's token guards, refusing in VietQR's own error
//! style. The token endpoint itself, `token_generate`, is the built-in definition
//! `dialects/vietqr.toml`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::DialectsConfig;
use crate::protocol::Refusal;
use crate::resource::authenticate;
use crate::state::AppState;
use crate::wire::{BodyError, body_bytes, json_object};

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

/// The same at the Transaction Sync API, in its response object.
pub fn transaction_sync_refusal(_: &DialectsConfig, r: Refusal) -> Response {
    vietqr_answer(
        r.status(),
        Some(Code::E46),
        r.description(),
        serde_json::Value::Null,
    )
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
