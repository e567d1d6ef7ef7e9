//! Group commit: one task owns the only write connection and runs every write job, many jobs to
//! a transaction. Each job runs inside its own savepoint, so a failing job rolls back alone; a job
//! is acknowledged only after the transaction that holds it has committed (WAL,
//! `synchronous=FULL`), so a 2xx is never sent for anything a crash could lose.
//!
//! The writer is also the one place where committed changes are applied to in-memory state
//! (`on_commit`), in commit order.

use std::future::Future;
use std::pin::Pin;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::twilio::ApiError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Called once the job's transaction has ended: `true` if it committed.
type Finish = Box<dyn FnOnce(bool) + Send>;
/// A job's body: runs on the write connection; says whether it succeeded, and how to finish.
type JobFn =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

enum Job {
    /// Shares a transaction (begun and committed by the writer) with the jobs around it.
    Batched(JobFn),
    /// Runs alone and brings its own `BEGIN IMMEDIATE … COMMIT` (in one multi-statement query:
    /// one round trip to the connection's worker thread instead of three or more).
    Solo(JobFn),
}

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 1024;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub fn spawn(conn: SqliteConnection) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>(8192);
        let handle = tokio::spawn(run(conn, rx));
        (Self { tx }, handle)
    }

    /// Runs `job` in the next transaction; after commit runs `on_commit` with its result (in
    /// commit order), then returns it.
    pub async fn write<T, F, A>(&self, job: F, on_commit: A) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, ApiError>>
            + Send
            + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (job, done) = boxed(job, on_commit);
        self.tx
            .send(Job::Batched(job))
            .await
            .map_err(|_| ApiError::unavailable())?;
        done.await.map_err(|_| ApiError::unavailable())?
    }

    /// Queues `job`, which must begin and commit its own transaction (`BEGIN IMMEDIATE; …;
    /// COMMIT` as one query), and returns at once; the receiver answers once it has committed
    /// (`Ok`) or failed. Whatever it leaves open on failure is rolled back.
    pub async fn write_solo<F>(&self, job: F) -> oneshot::Receiver<Result<(), ApiError>>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<(), ApiError>>
            + Send
            + 'static,
    {
        let (job, done) = boxed(job, |_| {});
        // If the writer is gone, `done` is dropped with the job and the receiver says so.
        let _ = self.tx.send(Job::Solo(job)).await;
        done
    }
}

fn boxed<T, F, A>(job: F, on_commit: A) -> (JobFn, oneshot::Receiver<Result<T, ApiError>>)
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, ApiError>>
        + Send
        + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel::<Result<T, ApiError>>();
    let boxed: JobFn = Box::new(move |conn| {
        Box::pin(async move {
            let result = job(conn).await;
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |committed| {
                let outcome = match result {
                    Ok(value) if committed => {
                        on_commit(&value);
                        Ok(value)
                    }
                    Ok(_) => Err(ApiError::internal("the transaction did not commit")),
                    Err(e) => Err(e),
                };
                let _ = done_tx.send(outcome);
            });
            (ok, finish)
        })
    });
    (boxed, done_rx)
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    let mut received: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        // In arrival order: each run of batched jobs shares one transaction; a solo job runs
        // alone between them.
        let mut jobs = std::mem::take(&mut received).into_iter().peekable();
        while jobs.peek().is_some() {
            let mut group = Vec::new();
            while let Some(Job::Batched(_)) = jobs.peek() {
                if let Some(Job::Batched(job)) = jobs.next() {
                    group.push(job);
                }
            }
            if !group.is_empty() {
                let started = std::time::Instant::now();
                let count = group.len();
                let (committed, finishes) = run_batch(&mut conn, group).await;
                crate::metrics::batch(count, started.elapsed().as_secs_f64(), committed);
                for finish in finishes {
                    finish(committed);
                }
            }
            if let Some(Job::Solo(job)) = jobs.next_if(|j| matches!(j, Job::Solo(_))) {
                let started = std::time::Instant::now();
                let (ok, finish) = job(&mut conn).await;
                if !ok {
                    // It may have failed inside its transaction; "no transaction is active"
                    // otherwise, which is fine.
                    let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
                }
                crate::metrics::batch(1, started.elapsed().as_secs_f64(), ok);
                finish(ok);
            }
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the write connection");
    }
}

fn run_batch(conn: &mut SqliteConnection, batch: Vec<JobFn>) -> BoxFuture<'_, (bool, Vec<Finish>)> {
    Box::pin(async move {
        let mut finishes = Vec::with_capacity(batch.len());
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
            tracing::error!(error = %e, "cannot begin a write transaction");
            // Run nothing: every job is answered with an internal error.
            for job in batch {
                drop(job);
            }
            return (false, finishes);
        }
        // A job alone in its transaction needs no savepoint: if it fails, the whole transaction
        // is rolled back. (Each statement is a round trip to the connection's worker thread.)
        if batch.len() == 1 {
            let job = batch.into_iter().next().expect("one job");
            let (ok, finish) = job(conn).await;
            finishes.push(finish);
            if !ok {
                // The job's own error is its answer (finish passes it through); only a failed
                // rollback is a database error.
                let rolled_back = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                if let Err(e) = &rolled_back {
                    tracing::error!(error = %e, "rolling back a failed job");
                }
                return (rolled_back.is_ok(), finishes);
            }
        } else {
            for job in batch {
                if let Err(e) = sqlx::query("SAVEPOINT job").execute(&mut *conn).await {
                    tracing::error!(error = %e, "savepoint");
                }
                let (ok, finish) = job(conn).await;
                if !ok {
                    if let Err(e) = sqlx::query("ROLLBACK TO job").execute(&mut *conn).await {
                        tracing::error!(error = %e, "rolling back a savepoint");
                    }
                }
                if let Err(e) = sqlx::query("RELEASE job").execute(&mut *conn).await {
                    tracing::error!(error = %e, "releasing a savepoint");
                }
                finishes.push(finish);
            }
        }
        match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => (true, finishes),
            Err(e) => {
                tracing::error!(error = %e, "commit failed");
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                (false, finishes)
            }
        }
    })
}
