//! Row decoding, once for every backend: one function per aggregate turns a row into its
//! domain type, whichever driver read it.
//!
//! Three row types reach this file: sqlx's `SqliteRow` (the read pool), sqlx's `PgRow` and
//! rusqlite's `Row` (the SQLite writer and point reads). [`Columns`] is what the decoders ask
//! of a row, a typed read of a named column, and each row type has it in three lines. The
//! backends' SQL therefore only has to name its columns as the decoders do (aliases included,
//! e.g. `family_created_at` where a refresh token and its family are read in one join); what a
//! column holds and how it becomes a field is said here alone.
//!
//! How values are stored, for every backend alike: scope sets and space-separated lists as
//! text (a URI cannot contain a space, RFC 3986 §2), policy enums by their wire names
//! (`as_str`, read back through `FromStr`), times as Unix seconds, counts as 32-bit integers.

use std::str::FromStr;

use khoa_core::model::{Client, TokenPolicy, User};
use khoa_core::scope::ScopeSet;
use khoa_core::store::{
    AccessRecord, AccessState, AuditEvent, AuthCode, AuthCodeState, ClientKey, Family,
    LoginFailures, Partner, PartnerKey, RefreshState, RevokedJwt, SigningKeyRecord, StoreError,
};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, Sqlite};

/// A type every driver can read from a column: text, integers, booleans, bytes and their
/// `Option`s (a nullable column).
pub(crate) trait Value:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + rusqlite::types::FromSql
{
}

impl<T> Value for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + rusqlite::types::FromSql
{
}

/// What a decoder asks of a row. A missing column, a wrong type or a value that does not
/// parse is a corrupt row: [`StoreError::Other`], naming the column.
pub(crate) trait Columns {
    fn get<T: Value>(&self, col: &str) -> Result<T, StoreError>;

    /// A stored enum or scope set, read back through its `FromStr`.
    fn parsed<T: FromStr>(&self, col: &str) -> Result<T, StoreError> {
        parse(col, &self.get::<String>(col)?)
    }

    fn scope(&self, col: &str) -> Result<ScopeSet, StoreError> {
        self.parsed(col)
    }

    /// A space-separated list; the empty text is the empty list.
    fn words(&self, col: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .get::<String>(col)?
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// A count, stored as a 32-bit integer (PostgreSQL's `INTEGER`).
    fn count(&self, col: &str) -> Result<u32, StoreError> {
        let n: i32 = self.get(col)?;
        u32::try_from(n).map_err(|_| StoreError::other(format!("negative count in `{col}`")))
    }
}

impl Columns for SqliteRow {
    fn get<T: Value>(&self, col: &str) -> Result<T, StoreError> {
        sqlx::Row::try_get(self, col).map_err(|e| unreadable(col, e))
    }
}

impl Columns for PgRow {
    fn get<T: Value>(&self, col: &str) -> Result<T, StoreError> {
        sqlx::Row::try_get(self, col).map_err(|e| unreadable(col, e))
    }
}

impl Columns for rusqlite::Row<'_> {
    fn get<T: Value>(&self, col: &str) -> Result<T, StoreError> {
        rusqlite::Row::get(self, col).map_err(|e| unreadable(col, e))
    }
}

fn unreadable(col: &str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    crate::driver_failure(format!("reading column `{col}`"), e)
}

/// Parses a stored enum or scope set; text that fails to parse is a corrupt row.
pub(crate) fn parse<T: FromStr>(col: &str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::other(format!("unreadable value in column `{col}`")))
}

/// A list as [`Columns::words`] reads it back.
pub(crate) fn words<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let mut text = String::new();
    for item in items {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(item.as_ref());
    }
    text
}

/// A client's grant types as stored.
pub(crate) fn grant_types(client: &Client) -> String {
    words(client.grant_types.iter().map(|g| g.as_str()))
}

/// `users`: every column.
pub(crate) fn user(row: &impl Columns) -> Result<User, StoreError> {
    Ok(User {
        id: row.get("id")?,
        username: row.get("username")?,
        password_hash: row.get("password_hash")?,
        disabled: row.get("disabled")?,
        allowed_scopes: row
            .get::<Option<String>>("allowed_scopes")?
            .map(|text| parse("allowed_scopes", &text))
            .transpose()?,
        created_at: row.get("created_at")?,
    })
}

