//! The dialects loaded from definition files (`dialects.dir`): read once at start-up, refused
//! with file, line and key when one does not validate, and served by [`super::generic`].
//!
//! The five built-in dialects are still handlers of their own beside this (moving them to
//! built-in definitions is the next step of the dialects-as-data work); a file may therefore
//! not take a built-in's name or any path khoa already serves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use khoa_dialect::{DefinitionError, Dialect, Origin};

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
        "{}: {name} is a built-in dialect; replacing a built-in from a file is not supported yet \
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

/// Every `*.toml` of `dir` (sorted by name), loaded and checked against `taken`: the paths
/// khoa already serves, each with what serves it.
pub fn load_dir(
    dir: &Path,
    taken: &[(String, String)],
) -> Result<Vec<Arc<Dialect>>, RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Dir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    let mut taken = taken.to_vec();
    let mut loaded: Vec<Arc<Dialect>> = Vec::new();
    for file in files {
        let dialect = load_file(&file)?;
        check(&dialect, &file, &loaded, &mut taken)?;
        loaded.push(Arc::new(dialect));
    }
    Ok(loaded)
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

fn check(
    d: &Dialect,
    file: &Path,
    loaded: &[Arc<Dialect>],
    taken: &mut Vec<(String, String)>,
) -> Result<(), RegistryError> {
    if BUILT_IN.contains(&d.name.as_str()) {
        return Err(RegistryError::BuiltIn {
            name: d.name.clone(),
            file: file.to_owned(),
        });
    }
    if let Some(other) = loaded.iter().find(|o| o.name == d.name) {
        return Err(RegistryError::SameName {
            name: d.name.clone(),
            file: file.to_owned(),
            other: match &other.origin {
                Origin::File(p) => p.clone(),
                Origin::BuiltIn => PathBuf::from("built-in"),
            },
        });
    }
    for e in &d.endpoints {
        if let Some((_, owner)) = taken.iter().find(|(p, _)| *p == e.path) {
            return Err(RegistryError::PathTaken {
                file: file.to_owned(),
                endpoint: e.name.clone(),
                path: e.path.clone(),
                owner: owner.clone(),
            });
        }
    }
    for e in &d.endpoints {
        taken.push((
            e.path.clone(),
            format!("dialect {} ({})", d.name, file.display()),
        ));
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
