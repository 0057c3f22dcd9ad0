//! `GET /openapi.json`: an OpenAPI 3.1 document of every public endpoint, with each dialect's
//! success and error bodies and status codes, so that a partner's tooling (and the schema
//! fuzzer in `tests/schemathesis/`) can read what khoa answers.
//!
//! Every dialect's operations are generated from its definition
//! ([`crate::openapi_defined`]), built-in or file, at the paths it is served on; a dialect
//! that is not served is absent. khoa's own endpoints (the resources, the login page,
//! metadata, health) are declared here. Forward auth (`/auth/verify`) is not described: it
//! answers any method at any sub-path, on behalf of a proxy rather than a client.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::config::Config;

use crate::state::AppState;
use crate::wellknown::Metadata;

pub const OPENAPI_PATH: &str = "/openapi.json";

/// Serves the document for this server's configuration.
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    match document(&state.config, &state.defined_dialects).to_json() {
        Ok(json) => {
            let mut res = json.into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            res
        }
        Err(e) => crate::error::ApiError::Internal(Box::new(e)).into_response(),
    }
}

/// The document as `config` serves it: every served dialect (`served`) documented from its
/// definition at its paths, `/metrics` where it is configured.
pub fn document(
    config: &Config,
    served: &[std::sync::Arc<khoa_dialect::Dialect>],
) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(item) = doc.paths.paths.remove("/metrics")
        && config.metrics.enabled
    {
        doc.paths.paths.insert(config.metrics.path.clone(), item);
    }
    for d in served {
        for (path, item) in crate::openapi_defined::path_items(d) {
            doc.paths.paths.insert(path, item);
        }
    }
    add_protocol_refusals(&mut doc);
    doc
}

/// The refusals [`crate::protocol`] makes on any operation before or around its handler — 408
/// (RFC 9110 §15.5.9), 413 (§15.5.14), 431 (RFC 6585 §5) — in the shape of the operation's own
/// 400, which is its dialect's error body. Added here once rather than to every annotation.
/// (405 answers a method the document does not list, so no listed operation has it.)
fn add_protocol_refusals(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    let refusals = [
        (
            "408",
            "The request did not arrive within the request timeout",
        ),
        ("413", "The body is too large"),
        ("431", "The request header fields are too large"),
    ];
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            // Only a JSON 400: the middleware answers in JSON, not the login page's HTML.
            let bad = match op.responses.responses.get("400") {
                Some(RefOr::T(bad)) if bad.content.contains_key("application/json") => bad.clone(),
                _ => continue,
            };
            for (status, description) in refusals {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        let mut r = bad.clone();
                        r.description = description.to_owned();
                        RefOr::T(r)
                    });
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "khoa",
        description = "khoa's token endpoints in each wire dialect, the standard OAuth 2.0 \
            endpoints, the sample protected resources, metadata and health. Each dialect's \
            operations are generated from its definition; a dialect that is not served is \
            absent."
    ),
    paths(
        protected_resource_get,
        protected_resource_post,
        protected_resource_put,
        protected_resource_patch,
        protected_resource_delete,
        authorize_show,
        authorize_submit,
        userinfo_get,
        userinfo_post,
        jwks,
        oauth_metadata,
        openid_configuration,
        healthz,
        readyz,
        metrics,
        openapi,
    ),
    components(schemas(
        OAuthErrorBody,
        ProtectedResourceBody,
        UserinfoBody,
        AuthorizeForm,
        Jwks,
        Jwk,
        OpenApiDocument,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "authorization_code", description = "RFC 6749 §4.1 with PKCE: the login page"),
        (name = "resource", description = "Bearer-protected resources"),
        (name = "metadata", description = "JWKS and discovery"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
struct ApiDoc;

/// One HTTP Basic scheme per kind of credential, so that a caller (or a fuzzer) can tell which
/// pair each endpoint takes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let basic = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(what.to_owned()))
                    .build(),
            )
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_basic",
            basic("An OAuth 2.0 client's client_id:client_secret (RFC 6749 §2.3.1)"),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An access token from any token endpoint (RFC 6750)"))
                    .build(),
            ),
        );
    }
}

