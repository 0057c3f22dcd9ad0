//! Loading the master key: `KHOA_MASTER_KEY`, or a key file created with mode 0600 on first
//! start.

use khoa_core::clock::OsRandom;
use khoa_core::master_key::MasterKey;
use secrecy::ExposeSecret;
use std::io::Write;
use std::path::Path;

use crate::config::Config;
use crate::startup::OnMissing;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyLoadError {
    #[error("configuration key `master_key`: {0}")]
    Invalid(String),
    #[error("master key file {path}: {message}")]
    File { path: String, message: String },
    #[error(
        "no master key: set KHOA_MASTER_KEY or master_key_file (PostgreSQL has no database file \
         to keep master.key beside)"
    )]
    Missing,
}

/// The configured master key. Its file is created only where the database may be created too
/// (`serve`, `migrate`); the admin verbs refuse a missing one, as they refuse a missing
/// database.
pub fn load(config: &Config, on_missing: OnMissing) -> Result<MasterKey, MasterKeyLoadError> {
    if let Some(hex) = &config.master_key {
        return MasterKey::from_hex(hex.expose_secret())
            .map_err(|e| MasterKeyLoadError::Invalid(e.to_string()));
    }
    let path = config
        .master_key_path()
        .ok_or(MasterKeyLoadError::Missing)?;
    if on_missing == OnMissing::Refuse && !path.exists() {
        return Err(MasterKeyLoadError::File {
            path: path.display().to_string(),
            message: "does not exist; the database's signing and partner keys are sealed \
                      under it: restore it from where the database's backup is kept, or set \
                      KHOA_MASTER_KEY"
                .into(),
        });
    }
    load_or_create(&path)
}

fn load_or_create(path: &Path) -> Result<MasterKey, MasterKeyLoadError> {
    let file_err = |message: String| MasterKeyLoadError::File {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => MasterKey::from_hex(&text).map_err(|e| file_err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| file_err(e.to_string()))?;
            }
            let key = MasterKey::generate(&OsRandom);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(path) {
                Ok(mut f) => {
                    f.write_all(key.to_hex().as_bytes())
                        .and_then(|_| f.sync_all())
                        .map_err(|e| file_err(e.to_string()))?;
                    tracing::info!(path = %path.display(), "created a new master key file");
                    Ok(key)
                }
                // Another process created it between our read and our create: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(e) => Err(file_err(e.to_string())),
            }
        }
        Err(e) => Err(file_err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not hex").unwrap();
        assert!(load_or_create(&path).is_err());
    }
}
