//! Persistence: connections, migrations, and the statements (`sql`, written once for both
//! databases). Chosen by the database URL:
//! - SQLite (default): one instance. WAL with `synchronous=FULL`; every write goes through the
//!   engine's one writer task (`crate::engine::writer`), which also keeps the cache of what
//!   decisions need at speed, rebuilt from the database at start-up. Decisions commit to a
//!   journal first; reads of the tables go through `SqliteStore::reader`, which waits until
//!   the journal has reached them.
//! - PostgreSQL: any number of instances share everything (`pg`).

mod error;
pub mod pg;
pub mod sql;

pub use error::StoreError;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};

pub use crate::engine::writer::{BoxFuture, Writer};

use crate::catalog::{BucketRecord, Catalog, RateLimitRecord, ServiceRecord};
use crate::engine::cache::Cache;
use crate::twilio::paging::Cursor;

pub struct SqliteStore {
    /// Readers (the outbox, start-up); every write goes through `writer`.
    pub pool: SqlitePool,
    pub writer: Writer,
    pub cache: std::sync::Arc<Cache>,
    /// How to open the reader of last resort (`reader`); the options are `Send`, not `Sync`.
    options: Box<parking_lot::Mutex<SqliteConnectOptions>>,
    /// The reader of last resort, opened when first needed: sees the journal through views.
    degraded: tokio::sync::Mutex<Option<sqlx::SqliteConnection>>,
}

/// Opens the reader of last resort with its views (a boxed future: the statement's executor
/// lifetimes would otherwise leak into every handler's future).
fn open_degraded(
    options: SqliteConnectOptions,
) -> BoxFuture<'static, Result<sqlx::SqliteConnection, sqlx::Error>> {
    Box::pin(async move {
        let mut conn = options.connect().await?;
        sqlx::Executor::execute(&mut conn, JOURNAL_VIEWS).await?;
        Ok(conn)
    })
}

/// A read connection: pooled, or the reader of last resort (`SqliteStore::reader`).
pub enum ReadConn<'a> {
    Pooled(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Degraded(tokio::sync::MutexGuard<'a, Option<sqlx::SqliteConnection>>),
}

impl std::ops::Deref for ReadConn<'_> {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        match self {
            ReadConn::Pooled(c) => c,
            ReadConn::Degraded(g) => g.as_ref().expect("opened before use"),
        }
    }
}

impl std::ops::DerefMut for ReadConn<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            ReadConn::Pooled(c) => c,
            ReadConn::Degraded(g) => g.as_mut().expect("opened before use"),
        }
    }
}

/// Temporary views of the reader of last resort: `verifications`, `send_attempts` and
/// `admissions` as their tables plus what the journal holds (a verification's newest version:
/// only its state columns change after it is created), under the tables' names (a temporary object hides the table of the same name), so
/// every read statement runs on it unchanged. The journal's JSON is the writer's `SaveItem`:
/// `[verification, attempt or null, [admission, …]]`.
const JOURNAL_VIEWS: &str = "
CREATE TEMP VIEW IF NOT EXISTS journal_items AS
  SELECT e.value AS item FROM main.journal AS j, json_each(j.body) AS e;
CREATE TEMP VIEW IF NOT EXISTS journal_verifications AS
  SELECT json_extract(item, '$[0].sid') AS sid,
         json_extract(item, '$[0].service_sid') AS service_sid,
         json_extract(item, '$[0].account_sid') AS account_sid,
         json_extract(item, '$[0].to') AS recipient,
         json_extract(item, '$[0].channel') AS channel,
         json_extract(item, '$[0].status') AS status,
         json_extract(item, '$[0].code') AS code,
         json_extract(item, '$[0].amount') AS amount,
         json_extract(item, '$[0].payee') AS payee,
         json_extract(item, '$[0].checks_failed') AS checks_failed,
         json_extract(item, '$[0].expires_ms') AS expires_ms,
         json_extract(item, '$[0].date_created') AS date_created,
         json_extract(item, '$[0].date_updated') AS date_updated,
         json_extract(item, '$[0].version') AS version
  FROM temp.journal_items;
