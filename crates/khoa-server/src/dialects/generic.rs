//! The generic adapter: one handler for every endpoint of every dialect definition. Parse as
//! the definition says, run the engine, render as the definition says. Rate limits, metrics
//! labels and request logs apply exactly as for the built-in handlers, because they come from
//! the same places (the limits, the telemetry middleware keyed on the route).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use khoa_core::error::{Detail, EngineError, ErrorCode};
use khoa_core::grant::{ClientAuth, TokenRequest};
use khoa_core::mint::IssuedTokens;
use khoa_core::partner::EnvelopeError;
use khoa_dialect::def::{ClientAuth as AuthFrom, EnvelopeKind, Grant, Input, Method, Operation};
use khoa_dialect::load::{Endpoint, EnvelopeSpec};
use khoa_dialect::read::{Read, envelope_data, envelope_key, read, read_from};
use khoa_dialect::render::{Answer, Issued};
use khoa_dialect::{Dialect, Kind, Refused};
use secrecy::SecretString;

use super::no_store;
use super::operations;
use crate::error::ApiError;
use crate::limits::{ClientIp, Limited};
use crate::protocol;
use crate::state::AppState;
use crate::wire::{BodyError, body_bytes, json_object};

/// The route of `dialect`'s endpoint number `index`.
pub fn route(dialect: Arc<Dialect>, index: usize) -> MethodRouter<AppState> {
    let method = dialect.endpoints[index].method;
    let handler = move |State(state): State<AppState>,
                        ClientIp(ip): ClientIp,
                        RawQuery(query): RawQuery,
                        headers: HeaderMap,
                        body: Result<Bytes, BytesRejection>| {
        let dialect = dialect.clone();
        async move {
            let at = At {
                dialect: &dialect,
                index,
            };
            match at.endpoint().operation {
                Operation::Resource => operations::resource(&state, at, &headers, body).await,
                Operation::RevokedJwts => {
                    operations::revoked_jwts(&state, at, ip, &headers, query.as_deref()).await
                }
                _ => serve(&state, at, ip, &headers, body).await,
            }
        }
    };
    match method {
        Method::Post => post(handler),
        Method::Put => put(handler),
        Method::Get => get(handler),
    }
}

/// An endpoint of a dialect: what is served, and whose error answers its refusals get.
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub dialect: &'a Dialect,
    pub index: usize,
}

impl At<'_> {
    pub fn endpoint(&self) -> &Endpoint {
        &self.dialect.endpoints[self.index]
    }

    /// The refusal, in this endpoint's error shape.
    pub fn refuse(&self, r: Refused) -> Response {
        respond(self.dialect.refuse_at(self.index, &r), r.retry_after)
    }
}

/// A token, revocation or introspection request: limits, body, inputs, the client, then the
/// engine.
async fn serve(
    state: &AppState,
    at: At<'_>,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (dialect, endpoint) = (at.dialect, at.endpoint());
    // An envelope names its sender in a header: read it first, so that its partner's rate
    // limit applies before any decryption is spent on the request.
    let sender = match &endpoint.envelope {
        Some(env) => match envelope_key(env, headers) {
            Ok(code) => Some(code),
            Err(r) => return at.refuse(r),
        },
        None => None,
    };
    if let Err(l) = state.limits.check_ip(ip) {
        return at.refuse(rate_limited(l));
    }
    if let Some(code) = &sender
        && let Err(l) = state.limits.check_partner(code)
    {
        return at.refuse(rate_limited(l));
    }
    let body = match read_body(body) {
        Ok(b) => b,
        Err(r) => return at.refuse(r),
    };
    let read = match (&endpoint.envelope, &sender) {
        (Some(env), Some(code)) => {
            open(state, env, code, &body)
                .await
                .and_then(|(client, payload)| {
                    Ok((Some(client), read_from(endpoint, headers, &payload)?))
                })
        }
        _ => read(endpoint, headers, &body).map(|r| (None, r)),
    };
    let (attested, read) = match read {
        Ok(r) => r,
        Err(r) => return at.refuse(r),
    };
    let attested = match (&endpoint.signature, &read.signed) {
        (Some(spec), Some(signed)) => {
            let client = read
                .get(Input::ClientId)
                .map(str::to_owned)
                .or_else(|| endpoint.client.clone())
                .unwrap_or_default();
            // The client's own rate limit before any key is fetched, unsealed or run for it.
            if let Err(l) = state.limits.check_client(Some(&client)) {
                return at.refuse(rate_limited(l));
            }
            match super::signature::verify(state, spec, signed, &client).await {
                Ok(()) => Some(client),
                Err(r) => return at.refuse(r),
            }
        }
        _ => attested,
    };
    let mut read = read;
    let client = match client_of(endpoint, &mut read, attested) {
        Ok(c) => c,
        Err(r) => return at.refuse(r),
    };
    // A signed request's client was counted before its signature was checked.
    if endpoint.signature.is_none()
        && let Err(l) = state.limits.check_client(client.client_id())
    {
        return at.refuse(rate_limited(l));
    }
    let basic = client.used_basic();
    let refused = |e: EngineError| at.refuse(with_basic(from_engine(e), basic));
    match endpoint.operation {
        Operation::Revoke => {
            return operations::revoke(state, &client, &mut read)
                .await
                .unwrap_or_else(refused);
        }
        Operation::Introspect => {
            return operations::introspect(state, &client, &mut read)
                .await
                .unwrap_or_else(refused);
        }
        _ => {}
    }
    let request = grant_request(endpoint, read, client);
    match state.engine.tokens().token(&request).await {
        Ok(t) => success(endpoint, &t, state.engine.now()),
        Err(e) => {
            let refused = with_basic(from_engine(e), basic);
            if bound_client_refused(endpoint, &refused) {
                tracing::error!(
                    dialect = %dialect.name,
                    endpoint = %endpoint.name,
                    client = endpoint.client.as_deref().unwrap_or_default(),
                    error = refused.error.unwrap_or_default(),
                    "the dialect's bound client refused the request: create it, or allow it \
                     this grant and scope"
                );
            }
            at.refuse(refused)
        }
    }
}

