//! The SQLite backend: connection settings, migrations and error mapping.
//!
//! Reads go through a pool; writes through the single [`Writer`], because SQLite admits one
//! writer at a time anyway and funnelling writes through one connection lets them share
//! transactions and fsyncs (see `writer.rs`).

mod clients;
mod keys;
mod partners;
mod tokens;
mod users;
mod writer;

use std::str::FromStr;
use std::sync::Arc;

use khoa_core::scope::ScopeSet;
use khoa_core::store::{Readiness, StoreError, Stores};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, SqlSafeStr};

use crate::StoreOptions;
use writer::Writer;

/// What every aggregate's store holds: the read pool and a handle on the writer.
#[derive(Clone)]
struct Db {
    read: SqlitePool,
    writer: Writer,
}

pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Stores, StoreError> {
    let options = connect_options(url, opts)?;
    let mut conn = options.connect().await.store_err()?;
    migrator().run(&mut conn).await.map_err(migrate_err)?;
    let (writer, _task) = Writer::spawn(conn, opts.batch_max);
    let read = SqlitePoolOptions::new()
        .max_connections(opts.max_connections.max(1))
        .connect_with(options)
        .await
        .store_err()?;
    tracing::info!(
        max_connections = opts.max_connections,
        batch_max = opts.batch_max,
        "SQLite store ready"
    );
    let db = Db { read, writer };
    Ok(Stores {
        users: Arc::new(users::SqliteUsers(db.clone())),
        clients: Arc::new(clients::SqliteClients(db.clone())),
        tokens: Arc::new(tokens::SqliteTokens(db.clone())),
        keys: Arc::new(keys::SqliteKeys(db.clone())),
        partners: Arc::new(partners::SqlitePartners(db.clone())),
        readiness: Arc::new(SqliteReadiness(db)),
    })
}

pub(crate) async fn migrate(url: &str, opts: &StoreOptions) -> Result<(), StoreError> {
    let mut conn = connect_options(url, opts)?.connect().await.store_err()?;
    migrator().run(&mut conn).await.map_err(migrate_err)?;
    conn.close().await.store_err()
}

fn connect_options(url: &str, opts: &StoreOptions) -> Result<SqliteConnectOptions, StoreError> {
    // sqlx gives `:memory:` a shared-cache database, where readers and the writer fail each
    // other with SQLITE_LOCKED instead of waiting; better refuse than flake.
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::Other(
            "in-memory SQLite is not supported; use a file (a temporary one in tests)".into(),
        ));
    }
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Other(format!("invalid SQLite URL: {e}")))?
        .create_if_missing(true)
        // WAL: readers never block the writer nor each other.
        .journal_mode(SqliteJournalMode::Wal)
        // FULL, not WAL's usual NORMAL: the engine answers a client as soon as a write returns,
        // so a token must survive a power cut from that moment (store.rs, "durably").
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(opts.busy_timeout))
}

/// The schema, compiled into the binary so that a deployment is one file. sqlx's own migrator
/// records what ran in `_sqlx_migrations` together with a checksum, so re-running is a no-op
/// and an edited, already-applied migration is refused rather than silently skipped.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
        false,
    )])
}

fn migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => map_err(e),
        other => StoreError::Other(format!("migration failed: {other}")),
    }
}

struct SqliteReadiness(Db);

#[async_trait::async_trait]
impl Readiness for SqliteReadiness {
    async fn ping(&self) -> Result<(), StoreError> {
        // A live read pool is not enough: without the writer no token can be issued.
        if self.0.writer.is_stopped() {
            return Err(writer::stopped());
        }
        // Read a real page of the schema, not just `SELECT 1`, which SQLite answers without
        // touching the file: a database that became unreadable must fail readiness.
        sqlx::query("SELECT count(*) FROM signing_keys")
            .execute(&self.0.read)
            .await
            .store_err()
            .map(drop)
    }
}

