//! `GET /openapi.json`: an OpenAPI 3.1 document of every public endpoint, with each dialect's
//! success and error bodies and status codes, so that a partner's tooling (and the schema
//! fuzzer in `tests/schemathesis/`) can read what khoa answers.
//!
//! The body schemas come from the handlers' own response types where a dialect has one
//! ([`crate::dialects::oauth2`]'s token and introspection bodies, the derivative and partner
//! successes, the discovery metadata); the bodies the handlers build with `json!` are mirrored
//! by the types below, which the schemathesis run checks against real answers.
//!
//! The operations are declared at their default paths, then moved to the configured ones; a
//! disabled dialect's operations are left out. Forward auth (`/auth/verify`) is not described:
//! it answers any method at any sub-path, on behalf of a proxy rather than a client.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::config::Config;
use crate::dialects::oauth2::{IntrospectionBody, TokenBody};

/// The partner dialect's success body (its definition, `crates/khoa-server/dialects/partner.toml`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema: only its shape is used")]
struct PartnerToken {
    access_token: String,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<i64>,
    token_type: String,
}

/// The derivative dialect's success body (its definition, `crates/khoa-server/dialects/derivative.toml`), fields
/// in the document's order.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema: only its shape is used")]
struct DerivativeToken {
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    otp_token: Option<String>,
    token_type: String,
}
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
        Err(e) => crate::error::ApiError::Internal(e.to_string()).into_response(),
    }
}

