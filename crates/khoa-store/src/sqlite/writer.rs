//! Group commit: one thread owns the only writing connection and commits many callers' writes in
//! one transaction, so that they share one fsync.
//!
//! SQLite serialises writers anyway; with `synchronous = FULL` each commit costs an fsync, and
//! one transaction per token would cap throughput at the disk's fsync rate. Here the thread takes
//! the first queued job, drains whatever else is already queued (up to `batch_max`) and runs
//! them all between `BEGIN IMMEDIATE` and `COMMIT`, so that one failing job (a unique
//! conflict, say) is rolled back alone: SQLite undoes a failed statement by itself, and a job
//! of several statements runs inside its own `SAVEPOINT`. Nobody hears back before the `COMMIT`
//! returned: an `Ok` means durable.
//!
//! A thread of its own, not a task, with a synchronous `rusqlite` connection: a batch is a
//! dozen statements or a few hundred, and run from a task each would be a round trip to the
//! driver's worker thread. Here a batch costs two thread switches, the hand-over of the queue
//! and the answers, whatever its size. The thread blocks on the queue when idle and on the
//! disk while committing, which is what it is for.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use khoa_core::store::StoreError;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::ResultExt;

/// A handle on the writer thread; cheap to clone. The thread stops once every handle is gone.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    lazy: Arc<Lazy>,
    counters: Arc<Counters>,
    health: Arc<Health>,
}

/// The padding of a readiness probe: some pages, about what a batch of token writes takes.
const PROBE_BYTES: i64 = 32 * 1024;

/// Whether writes are failing for want of the database (a full disk, an I/O error, a lock held
/// elsewhere): set by a batch that failed so or in which a job failed so, cleared by the next
/// batch that commits with no such failure. Readiness reads it, so that a node whose every
/// write answers 503 tells its load balancer so.
#[derive(Default)]
struct Health {
    failing: Mutex<Option<String>>,
}

impl Health {
    fn failing(&self) -> MutexGuard<'_, Option<String>> {
        // A panic while holding this lock is an assignment: the value is intact.
        self.failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `trouble`: why a job of the batch failed for want of the database, if one did (SQLite
    /// may undo a full disk's statement alone and let the transaction go on).
    fn record(&self, outcome: &Result<(), StoreError>, trouble: Option<String>) {
        match (outcome, trouble) {
            (Err(StoreError::Unavailable(why)), _) => *self.failing() = Some(why.clone()),
            (_, Some(why)) => *self.failing() = Some(why),
            (Ok(()), None) => *self.failing() = None,
            // A constraint or a corrupt row: this batch's fault, not the disk's.
            (Err(_), None) => {}
        }
    }
}

/// What the writer has committed so far: transactions, and the jobs they carried. Their ratio is
/// how well group commit works (one fsync per transaction), exported as metrics.
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    jobs: AtomicU64,
}

/// How long a queued write nobody waits on may linger before it commits on its own, when no
/// durable batch came by to take it along. Long enough that, under load, hundreds of them share
/// one commit (each commit rewrites the pages its rows touch, whole, into the WAL: a batch of
/// one audit row cost as much writer time as a JWT signature); short enough that `khoa audit
/// list` on another process sees an event almost at once.
const LINGER: Duration = Duration::from_millis(25);

/// The queued writes nobody waits on ([`Writer::enqueue`]), kept out of the job queue: every
/// batch takes all of them along, and a timer commits them after [`LINGER`] when no batch does.
struct Lazy {
    jobs: Mutex<Vec<Box<dyn Job>>>,
    /// A wake-up is on its way to the writer (the linger timer or an early one) and the writer
    /// has not taken the jobs since: no need for another.
    wake_pending: AtomicBool,
    /// At this many the writer is woken at once instead of after the linger.
    wake_at: usize,
    /// At this many, further ones go through the bounded job queue and wait for room there:
    /// the back-pressure.
    cap: usize,
}

