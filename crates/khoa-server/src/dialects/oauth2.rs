//! Standard OAuth 2.0: the token endpoint `POST /connect/token` (RFC 6749 §3.2, §4.3, §4.4,
//! §6), answering as seed 004 (TripData) documents, and beside it revocation
//! `POST /connect/revocation` (RFC 7009) and introspection `POST /connect/introspect`
//! (RFC 7662), which take the same form body and client authentication.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::error::{EngineError, OAuthError};
use khoa_core::grant::{ClientAuth, TokenRequest};
use khoa_core::mint::IssuedTokens;
use khoa_core::revocation::{Introspection, TokenKind};
use secrecy::SecretString;
use serde::Serialize;
use std::collections::HashMap;

use crate::config::DialectsConfig;
use crate::error::ApiError;
use crate::limits::{ClientIp, Limited};
use crate::protocol::Refusal;
use crate::state::AppState;
use crate::wire::{Authorization, content_type_is, parse_authorization, parse_form, single_header};

pub const TOKEN_PATH: &str = "/connect/token";

const FORM: &str = "application/x-www-form-urlencoded";

pub async fn token(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(l) = state.limits.check_ip(ip) {
        return rate_limited(l);
    }
    let request = match parse_request(&headers, body) {
        Ok(r) => r,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(l) = state.limits.check_client(request.client.client_id()) {
        return rate_limited(l);
    }
    let basic = request.client.used_basic();
    match state.engine.token(&request).await {
        Ok(issued) => success(&issued),
        Err(EngineError::OAuth(e)) => oauth_error(&e, basic),
        Err(other) => ApiError::from(other).into_response(),
    }
}

/// RFC 7009 §2.2: 200 with an empty body whether or not the token existed; errors are RFC 6749
/// §5.2 errors (`invalid_client`, `invalid_request`).
pub async fn revocation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (token, hint, client) = match limited_token_and_hint(&state, ip, &headers, body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    match state.engine.revoke(&client, &token, hint.as_deref()).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(EngineError::OAuth(e)) => oauth_error(&e, client.used_basic()),
        Err(other) => ApiError::from(other).into_response(),
    }
}

/// RFC 7662 §2.2: the token's metadata, or `{"active": false}` alone for anything invalid.
pub async fn introspect(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (token, hint, client) = match limited_token_and_hint(&state, ip, &headers, body) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    match state
        .engine
        .introspect(&client, &token, hint.as_deref())
        .await
    {
        Ok(found) => no_store(axum::Json(IntrospectionBody::from(found)).into_response()),
        Err(EngineError::OAuth(e)) => oauth_error(&e, client.used_basic()),
        Err(other) => ApiError::from(other).into_response(),
    }
}

/// Query of [`revoked_jwts`].
#[derive(serde::Deserialize)]
pub struct RevokedSince {
    #[serde(default)]
    since: i64,
}

/// khoa's JWT revocation list from `since` (unix seconds): `{"until": now, "revoked":
/// [{"jti", "exp"}]}`. A resource server that verifies JWTs offline polls it with `since` a
/// little before the previous `until` and refuses the listed `jti`s until their `exp`. Client
/// authentication is HTTP Basic only (a GET has no form body); confidential clients only.
pub async fn revoked_jwts(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<RevokedSince>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(RevokedSince { since })) = query else {
        return Rejection::invalid_request("since must be unix seconds").into_response();
    };
    let auth = match single_header(&headers, header::AUTHORIZATION.as_str()) {
        Ok(auth) => auth,
        Err(e) => return Rejection::invalid_request(e.to_string()).into_response(),
    };
    let client = match parse_authorization(auth, true) {
        Authorization::Basic { user, password } => ClientAuth::Basic {
            client_id: user,
            secret: SecretString::from(password),
        },
        _ => ClientAuth::None,
    };
    match state.engine.revoked_jwts(&client, since).await {
        Ok((list, until)) => {
            let revoked: Vec<_> = list
                .into_iter()
                .map(|r| serde_json::json!({ "jti": r.jti, "exp": r.expires_at }))
                .collect();
            let body = serde_json::json!({ "until": until, "revoked": revoked });
            no_store(axum::Json(body).into_response())
        }
        Err(EngineError::OAuth(e)) => oauth_error(&e, true),
        Err(other) => ApiError::from(other).into_response(),
    }
}

