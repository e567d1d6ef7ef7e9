//! The PostgreSQL backend: many instances share every piece of state.
//!
//! The limiter runs in the database. A verification start takes transaction-scoped advisory
//! locks on its recipient and on every (rate limit, value) it touches — in ascending key order,
//! so two starts never deadlock — then reads the admissions in the windows, decides with the
//! same window arithmetic as the in-memory limiter, and writes the verification, its send attempt
//! and its admissions in that same transaction. Starts for one value are thereby serialized
//! across every instance: exact, all or nothing, and acknowledged only after commit.
//!
//! Configuration is cached in each instance and versioned: every change bumps
//! `config_version` in its transaction, and each request first compares that version with the
//! one its cache was loaded at, reloading when it moved — so a change acknowledged on one
//! instance is in force on every instance from the next request on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};

use super::sql::pg as q;
use super::writer::BoxFuture;
use crate::catalog::RateLimitNode;
use crate::limiter::{ValueLog, window};
use crate::twilio::ApiError;
use crate::verification::{Attempt, Start, Status, Verification};

/// Every configuration change is serialized on this advisory lock, so checks such as "at most
/// N rate limits per service" hold across instances.
const CONFIG_LOCK: i64 = 0x7665_7269_6c69_6d74; // "verilimt"

pub struct PgStore {
    pub pool: PgPool,
    loaded: AtomicI64,
    reload: tokio::sync::Mutex<()>,
}

/// The outcome of a verification start.
pub enum Started {
    Admitted {
        verification: Box<Verification>,
        is_new: bool,
        expired: Option<Box<Verification>>,
    },
    TooManySends,
    Refused {
        retry_after_ms: i64,
        unique_name: String,
    },
}