/// The document as `config` serves it: operations at their configured paths, disabled
/// dialects left out; the dialects of definition files (`defined`, those loaded from a file)
/// documented from their definitions.
pub fn document(
    config: &Config,
    defined: &[std::sync::Arc<khoa_dialect::Dialect>],
) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let d = &config.dialects;
    let at = |on: bool, path: &str| on.then(|| path.to_owned());
    // (declared path, where this configuration serves it)
    let moves = [
        ("/connect/token", at(d.oauth2.enabled, &d.oauth2.token_path)),
        (
            "/connect/revocation",
            at(d.oauth2.enabled, &d.oauth2.revocation_path),
        ),
        (
            "/connect/introspect",
            at(d.oauth2.enabled, &d.oauth2.introspection_path),
        ),
        (
            "/connect/revoked-jwts",
            at(d.oauth2.enabled, &d.oauth2.revocation_list_path),
        ),
        (
            "/oapi/auth/gen-secret-key/derivative",
            at(d.derivative.enabled, &d.derivative.derivative_path),
        ),
        (
            "/oapi/auth/gen-secret-key/underlying",
            at(d.derivative.enabled, &d.derivative.underlying_path),
        ),
        ("/v1/token", at(d.bankhub.enabled, &d.bankhub.path)),
        (
            "/openapi/v1/auth/login",
            at(d.partner.enabled, &d.partner.login_path),
        ),
        (
            "/openapi/v1/auth/refresh",
            at(d.partner.enabled, &d.partner.refresh_path),
        ),
        (
            "/vqr/api/token_generate",
            at(d.vietqr.enabled, &d.vietqr.token_path()),
        ),
        (
            "/bank/api/transaction-sync",
            at(d.vietqr.enabled, &d.vietqr.transaction_sync_path),
        ),
        ("/metrics", at(config.metrics.enabled, &config.metrics.path)),
    ];
    let declared = std::mem::take(&mut doc.paths.paths);
    for (path, item) in declared {
        let target = match moves.iter().find(|(from, _)| *from == path) {
            Some((_, to)) => to.clone(),
            None => Some(path),
        };
        if let Some(target) = target {
            doc.paths.paths.insert(target, item);
        }
    }
    for d in defined
        .iter()
        .filter(|d| matches!(d.origin, khoa_dialect::Origin::File(_)))
    {
        // A file replacing a built-in replaces its hand-written operations too.
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
            endpoints, the sample protected resources, metadata and health. A dialect that is \
            not enabled is absent; with `dialects.derivative.http_status = \"mirror\"` every \
            derivative error is answered with status 500 instead of the status listed here."
    ),
    paths(
        token,
        revocation,
        introspect,
        revoked_jwts,
        derivative,
        underlying,
        bankhub_token,
        partner_login,
        partner_refresh,
        vietqr_token_generate,
        vietqr_transaction_sync,
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
        TokenForm,
        GrantTypeName,
        TokenHintForm,
        RevokedList,
        RevokedJwt,
        DerivativeLogin,
        DerivativeEnvelope,
        DerivativeMessageParams,
        BankhubToken,
        BankhubError,
        PartnerEnvelope,
        PartnerError,
        VietqrToken,
        VietqrFailed,
        VietqrFailedStatus,
        VietqrCode,
        TransactionSync,
        VietqrAnswer,
        TransactionSynced,
        ProtectedResourceBody,
        UserinfoBody,
        AuthorizeForm,
        Jwks,
        Jwk,
        OpenApiDocument,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "oauth2", description = "RFC 6749 token endpoint (seed 004), RFC 7009 \
            revocation, RFC 7662 introspection, khoa's JWT revocation list"),
        (name = "authorization_code", description = "RFC 6749 §4.1 with PKCE: the login page"),
        (name = "derivative", description = "Broker derivative/underlying login (seed 000)"),
        (name = "bankhub", description = "Bank-hub token (seed 001)"),
        (name = "partner", description = "Encrypted partner login and refresh (seed 002)"),
        (name = "vietqr", description = "VietQR token_generate and Transaction Sync (seed 003)"),
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
            "bankhub_basic",
            basic("The bank-hub partner's client_id:client_secret, base64 as is (seed 001)"),
        );
        components.add_security_scheme(
            "vietqr_basic",
            basic("The username:password given to VietQR, base64 as is (seed 003)"),
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

/// A JSON `null`, for the members the documented envelopes always send as `null`.
fn null_schema() -> Object {
    ObjectBuilder::new().schema_type(Type::Null).build()
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

#[allow(dead_code, reason = "described, never built")]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum GrantTypeName {
    Password,
    ClientCredentials,
    RefreshToken,
    AuthorizationCode,
}

/// RFC 6749 §4.1.3, §4.3.2, §4.4.2, §6. Client authentication is HTTP Basic, or
/// `client_id` (+ `client_secret`) in the body, never both.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "grant_type": "password",
    "client_id": "YOUR_CLIENT_ID",
    "username": "account@tripdata.vn",
    "password": "@Password123"
}))]
struct TokenForm {
    grant_type: GrantTypeName,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// Space-separated; the client's default scopes when absent.
    #[schema(nullable = false)]
    scope: Option<String>,
    #[schema(nullable = false)]
    username: Option<String>,
    #[schema(nullable = false)]
    password: Option<String>,
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    #[schema(nullable = false)]
    code: Option<String>,
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    #[schema(nullable = false)]
    code_verifier: Option<String>,
}

/// RFC 7009 §2.1 / RFC 7662 §2.1 request.
#[derive(Serialize, ToSchema)]
struct TokenHintForm {
    token: String,
    /// `access_token` or `refresh_token`; a wrong hint only costs a second lookup.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// khoa's JWT revocation list: poll again with `since` a little before `until`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokedList {
    until: i64,
    revoked: Vec<RevokedJwt>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokedJwt {
    jti: String,
    exp: i64,
}

/// Seed 000's login.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"username": "022C099995", "password": "123456aA@"}))]
struct DerivativeLogin {
    username: String,
    password: String,
}

/// Seed 000's error envelope. The cause is the number that opens `error_description`
/// (-100 malformed, -101 missing field, -102 too large, -107 wrong credentials, -108 locked,
/// -109 rate-limited, -500 internal, -503 unavailable).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DerivativeEnvelope {
    #[schema(example = "OAPI_FNO_500")]
    code: String,
    #[serde(rename = "messageParams")]
    message_params: DerivativeMessageParams,
    #[schema(schema_with = null_schema, required = true)]
    params: Option<String>,
    #[schema(example = "oapi-bridge-fno")]
    source: String,
    #[schema(schema_with = null_schema, required = true)]
    message: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DerivativeMessageParams {
    #[schema(example = "server_error")]
    error: String,
    #[schema(example = "-107 Tên đăng nhập hoặc mật khẩu không đúng")]
    error_description: String,
    #[schema(example = 500)]
    s: i32,
}

/// Seed 001's success.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BankhubToken {
    #[schema(example = 201)]
    code: i32,
    access_token: String,
    /// Seconds.
    ttl: i64,
}

