//! `[keys]`: how a signing-key rotation reaches every node and every JWKS cache before the new
//! key signs.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// How a key rotation reaches every node and every JWKS cache before the new key signs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Seconds between re-reads of the signing keys: a key scheduled by `khoa keys rotate`
    /// (or on another node) is published in this node's JWKS within this time, and used once
    /// it activates. Validation also looks again at once on an unknown `kid`.
    /// `KHOA_KEYS__RELOAD_SECS`.
    pub reload_secs: u64,
    /// `max-age` of the JWKS response (RFC 9111 §5.2.2.1): how long a resource server or
    /// proxy may use its copy without asking again.
    pub jwks_max_age_secs: u64,
    /// Seconds between `khoa keys rotate` and the moment the new key starts signing, while it
    /// is already published. At least `jwks_max_age_secs + reload_secs`, so that every node
    /// has loaded the key and every cache has refetched the JWKS before a token signed by it
    /// exists. `khoa keys rotate --lead` overrides it.
    pub rotation_lead_secs: u64,
}

impl KeysConfig {
    /// The shortest safe lead: a JWKS fetched just before a node learns of the new key
    /// (up to `reload_secs` after the rotation) may be cached `jwks_max_age_secs` longer.
    pub fn min_rotation_lead_secs(&self) -> u64 {
        self.jwks_max_age_secs.saturating_add(self.reload_secs)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.reload_secs == 0 {
            return invalid("keys.reload_secs", "must be at least 1 second");
        }
        if self.rotation_lead_secs < self.min_rotation_lead_secs() {
            return invalid(
                "keys.rotation_lead_secs",
                format!(
                    "must be at least keys.jwks_max_age_secs + keys.reload_secs ({} s), so that \
                     every node and every JWKS cache knows the next key before it signs",
                    self.min_rotation_lead_secs()
                ),
            );
        }
        Ok(())
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            reload_secs: 30,
            jwks_max_age_secs: 300,
            rotation_lead_secs: 600,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_default_rotation_lead_must_cover_reloads_and_jwks_caching() {
        let c = Config::default();
        assert_eq!(c.keys.min_rotation_lead_secs(), 330);
        let mut c = Config::default();
        c.keys.rotation_lead_secs = 329;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("keys.rotation_lead_secs"), "{err}");
        c.keys.rotation_lead_secs = 330;
        c.validate().unwrap();
        c.keys.reload_secs = 0;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("keys.reload_secs")
        );
    }
}
