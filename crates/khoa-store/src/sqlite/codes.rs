//! Authorization codes on SQLite: stored by hash, redeemed once, together with the tokens the
//! redemption issues.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{
    AuthCode, AuthCodeState, AuthCodeStore, Issuance, RedeemOutcome, StoreError,
};
use rusqlite::{OptionalExtension, params};

use super::tokens::{insert_access, insert_family, insert_refresh};
use super::{Db, ResultExt};
use crate::decode;

pub(super) struct SqliteCodes(pub(super) Db);

#[async_trait]
impl AuthCodeStore for SqliteCodes {
    async fn create_code(&self, code: &AuthCode) -> Result<(), StoreError> {
        let c = code.clone();
        self.0
            .writer
            .write_one(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO authorization_codes (hash, client_id, subject, redirect_uri, \
                     scope, code_challenge, nonce, auth_time, issued_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        c.hash,
                        c.client_id,
                        c.subject,
                        c.redirect_uri,
                        c.scope.to_string(),
                        c.code_challenge,
                        c.nonce,
                        c.auth_time,
                        c.issued_at,
                        c.expires_at,
                    ])
                })
                .on_unique("code")
                .map(drop)
            })
            .await
    }

    async fn find_code(&self, hash: &str) -> Result<Option<AuthCodeState>, StoreError> {
        sqlx::query("SELECT * FROM authorization_codes WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.0.read)
            .await
            .store_err()?
            .map(|row| decode::code_state(&row))
            .transpose()
    }

    async fn redeem_code(
        &self,
        hash: &str,
        used_at: UnixTime,
        issuance: &Issuance,
    ) -> Result<RedeemOutcome, StoreError> {
        let (hash, issuance) = (hash.to_owned(), issuance.clone());
        let family = issuance
            .family
            .clone()
            .ok_or_else(|| StoreError::other("a code redemption needs a family"))?;
        // One job, so one savepoint: the mark and the tokens commit together or not at all.
        self.0
            .writer
            .write(move |conn| {
                // The condition is the whole point: of N redemptions only the first finds
                // `used_at IS NULL` (the writer runs jobs one at a time, and BEGIN IMMEDIATE
                // serialises them with other processes).
                let won = conn
                    .prepare_cached(
                        "UPDATE authorization_codes SET used_at = ?, family_id = ? \
                         WHERE hash = ? AND used_at IS NULL",
                    )
                    .and_then(|mut update| update.execute(params![used_at, family.id, hash]))
                    .store_err()?
                    == 1;
                if won {
                    insert_family(conn, &family)?;
                    if let Some(refresh) = &issuance.refresh {
                        insert_refresh(conn, refresh)?;
                    }
                    if let Some(access) = &issuance.access {
                        insert_access(conn, access)?;
                    }
                    return Ok(RedeemOutcome::Redeemed);
                }
                let used: Option<Option<String>> = conn
                    .prepare_cached("SELECT family_id FROM authorization_codes WHERE hash = ?")
                    .and_then(|mut select| select.query_row([&hash], |row| row.get(0)).optional())
                    .store_err()?;
                Ok(match used {
                    None => RedeemOutcome::NotFound,
                    Some(family_id) => RedeemOutcome::AlreadyUsed { family_id },
                })
            })
            .await
    }
}
