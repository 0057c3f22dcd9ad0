//! Refresh-token families, refresh tokens and opaque access tokens on PostgreSQL.
//!
//! Every statement runs at PostgreSQL's default READ COMMITTED isolation. That is enough for
//! `rotate` because its guard is a single conditional `UPDATE`: a second redemption blocks on
//! the row lock of the first and, once that commits, re-checks its `WHERE` against the new row
//! version, finds `used_at` set and changes nothing.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{
    AccessRecord, AccessState, Family, Issuance, RefreshRecord, RefreshState, RevokedJwt,
    RotateOutcome, Rotation, StoreError, TokenStore,
};
use sqlx::postgres::PgConnection;
use sqlx::{Executor, PgPool, Postgres};

use super::{ResultExt, changed};
use crate::decode;

pub(super) struct PgTokens(pub(super) PgPool);

#[async_trait]
impl TokenStore for PgTokens {
    async fn issue(&self, issuance: &Issuance) -> Result<(), StoreError> {
        let mut tx = self.0.begin().await.store_err()?;
        if let Some(family) = &issuance.family {
            insert_family(&mut tx, family).await?;
        }
        if let Some(refresh) = &issuance.refresh {
            insert_refresh(&mut tx, refresh).await?;
        }
        if let Some(access) = &issuance.access {
            insert_access(&mut tx, access).await?;
        }
        tx.commit().await.store_err()
    }

    async fn find_refresh(&self, hash: &str) -> Result<Option<RefreshState>, StoreError> {
        load_refresh(&self.0, hash).await
    }

    async fn rotate(&self, r: &Rotation) -> Result<RotateOutcome, StoreError> {
        let mut tx = self.0.begin().await.store_err()?;
        // The condition is the whole point: of N redemptions of one token, on any number of
        // nodes, only the first finds `used_at IS NULL`; the others wait for its row lock and
        // then miss (see the module comment), so a family never forks.
        let won = sqlx::query(
            "UPDATE refresh_tokens \
             SET used_at = $1, successor_hash = $2, successor_sealed = $3 \
             WHERE hash = $4 AND used_at IS NULL AND EXISTS (SELECT 1 FROM token_families f \
               WHERE f.id = refresh_tokens.family_id AND f.revoked_at IS NULL)",
        )
        .bind(r.used_at)
        .bind(&r.successor.hash)
        .bind(&r.successor_sealed)
        .bind(&r.old_hash)
        .execute(&mut *tx)
        .await
        .store_err()?
        .rows_affected()
            == 1;
        let outcome = if won {
            insert_refresh(&mut tx, &r.successor).await?;
            if let Some(access) = &r.access {
                insert_access(&mut tx, access).await?;
            }
            RotateOutcome::Rotated
        } else {
            // Lost: say why, from inside the same transaction. This statement takes a fresh
            // snapshot (READ COMMITTED), which includes the winner's commit that made the update
            // miss, so a loser always sees the successor it lost to.
            match load_refresh(&mut *tx, &r.old_hash).await? {
                None => RotateOutcome::NotFound,
                Some(state) if state.family.revoked_at.is_some() => RotateOutcome::Revoked,
                Some(state) => RotateOutcome::AlreadyUsed(state),
            }
        };
        tx.commit().await.store_err()?;
        Ok(outcome)
    }

