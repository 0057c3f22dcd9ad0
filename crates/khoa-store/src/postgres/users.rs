//! Users (resource owners) on PostgreSQL.

use async_trait::async_trait;
use khoa_core::model::User;
use khoa_core::store::{NewUser, StoreError, UserStore};
use sqlx::PgPool;

use super::{ResultExt, changed};
use crate::decode;

pub(super) struct PgUsers(pub(super) PgPool);

#[async_trait]
impl UserStore for PgUsers {
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        let created = user.to_user();
        sqlx::query(
            "INSERT INTO users \
             (id, username, password_hash, disabled, allowed_scopes, created_at) \
             VALUES ($1, $2, $3, FALSE, $4, $5)",
        )
        .bind(&created.id)
        .bind(&created.username)
        .bind(&created.password_hash)
        .bind(created.allowed_scopes.as_ref().map(ToString::to_string))
        .bind(created.created_at)
        .execute(&self.0)
        .await
        .store_err()?;
        Ok(created)
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(
            "SELECT id, username, password_hash, disabled, allowed_scopes, created_at \
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.0)
        .await
        .store_err()?
        .map(|row| decode::user(&row))
        .transpose()
    }

    async fn find_user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(
            "SELECT id, username, password_hash, disabled, allowed_scopes, created_at \
             FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.0)
        .await
        .store_err()?
        .map(|row| decode::user(&row))
        .transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        sqlx::query(
            "SELECT id, username, password_hash, disabled, allowed_scopes, created_at \
             FROM users ORDER BY username",
        )
        .fetch_all(&self.0)
        .await
        .store_err()?
        .iter()
        .map(decode::user)
        .collect()
    }

    async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
            .bind(hash)
            .bind(username)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError> {
        sqlx::query("UPDATE users SET disabled = $1 WHERE username = $2")
            .bind(disabled)
            .bind(username)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }

    async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }
}
