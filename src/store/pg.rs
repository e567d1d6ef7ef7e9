//! PostgreSQL connections, transactions and locks: many instances share every piece of state
//! (the engine's decisions on it are in `crate::engine::pg`).
//!
//! Configuration is cached in each instance and versioned: every change bumps
//! `config_version` in its transaction, and each request first compares that version with the
//! one its cache was loaded at, reloading when it moved — so a change acknowledged on one
//! instance is in force on every instance from the next request on.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};

use super::BoxFuture;
use super::StoreError;
use super::sql::pg as q;
use crate::core::{Attempt, Verification};

/// Every configuration change is serialized on this advisory lock, so checks such as "at most
/// N rate limits per service" hold across instances.
const CONFIG_LOCK: i64 = 0x7665_7269_6c69_6d74; // "verilimt"

pub struct PgStore {
    pub pool: PgPool,
    loaded: AtomicI64,
    reload: tokio::sync::Mutex<()>,
    version_gate: std::sync::Arc<parking_lot::Mutex<VersionGate>>,
}

/// Requests waiting for the next read of the configuration version (`stale_version`).
#[derive(Default)]
struct VersionGate {
    reading: bool,
    waiting: Vec<tokio::sync::oneshot::Sender<Result<i64, String>>>,
}

/// A stable 64-bit key (FNV-1a) for an advisory lock, the same on every instance.
pub fn lock_key(parts: &[&str]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h as i64
}

/// Takes the advisory locks in ascending key order (so two transactions never deadlock), in one
/// round trip: the function scan over the sorted array yields, and locks, one key after another.
pub async fn lock_all(c: &mut PgConnection, mut keys: Vec<i64>) -> Result<(), sqlx::Error> {
    keys.sort_unstable();
    keys.dedup();
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) WITH ORDINALITY AS t(k, i) ORDER BY i")
        .bind(keys)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The newest pending verification of a recipient, locked for update, with its attempts.
pub async fn pending_of(
    c: &mut PgConnection,
    service: &str,
    to: &str,
) -> Result<Option<Verification>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM verifications WHERE service_sid = $1 AND recipient = $2 \
         AND status = 'pending' ORDER BY date_created DESC LIMIT 1 FOR UPDATE",
        q::VERIFICATION_COLUMNS
    ))
    .bind(service)
    .bind(to)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut v = q::verification_from_row(&row);
    let rows = sqlx::query(
        "SELECT sid, channel, at_ms FROM send_attempts WHERE verification_sid = $1 ORDER BY at_ms, sid",
    )
    .bind(&v.sid)
    .fetch_all(&mut *c)
    .await?;
    v.attempts = rows
        .iter()
        .map(|r| Attempt {
            sid: r.get(0),
            channel: r.get(1),
            at_ms: r.get(2),
        })
        .collect();
    Ok(Some(v))
}

/// How every connection to PostgreSQL is set up: `size` connections at most.
pub fn pool_options(size: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|c, _| {
            Box::pin(async move {
                // A stuck statement fails instead of holding locks forever.
                sqlx::query("SET statement_timeout = '15s'")
                    .execute(&mut *c)
                    .await?;
                // Every statement here reads through an index. A table that was empty when
                // a statement was first planned (a fresh database: statistics lag behind
                // the rows for up to a minute, and each connection keeps its plans) would
                // otherwise be read whole, for every start, while it grows.
                sqlx::query("SET enable_seqscan = off")
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
}

impl PgStore {
    pub async fn open(url: &str, pool_size: u32) -> Result<Self, String> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| format!("invalid database URL: {e}"))?;
        let options = options.log_statements(tracing::log::LevelFilter::Trace);
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        sqlx::migrate!("./migrations-postgres")
            .run(&mut conn)
            .await
            .map_err(|e| format!("cannot migrate the database: {e}"))?;
        let _ = conn.close().await;
        let pool = pool_options(pool_size.max(2))
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        Ok(Self {
            pool,
            loaded: AtomicI64::new(-1),
            reload: tokio::sync::Mutex::new(()),
            version_gate: Default::default(),
        })
    }

    /// Runs `job` in a transaction; after commit, `on_commit`.
    pub async fn write<T, F, A>(&self, job: F, on_commit: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send,
        A: FnOnce(&T) + Send,
    {
        let mut tx = self.pool.begin().await?;
        let out = job(&mut tx).await?;
        tx.commit().await?;
        on_commit(&out);
        Ok(out)
    }

    /// Like `write`, for configuration: serialized across instances, and bumps the version so
    /// every instance reloads its cache before its next request.
    pub async fn write_config<T, F, A>(&self, job: F, on_commit: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send,
        A: FnOnce(&T) + Send,
    {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CONFIG_LOCK)
            .execute(&mut *tx)
            .await?;
        let out = job(&mut tx).await?;
        let (version,): (i64,) = sqlx::query_as(
            "UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        // Applied under the reload lock, so a reload that read the database before this commit
        // cannot overwrite the change afterwards.
        let _guard = self.reload.lock().await;
        on_commit(&out);
        // Our own cache already has the change; only skip the reload if nothing else changed.
        let _ =
            self.loaded
                .compare_exchange(version - 1, version, Ordering::AcqRel, Ordering::Relaxed);
        Ok(out)
    }

    /// The current configuration version, if it differs from the one the cache was loaded at.
    ///
    /// Requests asking at the same moment share one read: a request joins the next read to
    /// *begin* (never one already under way, which may have read before a change the request
    /// must see), and while a read runs every request arriving waits for the one after it. So
    /// under load the version costs one or two reads in flight, not one per request, and each
    /// request still sees every change committed before it asked.
    pub async fn stale_version(&self) -> Result<Option<i64>, sqlx::Error> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lead = {
            let mut gate = self.version_gate.lock();
            gate.waiting.push(tx);
            !std::mem::replace(&mut gate.reading, true)
        };
        if lead {
            // On a task of its own: a request dropped mid-read (its client gone) must not leave
            // the others waiting.
            let (gate, pool) = (self.version_gate.clone(), self.pool.clone());
            tokio::spawn(async move {
                loop {
                    let waiting = std::mem::take(&mut gate.lock().waiting);
                    let read: Result<(i64,), sqlx::Error> =
                        sqlx::query_as("SELECT version FROM config_version WHERE id = 1")
                            .fetch_one(&pool)
                            .await;
                    let read = read.map(|(v,)| v).map_err(|e| e.to_string());
                    for w in waiting {
                        let _ = w.send(read.clone());
                    }
                    let mut gate = gate.lock();
                    if gate.waiting.is_empty() {
                        gate.reading = false;
                        break;
                    }
                }
            });
        }
        let version = rx
            .await
            .map_err(|_| {
                sqlx::Error::Protocol("the configuration version read was dropped".into())
            })?
            .map_err(|e| {
                sqlx::Error::Protocol(format!("reading the configuration version: {e}"))
            })?;
        Ok((version != self.loaded.load(Ordering::Acquire)).then_some(version))
    }

    /// Serializes reloads; `reload` runs only if the cache is still older than `version`.
    pub async fn reload_if_older<F, Fut>(&self, version: i64, reload: F) -> Result<(), sqlx::Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
    {
        let _guard = self.reload.lock().await;
        if self.loaded.load(Ordering::Acquire) >= version {
            return Ok(());
        }
        reload().await?;
        self.loaded.fetch_max(version, Ordering::AcqRel);
        Ok(())
    }
}
