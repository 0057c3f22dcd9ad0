//! khoa's storage: the [`khoa_core::store`] traits implemented on a real database.
//!
//! The backend is chosen once, from the database URL's scheme, by [`connect`]; from then on the
//! server only sees the [`Stores`] bundle of trait objects, never a backend type.
//!
//! # Layout
//!
//! - `lib.rs` — the public entry points: [`connect`], [`migrate`], [`StoreOptions`], and the
//!   scheme dispatch.
//! - `decode.rs` — every aggregate's row decoder, written once for both backends and both
//!   SQLite drivers (a `Columns` view of sqlx's and rusqlite's rows), and how values are
//!   stored (scopes and lists as text, enums by their wire names).
//! - `migrations.rs` — the migration steps of each backend and the one way they run;
//!   `build.rs` makes the lists from the files in `migrations/`.
//! - `sqlite/mod.rs` — SQLite connection settings (WAL, `synchronous = FULL`, foreign keys),
//!   the read pool (sqlx), the writer's connection (rusqlite) and the single place where
//!   `sqlx` and `rusqlite` errors become [`StoreError`]s.
//! - `sqlite/writer.rs` — the one writer connection and its group commit: every write of every
//!   store is a job run by one thread, many jobs to a transaction, a savepoint around each job
//!   of several statements.
//! - `sqlite/point.rs` — the hot point reads (a refresh token with its family, a user, an
//!   opaque access token, a partner with its keys, a client's keys) on `rusqlite`
//!   connections, run on the calling task instead of a sqlx worker thread.
//! - `sqlite/backup.rs` — [`backup_sqlite`], the online backup of a live database (`khoa
//!   backup`): one snapshot copied a few pages at a time, verified, renamed into place.
//! - `sqlite/users.rs`, `clients.rs`, `tokens.rs`, `codes.rs`, `keys.rs`, `partners.rs`,
//!   `client_keys.rs`, `login_failures.rs` — one file per aggregate: its SQL, nothing else.
//!   `codes.rs` redeems an authorization code and writes the tokens it issues in one job of
//!   the writer.
//! - `sqlite/audit.rs` — audit events, queued on the writer without waiting for their commit
//!   (they share the next batch's fsync; a crash may lose the last few, never a token).
//! - `postgres/mod.rs` — the PostgreSQL pool (sized by [`StoreOptions::max_connections`],
//!   bounded waits, stale connections replaced) and the single place where `sqlx` errors
//!   become [`StoreError`]s. No writer task: several nodes share the database, so every write
//!   is its own transaction and races are settled by the SQL.
//! - `postgres/users.rs` … `login_failures.rs` — one file per aggregate, as for SQLite.
//! - `postgres/audit.rs` — audit events, queued to a task of their own that inserts them in
//!   batches, in order.
//! - `migrations/sqlite/`, `migrations/postgres/` — each backend's schema, one numbered file
//!   per change (`<version>_<name>.sql`), compiled into the binary.
//!
//! The conformance suite in `tests/conformance/` is written once against [`Stores`] and run on
//! every backend (and on `khoa-core`'s in-memory test store, so that it cannot drift).

#![forbid(unsafe_code)]

mod decode;
mod migrations;
mod postgres;
mod sqlite;

use std::time::Duration;

use khoa_core::store::{StoreError, Stores};

pub use sqlite::backup::{BackupError, BackupOptions, BackupReport, backup_sqlite};

/// A driver's error (sqlx's, rusqlite's) as the cause of `context`. Both drivers write their
/// own cause into their message *and* return it from `source()`, so a log line that follows
/// the chain would say it twice ("file is not a database: file is not a database"); kept
/// behind [`Driver`], it is said once, by the driver's message.
pub(crate) fn driver_failure(
    context: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::caused(context, Driver(e))
}

/// The driver's error, boxed whole (a debugger or `downcast_ref` still finds it), showing only
/// its own message: see [`driver_failure`].
#[derive(Debug)]
pub(crate) struct Driver<E>(E);

impl<E: std::fmt::Display> std::fmt::Display for Driver<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for Driver<E> {}

/// Tuning of a store. The defaults suit a single node with a local disk.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// SQLite: size of the read pool (writes all go through one writer connection).
    /// PostgreSQL: size of the pool, reads and writes alike; the nodes' pools together must
    /// stay under the server's `max_connections`.
    pub max_connections: u32,
    /// SQLite: how long a statement waits for a lock held by another process before failing
    /// with [`StoreError::Unavailable`]. PostgreSQL: how long a request waits for a connection,
    /// opening one included, before failing with [`StoreError::Unavailable`] — what a database
    /// that went away costs each request (at least 100 ms).
    pub busy_timeout: Duration,
    /// SQLite only: most writes committed together in one transaction (and one fsync).
    pub batch_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
            batch_max: 256,
        }
    }
}

/// Opens the database named by `url` (creating an SQLite file if missing), brings its schema up
/// to date and returns its stores.
///
/// Supported schemes: `sqlite:` and `postgres:`/`postgresql:`. An unreachable PostgreSQL server
/// is [`StoreError::Unavailable`], reported once `busy_timeout` has passed at the latest.
pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Stores, StoreError> {
    match Backend::from_url(url)? {
        Backend::Sqlite => sqlite::connect(url, opts).await,
        Backend::Postgres => postgres::connect(url, opts).await,
    }
}

/// Brings the schema of the database named by `url` up to date; a no-op when it already is.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    match Backend::from_url(url)? {
        Backend::Sqlite => sqlite::migrate(url, &StoreOptions::default()).await,
        Backend::Postgres => postgres::migrate(url, &StoreOptions::default()).await,
    }
}

enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn from_url(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            other => Err(StoreError::other(format!(
                "unsupported database URL scheme `{other}` (expected `sqlite:` or `postgres:`)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_chosen_by_the_url_scheme() {
        assert!(matches!(
            Backend::from_url("sqlite://khoa.db?mode=rwc"),
            Ok(Backend::Sqlite)
        ));
        assert!(matches!(
            Backend::from_url("sqlite:khoa.db"),
            Ok(Backend::Sqlite)
        ));
        assert!(matches!(
            Backend::from_url("postgres://khoa@db/khoa"),
            Ok(Backend::Postgres)
        ));
        assert!(matches!(
            Backend::from_url("postgresql://db:5432/khoa?sslmode=require"),
            Ok(Backend::Postgres)
        ));
        match Backend::from_url("mysql://db/khoa") {
            Err(e @ StoreError::Other(_)) => assert!(e.to_string().contains("`mysql`"), "{e}"),
            _ => panic!("mysql must be refused"),
        }
    }
}