/// Whether the engine refused the client the endpoint is bound to, which the caller did not
/// choose: the operator's mistake, logged as one.
fn bound_client_refused(endpoint: &Endpoint, r: &Refused) -> bool {
    let bound = endpoint.client.is_some()
        && endpoint.client_auth == AuthFrom::Inputs
        && endpoint.input(Input::ClientId).is_none()
        && endpoint.input(Input::ClientSecret).is_none();
    bound
        && matches!(
            r.kind,
            Kind::InvalidClient | Kind::UnauthorizedClient | Kind::InvalidScope
        )
}

/// Opens an envelope from `sender`: the client its key authenticates, and what it holds.
async fn open(
    state: &AppState,
    env: &EnvelopeSpec,
    sender: &str,
    body: &[u8],
) -> Result<(String, serde_json::Map<String, serde_json::Value>), Refused> {
    let data = envelope_data(env, body)?;
    let envelope_failed = || Refused::new(Kind::Envelope, "the envelope could not be opened");
    match env.kind {
        EnvelopeKind::Aes256CbcHex => {
            let opened = state
                .engine
                .tokens()
                .partners()
                .open(sender, &data)
                .await
                .map_err(|e| match e {
                    EnvelopeError::Unavailable(m) => from_engine(EngineError::Unavailable(m)),
                    EnvelopeError::UnknownPartner | EnvelopeError::Undecryptable => {
                        envelope_failed()
                    }
                })?;
            // Not JSON after decryption is answered like a decryption failure: telling them
            // apart would let a forger learn when the padding was right.
            let payload = json_object(&opened.plaintext).ok_or_else(envelope_failed)?;
            Ok((opened.partner.client_id, payload))
        }
    }
}

/// The client as the endpoint names it, or as the envelope's key or the signature vouches
/// for it.
fn client_of(
    endpoint: &Endpoint,
    read: &mut Read,
    attested: Option<String>,
) -> Result<ClientAuth, Refused> {
    let secret = read.take(Input::ClientSecret).map(SecretString::from);
    if let Some(client_id) = attested {
        // The request may name a client only if it is the one the key belongs to.
        if read
            .take(Input::ClientId)
            .is_some_and(|named| named != client_id)
        {
            return Err(Refused::new(
                Kind::InvalidClient,
                "client authentication failed",
            ));
        }
        return Ok(match secret {
            Some(secret) => ClientAuth::Post { client_id, secret },
            None => ClientAuth::Attested { client_id },
        });
    }
    if let Some((client_id, password)) = read.basic.take() {
        // RFC 6749 §2.3: one authentication method per request.
        if endpoint.client_auth == AuthFrom::Rfc6749 {
            if secret.is_some() {
                return Err(Refused::new(
                    Kind::InvalidRequest,
                    "use one client authentication method, not two",
                ));
            }
            if read.get(Input::ClientId).is_some_and(|id| id != client_id) {
                return Err(Refused::new(
                    Kind::InvalidRequest,
                    "client_id does not match the Basic credentials",
                ));
            }
        }
        return Ok(ClientAuth::Basic {
            client_id,
            secret: SecretString::from(password),
        });
    }
    Ok(
        match (
            read.take(Input::ClientId)
                .or_else(|| endpoint.client.clone()),
            secret,
        ) {
            (Some(client_id), Some(secret)) => ClientAuth::Post { client_id, secret },
            (Some(client_id), None) => ClientAuth::IdOnly { client_id },
            (None, _) => ClientAuth::None,
        },
    )
}

