//! Persistence. SQL lives here and only here (`sql`).
//!
//! Two backends behind one seam, chosen by the database URL:
//! - SQLite (default): one instance. WAL with `synchronous=FULL`; every write goes through one
//!   writer task that batches jobs into transactions (group commit, `writer`); the limiter and
//!   pending verifications live in memory and are rebuilt from the database at start-up.
//! - PostgreSQL: any number of instances share everything; the limiter runs in the database,
//!   in the same transaction as the verification it admits (`pg`).

pub mod pg;
pub mod sql;
pub mod writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

pub use writer::{BoxFuture, Writer};

use crate::catalog::{BucketRecord, Catalog, RateLimitRecord, ServiceRecord};
use crate::twilio::ApiError;
use crate::twilio::paging::Cursor;
use crate::verification::{Attempt, Verification};

pub struct SqliteStore {
    pub pool: SqlitePool,
    pub writer: Writer,
    saves: tokio::sync::mpsc::Sender<(Vec<SaveItem>, tokio::sync::oneshot::Sender<bool>)>,
}

pub enum Store {
    Sqlite(SqliteStore),
    Postgres(pg::PgStore),
}

#[derive(Debug, Default)]
pub struct OutboxFilter {
    pub to: Option<String>,
    pub service_sid: Option<String>,
    pub verification_sid: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxMessage {
    pub sid: String,
    pub to: String,
    pub channel: String,
    pub code: String,
    pub verification_sid: String,
    pub service_sid: String,
    pub account_sid: String,
    #[serde(skip)]
    pub at_ms: i64,
}

/// Runs the same statements on whichever backend this is: on SQLite as a job of the writer, on
/// PostgreSQL in a transaction (`$method`: `write_config` for configuration changes, which
/// every instance must notice, or `write`).
macro_rules! dual {
    ($store:expr, $method:ident, $on_commit:expr, |$c:ident, $q:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                s.writer
                    .write(
                        move |$c| {
                            Box::pin(async move {
                                use crate::store::sql::sqlite as $q;
                                $body
                            })
                        },
                        $on_commit,
                    )
                    .await
            }
            Store::Postgres(p) => {
                p.$method(
                    move |$c| {
                        Box::pin(async move {
                            use crate::store::sql::pg as $q;
                            $body
                        })
                    },
                    $on_commit,
                )
                .await
            }
        }
    };
}

