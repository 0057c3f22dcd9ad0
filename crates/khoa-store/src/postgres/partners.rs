//! Partners of the encrypted dialect and their AES keys (sealed) on PostgreSQL.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{Partner, PartnerKey, PartnerStore, StoreError};
use sqlx::PgPool;
use sqlx::postgres::{PgConnection, PgRow};

use super::{ResultExt, changed};
use crate::decode::{self, Columns};

pub(super) struct PgPartners(pub(super) PgPool);

/// A partner with its keys, newest first (seq breaks ties within a second), one row per key;
/// the LEFT JOIN keeps a partner whose keys are all gone. Callers add a `WHERE` and `ORDER BY
/// p.code` first, so that each partner's rows are adjacent for `partners_from_rows`.
macro_rules! select_partners {
    ($where:literal) => {
        concat!(
            "SELECT p.code, p.name, p.client_id, p.created_at, k.key_id, k.sealed, \
             k.created_at AS key_created_at, k.expires_at \
             FROM partners p LEFT JOIN partner_keys k ON k.partner_code = p.code ",
            $where,
            " ORDER BY p.code, k.created_at DESC, k.seq DESC"
        )
    };
}

#[async_trait]
impl PartnerStore for PgPartners {
    async fn create_partner(&self, p: &Partner) -> Result<(), StoreError> {
        let mut tx = self.0.begin().await.store_err()?;
        sqlx::query(
            "INSERT INTO partners (code, name, client_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&p.code)
        .bind(&p.name)
        .bind(&p.client_id)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await
        .store_err()?;
        for k in &p.keys {
            insert_key(&mut tx, &p.code, k).await?;
        }
        tx.commit().await.store_err()
    }

    async fn find_partner(&self, code: &str) -> Result<Option<Partner>, StoreError> {
        let rows = sqlx::query(select_partners!("WHERE p.code = $1"))
            .bind(code)
            .fetch_all(&self.0)
            .await
            .store_err()?;
        Ok(partners_from_rows(&rows)?.pop())
    }

    async fn list_partners(&self) -> Result<Vec<Partner>, StoreError> {
        let rows = sqlx::query(select_partners!(""))
            .fetch_all(&self.0)
            .await
            .store_err()?;
        partners_from_rows(&rows)
    }

    async fn add_partner_key(
        &self,
        code: &str,
        key: &PartnerKey,
        old_keys_expire_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.0.begin().await.store_err()?;
        // FOR UPDATE queues concurrent rotations of one partner (from two nodes' admin calls):
        // the second then ends the key the first added, and the partner keeps one current key.
        let exists = sqlx::query("SELECT 1 FROM partners WHERE code = $1 FOR UPDATE")
            .bind(code)
            .fetch_optional(&mut *tx)
            .await
            .store_err()?
            .is_some();
        if !exists {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE partner_keys SET expires_at = $1 \
             WHERE partner_code = $2 AND expires_at IS NULL",
        )
        .bind(old_keys_expire_at)
        .bind(code)
        .execute(&mut *tx)
        .await
        .store_err()?;
        insert_key(&mut tx, code, key).await?;
        tx.commit().await.store_err()?;
        Ok(true)
    }

    async fn delete_partner(&self, code: &str) -> Result<bool, StoreError> {
        // Its keys go by ON DELETE CASCADE.
        sqlx::query("DELETE FROM partners WHERE code = $1")
            .bind(code)
            .execute(&self.0)
            .await
            .store_err()
            .map(changed)
    }
}

async fn insert_key(conn: &mut PgConnection, code: &str, k: &PartnerKey) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO partner_keys (key_id, partner_code, sealed, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&k.key_id)
    .bind(code)
    .bind(&k.sealed)
    .bind(k.created_at)
    .bind(k.expires_at)
    .execute(conn)
    .await
    .store_err()
    .map(drop)
}

/// Folds the rows of `select_partners!` (adjacent per partner) into partners with their keys.
fn partners_from_rows(rows: &[PgRow]) -> Result<Vec<Partner>, StoreError> {
    let mut partners: Vec<Partner> = Vec::new();
    for row in rows {
        let partner = decode::partner(row)?;
        if partners.last().is_none_or(|p| p.code != partner.code) {
            partners.push(partner);
        }
        // NULL key columns: a partner without keys.
        if row.get::<Option<String>>("key_id")?.is_some() {
            let partner = partners.last_mut().expect("pushed above");
            partner
                .keys
                .push(decode::partner_key(row, "key_created_at")?);
        }
    }
    Ok(partners)
}
