//! The SQLite engine's writer: one task owns the only write connection, decides every
//! verification change in arrival order, and commits many to a transaction (group commit).
//!
//! Two kinds of job, run in arrival order:
//! - a *decision* (`decide`): runs on this task against the committed cache plus the changes the
//!   earlier decisions of its batch made (`Batch`), with the pure core; it returns its answer and
//!   leaves the rows to persist in the batch. The batch's rows are written as one transaction of
//!   multi-row statements; only after `COMMIT` is the batch's overlay published to the cache and
//!   each decision answered. A failed batch is dropped with its overlay: memory stays exactly as
//!   the database is, and every decision of the batch answers an error.
//! - a *statement job* (`write`: configuration, maintenance): runs its statements in a
//!   transaction shared with the jobs around it, each in its own savepoint (a failing job rolls
//!   back alone); after commit, its `on_commit` applies the change to in-memory state, in commit
//!   order.
//!
//! Nothing is acknowledged before the transaction that holds it has committed (WAL,
//! `synchronous=FULL`), so a 2xx is never sent for anything a crash could lose.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::cache::{Cache, Overlay};
use crate::core::{Admission, Attempt, Verification};
use crate::store::StoreError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Called once the job's transaction has ended: `true` if it committed.
type Finish = Box<dyn FnOnce(bool) + Send>;
/// A job's body: runs on the write connection; says whether it succeeded, and how to finish.
type JobFn =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

/// A decision: decides against the batch, and returns how to answer once the batch has ended
/// (`true`: committed).
type DecideFn = Box<dyn FnOnce(&mut Batch<'_>) -> Finish + Send>;

enum Job {
    /// Shares a transaction (begun and committed by the writer) with the jobs around it.
    Batched(JobFn),
    Decide(DecideFn),
}

/// A verification state to save, with its new send attempt (if any) and the admissions that
/// let it through.
pub type SaveItem = (Verification, Option<Attempt>, Vec<Admission>);

/// A batch of decisions being made: the committed cache, the batch's changes over it, and the
/// rows to write.
pub struct Batch<'a> {
    pub cache: &'a Cache,
    pub overlay: Overlay,
    rows: Vec<SaveItem>,
}

impl Batch<'_> {
    pub fn save(&mut self, item: SaveItem) {
        self.rows.push(item);
    }
}

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 1024;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub fn spawn(conn: SqliteConnection, cache: Arc<Cache>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>(8192);
        let handle = tokio::spawn(run(conn, cache, rx));
        (Self { tx }, handle)
    }

    /// Decides with `decide` in the next batch of decisions; answers once that batch has
    /// committed. An error if it did not (nothing of it is then in the database or the cache).
    pub async fn decide<T, F>(&self, decide: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> T + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: DecideFn = Box::new(move |batch| {
            let out = decide(batch);
            Box::new(move |committed| {
                let _ = done_tx.send(if committed {
                    Ok(out)
                } else {
                    Err(StoreError::NotCommitted)
                });
            })
        });
        self.tx
            .send(Job::Decide(job))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        done_rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Runs `job` in the next transaction; after commit runs `on_commit` with its result (in
    /// commit order), then returns it.
    pub async fn write<T, F, A>(&self, job: F, on_commit: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (job, done) = boxed(job, on_commit);
        self.tx
            .send(Job::Batched(job))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        done.await.map_err(|_| StoreError::Unavailable)?
    }
}

fn boxed<T, F, A>(job: F, on_commit: A) -> (JobFn, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
        + Send
        + 'static,
    A: FnOnce(&T) + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel::<Result<T, StoreError>>();
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
                    Ok(_) => Err(StoreError::NotCommitted),
                    Err(e) => Err(e),
                };
                let _ = done_tx.send(outcome);
            });
            (ok, finish)
        })
    });
    (boxed, done_rx)
}

async fn run(mut conn: SqliteConnection, cache: Arc<Cache>, mut rx: mpsc::Receiver<Job>) {
    let mut received: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        // In arrival order: each run of statement jobs shares one transaction, and so does each
        // run of decisions.
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
            let mut decisions = Vec::new();
            while let Some(Job::Decide(_)) = jobs.peek() {
                if let Some(Job::Decide(job)) = jobs.next() {
                    decisions.push(job);
                }
            }
            if !decisions.is_empty() {
                run_decisions(&mut conn, &cache, decisions).await;
            }
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the write connection");
    }
}

