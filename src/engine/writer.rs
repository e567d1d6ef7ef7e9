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
//!
//! **The journal.** A batch of decisions commits as *one* row of the `journal` table (its
//! verification states, send attempts and admissions, encoded together): one append at the end
//! of one B-tree, where writing them to their tables costs a row and up to four index entries
//! each (the writer's whole cost at speed). The tables are brought up to date from the journal
//! later, in the journal's order (`apply`): when the writer has had nothing to do for a moment,
//! in steps while the journal holds more than `JOURNAL_BACKLOG` items, before every statement job
//! (configuration, maintenance: they see the tables as every acknowledged decision left them),
//! before any read of the tables (`Writer::sync`, through `SqliteStore::reader`) and before the
//! cache's eviction (`Writer::write_drained`), and at start-up, before anything else reads the
//! database. The cache, which decisions read, is published after each commit as before. A read
//! or an eviction does not hold the decisions up while the journal empties: the writer applies
//! it a step at a time (`DRAIN_STEP`) and decides what arrived between the steps (`Waiting`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::cache::{Cache, Need, Overlay};
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
    /// Shares a transaction (begun and committed by the writer) with the jobs around it; runs
    /// after the journal has been applied unless `false` (`Writer::write_beside_journal`).
    Batched(JobFn, bool),
    /// With the entries it needs the cache to hold (read back first if evicted).
    Decide(DecideFn, Vec<Need>),
    /// Answered once the tables hold everything the journal held when it arrived.
    Sync(oneshot::Sender<Result<(), StoreError>>),
    /// Runs in a transaction of its own once the journal is empty (`Writer::write_drained`).
    Drained(JobFn),
}

/// What waits for the journal to be empty. Until it is, the writer applies the journal a step
/// at a time and decides what arrives between the steps, so that no decision waits for more
/// than one step (applying a whole backlog at once held every request for up to a second).
enum Waiting {
    Sync(oneshot::Sender<Result<(), StoreError>>),
    Job(JobFn),
}

/// A verification state to save, with its new send attempt (if any) and the admissions that
/// let it through.
pub type SaveItem = (Verification, Option<Attempt>, Vec<Admission>);

/// A batch of decisions being made: the committed cache, the batch's changes over it, and the
/// rows to write.
pub struct Batch<'a> {
    pub cache: &'a Cache,
    pub overlay: Overlay,
    /// Whether the tables held every committed decision when the batch began (the journal was
    /// empty).
    pub tables_current: bool,
    rows: Vec<SaveItem>,
}

impl Batch<'_> {
    pub fn save(&mut self, item: SaveItem) {
        self.rows.push(item);
    }
}

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 1024;

