//! Persistence. SQL lives here and only here.
//!
//! SQLite in WAL mode with `synchronous=FULL`. All writes go through one writer task
//! (`writer`), which batches them into transactions (group commit); reads at start-up and for the
//! control plane use a small pool.

mod ops;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};

pub use ops::*;
pub use writer::{BoxFuture, Writer};

use crate::catalog::{BucketRecord, Catalog, RateLimitRecord, ServiceRecord};
use crate::verification::{Attempt, Status, Verification};

pub struct Store {
    pub pool: SqlitePool,
    pub writer: Writer,
}

impl Store {
    /// Opens (creating if missing) and migrates the database, and starts the writer.
    pub async fn open(url: &str) -> Result<(Self, tokio::task::JoinHandle<()>), String> {
        if !url.starts_with("sqlite:") {
            return Err(format!(
                "unsupported database URL {:?}: use sqlite://PATH or sqlite::memory:",
                url.split(':').next().unwrap_or_default()
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("invalid database URL: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
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
        Ok((Self { pool, writer }, handle))
    }

    pub async fn load_catalog(&self) -> Result<Catalog, sqlx::Error> {
        let mut catalog = Catalog::default();
        let rows = sqlx::query("SELECT sid, account_sid, friendly_name, code_length, custom_code_enabled, settings, date_created, date_updated FROM services")
            .fetch_all(&self.pool)
            .await?;
        for r in rows {
            catalog.put_service(ServiceRecord {
                sid: r.get(0),
                account_sid: r.get(1),
                friendly_name: r.get(2),
                code_length: r.get::<i64, _>(3) as u32,
                custom_code_enabled: r.get(4),
                settings: serde_json::from_str(r.get::<&str, _>(5)).unwrap_or_default(),
                date_created: r.get(6),
                date_updated: r.get(7),
            });
        }
        let rows = sqlx::query("SELECT id, sid, service_sid, account_sid, unique_name, description, date_created, date_updated FROM rate_limits")
            .fetch_all(&self.pool)
            .await?;
        let mut homes: HashMap<i64, (String, String, String)> = HashMap::new();
        for r in rows {
            let rec = RateLimitRecord {
                id: r.get(0),
                sid: r.get(1),
                service_sid: r.get(2),
                account_sid: r.get(3),
                unique_name: r.get(4),
                description: r.get(5),
                date_created: r.get(6),
                date_updated: r.get(7),
            };
            homes.insert(
                rec.id,
                (
                    rec.account_sid.clone(),
                    rec.service_sid.clone(),
                    rec.sid.clone(),
                ),
            );
            catalog.put_rate_limit(rec);
        }
        let rows = sqlx::query("SELECT sid, rate_limit_id, max, interval, live_since_ms, date_created, date_updated FROM buckets")
            .fetch_all(&self.pool)
            .await?;
        for r in rows {
            let Some((account, service, rate_limit)) = homes.get(&r.get::<i64, _>(1)) else {
                continue;
            };
            catalog.put_bucket(BucketRecord {
                sid: r.get(0),
                rate_limit_sid: rate_limit.clone(),
                service_sid: service.clone(),
                account_sid: account.clone(),
                max: r.get::<i64, _>(2) as u32,
                interval: r.get::<i64, _>(3) as u32,
                live_since_ms: r.get(4),
                date_created: r.get(5),
                date_updated: r.get(6),
            });
        }
        Ok(catalog)
    }

    pub async fn load_clocks(&self) -> Result<HashMap<String, i64>, sqlx::Error> {
        let rows = sqlx::query("SELECT sid, clock_offset_ms FROM accounts")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Every admission, oldest first: (rate limit id, value, time).
    pub async fn load_admissions(&self) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
        let rows = sqlx::query("SELECT rate_limit_id, value, at_ms FROM admissions ORDER BY at_ms")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Verifications still pending, with their send attempts.
    pub async fn load_pending(&self) -> Result<Vec<Verification>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE status = 'pending'"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out: BTreeMap<String, Verification> = rows
            .iter()
            .map(verification_from_row)
            .map(|v| (v.sid.clone(), v))
            .collect();
        let rows = sqlx::query(
            "SELECT a.verification_sid, a.sid, a.channel, a.at_ms FROM send_attempts a \
             JOIN verifications v ON v.sid = a.verification_sid \
             WHERE v.status = 'pending' ORDER BY a.at_ms, a.sid",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            if let Some(v) = out.get_mut(r.get::<&str, _>(0)) {
                v.attempts.push(Attempt {
                    sid: r.get(1),
                    channel: r.get(2),
                    at_ms: r.get(3),
                });
            }
        }
        Ok(out.into_values().collect())
    }

    /// Send times per (service, recipient) since `since_ms` (for the send-attempts rule).
    pub async fn load_recent_sends(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT service_sid, recipient, at_ms FROM send_attempts WHERE at_ms >= ? ORDER BY at_ms",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// One page of the outbox of an account, ordered by attempt SID.
    pub async fn outbox(
        &self,
        account: &str,
        filter: &OutboxFilter,
        cursor: &crate::twilio::paging::Cursor,
        limit: usize,
    ) -> Result<(Vec<OutboxMessage>, bool), sqlx::Error> {
        use crate::twilio::paging::Cursor;
        let mut sql = String::from(
            "SELECT sid, recipient, channel, code, verification_sid, service_sid, account_sid, at_ms \
             FROM send_attempts WHERE account_sid = ?",
        );
        let mut binds: Vec<String> = vec![account.to_owned()];
        for (col, v) in [
            ("recipient", &filter.to),
            ("service_sid", &filter.service_sid),
            ("verification_sid", &filter.verification_sid),
        ] {
            if let Some(v) = v {
                sql.push_str(&format!(" AND {col} = ?"));
                binds.push(v.clone());
            }
        }
        let (desc, offset) = match cursor {
            Cursor::Start => (false, 0),
            Cursor::Offset(n) => (false, *n),
            Cursor::After(s) => {
                sql.push_str(" AND sid > ?");
                binds.push(s.clone());
                (false, 0)
            }
            Cursor::Before(s) => {
                sql.push_str(" AND sid < ?");
                binds.push(s.clone());
                (true, 0)
            }
        };
        sql.push_str(if desc {
            " ORDER BY sid DESC"
        } else {
            " ORDER BY sid"
        });
        sql.push_str(" LIMIT ? OFFSET ?");
        let mut q = sqlx::query(&sql);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q
            .bind((limit + 1) as i64)
            .bind(offset as i64)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() > limit;
        let mut msgs: Vec<OutboxMessage> = rows
            .iter()
            .take(limit)
            .map(|r| OutboxMessage {
                sid: r.get(0),
                to: r.get(1),
                channel: r.get(2),
                code: r.get(3),
                verification_sid: r.get(4),
                service_sid: r.get(5),
                account_sid: r.get(6),
                at_ms: r.get(7),
            })
            .collect();
        if desc {
            msgs.reverse();
        }
        Ok((msgs, more))
    }

    /// Whether any record of the outbox query lies before `sid` (for `previous_page_url`).
    pub async fn outbox_has_before(&self, account: &str, sid: &str) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM send_attempts WHERE account_sid = ? AND sid < ?)",
        )
        .bind(account)
        .bind(sid)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<bool, _>(0))
    }
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

const VERIFICATION_COLUMNS: &str = "sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version";

fn verification_from_row(r: &sqlx::sqlite::SqliteRow) -> Verification {
    Verification {
        sid: r.get(0),
        service_sid: r.get(1),
        account_sid: r.get(2),
        to: r.get(3),
        channel: r.get(4),
        status: Status::parse(r.get::<&str, _>(5)).unwrap_or(Status::Failed),
        code: r.get(6),
        amount: r.get(7),
        payee: r.get(8),
        checks_failed: r.get::<i64, _>(9) as u32,
        expires_ms: r.get(10),
        date_created: r.get(11),
        date_updated: r.get(12),
        version: r.get::<i64, _>(13) as u64,
        attempts: Vec::new(),
    }
}
