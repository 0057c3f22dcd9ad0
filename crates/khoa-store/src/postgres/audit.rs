//! Audit events on PostgreSQL.
//!
//! No writer thread to ride along with here, and an insert is a round trip the token hot path
//! should not wait for: [`AuditStore::record`] queues the event for a task of this store's own
//! and returns. The task drains what is queued and inserts it with one multi-row statement,
//! in queue order (so events of one request keep their order). The queue is bounded: past
//! [`QUEUE`] events, `record` waits (back-pressure, never unbounded memory).
//! [`AuditStore::flush`] queues a marker and waits for the task to reach it. Events of a node
//! that crashes with events queued are lost, as on SQLite.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{AuditEvent, AuditFilter, AuditStore, StoreError};
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio::sync::{mpsc, oneshot};

use super::ResultExt;
use crate::decode;

/// Events queued at most before `record` waits.
const QUEUE: usize = 1024;
/// Events inserted by one statement at most (7 parameters each, far below the 65535 limit).
const BATCH: usize = 256;

enum Queued {
    Event(AuditEvent),
    Flushed(oneshot::Sender<()>),
}

pub(super) struct PgAudit {
    pool: PgPool,
    queue: mpsc::Sender<Queued>,
}

impl PgAudit {
    /// Starts the inserting task; it ends when the store is dropped.
    pub(super) fn new(pool: PgPool) -> PgAudit {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(insert_queued(pool.clone(), rx));
        PgAudit { pool, queue }
    }
}

async fn insert_queued(pool: PgPool, mut rx: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut events = Vec::new();
        let mut flushed = Vec::new();
        for queued in batch.drain(..) {
            match queued {
                Queued::Event(e) => events.push(e),
                Queued::Flushed(done) => flushed.push(done),
            }
        }
        if !events.is_empty() {
            let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
                "INSERT INTO audit_events (at, kind, subject, client_id, detail, node) ",
            );
            insert.push_values(&events, |mut row, e| {
                row.push_bind(e.at)
                    .push_bind(e.kind.as_str())
                    .push_bind(&e.subject)
                    .push_bind(&e.client_id)
                    .push_bind(&e.detail)
                    .push_unseparated("::jsonb")
                    .push_bind(&e.node);
            });
            if let Err(e) = insert.build().execute(&pool).await {
                tracing::warn!(error = %e, events = events.len(), "recording audit events failed");
            }
        }
        // Everything queued before each marker was in this batch or an earlier one.
        for done in flushed {
            let _ = done.send(());
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the audit queue is closed".into())
}

#[async_trait]
impl AuditStore for PgAudit {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.queue
            .send(Queued::Event(event))
            .await
            .map_err(|_| closed())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let (done, flushed) = oneshot::channel();
        self.queue
            .send(Queued::Flushed(done))
            .await
            .map_err(|_| closed())?;
        flushed.await.map_err(|_| closed())
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.flush().await?;
        let rows = sqlx::query(
            "SELECT id, at, kind, subject, client_id, detail::text AS detail, node \
             FROM audit_events \
             WHERE ($1::text IS NULL OR subject = $1) AND ($2::text IS NULL OR client_id = $2) \
               AND ($3::text IS NULL OR kind = $3) AND ($4::bigint IS NULL OR at >= $4) \
               AND ($5::bigint IS NULL OR at <= $5) \
             ORDER BY at DESC, id DESC LIMIT $6",
        )
        .bind(f.subject.as_deref())
        .bind(f.client_id.as_deref())
        .bind(f.kind.map(|k| k.as_str()))
        .bind(f.since)
        .bind(f.until)
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await
        .store_err()?;
        rows.iter().map(decode::audit_event).collect()
    }

    async fn purge_audit(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError> {
        sqlx::query(
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await
        .store_err()
        .map(|r| r.rows_affected())
    }
}
