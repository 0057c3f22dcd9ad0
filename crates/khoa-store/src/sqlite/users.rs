//! Users (resource owners) on SQLite.

use async_trait::async_trait;
use khoa_core::model::User;
use khoa_core::store::{NewUser, StoreError, UserStore};
use rusqlite::{Connection, params};

use super::{Db, ResultExt, changed, query_all, query_one};
use crate::decode;

pub(super) struct SqliteUsers(pub(super) Db);

#[async_trait]
impl UserStore for SqliteUsers {
    async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        let created = user.to_user();
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
        self.0
            .point
            .read(|conn| find_user(conn, "username", username))
    }

    async fn find_user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.0.point.read(|conn| find_user(conn, "id", id))
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        // A scan, unlike the lookups: off the runtime.
        let point = self.0.point.clone();
        tokio::task::spawn_blocking(move || {
            point.read(|conn| {
                query_all(
                    conn,
                    &format!("{SELECT_USER} ORDER BY username"),
                    [],
                    |row| decode::user(row),
                )
            })
        })
        .await
        .map_err(|e| StoreError::caused("listing users", e))?
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

const SELECT_USER: &str =
    "SELECT id, username, password_hash, disabled, allowed_scopes, created_at FROM users";

/// The user whose `column` (`id` or `username`, both unique) is `value`.
fn find_user(conn: &Connection, column: &str, value: &str) -> Result<Option<User>, StoreError> {
    query_one(
        conn,
        &format!("{SELECT_USER} WHERE {column} = ?"),
        [value],
        |row| decode::user(row),
    )
}
