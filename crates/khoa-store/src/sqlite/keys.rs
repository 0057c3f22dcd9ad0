//! Signing keys on SQLite. "At most one current key" is enforced twice: by the conditional
//! insert below and by the partial unique index `signing_keys_one_current` behind it.

use async_trait::async_trait;
use khoa_core::store::{KeyStore, SigningKeyRecord, StoreError};
use rusqlite::{Connection, params};
use sqlx::sqlite::SqliteRow;

use super::{Db, ResultExt, changed, get, parse_col};

pub(super) struct SqliteKeys(pub(super) Db);

#[async_trait]
impl KeyStore for SqliteKeys {
    async fn insert_first_key(&self, key: &SigningKeyRecord) -> Result<bool, StoreError> {
        let key = key.clone();
        self.0
            .writer
            .write_one(move |conn| insert_key(conn, INSERT_FIRST, &key))
            .await
    }

    async fn rotate_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.0
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE signing_keys SET status = 'previous' WHERE status = 'current'",
                )
                .and_then(|mut demote| demote.execute([]))
                .store_err()?;
                insert_key(conn, INSERT_CURRENT, &key).map(drop)
            })
            .await
    }

    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        // rowid breaks ties between keys created in the same second.
        sqlx::query(
            "SELECT kid, alg, private_sealed, public_jwk, created_at, status \
             FROM signing_keys ORDER BY created_at, rowid",
        )
        .fetch_all(&self.0.read)
        .await
        .store_err()?
        .iter()
        .map(key_from_row)
        .collect()
    }
}

/// Both inserts make `key` current whatever its `status` says; they differ in their condition.
const INSERT_FIRST: &str = "INSERT INTO signing_keys \
     (kid, alg, private_sealed, public_jwk, created_at, status) \
     SELECT ?, ?, ?, ?, ?, 'current' \
     WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE status = 'current')";
const INSERT_CURRENT: &str = "INSERT INTO signing_keys \
     (kid, alg, private_sealed, public_jwk, created_at, status) \
     VALUES (?, ?, ?, ?, ?, 'current')";

/// Returns whether a row went in.
fn insert_key(
    conn: &Connection,
    sql: &'static str,
    key: &SigningKeyRecord,
) -> Result<bool, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut insert| {
            insert.execute(params![
                key.kid,
                key.alg,
                key.private_sealed,
                key.public_jwk,
                key.created_at,
            ])
        })
        .on_unique("kid")
        .map(changed)
}

fn key_from_row(row: &SqliteRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: get(row, "kid")?,
        alg: get(row, "alg")?,
        private_sealed: get(row, "private_sealed")?,
        public_jwk: get(row, "public_jwk")?,
        created_at: get(row, "created_at")?,
        status: parse_col("status", &get::<String>(row, "status")?)?,
    })
}