/// Decides each job in order over one overlay, writes all their rows in one transaction, and
/// publishes the overlay only once it has committed.
async fn run_decisions(conn: &mut SqliteConnection, cache: &Cache, jobs: Vec<DecideFn>) {
    let started = std::time::Instant::now();
    let count = jobs.len();
    let mut batch = Batch {
        cache,
        overlay: Overlay::default(),
        rows: Vec::new(),
    };
    let finishes: Vec<Finish> = jobs.into_iter().map(|job| job(&mut batch)).collect();
    let Batch { overlay, rows, .. } = batch;
    let committed = rows.is_empty() || {
        // A few dozen row counts on the request path: their statements stay in the
        // connection's cache; a big sweep's is prepared for this run only.
        let mut query = save_query(&rows);
        let small = rows.len() <= 128;
        drop(rows);
        match query.build().persistent(small).execute(&mut *conn).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, "a batch of verification changes failed");
                // It may have failed inside its transaction; "no transaction is active"
                // otherwise, which is fine.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                false
            }
        }
    };
    if committed {
        cache.publish(overlay);
    }
    crate::metrics::batch(count, started.elapsed().as_secs_f64(), committed);
    for finish in finishes {
        finish(committed);
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

/// Rows per multi-row statement (SQLite allows 32766 parameters).
const ROWS_PER_STATEMENT: usize = 1000;

/// The transaction that saves many verification states, attempts and admissions with multi-row
/// statements, as one multi-statement query (one round trip to the connection's worker thread,
/// which matters more than the statements themselves on a busy machine). Rows whose service,
/// verification or rate limit was deleted meanwhile are skipped; a verification's row is only
/// replaced by a newer version.
fn save_query(items: &[SaveItem]) -> sqlx::QueryBuilder<'static, sqlx::Sqlite> {
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("BEGIN IMMEDIATE;\n");
    for chunk in items.chunks(ROWS_PER_STATEMENT) {
        q.push(
            "INSERT INTO verifications (sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version) \
             SELECT * FROM (",
        );
        q.push_values(chunk, |mut b, (v, _, _)| {
            b.push_bind(v.sid.clone())
                .push_bind(v.service_sid.clone())
                .push_bind(v.account_sid.clone())
                .push_bind(v.to.clone())
                .push_bind(v.channel.clone())
                .push_bind(v.status.as_str())
                .push_bind(v.code.clone())
                .push_bind(v.amount.clone())
                .push_bind(v.payee.clone())
                .push_bind(i64::from(v.checks_failed))
                .push_bind(v.expires_ms)
                .push_bind(v.date_created)
                .push_bind(v.date_updated)
                .push_bind(v.version as i64);
        });
        q.push(
            ") AS v WHERE EXISTS (SELECT 1 FROM services WHERE sid = v.column2) \
             ON CONFLICT (sid) DO UPDATE SET channel = excluded.channel, status = excluded.status, \
               checks_failed = excluded.checks_failed, expires_ms = excluded.expires_ms, \
               date_updated = excluded.date_updated, version = excluded.version \
             WHERE excluded.version > verifications.version;\n",
        );
    }
    let attempts: Vec<(&Verification, &Attempt)> = items
        .iter()
        .filter_map(|(v, a, _)| a.as_ref().map(|a| (v, a)))
        .collect();
    for chunk in attempts.chunks(ROWS_PER_STATEMENT) {
        q.push(
            "INSERT INTO send_attempts (sid, verification_sid, service_sid, account_sid, recipient, channel, code, at_ms) SELECT * FROM (",
        );
        q.push_values(chunk, |mut b, (v, a)| {
            b.push_bind(a.sid.clone())
                .push_bind(v.sid.clone())
                .push_bind(v.service_sid.clone())
                .push_bind(v.account_sid.clone())
                .push_bind(v.to.clone())
                .push_bind(a.channel.clone())
                .push_bind(v.code.clone())
                .push_bind(a.at_ms);
        });
        q.push(") AS a WHERE EXISTS (SELECT 1 FROM verifications WHERE sid = a.column2);\n");
    }
    let admissions: Vec<&Admission> = items.iter().flat_map(|(_, _, a)| a).collect();
    for chunk in admissions.chunks(ROWS_PER_STATEMENT) {
        q.push("INSERT INTO admissions (rate_limit_id, value, at_ms) SELECT * FROM (");
        q.push_values(chunk, |mut b, a| {
            b.push_bind(a.rate_limit_id)
                .push_bind(a.value.to_string())
                .push_bind(a.at_ms);
        });
        q.push(") AS x WHERE EXISTS (SELECT 1 FROM rate_limits WHERE id = x.column1);\n");
    }
    q.push("COMMIT;");
    q
}