CREATE TEMP VIEW IF NOT EXISTS verifications AS
  SELECT sid, service_sid, account_sid, recipient, channel, status, code, amount, payee,
         checks_failed, expires_ms, date_created, date_updated, version
  FROM main.verifications WHERE sid NOT IN (SELECT sid FROM temp.journal_verifications)
  UNION ALL
  SELECT * FROM temp.journal_verifications AS jv
  WHERE EXISTS (SELECT 1 FROM main.services WHERE sid = jv.service_sid)
    AND NOT EXISTS (SELECT 1 FROM temp.journal_verifications AS n
                    WHERE n.sid = jv.sid AND n.version > jv.version);
CREATE TEMP VIEW IF NOT EXISTS send_attempts AS
  SELECT sid, verification_sid, service_sid, account_sid, recipient, channel, code, at_ms
  FROM main.send_attempts
  UNION ALL
  SELECT json_extract(item, '$[1].sid'), json_extract(item, '$[0].sid'),
         json_extract(item, '$[0].service_sid'), json_extract(item, '$[0].account_sid'),
         json_extract(item, '$[0].to'), json_extract(item, '$[1].channel'),
         json_extract(item, '$[0].code'), json_extract(item, '$[1].at_ms')
  FROM temp.journal_items
  WHERE json_type(item, '$[1]') = 'object'
    AND EXISTS (SELECT 1 FROM main.services WHERE sid = json_extract(item, '$[0].service_sid'));
CREATE TEMP VIEW IF NOT EXISTS admissions AS
  SELECT rate_limit_id, value, at_ms FROM main.admissions
  UNION ALL
  SELECT json_extract(a.value, '$.rate_limit_id'), json_extract(a.value, '$.value'),
         json_extract(a.value, '$.at_ms')
  FROM temp.journal_items AS i, json_each(i.item, '$[2]') AS a
  WHERE EXISTS (SELECT 1 FROM main.rate_limits WHERE id = json_extract(a.value, '$.rate_limit_id'));