/// The bank-hub family's error: `code` repeats the HTTP status.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BankhubError {
    code: i32,
    message: String,
    #[schema(schema_with = null_schema, required = true)]
    errors: Option<String>,
}

/// Seed 002: `data` is hex(IV ‖ AES-256-CBC(json)) under the partner's key. Login's plaintext
/// is `{"client_id", "client_secret", "username", "password"}`, refresh's
/// `{"refresh_token"}`.
#[derive(Serialize, ToSchema)]
struct PartnerEnvelope {
    data: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PartnerError {
    /// The HTTP status again.
    status: i32,
    /// `missing_partner_code`, `invalid_request`, `invalid_data`, or an RFC 6749 code.
    error: String,
    message: String,
}

/// Seed 003's success.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VietqrToken {
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: String,
    #[schema(example = 300)]
    expires_in: i64,
}

#[allow(dead_code, reason = "described, never built")]
#[derive(Serialize, ToSchema)]
enum VietqrFailedStatus {
    #[serde(rename = "FAILED")]
    Failed,
}

/// E74: credentials or token refused; E46: the body is not what the API takes; E05: server.
#[allow(dead_code, reason = "described, never built")]
#[derive(Serialize, ToSchema)]
enum VietqrCode {
    E74,
    E46,
    E05,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VietqrFailed {
    status: VietqrFailedStatus,
    message: VietqrCode,
}

/// One balance change VietQR pushes; any JSON object is accepted, `transactionid` is echoed.
#[derive(Serialize, ToSchema)]
struct TransactionSync {
    #[schema(nullable = false)]
    transactionid: Option<String>,
}

/// VietQR's response object.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VietqrAnswer {
    error: bool,
    #[serde(rename = "errorReason")]
    #[schema(required = true)]
    error_reason: Option<VietqrCode>,
    #[serde(rename = "toastMessage")]
    toast_message: String,
    #[schema(required = true)]
    object: Option<TransactionSynced>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TransactionSynced {
    reftransactionid: String,
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

// ---- operations (declared at the default paths; `document` moves them) ----

#[utoipa::path(
    post, path = "/connect/token", tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "Tokens (RFC 6749 §5.1), never cached", body = TokenBody),
        (status = 400, description = "RFC 6749 §5.2 error", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody,
            headers(("WWW-Authenticate" = String, description = "after a Basic attempt"))),
        (status = 413, description = "The body is too large", body = OAuthErrorBody),
        (status = 429, description = "Rate-limited: temporarily_unavailable",
            body = OAuthErrorBody, headers(("Retry-After" = String))),
        (status = 500, description = "server_error with a correlation id", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable (overload or database)",
            body = OAuthErrorBody, headers(("Retry-After" = String))),
    )
)]
#[allow(dead_code)]
fn token() {}

#[utoipa::path(
    post, path = "/connect/revocation", tag = "oauth2",
    request_body(content = TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("client_basic" = [])),
    responses(
        (status = 200, description = "Revoked, or no such token (RFC 7009 §2.2): empty body"),
        (status = 400, description = "RFC 6749 §5.2 error", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 413, description = "The body is too large", body = OAuthErrorBody),
        (status = 429, description = "Rate-limited: temporarily_unavailable",
            body = OAuthErrorBody, headers(("Retry-After" = String))),
        (status = 500, description = "server_error", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    )
)]
#[allow(dead_code)]
fn revocation() {}

