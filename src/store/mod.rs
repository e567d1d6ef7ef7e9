//! Persistence: connections, migrations, and the statements (`sql`, written once for both
//! databases). Chosen by the database URL:
//! - SQLite (default): one instance. WAL with `synchronous=FULL`; every write goes through the
//!   engine's one writer task (`crate::engine::writer`), which also keeps the cache of what
//!   decisions need at speed, rebuilt from the database at start-up.
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
use crate::core::Verification;
use crate::engine::cache::Cache;
use crate::twilio::paging::Cursor;

pub struct SqliteStore {
    /// Readers (the outbox, start-up); every write goes through `writer`.
    pub pool: SqlitePool,
    pub writer: Writer,
    pub cache: std::sync::Arc<Cache>,
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
        dual!($store, $method, $on_commit, sql, |$c, $q| $body)
    };
    // `$module`: the statements module (`sql`, or one of a resource's own).
    ($store:expr, $method:ident, $on_commit:expr, $module:ident, |$c:ident, $q:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => {
                s.writer
                    .write(
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
                let mut conn = s.pool.acquire().await?;
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
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        let cache = std::sync::Arc::new(Cache::default());
        let (writer, handle) = Writer::spawn(conn, cache.clone());
        Ok((
            Store::Sqlite(SqliteStore {
                pool,
                writer,
                cache,
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
        dual!(self, write_config, on_commit, |c, q| {
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
        dual!(self, write_config, on_commit, |c, q| {
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
    ) -> Result<BucketRecord, StoreError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::update_bucket(c, &b).await.map(|_| b)
        })
    }

    pub async fn delete_bucket(
        &self,
        sid: String,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), StoreError> {
        dual!(self, write_config, on_commit, |c, q| {
            q::delete_bucket(c, &sid).await
        })
    }

    pub async fn set_clock_offset(
        &self,
        account: String,
        offset_ms: i64,
        on_commit: impl FnOnce(&()) + Send + 'static,
    ) -> Result<(), StoreError> {
        dual!(self, write_config, on_commit, |c, q| {
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
        dual!(self, write, |_: &u64| {}, |c, q| {
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
        dual!(self, write, |_: &u64| {}, |c, q| {
            let mut purged = 0;
            for (account, before) in cutoffs {
                purged += q::purge_verifications(c, &account, before).await?;
            }
            Ok(purged)
        })
    }
}

impl SqliteStore {
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