/// Journal items (verification states) beyond which the writer applies some after each batch
/// of decisions, however busy: bounds the work a read or a restart may have to wait for.
const JOURNAL_BACKLOG: usize = 50_000;
/// The most journal items one apply transaction takes.
const APPLY_CHUNK: usize = 4096;
/// The journal items one apply takes while the writer is idle: what a request arriving
/// meanwhile may wait for.
const IDLE_CHUNK: usize = 256;
/// How long the writer waits for work before it applies the journal.
const IDLE: Duration = Duration::from_millis(2);
/// The least journal items one step of draining applies (`Waiting`); a step takes about twice
/// what the decisions since the previous step saved (whole journal rows, at least one), so the
/// journal empties however busy the writer is, and what waited runs right after the step that
/// emptied it.
const DRAIN_STEP: usize = 1024;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
    /// Journal items committed and not yet applied to the tables.
    journal: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writer on `conn`; `journal`: the items of each journal row not yet applied
    /// (oldest first; empty unless applying them at start-up failed).
    pub fn spawn(
        conn: SqliteConnection,
        cache: Arc<Cache>,
        journal: Vec<usize>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>(8192);
        let items = journal.iter().sum();
        let counter = Arc::new(AtomicUsize::new(items));
        let journal = Journal {
            rows: journal.into(),
            items,
            counter: counter.clone(),
            failed_at: None,
        };
        // Every decision waits for the writer's chain (decide, append, commit, publish): on a
        // thread of its own, no step of it queues behind the HTTP requests.
        let handle = super::own_thread::spawn("verilimit-writer", run(conn, cache, journal, rx));
        (
            Self {
                tx,
                journal: counter,
            },
            handle,
        )
    }

    /// Returns once the tables hold every decision acknowledged so far (at once when the
    /// journal is empty; otherwise once the writer has applied it, deciding what arrives
    /// meanwhile between its steps). Reads of the tables call this first.
    pub async fn sync(&self) -> Result<(), StoreError> {
        if self.journal.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let (done_tx, done_rx) = oneshot::channel();
        self.tx
            .send(Job::Sync(done_tx))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        done_rx.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Decides with `decide` in the next batch of decisions; answers once that batch has
    /// committed. An error if it did not (nothing of it is then in the database or the cache).
    pub async fn decide<T, F>(&self, decide: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> T + Send + 'static,
    {
        self.decide_needing(Vec::new(), decide).await
    }

    /// `decide`, with the entries it reads from the cache: any the cache evicted is read back
    /// from the tables before the batch is decided.
    pub async fn decide_needing<T, F>(&self, needs: Vec<Need>, decide: F) -> Result<T, StoreError>
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
            .send(Job::Decide(job, needs))
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
        self.send_job(job, on_commit, |j| Job::Batched(j, true))
            .await
    }

    /// `write`, without first applying the journal: for a job that neither reads nor deletes
    /// what the journal feeds (`verifications`, `send_attempts`, `admissions`) in a way the
    /// journal's later rows could contradict — configuration updates, buckets, clocks, and the
    /// maintenance prunes (a pruned row the journal brings back is pruned again next round).
    pub async fn write_beside_journal<T, F, A>(&self, job: F, on_commit: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.send_job(job, on_commit, |j| Job::Batched(j, false))
            .await
    }

    /// `write`, run once the journal is empty, in a transaction of its own; until then the
    /// writer applies the journal in steps and goes on deciding in between (so, unlike `write`,
    /// the job does not keep its place in arrival order). For maintenance that needs the tables
    /// to hold everything the cache holds, and must not hold up the requests meanwhile.
    pub async fn write_drained<T, F, A>(&self, job: F, on_commit: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        self.send_job(job, on_commit, Job::Drained).await
    }

    async fn send_job<T, F, A>(
        &self,
        job: F,
        on_commit: A,
        kind: fn(JobFn) -> Job,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (job, done) = boxed(job, on_commit);
        self.tx
            .send(kind(job))
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

async fn run(
    mut conn: SqliteConnection,
    cache: Arc<Cache>,
    mut journal: Journal,
    mut rx: mpsc::Receiver<Job>,
) {
    let mut received: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut waiting: Vec<Waiting> = Vec::new();
    // Items the decisions saved since the last step of draining.
    let mut saved_since_step = 0;
    loop {
        let got = if !waiting.is_empty() {
            if journal.items > 0 {
                let step = (2 * saved_since_step).clamp(DRAIN_STEP, 4 * APPLY_CHUNK);
                saved_since_step = 0;
                if !journal.apply(&mut conn, step).await {
                    // As when a whole apply fails: the reads answer an error (and go to the
                    // views), the jobs are not run.
                    for w in waiting.drain(..) {
                        if let Waiting::Sync(done) = w {
                            let _ = done.send(Err(StoreError::NotCommitted));
                        }
                    }
                    continue;
                }
            }
            if journal.items == 0 {
                // Nothing is decided between the step that emptied it and what waited for it.
                run_waiting(&mut conn, std::mem::take(&mut waiting)).await;
                continue;
            }
            // What arrived meanwhile, without waiting for more.
            while received.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => received.push(job),
                    Err(_) => break,
                }
            }
            if received.is_empty() {
                continue;
            }
            received.len()
        } else if journal.items > 0 && rx.is_empty() && journal.may_retry() {
            // Idle for a moment: bring the tables up to date, a chunk at a time.
            match tokio::time::timeout(IDLE, rx.recv_many(&mut received, MAX_BATCH)).await {
                Ok(n) => n,
                Err(_) => {
                    journal.apply(&mut conn, IDLE_CHUNK).await;
                    continue;
                }
            }
        } else {
            rx.recv_many(&mut received, MAX_BATCH).await
        };
        if got == 0 {
            break;
        }
        // In arrival order: each run of statement jobs shares one transaction, and so does each
        // run of decisions.
        let mut jobs = std::mem::take(&mut received).into_iter().peekable();
        while let Some(next) = jobs.peek() {
            if let Job::Sync(_) | Job::Drained(_) = next {
                match jobs.next() {
                    Some(Job::Sync(done)) if journal.items == 0 => {
                        let _ = done.send(Ok(()));
                    }
                    Some(Job::Sync(done)) => waiting.push(Waiting::Sync(done)),
                    Some(Job::Drained(job)) => waiting.push(Waiting::Job(job)),
                    _ => {}
                }
                continue;
            }
            let mut group = Vec::new();
            let mut after_journal = false;
            while let Some(Job::Batched(..)) = jobs.peek() {
                if let Some(Job::Batched(job, after)) = jobs.next() {
                    group.push(job);
                    after_journal |= after;
                }
            }
            if !group.is_empty() {
                // Statement jobs see (and change) the tables as every acknowledged decision
                // left them (unless none of them needs to).
                let started = std::time::Instant::now();
                let applied = if after_journal {
                    journal.apply_all(&mut conn).await
                } else {
                    Ok(())
                };
                match applied {
                    Ok(()) => run_group(&mut conn, group, started).await,
                    // Not run: each job answers that the store is unavailable.
                    Err(_) => {
                        crate::metrics::batch(group.len(), started.elapsed().as_secs_f64(), false)
                    }
                }
            }
            let mut decisions = Vec::new();
            let mut needs = Vec::new();
            while let Some(Job::Decide(..)) = jobs.peek() {
                if let Some(Job::Decide(job, need)) = jobs.next() {
                    decisions.push(job);
                    needs.extend(need);
                }
            }
            if !decisions.is_empty() {
                let saved = run_decisions(&mut conn, &cache, &mut journal, decisions, &needs).await;
                if !waiting.is_empty() {
                    saved_since_step += saved;
                }
                if waiting.is_empty() && journal.items > JOURNAL_BACKLOG && journal.may_retry() {
                    // Keep up: apply more than the batch added.
                    journal
                        .apply(&mut conn, (2 * saved).clamp(256, APPLY_CHUNK))
                        .await;
                }
            }
        }
    }
    if let Err(e) = conn.close().await {
        tracing::warn!(error = %e, "closing the write connection");
    }
}