impl Lazy {
    fn jobs(&self) -> MutexGuard<'_, Vec<Box<dyn Job>>> {
        // A panic while holding this lock is a push or a `mem::take`: the vector is intact.
        self.jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves every lingering job to the front of `batch`, and lets the next enqueue arm a timer.
    ///
    /// The front, because they have waited longest: a write queued after them (a caller that
    /// then reads what it queued) must see them. At the end, a read that reached the job queue
    /// in the instant between two batches ran before the lingering writes it followed.
    fn take_into(&self, batch: &mut Vec<Box<dyn Job>>) {
        let mut jobs = self.jobs();
        self.wake_pending.store(false, Ordering::Relaxed);
        batch.splice(0..0, jobs.drain(..));
    }
}

impl Writer {
    /// Hands `conn` to a new writer thread. The handle is only joined by tests: in production the
    /// thread ends by itself when the stores are dropped.
    pub(crate) fn spawn(
        conn: Connection,
        batch_max: usize,
    ) -> Result<(Writer, thread::JoinHandle<()>), StoreError> {
        // `blocking_recv_many` with a limit of 0 would return at once, forever.
        let batch_max = batch_max.max(1);
        // Bounded, so that a disk slower than the request rate pushes back on the callers
        // instead of queueing without limit.
        let (jobs, queue) = mpsc::channel(batch_max * 2);
        let counters = Arc::new(Counters::default());
        let health = Arc::new(Health::default());
        let lazy = Arc::new(Lazy {
            jobs: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            wake_at: batch_max,
            cap: batch_max * 4,
        });
        let thread = thread::Builder::new()
            .name("khoa-sqlite-writer".into())
            .spawn({
                let (counters, lazy, health) = (counters.clone(), lazy.clone(), health.clone());
                move || run(conn, queue, &lazy, batch_max, &counters, &health)
            })
            .map_err(|e| StoreError::caused("cannot start the writer thread", e))?;
        Ok((
            Writer {
                jobs,
                lazy,
                counters,
                health,
            },
            thread,
        ))
    }