// ---- bodies ----

/// RFC 6749 §5.2 error; also RFC 6750 §3 refusals and khoa's 500/503 answers
/// (`server_error`, `temporarily_unavailable`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct OAuthErrorBody {
    #[schema(example = "invalid_grant")]
    error: String,
    error_description: String,
}

/// Who the token speaks for.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProtectedResourceBody {
    #[schema(example = "access granted")]
    message: String,
    method: String,
    sub: String,
    client_id: String,
    scope: String,
    /// `jwt`, `opaque`, `hex40` or `account`.
    token_format: String,
    expires_at: i64,
}

/// OpenID Connect Core §5.3.2.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UserinfoBody {
    sub: String,
    preferred_username: String,
}

/// RFC 6749 §4.1.1 parameters (with RFC 7636 PKCE), as a query or carried by the login form.
#[derive(Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuthorizeQuery {
    /// `code` only.
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    /// `S256` only.
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    /// `vi` or `en`.
    ui_locales: Option<String>,
}

/// The login form: the carried authorization request, the credentials and the CSRF token
/// that must match the page's cookie.
#[derive(Serialize, ToSchema)]
struct AuthorizeForm {
    #[schema(nullable = false)]
    response_type: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    state: Option<String>,
    #[schema(nullable = false)]
    code_challenge: Option<String>,
    #[schema(nullable = false)]
    code_challenge_method: Option<String>,
    #[schema(nullable = false)]
    nonce: Option<String>,
    #[schema(nullable = false)]
    ui_locales: Option<String>,
    #[schema(nullable = false)]
    username: Option<String>,
    #[schema(nullable = false)]
    password: Option<String>,
    #[schema(nullable = false)]
    csrf_token: Option<String>,
}

/// RFC 7517 §5.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// RFC 8037 §2: an Ed25519 public key.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Jwk {
    #[schema(example = "OKP")]
    kty: String,
    #[schema(example = "Ed25519")]
    crv: String,
    x: String,
    kid: String,
    #[schema(example = "EdDSA")]
    alg: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    use_: String,
}

/// This document (OpenAPI 3.1).
#[derive(Serialize, ToSchema)]
struct OpenApiDocument {
    #[schema(example = "3.1.0")]
    openapi: String,
}

// ---- operations ----

/// Seed 004's usage example, for every method; mutating ones need the session's OTP token
/// when it has one (seed 000).
macro_rules! protected_resource {
    ($name:ident, $method:ident) => {
        #[utoipa::path(
            $method, path = "/api/protected-resource", tag = "resource",
            params(("x-otp-token" = Option<String>, Header,
                description = "The session's otp_token (mutating methods)")),
            security(("bearer" = [])),
            responses(
                (status = 200, description = "Who the token speaks for",
                    body = ProtectedResourceBody),
                (status = 400, description = "invalid_request: a repeated Authorization or \
                    x-otp-token (RFC 6750 §3.1)", body = OAuthErrorBody),
                (status = 401, description = "invalid_token (RFC 6750 §3.1)",
                    body = OAuthErrorBody, headers(("WWW-Authenticate" = String))),
                (status = 403, description = "otp_required", body = OAuthErrorBody),
                (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
            )
        )]
        #[allow(dead_code)]
        fn $name() {}
    };
}
protected_resource!(protected_resource_get, get);
protected_resource!(protected_resource_post, post);
protected_resource!(protected_resource_put, put);
protected_resource!(protected_resource_patch, patch);
protected_resource!(protected_resource_delete, delete);

#[utoipa::path(
    get, path = "/connect/authorize", tag = "authorization_code",
    params(AuthorizeQuery),
    responses(
        (status = 200, description = "The login page", body = String, content_type = "text/html"),
        (status = 303, description = "Back to the client with `error` (RFC 6749 §4.1.2.1)",
            headers(("Location" = String))),
        (status = 400, description = "Unverifiable client or redirect URI: an error page",
            body = String, content_type = "text/html"),
        (status = 500, description = "server_error", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    )
)]
#[allow(dead_code)]
fn authorize_show() {}