/// `clients`: every column.
pub(crate) fn client(row: &impl Columns) -> Result<Client, StoreError> {
    Ok(Client {
        client_id: row.get("client_id")?,
        name: row.get("name")?,
        secret_hash: row.get("secret_hash")?,
        allowed_scopes: row.scope("allowed_scopes")?,
        default_scopes: row.scope("default_scopes")?,
        grant_types: row
            .words("grant_types")?
            .iter()
            .map(|g| parse("grant_types", g))
            .collect::<Result<_, _>>()?,
        redirect_uris: row.words("redirect_uris")?,
        policy: TokenPolicy {
            access_format: row.parsed("access_format")?,
            access_ttl: row.get("access_ttl")?,
            refresh: row.parsed("refresh_issuance")?,
            refresh_ttl: row.get("refresh_ttl")?,
            session_lifetime: row.get("session_lifetime")?,
            reuse_window: row.get("reuse_window")?,
            refresh_format: row.parsed("refresh_format")?,
            otp: row.get("otp")?,
        },
        disabled: row.get("disabled")?,
        created_at: row.get("created_at")?,
    })
}

/// `token_families`, its `id` as `family_id` and its `created_at` as `family_created_at`: the
/// names it has when read together with one of its refresh tokens.
pub(crate) fn family(row: &impl Columns) -> Result<Family, StoreError> {
    Ok(Family {
        id: row.get("family_id")?,
        client_id: row.get("client_id")?,
        subject: row.get("subject")?,
        scope: row.scope("scope")?,
        created_at: row.get("family_created_at")?,
        session_expires_at: row.get("session_expires_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

/// A `refresh_tokens` row joined with its family (columns as [`family`] names them).
pub(crate) fn refresh_state(row: &impl Columns) -> Result<RefreshState, StoreError> {
    Ok(RefreshState {
        hash: row.get("hash")?,
        family: family(row)?,
        issued_at: row.get("issued_at")?,
        expires_at: row.get("expires_at")?,
        used_at: row.get("used_at")?,
        successor_hash: row.get("successor_hash")?,
        successor_sealed: row.get("successor_sealed")?,
    })
}

/// An `access_tokens` row and `revoked`: whether its family is revoked.
pub(crate) fn access_state(row: &impl Columns) -> Result<AccessState, StoreError> {
    Ok(AccessState {
        record: AccessRecord {
            hash: row.get("hash")?,
            client_id: row.get("client_id")?,
            subject: row.get("subject")?,
            scope: row.scope("scope")?,
            family_id: row.get("family_id")?,
            issued_at: row.get("issued_at")?,
            expires_at: row.get("expires_at")?,
            otp_hash: row.get("otp_hash")?,
        },
        revoked: row.get("revoked")?,
    })
}

/// `revoked_jwts`.
pub(crate) fn revoked_jwt(row: &impl Columns) -> Result<RevokedJwt, StoreError> {
    Ok(RevokedJwt {
        jti: row.get("jti")?,
        expires_at: row.get("expires_at")?,
        revoked_at: row.get("revoked_at")?,
    })
}

/// `authorization_codes`: every column.
pub(crate) fn code_state(row: &impl Columns) -> Result<AuthCodeState, StoreError> {
    Ok(AuthCodeState {
        code: AuthCode {
            hash: row.get("hash")?,
            client_id: row.get("client_id")?,
            subject: row.get("subject")?,
            redirect_uri: row.get("redirect_uri")?,
            scope: row.scope("scope")?,
            code_challenge: row.get("code_challenge")?,
            nonce: row.get("nonce")?,
            auth_time: row.get("auth_time")?,
            issued_at: row.get("issued_at")?,
            expires_at: row.get("expires_at")?,
        },
        used_at: row.get("used_at")?,
        family_id: row.get("family_id")?,
    })
}

/// `signing_keys`: every column.
pub(crate) fn signing_key(row: &impl Columns) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: row.get("kid")?,
        alg: row.get("alg")?,
        private_sealed: row.get("private_sealed")?,
        public_jwk: row.get("public_jwk")?,
        created_at: row.get("created_at")?,
        activates_at: row.get("activates_at")?,
        retires_at: row.get("retires_at")?,
    })
}

/// `partners`, without its keys (the backends read those apart, or joined).
pub(crate) fn partner(row: &impl Columns) -> Result<Partner, StoreError> {
    Ok(Partner {
        code: row.get("code")?,
        name: row.get("name")?,
        client_id: row.get("client_id")?,
        created_at: row.get("created_at")?,
        keys: Vec::new(),
    })
}

/// `partner_keys`; its `created_at` is `created_at_col` (`key_created_at` when joined with
/// its partner, whose own `created_at` it would otherwise shadow).
pub(crate) fn partner_key(
    row: &impl Columns,
    created_at_col: &str,
) -> Result<PartnerKey, StoreError> {
    Ok(PartnerKey {
        key_id: row.get("key_id")?,
        sealed: row.get("sealed")?,
        created_at: row.get(created_at_col)?,
        expires_at: row.get("expires_at")?,
    })
}

/// `client_keys`: every column.
pub(crate) fn client_key(row: &impl Columns) -> Result<ClientKey, StoreError> {
    Ok(ClientKey {
        client_id: row.get("client_id")?,
        kid: row.get("kid")?,
        alg: row.get("alg")?,
        material: row.get("public_key")?,
        created_at: row.get("created_at")?,
    })
}

/// `login_failures`: every column.
pub(crate) fn login_failures(row: &impl Columns) -> Result<LoginFailures, StoreError> {
    Ok(LoginFailures {
        username: row.get("username")?,
        failures: row.count("failures")?,
        last_failure_at: row.get("last_failure_at")?,
        locked_until: row.get("locked_until")?,
    })
}

/// `audit_events`: every column.
pub(crate) fn audit_event(row: &impl Columns) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: row.get("id")?,
        at: row.get("at")?,
        kind: row.parsed("kind")?,
        subject: row.get("subject")?,
        client_id: row.get("client_id")?,
        detail: row.get("detail")?,
        node: row.get("node")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of the SQLite file's `clients` table as rusqlite reads it, so that the decoders'
    /// failures are seen on a real row.
    fn with_row<T>(sql: &str, decode: impl FnOnce(&rusqlite::Row<'_>) -> T) -> T {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut select = conn.prepare(sql).unwrap();
        let mut rows = select.query([]).unwrap();
        decode(rows.next().unwrap().unwrap())
    }

    #[test]
    fn a_list_is_read_back_as_written() {
        let uris = ["https://a.example/cb", "https://b.example/cb"];
        let text = words(uris);
        assert_eq!(text, "https://a.example/cb https://b.example/cb");
        let read = with_row(&format!("SELECT '{text}' AS uris"), |row| {
            row.words("uris").unwrap()
        });
        assert_eq!(read, uris);
        let empty = with_row("SELECT '' AS uris", |row| row.words("uris").unwrap());
        assert!(empty.is_empty());
    }

    #[test]
    fn a_corrupt_row_names_its_column_and_keeps_the_drivers_error() {
        let missing =
            with_row("SELECT 1 AS other", |row| Columns::get::<i64>(row, "kid")).unwrap_err();
        let text = khoa_core::error::chain(&missing);
        assert!(
            text.starts_with("storage error: reading column `kid`: "),
            "{text}"
        );
        assert!(std::error::Error::source(&missing).is_some(), "{missing:?}");

        let unparsable = with_row("SELECT 'teleport' AS kind", |row| {
            row.parsed::<khoa_core::store::AuditKind>("kind")
        })
        .unwrap_err();
        assert_eq!(
            unparsable.to_string(),
            "storage error: unreadable value in column `kind`"
        );

        let negative = with_row("SELECT -1 AS failures", |row| row.count("failures"));
        assert!(
            matches!(negative, Err(StoreError::Other(_))),
            "{negative:?}"
        );
    }
}
