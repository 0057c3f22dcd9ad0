//! OpenID Connect Core §5.3 `/connect/userinfo`: who the bearer token speaks for. The token
//! must carry the `openid` scope (§5.3.1); errors follow RFC 6750 §3.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use khoa_core::scope::OPENID;

use crate::dialects::no_store;
use crate::error::ApiError;
use crate::resource::authenticate;
use crate::state::AppState;

pub const USERINFO_PATH: &str = "/connect/userinfo";

pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let principal = match authenticate(&state, &headers).await {
        Ok(p) => p,
        Err(rejection) => return rejection.into_response(),
    };
    if !principal.scope.contains(OPENID) {
        return insufficient_scope();
    }
    match state.engine.tokens().userinfo(&principal).await {
        Ok(Some(user)) => no_store(
            axum::Json(serde_json::json!({
                "sub": user.id,
                "preferred_username": user.username,
            }))
            .into_response(),
        ),
        // The user was deleted or disabled since the token was issued.
        Ok(None) => invalid_token(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// RFC 6750 §3.1: 403 `insufficient_scope`, naming the scope that would do.
fn insufficient_scope() -> Response {
    challenge(
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        "the access token was not granted the openid scope",
        "Bearer realm=\"khoa\", error=\"insufficient_scope\", scope=\"openid\"",
    )
}

fn invalid_token() -> Response {
    challenge(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the user behind this token no longer exists or is disabled",
        "Bearer realm=\"khoa\", error=\"invalid_token\"",
    )
}

fn challenge(status: StatusCode, error: &str, description: &str, www: &'static str) -> Response {
    let body = serde_json::json!({ "error": error, "error_description": description });
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(www));
    no_store(res)
}
