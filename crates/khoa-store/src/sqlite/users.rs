//! Users (resource owners) on SQLite.

use async_trait::async_trait;
use khoa_core::model::User;
use khoa_core::store::{NewUser, StoreError, UserStore};
use rusqlite::params;
use sqlx::sqlite::SqliteRow;

use super::{Db, ResultExt, changed, get, parse_col};

pub(super) struct SqliteUsers(pub(super) Db);

#[async_trait]
impl UserStore for SqliteUsers {
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        let created = User {
            id: user.id.clone(),
            username: user.username.clone(),
            password_hash: user.password_hash.clone(),
            disabled: false,
            allowed_scopes: user.allowed_scopes.clone(),
            created_at: user.created_at,
        };
        let row = created.clone();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO users \
                     (id, username, password_hash, disabled, allowed_scopes, created_at) \
                     VALUES (?, ?, ?, 0, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        row.id,
                        row.username,
                        row.password_hash,
                        row.allowed_scopes.as_ref().map(ToString::to_string),
                        row.created_at,
                    ])
                })
                .on_unique("username")
            })
            .await?;
        Ok(created)
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(
            "SELECT id, username, password_hash, disabled, allowed_scopes, created_at \
             FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.0.read)
        .await
        .store_err()?
        .map(|row| user_from_row(&row))
        .transpose()
    }

    async fn find_user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        sqlx::query(
            "SELECT id, username, password_hash, disabled, allowed_scopes, created_at \
             FROM users WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.0.read)
        .await
        .store_err()?
        .map(|row| user_from_row(&row))
        .transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        sqlx::query(
            "SELECT id, username, password_hash, disabled, allowed_scopes, created_at \
             FROM users ORDER BY username",
        )
        .fetch_all(&self.0.read)
        .await
        .store_err()?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool, StoreError> {
        let (username, hash) = (username.to_owned(), hash.to_owned());
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("UPDATE users SET password_hash = ? WHERE username = ?")
                    .and_then(|mut update| update.execute(params![hash, username]))
                    .store_err()
                    .map(changed)
            })
            .await
    }

    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("UPDATE users SET disabled = ? WHERE username = ?")
                    .and_then(|mut update| update.execute(params![disabled, username]))
                    .store_err()
                    .map(changed)
            })
            .await
    }

    async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("DELETE FROM users WHERE username = ?")
                    .and_then(|mut delete| delete.execute([username]))
                    .store_err()
                    .map(changed)
            })
            .await
    }
}

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    let allowed_scopes = get::<Option<String>>(row, "allowed_scopes")?
        .map(|text| parse_col("allowed_scopes", &text))
        .transpose()?;
    Ok(User {
        id: get(row, "id")?,
        username: get(row, "username")?,
        password_hash: get(row, "password_hash")?,
        disabled: get(row, "disabled")?,
        allowed_scopes,
        created_at: get(row, "created_at")?,
    })
}
