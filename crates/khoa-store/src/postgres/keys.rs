//! Signing keys on PostgreSQL. "At most one current key" is the partial unique index
//! `signing_keys_one_current`: the first key's race is settled by it alone, rotations also
//! queue behind an advisory lock so that none of them fails.

use async_trait::async_trait;
use khoa_core::store::{KeyStore, SigningKeyRecord, StoreError};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use super::{ResultExt, changed, get, parse_col};

pub(super) struct PgKeys(pub(super) PgPool);

/// The advisory lock that queues key rotations, whichever node runs them.
const ROTATE_KEY_LOCK: i64 = 0x6b68_6f61_6b65_7973; // "khoakeys"

#[async_trait]
impl KeyStore for PgKeys {
    async fn insert_first_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        // NOT EXISTS settles the common case; it cannot see a first key that another node has
        // inserted but not yet committed. Then the insert meets that row in the partial index,
        // waits for its commit and does nothing: racing nodes never both make a current key,
        // and the loser learns it from the row count, not from an error. A taken kid is
        // still a `Conflict("kid")`: the conflict target names the partial index only.
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at, status) \
             SELECT $1, $2, $3, $4, $5, 'current' \
             WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE status = 'current') \
             ON CONFLICT (status) WHERE status = 'current' DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_sealed)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .execute(&self.0)
        .await
        .store_err()
        .map(changed)
    }

    async fn rotate_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let mut tx = self.0.begin().await.store_err()?;
        // Two rotations at once (two operators, two CLIs) must run one after the other. Row
        // locks are not enough: the second's UPDATE would wait for the first's commit, then
        // find the key it meant to demote no longer current, while its snapshot cannot see the
        // first's new key, and its insert would violate `signing_keys_one_current`. Behind
        // this lock (released at commit or rollback), each UPDATE sees the last rotation's key.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ROTATE_KEY_LOCK)
            .execute(&mut *tx)
            .await
            .store_err()?;
        sqlx::query("UPDATE signing_keys SET status = 'previous' WHERE status = 'current'")
            .execute(&mut *tx)
            .await
            .store_err()?;
        // Current whatever `key.status` says. A taken kid rolls back the demotion with it.
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_sealed, public_jwk, created_at, status) \
             VALUES ($1, $2, $3, $4, $5, 'current')",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_sealed)
        .bind(&key.public_jwk)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .store_err()?;
        tx.commit().await.store_err()
    }

    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        // seq breaks ties between keys created in the same second.
        sqlx::query(
            "SELECT kid, alg, private_sealed, public_jwk, created_at, status \
             FROM signing_keys ORDER BY created_at, seq",
        )
        .fetch_all(&self.0)
        .await
        .store_err()?
        .iter()
        .map(key_from_row)
        .collect()
    }
}

fn key_from_row(row: &PgRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: get(row, "kid")?,
        alg: get(row, "alg")?,
        private_sealed: get(row, "private_sealed")?,
        public_jwk: get(row, "public_jwk")?,
        created_at: get(row, "created_at")?,
        status: parse_col("status", &get::<String>(row, "status")?)?,
    })
}
