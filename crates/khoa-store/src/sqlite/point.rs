//! Point reads on the hot paths (a refresh token and its family, its owner, an opaque access
//! token, a partner and its keys), run on the calling task with `rusqlite` connections kept
//! here.
//!
//! Why not sqlx's pool, as for the other reads: sqlx runs each statement on its connection's
//! worker thread and sends the rows back, two thread switches and two channel hand-overs per
//! read. A refresh makes two such reads, and with the server on one core those hand-overs and
//! the worker threads took about a fifth of its time (perf, `refresh` scenario). A lookup by
//! key on pages in SQLite's cache takes a few microseconds, less than the hand-overs, so it runs
//! right where it is asked for. On a cold page it is one read from the OS cache or the disk:
//! the same wait the sqlx worker would have, here on the runtime thread. In WAL mode a reader
//! never waits for the writer; only another process holding the database exclusively (a
//! migration by a newer `khoa`, say) can make it wait, and then for [`MAX_BUSY_WAIT`] at most:
//! the request fails as unavailable (503) rather than stalling every task of its thread.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use khoa_core::store::StoreError;
use rusqlite::{Connection, OpenFlags};

use super::ResultExt;

/// The longest a point read waits for a lock, whatever the store's `busy_timeout`.
pub(crate) const MAX_BUSY_WAIT: Duration = Duration::from_millis(100);

pub(crate) struct PointReads {
    path: PathBuf,
    busy_timeout: Duration,
    /// Connections between two reads; one is opened when none is idle (several tasks reading
    /// at once, or a read that panicked and took its connection with it).
    idle: Mutex<Vec<Connection>>,
    /// Idle connections kept at most; more are closed after their read.
    max_idle: usize,
}

impl PointReads {
    pub(crate) fn new(path: &Path, busy_timeout: Duration, max_idle: usize) -> Self {
        PointReads {
            path: path.to_owned(),
            busy_timeout: busy_timeout.min(MAX_BUSY_WAIT),
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
        }
    }

    /// Runs `read` on an idle connection (or a new one) and puts the connection back.
    pub(crate) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match self.idle().pop() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn);
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        result
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // A panic while holding the lock is a push or a pop: the vector is intact.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE,
        )
        .store_err()?;
        conn.busy_timeout(self.busy_timeout).store_err()?;
        // Read-write only so that it can share the WAL index like every other connection;
        // `query_only` makes sure nothing but the writer ever changes the database.
        conn.execute_batch("PRAGMA query_only = ON;").store_err()?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("point.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER);",
        )
        .unwrap();
        (dir, path)
    }

    fn count(conn: &Connection) -> Result<i64, StoreError> {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .store_err()
    }

    #[test]
    fn a_read_sees_what_was_committed_and_reuses_its_connection() {
        let (_dir, path) = db();
        let reads = PointReads::new(&path, Duration::from_secs(1), 2);
        assert_eq!(reads.read(count).unwrap(), 0);
        Connection::open(&path)
            .unwrap()
            .execute("INSERT INTO t VALUES ('a', 1)", [])
            .unwrap();
        assert_eq!(reads.read(count).unwrap(), 1);
        assert_eq!(reads.idle().len(), 1, "one connection served both reads");
    }

    #[test]
    fn point_connections_refuse_to_write() {
        let (_dir, path) = db();
        let reads = PointReads::new(&path, Duration::from_secs(1), 2);
        let write = reads.read(|conn| {
            conn.execute("INSERT INTO t VALUES ('b', 2)", [])
                .store_err()
        });
        assert!(matches!(write, Err(StoreError::Other(_))), "{write:?}");
        assert_eq!(reads.read(count).unwrap(), 0);
    }

    #[test]
    fn a_database_locked_by_another_process_fails_the_read_as_unavailable_after_a_short_wait() {
        let (_dir, path) = db();
        let reads = PointReads::new(&path, Duration::from_secs(30), 2);
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();
        let started = std::time::Instant::now();
        let read = reads.read(count);
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not the store's 30 s"
        );
        holder
            .execute_batch("COMMIT; PRAGMA locking_mode = NORMAL;")
            .unwrap();
    }

    #[test]
    fn at_most_max_idle_connections_are_kept() {
        let (_dir, path) = db();
        let reads = PointReads::new(&path, Duration::from_secs(1), 1);
        let nested = reads.read(|outer| {
            // A second read while the first holds its connection opens another.
            let inner = reads.read(count)?;
            Ok((count(outer)?, inner))
        });
        assert_eq!(nested.unwrap(), (0, 0));
        assert_eq!(reads.idle().len(), 1);
    }
}
