//! Partners of the encrypted dialect and their AES keys (sealed) on SQLite.

use async_trait::async_trait;
use khoa_core::model::UnixTime;
use khoa_core::store::{Partner, PartnerKey, PartnerStore, StoreError};
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::{Db, ResultExt, changed, get};

pub(super) struct SqlitePartners(pub(super) Db);

#[async_trait]
impl PartnerStore for SqlitePartners {
    async fn create_partner(&self, partner: &Partner) -> Result<(), StoreError> {
        let p = partner.clone();
        self.0
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO partners (code, name, client_id, created_at) \
                         VALUES (?, ?, ?, ?)",
                    )
                    .bind(&p.code)
                    .bind(&p.name)
                    .bind(&p.client_id)
                    .bind(p.created_at)
                    .execute(&mut *conn)
                    .await
                    .on_unique("partner_code")?;
                    for k in &p.keys {
                        insert_key(&mut *conn, &p.code, k).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn find_partner(&self, code: &str) -> Result<Option<Partner>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM partners WHERE code = ?")
            .bind(code)
            .fetch_optional(&self.0.read)
            .await
            .store_err()?
        else {
            return Ok(None);
        };
        self.with_keys(&row).await.map(Some)
    }

    async fn list_partners(&self) -> Result<Vec<Partner>, StoreError> {
        let rows = sqlx::query("SELECT * FROM partners ORDER BY code")
            .fetch_all(&self.0.read)
            .await
            .store_err()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.with_keys(row).await?);
        }
        Ok(out)
    }

    async fn add_partner_key(
        &self,
        code: &str,
        key: &PartnerKey,
        old_keys_expire_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let (code, key) = (code.to_owned(), key.clone());
        self.0
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let exists = sqlx::query("SELECT 1 FROM partners WHERE code = ?")
                        .bind(&code)
                        .fetch_optional(&mut *conn)
                        .await
                        .store_err()?
                        .is_some();
                    if !exists {
                        return Ok(false);
                    }
                    sqlx::query(
                        "UPDATE partner_keys SET expires_at = ? \
                         WHERE partner_code = ? AND expires_at IS NULL",
                    )
                    .bind(old_keys_expire_at)
                    .bind(&code)
                    .execute(&mut *conn)
                    .await
                    .store_err()?;
                    insert_key(conn, &code, &key).await?;
                    Ok(true)
                })
            })
            .await
    }

    async fn delete_partner(&self, code: &str) -> Result<bool, StoreError> {
        let code = code.to_owned();
        self.0
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM partners WHERE code = ?")
                        .bind(&code)
                        .execute(conn)
                        .await
                        .store_err()
                        .map(changed)
                })
            })
            .await
    }
}

impl SqlitePartners {
    async fn with_keys(&self, row: &SqliteRow) -> Result<Partner, StoreError> {
        let code: String = get(row, "code")?;
        // rowid breaks ties between keys created in the same second: newest first.
        let keys = sqlx::query(
            "SELECT key_id, sealed, created_at, expires_at FROM partner_keys \
             WHERE partner_code = ? ORDER BY created_at DESC, rowid DESC",
        )
        .bind(&code)
        .fetch_all(&self.0.read)
        .await
        .store_err()?
        .iter()
        .map(|k| {
            Ok(PartnerKey {
                key_id: get(k, "key_id")?,
                sealed: get(k, "sealed")?,
                created_at: get(k, "created_at")?,
                expires_at: get(k, "expires_at")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
        Ok(Partner {
            code,
            name: get(row, "name")?,
            client_id: get(row, "client_id")?,
            created_at: get(row, "created_at")?,
            keys,
        })
    }
}

async fn insert_key(
    conn: &mut SqliteConnection,
    code: &str,
    k: &PartnerKey,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO partner_keys (key_id, partner_code, sealed, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&k.key_id)
    .bind(code)
    .bind(&k.sealed)
    .bind(k.created_at)
    .bind(k.expires_at)
    .execute(conn)
    .await
    .on_unique("key_id")
    .map(drop)
}