    /// Runs `work` on the writer connection inside the next batch's transaction and returns its
    /// result once that transaction committed. An `Err` from `work` rolls back `work` alone,
    /// through a savepoint around it.
    ///
    /// `work` runs on the writer thread, between other callers' jobs: it must not block on
    /// anything but the database.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let answer = self.submit(Undo::Savepoint, true, work).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// [`Writer::write`] for a `work` that changes the database in one statement and fails only
    /// through it: SQLite undoes a failed statement by itself, and the savepoint would only cost
    /// (it copies every page the job touches). Should `work` fail after a statement that
    /// changed rows all the same, its whole batch fails rather than commit half of it.
    pub(crate) async fn write_one<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let answer = self.submit(Undo::Statement, true, work).await?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues a one-statement `work` for a later batch and returns at once, not once it
    /// committed: for writes nobody waits on (audit events). They linger (see [`LINGER`]) and
    /// ride along with the next batch, sharing its commit and fsync; when none comes, they
    /// commit together on their own, without an fsync (`synchronous = NORMAL`): in WAL mode
    /// they become durable with the next fsynced commit, and until then a crash may lose them,
    /// which is the promise made for them. Without this, a JWT issuance (which stores nothing
    /// itself) would pay a commit for its audit row. Its outcome is never reported; a failure
    /// is logged. Waits only when [`Lazy::cap`] of them are already waiting.
    pub(crate) async fn enqueue<F>(&self, work: F) -> Result<(), StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    {
        let work = move |conn: &Connection| {
            let outcome = work(conn);
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, "a queued write failed");
            }
            outcome
        };
        let (job, _answer) = pending(Undo::Statement, false, work);
        let (overflow, queued) = {
            let mut jobs = self.lazy.jobs();
            if jobs.len() < self.lazy.cap {
                jobs.push(job);
                (None, jobs.len())
            } else {
                (Some(job), jobs.len())
            }
        };
        if let Some(job) = overflow {
            // Too many linger already: this one queues like any write, and waits for room.
            return self.jobs.send(job).await.map_err(|_| stopped());
        }
        if queued == self.lazy.wake_at {
            // A full batch's worth: no point lingering. A full queue means the writer is busy
            // and takes them along with its next batch anyway.
            let _ = self.jobs.try_send(Box::new(Wake));
        }
        if !self.lazy.wake_pending.swap(true, Ordering::Relaxed) {
            let jobs = self.jobs.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LINGER).await;
                // The writer may have stopped meanwhile; then its last act took the jobs.
                let _ = jobs.send(Box::new(Wake)).await;
            });
        }
        Ok(())
    }

    /// Queues `work` and returns the receiver of its answer: the first half of
    /// [`Writer::write`], separate so that tests can fill the queue deterministically.
    async fn submit<T, F>(
        &self,
        undo: Undo,
        durable: bool,
        work: F,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answer) = pending(undo, durable, work);
        // Waits for room when the queue is full: the back-pressure.
        self.jobs.send(job).await.map_err(|_| stopped())?;
        Ok(answer)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Why the last batch failed for want of the database, while no batch has committed since.
    pub(crate) fn failing(&self) -> Option<String> {
        self.health.failing().clone()
    }

    /// A real write: the one row of `readiness_probe` rewritten with [`PROBE_BYTES`] of
    /// padding, committed and fsynced like a token. Larger than a token's write, on purpose: a
    /// nearly full disk with room for a one-page probe but not for a token would otherwise
    /// report ready while every token failed. Its success, like any commit's, clears
    /// [`Writer::failing`]. For readiness, which must find out that writes work again although
    /// the load balancer, told they did not, sends none.
    pub(crate) async fn probe(&self) -> Result<(), StoreError> {
        self.write_one(|conn| {
            conn.prepare_cached(
                "INSERT INTO readiness_probe (id, pad) VALUES (1, zeroblob(?)) \
                 ON CONFLICT (id) DO UPDATE SET pad = excluded.pad",
            )
            .and_then(|mut probe| probe.execute([PROBE_BYTES]))
            .store_err()
            .map(drop)
        })
        .await
    }

    /// Transactions committed so far; fewer than the writes when group commit works.
    pub(crate) fn commits(&self) -> u64 {
        self.counters.commits.load(Ordering::Relaxed)
    }

    /// Jobs those transactions carried: every durable write, and one per batch of queued audit
    /// events.
    pub(crate) fn jobs_committed(&self) -> u64 {
        self.counters.jobs.load(Ordering::Relaxed)
    }
}

pub(crate) fn stopped() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

// A job is a boxed closure over the writer's connection, not an enum of write operations: each
// store method keeps its write SQL next to its reads in its aggregate's file, the writer knows
// nothing but transactions, and a new write needs no new variant. The cost, one allocation per
// write, is nothing next to the fsync it shares.
/// A job for the queue, and the receiver of its answer.
#[allow(clippy::type_complexity, reason = "spelled out once, here")]
fn pending<T, F>(
    undo: Undo,
    durable: bool,
    work: F,
) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Box::new(Pending {
        undo,
        durable,
        work: Some(work),
        outcome: None,
        reply,
    });
    (job, answer)
}

trait Job: Send {
    /// A [`Wake`]: nothing to run, only a reason to look at the lingering jobs.
    fn is_wake(&self) -> bool {
        false
    }
    fn undo(&self) -> Undo;
    /// Whether its caller waits for it to be durable (every write but queued audit events).
    fn durable(&self) -> bool;
    /// Runs the write and keeps its result; returns its error, if any, for the writer to decide
    /// what must be rolled back.
    fn run(&mut self, conn: &Connection) -> Result<(), StoreError>;
    /// Answers the caller once the fate of the whole batch is known.
    fn answer(self: Box<Self>, batch: &Result<(), StoreError>);
}

/// Sent by [`Writer::enqueue`] so that the writer, blocked on an empty queue, takes the
/// lingering jobs.
struct Wake;

