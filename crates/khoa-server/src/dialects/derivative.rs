//! Derivative-broker login (seed 000): `POST /oapi/auth/gen-secret-key/derivative` and its
//! sibling `/underlying`, JSON `{username, password}` → access, refresh and OTP tokens in the
//! `ACCOUNT||KEYID||…` layout; every failure in the `OAPI_FNO_…` envelope.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use khoa_core::error::{Detail, EngineError, ErrorCode};
use khoa_core::grant::{ClientAuth, TokenRequest};
use khoa_core::mint::IssuedTokens;
use secrecy::SecretString;
use serde::Serialize;

use super::oauth2::no_store;
use crate::config::DialectsConfig;
use crate::config::{DerivativeDialect, Language, StatusMode};
use crate::error::ApiError;
use crate::limits::ClientIp;
use crate::protocol::Refusal;
use crate::state::AppState;
use crate::wire::{BodyError, Field, body_bytes, json_object, string_field};

/// The account types of this API family; each is bound to its own client and policy.
#[derive(Clone, Copy, Debug)]
enum AccountType {
    Derivative,
    Underlying,
}

pub async fn derivative(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    login(&state, ip, AccountType::Derivative, body).await
}

pub async fn underlying(
    State(state): State<AppState>,
    ip: ClientIp,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    login(&state, ip, AccountType::Underlying, body).await
}

async fn login(
    state: &AppState,
    ClientIp(ip): ClientIp,
    account: AccountType,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let cfg = &state.config.dialects.derivative;
    if let Err(l) = state.limits.check_ip(ip) {
        return envelope(cfg, Failure::RateLimited(l.retry_after_secs));
    }
    let request = match parse(cfg, account, body) {
        Ok(r) => r,
        Err(f) => return envelope(cfg, f),
    };
    if let Err(l) = state.limits.check_client(request.client.client_id()) {
        return envelope(cfg, Failure::RateLimited(l.retry_after_secs));
    }
    match state.engine.token(&request).await {
        Ok(t) => success(&t),
        Err(e) => envelope(cfg, Failure::from_engine(e)),
    }
}

fn parse(
    cfg: &DerivativeDialect,
    account: AccountType,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenRequest, Failure> {
    let body = body_bytes(body).map_err(|e| match e {
        BodyError::TooLarge => Failure::TooLarge,
        BodyError::Unreadable => Failure::Malformed,
    })?;
    let obj = json_object(&body).ok_or(Failure::Malformed)?;
    let field = |name: &'static str| match string_field(&obj, name) {
        Field::Str(s) => Ok(s.to_owned()),
        Field::Missing => Err(Failure::MissingField(name)),
        Field::Invalid => Err(Failure::Malformed),
    };
    let username = field("username")?;
    let password = field("password")?;
    let client_id = match account {
        AccountType::Derivative => &cfg.derivative_client,
        AccountType::Underlying => &cfg.underlying_client,
    };
    Ok(TokenRequest {
        username: Some(username),
        password: Some(SecretString::from(password)),
        ..TokenRequest::new(
            "password",
            ClientAuth::IdOnly {
                client_id: client_id.clone(),
            },
        )
    })
}

/// A refusal of the HTTP layer ([`crate::protocol`]) in the envelope.
pub fn refusal(cfg: &DialectsConfig, r: Refusal) -> Response {
    let failure = match r {
        Refusal::Malformed => Failure::Malformed,
        Refusal::TooLarge => Failure::TooLarge,
        Refusal::MethodNotAllowed => Failure::MethodNotAllowed,
        Refusal::Timeout => Failure::Timeout,
        Refusal::HeadersTooLarge => Failure::HeadersTooLarge,
    };
    envelope(&cfg.derivative, failure)
}

/// The documented success body, fields in the document's order.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = DerivativeToken)]
pub(crate) struct Success<'a> {
    access_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    otp_token: Option<&'a str>,
    token_type: &'static str,
}

fn success(t: &IssuedTokens) -> Response {
    let body = Success {
        access_token: &t.access_token,
        refresh_token: t.refresh_token.as_deref(),
        expires_in: t.expires_in,
        otp_token: t.otp_token.as_deref(),
        token_type: IssuedTokens::TOKEN_TYPE,
    };
    no_store((StatusCode::OK, axum::Json(body)).into_response())
}

/// Every way a login can fail, each with its own numeric code (README lists them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Malformed,
    MissingField(&'static str),
    TooLarge,
    /// 405: the endpoint takes `POST` only.
    MethodNotAllowed,
    /// 408: the request did not arrive within the request timeout.
    Timeout,
    /// 431: the request head is too large.
    HeadersTooLarge,
    BadCredentials,
    /// Disabled (`None`), or locked after failed sign-ins until `Retry-After` seconds.
    AccountLocked(Option<u64>),
    /// Over a rate limit; retry after the seconds given.
    RateLimited(u64),
    Unavailable,
    Internal,
}

impl Failure {
    fn from_engine(e: EngineError) -> Self {
        match e {
            EngineError::OAuth(o) => match (o.code, o.detail) {
                // The document's one "locked" code serves both: -108 says the account cannot
                // sign in now; Retry-After tells a temporary lock from a disabled account.
                (_, Detail::AccountDisabled) => Failure::AccountLocked(None),
                (_, Detail::TemporarilyLocked { retry_after_secs }) => {
                    Failure::AccountLocked(Some(retry_after_secs))
                }
                (ErrorCode::InvalidGrant, _) => Failure::BadCredentials,
                (ErrorCode::InvalidRequest, _) => Failure::Malformed,
                // The bound client is missing or misconfigured: the operator's fault.
                (code, _) => {
                    tracing::error!(
                        error = code.as_str(),
                        "derivative dialect's client refused the login"
                    );
                    Failure::Internal
                }
            },
            EngineError::Unavailable(m) => {
                ApiError::Unavailable(m).log();
                Failure::Unavailable
            }
            EngineError::Internal(m) | EngineError::Conflict(m) => {
                ApiError::Internal(m).log();
                Failure::Internal
            }
        }
    }

