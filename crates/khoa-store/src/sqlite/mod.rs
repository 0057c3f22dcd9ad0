//! The SQLite backend: connection settings, the writer and point readers, error mapping.
//!
//! Reads go through a pool, the hot point reads through [`PointReads`] on the calling task;
//! writes through the single [`Writer`], because SQLite admits one writer at a time anyway and
//! funnelling writes through one connection lets them share transactions and fsyncs (see
//! `writer.rs`).
//!
//! Two drivers, one database: migrations and the other reads use sqlx's async pool; the writer
//! (a connection on its own thread) and the point reads use `rusqlite`. sqlx runs each statement on a worker thread and
//! sends the answer back, two thread switches per statement; a write batch is a dozen
//! statements or hundreds, and under load those switches took about a sixth of the server's
//! CPU. Both link the one SQLite library (libsqlite3-sys 0.37).

mod audit;
pub(crate) mod backup;
mod client_keys;
mod clients;
mod codes;
mod keys;
mod login_failures;
mod partners;
mod point;
mod tokens;
mod users;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use khoa_core::store::{PoolConnections, Readiness, StoreError, Stores, WriteBatches};
use rusqlite::ffi;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use crate::{StoreOptions, migrations};
use point::PointReads;
use writer::Writer;

/// What every aggregate's store holds: the read pool, the point readers and a handle on the
/// writer.
#[derive(Clone)]
struct Db {
    read: SqlitePool,
    point: Arc<PointReads>,
    writer: Writer,
}

pub(crate) async fn connect(url: &str, opts: &StoreOptions) -> Result<Stores, StoreError> {
    let options = connect_options(url, opts)?;
    run_migrations(&options).await?;
    let writer_conn = {
        let (filename, busy_timeout) = (options.get_filename().to_owned(), opts.busy_timeout);
        // Opening touches the file (and may wait out another process's lock): off the runtime.
        tokio::task::spawn_blocking(move || open_writer(&filename, busy_timeout))
            .await
            .map_err(|e| StoreError::caused("opening the writer connection", e))??
    };
    let (writer, _thread) = Writer::spawn(writer_conn, opts.batch_max)?;
    let point = Arc::new(PointReads::new(
        options.get_filename(),
        opts.busy_timeout,
        opts.max_connections as usize,
    ));
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
    let db = Db {
        read,
        point,
        writer,
    };
    Ok(Stores {
        client_keys: Arc::new(client_keys::SqliteClientKeys(db.clone())),
        users: Arc::new(users::SqliteUsers(db.clone())),
        clients: Arc::new(clients::SqliteClients(db.clone())),
        tokens: Arc::new(tokens::SqliteTokens(db.clone())),
        keys: Arc::new(keys::SqliteKeys(db.clone())),
        partners: Arc::new(partners::SqlitePartners(db.clone())),
        codes: Arc::new(codes::SqliteCodes(db.clone())),
        login_failures: Arc::new(login_failures::SqliteLoginFailures(db.clone())),
        audit: Arc::new(audit::SqliteAudit::new(db.clone())),
        readiness: Arc::new(SqliteReadiness(db)),
    })
}

pub(crate) async fn migrate(url: &str, opts: &StoreOptions) -> Result<(), StoreError> {
    run_migrations(&connect_options(url, opts)?).await
}

/// Runs the migrations on a connection of their own (creating the file if need be), closed
/// before the writer opens the database: the schema is complete before any write.
async fn run_migrations(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    let mut conn = options.connect().await.store_err()?;
    migrations::migrator(migrations::SQLITE)
        .run(&mut conn)
        .await
        .map_err(|e| migrations::error(e, map_err))?;
    conn.close().await.store_err()
}

fn connect_options(url: &str, opts: &StoreOptions) -> Result<SqliteConnectOptions, StoreError> {
    // sqlx gives `:memory:` a shared-cache database, where readers and the writer fail each
    // other with SQLITE_LOCKED instead of waiting; better refuse than flake.
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::other(
            "in-memory SQLite is not supported; use a file (a temporary one in tests)",
        ));
    }
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| crate::driver_failure("invalid SQLite URL", e))?
        .create_if_missing(true)
        // WAL: readers never block the writer nor each other.
        .journal_mode(SqliteJournalMode::Wal)
        // FULL, not WAL's usual NORMAL: the engine answers a client as soon as a write returns,
        // so a token must survive a power cut from that moment (store.rs, "durably").
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(opts.busy_timeout))
}

/// The writer's connection, with the settings [`connect_options`] gives the others (see the
/// reasons there). The file exists: the migrations ran on it just before.
fn open_writer(
    filename: &Path,
    busy_timeout: Duration,
) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        filename,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE,
    )
    .store_err()?;
    conn.busy_timeout(busy_timeout).store_err()?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )
    .store_err()?;
    // Every write statement of every store, plus the writer's own, stays prepared.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

struct SqliteReadiness(Db);