#[utoipa::path(
    post, path = "/connect/authorize", tag = "authorization_code",
    request_body(content = AuthorizeForm, content_type = "application/x-www-form-urlencoded"),
    params(("Cookie" = Option<String>, Header, description = "The page's CSRF cookie")),
    responses(
        (status = 200, description = "The login page again, with a message", body = String,
            content_type = "text/html"),
        (status = 303, description = "Back to the client with `code` or `error`",
            headers(("Location" = String))),
        (status = 400, description = "Malformed form or unverifiable client: an error page",
            body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed: an error page", body = String,
            content_type = "text/html"),
        (status = 429, description = "Too many sign-in attempts: an error page", body = String,
            content_type = "text/html", headers(("Retry-After" = String))),
        (status = 500, description = "server_error", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    )
)]
#[allow(dead_code)]
fn authorize_submit() {}

macro_rules! userinfo {
    ($name:ident, $method:ident) => {
        #[utoipa::path(
            $method, path = "/connect/userinfo", tag = "resource",
            security(("bearer" = [])),
            responses(
                (status = 200, description = "OpenID Connect Core §5.3.2", body = UserinfoBody),
                (status = 400, description = "invalid_request: a repeated Authorization \
                    (RFC 6750 §3.1)", body = OAuthErrorBody),
                (status = 401, description = "invalid_token", body = OAuthErrorBody,
                    headers(("WWW-Authenticate" = String))),
                (status = 403, description = "insufficient_scope: no `openid`",
                    body = OAuthErrorBody),
                (status = 500, description = "server_error", body = OAuthErrorBody),
                (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
            )
        )]
        #[allow(dead_code)]
        fn $name() {}
    };
}
userinfo!(userinfo_get, get);
userinfo!(userinfo_post, post);

#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "metadata",
    params(("If-None-Match" = Option<String>, Header)),
    responses(
        (status = 200, description = "The published signing keys", body = Jwks,
            content_type = "application/jwk-set+json", headers(("ETag" = String))),
        (status = 304, description = "Not modified"),
    )
)]
#[allow(dead_code)]
fn jwks() {}

#[utoipa::path(
    get, path = "/.well-known/oauth-authorization-server", tag = "metadata",
    responses(
        (status = 200, description = "RFC 8414 metadata", body = Metadata),
        (status = 500, description = "server_error", body = OAuthErrorBody),
    )
)]
#[allow(dead_code)]
fn oauth_metadata() {}

#[utoipa::path(
    get, path = "/.well-known/openid-configuration", tag = "metadata",
    responses(
        (status = 200, description = "OpenID Connect Discovery: RFC 8414's members and \
            OpenID's own", body = Metadata),
        (status = 500, description = "server_error", body = OAuthErrorBody),
    )
)]
#[allow(dead_code)]
fn openid_configuration() {}

#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain"))
)]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The database answers", body = String,
            content_type = "text/plain"),
        (status = 503, description = "It does not", body = String, content_type = "text/plain"),
    )
)]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus / OpenMetrics text", body = String,
        content_type = "application/openmetrics-text"))
)]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(
    get, path = "/openapi.json", tag = "metadata",
    responses((status = 200, description = "This document", body = OpenApiDocument))
)]
#[allow(dead_code)]
fn openapi() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_dialect_is_left_out_and_paths_follow_the_config() {
        let mut config = Config::default();
        config
            .dialects
            .enable("bankhub")
            .set("bankhub", "path", "/hub/token");
        let served = crate::dialects::registry::load(&config.dialects, &[]).unwrap();
        let doc = document(&config, &served);
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        assert!(paths.contains(&"/hub/token"));
        assert!(!paths.contains(&"/v1/token"));
        assert!(!paths.contains(&"/oapi/auth/gen-secret-key/derivative"));
        assert!(paths.contains(&"/connect/token"));
    }
}
