//! `POST /token`: the `client_credentials` (RFC 6749 §4.4), `password` (§4.3) and
//! `refresh_token` (§6) grants, with the refusals of §5.2.
//!
//! Stricter than many real servers on purpose, so that a client's mistake shows in its tests:
//! the body must be a form, no parameter may repeat (§3.2), and a client authenticates one way
//! only (§2.3).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use serde_json::json;

use crate::state::{Injected, Issued, NotRedeemed, Recorded, Shared};
use crate::{CLIENT_ID, CLIENT_SECRET, DEFAULT_SCOPE, PASSWORD, USERNAME};

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _call = InFlight::enter(&shared, Recorded::new(&method, &uri, &headers, &body));
    Held::wait(&shared).await;
    if let Some(failure) = shared.update(|s| s.take_injected_failure()) {
        return Refusal::Unavailable(failure).into_response();
    }
    match grant(&shared, &headers, &body) {
        Ok(issued) => answer(issued),
        Err(refusal) => refusal.into_response(),
    }
}

fn grant(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Issued, Refusal> {
    if !is_form(headers) {
        return Err(Refusal::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let params = Params::parse(body)?;
    authenticate(headers, &params)?;
    let now = shared.now();
    let scope = params.get("scope");
    match params.get("grant_type") {
        None => Err(Refusal::InvalidRequest("grant_type is missing")),
        Some("client_credentials") => {
            let scope = scope.unwrap_or(DEFAULT_SCOPE).to_owned();
            Ok(shared.update(|s| s.login(now, scope, false)))
        }
        Some("password") => {
            let username = params.require("username")?;
            let password = params.require("password")?;
            if username != USERNAME || password != PASSWORD {
                return Err(Refusal::InvalidGrant("wrong username or password"));
            }
            let scope = scope.unwrap_or(DEFAULT_SCOPE).to_owned();
            Ok(shared.update(|s| s.login(now, scope, true)))
        }
        Some("refresh_token") => {
            let token = params.require("refresh_token")?;
            shared
                .update(|s| s.redeem(now, token, scope))
                .map_err(Refusal::from)
        }
        Some(_) => Err(Refusal::UnsupportedGrantType),
    }
}

/// §5.1: the answer, never to be cached.
fn answer(issued: Issued) -> Response {
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    });
    if let Some(refresh_token) = issued.refresh_token {
        body["refresh_token"] = refresh_token.into();
    }
    body["scope"] = issued.scope.into();
    no_store(StatusCode::OK, body)
}

/// Client authentication (§2.3.1): HTTP Basic with the form-encoded `client_id:client_secret`,
/// or both in the body; never both ways at once.
fn authenticate(headers: &HeaderMap, params: &Params) -> Result<(), Refusal> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let (id, secret, basic) = match (basic_credentials(headers)?, body_secret) {
        (Some(_), Some(_)) => {
            return Err(Refusal::InvalidRequest(
                "more than one client authentication method",
            ));
        }
        (Some((id, secret)), None) => {
            // A `client_id` in the body beside Basic is allowed, if it names the same client.
            if body_id.is_some_and(|b| b != id) {
                return Err(Refusal::InvalidRequest(
                    "client_id differs from the authenticated client",
                ));
            }
            (id, secret, true)
        }
        (None, Some(secret)) => (
            body_id.unwrap_or_default().to_owned(),
            secret.to_owned(),
            false,
        ),
        (None, None) => return Err(Refusal::InvalidClient { basic: false }),
    };
    // A plain comparison: the only secret here is a published test constant.
    if id == CLIENT_ID && secret == CLIENT_SECRET {
        Ok(())
    } else {
        Err(Refusal::InvalidClient { basic })
    }
}

