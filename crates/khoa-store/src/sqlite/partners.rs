//! Partners of the encrypted dialect and their AES keys (sealed) on SQLite.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{Partner, PartnerKey, PartnerStore, StoreError};
use rusqlite::{Connection, params};

use super::{Db, ResultExt, changed, query_all, query_one};
use crate::decode;

pub(super) struct SqlitePartners(pub(super) Db);

#[async_trait]
impl PartnerStore for SqlitePartners {
    async fn create_partner(&self, partner: &Partner) -> Result<(), StoreError> {
        let p = partner.clone();
        self.0
            .writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO partners (code, name, client_id, created_at) VALUES (?, ?, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![p.code, p.name, p.client_id, p.created_at])
                })
                .on_unique("partner_code")?;
                for k in &p.keys {
                    insert_key(conn, &p.code, k)?;
                }
                Ok(())
            })
            .await
    }

    async fn find_partner(&self, code: &str) -> Result<Option<Partner>, StoreError> {
        // On the hot path of every encrypted request: a point read (see `point.rs`).
        self.0.point.read(|conn| {
            query_one(
                conn,
                "SELECT code, name, client_id, created_at FROM partners WHERE code = ?",
                [code],
                |row| with_keys(conn, row),
            )
        })
    }

    async fn list_partners(&self) -> Result<Vec<Partner>, StoreError> {
        let point = self.0.point.clone();
        tokio::task::spawn_blocking(move || {
            point.read(|conn| {
                query_all(
                    conn,
                    "SELECT code, name, client_id, created_at FROM partners ORDER BY code",
                    [],
                    |row| with_keys(conn, row),
                )
            })
        })
        .await
        .map_err(|e| StoreError::caused("listing partners", e))?
    }

    async fn add_partner_key(
        &self,
        code: &str,
        key: &PartnerKey,
        old_keys_expire_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let (code, key) = (code.to_owned(), key.clone());
        self.0
            .writer
            .write(move |conn| {
                let exists = conn
                    .prepare_cached("SELECT 1 FROM partners WHERE code = ?")
                    .and_then(|mut select| select.exists([&code]))
                    .store_err()?;
                if !exists {
                    return Ok(false);
                }
                conn.prepare_cached(
                    "UPDATE partner_keys SET expires_at = ? \
                     WHERE partner_code = ? AND expires_at IS NULL",
                )
                .and_then(|mut update| update.execute(params![old_keys_expire_at, code]))
                .store_err()?;
                insert_key(conn, &code, &key)?;
                Ok(true)
            })
            .await
    }

    async fn delete_partner(&self, code: &str) -> Result<bool, StoreError> {
        let code = code.to_owned();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("DELETE FROM partners WHERE code = ?")
                    .and_then(|mut delete| delete.execute([code]))
                    .store_err()
                    .map(changed)
            })
            .await
    }
}

/// A partner from its row, with its keys newest first.
fn with_keys(conn: &Connection, row: &rusqlite::Row<'_>) -> Result<Partner, StoreError> {
    let mut partner = decode::partner(row)?;
    // rowid breaks ties between keys created in the same second: newest first.
    partner.keys = query_all(
        conn,
        "SELECT key_id, sealed, created_at, expires_at FROM partner_keys \
         WHERE partner_code = ? ORDER BY created_at DESC, rowid DESC",
        [&partner.code],
        |k| decode::partner_key(k, "created_at"),
    )?;
    Ok(partner)
}

fn insert_key(conn: &Connection, code: &str, k: &PartnerKey) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO partner_keys (key_id, partner_code, sealed, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            k.key_id,
            code,
            k.sealed,
            k.created_at,
            k.expires_at
        ])
    })
    .on_unique("key_id")
    .map(drop)
}