#[async_trait::async_trait]
impl Readiness for SqliteReadiness {
    async fn ping(&self) -> Result<(), StoreError> {
        // A live read pool is not enough: without the writer no token can be issued.
        if self.0.writer.is_stopped() {
            return Err(writer::stopped());
        }
        // The last writes failed (a full disk, say): not ready until a write works again. Every
        // write would answer 503, and with the load balancer told so no request would come to
        // find out that it works again; a probe write does.
        if let Some(why) = self.0.writer.failing() {
            self.0.writer.probe().await.map_err(|e| {
                StoreError::Unavailable(format!("writes are failing ({why}); a probe write: {e}"))
            })?;
        }
        // Read a real page of the schema, not just `SELECT 1`, which SQLite answers without
        // touching the file: a database that became unreadable must fail readiness.
        sqlx::query("SELECT count(*) FROM signing_keys")
            .execute(&self.0.read)
            .await
            .store_err()
            .map(drop)
    }

    /// The read pool (every write goes through the one writer connection).
    fn pool_connections(&self) -> Option<PoolConnections> {
        Some(PoolConnections {
            open: self.0.read.size(),
            idle: self.0.read.num_idle() as u32,
            max: self.0.read.options().get_max_connections(),
        })
    }

    fn write_batches(&self) -> Option<WriteBatches> {
        Some(WriteBatches {
            commits: self.0.writer.commits(),
            jobs: self.0.writer.jobs_committed(),
        })
    }
}

/// The one place where driver errors, `sqlx`'s (reads, migrations) and `rusqlite`'s (the
/// writer), become [`StoreError`]s, in the spirit of realworld-axum's `ResultExt::on_constraint`:
/// a call site that expects a unique violation names it.
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

impl<T> ResultExt<T> for Result<T, rusqlite::Error> {
    fn store_err(self) -> Result<T, StoreError> {
        self.map_err(map_rusqlite_err)
    }

    fn on_unique(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| match &e {
            rusqlite::Error::SqliteFailure(err, _) if is_unique_violation(err.extended_code) => {
                StoreError::Conflict(what.to_owned())
            }
            _ => map_rusqlite_err(e),
        })
    }
}

fn map_err(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(is_transient),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(e.to_string())
    } else {
        crate::driver_failure("SQLite", e)
    }
}

fn map_rusqlite_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(err, _) if is_transient(err.extended_code) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => crate::driver_failure("SQLite", e),
    }
}

/// Whether an (extended) result code says "try again later": another process holds the lock,
/// or the disk failed, filled up or went away (https://sqlite.org/rescode.html).
fn is_transient(code: i32) -> bool {
    matches!(
        code & 0xff,
        ffi::SQLITE_BUSY
            | ffi::SQLITE_LOCKED
            | ffi::SQLITE_IOERR
            | ffi::SQLITE_FULL
            | ffi::SQLITE_CANTOPEN
    )
}

