//! Which keys the configuration has, checked in each layer before the layers are merged, and
//! what a refusal says.
//!
//! The check runs per layer, not on the merged result, so that a refusal can say where the key
//! came from: the file, or the one `KHOA_*` variable. The known keys are read off the
//! serialised defaults, so a field added to [`Config`] is known here without a second list.
//! `#[serde(deny_unknown_fields)]` on the structs stays as the backstop.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use figment::Provider;
use figment::value::{Dict, Value};
use serde_json::Value as Json;

use super::{Config, ConfigError, ForwardAuthRoute};

/// Where a layer of the configuration comes from.
pub(super) enum Origin {
    File(PathBuf),
    Env,
}

impl Origin {
    /// How the key at `path` is written in this layer: `http.max_body_bytes` in a file,
    /// `KHOA_HTTP__MAX_BODY_BYTES` in the environment.
    fn spell(&self, path: &[&str]) -> String {
        match self {
            Origin::File(_) => path.join("."),
            Origin::Env => format!("KHOA_{}", path.join("__").to_ascii_uppercase()),
        }
    }

    fn describe(&self, path: &[&str]) -> String {
        match self {
            Origin::File(f) => format!("config file {}", f.display()),
            Origin::Env => format!("environment variable {}", self.spell(path)),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "config file {}", p.display()),
            Origin::Env => f.write_str("the KHOA_* environment"),
        }
    }
}

enum Node {
    /// A value: its type is serde's to check.
    Leaf,
    Table(BTreeMap<String, Node>),
    /// An array of tables (`[[forward_auth.routes]]`), each with these keys.
    Tables(BTreeMap<String, Node>),
    /// `[dialects]`: these keys (`dir`, the built-in dialects' tables) are checked here; a
    /// table of another name is a definition file's, checked when the files are loaded.
    Dialects(BTreeMap<String, Node>),
}

pub(super) struct Schema {
    root: BTreeMap<String, Node>,
}

impl Schema {
    pub(super) fn of_defaults() -> Schema {
        let mut root = table(&to_json(&Config::default()));
        // Never serialised (a secret), but a key all the same.
        root.insert("master_key".into(), Node::Leaf);
        // Arrays of tables are empty by default: their keys come from an element's default.
        if let Some(Node::Table(fa)) = root.get_mut("forward_auth") {
            fa.insert(
                "routes".into(),
                Node::Tables(table(&to_json(&ForwardAuthRoute::default()))),
            );
        }
        // `[dialects.NAME]` has `enabled` and the definition's settings.
        let mut dialects = BTreeMap::from([("dir".to_owned(), Node::Leaf)]);
        for (name, settings) in crate::dialects::registry::built_in_settings() {
            let keys = std::iter::once("enabled".to_owned())
                .chain(settings)
                .map(|k| (k, Node::Leaf))
                .collect();
            dialects.insert(name.to_owned(), Node::Table(keys));
        }
        root.insert("dialects".into(), Node::Dialects(dialects));
        Schema { root }
    }

    /// Refuses the first key of `layer` that the configuration does not have.
    pub(super) fn check(&self, layer: &impl Provider, origin: &Origin) -> Result<(), ConfigError> {
        let data = layer
            .data()
            .map_err(|e| ConfigError::Load(format!("{origin}: {}", e.kind)))?;
        for dict in data.values() {
            self.walk(&self.root, dict, &mut Vec::new(), origin)?;
        }
        Ok(())
    }

