//! Audit events on SQLite.
//!
//! An event is queued on the writer without waiting for its commit ([`Writer::enqueue`]): it
//! lingers a few milliseconds and rides in whatever batch comes next, sharing that batch's
//! commit, or commits with the other lingering events, so the request that caused it pays a
//! push onto a vector, never a commit of its own. Events are gathered here, into one writer job
//! for all those recorded while it waits, rather than one job each: at a token endpoint's rate
//! the job's own cost (a box, a reply channel, a statement reset) was half that of the row.
//!
//! The price, documented on [`AuditStore::record`]: a crash can lose the events queued in the
//! last moments, never a token. Writing the event inside the issuance's own job would lose
//! nothing, but most events have no such job (a JWT client_credentials token writes no row at
//! all), and one rule for all events is easier to trust.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{AuditEvent, AuditFilter, AuditStore, StoreError};
use rusqlite::Connection;

use super::{Db, ResultExt};
use crate::decode;

/// At this many events waiting, [`AuditStore::record`] waits for them to commit: the
/// back-pressure that keeps the buffer bounded when the disk falls behind.
const MAX_WAITING: usize = 8192;

pub(super) struct SqliteAudit {
    db: Db,
    /// Recorded, not yet taken by a writer job. Non-empty exactly when a job is queued that
    /// will take them.
    waiting: Arc<Mutex<Vec<AuditEvent>>>,
}

impl SqliteAudit {
    pub(super) fn new(db: Db) -> SqliteAudit {
        SqliteAudit {
            db,
            waiting: Arc::default(),
        }
    }
}

fn lock(waiting: &Mutex<Vec<AuditEvent>>) -> MutexGuard<'_, Vec<AuditEvent>> {
    // A panic while holding it is a push or a `mem::take`: the vector is intact.
    waiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Inserts every waiting event; runs on the writer thread.
fn insert_waiting(conn: &Connection, waiting: &Mutex<Vec<AuditEvent>>) -> Result<(), StoreError> {
    let events = std::mem::take(&mut *lock(waiting));
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO audit_events (at, kind, subject, client_id, detail, node) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .store_err()?;
    for event in &events {
        let inserted = insert.execute(rusqlite::params![
            event.at,
            event.kind.as_str(),
            event.subject,
            event.client_id,
            event.detail,
            event.node,
        ]);
        if let Err(e) = inserted {
            // SQLite took the failed statement back by itself; the other events, and the rest
            // of the batch, stand. Unless it ended the whole transaction (a full disk): then the
            // writer must hear of it.
            if conn.is_autocommit() {
                return Err(e).store_err();
            }
            tracing::warn!(error = %e, kind = event.kind.as_str(), "an audit event was not stored");
        }
    }
    Ok(())
}

#[async_trait]
impl AuditStore for SqliteAudit {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        let waiting = {
            let mut waiting = lock(&self.waiting);
            waiting.push(event);
            waiting.len()
        };
        if waiting == 1 {
            // The first since the last job took them: queue the job that will take this one
            // and every one recorded until it runs.
            let events = self.waiting.clone();
            let queued = self
                .db
                .writer
                .enqueue(move |conn| insert_waiting(conn, &events))
                .await;
            if let Err(e) = queued {
                // The writer has stopped: nothing will take them, ever.
                lock(&self.waiting).clear();
                return Err(e);
            }
        } else if waiting >= MAX_WAITING {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // The writer runs jobs in order: once this empty one committed, so did every event
        // queued before it.
        self.db.writer.write_one(|_| Ok(())).await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        // Read-your-writes within this process: events queued just before are committed first.
        self.flush().await?;
        let rows = sqlx::query(
            "SELECT id, at, kind, subject, client_id, detail, node FROM audit_events \
             WHERE (?1 IS NULL OR subject = ?1) AND (?2 IS NULL OR client_id = ?2) \
               AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR at >= ?4) \
               AND (?5 IS NULL OR at <= ?5) \
             ORDER BY at DESC, id DESC LIMIT ?6",
        )
        .bind(f.subject.as_deref())
        .bind(f.client_id.as_deref())
        .bind(f.kind.map(|k| k.as_str()))
        .bind(f.since)
        .bind(f.until)
        .bind(i64::from(f.limit))
        .fetch_all(&self.db.read)
        .await
        .store_err()?;
        rows.iter().map(decode::audit_event).collect()
    }

    async fn purge_audit(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError> {
        self.db
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM audit_events WHERE id IN \
                     (SELECT id FROM audit_events WHERE at < ?1 ORDER BY at LIMIT ?2)",
                )
                .and_then(|mut delete| delete.execute(rusqlite::params![before, batch]))
                .store_err()
                .map(|n| n as u64)
            })
            .await
    }
}
