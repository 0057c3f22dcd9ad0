//! `[metrics]`: whether `GET /metrics` is served, and where.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[metrics]`: `KHOA_METRICS__ENABLED`, `KHOA_METRICS__PATH`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the metrics endpoint. It reveals traffic volumes, not secrets; keep it off the
    /// public side of the load balancer or turn it off.
    pub enabled: bool,
    pub path: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            path: "/metrics".into(),
        }
    }
}

impl MetricsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            return invalid("metrics.path", "must be an absolute path without spaces");
        }
        Ok(())
    }
}
