//! Every dialect khoa serves, and the one place that knows them by name: the five built-in
//! definitions embedded in the binary (`crates/khoa-dialect/dialects/*.toml`) and the files of
//! `dialects.dir`, read once at start-up with the operator's `[dialects.NAME]` settings applied,
//! refused with file, line and key when one does not validate, and served by
//! [`super::generic`]. A file named like a built-in replaces it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use khoa_dialect::def::{Grant, Operation};
use khoa_dialect::{DefinitionError, Dialect, Origin};
use serde_json::Value;

use crate::config::DialectsConfig;
use crate::config::known_keys::nearest;

/// Why the definitions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("dialects.dir {}: {source}", .dir.display())]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("{}: dialect {name} is also defined by {}", .file.display(), .other.display())]
    SameName {
        name: String,
        file: PathBuf,
        other: PathBuf,
    },
    /// A `[dialects.NAME]` table or key that no loaded definition has.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error(
        "{}: endpoint {endpoint} of dialect {dialect} is at {path}, which {owner} already serves",
        .file.display()
    )]
    PathTaken {
        file: PathBuf,
        dialect: String,
        endpoint: String,
        path: String,
        owner: String,
    },
}

/// The built-in dialects ([`khoa_dialect::BUILT_IN`]), and whether each is served when the
/// configuration does not say: only `oauth2`. Each one's `[settings]` are the keys of its `[dialects.NAME]`
/// configuration table besides `enabled`.
const DEFINED: [(&str, &str, bool); 5] = {
    let texts = khoa_dialect::BUILT_IN;
    [
        (texts[0].0, texts[0].1, true),
        (texts[1].0, texts[1].1, false),
        (texts[2].0, texts[2].1, false),
        (texts[3].0, texts[3].1, false),
        (texts[4].0, texts[4].1, false),
    ]
};

/// The paths khoa serves with routes of its own, beside the definitions' endpoints. The router
/// serves them, and the definitions' paths and the configured ones (`metrics.path`,
/// `forward_auth.path`) are checked against this one list, so that a route added here is
/// guarded everywhere.
pub const KHOA_PATHS: [&str; 9] = [
    crate::resource::PROTECTED_RESOURCE_PATH,
    crate::authorize::AUTHORIZE_PATH,
    crate::userinfo::USERINFO_PATH,
    crate::wellknown::JWKS_PATH,
    crate::wellknown::OAUTH_METADATA_PATH,
    crate::wellknown::OPENID_CONFIGURATION_PATH,
    crate::health::HEALTHZ_PATH,
    crate::health::READYZ_PATH,
    crate::openapi::OPENAPI_PATH,
];

/// The names of the built-in dialects.
pub fn built_in_names() -> impl Iterator<Item = &'static str> {
    DEFINED.iter().map(|(n, _, _)| *n)
}

fn is_built_in(name: &str) -> bool {
    built_in_names().any(|n| n == name)
}

/// Each built-in dialect's setting names, for the configuration's key check.
pub fn built_in_settings() -> Vec<(&'static str, Vec<String>)> {
    DEFINED
        .iter()
        .map(|(name, text, _)| {
            let keys = khoa_dialect::load(text, Origin::BuiltIn, &serde_json::Map::new())
                .map(|d| d.settings.keys().cloned().collect())
                .unwrap_or_default();
            (*name, keys)
        })
        .collect()
}

/// Every built-in definition with the operator's settings applied, and whether it is enabled.
pub fn built_ins(cfg: &DialectsConfig) -> Result<Vec<(Arc<Dialect>, bool)>, RegistryError> {
    DEFINED
        .iter()
        .map(|(name, text, on)| {
            let d = configure(cfg, text, Origin::BuiltIn, name)?;
            Ok((d, enabled(cfg, name, *on)))
        })
        .collect()
}

fn enabled(cfg: &DialectsConfig, name: &str, default: bool) -> bool {
    cfg.tables
        .get(name)
        .and_then(|t| t.enabled)
        .unwrap_or(default)
}