#[utoipa::path(
    post, path = "/connect/introspect", tag = "oauth2",
    request_body(content = TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    security(("client_basic" = []), ()),
    responses(
        (status = 200, description = "RFC 7662 §2.2: metadata, or `{\"active\": false}` alone",
            body = IntrospectionBody),
        (status = 400, description = "RFC 6749 §5.2 error", body = OAuthErrorBody),
        (status = 401, description = "invalid_client (confidential clients only)",
            body = OAuthErrorBody),
        (status = 413, description = "The body is too large", body = OAuthErrorBody),
        (status = 429, description = "Rate-limited: temporarily_unavailable",
            body = OAuthErrorBody, headers(("Retry-After" = String))),
        (status = 500, description = "server_error", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    )
)]
#[allow(dead_code)]
fn introspect() {}

#[utoipa::path(
    get, path = "/connect/revoked-jwts", tag = "oauth2",
    params(("since" = Option<i64>, Query, description = "Unix seconds; 0 when absent")),
    security(("client_basic" = [])),
    responses(
        (status = 200, description = "JWTs revoked since `since`", body = RevokedList),
        (status = 400, description = "`since` is not unix seconds", body = OAuthErrorBody),
        (status = 401, description = "invalid_client", body = OAuthErrorBody),
        (status = 500, description = "server_error", body = OAuthErrorBody),
        (status = 503, description = "temporarily_unavailable", body = OAuthErrorBody),
    )
)]
#[allow(dead_code)]
fn revoked_jwts() {}

#[utoipa::path(
    post, path = "/oapi/auth/gen-secret-key/derivative", tag = "derivative",
    request_body(content = DerivativeLogin, content_type = "application/json"),
    responses(
        (status = 200, description = "Access, refresh and OTP tokens", body = DerivativeToken),
        (status = 400, description = "Malformed body or missing field (-100, -101)",
            body = DerivativeEnvelope),
        (status = 401, description = "Wrong credentials or locked account (-107, -108)",
            body = DerivativeEnvelope),
        (status = 413, description = "The body is too large (-102)", body = DerivativeEnvelope),
        (status = 429, description = "Rate-limited (-109)", body = DerivativeEnvelope),
        (status = 500, description = "Internal error (-500)", body = DerivativeEnvelope),
        (status = 503, description = "Unavailable (-503)", body = DerivativeEnvelope),
    )
)]
#[allow(dead_code)]
fn derivative() {}

#[utoipa::path(
    post, path = "/oapi/auth/gen-secret-key/underlying", tag = "derivative",
    request_body(content = DerivativeLogin, content_type = "application/json"),
    responses(
        (status = 200, description = "Access, refresh and OTP tokens", body = DerivativeToken),
        (status = 400, description = "Malformed body or missing field (-100, -101)",
            body = DerivativeEnvelope),
        (status = 401, description = "Wrong credentials or locked account (-107, -108)",
            body = DerivativeEnvelope),
        (status = 413, description = "The body is too large (-102)", body = DerivativeEnvelope),
        (status = 429, description = "Rate-limited (-109)", body = DerivativeEnvelope),
        (status = 500, description = "Internal error (-500)", body = DerivativeEnvelope),
        (status = 503, description = "Unavailable (-503)", body = DerivativeEnvelope),
    )
)]
#[allow(dead_code)]
fn underlying() {}