/// RFC 7662 §2.2 members. `token_type` is RFC 6749 §7.1's `Bearer` for access tokens; a
/// refresh token has no such type, so it is named `refresh_token`, and `token_use` (as Ory
/// Hydra spells it) says which of the two it is for every token.
#[derive(Serialize, Default, utoipa::ToSchema)]
pub(crate) struct IntrospectionBody {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_use: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

impl From<Option<Introspection>> for IntrospectionBody {
    fn from(found: Option<Introspection>) -> Self {
        let Some(i) = found else {
            return IntrospectionBody::default();
        };
        let (token_type, token_use) = match i.kind {
            TokenKind::Access => (IssuedTokens::TOKEN_TYPE, "access_token"),
            TokenKind::Refresh => ("refresh_token", "refresh_token"),
        };
        IntrospectionBody {
            active: true,
            scope: Some(i.scope.to_string()),
            client_id: Some(i.client_id),
            sub: Some(i.subject),
            exp: Some(i.expires_at),
            iat: Some(i.issued_at),
            token_type: Some(token_type),
            token_use: Some(token_use),
            aud: Some(i.audience),
            iss: Some(i.issuer),
            jti: i.token_id,
        }
    }
}

/// RFC 6749 §5.1 success body, fields in seed 004's order.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenBody<'a> {
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

/// [`token_and_hint`] behind the source IP's and the named client's rate limits.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the finished response, built once per refused request"
)]
fn limited_token_and_hint(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, Option<String>, ClientAuth), Response> {
    state.limits.check_ip(ip).map_err(rate_limited)?;
    let parsed = token_and_hint(headers, body).map_err(IntoResponse::into_response)?;
    state
        .limits
        .check_client(parsed.2.client_id())
        .map_err(rate_limited)?;
    Ok(parsed)
}

/// 429 (RFC 6585 §4) with `Retry-After`, in RFC 6749 §5.2's shape. RFC 6749 defines no error
/// code for it; `temporarily_unavailable` is the registered code (§4.1.2.1) that says "retry
/// later", and the status tells it from the 503 that uses it too.
pub fn rate_limited(l: Limited) -> Response {
    let body = serde_json::json!({
        "error": "temporarily_unavailable",
        "error_description": "too many requests: retry after the seconds in Retry-After",
    });
    let mut res = no_store((StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response());
    super::set_retry_after(&mut res, l.retry_after_secs);
    res
}

/// A refusal of the HTTP layer ([`crate::protocol`]) as an RFC 6749 §5.2 error:
/// `invalid_request` is §5.2's code for a request the endpoint cannot take; the status says why.
/// Also the shape of khoa's own endpoints that belong to no dialect.
pub fn refusal(_: &DialectsConfig, r: Refusal) -> Response {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": r.description(),
    });
    no_store((r.status(), axum::Json(body)).into_response())
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
    // A locked account: `invalid_grant` (RFC 6749 §5.2 has no code of its own for it, and a
    // new one would tell a guesser that this attempt was not checked), plus when to retry.
    if let Some(secs) = e.retry_after() {
        super::set_retry_after(&mut res, secs);
    }
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
    let FormRequest { mut form, client } = parse_form_request(headers, body)?;
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

/// A form-encoded request and the client authentication it carries: what the token,
/// revocation and introspection endpoints all take.
struct FormRequest {
    form: HashMap<String, String>,
    client: ClientAuth,
}

fn parse_form_request(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<FormRequest, Rejection> {
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
    let auth = single_header(headers, header::AUTHORIZATION.as_str())
        .map_err(|e| reject(e.to_string()))?;
    let client = client_auth(parse_authorization(auth, true), &mut form)?;
    Ok(FormRequest { form, client })
}

/// The `token` and `token_type_hint` of a revocation or introspection request.
fn token_and_hint(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, Option<String>, ClientAuth), Rejection> {
    let FormRequest { mut form, client } = parse_form_request(headers, body)?;
    let token = form.remove("token").ok_or_else(|| Rejection {
        basic_attempted: client.used_basic(),
        ..Rejection::invalid_request("the token parameter is required")
    })?;
    Ok((token, form.remove("token_type_hint"), client))
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