/// Loads `text` with the settings of `[dialects.NAME]`, each checked against the definition's
/// own: a setting it does not have, or a value of another type, names the configuration key.
fn configure(
    cfg: &DialectsConfig,
    text: &str,
    origin: Origin,
    name: &str,
) -> Result<Arc<Dialect>, RegistryError> {
    let plain = khoa_dialect::load(text, origin.clone(), &serde_json::Map::new())?;
    let Some(table) = cfg.tables.get(name).filter(|t| !t.settings.is_empty()) else {
        return Ok(Arc::new(plain));
    };
    let mut overrides = serde_json::Map::new();
    for (key, given) in &table.settings {
        let config_key = format!("dialects.{name}.{key}");
        let Some(default) = plain.settings.get(key) else {
            let known: Vec<&str> = std::iter::once("enabled")
                .chain(plain.settings.keys().map(String::as_str))
                .collect();
            return Err(RegistryError::Config {
                message: format!(
                    "dialect {name} ({}) has no setting {key}; its keys: {}{}",
                    plain.origin,
                    known.join(", "),
                    nearest(key, known.iter().copied())
                        .map(|k| format!("; did you mean dialects.{name}.{k}?"))
                        .unwrap_or_default()
                ),
                key: config_key,
            });
        };
        let value = match (default, given) {
            // An environment variable's `8080` or `true` where the setting is text.
            (Value::String(_), Value::Number(n)) => Value::String(n.to_string()),
            (Value::String(_), Value::Bool(b)) => Value::String(b.to_string()),
            (d, g) if std::mem::discriminant(d) == std::mem::discriminant(g) => g.clone(),
            (d, g) => {
                return Err(RegistryError::Config {
                    message: format!(
                        "is {}, where dialect {name}'s setting is {} (default {d})",
                        type_name(g),
                        type_name(d)
                    ),
                    key: config_key,
                });
            }
        };
        if &value != default {
            overrides.insert(key.clone(), value);
        }
    }
    // The definition loaded as written: what fails now is the operator's values.
    khoa_dialect::load(text, origin, &overrides)
        .map(Arc::new)
        .map_err(|e| RegistryError::Config {
            key: format!("dialects.{name}"),
            message: format!("these settings do not fit the definition: {e}"),
        })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// The definitions khoa serves: the enabled built-in ones, and every `*.toml` of `dialects.dir`
/// (sorted by name; a file named like a built-in replaces it, and is served when that dialect
/// is enabled; any other file is served unless `[dialects.NAME] enabled = false`), each with
/// its `[dialects.NAME]` settings. `taken` are the paths served by other routes, each with
/// what serves it: a definition may not take one, nor a path of another definition.
pub fn load(
    cfg: &DialectsConfig,
    taken: &[(String, String)],
) -> Result<Vec<Arc<Dialect>>, RegistryError> {
    let files = match &cfg.dir {
        Some(dir) => load_dir(dir)?,
        None => Vec::new(),
    };
    if let Some(name) = cfg
        .tables
        .keys()
        .find(|n| !is_built_in(n) && !files.iter().any(|f| &f.name == *n))
    {
        let names: Vec<&str> = built_in_names()
            .map(|n| -> &str { n })
            .chain(files.iter().map(|f| f.name.as_str()))
            .collect();
        return Err(RegistryError::Config {
            key: format!("dialects.{name}"),
            message: format!(
                "no dialect {name} is built in{}; the dialects are {}{}",
                if cfg.dir.is_some() {
                    " or defined in dialects.dir"
                } else {
                    " (and dialects.dir is not set)"
                },
                names.join(", "),
                nearest(name, names.iter().copied())
                    .map(|n| format!("; did you mean dialects.{n}?"))
                    .unwrap_or_default()
            ),
        });
    }
    let mut served: Vec<Arc<Dialect>> = Vec::new();
    for (name, text, on) in DEFINED {
        let file = files.iter().find(|f| f.name == name);
        if !enabled(cfg, name, on) {
            if let Some(f) = file {
                tracing::warn!(
                    file = %f.origin,
                    "{} replaces the built-in dialect of that name, which is disabled: set \
                     dialects.{name}.enabled = true to serve it",
                    f.origin,
                );
            }
            continue;
        }
        served.push(match file {
            None => configure(cfg, text, Origin::BuiltIn, name)?,
            // The replacement gets the operator's settings, as the built-in would.
            Some(f) => configure(cfg, &f.text, f.origin.clone(), name)?,
        });
    }
    for f in files {
        if !is_built_in(&f.name) && enabled(cfg, &f.name, true) {
            served.push(configure(cfg, &f.text, f.origin.clone(), &f.name)?);
        }
    }
    let mut taken = taken.to_vec();
    for d in &served {
        check_paths(d, &mut taken)?;
    }
    Ok(served)
}

fn load_dir(dir: &Path) -> Result<Vec<Arc<Dialect>>, RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Dir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut loaded: Vec<Arc<Dialect>> = Vec::new();
    for file in files {
        let d = load_file(&file)?;
        if let Some(other) = loaded.iter().find(|o| o.name == d.name) {
            return Err(RegistryError::SameName {
                name: d.name.clone(),
                file,
                other: origin_path(&other.origin),
            });
        }
        loaded.push(Arc::new(d));
    }
    Ok(loaded)
}

