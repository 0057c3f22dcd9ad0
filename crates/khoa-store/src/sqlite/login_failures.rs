//! Failed sign-ins per username on SQLite.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{LockoutPolicy, LoginAttempt, LoginFailureStore, LoginFailures, StoreError};
use rusqlite::params;

use super::{Db, ResultExt, changed, query_one};
use crate::decode;

pub(super) struct SqliteLoginFailures(pub(super) Db);

/// One upsert reserves the attempt: unless the name is locked at `?2`, it counts the failure
/// and computes the lock. The writer runs it between other jobs, alone on the only writing
/// connection, so N concurrent reservations see each other's counts one after the other and
/// exactly `threshold` get through. In `DO UPDATE`, bare column names are the row before the
/// update; its `WHERE` leaves a locked row alone, and then nothing is returned. `?1` username,
/// `?2` now, `?3` threshold, `?4` base, `?5` max, `?6` the largest doubling: the arithmetic of
/// [`LockoutPolicy::lock_secs`].
const RESERVE: &str = "\
    INSERT INTO login_failures (username, failures, last_failure_at, locked_until) \
    VALUES (?1, 1, ?2, CASE WHEN ?3 = 1 THEN ?2 + MIN(?4, ?5) END) \
    ON CONFLICT (username) DO UPDATE SET \
        failures = CASE WHEN last_failure_at < ?2 - ?5 THEN 1 ELSE failures + 1 END, \
        locked_until = CASE \
            WHEN ?3 > 0 AND CASE WHEN last_failure_at < ?2 - ?5 THEN 1 ELSE failures + 1 END >= ?3 \
            THEN ?2 + MIN(?5, ?4 << MIN(CASE WHEN last_failure_at < ?2 - ?5 THEN 1 \
                                         ELSE failures + 1 END - ?3, ?6)) \
        END, \
        last_failure_at = ?2 \
    WHERE locked_until IS NULL OR locked_until <= ?2 \
    RETURNING username, failures, last_failure_at, locked_until";

const FIND: &str = "SELECT username, failures, last_failure_at, locked_until \
                    FROM login_failures WHERE username = ?";

#[async_trait]
impl LoginFailureStore for SqliteLoginFailures {
    async fn reserve_login_attempt(
        &self,
        username: &str,
        now: UnixTime,
        policy: &LockoutPolicy,
    ) -> Result<LoginAttempt, StoreError> {
        let (username, p) = (username.to_owned(), *policy);
        // Durable before the password is checked: a guess answered "incorrect" stays counted
        // through a crash. The look at a locked row runs in the same job, so nothing comes
        // between it and the upsert that left the row alone.
        self.0
            .writer
            .write_one(move |conn| {
                let reserved = query_one(
                    conn,
                    RESERVE,
                    params![
                        username,
                        now,
                        p.threshold,
                        p.base_secs,
                        p.max_secs,
                        LockoutPolicy::MAX_DOUBLINGS
                    ],
                    |row| decode::login_failures(row),
                )?;
                match reserved {
                    Some(state) => Ok(LoginAttempt::Reserved(state)),
                    None => query_one(conn, FIND, [&username], |row| decode::login_failures(row))?
                        .map(LoginAttempt::Locked)
                        .ok_or_else(|| StoreError::other("a locked sign-in left no row")),
                }
            })
            .await
    }

    async fn find_login_failures(
        &self,
        username: &str,
    ) -> Result<Option<LoginFailures>, StoreError> {
        let row = sqlx::query(FIND)
            .bind(username)
            .fetch_optional(&self.0.read)
            .await
            .store_err()?;
        row.map(|row| decode::login_failures(&row)).transpose()
    }

    async fn clear_login_failures(&self, username: &str) -> Result<bool, StoreError> {
        let username = username.to_owned();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("DELETE FROM login_failures WHERE username = ?")
                    .and_then(|mut delete| delete.execute([username]))
                    .store_err()
                    .map(changed)
            })
            .await
    }

    async fn purge_login_failures(
        &self,
        before: UnixTime,
        now: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM login_failures WHERE rowid IN \
                     (SELECT rowid FROM login_failures WHERE last_failure_at < ? \
                      AND COALESCE(locked_until, 0) <= ? LIMIT ?)",
                )
                .and_then(|mut delete| delete.execute(params![before, now, batch]))
                .store_err()
                .map(|n| n as u64)
            })
            .await
    }
}
