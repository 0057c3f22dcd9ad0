//! `[dialects]`: which wire dialects are served and with which settings. The tables are only
//! held here; what they may say is for the loaded definitions ([`crate::dialects::registry`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[dialects]`: `dir`, and a table per dialect, `[dialects.NAME]`, holding `enabled` and any
/// of the definition's `[settings]` (`khoa dialect show NAME` lists them). Which names and
/// settings exist is for the loaded definitions to say, so start-up
/// ([`crate::dialects::registry`]) refuses a table or a setting that none has. Token policy
/// (format, lifetimes, refresh, otp) belongs to the client a dialect is bound to (`khoa client
/// add …`); what is here is the wire: paths, bindings, error rendering.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DialectsConfig {
    /// A directory of dialect definitions (`*.toml`, docs/dialects.md), each served beside
    /// the built-in dialects; a file named like a built-in replaces it. `KHOA_DIALECTS__DIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// `[dialects.NAME]`, by name.
    #[serde(flatten)]
    pub tables: BTreeMap<String, DialectTable>,
}

/// One `[dialects.NAME]` table.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DialectTable {
    /// Serve the dialect. Built-ins other than `oauth2` are off until enabled; definition
    /// files are on unless disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Values for the definition's `[settings]`.
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl DialectsConfig {
    /// Turns the dialect `name` on.
    pub fn enable(&mut self, name: &str) -> &mut Self {
        self.tables.entry(name.to_owned()).or_default().enabled = Some(true);
        self
    }

    /// Turns the dialect `name` off.
    pub fn disable(&mut self, name: &str) -> &mut Self {
        self.tables.entry(name.to_owned()).or_default().enabled = Some(false);
        self
    }

    /// Sets one of the definition's settings, as `[dialects.NAME] KEY = VALUE` would.
    pub fn set(&mut self, name: &str, key: &str, value: impl Into<serde_json::Value>) -> &mut Self {
        self.tables
            .entry(name.to_owned())
            .or_default()
            .settings
            .insert(key.to_owned(), value.into());
        self
    }
}
