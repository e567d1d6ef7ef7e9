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
/// A job: runs on the write connection; says whether it succeeded, and how to finish.
type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

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
        let (done_tx, done_rx) = oneshot::channel::<Result<T, ApiError>>();
        let boxed: Job = Box::new(move |conn| {
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
        self.tx
            .send(boxed)
            .await
            .map_err(|_| ApiError::unavailable())?;
        done_rx.await.map_err(|_| ApiError::unavailable())?
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = std::time::Instant::now();
        let jobs = batch.len();
        let finishes = run_batch(&mut conn, std::mem::take(&mut batch)).await;
        let committed = finishes.0;
        crate::metrics::batch(jobs, started.elapsed().as_secs_f64(), committed);
        for finish in finishes.1 {
            finish(committed);
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the write connection");
    }
}

fn run_batch(conn: &mut SqliteConnection, batch: Vec<Job>) -> BoxFuture<'_, (bool, Vec<Finish>)> {
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
