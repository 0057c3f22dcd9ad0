//! Refresh-token families, refresh tokens and opaque access tokens on SQLite.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{
    AccessRecord, AccessState, Family, Issuance, RefreshRecord, RefreshState, RotateOutcome,
    Rotation, StoreError, TokenStore,
};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{Executor, Sqlite};

use super::{Db, ResultExt, changed, get, scope_col};

pub(super) struct SqliteTokens(pub(super) Db);

#[async_trait]
impl TokenStore for SqliteTokens {
    async fn issue(&self, issuance: &Issuance) -> Result<(), StoreError> {
        let issuance = issuance.clone();
        self.0
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    if let Some(family) = &issuance.family {
                        insert_family(conn, family).await?;
                    }
                    if let Some(refresh) = &issuance.refresh {
                        insert_refresh(conn, refresh).await?;
                    }
                    if let Some(access) = &issuance.access {
                        insert_access(conn, access).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn find_refresh(&self, hash: &str) -> Result<Option<RefreshState>, StoreError> {
        load_refresh(&self.0.read, hash).await
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<RotateOutcome, StoreError> {
        let r = rotation.clone();
        self.0
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    // The condition is the whole point: of N redemptions of one token only the
                    // first finds `used_at IS NULL`, here or in another process (BEGIN
                    // IMMEDIATE serialises them), so a family never forks.
                    let won = sqlx::query(
                        "UPDATE refresh_tokens \
                         SET used_at = ?, successor_hash = ?, successor_sealed = ? \
                         WHERE hash = ? AND used_at IS NULL AND family_id IN \
                           (SELECT id FROM token_families WHERE revoked_at IS NULL)",
                    )
                    .bind(r.used_at)
                    .bind(&r.successor.hash)
                    .bind(&r.successor_sealed)
                    .bind(&r.old_hash)
                    .execute(&mut *conn)
                    .await
                    .store_err()?
                    .rows_affected()
                        == 1;
                    if won {
                        insert_refresh(conn, &r.successor).await?;
                        if let Some(access) = &r.access {
                            insert_access(conn, access).await?;
                        }
                        return Ok(RotateOutcome::Rotated);
                    }
                    // Lost: say why, from inside the same transaction so the answer matches
                    // the state that made the update miss.
                    Ok(match load_refresh(&mut *conn, &r.old_hash).await? {
                        None => RotateOutcome::NotFound,
                        Some(state) if state.family.revoked_at.is_some() => RotateOutcome::Revoked,
                        Some(state) => RotateOutcome::AlreadyUsed(state),
                    })
                })
            })
            .await
    }

    async fn revoke_family(&self, family_id: &str, at: UnixTime) -> Result<bool, StoreError> {
        let family_id = family_id.to_owned();
        self.0
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE token_families SET revoked_at = ? \
                         WHERE id = ? AND revoked_at IS NULL",
                    )
                    .bind(at)
                    .bind(&family_id)
                    .execute(conn)
                    .await
                    .store_err()
                    .map(changed)
                })
            })
            .await
    }

    async fn find_family(&self, family_id: &str) -> Result<Option<Family>, StoreError> {
        sqlx::query(
            "SELECT id AS family_id, client_id, subject, scope, created_at AS family_created_at, \
             session_expires_at, revoked_at FROM token_families WHERE id = ?",
        )
        .bind(family_id)
        .fetch_optional(&self.0.read)
        .await
        .store_err()?
        .map(|row| family_from_row(&row))
        .transpose()
    }

    async fn find_access(&self, hash: &str) -> Result<Option<AccessState>, StoreError> {
        // LEFT JOIN: client-credentials tokens belong to no family and are never revoked.
        let Some(row) = sqlx::query(
            "SELECT a.hash, a.client_id, a.subject, a.scope, a.family_id, a.issued_at, \
             a.expires_at, a.otp_hash, f.revoked_at IS NOT NULL AS revoked \
             FROM access_tokens a LEFT JOIN token_families f ON f.id = a.family_id \
             WHERE a.hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.0.read)
        .await
        .store_err()?
        else {
            return Ok(None);
        };
        Ok(Some(AccessState {
            record: AccessRecord {
                hash: get(&row, "hash")?,
                client_id: get(&row, "client_id")?,
                subject: get(&row, "subject")?,
                scope: scope_col(&row, "scope")?,
                family_id: get(&row, "family_id")?,
                issued_at: get(&row, "issued_at")?,
                expires_at: get(&row, "expires_at")?,
                otp_hash: get(&row, "otp_hash")?,
            },
            revoked: get(&row, "revoked")?,
        }))
    }

    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        self.0
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    // Bounded deletes keep each write transaction short: a purge never holds
                    // up token issuance for long, however much has piled up.
                    let mut left = i64::from(batch);
                    let mut deleted = 0;
                    for sql in [
                        "DELETE FROM access_tokens WHERE rowid IN \
                         (SELECT rowid FROM access_tokens WHERE expires_at <= ? LIMIT ?)",
                        "DELETE FROM refresh_tokens WHERE rowid IN \
                         (SELECT rowid FROM refresh_tokens WHERE expires_at <= ? LIMIT ?)",
                        // Cascades to what is left of the family's tokens.
                        "DELETE FROM token_families WHERE rowid IN \
                         (SELECT rowid FROM token_families WHERE session_expires_at <= ? LIMIT ?)",
                    ] {
                        if left <= 0 {
                            break;
                        }
                        let n = sqlx::query(sql)
                            .bind(now)
                            .bind(left)
                            .execute(&mut *conn)
                            .await
                            .store_err()?
                            .rows_affected();
                        deleted += n;
                        left -= n as i64;
                    }
                    Ok(deleted)
                })
            })
            .await
    }
}