/// The `Authorization: Basic` credentials, `None` without the header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = Refusal::InvalidClient { basic: true };
    let (scheme, encoded) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .ok_or(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or(bad)?;
    let (id, secret) = decoded.split_once(':').ok_or(bad)?;
    match (form_decode(id), form_decode(secret)) {
        (Some(id), Some(secret)) => Ok(Some((id, secret))),
        _ => Err(bad),
    }
}

/// Undoes `application/x-www-form-urlencoded` for one component (§2.3.1, Appendix B).
fn form_decode(component: &str) -> Option<String> {
    let spaced = component.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The request's parameters; one sent without a value counts as omitted (§3.1).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(body: &[u8]) -> Result<Params, Refusal> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(Refusal::InvalidRequest("a parameter is repeated"));
            }
            params.push((name.into_owned(), value.into_owned()));
        }
        Ok(Params(params))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &'static str) -> Result<&str, Refusal> {
        self.get(name).ok_or(Refusal::Missing(name))
    }
}

/// The token endpoint's refusals (§5.2), and the failures a test injects.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// `basic`: the client tried HTTP Basic, so the answer names the scheme (§5.2).
    InvalidClient {
        basic: bool,
    },
    InvalidRequest(&'static str),
    Missing(&'static str),
    InvalidGrant(&'static str),
    InvalidScope,
    UnsupportedGrantType,
    Unavailable(Injected),
}

impl From<NotRedeemed> for Refusal {
    fn from(why: NotRedeemed) -> Refusal {
        match why {
            NotRedeemed::Unknown => Refusal::InvalidGrant("unknown refresh token"),
            NotRedeemed::Reused => Refusal::InvalidGrant("refresh token already redeemed"),
            NotRedeemed::Refused => Refusal::InvalidGrant("refresh token refused"),
            NotRedeemed::WiderScope => Refusal::InvalidScope,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error, description) = match self {
            Refusal::InvalidClient { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed".to_owned(),
            ),
            Refusal::InvalidRequest(why) => {
                (StatusCode::BAD_REQUEST, "invalid_request", why.to_owned())
            }
            Refusal::Missing(name) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{name} is missing"),
            ),
            Refusal::InvalidGrant(why) => {
                (StatusCode::BAD_REQUEST, "invalid_grant", why.to_owned())
            }
            Refusal::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "wider than the scope granted".to_owned(),
            ),
            Refusal::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported: client_credentials, password, refresh_token".to_owned(),
            ),
            Refusal::Unavailable(injected) => {
                let status = StatusCode::from_u16(injected.status)
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let mut response = no_store(status, json!({"error": "temporarily_unavailable"}));
                if let Some(secs) = injected.retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                return response;
            }
        };
        let mut response = no_store(
            status,
            json!({"error": error, "error_description": description}),
        );
        if let Refusal::InvalidClient { basic: true } = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"standin\""),
            );
        }
        response
    }
}

/// A JSON answer with `Cache-Control: no-store` (§5.1, §5.2).
fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// A token call in the handler: counted on the way in, and out of `in_flight` when its
/// future ends — answered, or dropped because the client went away.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared, request: Recorded) -> InFlight<'a> {
        shared.update(|s| {
            s.counts.token_calls += 1;
            s.in_flight += 1;
            s.counts.max_concurrent_token_calls =
                s.counts.max_concurrent_token_calls.max(s.in_flight);
            s.last_token_request = Some(request);
        });
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.update(|s| s.in_flight -= 1);
    }
}

/// A token call waiting for `release_tokens`.
struct Held<'a>(&'a Shared);

impl Held<'_> {
    /// Returns at once unless the stand-in holds token calls; then when they are released.
    async fn wait(shared: &Shared) {
        let epoch = shared.update(|s| {
            s.held.then(|| {
                s.held_waiting += 1;
                s.release_epoch
            })
        });
        let Some(epoch) = epoch else { return };
        let _held = Held(shared);
        shared
            .wait_for(|s| !s.held || s.release_epoch != epoch)
            .await;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.update(|s| s.held_waiting -= 1);
    }
}
