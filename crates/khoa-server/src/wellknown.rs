//! Published metadata: the JWKS (RFC 7517) resource servers verify JWT access tokens with, and
//! the discovery documents (RFC 8414, OpenID Connect Discovery) standard clients start from.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The keys published now: the next key ahead of its activation, the current one, and old
/// ones until their last token has expired. Caches may keep the document `max-age` seconds,
/// which `khoa keys rotate` accounts for in its lead time; they revalidate with the `ETag`.
pub async fn jwks(State(state): State<AppState>, request: HeaderMap) -> Response {
    let ring = state.engine.tokens().key_ring();
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

/// RFC 8414 §3: the authorization server's metadata.
pub const OAUTH_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect Discovery 1.0 §4: the same document under OpenID's name.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";

/// RFC 8414 §2 metadata. It lists exactly what this server, as configured, answers: an
/// endpoint that is disabled is absent, and so are grants and methods nothing here accepts.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Metadata {
    issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_endpoint: Option<String>,
    jwks_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    introspection_endpoint: Option<String>,
    /// khoa's JWT revocation list for offline verifiers (not a registered RFC 8414 name).
    #[serde(skip_serializing_if = "Option::is_none")]
    khoa_revocation_list_endpoint: Option<String>,
    /// RFC 6749 §3.1, with its login page (always served).
    authorization_endpoint: String,
    /// OpenID Connect Core §5.3.
    userinfo_endpoint: String,
    /// The authorization code flow only (no implicit or hybrid flows: RFC 9700 §2.1.2).
    response_types_supported: Vec<&'static str>,
    response_modes_supported: Vec<&'static str>,
    /// RFC 7636: PKCE is mandatory, and only S256 (RFC 9700 §2.1.1).
    code_challenge_methods_supported: Vec<&'static str>,
    /// RFC 9207: the redirect carries `iss`.
    authorization_response_iss_parameter_supported: bool,
    /// The login page's languages.
    ui_locales_supported: Vec<&'static str>,
    grant_types_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revocation_endpoint_auth_methods_supported: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    introspection_endpoint_auth_methods_supported: Option<Vec<&'static str>>,
    /// The `alg` of every token khoa signs (JWT access tokens per RFC 9068).
    token_signing_alg_values_supported: Vec<&'static str>,
}

/// Client authentication at the token and revocation endpoints: Basic, form, or a public
/// client's bare `client_id` (RFC 6749 §2.3.1, §2.1).
const CLIENT_AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];
/// Introspection answers confidential clients only (RFC 7662 §2.1).
const INTROSPECTION_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

impl Metadata {
    pub fn of(state: &AppState) -> Metadata {
        let issuer = state.engine.config().issuer.clone();
        // Wherever the served definitions put the standard endpoints.
        let paths = crate::dialects::registry::standard_paths(&state.defined_dialects);
        let on = |path: &Option<String>| path.as_ref().map(|p| format!("{issuer}{p}"));
        let grants = khoa_core::model::GrantType::ALL.map(|g| g.as_str());
        Metadata {
            token_endpoint: on(&paths.token),
            jwks_uri: format!("{issuer}{JWKS_PATH}"),
            revocation_endpoint: on(&paths.revocation),
            introspection_endpoint: on(&paths.introspection),
            khoa_revocation_list_endpoint: on(&paths.revocation_list),
            authorization_endpoint: format!("{issuer}{}", crate::authorize::AUTHORIZE_PATH),
            userinfo_endpoint: format!("{issuer}{}", crate::userinfo::USERINFO_PATH),
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query"],
            code_challenge_methods_supported: vec!["S256"],
            authorization_response_iss_parameter_supported: true,
            ui_locales_supported: vec!["vi", "en"],
            grant_types_supported: if paths.token.is_some() {
                grants.to_vec()
            } else {
                Vec::new()
            },
            token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS.to_vec(),
            revocation_endpoint_auth_methods_supported: paths
                .revocation
                .is_some()
                .then(|| CLIENT_AUTH_METHODS.to_vec()),
            introspection_endpoint_auth_methods_supported: paths
                .introspection
                .is_some()
                .then(|| INTROSPECTION_AUTH_METHODS.to_vec()),
            token_signing_alg_values_supported: vec![khoa_core::keys::ALG],
            issuer,
        }
    }
}

pub async fn oauth_metadata(State(state): State<AppState>) -> Response {
    metadata_response(serde_json::to_value(Metadata::of(&state)))
}

/// OpenID Connect Discovery §3 adds `subject_types_supported` to RFC 8414's members.
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    let mut doc = serde_json::to_value(Metadata::of(&state));
    if let Ok(serde_json::Value::Object(map)) = &mut doc {
        map.insert(
            "subject_types_supported".into(),
            serde_json::json!(["public"]),
        );
        // EdDSA only: OpenID Connect Discovery §3 expects RS256 too; khoa signs with one key
        // type (Ed25519), which some relying-party libraries do not accept.
        map.insert(
            "id_token_signing_alg_values_supported".into(),
            serde_json::json!([khoa_core::keys::ALG]),
        );
        map.insert(
            "scopes_supported".into(),
            serde_json::json!(["openid", "offline_access"]),
        );
        map.insert(
            "claims_supported".into(),
            serde_json::json!([
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "preferred_username"
            ]),
        );
    }
    metadata_response(doc)
}

fn metadata_response(doc: Result<serde_json::Value, serde_json::Error>) -> Response {
    match doc {
        Ok(doc) => {
            let mut res = axum::Json(doc).into_response();
            // The document changes only with the configuration: caches may keep it an hour.
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            res
        }
        Err(e) => crate::error::ApiError::Internal(Box::new(e)).into_response(),
    }
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