";

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
        dual!(@sqlite write; $store, $method, $on_commit, sql, |$c, $q| $body)
    };
    // `$module`: the statements module (`sql`, or one of a resource's own).
    ($store:expr, $method:ident, $on_commit:expr, $module:ident, |$c:ident, $q:ident| $body:expr) => {
        dual!(@sqlite write; $store, $method, $on_commit, $module, |$c, $q| $body)
    };
    (@sqlite $sqlite:ident; $store:expr, $method:ident, $on_commit:expr, |$c:ident, $q:ident| $body:expr) => {
        dual!(@sqlite $sqlite; $store, $method, $on_commit, sql, |$c, $q| $body)
    };
    // `$sqlite`: the writer's method — `write`, or `write_beside_journal` for a job that does
    // not need the journal applied first (`crate::engine::writer`).
    (@sqlite $sqlite:ident; $store:expr, $method:ident, $on_commit:expr, $module:ident, |$c:ident, $q:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                s.writer
                    .$sqlite(
                        move |$c| {
                            Box::pin(async move {
                                use crate::store::$module::sqlite as $q;
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
                            use crate::store::$module::pg as $q;
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

/// Runs a read of the statements module `$module` on a pooled connection of whichever backend
/// this is (committed state).
macro_rules! read {
    ($store:expr, $module:ident, |$c:ident, $q:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                let mut conn = s.reader().await?;
                let $c = &mut *conn;
                use crate::store::$module::sqlite as $q;
                $body
            }
            Store::Postgres(p) => {
                let mut conn = p.pool.acquire().await?;
                let $c = &mut *conn;
                use crate::store::$module::pg as $q;
                $body
            }
        }
    };
}

// Declared after `dual!` and `read!` so that they can use them.
pub mod event_streams;
pub mod factors;
pub mod records;

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
        // Decisions a crash left in the journal reach their tables before anything reads them
        // (when that fails — a full disk —, reads see them through the journal's views).
        match crate::engine::writer::apply_journal(&mut conn).await {
            Ok(0) => {}
            Ok(applied) => {
                tracing::info!(items = applied, "applied the journal left by the last run");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "cannot apply the journal left by the last run yet; reads see it meanwhile"
            ),
        }
        let journal = crate::engine::writer::journal_rows(&mut conn)
            .await
            .map_err(|e| format!("cannot read the journal: {e}"))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        let cache = std::sync::Arc::new(Cache::default());
        let (writer, handle) = Writer::spawn(conn, cache.clone(), journal);
        Ok((
            Store::Sqlite(SqliteStore {
                pool,
                writer,
                cache,
                options: Box::new(parking_lot::Mutex::new(options)),
                degraded: tokio::sync::Mutex::new(None),
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
                sql::sqlite::outbox(&mut *s.reader().await?, account, filter, cursor, limit).await
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
                sql::sqlite::outbox_has_before(&mut *s.reader().await?, account, sid).await
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
    ) -> Result<ServiceRecord, StoreError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::insert_service(c, &r).await.map(|_| r)
        })
    }

    pub async fn update_service(
        &self,
        r: ServiceRecord,
        on_commit: impl FnOnce(&ServiceRecord) + Send + 'static,
    ) -> Result<ServiceRecord, StoreError> {
        dual!(@sqlite write_beside_journal; self, write_config, on_commit, |c, q| {
            q::update_service(c, &r).await.map(|_| r)
        })
    }

    pub async fn delete_service(
        &self,
        account: String,
        sid: String,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), StoreError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::delete_service(c, &account, &sid).await
        })
    }

    pub async fn insert_rate_limit(
        &self,
        r: RateLimitRecord,
        max_per_service: u32,
        on_commit: impl FnOnce(&RateLimitRecord) + Send + 'static,
    ) -> Result<RateLimitRecord, StoreError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::insert_rate_limit(c, r, max_per_service).await
        })
    }

    pub async fn update_rate_limit(
        &self,
        r: RateLimitRecord,
        on_commit: impl FnOnce(&RateLimitRecord) + Send + 'static,
    ) -> Result<RateLimitRecord, StoreError> {
        dual!(@sqlite write_beside_journal; self, write_config, on_commit, |c, q| {
            q::update_rate_limit(c, &r).await.map(|_| r)
        })
    }

    pub async fn delete_rate_limit(
        &self,
        id: i64,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), StoreError> {
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
    ) -> Result<BucketRecord, StoreError> {
        dual!(@sqlite write_beside_journal; self, write_config, on_commit, |c, q| {
            q::insert_bucket(c, &b, rate_limit_id, max_per_rate_limit)
                .await
                .map(|_| b)
        })
    }

    pub async fn update_bucket(
        &self,
        b: BucketRecord,
        on_commit: impl FnOnce(&BucketRecord) + Send + 'static,
    ) -> Result<BucketRecord, StoreError> {
        dual!(@sqlite write_beside_journal; self, write_config, on_commit, |c, q| {
            q::update_bucket(c, &b).await.map(|_| b)
        })
    }

    pub async fn delete_bucket(
        &self,
        sid: String,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), StoreError> {
        dual!(@sqlite write_beside_journal; self, write_config, on_commit, |c, q| {
            q::delete_bucket(c, &sid).await
        })
    }

    pub async fn set_clock_offset(
        &self,
        account: String,
        offset_ms: i64,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), StoreError> {
        dual!(@sqlite write_beside_journal; self, write_config, on_commit, |c, q| {
            q::set_clock_offset(c, &account, offset_ms).await
        })
    }

    pub async fn reset_account(
        &self,
        account: String,
        everything: bool,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), StoreError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::reset_account(c, &account, everything).await
        })
    }

    /// The TLS authority kept in the database: the given one unless one is kept already.
    pub async fn keep_tls_authority(
        &self,
        cert_pem: String,
        key_pem: String,
        created_ms: i64,
    ) -> Result<(String, String), StoreError> {
        dual!(self, write, |_: &(String, String)| {}, |c, q| {
            q::keep_tls_authority(c, &cert_pem, &key_pem, created_ms).await
        })
    }

    /// Deletes admissions no bucket counts any more: (rate limit id, oldest time still counted).
    pub async fn prune_admissions(&self, horizons: Vec<(i64, i64)>) -> Result<u64, StoreError> {
        dual!(@sqlite write_beside_journal; self, write, |_: &u64| {}, |c, q| {
            let mut pruned = 0;
            for (id, keep_from) in horizons {
                pruned += q::prune_admissions(c, id, keep_from).await?;
            }
            Ok(pruned)
        })
    }

    /// Deletes verifications (and their codes) created before each account's cutoff.
    pub async fn purge_verifications(
        &self,
        cutoffs: Vec<(String, i64)>,
    ) -> Result<u64, StoreError> {
        dual!(@sqlite write_beside_journal; self, write, |_: &u64| {}, |c, q| {
            let mut purged = 0;
            for (account, before) in cutoffs {
                purged += q::purge_verifications(c, &account, before).await?;
            }
            Ok(purged)
        })
    }
}