/// The one place where `sqlx` errors become [`StoreError`]s, in the spirit of realworld-axum's
/// `ResultExt::on_constraint`: a call site that expects a unique violation names it.
trait ResultExt<T> {
    fn store_err(self) -> Result<T, StoreError>;
    /// Like [`ResultExt::store_err`], but a unique violation becomes `Conflict(what)`.
    fn on_unique(self, what: &str) -> Result<T, StoreError>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn store_err(self) -> Result<T, StoreError> {
        self.map_err(map_err)
    }

    fn on_unique(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(what.to_owned())
            }
            _ => map_err(e),
        })
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    // Primary result codes (https://sqlite.org/rescode.html) that say "try again later".
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const IOERR: i64 = 10;
    let transient = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| matches!(code & 0xff, BUSY | LOCKED | IOERR)),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Other(e.to_string())
    }
}

/// Reads column `col`; a missing column or a wrong type is a corrupt row.
fn get<'r, T>(row: &'r SqliteRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col).store_err()
}

fn scope_col(row: &SqliteRow, col: &str) -> Result<ScopeSet, StoreError> {
    parse_col(col, &get::<String>(row, col)?)
}

/// Parses a stored enum or scope set; a row that fails to parse is corrupt, hence `Other`.
fn parse_col<T: FromStr>(col: &str, text: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Other(format!("unreadable value in column `{col}`")))
}

/// Whether a statement touched a row: the answer of every "returns whether" method.
fn changed(result: sqlx::sqlite::SqliteQueryResult) -> bool {
    result.rows_affected() > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::SqliteConnection;
    use std::time::Duration;

    fn temp_url() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("khoa.db").display());
        (dir, url)
    }

    async fn pragma(conn: &mut SqliteConnection, name: &'static str) -> String {
        let row = sqlx::raw_sql(name).fetch_one(conn).await.unwrap();
        match row.try_get::<String, _>(0) {
            Ok(text) => text,
            Err(_) => row.get::<i64, _>(0).to_string(),
        }
    }

    #[tokio::test]
    async fn connections_are_durable_and_enforce_foreign_keys() {
        let (_dir, url) = temp_url();
        let opts = StoreOptions {
            busy_timeout: Duration::from_millis(1234),
            ..StoreOptions::default()
        };
        let mut conn = connect_options(&url, &opts)
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert_eq!(pragma(&mut conn, "PRAGMA journal_mode").await, "wal");
        assert_eq!(pragma(&mut conn, "PRAGMA synchronous").await, "2", "FULL");
        assert_eq!(pragma(&mut conn, "PRAGMA foreign_keys").await, "1");
        assert_eq!(pragma(&mut conn, "PRAGMA busy_timeout").await, "1234");
    }

    #[tokio::test]
    async fn in_memory_databases_are_refused() {
        for url in ["sqlite::memory:", "sqlite://khoa?mode=memory"] {
            let err = connect(url, &StoreOptions::default()).await.err();
            assert!(matches!(err, Some(StoreError::Other(m)) if m.contains("in-memory")));
        }
    }

    #[tokio::test]
    async fn a_database_locked_past_the_busy_timeout_is_unavailable() {
        let (_dir, url) = temp_url();
        let opts = StoreOptions {
            busy_timeout: Duration::ZERO,
            ..StoreOptions::default()
        };
        let options = connect_options(&url, &opts).unwrap();
        let mut holder = options.connect().await.unwrap();
        let mut other = options.connect().await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();

        let err = sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .store_err()
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_unexpected_unique_violation_is_not_a_named_conflict() {
        let (_dir, url) = temp_url();
        let mut conn = connect_options(&url, &StoreOptions::default())
            .unwrap()
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("CREATE TABLE t (k TEXT PRIMARY KEY); INSERT INTO t VALUES ('a');")
            .execute(&mut conn)
            .await
            .unwrap();
        let insert = sqlx::query("INSERT INTO t VALUES ('a')");
        let named = insert.execute(&mut conn).await.on_unique("k").unwrap_err();
        assert_eq!(named, StoreError::Conflict("k".into()));
        let insert = sqlx::query("INSERT INTO t VALUES ('a')");
        let unnamed = insert.execute(&mut conn).await.store_err().unwrap_err();
        assert!(matches!(unnamed, StoreError::Other(_)), "{unnamed:?}");
    }
}
