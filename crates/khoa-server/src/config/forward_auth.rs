//! `[forward_auth]`: the endpoint reverse proxies ask before they pass a request on, and the
//! per-route rules it applies.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[forward_auth]`: `KHOA_FORWARD_AUTH__ENABLED`, `KHOA_FORWARD_AUTH__DEFAULT`, … The routes
/// are a TOML array of tables (`[[forward_auth.routes]]`); the first whose `prefix` and
/// `methods` match the original request decides.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardAuthConfig {
    /// Serve the endpoint (off by default: it answers only for the routes configured here).
    pub enabled: bool,
    /// Where it is served; `{path}/<original path>` works too (Envoy's `path_prefix`).
    pub path: String,
    /// What a request no route matches gets.
    pub default: ForwardAuthDefault,
    pub routes: Vec<ForwardAuthRoute>,
}

/// The answer for a request that no `[[forward_auth.routes]]` entry matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForwardAuthDefault {
    /// 403, token or not: a path nobody wrote a rule for stays closed (the safe default).
    #[default]
    Deny,
    /// Any valid token passes, whatever its scopes.
    Authenticated,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardAuthRoute {
    /// Path prefix, matched on whole segments: `/api/orders` covers `/api/orders` and
    /// `/api/orders/7`, not `/api/ordersx`.
    pub prefix: String,
    /// Methods the route applies to (any when empty), e.g. `["POST", "DELETE"]`.
    pub methods: Vec<String>,
    /// Scopes the token must all carry.
    pub scopes: Vec<String>,
    /// Seed 000's rule: a method other than GET/HEAD/OPTIONS/TRACE also needs the session's
    /// `x-otp-token` when the token was issued with one.
    pub otp_on_mutating: bool,
}

impl Default for ForwardAuthConfig {
    fn default() -> Self {
        ForwardAuthConfig {
            enabled: false,
            path: "/auth/verify".into(),
            default: ForwardAuthDefault::Deny,
            routes: Vec::new(),
        }
    }
}

impl ForwardAuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || self.path.len() < 2 || self.path.ends_with('/') {
            return invalid(
                "forward_auth.path",
                "must be an absolute path without a trailing slash",
            );
        }
        for r in &self.routes {
            if !r.prefix.starts_with('/') || r.prefix.contains(char::is_whitespace) {
                return invalid(
                    "forward_auth.routes.prefix",
                    "must be an absolute path without spaces",
                );
            }
            if r.methods
                .iter()
                .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                return invalid(
                    "forward_auth.routes.methods",
                    "must be HTTP method names such as GET or POST",
                );
            }
            let one_scope =
                |s: &String| khoa_core::scope::ScopeSet::parse(s).is_ok_and(|set| set.len() == 1);
            if !r.scopes.iter().all(one_scope) {
                return invalid(
                    "forward_auth.routes.scopes",
                    "must be scope tokens (RFC 6749 §3.3), one per entry",
                );
            }
        }
        Ok(())
    }
}
