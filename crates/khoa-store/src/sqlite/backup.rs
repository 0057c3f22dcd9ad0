//! An online backup of the SQLite database while the server writes to it (`khoa backup`).
//!
//! SQLite's online backup API copies the file page by page through a connection of its own.
//! Left to itself, a step takes a read lock that ends with the step, and when another
//! connection commits between two steps the copy starts again from the first page: under a
//! steady stream of refreshes a large database would never finish. So the copy runs inside one
//! read transaction on the source. In WAL mode (every khoa database is) a reader never blocks
//! the writer, and the transaction pins one snapshot: every step sees the same database, the
//! copy is consistent as of its start, and it never restarts. What the writer commits
//! meanwhile stays in the WAL until the copy ends (checkpoints cannot pass the snapshot).
//!
//! The copy still goes a few hundred pages at a time with a pause between: the live writer
//! shares the disk with it, and its fsyncs should not queue behind one long burst of reads and
//! writes.
//!
//! The copy is written to a temporary file beside the target, checked with
//! `PRAGMA integrity_check`, synced, and only then renamed into place: the target is either
//! absent or a whole, verified backup.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// How [`backup_sqlite`] paces its copy and what it may replace.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Pages copied per step (a page is 4 KiB by default).
    pub pages_per_step: u32,
    /// Pause between steps, leaving the disk to the live writer.
    pub pause: Duration,
    /// How long to wait when the database is locked (it is not, in WAL mode, but for a
    /// checkpoint or recovery in progress).
    pub busy_timeout: Duration,
    /// Replace an existing target file.
    pub overwrite: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            pages_per_step: 256,
            pause: Duration::from_millis(10),
            busy_timeout: Duration::from_secs(5),
            overwrite: false,
        }
    }
}

/// What [`backup_sqlite`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup file (the target, now in place).
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Database pages copied.
    pub pages: u64,
    /// Steps the copy took.
    pub steps: u64,
}

/// Why [`backup_sqlite`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} already exists (use --force to replace it)", .0.display())]
    TargetExists(PathBuf),
    #[error("there is no database at {} (nothing to back up)", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} is not a khoa database (no khoa tables in it)", .0.display())]
    NotKhoa(PathBuf),
    #[error("the copy failed PRAGMA integrity_check: {0}")]
    Integrity(String),
    #[error("{what}: {source}")]
    Sqlite {
        what: String,
        source: rusqlite::Error,
    },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

/// `map_err` for a failed SQLite call, saying what it was doing.
fn sql(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Sqlite { what, source }
}

/// `map_err` for a failed file operation, saying what it was doing.
fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// Copies the live SQLite database `source` to `target` (see the module doc): a consistent
/// snapshot, verified, renamed into place. Blocking: call it off the async runtime.
///
/// Refuses a missing `source` (it is never created) and, unless `opts.overwrite`, an existing
/// `target`.
pub fn backup_sqlite(
    source: &Path,
    target: &Path,
    opts: &BackupOptions,
) -> Result<BackupReport, BackupError> {
    backup_with(source, target, opts, || std::thread::sleep(opts.pause))
}

/// [`backup_sqlite`] with `between_steps` run after each step that left pages to copy (a
/// pause; in tests, a write by another connection).
fn backup_with(
    source: &Path,
    target: &Path,
    opts: &BackupOptions,
    mut between_steps: impl FnMut(),
) -> Result<BackupReport, BackupError> {
    if !opts.overwrite && target.exists() {
        return Err(BackupError::TargetExists(target.to_owned()));
    }
    if !source.is_file() {
        return Err(BackupError::NoDatabase(source.to_owned()));
    }
    // READ_WRITE without CREATE: a missing file is an error, never a new empty database.
    // Write access only because a WAL reader may have to create the `-shm` index.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(format!("opening {}", source.display())))?;
    src.busy_timeout(opts.busy_timeout)
        .map_err(sql("setting the busy timeout"))?;
    // The read transaction that pins the snapshot (module doc); the first read starts it.
    src.execute_batch("BEGIN")
        .map_err(sql("starting the read transaction"))?;
    let khoa_tables: i64 = src
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'signing_keys'",
            [],
            |row| row.get(0),
        )
        .map_err(sql(format!("reading {}", source.display())))?;
    if khoa_tables == 0 {
        return Err(BackupError::NotKhoa(source.to_owned()));
    }

    let partial = partial_path(target);
    let copied = copy_to(&src, &partial, opts, &mut between_steps).and_then(|(pages, steps)| {
        verify(&partial)?;
        sync_file(&partial)?;
        if !opts.overwrite && target.exists() {
            return Err(BackupError::TargetExists(target.to_owned()));
        }
        fs::rename(&partial, target).map_err(io_err(format!(
            "renaming {} to {}",
            partial.display(),
            target.display()
        )))?;
        sync_parent(target)?;
        Ok((pages, steps))
    });
    let (pages, steps) = match copied {
        Ok(done) => done,
        Err(e) => {
            for leftover in ["", "-journal", "-wal", "-shm"].map(|s| sidecar(&partial, s)) {
                let _ = fs::remove_file(leftover);
            }
            return Err(e);
        }
    };
    // Ends the read transaction: the writer's checkpoints may pass the snapshot again.
    drop(src);
    let bytes = fs::metadata(target)
        .map_err(io_err(format!("reading the size of {}", target.display())))?
        .len();
    Ok(BackupReport {
        path: target.to_owned(),
        bytes,
        pages,
        steps,
    })
}