fn origin_path(o: &Origin) -> PathBuf {
    match o {
        Origin::File(p) => p.clone(),
        Origin::BuiltIn => PathBuf::from("built-in"),
    }
}

/// `khoa dialect check`: a definition file as start-up would take it beside what this
/// configuration serves: valid, on no path already served (by khoa or by another dialect than
/// the one it would replace).
pub fn check_file(
    file: &Path,
    served: &[Arc<Dialect>],
    reserved: &[(String, String)],
) -> Result<Dialect, RegistryError> {
    let d = load_file(file)?;
    let mut taken = reserved.to_vec();
    for other in served.iter().filter(|o| o.name != d.name) {
        for e in &other.endpoints {
            taken.push((
                e.path.clone(),
                format!("dialect {} ({})", other.name, other.origin),
            ));
        }
    }
    check_paths(&d, &mut taken)?;
    Ok(d)
}

/// One definition file, validated on its own (`khoa dialect check`).
pub fn load_file(file: &Path) -> Result<Dialect, RegistryError> {
    let text = std::fs::read_to_string(file).map_err(|source| RegistryError::Read {
        file: file.to_owned(),
        source,
    })?;
    Ok(khoa_dialect::load(
        &text,
        Origin::File(file.to_owned()),
        &serde_json::Map::new(),
    )?)
}

fn check_paths(d: &Dialect, taken: &mut Vec<(String, String)>) -> Result<(), RegistryError> {
    for e in &d.endpoints {
        if let Some((_, owner)) = taken.iter().find(|(p, _)| *p == e.path) {
            return Err(RegistryError::PathTaken {
                file: origin_path(&d.origin),
                dialect: d.name.clone(),
                endpoint: e.name.clone(),
                path: e.path.clone(),
                owner: owner.clone(),
            });
        }
    }
    for e in &d.endpoints {
        taken.push((e.path.clone(), format!("dialect {} ({})", d.name, d.origin)));
    }
    Ok(())
}

/// Where the standard OAuth 2.0 endpoints are served, for the discovery documents: the first
/// served endpoint of each operation (the token endpoint is the one that takes every grant).
#[derive(Debug, Default)]
pub struct StandardPaths {
    pub token: Option<String>,
    pub revocation: Option<String>,
    pub introspection: Option<String>,
    pub revocation_list: Option<String>,
}

pub fn standard_paths(served: &[Arc<Dialect>]) -> StandardPaths {
    let first = |want: &dyn Fn(&khoa_dialect::load::Endpoint) -> bool| {
        served
            .iter()
            .flat_map(|d| &d.endpoints)
            .find(|e| want(e))
            .map(|e| e.path.clone())
    };
    StandardPaths {
        token: first(&|e| e.operation == Operation::Token && e.grant == Some(Grant::Request)),
        revocation: first(&|e| e.operation == Operation::Revoke),
        introspection: first(&|e| e.operation == Operation::Introspect),
        revocation_list: first(&|e| e.operation == Operation::RevokedJwts),
    }
}

/// How long a partner's previous key keeps opening envelopes after `khoa partner
/// rotate-key`: the longest overlap among the served endpoints that open envelopes, `None`
/// when none is served.
pub fn key_overlap_secs(served: &[Arc<Dialect>]) -> Option<u64> {
    served
        .iter()
        .flat_map(|d| &d.endpoints)
        .filter_map(|e| e.envelope.as_ref().map(|env| env.key_overlap_secs))
        .max()
}

