//! The dialects served from definitions: the built-in ones embedded in the binary
//! (`crates/khoa-server/dialects/*.toml`) and the files of `dialects.dir`, read once at
//! start-up, refused with file, line and key when one does not validate, and served by
//! [`super::generic`].
//!
//! Of the five built-in dialects, those not yet moved to definitions are handlers of their
//! own beside this; a file may not take their names, nor any path khoa already serves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use khoa_dialect::{DefinitionError, Dialect, Origin};

use crate::config::DialectsConfig;

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
    #[error(
        "{}: {name} is a built-in dialect served by its own handler, which no file can replace \
         (give the file and its `name` another name)",
        .file.display()
    )]
    BuiltIn { name: String, file: PathBuf },
    #[error("{}: endpoint {endpoint} is at {path}, which {owner} already serves", .file.display())]
    PathTaken {
        file: PathBuf,
        endpoint: String,
        path: String,
        owner: String,
    },
}

/// The names of the built-in dialects.
pub const BUILT_IN: [&str; 5] = ["oauth2", "derivative", "bankhub", "partner", "vietqr"];

/// The built-in dialects that are definitions, embedded in the binary. Each one's `[settings]`
/// are the keys of its `[dialects.NAME]` configuration table besides `enabled`.
const DEFINED: [(&str, &str); 4] = [
    ("derivative", include_str!("../../dialects/derivative.toml")),
    ("bankhub", include_str!("../../dialects/bankhub.toml")),
    ("partner", include_str!("../../dialects/partner.toml")),
    ("vietqr", include_str!("../../dialects/vietqr.toml")),
];

/// Every built-in definition with the operator's settings applied, and whether it is enabled.
pub fn built_ins(cfg: &DialectsConfig) -> Result<Vec<(Arc<Dialect>, bool)>, RegistryError> {
    DEFINED
        .iter()
        .map(|(name, text)| {
            let (enabled, overrides) = configured(cfg, name);
            let d = khoa_dialect::load(text, Origin::BuiltIn, &overrides)?;
            Ok((Arc::new(d), enabled))
        })
        .collect()
}

/// `dialects.NAME.enabled`, and the keys of `[dialects.NAME]` the operator changed.
fn configured(
    cfg: &DialectsConfig,
    name: &str,
) -> (bool, serde_json::Map<String, serde_json::Value>) {
    let table = |c: &DialectsConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(mut m)) => match m.remove(name) {
            Some(serde_json::Value::Object(t)) => t,
            _ => serde_json::Map::new(),
        },
        _ => serde_json::Map::new(),
    };
    let defaults = table(&DialectsConfig::default());
    let mut given = table(cfg);
    let enabled = given
        .remove("enabled")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    given.retain(|k, v| k != "enabled" && defaults.get(k) != Some(v));
    (enabled, given)
}

/// The definitions khoa serves: the enabled built-in ones, and every `*.toml` of `dialects.dir`
/// (sorted by name; a file named like a built-in definition replaces it, and is served when
/// that dialect is enabled). `taken` are the paths served by other routes, each with what
/// serves it: a definition may not take one, nor a path of another definition.
pub fn load(
    cfg: &DialectsConfig,
    taken: &[(String, String)],
) -> Result<Vec<Arc<Dialect>>, RegistryError> {
    let files = match &cfg.dir {
        Some(dir) => load_dir(dir)?,
        None => Vec::new(),
    };
    let mut served: Vec<Arc<Dialect>> = Vec::new();
    for (d, enabled) in built_ins(cfg)? {
        if !enabled {
            if let Some(f) = files.iter().find(|f| f.name == d.name) {
                tracing::warn!(
                    file = %f.origin,
                    "{} replaces the built-in dialect of that name, which is disabled: set \
                     dialects.{}.enabled = true to serve it",
                    f.origin,
                    d.name
                );
            }
            continue;
        }
        match files.iter().find(|f| f.name == d.name) {
            None => served.push(d),
            // The replacement gets the operator's changed settings, as the built-in would.
            Some(f) => {
                let (_, overrides) = configured(cfg, &d.name);
                let Origin::File(path) = &f.origin else {
                    continue;
                };
                served.push(Arc::new(
                    khoa_dialect::load(&f.text, f.origin.clone(), &overrides).map_err(|e| {
                        RegistryError::Definition(DefinitionError {
                            origin: path.display().to_string(),
                            ..e
                        })
                    })?,
                ));
            }
        }
    }
    served.extend(
        files
            .into_iter()
            .filter(|f| !DEFINED.iter().any(|(n, _)| *n == f.name)),
    );
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
        let defined = DEFINED.iter().any(|(n, _)| *n == d.name);
        if BUILT_IN.contains(&d.name.as_str()) && !defined {
            return Err(RegistryError::BuiltIn {
                name: d.name.clone(),
                file,
            });
        }
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
/// configuration serves: valid, not the name of a built-in handler, on no path already served
/// (by khoa or by another dialect than the one it would replace).
pub fn check_file(
    file: &Path,
    served: &[Arc<Dialect>],
    reserved: &[(String, String)],
) -> Result<Dialect, RegistryError> {
    let d = load_file(file)?;
    if BUILT_IN.contains(&d.name.as_str()) && !DEFINED.iter().any(|(n, _)| *n == d.name) {
        return Err(RegistryError::BuiltIn {
            name: d.name.clone(),
            file: file.to_owned(),
        });
    }
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
