//! `/resource` and `/resource/*`, any method: the protected resource (RFC 6750).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::{Recorded, Shared, Verdict};

pub(crate) async fn resource(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded::new(&method, &uri, &headers, &body);
    let token = bearer(&headers);
    let now = shared.now();
    let verdict = shared.update(|s| {
        s.resource_requests.push(recorded);
        s.judge(token, now)
    });
    match verdict {
        Verdict::Valid => axum::Json(json!({
            "ok": true,
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "body": String::from_utf8_lossy(&body),
        }))
        .into_response(),
        Verdict::Missing => refuse("Bearer realm=\"standin\"", "no bearer token"),
        Verdict::Expired => refuse(INVALID_TOKEN, "the access token has expired"),
        Verdict::Unknown => refuse(INVALID_TOKEN, "the access token is unknown or revoked"),
        Verdict::Forced => refuse(INVALID_TOKEN, "refused by unauthorized_next"),
    }
}

/// RFC 6750 §3.1: the challenge for a token that was presented but is no good. Without an
/// `error_description` in it, so that a client's test may compare the header as a whole.
const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

fn refuse(challenge: &'static str, why: &str) -> Response {
    let error = if challenge == INVALID_TOKEN {
        json!({"error": "invalid_token", "error_description": why})
    } else {
        // §3.1: a request without credentials gets no error code.
        json!({"error_description": why})
    };
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// The token of `Authorization: Bearer <token>` (§2.1; the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