/// A stable 64-bit key (FNV-1a) for an advisory lock, the same on every instance.
fn lock_key(parts: &[&str]) -> i64 {
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
async fn lock_all(c: &mut PgConnection, mut keys: Vec<i64>) -> Result<(), sqlx::Error> {
    keys.sort_unstable();
    keys.dedup();
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) WITH ORDINALITY AS t(k, i) ORDER BY i")
        .bind(keys)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The newest pending verification of a recipient, locked for update, with its attempts.
async fn pending_of(
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
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|c, _| {
                Box::pin(async move {
                    // A stuck statement fails instead of holding locks forever.
                    sqlx::query("SET statement_timeout = '15s'")
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
        Ok(Self {
            pool,
            loaded: AtomicI64::new(-1),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `job` in a transaction; after commit, `on_commit`.
    pub async fn write<T, F, A>(&self, job: F, on_commit: A) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, ApiError>> + Send,
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
    pub async fn write_config<T, F, A>(&self, job: F, on_commit: A) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, ApiError>> + Send,
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
    pub async fn stale_version(&self) -> Result<Option<i64>, sqlx::Error> {
        let (version,): (i64,) = sqlx::query_as("SELECT version FROM config_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
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

    /// A verification start: the send-attempts rule, then every bucket of every rate limit,
    /// then the verification, all in one transaction.
    pub async fn start(
        &self,
        start: Start,
        limited: &[(Arc<RateLimitNode>, String)],
        now: i64,
        send_limit: u32,
        send_window_ms: i64,
    ) -> Result<Started, ApiError> {
        let mut tx = self.pool.begin().await?;
        let mut keys = vec![lock_key(&["recipient", &start.service_sid, &start.to])];
        let counted: Vec<&(Arc<RateLimitNode>, String)> = limited
            .iter()
            .filter(|(rl, _)| !rl.rules.is_empty())
            .collect();
        for (rl, value) in &counted {
            keys.push(lock_key(&["admission", &rl.record.id.to_string(), value]));
        }
        lock_all(&mut tx, keys).await?;

        if send_limit > 0 {
            let (sent,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM send_attempts WHERE service_sid = $1 AND recipient = $2 AND at_ms > $3",
            )
            .bind(&start.service_sid)
            .bind(&start.to)
            .bind(now - send_window_ms)
            .fetch_one(&mut *tx)
            .await?;
            if sent >= i64::from(send_limit) {
                return Ok(Started::TooManySends);
            }
        }

        // Every (rate limit, value)'s admissions still in some window, in one round trip.
        let lowers: Vec<i64> = counted
            .iter()
            .map(|(rl, _)| {
                rl.rules
                    .iter()
                    .map(|r| r.lower_bound(now))
                    .min()
                    .unwrap_or(now)
            })
            .collect();
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT q.i::int4, a.at_ms FROM unnest($1::int8[], $2::text[], $3::int8[]) WITH ORDINALITY AS q(id, v, lower, i) \
             JOIN admissions a ON a.rate_limit_id = q.id AND a.value = q.v AND a.at_ms >= q.lower \
             ORDER BY q.i, a.at_ms",
        )
        .bind(counted.iter().map(|(rl, _)| rl.record.id).collect::<Vec<i64>>())
        .bind(counted.iter().map(|(_, v)| v.as_str()).collect::<Vec<&str>>())
        .bind(&lowers)
        .fetch_all(&mut *tx)
        .await?;
        let mut logs: Vec<VecDeque<i64>> = vec![VecDeque::new(); counted.len()];
        for (i, at) in rows {
            // WITH ORDINALITY counts from 1.
            if let Some(log) = usize::try_from(i - 1).ok().and_then(|i| logs.get_mut(i)) {
                log.push_back(at);
            }
        }
        let mut refusal: Option<(i64, &str)> = None;
        for ((rl, _), log) in counted.iter().zip(&logs) {
            for rule in &rl.rules {
                if let Some(wait) = window::wait_ms(log, rule, now) {
                    if refusal.is_none_or(|(w, _)| wait > w) {
                        refusal = Some((wait, &rl.record.unique_name));
                    }
                }
            }
        }
        if let Some((retry_after_ms, unique_name)) = refusal {
            return Ok(Started::Refused {
                retry_after_ms,
                unique_name: unique_name.to_owned(),
            });
        }

        let mut pending = pending_of(&mut tx, &start.service_sid, &start.to).await?;
        let expired = match pending.take() {
            Some(v) if !v.is_live(now) => {
                let mut v = v;
                let at = v.expires_ms;
                v.finish(Status::Expired, at);
                Some(v)
            }
            live => {
                pending = live;
                None
            }
        };
        let (verification, attempt, is_new) = start.apply(&mut pending, now);
        if let Some(old) = &expired {
            q::save_verification(&mut tx, old, None, "", &[]).await?;
        }
        let admissions: Vec<(i64, Box<str>, i64)> = counted
            .iter()
            .map(|(rl, value)| (rl.record.id, Box::from(value.as_str()), now))
            .collect();
        q::save_verification(
            &mut tx,
            &verification,
            Some(&attempt),
            &verification.code,
            &admissions,
        )
        .await?;
        tx.commit().await?;
        Ok(Started::Admitted {
            verification: Box::new(verification),
            is_new,
            expired: expired.map(Box::new),
        })
    }

    /// Finds the live pending verification `key` names (a `VE` SID or the recipient), applies
    /// `change` and stores the result. `Ok(None)` when there is none; the expired one found
    /// instead, if any, is stored as expired and returned as the error side.
    pub async fn with_pending<T>(
        &self,
        service: &str,
        key: &str,
        now: i64,
        change: impl FnOnce(&mut Verification, i64) -> T,
    ) -> Result<Result<(Verification, Verification, T), Option<Verification>>, ApiError> {
        let mut tx = self.pool.begin().await?;
        let to = if crate::twilio::sid::is_valid(key, crate::twilio::sid::VERIFICATION) {
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT recipient FROM verifications WHERE sid = $1 AND service_sid = $2",
            )
            .bind(key)
            .bind(service)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some((to,)) => to,
                None => return Ok(Err(None)),
            }
        } else {
            key.to_owned()
        };
        lock_all(&mut tx, vec![lock_key(&["recipient", service, &to])]).await?;
        let Some(mut v) = pending_of(&mut tx, service, &to).await? else {
            return Ok(Err(None));
        };
        if !v.is_live(now) {
            let at = v.expires_ms;
            v.finish(Status::Expired, at);
            q::save_verification(&mut tx, &v, None, "", &[]).await?;
            tx.commit().await?;
            return Ok(Err(Some(v)));
        }
        if key.starts_with(crate::twilio::sid::VERIFICATION) && v.sid != key {
            return Ok(Err(None));
        }
        let before = v.clone();
        let out = change(&mut v, now);
        q::save_verification(&mut tx, &v, None, "", &[]).await?;
        tx.commit().await?;
        Ok(Ok((before, v, out)))
    }

    /// The live pending verification `key` names, if any.
    pub async fn fetch(
        &self,
        service: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<Verification>, ApiError> {
        let mut c = self.pool.acquire().await?;
        let to = if crate::twilio::sid::is_valid(key, crate::twilio::sid::VERIFICATION) {
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT recipient FROM verifications WHERE sid = $1 AND service_sid = $2 AND status = 'pending'",
            )
            .bind(key)
            .bind(service)
            .fetch_optional(&mut *c)
            .await?;
            match row {
                Some((to,)) => to,
                None => return Ok(None),
            }
        } else {
            key.to_owned()
        };
        let mut tx = c.begin().await?;
        let v = pending_of(&mut tx, service, &to).await?;
        tx.commit().await?;
        Ok(v.filter(|v| {
            v.is_live(now) && (!key.starts_with(crate::twilio::sid::VERIFICATION) || v.sid == key)
        }))
    }

    /// The admission logs of one rate limit from `since` on, optionally of one value.
    pub async fn usage(
        &self,
        rate_limit_id: i64,
        value: Option<&str>,
        since: i64,
    ) -> Result<Vec<ValueLog>, ApiError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT value, at_ms FROM admissions WHERE rate_limit_id = $1 AND at_ms >= $2 \
             AND ($3::text IS NULL OR value = $3) ORDER BY value, at_ms",
        )
        .bind(rate_limit_id)
        .bind(since)
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<ValueLog> = Vec::new();
        for (v, t) in rows {
            match out.last_mut() {
                Some(last) if last.value == v => last.log.push_back(t),
                _ => out.push(ValueLog {
                    value: v,
                    log: VecDeque::from([t]),
                }),
            }
        }
        Ok(out)
    }
}