/// Answers what waited for the journal to be empty (it is): the reads at once, the jobs in one
/// transaction.
async fn run_waiting(conn: &mut SqliteConnection, waiting: Vec<Waiting>) {
    let mut group = Vec::new();
    for w in waiting {
        match w {
            Waiting::Sync(done) => {
                let _ = done.send(Ok(()));
            }
            Waiting::Job(job) => group.push(job),
        }
    }
    if !group.is_empty() {
        run_group(conn, group, std::time::Instant::now()).await;
    }
}

/// Runs statement jobs in one transaction and answers each; `started`: when the group's work
/// began (for the commit metric).
async fn run_group(conn: &mut SqliteConnection, group: Vec<JobFn>, started: std::time::Instant) {
    let count = group.len();
    let (committed, finishes) = run_batch(conn, group).await;
    crate::metrics::batch(count, started.elapsed().as_secs_f64(), committed);
    for finish in finishes {
        finish(committed);
    }
}

/// The journal rows committed and not yet applied, oldest first: how many items each holds.
struct Journal {
    rows: VecDeque<usize>,
    items: usize,
    /// `items`, for `Writer::sync` (raised before a batch is answered, lowered after an apply
    /// has committed).
    counter: Arc<AtomicUsize>,
    /// When an apply last failed (a full disk, say): the idle applies wait a while.
    failed_at: Option<std::time::Instant>,
}

impl Journal {
    fn may_retry(&self) -> bool {
        self.failed_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
    }

    fn appended(&mut self, items: usize) {
        self.rows.push_back(items);
        self.items += items;
        self.counter.store(self.items, Ordering::Release);
        crate::metrics::journal(self.items);
    }

    /// Applies the oldest rows, at least one and about `max_items` items, in one transaction.
    async fn apply(&mut self, conn: &mut SqliteConnection, max_items: usize) -> bool {
        let mut rows = 0;
        let mut items = 0;
        for n in &self.rows {
            if rows > 0 && items + n > max_items {
                break;
            }
            rows += 1;
            items += n;
        }
        if rows == 0 {
            return true;
        }
        match apply_rows(conn, rows).await {
            Ok(()) => {
                self.failed_at = None;
                self.rows.drain(..rows);
                self.items -= items;
                self.counter.store(self.items, Ordering::Release);
                crate::metrics::journal(self.items);
                true
            }
            Err(e) => {
                self.failed_at = Some(std::time::Instant::now());
                tracing::error!(error = %e, "applying the journal to the tables failed (it stays, and is tried again)");
                crate::metrics::db_error();
                false
            }
        }
    }

    async fn apply_all(&mut self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        while !self.rows.is_empty() {
            if !self.apply(conn, APPLY_CHUNK).await {
                return Err(StoreError::NotCommitted);
            }
        }
        Ok(())
    }
}

