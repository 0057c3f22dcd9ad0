//! Refresh-token families, refresh tokens and opaque access tokens on SQLite.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{
    AccessRecord, AccessState, Family, Issuance, RefreshRecord, RefreshState, RevokedJwt,
    RotateOutcome, Rotation, StoreError, TokenStore,
};
use rusqlite::{Connection, params};

use super::{Db, ResultExt, changed, query_one};
use crate::decode;

pub(super) struct SqliteTokens(pub(super) Db);

#[async_trait]
impl TokenStore for SqliteTokens {
    async fn issue(&self, issuance: &Issuance) -> Result<(), StoreError> {
        let issuance = issuance.clone();
        let statements = [
            issuance.family.is_some(),
            issuance.refresh.is_some(),
            issuance.access.is_some(),
        ]
        .into_iter()
        .filter(|&insert| insert)
        .count();
        let work = move |conn: &Connection| {
            if let Some(family) = &issuance.family {
                insert_family(conn, family)?;
            }
            if let Some(refresh) = &issuance.refresh {
                insert_refresh(conn, refresh)?;
            }
            if let Some(access) = &issuance.access {
                insert_access(conn, access)?;
            }
            Ok(())
        };
        // A lone access token (client credentials), the hot case, is one statement.
        if statements <= 1 {
            self.0.writer.write_one(work).await
        } else {
            self.0.writer.write(work).await
        }
    }

    async fn find_refresh(&self, hash: &str) -> Result<Option<RefreshState>, StoreError> {
        self.0.point.read(|conn| load_refresh(conn, hash))
    }

    async fn rotate(&self, rotation: &Rotation) -> Result<RotateOutcome, StoreError> {
        let r = rotation.clone();
        self.0
            .writer
            .write(move |conn| {
                let won = conn
                    .prepare_cached(ROTATE)
                    .and_then(|mut update| {
                        update.execute(params![
                            r.used_at,
                            r.successor.hash,
                            r.successor_sealed,
                            r.old_hash,
                        ])
                    })
                    .store_err()?
                    == 1;
                if won {
                    insert_refresh(conn, &r.successor)?;
                    if let Some(access) = &r.access {
                        insert_access(conn, access)?;
                    }
                    return Ok(RotateOutcome::Rotated);
                }
                // Lost: say why, from inside the same transaction so the answer matches the
                // state that made the update miss.
                Ok(match load_refresh(conn, &r.old_hash)? {
                    None => RotateOutcome::NotFound,
                    Some(state) if state.family.revoked_at.is_some() => RotateOutcome::Revoked,
                    Some(state) => RotateOutcome::AlreadyUsed(state),
                })
            })
            .await
    }

    async fn revoke_family(&self, family_id: &str, at: UnixTime) -> Result<bool, StoreError> {
        let family_id = family_id.to_owned();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "UPDATE token_families SET revoked_at = ? \
                     WHERE id = ? AND revoked_at IS NULL",
                )
                .and_then(|mut update| update.execute(params![at, family_id]))
                .store_err()
                .map(changed)
            })
            .await
    }

    async fn find_family(&self, family_id: &str) -> Result<Option<Family>, StoreError> {
        self.0.point.read(|conn| {
            query_one(
                conn,
                "SELECT id AS family_id, client_id, subject, scope, \
                 created_at AS family_created_at, session_expires_at, revoked_at \
                 FROM token_families WHERE id = ?",
                [family_id],
                |row| decode::family(row),
            )
        })
    }

    async fn find_access(&self, hash: &str) -> Result<Option<AccessState>, StoreError> {
        self.0.point.read(|conn| {
            // LEFT JOIN: client-credentials tokens belong to no family and are never revoked.
            query_one(
                conn,
                "SELECT a.hash, a.client_id, a.subject, a.scope, a.family_id, a.issued_at, \
                 a.expires_at, a.otp_hash, f.revoked_at IS NOT NULL AS revoked \
                 FROM access_tokens a LEFT JOIN token_families f ON f.id = a.family_id \
                 WHERE a.hash = ?",
                [hash],
                |row| decode::access_state(row),
            )
        })
    }

    async fn revoke_access(&self, hash: &str) -> Result<bool, StoreError> {
        let hash = hash.to_owned();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached("DELETE FROM access_tokens WHERE hash = ?")
                    .and_then(|mut delete| delete.execute([hash]))
                    .store_err()
                    .map(changed)
            })
            .await
    }

    async fn revoke_jwt(&self, revoked: &RevokedJwt) -> Result<(), StoreError> {
        let r = revoked.clone();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO revoked_jwts (jti, expires_at, revoked_at) VALUES (?, ?, ?) \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .and_then(|mut insert| insert.execute(params![r.jti, r.expires_at, r.revoked_at]))
                .store_err()
                .map(drop)
            })
            .await
    }

    async fn revoked_jwts_since(
        &self,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Vec<RevokedJwt>, StoreError> {
        sqlx::query(
            "SELECT jti, expires_at, revoked_at FROM revoked_jwts \
             WHERE revoked_at >= ? AND expires_at > ?",
        )
        .bind(since)
        .bind(now)
        .fetch_all(&self.0.read)
        .await
        .store_err()?
        .iter()
        .map(decode::revoked_jwt)
        .collect()
    }

    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        self.0
            .writer
            .write(move |conn| {
                // Bounded deletes keep each write transaction short: a purge never holds up
                // token issuance for long, however much has piled up.
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
                    "DELETE FROM revoked_jwts WHERE rowid IN \
                     (SELECT rowid FROM revoked_jwts WHERE expires_at <= ? LIMIT ?)",
                    // A used code is kept until it expires so that a replay can still revoke
                    // what it issued (RFC 6749 §4.1.2); past expiry a replay is refused anyway.
                    "DELETE FROM authorization_codes WHERE rowid IN \
                     (SELECT rowid FROM authorization_codes WHERE expires_at <= ? LIMIT ?)",
                ] {
                    if left <= 0 {
                        break;
                    }
                    let n = conn
                        .prepare_cached(sql)
                        .and_then(|mut delete| delete.execute(params![now, left]))
                        .store_err()?;
                    deleted += n as u64;
                    left -= n as i64;
                }
                Ok(deleted)
            })
            .await
    }
}

