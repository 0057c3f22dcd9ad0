//! OAuth 2.0 clients and their token policy on PostgreSQL: the SQL; `decode.rs` reads the rows.

use async_trait::async_trait;
use khoa_core::model::Client;
use khoa_core::store::{ClientStore, StoreError};
use sqlx::PgPool;

use super::{ResultExt, changed};
use crate::decode;

pub(super) struct PgClients(pub(super) PgPool);

#[async_trait]
impl ClientStore for PgClients {
    async fn create_client(&self, c: &Client) -> Result<(), StoreError> {
        let grant_types = decode::grant_types(c);
        sqlx::query(
            "INSERT INTO clients (client_id, name, secret_hash, allowed_scopes, \
             default_scopes, grant_types, access_format, access_ttl, refresh_issuance, \
             refresh_ttl, session_lifetime, reuse_window, refresh_format, otp, disabled, \
             created_at, redirect_uris) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(c.allowed_scopes.to_string())
        .bind(c.default_scopes.to_string())
        .bind(&grant_types)
        .bind(c.policy.access_format.as_str())
        .bind(c.policy.access_ttl)
        .bind(c.policy.refresh.as_str())
        .bind(c.policy.refresh_ttl)
        .bind(c.policy.session_lifetime)
        .bind(c.policy.reuse_window)
        .bind(c.policy.refresh_format.as_str())
        .bind(c.policy.otp)
        .bind(c.disabled)
        .bind(c.created_at)
        .bind(decode::words(&c.redirect_uris))
        .execute(&self.0)
        .await
        .store_err()
        .map(drop)
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.0)
            .await
            .store_err()?
            .map(|row| decode::client(&row))
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients ORDER BY client_id")
            .fetch_all(&self.0)
            .await
            .store_err()?
            .iter()
            .map(decode::client)
            .collect()
    }

    async fn set_client_secret_hash(
        &self,
        client_id: &str,
        hash: &str,
    ) -> Result<bool, StoreError> {
        sqlx::query("UPDATE clients SET secret_hash = $1 WHERE client_id = $2")
            .bind(hash)
            .bind(client_id)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }
}