    async fn revoke_family(&self, family_id: &str, at: UnixTime) -> Result<bool, StoreError> {
        sqlx::query(
            "UPDATE token_families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(family_id)
        .execute(&self.0)
        .await
        .store_err()
        .map(changed)
    }

    async fn find_family(&self, family_id: &str) -> Result<Option<Family>, StoreError> {
        sqlx::query(
            "SELECT id AS family_id, client_id, subject, scope, created_at AS family_created_at, \
             session_expires_at, revoked_at FROM token_families WHERE id = $1",
        )
        .bind(family_id)
        .fetch_optional(&self.0)
        .await
        .store_err()?
        .map(|row| decode::family(&row))
        .transpose()
    }

    async fn find_access(&self, hash: &str) -> Result<Option<AccessState>, StoreError> {
        // LEFT JOIN: client-credentials tokens belong to no family and are never revoked.
        sqlx::query(
            "SELECT a.hash, a.client_id, a.subject, a.scope, a.family_id, a.issued_at, \
             a.expires_at, a.otp_hash, f.revoked_at IS NOT NULL AS revoked \
             FROM access_tokens a LEFT JOIN token_families f ON f.id = a.family_id \
             WHERE a.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.0)
        .await
        .store_err()?
        .map(|row| decode::access_state(&row))
        .transpose()
    }

    async fn revoke_access(&self, hash: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM access_tokens WHERE hash = $1")
            .bind(hash)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }

    async fn revoke_jwt(&self, revoked: &RevokedJwt) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_jwts (jti, expires_at, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(&revoked.jti)
        .bind(revoked.expires_at)
        .bind(revoked.revoked_at)
        .execute(&self.0)
        .await
        .store_err()
        .map(drop)
    }

    async fn revoked_jwts_since(
        &self,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Vec<RevokedJwt>, StoreError> {
        sqlx::query(
            "SELECT jti, expires_at, revoked_at FROM revoked_jwts \
             WHERE revoked_at >= $1 AND expires_at > $2",
        )
        .bind(since)
        .bind(now)
        .fetch_all(&self.0)
        .await
        .store_err()?
        .iter()
        .map(decode::revoked_jwt)
        .collect()
    }

    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        // Every node runs this. Each statement picks at most `left` rows through its expiry
        // index and deletes them by primary key; SKIP LOCKED makes nodes purging at the same
        // moment take disjoint rows instead of queueing behind each other, and leaves alone a
        // row that a request is using right now (the next round gets it). Only row locks, and
        // few of them: issuance and rotation go on meanwhile.
        let mut tx = self.0.begin().await.store_err()?;
        let mut left = i64::from(batch);
        let mut deleted = 0;
        for sql in [
            "DELETE FROM access_tokens WHERE hash IN (SELECT hash FROM access_tokens \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM refresh_tokens WHERE hash IN (SELECT hash FROM refresh_tokens \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            // Cascades to what is left of the family's tokens (through their family_id indexes).
            "DELETE FROM token_families WHERE id IN (SELECT id FROM token_families \
             WHERE session_expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            "DELETE FROM revoked_jwts WHERE jti IN (SELECT jti FROM revoked_jwts \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
            // Used codes stay until they expire so that a replay can still revoke what they
            // issued (RFC 6749 §4.1.2).
            "DELETE FROM authorization_codes WHERE hash IN (SELECT hash FROM \
             authorization_codes WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ] {
            if left <= 0 {
                break;
            }
            let n = sqlx::query(sql)
                .bind(now)
                .bind(left)
                .execute(&mut *tx)
                .await
                .store_err()?
                .rows_affected();
            deleted += n;
            left -= n as i64;
        }
        tx.commit().await.store_err()?;
        Ok(deleted)
    }
}

pub(super) async fn insert_family(conn: &mut PgConnection, f: &Family) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO token_families \
         (id, client_id, subject, scope, created_at, session_expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&f.id)
    .bind(&f.client_id)
    .bind(&f.subject)
    .bind(f.scope.to_string())
    .bind(f.created_at)
    .bind(f.session_expires_at)
    .bind(f.revoked_at)
    .execute(conn)
    .await
    .store_err()
    .map(drop)
}

pub(super) async fn insert_refresh(
    conn: &mut PgConnection,
    r: &RefreshRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, family_id, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&r.hash)
    .bind(&r.family_id)
    .bind(r.issued_at)
    .bind(r.expires_at)
    .execute(conn)
    .await
    .store_err()
    .map(drop)
}

pub(super) async fn insert_access(
    conn: &mut PgConnection,
    a: &AccessRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO access_tokens \
         (hash, client_id, subject, scope, family_id, issued_at, expires_at, otp_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&a.hash)
    .bind(&a.client_id)
    .bind(&a.subject)
    .bind(a.scope.to_string())
    .bind(&a.family_id)
    .bind(a.issued_at)
    .bind(a.expires_at)
    .bind(&a.otp_hash)
    .execute(conn)
    .await
    .store_err()
    .map(drop)
}

/// Shared by `find_refresh` (on the pool) and `rotate` (inside its transaction).
async fn load_refresh<'e, E>(db: E, hash: &str) -> Result<Option<RefreshState>, StoreError>
where
    E: Executor<'e, Database = Postgres>,
{
    let Some(row) = sqlx::query(
        "SELECT r.hash, r.issued_at, r.expires_at, r.used_at, r.successor_hash, \
         r.successor_sealed, f.id AS family_id, f.client_id, f.subject, f.scope, \
         f.created_at AS family_created_at, f.session_expires_at, f.revoked_at \
         FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
         WHERE r.hash = $1",
    )
    .bind(hash)
    .fetch_optional(db)
    .await
    .store_err()?
    else {
        return Ok(None);
    };
    decode::refresh_state(&row).map(Some)
}
