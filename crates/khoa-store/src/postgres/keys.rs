//! Signing keys on PostgreSQL. Several nodes and CLIs share the table, so every change runs
//! behind one advisory lock: a statement that starts after the lock is granted sees whatever
//! the previous holder committed, which the conditions below (no published key yet, no
//! pending key) rely on.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{IfKeyPending, KeySchedule, KeyStore, SigningKeyRecord, StoreError};
use sqlx::{PgPool, Postgres, Transaction};

use super::{ResultExt, changed};
use crate::decode;

pub(super) struct PgKeys(pub(super) PgPool);

/// The advisory lock that queues changes to the signing keys, whichever node makes them.
const KEYS_LOCK: i64 = 0x6b68_6f61_6b65_7973; // "khoakeys"

impl PgKeys {
    /// A transaction holding [`KEYS_LOCK`] (released at commit or rollback). Row locks would
    /// not do: a first key, or a pending one, is a row the other transaction cannot see yet.
    async fn locked(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.0.begin().await.store_err()?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(KEYS_LOCK)
            .execute(&mut *tx)
            .await
            .store_err()?;
        Ok(tx)
    }
}

const INSERT: &str = "INSERT INTO signing_keys \
     (kid, alg, private_sealed, public_jwk, created_at, activates_at, retires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

#[async_trait]
impl KeyStore for PgKeys {
    async fn insert_first_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        let mut tx = self.locked().await?;
        // Behind the lock, so a first key another node inserted is committed and visible.
        let published: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM signing_keys \
                            WHERE retires_at IS NULL OR retires_at > $1)",
        )
        .bind(key.activates_at)
        .fetch_one(&mut *tx)
        .await
        .store_err()?;
        if published {
            return Ok(false);
        }
        let inserted = bind(sqlx::query(INSERT), key)
            .execute(&mut *tx)
            .await
            .store_err()
            .map(changed)?;
        tx.commit().await.store_err()?;
        Ok(inserted)
    }

    async fn schedule_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: UnixTime,
        now: UnixTime,
        if_pending: IfKeyPending,
    ) -> Result<KeySchedule, StoreError> {
        let mut tx = self.locked().await?;
        if if_pending == IfKeyPending::Refuse {
            let pending: Option<(String, i64)> = sqlx::query_as(
                "SELECT kid, activates_at FROM signing_keys \
                 WHERE activates_at > $1 AND (retires_at IS NULL OR retires_at > $1) \
                 ORDER BY activates_at LIMIT 1",
            )
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .store_err()?;
            if let Some((kid, activates_at)) = pending {
                return Ok(KeySchedule::Pending { kid, activates_at });
            }
        }
        // Only ever brought forward: a key already due to retire earlier keeps its date.
        sqlx::query(
            "UPDATE signing_keys SET retires_at = $1 \
             WHERE retires_at IS NULL OR retires_at > $1",
        )
        .bind(retire_others_at)
        .execute(&mut *tx)
        .await
        .store_err()?;
        // A taken kid rolls back the retirements with it.
        bind(sqlx::query(INSERT), key)
            .execute(&mut *tx)
            .await
            .store_err()?;
        tx.commit().await.store_err()?;
        Ok(KeySchedule::Scheduled)
    }

    async fn delete_retired_keys(&self, before: UnixTime) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM signing_keys WHERE retires_at <= $1")
            .bind(before)
            .execute(&self.0)
            .await
            .store_err()
            .map(|r| r.rows_affected())
    }

    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        // seq breaks ties between keys activating in the same second.
        sqlx::query(
            "SELECT kid, alg, private_sealed, public_jwk, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY activates_at, seq",
        )
        .fetch_all(&self.0)
        .await
        .store_err()?
        .iter()
        .map(decode::signing_key)
        .collect()
    }
}

fn bind<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    key: &'q SigningKeyRecord,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_sealed)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .bind(key.activates_at)
        .bind(key.retires_at)
}
