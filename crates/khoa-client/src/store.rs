//! Where a source keeps its tokens across restarts: [`TokenStore`], and [`FileStore`], which
//! several processes of one host share.
//!
//! The source takes the store's lock around each whole token call — read what is saved, call
//! only if nothing newer is there, save — so two processes sharing a file never redeem one
//! refresh token twice: the second finds the first one's rotated token and uses it.

use std::any::Any;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::Error;

/// A token as saved. Secrets in the clear: a store must keep them where only the service's
/// user can read them.
#[derive(Clone, Deserialize, Serialize)]
pub struct Saved {
    pub access_token: String,
    pub token_type: String,
    pub otp_token: Option<String>,
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("issued_at_ms", &self.issued_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A place to keep a source's tokens. `key` names the source (dialect, client, scope,
/// principal), never a token.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn load(&self, key: &str) -> Result<Option<Saved>, Error>;
    async fn save(&self, key: &str, saved: &Saved) -> Result<(), Error>;
    /// Held for the length of a token call; a store shared by processes makes it exclusive
    /// across them. The default holds nothing.
    async fn lock(&self, _key: &str) -> Result<Box<dyn Any + Send>, Error> {
        Ok(Box::new(()))
    }
}

/// One file per source in a directory, readable by its owner only (0600), with an exclusive
/// lock (`flock`) held around each token call, so the processes of one host that share the
/// directory share one token and one rotation chain.
///
/// # Examples
///
/// ```
/// # fn demo() -> Result<(), khoa_client::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = khoa_client::FileStore::new(dir.path())?;
/// # Ok(()) }
/// # demo().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Keeps the files in `dir`, which is created (0700) if missing.
    pub fn new(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        restrict(dir, 0o700)?;
        Ok(FileStore {
            dir: dir.to_owned(),
        })
    }

    /// A key as a file name: its SHA-256, so that no client id or scope becomes a path.
    fn path(&self, key: &str, ext: &str) -> PathBuf {
        let name = hex::encode(sha2::Sha256::digest(key.as_bytes()));
        self.dir.join(format!("{}.{ext}", &name[..32]))
    }
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Config(format!("token store {}: {e}", path.display()))
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> Result<(), Error> {
    Ok(())
}

/// Runs file work off the runtime's threads (a lock may wait for another process).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Config(format!("token store: {e}")))?
}

#[async_trait]
impl TokenStore for FileStore {
    async fn load(&self, key: &str) -> Result<Option<Saved>, Error> {
        let path = self.path(key, "json");
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Config(format!("token store {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        })
        .await
    }

    async fn save(&self, key: &str, saved: &Saved) -> Result<(), Error> {
        let path = self.path(key, "json");
        let bytes = serde_json::to_vec(saved).expect("a saved token serialises");
        blocking(move || {
            // Written beside, synced, renamed over: a crash leaves the old file or the new.
            let partial = path.with_extension("json.partial");
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode_0600()
                .open(&partial)
                .map_err(|e| io(&partial, e))?;
            file.write_all(&bytes).map_err(|e| io(&partial, e))?;
            file.sync_all().map_err(|e| io(&partial, e))?;
            std::fs::rename(&partial, &path).map_err(|e| io(&path, e))
        })
        .await
    }

    async fn lock(&self, key: &str) -> Result<Box<dyn Any + Send>, Error> {
        let path = self.path(key, "lock");
        blocking(move || {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode_0600()
                .open(&path)
                .map_err(|e| io(&path, e))?;
            file.lock().map_err(|e| io(&path, e))?;
            // Unlocked when the file is closed, as the guard drops.
            Ok(Box::new(file) as Box<dyn Any + Send>)
        })
        .await
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    #[cfg(unix)]
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }

    #[cfg(not(unix))]
    fn mode_0600(&mut self) -> &mut Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(refresh: &str) -> Saved {
        Saved {
            access_token: "at".into(),
            token_type: "Bearer".into(),
            otp_token: None,
            refresh_token: Some(refresh.into()),
            scope: None,
            issued_at_ms: 1,
            expires_at_ms: 2,
        }
    }

    #[tokio::test]
    async fn a_saved_token_is_read_back_from_a_file_only_its_owner_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(&dir.path().join("tokens")).unwrap();
        assert!(store.load("k").await.unwrap().is_none());
        store.save("k", &saved("rt-1")).await.unwrap();
        store.save("k", &saved("rt-2")).await.unwrap();
        let back = store.load("k").await.unwrap().unwrap();
        assert_eq!(back.refresh_token.as_deref(), Some("rt-2"));
        assert!(store.load("other").await.unwrap().is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path("k", "json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{back:?}").contains("rt-2"));
    }

    #[tokio::test]
    async fn the_lock_excludes_a_second_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let first = store.lock("k").await.unwrap();
        let second = {
            let store = store.clone();
            tokio::spawn(async move { store.lock("k").await.map(drop) })
        };
        // The second waits on the file lock (a blocking thread) for as long as the first holds.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!second.is_finished());
        drop(first);
        second.await.unwrap().unwrap();
    }
}
