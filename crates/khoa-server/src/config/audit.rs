//! `[audit]`: how long the audit trail in the database is kept.

use serde::{Deserialize, Serialize};

/// `[audit]`: `KHOA_AUDIT__RETENTION_DAYS`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days audit events are kept; older ones are deleted by the periodic clean-up. 0 keeps
    /// them forever.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention_days: 90 }
    }
}
