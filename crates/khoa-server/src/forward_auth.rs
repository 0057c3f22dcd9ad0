//! Forward authentication: the endpoint that nginx `auth_request`, Traefik `forwardAuth` and
//! Envoy `ext_authz` call before they pass a request on to an upstream that knows nothing of
//! tokens (`docs/forward-auth.md`).
//!
//! The proxy forwards the original request's `Authorization`, method, URI and `x-otp-token`.
//! khoa validates the bearer token as every protected route does
//! ([`crate::resource::authenticate`]), applies the first `[[forward_auth.routes]]` rule that
//! matches, and answers 200 with `X-Khoa-Subject`, `X-Khoa-Client` and `X-Khoa-Scopes` for the
//! upstream, or an RFC 6750 §3 refusal: 401 for a missing or bad token, 403 for a token that
//! may not do this, 503 (with `Retry-After`) when the database does not answer — never 401 for
//! khoa's own trouble.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use khoa_core::engine::Principal;
use percent_encoding::{CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::config::{ForwardAuthConfig, ForwardAuthDefault, ForwardAuthRoute};
use crate::resource::{OTP_HEADER, authenticate};
use crate::state::AppState;

pub const SUBJECT_HEADER: &str = "x-khoa-subject";
pub const CLIENT_HEADER: &str = "x-khoa-client";
pub const SCOPES_HEADER: &str = "x-khoa-scopes";

/// The rule `default = "authenticated"` applies where no route matches: any valid token.
static ANY_VALID_TOKEN: ForwardAuthRoute = ForwardAuthRoute {
    prefix: String::new(),
    methods: Vec::new(),
    scopes: Vec::new(),
    otp_on_mutating: false,
};

/// `{path}` and `{path}/<original path>`, for any method: an nginx `auth_request` subrequest
/// keeps the original request's method, and Envoy appends the original path to its prefix.
pub fn routes(cfg: &ForwardAuthConfig) -> Router<AppState> {
    if !cfg.enabled {
        return Router::new();
    }
    Router::new()
        .route(&cfg.path, any(verify))
        .route(&format!("{}/{{*original}}", cfg.path), any(verify))
}

/// The forward-auth check: original request → rule → token → rule's demands → 200 or refusal.
pub async fn verify(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let cfg = &state.config.forward_auth;
    let original = match Original::read(&method, &uri, &headers, &cfg.path) {
        Ok(o) => o,
        Err(refused) => return refused.into_response(),
    };
    let Some(rule) = original.rule(cfg) else {
        return Refusal::NoRule.into_response();
    };
    let principal = match authenticate(&state, &headers).await {
        Ok(p) => p,
        Err(r) if r.is_unavailable() => return r.into_response(),
        Err(r) => return Refusal::token(r.is_absent(), r.description()).into_response(),
    };
    match demands_met(rule, &original.method, &headers, &principal) {
        Ok(()) => granted(&principal),
        Err(refused) => refused.into_response(),
    }
}

/// The request the proxy is asking about.
#[derive(Debug, PartialEq, Eq)]
struct Original {
    method: Method,
    /// Normalised as [`normalize_path`] does.
    path: String,
}

impl Original {
    /// The method from `X-Original-Method` (nginx) or `X-Forwarded-Method` (Traefik), else
    /// this request's own (an nginx subrequest keeps it); the URI from `X-Original-URI` or
    /// `X-Forwarded-Uri`, else the part of this request's path after `verify_path` (Envoy).
    fn read(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        verify_path: &str,
    ) -> Result<Self, Refusal> {
        let first = |names: [&str; 2]| names.iter().find_map(|n| headers.get(*n));
        let method = match first(["x-original-method", "x-forwarded-method"]) {
            None => method.clone(),
            Some(v) => Method::from_bytes(v.as_bytes())
                .map_err(|_| Refusal::BadRequest("the original method is not an HTTP method"))?,
        };
        let raw = match first(["x-original-uri", "x-forwarded-uri"]) {
            Some(v) => v
                .to_str()
                .map_err(|_| Refusal::BadRequest("the original URI is not ASCII"))?,
            None => uri
                .path()
                .strip_prefix(verify_path)
                .filter(|rest| rest.starts_with('/'))
                .ok_or(Refusal::BadRequest(
                    "the original URI is required (X-Original-URI or X-Forwarded-Uri)",
                ))?,
        };
        let path = normalize_path(raw)
            .ok_or(Refusal::BadRequest("the original URI is not a valid path"))?;
        Ok(Original { method, path })
    }

    /// The first route whose prefix and methods match, else what `default` says.
    fn rule<'a>(&self, cfg: &'a ForwardAuthConfig) -> Option<&'a ForwardAuthRoute> {
        let found = cfg.routes.iter().find(|r| {
            covers(&r.prefix, &self.path)
                && (r.methods.is_empty()
                    || r.methods
                        .iter()
                        .any(|m| m.eq_ignore_ascii_case(self.method.as_str())))
        });
        match (found, cfg.default) {
            (Some(r), _) => Some(r),
            (None, ForwardAuthDefault::Authenticated) => Some(&ANY_VALID_TOKEN),
            (None, ForwardAuthDefault::Deny) => None,
        }
    }
}

