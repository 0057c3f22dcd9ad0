//! Clients' signature keys (public keys, sealed HMAC secrets) and the signatures already accepted, on SQLite.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{ClientKey, ClientKeyStore, StoreError};
use rusqlite::params;

use super::{Db, ResultExt, changed, query_all};
use crate::decode;

pub(super) struct SqliteClientKeys(pub(super) Db);

#[async_trait]
impl ClientKeyStore for SqliteClientKeys {
    async fn add_client_key(&self, key: &ClientKey) -> Result<(), StoreError> {
        let k = key.clone();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO client_keys (client_id, kid, alg, public_key, created_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![k.client_id, k.kid, k.alg, k.material, k.created_at])
                })
                .on_unique("client_key")
                .map(drop)
            })
            .await
    }

    async fn client_keys(&self, client_id: &str) -> Result<Vec<ClientKey>, StoreError> {
        // On the path of every signed request: a point read (see `point.rs`).
        self.0.point.read(|conn| {
            query_all(
                conn,
                "SELECT client_id, kid, alg, public_key, created_at FROM client_keys \
                 WHERE client_id = ? ORDER BY created_at DESC, rowid DESC",
                [client_id],
                |row| decode::client_key(row),
            )
        })
    }

    async fn delete_client_key(&self, client_id: &str, kid: &str) -> Result<bool, StoreError> {
        let (client_id, kid) = (client_id.to_owned(), kid.to_owned());
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("DELETE FROM client_keys WHERE client_id = ? AND kid = ?")
                    .and_then(|mut delete| delete.execute([client_id, kid]))
                    .store_err()
                    .map(changed)
            })
            .await
    }

    async fn use_signature(
        &self,
        digest: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let digest = digest.to_owned();
        // Durable before the answer: a replay after a crash must still be refused.
        self.0
            .writer
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM used_signatures WHERE expires_at <= ?")
                    .and_then(|mut delete| delete.execute([now]))
                    .store_err()?;
                conn.prepare_cached(
                    "INSERT INTO used_signatures (digest, expires_at) VALUES (?, ?) \
                     ON CONFLICT (digest) DO NOTHING",
                )
                .and_then(|mut insert| insert.execute(params![digest, expires_at]))
                .store_err()
                .map(changed)
            })
            .await
    }
}
