//! `[authorize]`: the authorization code flow behind `/connect/authorize`.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// The authorization code flow and its login page.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizeConfig {
    /// Seconds an authorization code stays redeemable (RFC 9700 §4.2: short). 1–600.
    /// `KHOA_AUTHORIZE__CODE_TTL_SECS`.
    pub code_ttl_secs: i64,
}

impl Default for AuthorizeConfig {
    fn default() -> Self {
        AuthorizeConfig { code_ttl_secs: 60 }
    }
}

impl AuthorizeConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=600).contains(&self.code_ttl_secs) {
            return invalid(
                "authorize.code_ttl_secs",
                "must be between 1 and 600 (RFC 6749 §4.1.2: at most ten minutes)",
            );
        }
        Ok(())
    }
}