/// Marks the old token used, if it is still unused and its family live. The condition is the
/// whole point: of N redemptions of one token only the first finds `used_at IS NULL`, here or in
/// another process (BEGIN IMMEDIATE serialises them), so a family never forks.
///
/// The family test is a correlated EXISTS, one primary-key lookup: SQLite evaluates `family_id
/// IN (SELECT id FROM token_families WHERE …)` by listing every live family, at each rotation.
const ROTATE: &str = "UPDATE refresh_tokens \
     SET used_at = ?, successor_hash = ?, successor_sealed = ? \
     WHERE hash = ? AND used_at IS NULL AND EXISTS (SELECT 1 FROM token_families f \
       WHERE f.id = refresh_tokens.family_id AND f.revoked_at IS NULL)";

pub(super) fn insert_family(conn: &Connection, f: &Family) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO token_families \
         (id, client_id, subject, scope, created_at, session_expires_at, revoked_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            f.id,
            f.client_id,
            f.subject,
            f.scope.to_string(),
            f.created_at,
            f.session_expires_at,
            f.revoked_at,
        ])
    })
    .store_err()
    .map(drop)
}

pub(super) fn insert_refresh(conn: &Connection, r: &RefreshRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (hash, family_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .and_then(|mut insert| insert.execute(params![r.hash, r.family_id, r.issued_at, r.expires_at]))
    .store_err()
    .map(drop)
}

pub(super) fn insert_access(conn: &Connection, a: &AccessRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO access_tokens \
         (hash, client_id, subject, scope, family_id, issued_at, expires_at, otp_hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            a.hash,
            a.client_id,
            a.subject,
            a.scope.to_string(),
            a.family_id,
            a.issued_at,
            a.expires_at,
            a.otp_hash,
        ])
    })
    .store_err()
    .map(drop)
}

/// A refresh token with its family, by hash; read by `find_refresh` (a point read) and by
/// `rotate` (inside the writer's transaction).
const LOAD_REFRESH: &str = "SELECT r.hash, r.issued_at, r.expires_at, r.used_at, \
     r.successor_hash, r.successor_sealed, f.id AS family_id, f.client_id, f.subject, f.scope, \
     f.created_at AS family_created_at, f.session_expires_at, f.revoked_at \
     FROM refresh_tokens r JOIN token_families f ON f.id = r.family_id \
     WHERE r.hash = ?";

fn load_refresh(conn: &Connection, hash: &str) -> Result<Option<RefreshState>, StoreError> {
    query_one(conn, LOAD_REFRESH, [hash], |row| decode::refresh_state(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotation_looks_up_one_family_instead_of_scanning_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("khoa.db");
        let url = format!("sqlite://{}", path.display());
        super::super::migrate(&url, &crate::StoreOptions::default())
            .await
            .unwrap();
        let conn = super::super::open_writer(&path, std::time::Duration::ZERO).unwrap();

        let mut explain = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {ROTATE}"))
            .unwrap();
        let plan: Vec<String> = explain
            .query_map([0, 0, 0, 0], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();

        assert!(
            plan.iter().all(|step| !step.starts_with("SCAN")),
            "{plan:?}"
        );
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH f USING INDEX")),
            "{plan:?}"
        );
    }
}
