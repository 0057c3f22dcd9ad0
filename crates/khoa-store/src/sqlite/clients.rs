//! OAuth 2.0 clients and their token policy on SQLite. Policy enums are stored by their wire
//! names (`as_str`) and read back through their `FromStr`.

use async_trait::async_trait;
use khoa_core::model::{Client, GrantType, TokenPolicy};
use khoa_core::store::{ClientStore, StoreError};
use rusqlite::params;
use sqlx::sqlite::SqliteRow;

use super::{Db, ResultExt, changed, get, parse_col, scope_col};

pub(super) struct SqliteClients(pub(super) Db);

#[async_trait]
impl ClientStore for SqliteClients {
    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let c = client.clone();
        let grant_types = c
            .grant_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let redirect_uris = c.redirect_uris.join(" ");
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
            .map(|row| client_from_row(&row))
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients ORDER BY client_id")
            .fetch_all(&self.0.read)
            .await
            .store_err()?
            .iter()
            .map(client_from_row)
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

fn client_from_row(row: &SqliteRow) -> Result<Client, StoreError> {
    let grant_types = get::<String>(row, "grant_types")?
        .split(' ')
        .filter(|g| !g.is_empty())
        .map(|g| parse_col::<GrantType>("grant_types", g))
        .collect::<Result<_, _>>()?;
    Ok(Client {
        client_id: get(row, "client_id")?,
        name: get(row, "name")?,
        secret_hash: get(row, "secret_hash")?,
        allowed_scopes: scope_col(row, "allowed_scopes")?,
        default_scopes: scope_col(row, "default_scopes")?,
        grant_types,
        // Space-separated: a URI cannot contain a space (RFC 3986 §2).
        redirect_uris: get::<String>(row, "redirect_uris")?
            .split(' ')
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
        policy: TokenPolicy {
            access_format: parse_col("access_format", &get::<String>(row, "access_format")?)?,
            access_ttl: get(row, "access_ttl")?,
            refresh: parse_col("refresh_issuance", &get::<String>(row, "refresh_issuance")?)?,
            refresh_ttl: get(row, "refresh_ttl")?,
            session_lifetime: get(row, "session_lifetime")?,
            reuse_window: get(row, "reuse_window")?,
            refresh_format: parse_col("refresh_format", &get::<String>(row, "refresh_format")?)?,
            otp: get(row, "otp")?,
        },
        disabled: get(row, "disabled")?,
        created_at: get(row, "created_at")?,
    })
}