    fn walk<'a>(
        &self,
        known: &BTreeMap<String, Node>,
        given: &'a Dict,
        path: &mut Vec<&'a str>,
        origin: &Origin,
    ) -> Result<(), ConfigError> {
        for (key, value) in given {
            path.push(key);
            match (known.get(key.as_str()), value) {
                (None, _) => return Err(self.unknown(known, path, origin)),
                (Some(Node::Table(inner)), Value::Dict(_, dict)) => {
                    self.walk(inner, dict, path, origin)?
                }
                (Some(Node::Dialects(inner)), Value::Dict(_, dict)) => {
                    for (name, value) in dict {
                        if let (Some(Node::Table(keys)), Value::Dict(_, table)) =
                            (inner.get(name.as_str()), value)
                        {
                            path.push(name);
                            self.walk(keys, table, path, origin)?;
                            path.pop();
                        }
                    }
                }
                (Some(Node::Tables(inner)), Value::Array(_, items)) => {
                    for item in items {
                        if let Value::Dict(_, dict) = item {
                            self.walk(inner, dict, path, origin)?;
                        }
                    }
                }
                // A leaf, or a value of the wrong type: serde names the latter.
                _ => {}
            }
            path.pop();
        }
        Ok(())
    }

    fn unknown(
        &self,
        siblings: &BTreeMap<String, Node>,
        path: &[&str],
        origin: &Origin,
    ) -> ConfigError {
        let (name, parent) = path.split_last().expect("the unknown key is on the path");
        let suggestion = nearest(name, siblings.keys().map(String::as_str))
            .map(|s| {
                let mut p = parent.to_vec();
                p.push(s);
                p.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            })
            // The right name in the wrong table: `max_body_bytes` at the top, not in `[http]`.
            .or_else(|| self.elsewhere(name))
            .map(|p| origin.spell(&p.iter().map(String::as_str).collect::<Vec<_>>()));
        ConfigError::Unknown {
            origin: origin.describe(path),
            key: path.join("."),
            suggestion,
        }
    }

    /// The path of a key named exactly `name` somewhere else in the configuration.
    fn elsewhere(&self, name: &str) -> Option<Vec<String>> {
        fn find(known: &BTreeMap<String, Node>, name: &str, path: &mut Vec<String>) -> bool {
            for (key, node) in known {
                path.push(key.clone());
                if key == name {
                    return true;
                }
                if let Node::Table(inner) | Node::Tables(inner) | Node::Dialects(inner) = node
                    && find(inner, name, path)
                {
                    return true;
                }
                path.pop();
            }
            false
        }
        let mut path = Vec::new();
        find(&self.root, name, &mut path).then_some(path)
    }
}

/// The candidate closest to `name` in edit distance, if it is close enough to be a typo; also
/// what [`crate::dialects::registry`] suggests for a `[dialects.NAME]` table or key.
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn to_json<T: serde::Serialize>(value: &T) -> Json {
    serde_json::to_value(value).expect("the configuration serialises")
}

fn table(value: &Json) -> BTreeMap<String, Node> {
    let Json::Object(map) = value else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let node = match v {
                Json::Object(_) => Node::Table(table(v)),
                _ => Node::Leaf,
            };
            (k.clone(), node)
        })
        .collect()
}