impl Job for Wake {
    fn is_wake(&self) -> bool {
        true
    }
    fn undo(&self) -> Undo {
        Undo::Statement
    }
    fn durable(&self) -> bool {
        false
    }
    fn run(&mut self, _conn: &Connection) -> Result<(), StoreError> {
        Ok(())
    }
    fn answer(self: Box<Self>, _batch: &Result<(), StoreError>) {}
}

/// How a failed job's changes are undone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Undo {
    /// By SQLite itself: the job's one statement failed and took its changes with it.
    Statement,
    /// By `ROLLBACK TO` the savepoint taken before the job.
    Savepoint,
}

struct Pending<T, F> {
    undo: Undo,
    durable: bool,
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn undo(&self) -> Undo {
        self.undo
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn run(&mut self, conn: &Connection) -> Result<(), StoreError> {
        let Some(work) = self.work.take() else {
            return Err(StoreError::other("write job run twice"));
        };
        let outcome = work(conn);
        let status = match &outcome {
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        self.outcome = Some(outcome);
        status
    }

    fn answer(self: Box<Self>, batch: &Result<(), StoreError>) {
        let answer = match (self.outcome, batch) {
            // Its own failure says more than the batch's.
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(e.clone()),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(StoreError::other("write job was never run")),
        };
        // The caller may have given up (a dropped request); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

fn run(
    conn: Connection,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    lazy: &Lazy,
    batch_max: usize,
    counters: &Counters,
    health: &Health,
) {
    let mut batch = Vec::with_capacity(batch_max);
    // Waits for one job, then takes whatever else is already queued: under load batches grow
    // by themselves, when idle a lone write commits at once. `None` once every handle is gone.
    while queue.blocking_recv_many(&mut batch, batch_max) > 0 {
        batch.retain(|job| !job.is_wake());
        // Every batch takes the lingering jobs along: they share its commit.
        lazy.take_into(&mut batch);
        commit(&conn, &mut batch, counters, health);
    }
    // The last handle is gone: whatever still lingers commits now, or never.
    lazy.take_into(&mut batch);
    commit(&conn, &mut batch, counters, health);
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the writer connection failed");
    }
}

/// Commits `batch` (if it holds anything) and answers its jobs, leaving it empty.
fn commit(conn: &Connection, batch: &mut Vec<Box<dyn Job>>, counters: &Counters, health: &Health) {
    if batch.is_empty() {
        return;
    }
    let mut trouble = None;
    let outcome = commit_batch(conn, batch, &mut trouble);
    // Before anyone hears: a caller answered 503 finds readiness failing already.
    health.record(&outcome, trouble);
    if outcome.is_ok() {
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters
            .jobs
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    tracing::trace!(jobs = batch.len(), ok = outcome.is_ok(), "write batch done");
    for job in batch.drain(..) {
        job.answer(&outcome);
    }
}

fn commit_batch(
    conn: &Connection,
    jobs: &mut [Box<dyn Job>],
    trouble: &mut Option<String>,
) -> Result<(), StoreError> {
    // Nobody waits on a batch of queued writes only: no fsync for it (see `Writer::enqueue`).
    // PRAGMA synchronous cannot change inside a transaction, hence around it.
    let lazy = jobs.iter().all(|job| !job.durable());
    if lazy {
        exec(conn, "PRAGMA synchronous = NORMAL")?;
    }
    let outcome = commit_batch_synced(conn, jobs, trouble);
    if lazy {
        exec(conn, "PRAGMA synchronous = FULL")?;
    }
    outcome
}

fn commit_batch_synced(
    conn: &Connection,
    jobs: &mut [Box<dyn Job>],
    trouble: &mut Option<String>,
) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front: a deferred transaction that reads first could
    // fail with SQLITE_BUSY half-way when another process writes the same file.
    exec(conn, "BEGIN IMMEDIATE")?;
    let outcome = run_jobs(conn, jobs, trouble).and_then(|()| exec(conn, "COMMIT"));
    // A failed COMMIT (a deferred constraint, a full disk) leaves the transaction open, unless
    // SQLite already rolled it back (an I/O error).
    if outcome.is_err() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    outcome
}

fn run_jobs(
    conn: &Connection,
    jobs: &mut [Box<dyn Job>],
    trouble: &mut Option<String>,
) -> Result<(), StoreError> {
    for job in jobs {
        let undo = job.undo();
        if undo == Undo::Savepoint {
            exec(conn, "SAVEPOINT job")?;
        }
        // Rows changed by statements that completed; a failed statement adds none.
        let changes_before = conn.total_changes();
        let Err(e) = job.run(conn) else {
            if undo == Undo::Savepoint {
                exec(conn, "RELEASE job")?;
            }
            continue;
        };
        if let StoreError::Unavailable(why) = &e {
            *trouble = Some(why.clone());
        }
        if conn.is_autocommit() {
            // SQLite rolled back the whole transaction itself (a full disk, an I/O error): the
            // jobs before this one are lost with it, and those after must not run outside a
            // transaction. The others hear why, but not as a conflict of theirs.
            return Err(batch_error("rolled the transaction back", e));
        }
        match undo {
            Undo::Savepoint => {
                exec(conn, "ROLLBACK TO job")?;
                exec(conn, "RELEASE job")?;
            }
            // Nothing of the job is left, as promised: the batch goes on.
            Undo::Statement if conn.total_changes() == changes_before => {}
            // A statement of the job completed before it failed, and without a savepoint only
            // the whole transaction can take it back.
            Undo::Statement => {
                return Err(batch_error("failed half-way without a savepoint", e));
            }
        }
    }
    Ok(())
}

/// What the other jobs of a batch hear when one job's failure costs them their transaction.
fn batch_error(what: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(_) => e,
        // Not `Conflict`: their own rows collided with nothing.
        other => StoreError::caused(format!("a write of the same batch {what}"), other),
    }
}

fn exec(conn: &Connection, sql: &'static str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .store_err()
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on a private in-memory database with a table `t(k TEXT PRIMARY KEY)` and a
    /// `child` whose foreign key is only checked at COMMIT.
    fn writer(batch_max: usize) -> (Writer, thread::JoinHandle<()>) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; \
             CREATE TABLE t (k TEXT PRIMARY KEY); \
             CREATE TABLE child (p TEXT REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        conn.execute_batch(include_str!(
            "../../migrations/sqlite/0008_readiness_probe.sql"
        ))
        .unwrap();
        Writer::spawn(conn, batch_max).unwrap()
    }

    fn insert(conn: &Connection, k: &str) -> Result<(), StoreError> {
        conn.prepare_cached("INSERT INTO t (k) VALUES (?)")
            .and_then(|mut insert| insert.execute([k]))
            .on_unique("k")
            .map(drop)
    }

    async fn keys(w: &Writer) -> Vec<String> {
        w.write(|conn| {
            let mut select = conn.prepare("SELECT k FROM t ORDER BY k").store_err()?;
            let rows = select.query_map([], |row| row.get(0)).store_err()?;
            rows.collect::<Result<_, _>>().store_err()
        })
        .await
        .unwrap()
    }

    /// Occupies the writer until the returned sender fires, so that the jobs submitted meanwhile
    /// are all queued when the next batch starts: deterministic batching without sleeps.
    async fn hold(
        w: &Writer,
    ) -> (
        oneshot::Sender<()>,
        oneshot::Receiver<Result<(), StoreError>>,
    ) {
        let (started_tx, started) = oneshot::channel();
        let (release, gate) = oneshot::channel::<()>();
        let done = w
            .submit(Undo::Statement, true, move |_conn| {
                let _ = started_tx.send(());
                // The writer's own thread, not the runtime's: blocking is allowed here.
                let _ = gate.blocking_recv();
                Ok(())
            })
            .await
            .unwrap();
        started.await.unwrap();
        (release, done)
    }

    #[tokio::test]
    async fn a_full_database_marks_writes_failing_until_a_write_commits_again() {
        let (w, _thread) = writer(8);
        assert_eq!(w.failing(), None);

        // The database may not grow: an insert needing a new page fails with SQLITE_FULL.
        let refused = w
            .write(|conn| {
                let pages: i64 = conn
                    .query_row("PRAGMA page_count", [], |row| row.get(0))
                    .store_err()?;
                conn.execute_batch(&format!("PRAGMA max_page_count = {pages}"))
                    .store_err()?;
                let big = "x".repeat(64 * 1024);
                insert(conn, &big)
            })
            .await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(w.failing().is_some(), "readiness would not know");

        // Room again: the next batch commits, and clears it.
        w.write_one(|conn| {
            conn.execute_batch("PRAGMA max_page_count = 1000000")
                .store_err()
        })
        .await
        .unwrap();
        insert_via(&w, "after").await.unwrap();
        assert_eq!(w.failing(), None);
        w.probe().await.unwrap();
        assert_eq!(w.failing(), None);
    }

    async fn insert_via(w: &Writer, k: &'static str) -> Result<(), StoreError> {
        w.write_one(move |conn| insert(conn, k)).await
    }

    fn synchronous(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_batch_of_queued_writes_alone_commits_without_fsync_and_the_next_one_with() {
        let (w, _thread) = writer(8);
        let (seen, mut saw) = mpsc::unbounded_channel();

        let before = w.write_one(|conn| Ok(synchronous(conn))).await.unwrap();
        w.enqueue(move |conn| {
            let _ = seen.send(synchronous(conn));
            insert(conn, "queued")
        })
        .await
        .unwrap();
        let during = saw.recv().await.unwrap();
        let after = w
            .write_one(|conn| {
                let n: i64 = conn
                    .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                    .unwrap();
                Ok((synchronous(conn), n))
            })
            .await
            .unwrap();

        assert_eq!(before, 2, "FULL for a batch somebody waits on");
        assert_eq!(during, 1, "NORMAL for a batch of queued writes only");
        assert_eq!(after, (2, 1), "FULL again, and the queued row committed");
    }

    #[tokio::test(start_paused = true)]
    async fn queued_writes_ride_along_with_the_next_batch() {
        let (w, _thread) = writer(256);
        for i in 0..50 {
            w.enqueue(move |conn| insert(conn, &format!("q{i:02}")))
                .await
                .unwrap();
        }
        assert_eq!(w.commits(), 0, "nothing commits while they linger");

        w.write_one(|conn| insert(conn, "durable")).await.unwrap();

        assert_eq!(
            w.commits(),
            1,
            "the fifty shared the durable write's commit"
        );
        assert_eq!(keys(&w).await.len(), 51);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_of_queued_writes_wakes_the_writer_without_waiting_for_the_linger() {
        let (w, _thread) = writer(4);
        // Busy writer: what is sent to it stays in its queue, where we can count it.
        let (release, held) = hold(&w).await;
        let in_queue = |w: &Writer| w.jobs.max_capacity() - w.jobs.capacity();
        for i in 0..3 {
            w.enqueue(move |conn| insert(conn, &format!("q{i}")))
                .await
                .unwrap();
        }
        assert_eq!(in_queue(&w), 0, "three linger; the timer has not fired");
        w.enqueue(|conn| insert(conn, "q3")).await.unwrap();
        assert_eq!(
            in_queue(&w),
            1,
            "the fourth fills a batch: a wake-up at once"
        );
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(keys(&w).await.len(), 4);
    }

    #[tokio::test]
    async fn queued_writes_beyond_the_cap_wait_in_the_bounded_queue() {
        let (w, _thread) = writer(2);
        let (release, held) = hold(&w).await;
        // Cap 4 × 2 linger; the next ones take the job queue (capacity 2 × 2, one Wake in it).
        for i in 0..10 {
            w.enqueue(move |conn| insert(conn, &format!("q{i}")))
                .await
                .unwrap();
        }
        assert_eq!(w.lazy.jobs().len(), 8, "no more than the cap linger");
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert_eq!(keys(&w).await.len(), 10, "none was lost");
    }

    #[tokio::test]
    async fn lingering_writes_commit_when_the_last_handle_is_dropped() {
        let (w, thread) = writer(256);
        let (seen, mut saw) = mpsc::unbounded_channel();
        w.enqueue(move |conn| {
            let _ = seen.send(());
            insert(conn, "last")
        })
        .await
        .unwrap();
        drop(w);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            saw.recv().await,
            Some(()),
            "the lingering write ran before the end"
        );
    }

    #[tokio::test]
    async fn a_failing_job_is_rolled_back_alone_and_the_rest_of_its_batch_commits() {
        let (w, _) = writer(16);
        let (release, held) = hold(&w).await;
        let first = w
            .submit(Undo::Statement, true, |conn| insert(conn, "a"))
            .await
            .unwrap();
        // Writes "b", then collides: its savepoint takes "b" back.
        let failing = w
            .submit(Undo::Savepoint, true, |conn| {
                insert(conn, "b")?;
                insert(conn, "a")
            })
            .await
            .unwrap();
        // Collides at once: SQLite takes the statement back by itself.
        let colliding = w
            .submit(Undo::Statement, true, |conn| insert(conn, "a"))
            .await
            .unwrap();
        let last = w
            .submit(Undo::Statement, true, |conn| insert(conn, "c"))
            .await
            .unwrap();
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(
            failing.await.unwrap(),
            Err(StoreError::Conflict("k".into()))
        );
        assert_eq!(
            colliding.await.unwrap(),
            Err(StoreError::Conflict("k".into()))
        );
        assert_eq!(last.await.unwrap(), Ok(()));
        assert_eq!(keys(&w).await, ["a", "c"]);
        // The hold, the batch of four, the read.
        assert_eq!(w.commits(), 3);
    }

    #[tokio::test]
    async fn queued_jobs_share_one_transaction() {
        let (w, _) = writer(256);
        let (release, held) = hold(&w).await;
        let mut answers = Vec::new();
        for i in 0..100 {
            answers.push(
                w.submit(Undo::Statement, true, move |conn| {
                    insert(conn, &format!("k{i:03}"))
                })
                .await
                .unwrap(),
            );
        }
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        for answer in answers {
            assert_eq!(answer.await.unwrap(), Ok(()));
        }
        assert_eq!(w.commits(), 2, "the hold, then all hundred writes at once");
        assert_eq!(w.jobs_committed(), 101);
        assert_eq!(keys(&w).await.len(), 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_are_batched() {
        let (w, _) = writer(256);
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.write_one(move |conn| insert(conn, &format!("k{i:03}")))
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(()));
        }
        assert!(w.commits() < 100, "{} commits for 100 writes", w.commits());
        assert_eq!(keys(&w).await.len(), 100);
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_batch_max() {
        let (w, _) = writer(10);
        let (release, held) = hold(&w).await;
        let mut answers = Vec::new();
        // Stays under the queue's capacity (2 × batch_max), or `submit` would wait for the hold.
        for i in 0..20 {
            answers.push(
                w.submit(Undo::Statement, true, move |conn| {
                    insert(conn, &format!("k{i:02}"))
                })
                .await
                .unwrap(),
            );
        }
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        for answer in answers {
            answer.await.unwrap().unwrap();
        }
        assert_eq!(w.commits(), 3, "the hold, then two batches of ten");
    }

    #[tokio::test]
    async fn a_full_queue_makes_callers_wait_for_room() {
        let (w, _) = writer(1);
        let (release, held) = hold(&w).await;
        // Capacity 2 × batch_max: two jobs fit behind the hold, the third must wait.
        let queued = [
            w.submit(Undo::Statement, true, |conn| insert(conn, "a"))
                .await
                .unwrap(),
            w.submit(Undo::Statement, true, |conn| insert(conn, "b"))
                .await
                .unwrap(),
        ];
        let third = w.submit(Undo::Statement, true, |conn| insert(conn, "c"));
        tokio::pin!(third);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            third.as_mut().poll(&mut cx).is_pending(),
            "the third write waits while the queue is full"
        );
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        let third = third.await.unwrap();
        for answer in queued {
            answer.await.unwrap().unwrap();
        }
        third.await.unwrap().unwrap();
        assert_eq!(keys(&w).await, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_job_of_the_batch() {
        let (w, _) = writer(16);
        let (release, held) = hold(&w).await;
        let fine = w
            .submit(Undo::Statement, true, |conn| insert(conn, "a"))
            .await
            .unwrap();
        // A deferred foreign key passes the statement and fails the COMMIT.
        let dangling = w
            .submit(Undo::Statement, true, |conn| {
                conn.execute("INSERT INTO child (p) VALUES ('nobody')", [])
                    .store_err()
                    .map(drop)
            })
            .await
            .unwrap();
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        assert!(matches!(fine.await.unwrap(), Err(StoreError::Other(_))));
        assert!(matches!(dangling.await.unwrap(), Err(StoreError::Other(_))));
        assert!(keys(&w).await.is_empty(), "the whole batch was rolled back");
        // And the writer goes on.
        w.write_one(|conn| insert(conn, "b")).await.unwrap();
        assert_eq!(keys(&w).await, ["b"]);
    }

    #[tokio::test]
    async fn a_job_that_ends_the_transaction_fails_its_whole_batch() {
        let (w, _) = writer(16);
        let (release, held) = hold(&w).await;
        let before = w
            .submit(Undo::Statement, true, |conn| insert(conn, "a"))
            .await
            .unwrap();
        // OR ROLLBACK: SQLite answers the conflict by rolling back the whole transaction, as it
        // does on a full disk or an I/O error.
        let ender = w
            .submit(Undo::Statement, true, |conn| {
                conn.execute("INSERT OR ROLLBACK INTO t (k) VALUES ('a')", [])
                    .on_unique("k")
                    .map(drop)
            })
            .await
            .unwrap();
        let after = w
            .submit(Undo::Statement, true, |conn| insert(conn, "c"))
            .await
            .unwrap();
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        assert_eq!(ender.await.unwrap(), Err(StoreError::Conflict("k".into())));
        // Not `Conflict`: their own rows collided with nothing.
        assert!(matches!(before.await.unwrap(), Err(StoreError::Other(_))));
        assert!(matches!(after.await.unwrap(), Err(StoreError::Other(_))));
        assert!(
            keys(&w).await.is_empty(),
            "nothing committed, not even outside a transaction"
        );
        // The hold and the read only.
        assert_eq!(w.commits(), 2);
    }

    #[tokio::test]
    async fn a_job_without_savepoint_that_fails_half_way_fails_its_whole_batch() {
        let (w, _) = writer(16);
        let (release, held) = hold(&w).await;
        let before = w
            .submit(Undo::Statement, true, |conn| insert(conn, "a"))
            .await
            .unwrap();
        // Breaks the promise of `write_one`: "b" goes in, then the second statement fails.
        let half = w
            .submit(Undo::Statement, true, |conn| {
                insert(conn, "b")?;
                insert(conn, "a")
            })
            .await
            .unwrap();
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        assert_eq!(half.await.unwrap(), Err(StoreError::Conflict("k".into())));
        assert!(matches!(before.await.unwrap(), Err(StoreError::Other(_))));
        assert!(keys(&w).await.is_empty(), "no half of a job was committed");
        w.write_one(|conn| insert(conn, "c")).await.unwrap();
        assert_eq!(keys(&w).await, ["c"]);
    }

    #[tokio::test]
    async fn the_writer_stops_when_the_last_handle_is_dropped() {
        let (w, thread) = writer(16);
        let other = w.clone();
        w.write_one(|conn| insert(conn, "a")).await.unwrap();
        drop(w);
        assert!(!other.is_stopped());
        drop(other);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap()
            .expect("the writer thread ends without panicking");
    }
}