/// RFC 6749 §5.2: a failed Basic authentication is answered with a challenge, which the
/// definition gives as the case of `invalid_client_basic`.
pub(super) fn with_basic(mut r: Refused, basic: bool) -> Refused {
    if basic && r.kind == Kind::InvalidClient {
        r.kind = Kind::InvalidClientBasic;
    }
    r
}

/// The request body, or the refusal of one too large or unreadable.
pub(super) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refused> {
    body_bytes(body).map_err(|e| match e {
        BodyError::TooLarge => {
            Refused::new(Kind::TooLarge, protocol::Refusal::TooLarge.description())
        }
        BodyError::Unreadable => {
            Refused::new(Kind::Malformed, "The request body could not be read")
        }
    })
}

fn grant_request(endpoint: &Endpoint, mut read: Read, client: ClientAuth) -> TokenRequest {
    let grant_type = match endpoint.grant {
        Some(Grant::Request) | None => read.take(Input::GrantType),
        Some(g) => Some(g.as_str().to_owned()),
    };
    TokenRequest {
        grant_type,
        username: read.take(Input::Username),
        password: read.take(Input::Password).map(SecretString::from),
        refresh_token: read.take(Input::RefreshToken).map(SecretString::from),
        scope: read.take(Input::Scope),
        code: read.take(Input::Code).map(SecretString::from),
        redirect_uri: read.take(Input::RedirectUri),
        code_verifier: read.take(Input::CodeVerifier).map(SecretString::from),
        ..TokenRequest::new("", client)
    }
}

fn success(endpoint: &Endpoint, t: &IssuedTokens, now: i64) -> Response {
    let scope = t.scope.to_string();
    let issued = Issued {
        access_token: &t.access_token,
        token_type: IssuedTokens::TOKEN_TYPE,
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.as_deref(),
        refresh_expires_in: t.refresh_expires_in,
        otp_token: t.otp_token.as_deref(),
        scope: Some(scope),
        client_id: &t.client_id,
        id_token: t.id_token.as_deref(),
        issued_at: now,
    };
    respond(endpoint.render(&issued), None)
}

pub(super) fn rate_limited(l: Limited) -> Refused {
    Refused::new(
        Kind::RateLimited,
        "Too many requests, retry after the seconds in Retry-After",
    )
    .with_retry_after(l.retry_after_secs)
}

/// The engine's refusal as a kind of the definition's error table.
pub(super) fn from_engine(e: EngineError) -> Refused {
    match e {
        EngineError::OAuth(o) => {
            let kind = match (o.code, o.detail) {
                (_, Detail::TemporarilyLocked { .. }) => Kind::Locked,
                (_, Detail::AccountDisabled) => Kind::Disabled,
                (ErrorCode::InvalidClient, _) => Kind::InvalidClient,
                (ErrorCode::InvalidGrant, _) => Kind::InvalidGrant,
                (ErrorCode::InvalidRequest, _) => Kind::InvalidRequest,
                (ErrorCode::InvalidScope, _) => Kind::InvalidScope,
                (ErrorCode::UnauthorizedClient, _) => Kind::UnauthorizedClient,
                _ => Kind::OauthError,
            };
            Refused {
                error: Some(o.code.as_str()),
                retry_after: o.retry_after(),
                ..Refused::new(kind, o.description.into_owned())
            }
        }
        other => {
            let (status, _, description) = ApiError::from(other).log();
            let kind = if status == StatusCode::SERVICE_UNAVAILABLE {
                Kind::Unavailable
            } else {
                Kind::ServerError
            };
            Refused::new(kind, description)
        }
    }
}

/// A refusal of the HTTP layer ([`crate::protocol`]) in the shape of endpoint `index`.
pub fn protocol_refusal(dialect: &Dialect, index: usize, r: protocol::Refusal) -> Response {
    let kind = match r {
        protocol::Refusal::Malformed => Kind::Malformed,
        protocol::Refusal::MethodNotAllowed => Kind::MethodNotAllowed,
        protocol::Refusal::Timeout => Kind::Timeout,
        protocol::Refusal::TooLarge => Kind::TooLarge,
        protocol::Refusal::HeadersTooLarge => Kind::HeadersTooLarge,
    };
    At { dialect, index }.refuse(Refused::new(kind, r.description()))
}

pub(super) fn respond(a: Answer, retry_after: Option<u64>) -> Response {
    let status = a.status;
    let mut res = (status, axum::Json(a.body)).into_response();
    for (name, value) in a.headers {
        res.headers_mut().insert(name, value);
    }
    // Last, so that no definition can make a token answer cacheable (RFC 6749 §5.1).
    let mut res = no_store(res);
    // RFC 9110 §10.2.3: when to come back, as every built-in dialect's 429 and 503 say.
    match (retry_after, status) {
        (Some(secs), _) => super::set_retry_after(&mut res, secs),
        (None, StatusCode::SERVICE_UNAVAILABLE) => super::set_retry_after(&mut res, 1),
        _ => {}
    }
    res
}
