//! Published metadata: the JWKS (RFC 7517) resource servers verify JWT access tokens with.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The keys published now: the next key ahead of its activation, the current one, and old
/// ones until their last token has expired. Caches may keep the document `max-age` seconds,
/// which `khoa keys rotate` accounts for in its lead time; they revalidate with the `ETag`.
pub async fn jwks(State(state): State<AppState>, request: HeaderMap) -> Response {
    let ring = state.engine.key_ring();
    let jwks = ring.jwks(state.engine.now());
    let mut res = if if_none_match(&request, &jwks.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = jwks.body.clone().into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        res
    };
    let h = res.headers_mut();
    // RFC 9110 §15.4.5: a 304 carries the ETag and Cache-Control a 200 would have.
    if let Ok(etag) = HeaderValue::from_str(&jwks.etag) {
        h.insert(header::ETAG, etag);
    }
    let max_age = format!("public, max-age={}", state.config.keys.jwks_max_age_secs);
    if let Ok(cache) = HeaderValue::from_str(&max_age) {
        h.insert(header::CACHE_CONTROL, cache);
    }
    res
}

/// RFC 9110 §13.1.2: whether `If-None-Match` names `etag` (weak comparison) or is `*`.
fn if_none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = "\"abc\"";
        assert!(if_none_match(&headers("\"abc\""), etag));
        assert!(if_none_match(&headers("W/\"abc\""), etag));
        assert!(if_none_match(&headers("\"x\", \"abc\""), etag));
        assert!(if_none_match(&headers("*"), etag));
        assert!(!if_none_match(&headers("\"abd\""), etag));
        assert!(!if_none_match(&headers("abc"), etag));
        assert!(!if_none_match(&HeaderMap::new(), etag));
    }
}