impl SqliteStore {
    /// A read connection that sees every decision acknowledged so far (the writer first
    /// applies its journal, if it holds anything).
    ///
    /// When the journal cannot be applied (a full disk), the read runs on the reader of last
    /// resort instead, whose views show the tables plus the journal: reads stay whole and
    /// answer while writes cannot.
    pub async fn reader(&self) -> Result<ReadConn<'_>, sqlx::Error> {
        match self.writer.sync().await {
            Ok(()) => Ok(ReadConn::Pooled(self.pool.acquire().await?)),
            Err(e) => {
                tracing::warn!(error = %e, "the journal cannot reach its tables: reading through its views");
                let mut guard = self.degraded.lock().await;
                if guard.is_none() {
                    let options = self.options.lock().clone();
                    *guard = Some(open_degraded(options).await?);
                }
                Ok(ReadConn::Degraded(guard))
            }
        }
    }

    pub async fn load_admissions(&self) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
        sql::sqlite::load_admissions(&mut *self.reader().await?).await
    }

    pub async fn count_pending(&self) -> Result<i64, sqlx::Error> {
        sql::sqlite::count_pending(&mut *self.reader().await?).await
    }

    /// `table`'s rows in up to `parts` ranges, to read at once (`sql::sqlite::split`).
    pub async fn split(
        &self,
        table: &str,
        parts: usize,
    ) -> Result<Vec<sql::sqlite::Rowids>, sqlx::Error> {
        sql::sqlite::split(&mut *self.reader().await?, table, parts).await
    }

    pub async fn load_pending(
        &self,
        rows: sql::sqlite::Rowids,
        each: impl FnMut(sql::sqlite::PendingRow<'_>),
    ) -> Result<(), sqlx::Error> {
        sql::sqlite::load_pending(&mut *self.reader().await?, rows, each).await
    }

    pub async fn load_attempts(
        &self,
        rows: sql::sqlite::Rowids,
        since_ms: i64,
        each: impl FnMut(sql::sqlite::AttemptRow<'_>),
    ) -> Result<(), sqlx::Error> {
        sql::sqlite::load_attempts(&mut *self.reader().await?, rows, since_ms, each).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Admission, Attempt, Status, Verification};
    use crate::engine::writer::{SaveItem, append, apply_rows};

    fn verification(sid: &str, to: &str, version: u64, status: Status) -> Verification {
        Verification {
            sid: sid.into(),
            service_sid: "VA1".into(),
            account_sid: "AC1".into(),
            to: to.into(),
            channel: "sms".into(),
            status,
            code: "123456".into(),
            amount: Some("€1".into()),
            payee: None,
            checks_failed: u32::try_from(version).unwrap_or(0) - 1,
            expires_ms: 600_000 + i64::try_from(version).unwrap_or(0),
            date_created: 1,
            date_updated: i64::try_from(version).unwrap_or(0),
            version,
            attempts: Vec::new(),
        }
    }

    const DUMP: [&str; 3] = [
        "SELECT sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version FROM verifications ORDER BY sid",
        "SELECT sid, verification_sid, service_sid, account_sid, recipient, channel, code, at_ms FROM send_attempts ORDER BY sid",
        "SELECT rate_limit_id, value, at_ms FROM admissions ORDER BY rate_limit_id, value, at_ms",
    ];

    async fn dump(c: &mut sqlx::SqliteConnection) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for q in DUMP {
            let rows = sqlx::query(q).fetch_all(&mut *c).await.unwrap();
            let mut lines = Vec::new();
            for r in rows {
                use sqlx::{Column, Row, ValueRef};
                let mut cols = Vec::new();
                for (i, col) in r.columns().iter().enumerate() {
                    let raw = r.try_get_raw(i).unwrap();
                    let v = if raw.is_null() {
                        "NULL".to_owned()
                    } else if let Ok(n) = r.try_get::<i64, _>(i) {
                        n.to_string()
                    } else {
                        r.get::<String, _>(i)
                    };
                    cols.push(format!("{}={v}", col.name()));
                }
                lines.push(cols.join(" "));
            }
            out.push(lines);
        }
        out
    }

    /// The views of the reader of last resort show exactly what applying the journal writes:
    /// newest versions, attempts, admissions, and nothing of a deleted rate limit.
    #[tokio::test]
    async fn the_journal_views_show_what_applying_the_journal_writes() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}",
            dir.path().join("db").display()
        ))
        .unwrap()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
        let mut w = options.connect().await.unwrap();
        sqlx::migrate!("./migrations").run(&mut w).await.unwrap();
        sqlx::Executor::execute(
            &mut w,
            "INSERT INTO services VALUES ('VA1', 'AC1', 'x', 6, 0, '{}', 0, 0);
             INSERT INTO rate_limits (id, sid, service_sid, account_sid, unique_name, date_created, date_updated) VALUES (1, 'RK1', 'VA1', 'AC1', 'ip', 0, 0);
             INSERT INTO verifications VALUES ('VE0', 'VA1', 'AC1', '+15550000000', 'sms', 'pending', '123456', '€1', NULL, 0, 9, 1, 0, 1);
             INSERT INTO send_attempts VALUES ('VL0', 'VE0', 'VA1', 'AC1', '+15550000000', 'sms', '123456', 0);
             INSERT INTO admissions VALUES (1, 'old', 0);",
        )
        .await
        .unwrap();
        let attempt = |sid: &str, at_ms| Attempt {
            sid: sid.into(),
            channel: "sms".into(),
            at_ms,
        };
        let admission = |id, value: &str, at_ms| Admission {
            rate_limit_id: id,
            value: value.into(),
            at_ms,
        };
        let first: Vec<SaveItem> = vec![
            (
                verification("VE1", "+15550000001", 1, Status::Pending),
                Some(attempt("VL1", 10)),
                vec![
                    admission(1, "a \"quoted\" value", 10),
                    admission(2, "gone", 10),
                ],
            ),
            (
                verification("VE0", "+15550000000", 2, Status::Approved),
                None,
                Vec::new(),
            ),
        ];
        let second: Vec<SaveItem> = vec![
            (
                verification("VE1", "+15550000001", 3, Status::Canceled),
                None,
                Vec::new(),
            ),
            (
                verification("VE2", "+15550000002", 1, Status::Pending),
                Some(attempt("VL2", 20)),
                vec![admission(1, "b", 20)],
            ),
        ];
        append(&mut w, &first).await.unwrap();
        append(&mut w, &second).await.unwrap();

        let mut degraded = open_degraded(options.clone()).await.unwrap();
        let seen = dump(&mut degraded).await;
        apply_rows(&mut w, 2).await.unwrap();
        let applied = dump(&mut w).await;
        assert_eq!(seen, applied);
        assert_eq!(applied[0].len(), 3, "{applied:?}");
        assert!(applied[0][1].contains("status=canceled"), "{applied:?}");
        assert_eq!(applied[1].len(), 3, "{applied:?}");
        assert_eq!(applied[2].len(), 3, "{applied:?}");
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM journal")
            .fetch_one(&mut w)
            .await
            .unwrap();
        assert_eq!(left, 0);
        // With the journal applied, the views show the tables as they are.
        assert_eq!(dump(&mut degraded).await, applied);
    }

    /// What a crash left in the journal is in the tables once the store has opened, before
    /// anything reads them; the journal is then empty.
    #[tokio::test]
    async fn opening_the_store_applies_the_journal_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db").display());
        {
            let (store, writer) = Store::open(&url, 1).await.unwrap();
            let Store::Sqlite(s) = &store else {
                panic!("a SQLite store")
            };
            let mut c = s.pool.acquire().await.unwrap();
            sqlx::Executor::execute(
                &mut *c,
                "INSERT INTO services VALUES ('VA1', 'AC1', 'x', 6, 0, '{}', 0, 0);",
            )
            .await
            .unwrap();
            // Journal rows as a batch of decisions leaves them, written behind the writer's
            // back so that it never applies them (as if the process died right after).
            let item: SaveItem = (
                verification("VE1", "+15550000001", 1, Status::Pending),
                Some(Attempt {
                    sid: "VL1".into(),
                    channel: "sms".into(),
                    at_ms: 5,
                }),
                Vec::new(),
            );
            append(&mut c, &[item]).await.unwrap();
            drop(c);
            drop(store);
            if let Some(w) = writer {
                w.await.unwrap();
            }
        }
        let (store, _writer) = Store::open(&url, 1).await.unwrap();
        let Store::Sqlite(s) = &store else {
            panic!("a SQLite store")
        };
        let mut pending = Vec::new();
        s.load_pending(sql::sqlite::ALL, |v| pending.push(v.verification()))
            .await
            .unwrap();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].sid, "VE1");
        let mut c = s.pool.acquire().await.unwrap();
        let (journal, attempts): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM journal), (SELECT COUNT(*) FROM send_attempts WHERE verification_sid = 'VE1')",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        assert_eq!((journal, attempts), (0, 1));
    }

    type AttemptColumns = (String, String, String, String, String, String, i64);

    fn owned(a: sql::sqlite::AttemptRow<'_>) -> AttemptColumns {
        let text = |t: std::borrow::Cow<'_, str>| t.into_owned();
        (
            text(a.verification_sid),
            text(a.account_sid),
            text(a.service_sid),
            text(a.recipient),
            text(a.sid),
            text(a.channel),
            a.at_ms,
        )
    }

    /// The start-up reads (JSON chunks built by SQLite) give exactly what plain queries of the
    /// same rows give: across chunk boundaries, with values JSON must escape, only the pending
    /// verifications and the attempts since the given time; restored into the cache, each
    /// pending verification has its attempts, oldest first.
    #[tokio::test]
    async fn the_start_up_reads_give_every_live_row_whole() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db").display());
        let (store, _writer) = Store::open(&url, 1).await.unwrap();
        let Store::Sqlite(s) = &store else {
            panic!("a SQLite store")
        };
        let mut c = s.pool.acquire().await.unwrap();
        // 20,000 verifications (every third one pending), three attempts each (the later one
        // inserted first; two at the same time, the greater SID first), 20,000 admissions; values with quotes, backslashes, controls and
        // non-ASCII text.
        sqlx::Executor::execute(
            &mut *c,
            r#"INSERT INTO services VALUES ('VA1', 'AC1', 'x', 6, 0, '{}', 0, 0);
             INSERT INTO rate_limits (id, sid, service_sid, account_sid, unique_name, date_created, date_updated) VALUES (1, 'RK1', 'VA1', 'AC1', 'ip', 0, 0);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)
             INSERT INTO verifications SELECT printf('VE%032x', i), 'VA1', 'AC1',
               printf('+1555%07d "q" \ é', i), 'sms',
               CASE i % 3 WHEN 0 THEN 'pending' ELSE 'approved' END, printf('%06d', i),
               CASE WHEN i % 2 = 0 THEN '€' || i END, CASE WHEN i % 5 = 0 THEN 'payee' || char(10) END,
               i % 4, 600000 + i, i, i + 1, i % 7 + 1 FROM n;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)
             INSERT INTO send_attempts SELECT printf('VL%032x', 2 * i + 1), printf('VE%032x', i), 'VA1', 'AC1',
               printf('+1555%07d "q" \ é', i), 'call', '1', 1000 + i FROM n;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)
             INSERT INTO send_attempts SELECT printf('VL%032x', 2 * i), printf('VE%032x', i), 'VA1', 'AC1',
               printf('+1555%07d "q" \ é', i), 'sms', '1', i FROM n;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)
             INSERT INTO send_attempts SELECT printf('VA%032x', i), printf('VE%032x', i), 'VA1', 'AC1',
               printf('+1555%07d "q" \ é', i), 'sms', '1', i FROM n;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)
             INSERT INTO admissions SELECT 1, printf('v%d "\%s', i % 5000, char(9)), i FROM n;"#,
        )
        .await
        .unwrap();

        let mut want_pending = Vec::new();
        for r in sqlx::query(&format!(
            "SELECT {} FROM verifications WHERE status = 'pending' ORDER BY sid",
            sql::sqlite::VERIFICATION_COLUMNS
        ))
        .fetch_all(&mut *c)
        .await
        .unwrap()
        {
            let mut v = sql::sqlite::verification_from_row(&r);
            for a in sqlx::query(
                "SELECT sid, channel, at_ms FROM send_attempts WHERE verification_sid = ? ORDER BY at_ms, sid",
            )
            .bind(&v.sid)
            .fetch_all(&mut *c)
            .await
            .unwrap()
            {
                v.attempts.push(Attempt {
                    sid: a.get(0),
                    channel: a.get(1),
                    at_ms: a.get(2),
                });
            }
            want_pending.push(v);
        }
        // Every pending verification, then the attempts since its creation, as the start-up
        // restores them into the cache: each table read in three ranges of rowids.
        let verifications = s.split("verifications", 3).await.unwrap();
        assert_eq!(verifications.len(), 3, "{verifications:?}");
        let mut pending = Vec::new();
        for rows in verifications {
            s.load_pending(rows, |v| {
                pending.push(v.verification());
                s.cache.restore_pending(&v)
            })
            .await
            .unwrap();
        }
        pending.sort_by(|a, b| a.sid.cmp(&b.sid));
        assert_eq!(pending.len(), 6667);
        let bare = |v: &Verification| Verification {
            attempts: Vec::new(),
            ..v.clone()
        };
        assert_eq!(pending, want_pending.iter().map(bare).collect::<Vec<_>>());
        for rows in s.split("send_attempts", 3).await.unwrap() {
            s.load_attempts(rows, 0, |a| {
                s.cache
                    .restore_attempt(&a.verification_sid, &a.sid, &a.channel, a.at_ms)
            })
            .await
            .unwrap();
        }
        let restored: Vec<Verification> = want_pending
            .iter()
            .filter_map(|v| s.cache.pending(&v.service_sid, &v.to))
            .collect();
        assert_eq!(restored, want_pending);

        let mut want_admissions: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT rate_limit_id, value, at_ms FROM admissions")
                .fetch_all(&mut *c)
                .await
                .unwrap();
        let mut got = s.load_admissions().await.unwrap();
        want_admissions.sort();
        got.sort();
        assert_eq!(got.len(), 20_000);
        assert_eq!(got, want_admissions);

        let attempts_since = |since: i64| async move {
            let mut rows: Vec<AttemptColumns> = sqlx::query_as(
                "SELECT verification_sid, account_sid, service_sid, recipient, sid, channel, at_ms \
                 FROM send_attempts WHERE at_ms >= ?",
            )
            .bind(since)
            .fetch_all(&mut *s.pool.acquire().await.unwrap())
            .await
            .unwrap();
            rows.sort();
            rows
        };
        let want_attempts = attempts_since(10_000).await;
        let mut got = Vec::new();
        s.load_attempts(sql::sqlite::ALL, 10_000, |a| got.push(owned(a)))
            .await
            .unwrap();
        got.sort();
        assert_eq!(got.len(), 2 * (20_000 - 10_000) + 20_000 - 9_000);
        assert_eq!(got, want_attempts);
        assert_eq!(attempts_since(0).await.len(), 60_000);

        // The reader of last resort (a full disk: the tables' names are views over the tables
        // and the journal, without rowids) reads the same.
        let mut degraded = open_degraded(SqliteConnectOptions::from_str(&url).unwrap())
            .await
            .unwrap();
        let mut pending = Vec::new();
        assert_eq!(
            sql::sqlite::split(&mut degraded, "verifications", 3)
                .await
                .unwrap(),
            vec![sql::sqlite::ALL]
        );
        sql::sqlite::load_pending(&mut degraded, sql::sqlite::ALL, |v| {
            pending.push(v.verification())
        })
        .await
        .unwrap();
        pending.sort_by(|a, b| a.sid.cmp(&b.sid));
        assert_eq!(pending, want_pending.iter().map(bare).collect::<Vec<_>>());
        let mut got = sql::sqlite::load_admissions(&mut degraded).await.unwrap();
        got.sort();
        assert_eq!(got, want_admissions);
        let mut got = Vec::new();
        sql::sqlite::load_attempts(&mut degraded, sql::sqlite::ALL, 10_000, |a| {
            got.push(owned(a))
        })
        .await
        .unwrap();
        got.sort();
        assert_eq!(got, want_attempts);
    }
}