/// A dialect's name as a metrics label, which is `&'static`: each distinct name is leaked once
/// per process, however many servers (tests) load it.
pub fn label(name: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let n: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(cfg: &DialectsConfig) -> String {
        load(cfg, &[]).unwrap_err().to_string()
    }

    #[test]
    fn two_endpoints_on_one_path_are_refused_naming_both() {
        let mut cfg = DialectsConfig::default();
        cfg.set("oauth2", "introspection_path", "/connect/token");
        let e = refusal(&cfg);
        assert!(e.starts_with("dialects.oauth2: these settings"), "{e}");
        assert!(e.contains("endpoints.introspection.path"), "{e}");
        assert!(e.contains("/connect/token is also endpoint token"), "{e}");

        let mut cfg = DialectsConfig::default();
        cfg.enable("bankhub")
            .set("bankhub", "path", "/connect/token");
        let e = refusal(&cfg);
        assert!(e.contains("bankhub") && e.contains("/connect/token"), "{e}");
    }

    #[test]
    fn a_table_of_no_dialect_is_refused_with_the_nearest_name() {
        let mut cfg = DialectsConfig::default();
        cfg.enable("bankhb");
        let e = refusal(&cfg);
        assert!(e.starts_with("dialects.bankhb: no dialect bankhb"), "{e}");
        assert!(e.contains("did you mean dialects.bankhub?"), "{e}");
    }

    #[test]
    fn a_setting_the_definition_lacks_is_refused_with_the_nearest_key() {
        let mut cfg = DialectsConfig::default();
        cfg.enable("bankhub").set("bankhub", "pth", "/x");
        let e = refusal(&cfg);
        assert!(
            e.starts_with("dialects.bankhub.pth: dialect bankhub"),
            "{e}"
        );
        assert!(e.contains("did you mean dialects.bankhub.path?"), "{e}");
    }

    #[test]
    fn a_setting_of_the_wrong_type_is_refused_and_text_takes_numbers() {
        let mut cfg = DialectsConfig::default();
        cfg.enable("partner")
            .set("partner", "key_overlap_secs", "a day");
        let e = refusal(&cfg);
        assert!(
            e.starts_with("dialects.partner.key_overlap_secs: is a string"),
            "{e}"
        );

        // An environment variable's KHOA_DIALECTS__VIETQR__BASE_PATH=2468 arrives a number.
        let mut cfg = DialectsConfig::default();
        cfg.enable("vietqr").set("vietqr", "base_path", 2468);
        let served = load(&cfg, &[]).unwrap();
        let paths = standard_paths(&served);
        assert_eq!(paths.token.as_deref(), Some("/connect/token"));
        let vietqr = served.iter().find(|d| d.name == "vietqr").unwrap();
        assert_eq!(vietqr.endpoints[0].path, "/2468/api/token_generate");
    }

    #[test]
    fn a_setting_that_breaks_the_definition_names_the_table() {
        let mut cfg = DialectsConfig::default();
        cfg.enable("partner").set("partner", "key_overlap_secs", -1);
        let e = refusal(&cfg);
        assert!(
            e.starts_with("dialects.partner: these settings do not fit"),
            "{e}"
        );

        let mut cfg = DialectsConfig::default();
        cfg.enable("vietqr").set("vietqr", "base_path", "");
        let e = refusal(&cfg);
        assert!(
            e.starts_with("dialects.vietqr: these settings do not fit"),
            "{e}"
        );
    }

    #[test]
    fn oauth2_is_served_by_default_and_can_be_turned_off() {
        let served = load(&DialectsConfig::default(), &[]).unwrap();
        let names: Vec<&str> = served.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["oauth2"]);
        let mut cfg = DialectsConfig::default();
        cfg.disable("oauth2");
        assert!(load(&cfg, &[]).unwrap().is_empty());
        assert!(standard_paths(&[]).token.is_none());
    }

    #[test]
    fn the_partner_key_overlap_comes_from_the_served_envelopes() {
        assert_eq!(
            key_overlap_secs(&load(&DialectsConfig::default(), &[]).unwrap()),
            None
        );
        let mut cfg = DialectsConfig::default();
        cfg.enable("partner").set("partner", "key_overlap_secs", 60);
        assert_eq!(key_overlap_secs(&load(&cfg, &[]).unwrap()), Some(60));
    }
}