/// `.NAME.partial-PID` beside `target`: the same directory, so that the rename is atomic.
fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The page copy into a new file at `partial`; (pages, steps).
fn copy_to(
    src: &Connection,
    partial: &Path,
    opts: &BackupOptions,
    between_steps: &mut impl FnMut(),
) -> Result<(u64, u64), BackupError> {
    // Created here, owner-only: the copy holds password hashes and encrypted keys.
    let mut create = OpenOptions::new();
    create.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    create
        .open(partial)
        .map_err(io_err(format!("creating {}", partial.display())))?;
    let mut dst = Connection::open_with_flags(
        partial,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(format!("opening {}", partial.display())))?;
    let pages_per_step = i32::try_from(opts.pages_per_step.max(1)).unwrap_or(i32::MAX);
    let mut steps = 0u64;
    let pages = {
        let backup = Backup::new(src, &mut dst).map_err(sql("starting the backup"))?;
        loop {
            let step = backup.step(pages_per_step).map_err(sql("copying pages"))?;
            steps += 1;
            match step {
                StepResult::Done => break,
                // More, or a transient lock: either way, let the writer have the disk a while.
                _ => between_steps(),
            }
        }
        u64::try_from(backup.progress().pagecount).unwrap_or_default()
    };
    // A self-contained file: the copy carries the source's WAL flag in its header; as a
    // rollback-journal database it has no `-wal` beside it to lose. khoa switches it back to
    // WAL when it opens it.
    dst.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(sql("setting the copy's journal mode"))?;
    dst.close().map_err(|(_, e)| sql("closing the copy")(e))?;
    Ok((pages, steps))
}

/// `PRAGMA integrity_check` on the copy, through a connection of its own.
fn verify(path: &Path) -> Result<(), BackupError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sql(format!("opening {}", path.display())))?;
    let mut check = conn
        .prepare("PRAGMA integrity_check")
        .map_err(sql("preparing the integrity check"))?;
    let lines: Vec<String> = check
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql("running the integrity check"))?;
    if lines != ["ok"] {
        return Err(BackupError::Integrity(lines.join("; ")));
    }
    Ok(())
}

fn sync_file(path: &Path) -> Result<(), BackupError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("syncing {}", path.display())))
}

/// The rename is durable once the directory entry is on disk.
fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A khoa-shaped database (the one table the check looks for) in WAL mode, with `rows`
    /// rows of filler in `t`.
    fn live_db(dir: &Path, rows: usize) -> (PathBuf, Connection) {
        let path = dir.join("khoa.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE signing_keys (kid TEXT PRIMARY KEY); \
             CREATE TABLE t (id INTEGER PRIMARY KEY, filler BLOB NOT NULL);",
        )
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO t (filler) VALUES (zeroblob(1000))")
            .unwrap();
        for _ in 0..rows {
            insert.execute([]).unwrap();
        }
        drop(insert);
        (path, conn)
    }

    fn count(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn commits_between_steps_neither_restart_the_copy_nor_reach_it() {
        let dir = tempfile::tempdir().unwrap();
        let (source, writer) = live_db(dir.path(), 400);
        let target = dir.path().join("copy.db");
        let opts = BackupOptions {
            pages_per_step: 10,
            ..BackupOptions::default()
        };
        let mut commits = 0;

        let report = backup_with(&source, &target, &opts, || {
            writer
                .execute("INSERT INTO t (filler) VALUES (zeroblob(1000))", [])
                .unwrap();
            commits += 1;
        })
        .unwrap();

        // About 100 pages at 10 a step: a restart on every commit would never end, or take
        // far more steps than pages / 10.
        assert!(report.pages >= 100, "{report:?}");
        assert_eq!(report.steps, report.pages.div_ceil(10), "{report:?}");
        assert!(commits >= 9, "the writer committed during the copy");
        assert_eq!(count(&target), 400, "the snapshot as of the copy's start");
        assert_eq!(count(&source), 400 + commits);
        assert_eq!(report.bytes, fs::metadata(&target).unwrap().len());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial") || n.starts_with("copy.db-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "owner-only");
        }
    }

    #[test]
    fn an_existing_target_is_kept_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _writer) = live_db(dir.path(), 3);
        let target = dir.path().join("copy.db");
        fs::write(&target, b"precious").unwrap();

        let err = backup_sqlite(&source, &target, &BackupOptions::default()).unwrap_err();
        assert!(matches!(err, BackupError::TargetExists(_)), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"precious");

        let opts = BackupOptions {
            overwrite: true,
            ..BackupOptions::default()
        };
        backup_sqlite(&source, &target, &opts).unwrap();
        assert_eq!(count(&target), 3);
    }

    #[test]
    fn a_missing_database_is_refused_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("nothing.db");
        let target = dir.path().join("copy.db");

        let err = backup_sqlite(&source, &target, &BackupOptions::default()).unwrap_err();

        assert!(matches!(err, BackupError::NoDatabase(_)), "{err}");
        assert!(!source.exists() && !target.exists());
    }

    #[test]
    fn a_database_without_khoa_tables_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("other.db");
        Connection::open(&source)
            .unwrap()
            .execute_batch("CREATE TABLE x (y)")
            .unwrap();
        let target = dir.path().join("copy.db");

        let err = backup_sqlite(&source, &target, &BackupOptions::default()).unwrap_err();

        assert!(matches!(err, BackupError::NotKhoa(_)), "{err}");
        assert!(!target.exists());
    }
}
