//! Maintenance: what every node does on a timer — picking up signing keys another process
//! scheduled, deleting what has expired — and the readiness probe's round trip.

use std::sync::Arc;

use crate::audit::Auditor;
use crate::error::EngineError;
use crate::mint::KeyRingHandle;
use crate::model::UnixTime;
use crate::store::{
    AuditStore, KeyStore, LoginFailureStore, PoolConnections, Readiness, StoreError, TokenStore,
    WriteBatches,
};

/// Rows deleted per statement: small enough that no purge holds the database (or SQLite's
/// one writer) for long, large enough that a backlog clears in a few rounds.
const TOKEN_BATCH: u32 = 500;
const AUDIT_BATCH: u32 = 500;
/// Failed sign-in rows are one small row each; unknown usernames make them plentiful.
const LOGIN_FAILURE_BATCH: u32 = 5000;

/// The maintenance side of the engine. Built by [`crate::engine::Engine::new`].
pub struct Maintenance {
    pub(super) keys: Arc<KeyRingHandle>,
    pub(super) key_store: Arc<dyn KeyStore>,
    pub(super) tokens: Arc<dyn TokenStore>,
    pub(super) login_failures: Arc<dyn LoginFailureStore>,
    pub(super) audit: Arc<dyn AuditStore>,
    pub(super) readiness: Arc<dyn Readiness>,
    pub(super) auditor: Auditor,
}

impl Maintenance {
    /// Re-reads signing keys from the database (another process may have scheduled one).
    pub async fn reload_keys(&self, now: UnixTime) -> Result<(), EngineError> {
        self.keys.reload(now).await
    }

    /// Deletes the tokens expired by `now`, batch after batch; returns how many.
    pub async fn purge_expired_tokens(&self, now: UnixTime) -> Result<u64, StoreError> {
        batches(TOKEN_BATCH, || self.tokens.purge_expired(now, TOKEN_BATCH)).await
    }

    /// Forgets failed sign-ins older than `before` (they no longer count toward a lock, see
    /// [`crate::store::LockoutPolicy`]); returns how many.
    pub async fn purge_login_failures(
        &self,
        before: UnixTime,
        now: UnixTime,
    ) -> Result<u64, StoreError> {
        let purge = || {
            self.login_failures
                .purge_login_failures(before, now, LOGIN_FAILURE_BATCH)
        };
        batches(LOGIN_FAILURE_BATCH, purge).await
    }

    /// Deletes audit events older than `before`; returns how many.
    pub async fn purge_audit(&self, before: UnixTime) -> Result<u64, StoreError> {
        batches(AUDIT_BATCH, || self.audit.purge_audit(before, AUDIT_BATCH)).await
    }

    /// Deletes signing keys retired before `before` (kept until then, unpublished, so that
    /// `khoa keys list` shows what happened); returns how many.
    pub async fn delete_retired_keys(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.key_store.delete_retired_keys(before).await
    }

    /// Waits until the audit events queued so far are durable (before the process exits).
    pub async fn flush_audit(&self) {
        self.auditor.flush().await;
    }

    /// A cheap round trip to the database (`/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.readiness.ping().await
    }

    /// The connection pool's size and idle connections, for metrics.
    pub fn pool_connections(&self) -> Option<PoolConnections> {
        self.readiness.pool_connections()
    }

    /// Group commit so far, for metrics.
    pub fn write_batches(&self) -> Option<WriteBatches> {
        self.readiness.write_batches()
    }
}

/// Runs `purge` until a batch comes back short: the backlog is gone.
async fn batches<F, Fut>(size: u32, mut purge: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = purge().await?;
        total += n;
        if n < u64::from(size) {
            return Ok(total);
        }
    }
}
