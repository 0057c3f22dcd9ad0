//! Standard OAuth 2.0 token endpoint, `POST /connect/token` (RFC 6749 §3.2, §4.3, §4.4, §6),
//! answering as seed 004 (TripData) documents.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::error::{EngineError, OAuthError};
use khoa_core::grant::{ClientAuth, TokenRequest};
use khoa_core::mint::IssuedTokens;
use secrecy::SecretString;
use serde::Serialize;
use std::collections::HashMap;

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{Authorization, content_type_is, parse_authorization, parse_form};

pub const TOKEN_PATH: &str = "/connect/token";

const FORM: &str = "application/x-www-form-urlencoded";

pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = match parse_request(&headers, body) {
        Ok(r) => r,
        Err(rejection) => return rejection.into_response(),
    };
    let basic = request.client.used_basic();
    match state.engine.token(&request).await {
        Ok(issued) => success(&issued),
        Err(EngineError::OAuth(e)) => oauth_error(&e, basic),
        Err(other) => ApiError::from(other).into_response(),
    }
}

/// RFC 6749 §5.1 success body, fields in seed 004's order.
#[derive(Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    expires_in: i64,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: String,
    /// Seed 000's second secret, bound to this access token: a refreshed derivative session
    /// gets a new one, and without it the client could no longer place orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    otp_token: Option<&'a str>,
    /// OpenID Connect Core §3.1.3.3, when the code was granted `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
}

fn success(t: &IssuedTokens) -> Response {
    let body = TokenBody {
        access_token: &t.access_token,
        expires_in: t.expires_in,
        token_type: IssuedTokens::TOKEN_TYPE,
        refresh_token: t.refresh_token.as_deref(),
        scope: t.scope.to_string(),
        otp_token: t.otp_token.as_deref(),
        id_token: t.id_token.as_deref(),
    };
    no_store((StatusCode::OK, axum::Json(body)).into_response())
}

/// RFC 6749 §5.1: token responses are never cached.
pub fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// RFC 6749 §5.2 error body; `invalid_client` after a Basic attempt also carries
/// `WWW-Authenticate` (§5.2: "MUST include the WWW-Authenticate response header field").
pub fn oauth_error(e: &OAuthError, basic_attempted: bool) -> Response {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({
        "error": e.code.as_str(),
        "error_description": e.description,
    });
    let mut res = (status, axum::Json(body)).into_response();
    if basic_attempted && status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"khoa\", charset=\"UTF-8\""),
        );
    }
    no_store(res)
}

/// A request refused before it reached the engine, rendered as an RFC 6749 §5.2 error.
struct Rejection {
    error: OAuthError,
    basic_attempted: bool,
    /// 413 for an oversized body; otherwise the error code's own status.
    status: Option<StatusCode>,
}

impl Rejection {
    fn invalid_request(d: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Rejection {
            error: OAuthError::invalid_request(d),
            basic_attempted: false,
            status: None,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut res = oauth_error(&self.error, self.basic_attempted);
        if let Some(status) = self.status {
            *res.status_mut() = status;
        }
        res
    }
}

fn parse_request(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<TokenRequest, Rejection> {
    let reject = |d: String| Rejection::invalid_request(d);
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Rejection {
                status: Some(StatusCode::PAYLOAD_TOO_LARGE),
                ..Rejection::invalid_request("the request body is too large")
            }
        } else {
            reject("the request body could not be read".into())
        }
    })?;
    if !content_type_is(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        FORM,
    ) {
        return Err(reject(format!("the request body must be {FORM}")));
    }
    let mut form = parse_form(&body).map_err(|e| reject(e.to_string()))?;
    let auth = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let client = client_auth(parse_authorization(auth, true), &mut form)?;
    Ok(TokenRequest {
        grant_type: form.remove("grant_type"),
        client,
        scope: form.remove("scope"),
        username: form.remove("username"),
        password: form.remove("password").map(SecretString::from),
        refresh_token: form.remove("refresh_token").map(SecretString::from),
        code: form.remove("code").map(SecretString::from),
        redirect_uri: form.remove("redirect_uri"),
        code_verifier: form.remove("code_verifier").map(SecretString::from),
    })
}

/// RFC 6749 §2.3: exactly one authentication method per request.
fn client_auth(
    authorization: Authorization,
    form: &mut HashMap<String, String>,
) -> Result<ClientAuth, Rejection> {
    let body_id = form.remove("client_id");
    let body_secret = form.remove("client_secret");
    match authorization {
        Authorization::Basic { user, password } => {
            if body_secret.is_some() {
                return Err(Rejection::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            if body_id.as_ref().is_some_and(|id| *id != user) {
                return Err(Rejection::invalid_request(
                    "client_id does not match the Basic credentials",
                ));
            }
            Ok(ClientAuth::Basic {
                client_id: user,
                secret: SecretString::from(password),
            })
        }
        Authorization::Malformed | Authorization::Bearer(_) => Err(Rejection {
            error: OAuthError::invalid_client(
                "the Authorization header is not valid Basic credentials",
            ),
            basic_attempted: true,
            status: None,
        }),
        Authorization::Absent => Ok(match (body_id, body_secret) {
            (Some(id), Some(secret)) => ClientAuth::Post {
                client_id: id,
                secret: SecretString::from(secret),
            },
            (Some(id), None) => ClientAuth::IdOnly { client_id: id },
            (None, _) => ClientAuth::None,
        }),
    }
}
