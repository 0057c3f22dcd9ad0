//! OAuth 2.0 clients and their token policy on SQLite: the SQL; `decode.rs` reads the rows.

use async_trait::async_trait;
use khoa_core::model::Client;
use khoa_core::store::{ClientStore, StoreError};
use rusqlite::params;

use super::{Db, ResultExt, changed};
use crate::decode;

pub(super) struct SqliteClients(pub(super) Db);

#[async_trait]
impl ClientStore for SqliteClients {
    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let c = client.clone();
        let grant_types = decode::grant_types(&c);
        let redirect_uris = decode::words(&c.redirect_uris);
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO clients (client_id, name, secret_hash, allowed_scopes, \
                     default_scopes, grant_types, access_format, access_ttl, \
                     refresh_issuance, refresh_ttl, session_lifetime, reuse_window, \
                     refresh_format, otp, disabled, created_at, redirect_uris) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        c.client_id,
                        c.name,
                        c.secret_hash,
                        c.allowed_scopes.to_string(),
                        c.default_scopes.to_string(),
                        grant_types,
                        c.policy.access_format.as_str(),
                        c.policy.access_ttl,
                        c.policy.refresh.as_str(),
                        c.policy.refresh_ttl,
                        c.policy.session_lifetime,
                        c.policy.reuse_window,
                        c.policy.refresh_format.as_str(),
                        c.policy.otp,
                        c.disabled,
                        c.created_at,
                        redirect_uris,
                    ])
                })
                .on_unique("client_id")
                .map(drop)
            })
            .await
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients WHERE client_id = ?")
            .bind(client_id)
            .fetch_optional(&self.0.read)
            .await
            .store_err()?
            .map(|row| decode::client(&row))
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients ORDER BY client_id")
            .fetch_all(&self.0.read)
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
        let (client_id, hash) = (client_id.to_owned(), hash.to_owned());
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("UPDATE clients SET secret_hash = ? WHERE client_id = ?")
                    .and_then(|mut update| update.execute(params![hash, client_id]))
                    .store_err()
                    .map(changed)
            })
            .await
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let client_id = client_id.to_owned();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("DELETE FROM clients WHERE client_id = ?")
                    .and_then(|mut delete| delete.execute([client_id]))
                    .store_err()
                    .map(changed)
            })
            .await
    }
}