/// figment's errors, each naming its key as the operator writes it and where it came from
/// (figment's own text says `for key "default.listen"`, its profile, which means nothing here).
pub(super) fn describe(errors: figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|e| {
            let path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            let file = e.metadata.as_ref().and_then(|m| match &m.source {
                Some(figment::Source::File(f)) => Some(f.clone()),
                _ => None,
            });
            let origin = match (file, from_env) {
                (Some(f), _) => Origin::File(f),
                (None, true) => Origin::Env,
                (None, false) => return format!("key `{}`: {}", path.join("."), e.kind),
            };
            match origin {
                Origin::Env => format!("{}: {}", origin.describe(&path), e.kind),
                Origin::File(_) => {
                    format!(
                        "{}, key `{}`: {}",
                        origin.describe(&path),
                        path.join("."),
                        e.kind
                    )
                }
            }
        })
        .collect();
    ConfigError::Load(lines.join("\n"))
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment's Jail API returns its own error"
)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// Loads `toml` (if any) as the config file under `jail`, and returns the refusal.
    fn refusal(jail: &mut figment::Jail, toml: Option<&str>) -> String {
        let file = toml.map(|t| {
            jail.create_file("khoa.toml", t).unwrap();
            Path::new("khoa.toml")
        });
        Config::load(file).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_naming_the_file_and_the_nearest_key() {
        figment::Jail::expect_with(|jail| {
            let e = refusal(jail, Some("lisen = \"127.0.0.1:18091\"\n"));
            assert!(e.contains("config file khoa.toml"), "{e}");
            assert!(
                e.contains("`lisen`") && e.contains("did you mean listen?"),
                "{e}"
            );

            let e = refusal(jail, Some("[dialects.bankhub]\nenabeld = true\n"));
            assert!(e.contains("`dialects.bankhub.enabeld`"), "{e}");
            assert!(e.contains("did you mean dialects.bankhub.enabled?"), "{e}");

            // The right name in the wrong table.
            let e = refusal(jail, Some("max_body_bytes = 4096\n"));
            assert!(e.contains("did you mean http.max_body_bytes?"), "{e}");

            // Nothing near: refused all the same, without a guess.
            let e = refusal(jail, Some("[http]\ncompletely_different = 1\n"));
            assert!(e.contains("`http.completely_different`"), "{e}");
            assert!(!e.contains("did you mean"), "{e}");

            // Inside an array of tables too.
            let e = refusal(
                jail,
                Some("[[forward_auth.routes]]\nprefix = \"/api\"\nscope = [\"a\"]\n"),
            );
            assert!(e.contains("`forward_auth.routes.scope`"), "{e}");
            assert!(
                e.contains("did you mean forward_auth.routes.scopes?"),
                "{e}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_khoa_variables_are_refused_naming_the_variable_and_the_nearest_one() {
        figment::Jail::expect_with(|jail| {
            // Not keys: the command line's --config, and the verbatim master key.
            jail.set_env("KHOA_CONFIG", "elsewhere.toml");
            jail.set_env("KHOA_MASTER_KEY", "00".repeat(32));
            Config::load(None).unwrap();

            jail.set_env("KHOA_LISEN", "127.0.0.1:18091");
            let e = refusal(jail, None);
            assert!(e.contains("environment variable KHOA_LISEN"), "{e}");
            assert!(e.contains("did you mean KHOA_LISTEN?"), "{e}");
            jail.clear_env();

            jail.set_env("KHOA_DIALECTS__BANKHUB__ENABEL", "true");
            let e = refusal(jail, None);
            assert!(e.contains("KHOA_DIALECTS__BANKHUB__ENABEL"), "{e}");
            assert!(
                e.contains("did you mean KHOA_DIALECTS__BANKHUB__ENABLED?"),
                "{e}"
            );
            jail.clear_env();

            // A table of another name is a definition file's: loaded here, checked against
            // the definitions at start-up (dialects::registry).
            jail.set_env("KHOA_DIALECTS__CASSO__CLIENT", "casso-prod");
            jail.set_env("KHOA_DIALECTS__CASSO__ENABLED", "false");
            let c = Config::load(None).expect("a file dialect's table loads");
            let casso = &c.dialects.tables["casso"];
            assert_eq!(casso.enabled, Some(false));
            assert_eq!(casso.settings["client"], "casso-prod");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_names_its_key_and_source_without_the_profile() {
        figment::Jail::expect_with(|jail| {
            let e = refusal(jail, Some("listen = \"localhost:8080\"\n"));
            assert!(e.contains("config file khoa.toml, key `listen`"), "{e}");
            assert!(
                e.contains("an IP address and a port, such as 127.0.0.1:8080"),
                "{e}"
            );
            assert!(!e.contains("default."), "{e}");

            let e = refusal(jail, Some("[http]\nmax_body_bytes = \"big\"\n"));
            assert!(e.contains("key `http.max_body_bytes`"), "{e}");
            assert!(!e.contains("default."), "{e}");

            jail.set_env("KHOA_LISTEN", "8080");
            let e = refusal(jail, None);
            assert!(e.contains("environment variable KHOA_LISTEN"), "{e}");
            assert!(e.contains("`8080` is not an address to listen on"), "{e}");
            Ok(())
        });
    }
}
