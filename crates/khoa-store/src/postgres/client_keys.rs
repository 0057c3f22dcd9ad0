//! Clients' signature keys (public keys, sealed HMAC secrets) and the signatures already accepted, on PostgreSQL.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{ClientKey, ClientKeyStore, StoreError};
use sqlx::PgPool;

use super::{ResultExt, changed};
use crate::decode;

pub(super) struct PgClientKeys(pub(super) PgPool);

#[async_trait]
impl ClientKeyStore for PgClientKeys {
    async fn add_client_key(&self, k: &ClientKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO client_keys (client_id, kid, alg, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&k.client_id)
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.material)
        .bind(k.created_at)
        .execute(&self.0)
        .await
        .store_err()
        .map(drop)
    }

    async fn client_keys(&self, client_id: &str) -> Result<Vec<ClientKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT client_id, kid, alg, public_key, created_at FROM client_keys \
             WHERE client_id = $1 ORDER BY created_at DESC, seq DESC",
        )
        .bind(client_id)
        .fetch_all(&self.0)
        .await
        .store_err()?;
        rows.iter().map(decode::client_key).collect()
    }

    async fn delete_client_key(&self, client_id: &str, kid: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM client_keys WHERE client_id = $1 AND kid = $2")
            .bind(client_id)
            .bind(kid)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }

    async fn use_signature(
        &self,
        digest: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM used_signatures WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.0)
            .await
            .store_err()?;
        // One statement: of two nodes inserting the same digest, exactly one inserts a row.
        sqlx::query(
            "INSERT INTO used_signatures (digest, expires_at) VALUES ($1, $2) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(expires_at)
        .execute(&self.0)
        .await
        .store_err()
        .map(changed)
    }
}