/// The extended codes of a unique index or primary key that refused a row; sqlx's
/// `is_unique_violation` knows the same two.
fn is_unique_violation(extended_code: i32) -> bool {
    matches!(
        extended_code,
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// The first row `sql` answers, decoded; on rusqlite (the writer and the point reads).
fn query_one<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    decode: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    use rusqlite::OptionalExtension;
    conn.prepare_cached(sql)
        .and_then(|mut select| select.query_row(params, |row| Ok(decode(row))).optional())
        .store_err()?
        .transpose()
}

/// Every row `sql` answers, decoded; on rusqlite.
fn query_all<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    mut decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut select = conn.prepare_cached(sql).store_err()?;
    let mut rows = select.query(params).store_err()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().store_err()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Whether a statement touched a row (`rusqlite`'s `execute` returns the count): the answer of
/// every "returns whether" method.
fn changed(rows: usize) -> bool {
    rows > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Row, SqliteConnection};
    use std::time::Duration;

    fn temp_url() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("khoa.db").display());
        (dir, url)
    }

    /// A connection with the default options on a fresh database file (no migrations run).
    async fn temp_conn() -> (tempfile::TempDir, SqliteConnection) {
        let (dir, url) = temp_url();
        let conn = connect_options(&url, &StoreOptions::default())
            .unwrap()
            .connect()
            .await
            .unwrap();
        (dir, conn)
    }

    async fn pragma(conn: &mut SqliteConnection, name: &'static str) -> String {
        let row = sqlx::raw_sql(name).fetch_one(conn).await.unwrap();
        match row.try_get::<String, _>(0) {
            Ok(text) => text,
            Err(_) => row.get::<i64, _>(0).to_string(),
        }
    }

    #[tokio::test]
    async fn the_lean_audit_migration_keeps_every_event_and_its_id() {
        let (_dir, mut conn) = temp_conn().await;
        let mut before_0007 = migrations::migrator(migrations::SQLITE);
        before_0007.migrations = before_0007
            .migrations
            .iter()
            .filter(|m| m.version < 7)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before_0007.run(&mut conn).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO audit_events (at, kind, subject, client_id, detail, node) VALUES \
             (100, 'token_issued', 'usr_a', 'app', '{\"grant\":\"password\"}', 'n1'), \
             (101, 'lockout', 'usr_b', NULL, '{}', NULL)",
        )
        .execute(&mut conn)
        .await
        .unwrap();

        migrations::migrator(migrations::SQLITE)
            .run(&mut conn)
            .await
            .unwrap();

        let rows: Vec<(i64, i64, String, Option<String>, String)> =
            sqlx::query_as("SELECT id, at, kind, client_id, detail FROM audit_events ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(
            rows,
            [
                (
                    1,
                    100,
                    "token_issued".into(),
                    Some("app".into()),
                    r#"{"grant":"password"}"#.into()
                ),
                (2, 101, "lockout".into(), None, "{}".into()),
            ]
        );
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' \
             ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let indexes: Vec<&str> = indexes.iter().map(|(n,)| n.as_str()).collect();
        assert_eq!(
            indexes,
            [
                "audit_events_at",
                "audit_events_client",
                "audit_events_subject"
            ]
        );
        let next: i64 = sqlx::query_scalar(
            "INSERT INTO audit_events (at, kind) VALUES (102, 'lockout') RETURNING id",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(next, 3, "ids go on from the copied rows");
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

    fn writer_pragma(conn: &rusqlite::Connection, name: &str) -> String {
        conn.query_row(name, [], |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|value| match value {
                rusqlite::types::Value::Text(text) => text,
                rusqlite::types::Value::Integer(n) => n.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_connection_has_the_same_settings() {
        let (dir, url) = temp_url();
        migrate(&url, &StoreOptions::default()).await.unwrap();
        let conn = open_writer(&dir.path().join("khoa.db"), Duration::from_millis(1234)).unwrap();
        assert_eq!(writer_pragma(&conn, "PRAGMA journal_mode"), "wal");
        assert_eq!(writer_pragma(&conn, "PRAGMA synchronous"), "2", "FULL");
        assert_eq!(writer_pragma(&conn, "PRAGMA foreign_keys"), "1");
        assert_eq!(writer_pragma(&conn, "PRAGMA busy_timeout"), "1234");
    }

    #[tokio::test]
    async fn in_memory_databases_are_refused() {
        for url in ["sqlite::memory:", "sqlite://khoa?mode=memory"] {
            let err = connect(url, &StoreOptions::default()).await.err();
            assert!(
                matches!(&err, Some(e @ StoreError::Other(_)) if e.to_string().contains("in-memory")),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_database_locked_past_the_busy_timeout_is_unavailable() {
        let (dir, url) = temp_url();
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

        let writer = open_writer(&dir.path().join("khoa.db"), Duration::ZERO).unwrap();
        let err = writer
            .execute_batch("BEGIN IMMEDIATE")
            .store_err()
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_unexpected_unique_violation_is_not_a_named_conflict() {
        let (_dir, mut conn) = temp_conn().await;
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

    #[test]
    fn the_writer_names_unique_violations_as_the_read_side_does() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (k TEXT PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL); \
             INSERT INTO t VALUES ('a', 'x', '');",
        )
        .unwrap();
        let insert = |sql: &str| conn.execute(sql, []);
        assert_eq!(
            insert("INSERT INTO t VALUES ('a', 'y', '')").on_unique("k"),
            Err(StoreError::Conflict("k".into())),
            "primary key"
        );
        assert_eq!(
            insert("INSERT INTO t VALUES ('b', 'x', '')").on_unique("u"),
            Err(StoreError::Conflict("u".into())),
            "unique index"
        );
        let unnamed = insert("INSERT INTO t VALUES ('a', 'y', '')").store_err();
        assert!(matches!(unnamed, Err(StoreError::Other(_))), "{unnamed:?}");
        let not_unique = insert("INSERT INTO t VALUES ('b', 'y', NULL)").on_unique("k");
        assert!(
            matches!(not_unique, Err(StoreError::Other(_))),
            "another constraint is no conflict: {not_unique:?}"
        );
    }

    #[test]
    fn the_key_schedule_migration_keeps_what_each_status_meant() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO signing_keys VALUES ('old', 'EdDSA', x'00', '{}', 10, 'retired'); \
             INSERT INTO signing_keys VALUES ('prev', 'EdDSA', x'00', '{}', 20, 'previous'); \
             INSERT INTO signing_keys VALUES ('cur', 'EdDSA', x'00', '{}', 20, 'current');",
        )
        .unwrap();

        conn.execute_batch(include_str!(
            "../../migrations/sqlite/0002_key_schedule.sql"
        ))
        .unwrap();

        let mut rows = conn
            .prepare(
                "SELECT kid, activates_at, retires_at FROM signing_keys \
                 ORDER BY activates_at, rowid",
            )
            .unwrap();
        let keys: Vec<(String, i64, Option<i64>)> = rows
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            keys,
            [
                ("old".to_owned(), 10, Some(10)),
                ("prev".to_owned(), 20, None),
                // Last among the keys of its second: still the one that signs.
                ("cur".to_owned(), 20, None),
            ]
        );
    }
}