#[utoipa::path(
    post, path = "/v1/token", tag = "bankhub",
    security(("bankhub_basic" = [])),
    responses(
        (status = 201, description = "Token created", body = BankhubToken),
        (status = 400, description = "A body that is not empty (or `{}`)", body = BankhubError),
        (status = 401, description = "Client ID or secret invalid or disabled",
            body = BankhubError, headers(("WWW-Authenticate" = String))),
        (status = 413, description = "The body is too large", body = BankhubError),
        (status = 429, description = "Rate-limited", body = BankhubError,
            headers(("Retry-After" = String))),
        (status = 500, description = "Internal error", body = BankhubError),
        (status = 503, description = "Unavailable", body = BankhubError),
    )
)]
#[allow(dead_code)]
fn bankhub_token() {}

#[utoipa::path(
    post, path = "/openapi/v1/auth/login", tag = "partner",
    params(("Partner-Code" = String, Header, description = "The merchant's partner code")),
    request_body(content = PartnerEnvelope, content_type = "application/json"),
    responses(
        (status = 200, description = "JWT access token and rotated refresh token",
            body = PartnerToken),
        (status = 400, description = "Missing Partner-Code, malformed body or payload",
            body = PartnerError),
        (status = 401, description = "Envelope does not open, or credentials refused",
            body = PartnerError),
        (status = 413, description = "The body is too large", body = PartnerError),
        (status = 429, description = "rate_limited", body = PartnerError,
            headers(("Retry-After" = String))),
        (status = 500, description = "Internal error", body = PartnerError),
        (status = 503, description = "Unavailable", body = PartnerError),
    )
)]
#[allow(dead_code)]
fn partner_login() {}

#[utoipa::path(
    post, path = "/openapi/v1/auth/refresh", tag = "partner",
    params(("Partner-Code" = String, Header, description = "The merchant's partner code")),
    request_body(content = PartnerEnvelope, content_type = "application/json"),
    responses(
        (status = 200, description = "New access token and rotated refresh token",
            body = PartnerToken),
        (status = 400, description = "Missing Partner-Code, malformed body or payload",
            body = PartnerError),
        (status = 401, description = "Envelope does not open, or refresh token refused",
            body = PartnerError),
        (status = 413, description = "The body is too large", body = PartnerError),
        (status = 429, description = "rate_limited", body = PartnerError,
            headers(("Retry-After" = String))),
        (status = 500, description = "Internal error", body = PartnerError),
        (status = 503, description = "Unavailable", body = PartnerError),
    )
)]
#[allow(dead_code)]
fn partner_refresh() {}

#[utoipa::path(
    post, path = "/vqr/api/token_generate", tag = "vietqr",
    security(("vietqr_basic" = [])),
    responses(
        (status = 200, description = "Token", body = VietqrToken),
        (status = 400, description = "E46: a body that is not empty (or `{}`)",
            body = VietqrFailed),
        (status = 401, description = "E74: credentials missing or refused", body = VietqrFailed),
        (status = 413, description = "E46: the body is too large", body = VietqrFailed),
        (status = 429, description = "E05: rate-limited", body = VietqrFailed,
            headers(("Retry-After" = String))),
        (status = 500, description = "E05", body = VietqrFailed),
        (status = 503, description = "E05", body = VietqrFailed),
    )
)]
#[allow(dead_code)]
fn vietqr_token_generate() {}

#[utoipa::path(
    post, path = "/bank/api/transaction-sync", tag = "vietqr",
    request_body(content = TransactionSync, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Synced", body = VietqrAnswer),
        (status = 400, description = "E46: not a JSON object", body = VietqrAnswer),
        (status = 401, description = "E74: invalid or expired token", body = VietqrAnswer),
        (status = 503, description = "E05", body = VietqrAnswer),
    )
)]
#[allow(dead_code)]
fn vietqr_transaction_sync() {}

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
        config.dialects.bankhub.enabled = true;
        config.dialects.bankhub.path = "/hub/token".into();
        let doc = document(&config, &[]);
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        assert!(paths.contains(&"/hub/token"));
        assert!(!paths.contains(&"/v1/token"));
        assert!(!paths.contains(&"/oapi/auth/gen-secret-key/derivative"));
        assert!(paths.contains(&"/connect/token"));
    }
}