    /// The numeric code that opens `error_description`.
    pub fn code(&self) -> i32 {
        match self {
            Failure::Malformed => -100,
            Failure::MissingField(_) => -101,
            Failure::TooLarge => -102,
            Failure::MethodNotAllowed => -103,
            Failure::Timeout => -104,
            Failure::HeadersTooLarge => -105,
            Failure::BadCredentials => -107,
            Failure::AccountLocked(_) => -108,
            Failure::RateLimited(_) => -109,
            Failure::Internal => -500,
            Failure::Unavailable => -503,
        }
    }

    fn text(&self, lang: Language) -> String {
        let (vi, en) = match self {
            Failure::Malformed => (
                "Dữ liệu yêu cầu không hợp lệ".to_owned(),
                "The request body is not a valid JSON object".to_owned(),
            ),
            Failure::MissingField(f) => (
                format!("Thiếu thông tin bắt buộc: {f}"),
                format!("Missing required field: {f}"),
            ),
            Failure::TooLarge => (
                "Dữ liệu yêu cầu quá lớn".to_owned(),
                "The request body is too large".to_owned(),
            ),
            Failure::MethodNotAllowed => (
                "Phương thức không được hỗ trợ".to_owned(),
                "The method is not allowed".to_owned(),
            ),
            Failure::Timeout => (
                "Hết thời gian chờ yêu cầu".to_owned(),
                "The request timed out".to_owned(),
            ),
            Failure::HeadersTooLarge => (
                "Tiêu đề yêu cầu quá lớn".to_owned(),
                "The request header fields are too large".to_owned(),
            ),
            Failure::BadCredentials => (
                "Tên đăng nhập hoặc mật khẩu không đúng".to_owned(),
                "Incorrect username or password".to_owned(),
            ),
            Failure::AccountLocked(Some(_)) => (
                "Tài khoản tạm thời bị khóa do đăng nhập sai nhiều lần, vui lòng thử lại sau"
                    .to_owned(),
                "The account is temporarily locked after failed sign-ins, try again later"
                    .to_owned(),
            ),
            Failure::AccountLocked(None) => (
                "Tài khoản đã bị khóa".to_owned(),
                "The account is locked".to_owned(),
            ),
            Failure::RateLimited(_) => (
                "Quá nhiều yêu cầu, vui lòng thử lại sau".to_owned(),
                "Too many requests, try again later".to_owned(),
            ),
            Failure::Internal => (
                "Lỗi hệ thống, vui lòng thử lại sau".to_owned(),
                "System error, try again later".to_owned(),
            ),
            Failure::Unavailable => (
                "Hệ thống tạm thời gián đoạn, vui lòng thử lại sau".to_owned(),
                "The service is temporarily unavailable, try again later".to_owned(),
            ),
        };
        let text = match lang {
            Language::Vi => vi,
            Language::En => en,
        };
        format!("{} {text}", self.code())
    }

    fn semantic_status(&self) -> StatusCode {
        match self {
            Failure::Malformed | Failure::MissingField(_) => StatusCode::BAD_REQUEST,
            Failure::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Failure::Timeout => StatusCode::REQUEST_TIMEOUT,
            Failure::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Failure::BadCredentials | Failure::AccountLocked(_) => StatusCode::UNAUTHORIZED,
            Failure::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The envelope exactly as the document shows it: the upstream bridge reports every failure as
/// its own `server_error` with `s: 500`; the real cause is the numeric code in
/// `error_description`.
pub fn envelope(cfg: &DerivativeDialect, failure: Failure) -> Response {
    const S: u16 = 500;
    let body = serde_json::json!({
        "code": format!("OAPI_FNO_{S}"),
        "messageParams": {
            "error": "server_error",
            "error_description": failure.text(cfg.language),
            "s": S,
        },
        "params": null,
        "source": cfg.source,
        "message": null,
    });
    let status = match cfg.http_status {
        StatusMode::Semantic => failure.semantic_status(),
        StatusMode::Mirror => StatusCode::from_u16(S).expect("valid status"),
    };
    let mut res = no_store((status, axum::Json(body)).into_response());
    match failure {
        Failure::RateLimited(secs) | Failure::AccountLocked(Some(secs)) => {
            super::set_retry_after(&mut res, secs)
        }
        Failure::Unavailable => super::set_retry_after(&mut res, 1),
        _ => {}
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_own_code() {
        let all = [
            Failure::Malformed,
            Failure::MissingField("username"),
            Failure::TooLarge,
            Failure::MethodNotAllowed,
            Failure::Timeout,
            Failure::HeadersTooLarge,
            Failure::BadCredentials,
            Failure::AccountLocked(None),
            Failure::RateLimited(1),
            Failure::Unavailable,
            Failure::Internal,
        ];
        let mut codes: Vec<i32> = all.iter().map(Failure::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn wrong_credentials_read_as_documented() {
        assert_eq!(
            Failure::BadCredentials.text(Language::Vi),
            "-107 Tên đăng nhập hoặc mật khẩu không đúng"
        );
    }
}
