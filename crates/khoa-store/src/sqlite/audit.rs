//! Audit events on SQLite.
//!
//! An event is queued on the writer without waiting for its commit ([`Writer::enqueue`]): it
//! lingers a few milliseconds and rides in whatever batch comes next, sharing that batch's
//! commit, or commits with the other lingering events, so the request that caused it pays a
//! push onto a vector, never a commit of its own. The price, documented on
//! [`AuditStore::record`]: a crash can lose the events queued in the last moments (at most a
//! batch or two), never a token. Writing the event inside the issuance's own job would lose
//! nothing, but most events have no such job (a JWT client_credentials token writes no row at
//! all), and one rule for all events is easier to trust.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{AuditEvent, AuditFilter, AuditStore, StoreError};
use sqlx::sqlite::SqliteRow;

use super::{Db, ResultExt, get, parse_col};

pub(super) struct SqliteAudit(pub(super) Db);

#[async_trait]
impl AuditStore for SqliteAudit {
    async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.0
            .writer
            .enqueue(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO audit_events (at, kind, subject, client_id, detail, node) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut insert| {
                    insert.execute(rusqlite::params![
                        event.at,
                        event.kind.as_str(),
                        event.subject,
                        event.client_id,
                        event.detail,
                        event.node,
                    ])
                })
                .store_err()
                .map(drop)
            })
            .await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // The writer runs jobs in order: once this empty one committed, so did every event
        // queued before it.
        self.0.writer.write_one(|_| Ok(())).await
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
        .fetch_all(&self.0.read)
        .await
        .store_err()?;
        rows.iter().map(event_row).collect()
    }

    async fn purge_audit(&self, before: UnixTime, batch: u32) -> Result<u64, StoreError> {
        self.0
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

fn event_row(row: &SqliteRow) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: get(row, "id")?,
        at: get(row, "at")?,
        kind: parse_col("kind", &get::<String>(row, "kind")?)?,
        subject: get(row, "subject")?,
        client_id: get(row, "client_id")?,
        detail: get(row, "detail")?,
        node: get(row, "node")?,
    })
}
