//! The operations a definition's endpoint can name besides `token` (docs/dialects.md,
//! "Operations"): what each does is code, here; where it is served, how its inputs and client
//! are read and how it refuses is the definition's.
//!
//! - `revoke`: RFC 7009 §2.2, 200 with an empty body whether or not the token existed.
//! - `introspect`: RFC 7662 §2.2, the token's metadata, or `{"active": false}` alone.
//! - `revoked_jwts`: khoa's JWT revocation list, for resource servers that verify offline.
//! - `resource`: a protected API that accepts a valid bearer token khoa issued.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::error::EngineError;
use khoa_core::grant::ClientAuth;
use khoa_core::mint::IssuedTokens;
use khoa_core::revocation::{Introspection, TokenKind};
use khoa_dialect::def::Input;
use khoa_dialect::read::{Read, request_values};
use khoa_dialect::render::Answer;
use khoa_dialect::wire::{Authorization, parse_authorization, parse_form, single_header};
use khoa_dialect::{Kind, Refused};
use secrecy::SecretString;
use serde::Serialize;

use super::generic::{At, from_engine, rate_limited, read_body, respond, with_basic};
use super::no_store;
use crate::resource::authenticate;
use crate::state::AppState;

/// The `token` input (required by the loader for these operations) and its hint.
fn token_and_hint(read: &mut Read) -> (String, Option<String>) {
    let token = read.take(Input::Token).unwrap_or_default();
    (token, read.take(Input::TokenTypeHint))
}

/// RFC 7009 §2.2: revoked, or never valid: the same 200 either way.
pub async fn revoke(
    state: &AppState,
    client: &ClientAuth,
    read: &mut Read,
) -> Result<Response, EngineError> {
    let (token, hint) = token_and_hint(read);
    state
        .engine
        .tokens()
        .revoke(client, &token, hint.as_deref())
        .await?;
    Ok(no_store(StatusCode::OK.into_response()))
}

/// RFC 7662 §2.2.
pub async fn introspect(
    state: &AppState,
    client: &ClientAuth,
    read: &mut Read,
) -> Result<Response, EngineError> {
    let (token, hint) = token_and_hint(read);
    let found = state
        .engine
        .tokens()
        .introspect(client, &token, hint.as_deref())
        .await?;
    Ok(no_store(
        axum::Json(IntrospectionBody::from(found)).into_response(),
    ))
}

/// khoa's JWT revocation list from `?since=` (unix seconds, 0 when absent): `{"until": now,
/// "revoked": [{"jti", "exp"}]}`. A resource server that verifies JWTs offline polls it with
/// `since` a little before the previous `until` and refuses the listed `jti`s until their
/// `exp`. The client authenticates with HTTP Basic (a GET has no form body); confidential
/// clients only.
pub async fn revoked_jwts(
    state: &AppState,
    at: At<'_>,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    if let Err(l) = state.limits.check_ip(ip) {
        return at.refuse(rate_limited(l));
    }
    let since = match parse_form(query.unwrap_or_default().as_bytes()) {
        Ok(q) => match q.get("since").map(|s| s.parse::<i64>()) {
            None => Ok(0),
            Some(Ok(s)) => Ok(s),
            Some(Err(_)) => Err(()),
        },
        Err(_) => Err(()),
    };
    let Ok(since) = since else {
        return at.refuse(Refused::new(
            Kind::InvalidRequest,
            "since must be unix seconds",
        ));
    };
    let auth = match single_header(headers, header::AUTHORIZATION.as_str()) {
        Ok(auth) => auth,
        Err(e) => {
            return at.refuse(Refused {
                header: Some(e.0.to_owned()),
                ..Refused::new(Kind::RepeatedHeader, e.to_string())
            });
        }
    };
    let client = match parse_authorization(auth, true) {
        Authorization::Basic { user, password } => ClientAuth::Basic {
            client_id: user,
            secret: SecretString::from(password),
        },
        _ => ClientAuth::None,
    };
    if let Err(l) = state.limits.check_client(client.client_id()) {
        return at.refuse(rate_limited(l));
    }
    match state.engine.tokens().revoked_jwts(&client, since).await {
        Ok((list, until)) => {
            let revoked: Vec<_> = list
                .into_iter()
                .map(|r| serde_json::json!({ "jti": r.jti, "exp": r.expires_at }))
                .collect();
            let body = serde_json::json!({ "until": until, "revoked": revoked });
            no_store(axum::Json(body).into_response())
        }
        // Only Basic is read here: every failed authentication gets its challenge.
        Err(e) => at.refuse(with_basic(from_engine(e), true)),
    }
}

/// A protected API: the bearer token first, then the body, then the definition's answer,
/// which may name the request's values and the token's client, subject and scope.
pub async fn resource(
    state: &AppState,
    at: At<'_>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let endpoint = at.endpoint();
    let principal = match authenticate(state, headers).await {
        Ok(p) => p,
        Err(rejection) => {
            let kind = if rejection.is_unavailable() {
                Kind::Unavailable
            } else if rejection.is_bad_request() {
                Kind::RepeatedHeader
            } else {
                Kind::InvalidToken
            };
            return at.refuse(Refused::new(kind, rejection.description()));
        }
    };
    let values = match read_body(body).and_then(|b| request_values(endpoint, headers, &b)) {
        Ok(v) => v,
        Err(r) => return at.refuse(r),
    };
    let scope = principal.scope.to_string();
    let lookup = |name: &str| -> Option<serde_json::Value> {
        match name {
            "client_id" => Some(principal.client_id.clone().into()),
            "subject" => Some(principal.subject.clone().into()),
            "scope" => Some(scope.clone().into()),
            n => values.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()),
        }
    };
    let answer = Answer {
        status: StatusCode::from_u16(endpoint.status).unwrap_or(StatusCode::OK),
        headers: endpoint.headers.clone(),
        body: endpoint.response.render(&lookup),
    };
    respond(answer, None)
}

/// RFC 7662 §2.2 members. `token_type` is RFC 6749 §7.1's `Bearer` for access tokens; a
/// refresh token has no such type, so it is named `refresh_token`, and `token_use` (as Ory
/// Hydra spells it) says which of the two it is for every token.
#[derive(Serialize, Default)]
struct IntrospectionBody {
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
