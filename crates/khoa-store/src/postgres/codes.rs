//! Authorization codes on PostgreSQL: stored by hash, redeemed once, together with the tokens
//! the redemption issues.
//!
//! As for refresh rotation, READ COMMITTED is enough: the guard is one conditional `UPDATE`; a
//! second redemption blocks on the row lock of the first, re-checks `used_at IS NULL` against
//! the committed row and changes nothing.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{
    AuthCode, AuthCodeState, AuthCodeStore, Issuance, RedeemOutcome, StoreError,
};
use sqlx::PgPool;

use super::ResultExt;
use super::tokens::{insert_access, insert_family, insert_refresh};
use crate::decode::{self, Columns};

pub(super) struct PgCodes(pub(super) PgPool);

#[async_trait]
impl AuthCodeStore for PgCodes {
    async fn create_code(&self, c: &AuthCode) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO authorization_codes (hash, client_id, subject, redirect_uri, scope, \
             code_challenge, nonce, auth_time, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&c.hash)
        .bind(&c.client_id)
        .bind(&c.subject)
        .bind(&c.redirect_uri)
        .bind(c.scope.to_string())
        .bind(&c.code_challenge)
        .bind(&c.nonce)
        .bind(c.auth_time)
        .bind(c.issued_at)
        .bind(c.expires_at)
        .execute(&self.0)
        .await
        .store_err()
        .map(drop)
    }

    async fn find_code(&self, hash: &str) -> Result<Option<AuthCodeState>, StoreError> {
        sqlx::query("SELECT * FROM authorization_codes WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.0)
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
        let family = issuance
            .family
            .as_ref()
            .ok_or_else(|| StoreError::other("a code redemption needs a family"))?;
        let mut tx = self.0.begin().await.store_err()?;
        let won = sqlx::query(
            "UPDATE authorization_codes SET used_at = $1, family_id = $2 \
             WHERE hash = $3 AND used_at IS NULL RETURNING hash",
        )
        .bind(used_at)
        .bind(&family.id)
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await
        .store_err()?
        .is_some();
        let outcome = if won {
            insert_family(&mut tx, family).await?;
            if let Some(refresh) = &issuance.refresh {
                insert_refresh(&mut tx, refresh).await?;
            }
            if let Some(access) = &issuance.access {
                insert_access(&mut tx, access).await?;
            }
            RedeemOutcome::Redeemed
        } else {
            // A fresh snapshot (READ COMMITTED) that includes the winner's commit, so a loser
            // always learns the family it must revoke.
            let row = sqlx::query("SELECT family_id FROM authorization_codes WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&mut *tx)
                .await
                .store_err()?;
            match row {
                None => RedeemOutcome::NotFound,
                Some(row) => RedeemOutcome::AlreadyUsed {
                    family_id: row.get("family_id")?,
                },
            }
        };
        tx.commit().await.store_err()?;
        Ok(outcome)
    }
}