/// Applies the oldest `rows` journal rows to the tables and deletes them, in one transaction.
pub(crate) async fn apply_rows(conn: &mut SqliteConnection, rows: usize) -> Result<(), StoreError> {
    let read = sqlx::query("SELECT id, body FROM journal ORDER BY id LIMIT ?")
        .bind(rows as i64)
        .fetch_all(&mut *conn)
        .await?;
    let Some(last) = read.last().map(|r| r.get::<i64, _>(0)) else {
        return Ok(());
    };
    let mut items: Vec<SaveItem> = Vec::new();
    for row in &read {
        let body: &str = row.get(1);
        let decoded: Vec<SaveItem> = serde_json::from_str(body)?;
        items.extend(decoded);
    }
    drop(read);
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("BEGIN IMMEDIATE;\n");
    save_statements(&mut q, &items);
    q.push("DELETE FROM journal WHERE id <= ")
        .push_bind(last)
        .push(";\nCOMMIT;");
    drop(items);
    if let Err(e) = q.build().persistent(false).execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(e.into());
    }
    Ok(())
}

/// The items of each journal row, oldest first.
pub async fn journal_rows(conn: &mut SqliteConnection) -> Result<Vec<usize>, StoreError> {
    let rows: Vec<i64> = sqlx::query_scalar("SELECT items FROM journal ORDER BY id")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|n| usize::try_from(n).unwrap_or(0))
        .collect())
}

/// Applies the whole journal (at start-up, before anything reads the tables); returns the
/// items it held.
pub async fn apply_journal(conn: &mut SqliteConnection) -> Result<usize, StoreError> {
    let (rows, items): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(items), 0) FROM journal")
            .fetch_one(&mut *conn)
            .await?;
    if rows > 0 {
        // Rows of about APPLY_CHUNK items per transaction.
        let per_row = usize::try_from(items / rows).unwrap_or(1).max(1);
        let step = (APPLY_CHUNK / per_row).max(1);
        for _ in 0..(usize::try_from(rows).unwrap_or(0)).div_ceil(step) {
            apply_rows(conn, step).await?;
        }
    }
    Ok(usize::try_from(items).unwrap_or(0))
}

/// Decides each job in order over one overlay, writes all their rows as one journal row in one
/// transaction, and publishes the overlay only once it has committed. Returns the items saved.
async fn run_decisions(
    conn: &mut SqliteConnection,
    cache: &Cache,
    journal: &mut Journal,
    jobs: Vec<DecideFn>,
    needs: &[Need],
) -> usize {
    let started = std::time::Instant::now();
    let count = jobs.len();
    // What the cache evicted is read back first; if that fails, the batch is decided but not
    // committed (each decision answers an error).
    let read_back = if needs.is_empty() || !cache.evicted_any() {
        true
    } else {
        match super::sqlite::fault_in(conn, cache, needs).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "reading back what the cache evicted failed");
                crate::metrics::db_error();
                false
            }
        }
    };
    let mut batch = Batch {
        cache,
        overlay: Overlay::default(),
        tables_current: journal.items == 0,
        rows: Vec::new(),
    };
    let finishes: Vec<Finish> = jobs.into_iter().map(|job| job(&mut batch)).collect();
    let Batch { overlay, rows, .. } = batch;
    let saved = rows.len();
    let committed = read_back
        && (rows.is_empty() || {
            match append(conn, &rows).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "a batch of verification changes failed");
                    // It may have failed inside its transaction; "no transaction is active"
                    // otherwise, which is fine.
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    false
                }
            }
        });
    drop(rows);
    if committed {
        if saved > 0 {
            journal.appended(saved);
        }
        cache.publish(overlay);
    }
    crate::metrics::batch(count, started.elapsed().as_secs_f64(), committed);
    for finish in finishes {
        finish(committed);
    }
    saved
}

/// Commits a batch's rows as one journal row (one round trip to the connection's worker).
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    rows: &[SaveItem],
) -> Result<(), StoreError> {
    let body = serde_json::to_string(rows)?;
    sqlx::query("BEGIN IMMEDIATE; INSERT INTO journal (items, body) VALUES (?, ?); COMMIT;")
        .bind(rows.len() as i64)
        .bind(body)
        .execute(&mut *conn)
        .await?;
    Ok(())
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

/// Statements that save many verification states, attempts and admissions with multi-row
/// statements (applied from the journal as one multi-statement query: one round trip to the
/// connection's worker thread). Rows whose service, verification or rate limit was deleted
/// meanwhile are skipped; a verification's row is only replaced by a newer version.
fn save_statements(q: &mut sqlx::QueryBuilder<'static, sqlx::Sqlite>, items: &[SaveItem]) {
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
}
