//! Failed sign-ins per username on PostgreSQL.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{LockoutPolicy, LoginAttempt, LoginFailureStore, LoginFailures, StoreError};
use sqlx::PgPool;

use super::{ResultExt, changed};
use crate::decode;

pub(super) struct PgLoginFailures(pub(super) PgPool);

/// One upsert reserves the attempt: unless the name is locked at `$2`, it counts the failure
/// and computes the lock. `ON CONFLICT DO UPDATE` locks the row, so N concurrent reservations
/// on any number of nodes take turns on it and each sees the count the one before left:
/// exactly `threshold` get through. `f.` is the row before the update; the `WHERE` leaves a
/// locked row alone (still row-locked, not updated) and then nothing is returned. `$1`
/// username, `$2` now, `$3` threshold, `$4` base, `$5` max, `$6` the largest doubling: the
/// arithmetic of [`LockoutPolicy::lock_secs`].
const RESERVE: &str = "\
    INSERT INTO login_failures AS f (username, failures, last_failure_at, locked_until) \
    VALUES ($1, 1, $2, CASE WHEN $3 = 1 THEN $2 + LEAST($4, $5) END) \
    ON CONFLICT (username) DO UPDATE SET \
        failures = CASE WHEN f.last_failure_at < $2 - $5 THEN 1 ELSE f.failures + 1 END, \
        locked_until = CASE \
            WHEN $3 > 0 AND CASE WHEN f.last_failure_at < $2 - $5 THEN 1 \
                                 ELSE f.failures + 1 END >= $3 \
            THEN $2 + LEAST($5, $4 << LEAST(CASE WHEN f.last_failure_at < $2 - $5 THEN 1 \
                                                 ELSE f.failures + 1 END - $3, $6)) \
        END, \
        last_failure_at = $2 \
    WHERE f.locked_until IS NULL OR f.locked_until <= $2 \
    RETURNING username, failures, last_failure_at, locked_until";

const FIND: &str = "SELECT username, failures, last_failure_at, locked_until \
                    FROM login_failures WHERE username = $1";

/// Rounds of reserve-then-look before giving up. A round fails only when the locked row the
/// upsert saw is gone or unlocked by the time it is read (a success or `khoa user unlock` in
/// between): then the reservation is tried again, as it should be.
const RESERVE_ROUNDS: usize = 4;

#[async_trait]
impl LoginFailureStore for PgLoginFailures {
    async fn reserve_login_attempt(
        &self,
        username: &str,
        now: UnixTime,
        policy: &LockoutPolicy,
    ) -> Result<LoginAttempt, StoreError> {
        for _ in 0..RESERVE_ROUNDS {
            let reserved = sqlx::query(RESERVE)
                .bind(username)
                .bind(now)
                .bind(i32::try_from(policy.threshold).unwrap_or(i32::MAX))
                .bind(policy.base_secs)
                .bind(policy.max_secs)
                .bind(LockoutPolicy::MAX_DOUBLINGS as i32)
                .fetch_optional(&self.0)
                .await
                .store_err()?;
            if let Some(row) = reserved {
                return Ok(LoginAttempt::Reserved(decode::login_failures(&row)?));
            }
            // Locked when the upsert looked; a second statement reads by how long.
            if let Some(locked) = self.find_login_failures(username).await?
                && locked.locked_at(now)
            {
                return Ok(LoginAttempt::Locked(locked));
            }
        }
        Err(StoreError::other(format!(
            "the sign-in failures of a name changed under {RESERVE_ROUNDS} reservations"
        )))
    }

    async fn find_login_failures(
        &self,
        username: &str,
    ) -> Result<Option<LoginFailures>, StoreError> {
        sqlx::query(FIND)
            .bind(username)
            .fetch_optional(&self.0)
            .await
            .store_err()?
            .map(|row| decode::login_failures(&row))
            .transpose()
    }

    async fn clear_login_failures(&self, username: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE username = $1")
            .bind(username)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }

    async fn purge_login_failures(
        &self,
        before: UnixTime,
        now: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        // SKIP LOCKED: nodes purging together take disjoint rows, and a row a failing sign-in
        // is updating right now is left for the next round.
        sqlx::query(
            "DELETE FROM login_failures WHERE username IN (SELECT username FROM login_failures \
             WHERE last_failure_at < $1 AND COALESCE(locked_until, 0) <= $2 \
             LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before)
        .bind(now)
        .bind(i64::from(batch))
        .execute(&self.0)
        .await
        .store_err()
        .map(|r| r.rows_affected())
    }
}
