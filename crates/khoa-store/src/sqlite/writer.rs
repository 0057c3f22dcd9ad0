//! Group commit: one task owns the only writing connection and commits many callers' writes in
//! one transaction, so that they share one fsync.
//!
//! SQLite serialises writers anyway; with `synchronous = FULL` each commit costs an fsync, and
//! one transaction per token would cap throughput at the disk's fsync rate. Here the task takes
//! the first queued job, drains whatever else is already queued (up to `batch_max`) and runs
//! them all between `BEGIN IMMEDIATE` and `COMMIT`, each inside its own `SAVEPOINT`, so one
//! failing job (a unique conflict, say) is rolled back alone. Nobody hears back before the
//! `COMMIT` returned: an `Ok` means durable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use khoa_core::store::StoreError;
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::ResultExt;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A handle on the writer task; cheap to clone. The task stops once every handle is gone.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Hands `conn` to a new writer task. The handle is only awaited by tests: in production the
    /// task ends by itself when the stores are dropped.
    pub(crate) fn spawn(conn: SqliteConnection, batch_max: usize) -> (Writer, JoinHandle<()>) {
        // `recv_many` with a limit of 0 would return at once, forever.
        let batch_max = batch_max.max(1);
        // Bounded, so that a disk slower than the request rate pushes back on the callers
        // instead of queueing without limit.
        let (jobs, queue) = mpsc::channel(batch_max * 2);
        let commits = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(conn, queue, batch_max, commits.clone()));
        (Writer { jobs, commits }, task)
    }

    /// Runs `work` on the writer connection inside the next batch's transaction and returns its
    /// result once that transaction committed. An `Err` from `work` rolls back `work` alone.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(work).await?.await.map_err(|_| stopped())?
    }

    /// Queues `work` and returns the receiver of its answer: the first half of
    /// [`Writer::write`], separate so that tests can fill the queue deterministically.
    async fn submit<T, F>(
        &self,
        work: F,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            work: Some(work),
            outcome: None,
            reply,
        });
        self.jobs.send(job).await.map_err(|_| stopped())?;
        Ok(answer)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.jobs.is_closed()
    }

    /// Transactions committed so far; fewer than the writes when group commit works.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by tests; a metric later"))]
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

pub(crate) fn stopped() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

// A job is a boxed async closure over the writer's connection, not an enum of write operations:
// each store method keeps its write SQL next to its reads in its aggregate's file, the writer
// knows nothing but transactions, and a new write needs no new variant. The cost, one
// allocation per write, is nothing next to the fsync it shares.
trait Job: Send {
    /// Runs the write and keeps its result; returns whether it succeeded (if not, its savepoint
    /// must be rolled back).
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool>;
    /// Answers the caller once the fate of the whole batch is known.
    fn answer(self: Box<Self>, batch: &Result<(), StoreError>);
}

struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else {
                return false;
            };
            let outcome = work(conn).await;
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn answer(self: Box<Self>, batch: &Result<(), StoreError>) {
        let answer = match (self.outcome, batch) {
            // Its own failure says more than the batch's.
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(e.clone()),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(StoreError::Other("write job was never run".into())),
        };
        // The caller may have given up (a dropped request); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

async fn run(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    batch_max: usize,
    commits: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(batch_max);
    // `recv_many` waits for one job, then takes whatever else is already queued: under load
    // batches grow by themselves, when idle a lone write commits at once.
    while queue.recv_many(&mut batch, batch_max).await > 0 {
        let outcome = commit_batch(&mut conn, &mut batch).await;
        if outcome.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        tracing::trace!(jobs = batch.len(), ok = outcome.is_ok(), "write batch done");
        for job in batch.drain(..) {
            job.answer(&outcome);
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the writer connection failed");
    }
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    jobs: &mut [Box<dyn Job>],
) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front: a deferred transaction that reads first could
    // fail with SQLITE_BUSY half-way when another process writes the same file.
    exec(conn, "BEGIN IMMEDIATE").await?;
    let outcome = match run_jobs(conn, jobs).await {
        Ok(()) => exec(conn, "COMMIT").await,
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        // A failed COMMIT (a deferred constraint, a full disk) leaves the transaction open; an
        // I/O error may already have rolled it back, so this may fail too, harmlessly.
        let _ = exec(conn, "ROLLBACK").await;
    }
    outcome
}

async fn run_jobs(
    conn: &mut SqliteConnection,
    jobs: &mut [Box<dyn Job>],
) -> Result<(), StoreError> {
    for job in jobs {
        exec(conn, "SAVEPOINT job").await?;
        if !job.run(conn).await {
            exec(conn, "ROLLBACK TO job").await?;
        }
        exec(conn, "RELEASE job").await?;
    }
    Ok(())
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .store_err()
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Connection, Row};

    /// A writer on a private in-memory database with one table `t(k TEXT PRIMARY KEY)`.
    async fn writer(batch_max: usize) -> (Writer, JoinHandle<()>) {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (k TEXT PRIMARY KEY); \
             CREATE TABLE child (p TEXT REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        Writer::spawn(conn, batch_max)
    }

    async fn insert(conn: &mut SqliteConnection, k: String) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO t (k) VALUES (?)")
            .bind(k)
            .execute(conn)
            .await
            .on_unique("k")
            .map(drop)
    }

    async fn keys(w: &Writer) -> Vec<String> {
        w.write(|conn| {
            Box::pin(async move {
                let rows = sqlx::query("SELECT k FROM t ORDER BY k")
                    .fetch_all(conn)
                    .await
                    .store_err()?;
                Ok(rows.iter().map(|r| r.get::<String, _>("k")).collect())
            })
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
            .submit(move |_conn| {
                Box::pin(async move {
                    let _ = started_tx.send(());
                    let _ = gate.await;
                    Ok(())
                })
            })
            .await
            .unwrap();
        started.await.unwrap();
        (release, done)
    }

    #[tokio::test]
    async fn a_failing_job_is_rolled_back_alone_and_the_rest_of_its_batch_commits() {
        let (w, _) = writer(16).await;
        let (release, held) = hold(&w).await;
        let first = w
            .submit(|conn| Box::pin(insert(conn, "a".into())))
            .await
            .unwrap();
        // Writes "b", then collides: "b" must go with it.
        let failing = w
            .submit(|conn| {
                Box::pin(async move {
                    insert(&mut *conn, "b".into()).await?;
                    insert(conn, "a".into()).await
                })
            })
            .await
            .unwrap();
        let last = w
            .submit(|conn| Box::pin(insert(conn, "c".into())))
            .await
            .unwrap();
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(
            failing.await.unwrap(),
            Err(StoreError::Conflict("k".into()))
        );
        assert_eq!(last.await.unwrap(), Ok(()));
        assert_eq!(keys(&w).await, ["a", "c"]);
        // The hold, the batch of three, the read.
        assert_eq!(w.commits(), 3);
    }

    #[tokio::test]
    async fn queued_jobs_share_one_transaction() {
        let (w, _) = writer(256).await;
        let (release, held) = hold(&w).await;
        let mut answers = Vec::new();
        for i in 0..100 {
            answers.push(
                w.submit(move |conn| Box::pin(insert(conn, format!("k{i:03}"))))
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
        assert_eq!(keys(&w).await.len(), 100);
    }

    #[tokio::test]
    async fn concurrent_callers_are_batched() {
        let (w, _) = writer(256).await;
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let w = w.clone();
                tokio::spawn(async move {
                    w.write(move |conn| Box::pin(insert(conn, format!("k{i:03}"))))
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
        let (w, _) = writer(10).await;
        let (release, held) = hold(&w).await;
        let mut answers = Vec::new();
        // Stays under the queue's capacity (2 × batch_max), or `submit` would wait for the hold.
        for i in 0..20 {
            answers.push(
                w.submit(move |conn| Box::pin(insert(conn, format!("k{i:02}"))))
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
    async fn a_failed_commit_fails_every_job_of_the_batch() {
        let (w, _) = writer(16).await;
        let (release, held) = hold(&w).await;
        let fine = w
            .submit(|conn| Box::pin(insert(conn, "a".into())))
            .await
            .unwrap();
        // A deferred foreign key passes the statement and fails the COMMIT.
        let dangling = w
            .submit(|conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO child (p) VALUES ('nobody')")
                        .execute(conn)
                        .await
                        .store_err()
                        .map(drop)
                })
            })
            .await
            .unwrap();
        release.send(()).unwrap();

        held.await.unwrap().unwrap();
        assert!(matches!(fine.await.unwrap(), Err(StoreError::Other(_))));
        assert!(matches!(dangling.await.unwrap(), Err(StoreError::Other(_))));
        assert!(keys(&w).await.is_empty(), "the whole batch was rolled back");
        // And the writer goes on.
        w.write(|conn| Box::pin(insert(conn, "b".into())))
            .await
            .unwrap();
        assert_eq!(keys(&w).await, ["b"]);
    }

    #[tokio::test]
    async fn the_writer_stops_when_the_last_handle_is_dropped() {
        let (w, task) = writer(16).await;
        let other = w.clone();
        w.write(|conn| Box::pin(insert(conn, "a".into())))
            .await
            .unwrap();
        drop(w);
        assert!(!other.is_stopped());
        drop(other);
        task.await.expect("the writer task ends without panicking");
    }
}
