//! OAuth 2.0 clients and their token policy on PostgreSQL. Policy enums are stored by their wire
//! names (`as_str`) and read back through their `FromStr`.

use async_trait::async_trait;
use khoa_core::model::{Client, GrantType, TokenPolicy};
use khoa_core::store::{ClientStore, StoreError};
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use super::{ResultExt, changed, get, parse_col, scope_col};

pub(super) struct PgClients(pub(super) PgPool);

#[async_trait]
impl ClientStore for PgClients {
    async fn create_client(&self, c: &Client) -> Result<(), StoreError> {
        let grant_types = c
            .grant_types
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(" ");
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
        .bind(c.redirect_uris.join(" "))
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
            .map(|row| client_from_row(&row))
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients ORDER BY client_id")
            .fetch_all(&self.0)
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

fn client_from_row(row: &PgRow) -> Result<Client, StoreError> {
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