async fn insert_family(conn: &mut SqliteConnection, f: &Family) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO token_families \
         (id, client_id, subject, scope, created_at, session_expires_at, revoked_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
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

async fn insert_refresh(conn: &mut SqliteConnection, r: &RefreshRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, family_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
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

async fn insert_access(conn: &mut SqliteConnection, a: &AccessRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO access_tokens \
         (hash, client_id, subject, scope, family_id, issued_at, expires_at, otp_hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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

/// Shared by `find_refresh` (on the read pool) and `rotate` (inside the writer's transaction).
async fn load_refresh<'e, E>(db: E, hash: &str) -> Result<Option<RefreshState>, StoreError>
where
    E: Executor<'e, Database = Sqlite>,
{
    let Some(row) = sqlx::query(
        "SELECT r.hash, r.issued_at, r.expires_at, r.used_at, r.successor_hash, \
         r.successor_sealed, f.id AS family_id, f.client_id, f.subject, f.scope, \
         f.created_at AS family_created_at, f.session_expires_at, f.revoked_at \
         FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
         WHERE r.hash = ?",
    )
    .bind(hash)
    .fetch_optional(db)
    .await
    .store_err()?
    else {
        return Ok(None);
    };
    Ok(Some(RefreshState {
        hash: get(&row, "hash")?,
        family: family_from_row(&row)?,
        issued_at: get(&row, "issued_at")?,
        expires_at: get(&row, "expires_at")?,
        used_at: get(&row, "used_at")?,
        successor_hash: get(&row, "successor_hash")?,
        successor_sealed: get(&row, "successor_sealed")?,
    }))
}

/// Reads a family from columns aliased as in `find_family` and `load_refresh`.
fn family_from_row(row: &SqliteRow) -> Result<Family, StoreError> {
    Ok(Family {
        id: get(row, "family_id")?,
        client_id: get(row, "client_id")?,
        subject: get(row, "subject")?,
        scope: scope_col(row, "scope")?,
        created_at: get(row, "family_created_at")?,
        session_expires_at: get(row, "session_expires_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}