/// The path a rule is matched against, normalised the way nginx normalises `$uri` before it
/// picks a location: query dropped, percent-escapes decoded, empty and `.` segments removed,
/// `..` resolved. Otherwise `/api/public/../orders` or `/api/%6Frders` would be judged by
/// another rule than the location that serves them. `None` for what no proxy would route.
pub fn normalize_path(uri: &str) -> Option<String> {
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return None;
    }
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    if decoded.contains('\0') {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for s in decoded.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

/// Whether `prefix` covers `path` on whole segments: `/api/orders` covers `/api/orders/7`,
/// not `/api/ordersx`.
fn covers(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// RFC 9110 §9.2.1: only GET, HEAD, OPTIONS and TRACE are safe; every other method, extension
/// methods included, is treated as changing state.
fn is_mutating(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The rule's scopes, all of them, then seed 000's second secret on mutating requests.
fn demands_met(
    rule: &ForwardAuthRoute,
    method: &Method,
    headers: &HeaderMap,
    p: &Principal,
) -> Result<(), Refusal> {
    if rule.scopes.iter().any(|s| !p.scope.contains(s)) {
        return Err(Refusal::Scope(rule.scopes.join(" ")));
    }
    if rule.otp_on_mutating && is_mutating(method) {
        let presented = headers.get(OTP_HEADER).and_then(|v| v.to_str().ok());
        if !p.otp_satisfied(presented) {
            return Err(Refusal::Otp(match presented {
                None => "this request must carry the session's x-otp-token",
                Some(_) => "the x-otp-token does not match the session",
            }));
        }
    }
    Ok(())
}

/// 200, empty body, and who the token speaks for, for the proxy to hand to the upstream.
fn granted(p: &Principal) -> Response {
    let mut res = no_store(StatusCode::OK.into_response());
    let h = res.headers_mut();
    h.insert(
        HeaderName::from_static(SUBJECT_HEADER),
        header_value(&p.subject),
    );
    h.insert(
        HeaderName::from_static(CLIENT_HEADER),
        header_value(&p.client_id),
    );
    h.insert(
        HeaderName::from_static(SCOPES_HEADER),
        header_value(&p.scope.to_string()),
    );
    res
}

/// A header value for an identifier; control characters (which no header may carry) are
/// percent-encoded rather than dropped, so the upstream never sees a different subject.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| {
        HeaderValue::from_str(&utf8_percent_encode(s, CONTROLS).to_string())
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Why the proxy must not pass the request on.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// RFC 6750 §3.1 `invalid_request`: the proxy did not say what it is asking about.
    BadRequest(&'static str),
    /// RFC 6750 §3.1: no credentials at all, so a bare challenge with no error code.
    NoToken,
    /// RFC 6750 §3.1 `invalid_token`: malformed, unknown, expired or revoked.
    InvalidToken(&'static str),
    /// RFC 6750 §3.1 `insufficient_scope`, naming the scopes the route needs.
    Scope(String),
    /// The token alone is not enough: the session's OTP token is missing or wrong. Still
    /// `insufficient_scope` (the request needs more than the token grants), told apart by its
    /// description.
    Otp(&'static str),
    /// No route matched and `default = "deny"`: no token could pass, so no 401 invites one.
    NoRule,
}

impl Refusal {
    fn token(absent: bool, description: &'static str) -> Self {
        if absent {
            Refusal::NoToken
        } else {
            Refusal::InvalidToken(description)
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error, description, scope) = match self {
            Refusal::BadRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d, None),
            Refusal::NoToken => (StatusCode::UNAUTHORIZED, "", "", None),
            Refusal::InvalidToken(d) => (StatusCode::UNAUTHORIZED, "invalid_token", d, None),
            Refusal::Scope(s) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "the access token lacks a scope this route requires",
                Some(s),
            ),
            Refusal::Otp(d) => (StatusCode::FORBIDDEN, "insufficient_scope", d, None),
            Refusal::NoRule => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "no forward-auth route allows this request",
                None,
            ),
        };
        // Descriptions are ours and scope tokens exclude `"` and `\` (RFC 6749 §3.3), so
        // nothing here needs quoting.
        let mut challenge = String::from("Bearer realm=\"khoa\"");
        let mut res = if error.is_empty() {
            status.into_response()
        } else {
            challenge.push_str(&format!(
                ", error=\"{error}\", error_description=\"{description}\""
            ));
            if let Some(s) = &scope {
                challenge.push_str(&format!(", scope=\"{s}\""));
            }
            let mut body = serde_json::json!({ "error": error, "error_description": description });
            if let Some(s) = scope {
                body["scope"] = s.into();
            }
            (status, axum::Json(body)).into_response()
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        no_store(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, methods: &[&str]) -> ForwardAuthRoute {
        ForwardAuthRoute {
            prefix: prefix.into(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            ..ForwardAuthRoute::default()
        }
    }

    fn original(method: Method, path: &str) -> Original {
        Original {
            method,
            path: path.into(),
        }
    }

    #[test]
    #[allow(
        clippy::result_large_err,
        reason = "figment's Jail API returns its own error"
    )]
    fn routes_come_from_the_file_and_the_rest_from_the_environment_too() {
        use crate::config::Config;
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "khoa.toml",
                "[forward_auth]\nenabled = true\n\n[[forward_auth.routes]]\n\
                 prefix = \"/api/orders\"\nmethods = [\"POST\"]\nscopes = [\"orders\"]\n\
                 otp_on_mutating = true\n",
            )?;
            jail.set_env("KHOA_FORWARD_AUTH__DEFAULT", "authenticated");
            jail.set_env("KHOA_FORWARD_AUTH__PATH", "/verify");
            let c = Config::load(Some(std::path::Path::new("khoa.toml"))).unwrap();
            let f = &c.forward_auth;
            assert!(f.enabled);
            assert_eq!(f.path, "/verify");
            assert_eq!(f.default, ForwardAuthDefault::Authenticated);
            assert_eq!(f.routes.len(), 1);
            assert_eq!(f.routes[0].methods, ["POST"]);
            assert_eq!(f.routes[0].scopes, ["orders"]);
            assert!(f.routes[0].otp_on_mutating);

            jail.set_env(
                "KHOA_FORWARD_AUTH__ROUTES",
                "[{prefix=\"/a\", scopes=[\"x\"]}, {prefix=\"/b\"}]",
            );
            let c = Config::load(None).unwrap();
            assert_eq!(c.forward_auth.routes.len(), 2);
            assert_eq!(c.forward_auth.routes[1].prefix, "/b");

            for (key, value, named) in [
                ("KHOA_FORWARD_AUTH__PATH", "verify", "forward_auth.path"),
                ("KHOA_FORWARD_AUTH__DEFAULT", "allow", "default"),
                (
                    "KHOA_FORWARD_AUTH__ROUTES",
                    "[{prefix=\"/a\", scopes=[\"a b\"]}]",
                    "forward_auth.routes.scopes",
                ),
                (
                    "KHOA_FORWARD_AUTH__ROUTES",
                    "[{prefix=\"/a\", methods=[\"G-T\"]}]",
                    "forward_auth.routes.methods",
                ),
            ] {
                jail.set_env(key, value);
                let err = Config::load(None).unwrap_err().to_string();
                assert!(err.to_ascii_lowercase().contains(named), "{err}");
                jail.clear_env();
            }
            Ok(())
        });
    }

    #[test]
    fn paths_are_normalised_as_a_proxy_routes_them() {
        assert_eq!(normalize_path("/api/orders?x=1").unwrap(), "/api/orders");
        assert_eq!(
            normalize_path("/api/public/../orders").unwrap(),
            "/api/orders"
        );
        assert_eq!(normalize_path("//api/./%6Frders/").unwrap(), "/api/orders");
        assert_eq!(normalize_path("/../../etc").unwrap(), "/etc");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("api/orders"), None);
        assert_eq!(normalize_path("/a%00b"), None);
        assert_eq!(normalize_path("/a%ff"), None);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(covers("/api/orders", "/api/orders"));
        assert!(covers("/api/orders", "/api/orders/7"));
        assert!(covers("/api/orders/", "/api/orders/7"));
        assert!(!covers("/api/orders", "/api/ordersx"));
        assert!(covers("/", "/anything"));
    }

    #[test]
    fn the_first_matching_route_decides_and_the_default_covers_the_rest() {
        let mut cfg = ForwardAuthConfig {
            routes: vec![route("/api/orders", &["POST"]), route("/api", &[])],
            ..ForwardAuthConfig::default()
        };
        let rule = |o: &Original, cfg: &ForwardAuthConfig| o.rule(cfg).map(|r| r.prefix.clone());
        let post = original(Method::POST, "/api/orders/1");
        assert_eq!(rule(&post, &cfg).as_deref(), Some("/api/orders"));
        let get = original(Method::GET, "/api/orders/1");
        assert_eq!(rule(&get, &cfg).as_deref(), Some("/api"));
        let elsewhere = original(Method::GET, "/admin");
        assert_eq!(rule(&elsewhere, &cfg), None, "deny by default");
        cfg.default = ForwardAuthDefault::Authenticated;
        assert_eq!(rule(&elsewhere, &cfg).as_deref(), Some(""));
    }

    #[test]
    fn every_method_but_the_safe_ones_is_mutating() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            assert!(
                !is_mutating(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
        for m in ["POST", "PUT", "PATCH", "DELETE", "PROPFIND", "get"] {
            assert!(
                is_mutating(&Method::from_bytes(m.as_bytes()).unwrap()),
                "{m}"
            );
        }
    }

    #[test]
    fn the_original_request_comes_from_headers_or_the_path_suffix() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-method", HeaderValue::from_static("DELETE"));
        h.insert("x-forwarded-uri", HeaderValue::from_static("/api/x?y=1"));
        let uri: Uri = "/auth/verify".parse().unwrap();
        let o = Original::read(&Method::GET, &uri, &h, "/auth/verify").unwrap();
        assert_eq!(o, original(Method::DELETE, "/api/x"));

        let uri: Uri = "/auth/verify/api/y".parse().unwrap();
        let o = Original::read(&Method::PUT, &uri, &HeaderMap::new(), "/auth/verify").unwrap();
        assert_eq!(o, original(Method::PUT, "/api/y"));

        let bare: Uri = "/auth/verify".parse().unwrap();
        let missing = Original::read(&Method::GET, &bare, &HeaderMap::new(), "/auth/verify");
        assert!(matches!(missing, Err(Refusal::BadRequest(_))));

        h.insert("x-original-method", HeaderValue::from_static("G E T"));
        let bad = Original::read(&Method::GET, &bare, &h, "/auth/verify");
        assert!(matches!(bad, Err(Refusal::BadRequest(_))));
    }
}