impl Store {
    /// Opens (creating if missing) and migrates the database named by `url`. For SQLite, also
    /// starts the writer and returns its task (it ends once the store is dropped).
    pub async fn open(
        url: &str,
        pg_pool_size: u32,
    ) -> Result<(Self, Option<tokio::task::JoinHandle<()>>), String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = pg::PgStore::open(url, pg_pool_size).await?;
            return Ok((Store::Postgres(store), None));
        }
        if !url.starts_with("sqlite:") {
            return Err(format!(
                "unsupported database URL scheme {:?}: use sqlite://PATH, sqlite::memory: or postgres://…",
                url.split(':').next().unwrap_or_default()
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("invalid database URL: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Statement journals (multi-row upserts) in memory, not in a temporary file opened
            // and deleted by every write transaction.
            .pragma("temp_store", "MEMORY")
            .busy_timeout(Duration::from_secs(10))
            .log_statements(tracing::log::LevelFilter::Trace);
        let mut conn = options
            .connect()
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        sqlx::migrate!("./migrations")
            .run(&mut conn)
            .await
            .map_err(|e| format!("cannot migrate the database: {e}"))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        let (writer, handle) = Writer::spawn(conn);
        let (saves, rx) = tokio::sync::mpsc::channel(8192);
        tokio::spawn(run_saver(writer.clone(), rx));
        Ok((
            Store::Sqlite(SqliteStore {
                pool,
                writer,
                saves,
            }),
            Some(handle),
        ))
    }

    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            Store::Sqlite(s) => Some(s),
            Store::Postgres(_) => None,
        }
    }

    pub fn postgres(&self) -> Option<&pg::PgStore> {
        match self {
            Store::Postgres(p) => Some(p),
            Store::Sqlite(_) => None,
        }
    }

    pub async fn load_catalog(&self) -> Result<Catalog, sqlx::Error> {
        match self {
            Store::Sqlite(s) => sql::sqlite::load_catalog(&mut *s.pool.acquire().await?).await,
            Store::Postgres(p) => sql::pg::load_catalog(&mut *p.pool.acquire().await?).await,
        }
    }

    pub async fn load_clocks(&self) -> Result<HashMap<String, i64>, sqlx::Error> {
        match self {
            Store::Sqlite(s) => sql::sqlite::load_clocks(&mut *s.pool.acquire().await?).await,
            Store::Postgres(p) => sql::pg::load_clocks(&mut *p.pool.acquire().await?).await,
        }
    }

    /// One page of an account's outbox (ordered by attempt SID) and whether more follow.
    pub async fn outbox(
        &self,
        account: &str,
        filter: &OutboxFilter,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<(Vec<OutboxMessage>, bool), sqlx::Error> {
        match self {
            Store::Sqlite(s) => {
                sql::sqlite::outbox(
                    &mut *s.pool.acquire().await?,
                    account,
                    filter,
                    cursor,
                    limit,
                )
                .await
            }
            Store::Postgres(p) => {
                sql::pg::outbox(
                    &mut *p.pool.acquire().await?,
                    account,
                    filter,
                    cursor,
                    limit,
                )
                .await
            }
        }
    }

    /// Whether the account's outbox has anything before `sid`.
    pub async fn outbox_has_before(&self, account: &str, sid: &str) -> Result<bool, sqlx::Error> {
        match self {
            Store::Sqlite(s) => {
                sql::sqlite::outbox_has_before(&mut *s.pool.acquire().await?, account, sid).await
            }
            Store::Postgres(p) => {
                sql::pg::outbox_has_before(&mut *p.pool.acquire().await?, account, sid).await
            }
        }
    }

    pub async fn insert_service(
        &self,
        r: ServiceRecord,
        on_commit: impl FnOnce(&ServiceRecord) + Send + 'static,
    ) -> Result<ServiceRecord, ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::insert_service(c, &r).await.map(|_| r)
        })
    }

    pub async fn update_service(
        &self,
        r: ServiceRecord,
        on_commit: impl FnOnce(&ServiceRecord) + Send + 'static,
    ) -> Result<ServiceRecord, ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::update_service(c, &r).await.map(|_| r)
        })
    }

    pub async fn delete_service(
        &self,
        account: String,
        sid: String,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::delete_service(c, &account, &sid).await
        })
    }

    pub async fn insert_rate_limit(
        &self,
        r: RateLimitRecord,
        max_per_service: u32,
        on_commit: impl FnOnce(&RateLimitRecord) + Send + 'static,
    ) -> Result<RateLimitRecord, ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::insert_rate_limit(c, r, max_per_service).await
        })
    }

    pub async fn update_rate_limit(
        &self,
        r: RateLimitRecord,
        on_commit: impl FnOnce(&RateLimitRecord) + Send + 'static,
    ) -> Result<RateLimitRecord, ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::update_rate_limit(c, &r).await.map(|_| r)
        })
    }

    pub async fn delete_rate_limit(
        &self,
        id: i64,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::delete_rate_limit(c, id).await
        })
    }

    pub async fn insert_bucket(
        &self,
        b: BucketRecord,
        rate_limit_id: i64,
        max_per_rate_limit: u32,
        on_commit: impl FnOnce(&BucketRecord) + Send + 'static,
    ) -> Result<BucketRecord, ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::insert_bucket(c, &b, rate_limit_id, max_per_rate_limit)
                .await
                .map(|_| b)
        })
    }

    pub async fn update_bucket(
        &self,
        b: BucketRecord,
        on_commit: impl FnOnce(&BucketRecord) + Send + 'static,
    ) -> Result<BucketRecord, ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::update_bucket(c, &b).await.map(|_| b)
        })
    }

    pub async fn delete_bucket(
        &self,
        sid: String,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::delete_bucket(c, &sid).await
        })
    }

    pub async fn set_clock_offset(
        &self,
        account: String,
        offset_ms: i64,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::set_clock_offset(c, &account, offset_ms).await
        })
    }

    pub async fn reset_account(
        &self,
        account: String,
        everything: bool,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), ApiError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::reset_account(c, &account, everything).await
        })
    }

    /// Deletes admissions no bucket counts any more: (rate limit id, oldest time still counted).
    pub async fn prune_admissions(&self, horizons: Vec<(i64, i64)>) -> Result<u64, ApiError> {
        dual!(self, write, |_: &u64| {}, |c, q| {
            let mut pruned = 0;
            for (id, keep_from) in horizons {
                pruned += q::prune_admissions(c, id, keep_from).await?;
            }
            Ok(pruned)
        })
    }

    /// Deletes verifications (and their codes) created before each account's cutoff.
    pub async fn purge_verifications(&self, cutoffs: Vec<(String, i64)>) -> Result<u64, ApiError> {
        dual!(self, write, |_: &u64| {}, |c, q| {
            let mut purged = 0;
            for (account, before) in cutoffs {
                purged += q::purge_verifications(c, &account, before).await?;
            }
            Ok(purged)
        })
    }
}

