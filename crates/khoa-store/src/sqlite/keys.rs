//! Signing keys on SQLite. Every change goes through the one writer, so the conditions below
//! (no published key yet, no pending key) are checked and acted on without a race.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{IfKeyPending, KeySchedule, KeyStore, SigningKeyRecord, StoreError};
use rusqlite::{Connection, OptionalExtension, ToSql};

use super::{Db, ResultExt, changed};
use crate::decode;

pub(super) struct SqliteKeys(pub(super) Db);

#[async_trait]
impl KeyStore for SqliteKeys {
    async fn insert_first_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        let key = key.clone();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO signing_keys \
                     (kid, alg, private_sealed, public_jwk, created_at, activates_at, retires_at) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
                     WHERE NOT EXISTS (SELECT 1 FROM signing_keys \
                                       WHERE retires_at IS NULL OR retires_at > ?6)",
                )
                .and_then(|mut insert| insert.execute(key_params(&key)))
                .on_unique("kid")
                .map(changed)
            })
            .await
    }

    async fn schedule_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: UnixTime,
        now: UnixTime,
        if_pending: IfKeyPending,
    ) -> Result<KeySchedule, StoreError> {
        let key = key.clone();
        self.0
            .writer
            .write(move |conn| {
                if if_pending == IfKeyPending::Refuse
                    && let Some(pending) = pending_key(conn, now)?
                {
                    return Ok(pending);
                }
                // Only ever brought forward: a key already due to retire earlier keeps its date.
                conn.prepare_cached(
                    "UPDATE signing_keys SET retires_at = ?1 \
                     WHERE retires_at IS NULL OR retires_at > ?1",
                )
                .and_then(|mut retire| retire.execute([retire_others_at]))
                .store_err()?;
                conn.prepare_cached(
                    "INSERT INTO signing_keys \
                     (kid, alg, private_sealed, public_jwk, created_at, activates_at, retires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut insert| insert.execute(key_params(&key)))
                .on_unique("kid")?;
                Ok(KeySchedule::Scheduled)
            })
            .await
    }

    async fn delete_retired_keys(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("DELETE FROM signing_keys WHERE retires_at <= ?")
                    .and_then(|mut delete| delete.execute([before]))
                    .store_err()
                    .map(|n| n as u64)
            })
            .await
    }

    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        // rowid breaks ties between keys activating in the same second.
        sqlx::query(
            "SELECT kid, alg, private_sealed, public_jwk, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY activates_at, rowid",
        )
        .fetch_all(&self.0.read)
        .await
        .store_err()?
        .iter()
        .map(decode::signing_key)
        .collect()
    }
}

/// The published key that has not activated yet, if any.
fn pending_key(conn: &Connection, now: UnixTime) -> Result<Option<KeySchedule>, StoreError> {
    conn.prepare_cached(
        "SELECT kid, activates_at FROM signing_keys \
         WHERE activates_at > ?1 AND (retires_at IS NULL OR retires_at > ?1) \
         ORDER BY activates_at LIMIT 1",
    )
    .and_then(|mut find| {
        find.query_row([now], |row| {
            Ok(KeySchedule::Pending {
                kid: row.get(0)?,
                activates_at: row.get(1)?,
            })
        })
        .optional()
    })
    .store_err()
}

fn key_params(key: &SigningKeyRecord) -> [&dyn ToSql; 7] {
    [
        &key.kid,
        &key.alg,
        &key.private_sealed,
        &key.public_jwk,
        &key.created_at,
        &key.activates_at,
        &key.retires_at,
    ]
}
