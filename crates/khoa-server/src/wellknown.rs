//! Published metadata: the JWKS (RFC 7517) resource servers verify JWT access tokens with.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

pub async fn jwks(State(state): State<AppState>) -> Response {
    let ring = state.engine.key_ring();
    let mut res = ring.jwks_json().to_owned().into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    // Short enough that a rotated-in key is picked up well before it signs anything for long.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}