/// A verification state to save, with its new send attempt (if any) and the admissions
/// (rate limit id, value, time) that let it through.
pub type SaveItem = (Verification, Option<Attempt>, Vec<(i64, Box<str>, i64)>);

impl SqliteStore {
    /// Saves verification states with, for each, its new send attempt (and code) and the
    /// admissions that let it through.
    pub async fn save_verifications(&self, items: Vec<SaveItem>) -> Result<(), ApiError> {
        let (done, saved) = tokio::sync::oneshot::channel();
        self.saves
            .send((items, done))
            .await
            .map_err(|_| ApiError::unavailable())?;
        match saved.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "An internal server error has occurred",
            )),
            Err(_) => Err(ApiError::unavailable()),
        }
    }

    pub async fn load_admissions(&self) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
        sql::sqlite::load_admissions(&mut *self.pool.acquire().await?).await
    }

    pub async fn load_pending(&self) -> Result<Vec<Verification>, sqlx::Error> {
        sql::sqlite::load_pending(&mut *self.pool.acquire().await?).await
    }

    pub async fn load_recent_sends(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        sql::sqlite::load_recent_sends(&mut *self.pool.acquire().await?, since_ms).await
    }
}

/// Verification saves are the hot write: the saver gathers every save waiting and writes them
/// as one solo writer job, a single query `BEGIN IMMEDIATE; <multi-row inserts>; COMMIT`
/// built here, off the writer's path. Two jobs at most are in the writer at once: one
/// committing, the next built and queued behind it, so the writer never waits for a statement
/// to be built while requests queue. Each save is acknowledged after its transaction committed.
async fn run_saver(
    writer: Writer,
    mut rx: tokio::sync::mpsc::Receiver<(Vec<SaveItem>, tokio::sync::oneshot::Sender<bool>)>,
) {
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
    let mut pending = Vec::with_capacity(1024);
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        if rx.recv_many(&mut pending, 1024).await == 0 {
            break;
        }
        let (saves, waiters): (Vec<Vec<SaveItem>>, Vec<_>) =
            std::mem::take(&mut pending).into_iter().unzip();
        // Whole saves go together into transactions of about SAVE_CHUNK items; only a save
        // larger than that (a maintenance sweep handing over a million expired verifications,
        // each independent) is split, so that no statement, nor its memory, is huge.
        let mut chunks: Vec<Vec<SaveItem>> = vec![Vec::new()];
        for save in saves {
            let mut current = chunks.last_mut().expect("never empty");
            if !current.is_empty() && current.len() + save.len() > SAVE_CHUNK {
                chunks.push(Vec::new());
                current = chunks.last_mut().expect("just pushed");
            }
            for item in save {
                if current.len() >= SAVE_CHUNK {
                    chunks.push(Vec::new());
                    current = chunks.last_mut().expect("just pushed");
                }
                current.push(item);
            }
        }
        let mut done = Vec::with_capacity(chunks.len());
        for chunk in chunks.into_iter().filter(|c| !c.is_empty()) {
            let mut query = save_query(&chunk);
            let small = chunk.len() <= 128;
            done.push(
                writer
                    .write_solo(move |c| {
                        Box::pin(async move {
                            // Small batches (the request path: a few dozen sizes) stay in
                            // the connection's statement cache; a big one is prepared for
                            // this run only (a cached multi-row statement keeps its program).
                            query.build().persistent(small).execute(&mut *c).await?;
                            Ok(())
                        })
                    })
                    .await,
            );
        }
        tokio::spawn(async move {
            let mut ok = true;
            for d in done {
                ok &= matches!(d.await, Ok(Ok(())));
            }
            drop(permit);
            for w in waiters {
                let _ = w.send(ok);
            }
        });
    }
}

/// Verification saves per transaction of the saver.
const SAVE_CHUNK: usize = 4096;

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
    let admissions: Vec<&(i64, Box<str>, i64)> = items.iter().flat_map(|(_, _, a)| a).collect();
    for chunk in admissions.chunks(ROWS_PER_STATEMENT) {
        q.push("INSERT INTO admissions (rate_limit_id, value, at_ms) SELECT * FROM (");
        q.push_values(chunk, |mut b, (id, value, at)| {
            b.push_bind(*id).push_bind(value.to_string()).push_bind(*at);
        });
        q.push(") AS x WHERE EXISTS (SELECT 1 FROM rate_limits WHERE id = x.column1);\n");
    }
    q.push("COMMIT;");
    q
}
