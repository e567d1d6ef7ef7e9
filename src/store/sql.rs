//! Every SQL statement, written once and compiled for both backends: `sqlite` (the default,
//! single instance) and `pg` (PostgreSQL, shared by many instances). Statements use `?`
//! placeholders; for PostgreSQL they are numbered (`$1`, `$2`, …) by `numbered`.

use std::borrow::Cow;

use super::StoreError;

fn found(rows: u64, path: impl FnOnce() -> String) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound(path()))
    } else {
        Ok(())
    }
}

/// SQLite takes `?` placeholders as they are.
pub fn as_is(sql: &str) -> Cow<'_, str> {
    Cow::Borrowed(sql)
}

/// PostgreSQL wants `$n`: `?` becomes the next number, `?N` becomes `$N`.
pub fn numbered(sql: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 1;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '?' {
            out.push(ch);
            continue;
        }
        out.push('$');
        if chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                out.push(d);
                chars.next();
            }
        } else {
            out.push_str(&next.to_string());
            next += 1;
        }
    }
    Cow::Owned(out)
}

macro_rules! statements {
    ($conn:ty, $row:ty, $sql:path) => {
        use std::collections::HashMap;

        use sqlx::Row;

        use crate::catalog::{BucketRecord, Catalog, RateLimitRecord, ServiceRecord};
        use crate::store::{OutboxFilter, OutboxMessage};
        use crate::store::StoreError;
        use crate::store::sql::found;
        use crate::core::{Admission, Attempt, Status, Verification};

        pub async fn insert_service(c: &mut $conn, s: &ServiceRecord) -> Result<(), StoreError> {
            sqlx::query(&$sql("INSERT INTO services (sid, account_sid, friendly_name, code_length, custom_code_enabled, settings, date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
                .bind(&s.sid)
                .bind(&s.account_sid)
                .bind(&s.friendly_name)
                .bind(s.code_length as i64)
                .bind(s.custom_code_enabled)
                .bind(serde_json::to_string(&s.settings)?)
                .bind(s.date_created)
                .bind(s.date_updated)
                .execute(c)
                .await?;
            Ok(())
        }

        pub async fn update_service(c: &mut $conn, s: &ServiceRecord) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("UPDATE services SET friendly_name = ?, code_length = ?, custom_code_enabled = ?, settings = ?, date_updated = ? WHERE sid = ? AND account_sid = ?"))
                .bind(&s.friendly_name)
                .bind(s.code_length as i64)
                .bind(s.custom_code_enabled)
                .bind(serde_json::to_string(&s.settings)?)
                .bind(s.date_updated)
                .bind(&s.sid)
                .bind(&s.account_sid)
                .execute(c)
                .await?;
            found(done.rows_affected(), || format!("/Services/{}", s.sid))
        }


        pub async fn delete_service(
            c: &mut $conn,
            account: &str,
            sid: &str,
        ) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM services WHERE sid = ? AND account_sid = ?"))
                .bind(sid)
                .bind(account)
                .execute(c)
                .await?;
            found(done.rows_affected(), || format!("/Services/{sid}"))
        }

        /// Inserts a rate limit (its `id` is assigned here) unless the service already has
        /// `max_per_service` (60207) or one with the same unique name (60208).
        pub async fn insert_rate_limit(
            c: &mut $conn,
            mut r: RateLimitRecord,
            max_per_service: u32,
        ) -> Result<RateLimitRecord, StoreError> {
            let (count,): (i64,) = sqlx::query_as(&$sql("SELECT COUNT(*) FROM rate_limits WHERE service_sid = ?"))
                .bind(&r.service_sid)
                .fetch_one(&mut *c)
                .await?;
            if count >= i64::from(max_per_service) {
                return Err(StoreError::TooManyRateLimits(max_per_service));
            }
            let id: (i64,) = sqlx::query_as(&$sql("INSERT INTO rate_limits (sid, service_sid, account_sid, unique_name, description, date_created, date_updated) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?) RETURNING id"))
                .bind(&r.sid)
                .bind(&r.service_sid)
                .bind(&r.account_sid)
                .bind(&r.unique_name)
                .bind(&r.description)
                .bind(r.date_created)
                .bind(r.date_updated)
                .bind(&r.service_sid)
                .fetch_optional(c)
                .await
                .map_err(|e| StoreError::unique_or(e, StoreError::DuplicateUniqueName))?
                .ok_or_else(|| StoreError::NotFound(format!("/Services/{}", r.service_sid)))?;
            r.id = id.0;
            Ok(r)
        }

        pub async fn update_rate_limit(
            c: &mut $conn,
            r: &RateLimitRecord,
        ) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("UPDATE rate_limits SET description = ?, date_updated = ? WHERE id = ?"))
                .bind(&r.description)
                .bind(r.date_updated)
                .bind(r.id)
                .execute(c)
                .await?;
            found(done.rows_affected(), || {
                format!("/Services/{}/RateLimits/{}", r.service_sid, r.sid)
            })
        }

        pub async fn delete_rate_limit(c: &mut $conn, id: i64) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM rate_limits WHERE id = ?"))
                .bind(id)
                .execute(c)
                .await?;
            found(done.rows_affected(), || "/RateLimits".to_owned())
        }


        /// Inserts a bucket unless the rate limit already has `max_per_rate_limit` (60210) or one with
        /// the same interval (60211).
        pub async fn insert_bucket(
            c: &mut $conn,
            b: &BucketRecord,
            rate_limit_id: i64,
            max_per_rate_limit: u32,
        ) -> Result<(), StoreError> {
            let (count,): (i64,) = sqlx::query_as(&$sql("SELECT COUNT(*) FROM buckets WHERE rate_limit_id = ?"))
                .bind(rate_limit_id)
                .fetch_one(&mut *c)
                .await?;
            if count >= i64::from(max_per_rate_limit) {
                return Err(StoreError::TooManyBuckets(max_per_rate_limit));
            }
            let done = sqlx::query(&$sql("INSERT INTO buckets (sid, rate_limit_id, max, \"interval\", live_since_ms, date_created, date_updated) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM rate_limits WHERE id = ?)"))
                .bind(&b.sid)
                .bind(rate_limit_id)
                .bind(i64::from(b.max))
                .bind(i64::from(b.interval))
                .bind(b.live_since_ms)
                .bind(b.date_created)
                .bind(b.date_updated)
                .bind(rate_limit_id)
                .execute(c)
                .await
                .map_err(|e| StoreError::unique_or(e, StoreError::DuplicateInterval))?;
            found(done.rows_affected(), || {
                format!(
                    "/Services/{}/RateLimits/{}",
                    b.service_sid, b.rate_limit_sid
                )
            })
        }

        pub async fn update_bucket(c: &mut $conn, b: &BucketRecord) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("UPDATE buckets SET max = ?, \"interval\" = ?, live_since_ms = ?, date_updated = ? WHERE sid = ?"))
                .bind(i64::from(b.max))
                .bind(i64::from(b.interval))
                .bind(b.live_since_ms)
                .bind(b.date_updated)
                .bind(&b.sid)
                .execute(c)
                .await
                .map_err(|e| StoreError::unique_or(e, StoreError::DuplicateInterval))?;
            found(done.rows_affected(), || {
                format!(
                    "/Services/{}/RateLimits/{}/Buckets/{}",
                    b.service_sid, b.rate_limit_sid, b.sid
                )
            })
        }

        pub async fn delete_bucket(c: &mut $conn, sid: &str) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM buckets WHERE sid = ?"))
                .bind(sid)
                .execute(c)
                .await?;
            found(done.rows_affected(), || "/Buckets".to_owned())
        }

        /// Saves a verification's state (only if newer than what is stored: concurrent requests may
        /// reach the writer out of order), its new send attempt, and the admissions that let it through.
        /// A verification whose service was deleted meanwhile is not stored.
        pub async fn save_verification(
            c: &mut $conn,
            v: &Verification,
            attempt: Option<&Attempt>,
            admissions: &[Admission],
        ) -> Result<(), StoreError> {
            sqlx::query(&$sql(
                "INSERT INTO verifications (sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?) \
                 ON CONFLICT (sid) DO UPDATE SET channel = excluded.channel, status = excluded.status, \
                   checks_failed = excluded.checks_failed, expires_ms = excluded.expires_ms, \
                   date_updated = excluded.date_updated, version = excluded.version \
                 WHERE excluded.version > verifications.version",
            ))
            .bind(&v.sid)
            .bind(&v.service_sid)
            .bind(&v.account_sid)
            .bind(&v.to)
            .bind(&v.channel)
            .bind(v.status.as_str())
            .bind(&v.code)
            .bind(&v.amount)
            .bind(&v.payee)
            .bind(i64::from(v.checks_failed))
            .bind(v.expires_ms)
            .bind(v.date_created)
            .bind(v.date_updated)
            .bind(v.version as i64)
            .bind(&v.service_sid)
            .execute(&mut *c)
            .await?;
            if let Some(a) = attempt {
                sqlx::query(&$sql("INSERT INTO send_attempts (sid, verification_sid, service_sid, account_sid, recipient, channel, code, at_ms) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM verifications WHERE sid = ?)"))
                    .bind(&a.sid)
                    .bind(&v.sid)
                    .bind(&v.service_sid)
                    .bind(&v.account_sid)
                    .bind(&v.to)
                    .bind(&a.channel)
                    .bind(&v.code)
                    .bind(a.at_ms)
                    .bind(&v.sid)
                    .execute(&mut *c)
                    .await?;
            }
            for a in admissions {
                sqlx::query(&$sql("INSERT INTO admissions (rate_limit_id, value, at_ms) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM rate_limits WHERE id = ?)"))
                    .bind(a.rate_limit_id)
                    .bind(&*a.value)
                    .bind(a.at_ms)
                    .bind(a.rate_limit_id)
                    .execute(&mut *c)
                    .await?;
            }
            Ok(())
        }

        pub async fn set_clock_offset(
            c: &mut $conn,
            account: &str,
            offset_ms: i64,
        ) -> Result<(), StoreError> {
            sqlx::query(&$sql("INSERT INTO accounts (sid, clock_offset_ms) VALUES (?, ?) ON CONFLICT (sid) DO UPDATE SET clock_offset_ms = excluded.clock_offset_ms"))
                .bind(account)
                .bind(offset_ms)
                .execute(c)
                .await?;
            Ok(())
        }

        /// Deletes an account's verifications, codes, counters and TOTP entities (and, with
        /// `everything`, its services), and puts its clock back to real time.
        pub async fn reset_account(
            c: &mut $conn,
            account: &str,
            everything: bool,
        ) -> Result<(), StoreError> {
            let mut statements = vec![
                "DELETE FROM verifications WHERE account_sid = ?1",
                "DELETE FROM entities WHERE account_sid = ?1",
                "DELETE FROM admissions WHERE rate_limit_id IN (SELECT id FROM rate_limits WHERE account_sid = ?1)",
                "DELETE FROM accounts WHERE sid = ?1",
            ];
            if everything {
                statements.push("DELETE FROM services WHERE account_sid = ?1");
                statements.push("DELETE FROM safe_list WHERE account_sid = ?1");
            }
            for sql in statements {
                sqlx::query(&$sql(sql)).bind(account).execute(&mut *c).await?;
            }
            Ok(())
        }

        /// Deletes the admissions of a rate limit older than `before_ms`.
        pub async fn prune_admissions(
            c: &mut $conn,
            rate_limit_id: i64,
            before_ms: i64,
        ) -> Result<u64, StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM admissions WHERE rate_limit_id = ? AND at_ms < ?"))
                .bind(rate_limit_id)
                .bind(before_ms)
                .execute(c)
                .await?;
            Ok(done.rows_affected())
        }

        /// Deletes an account's verifications (and their codes) created before `before_ms`.
        pub async fn purge_verifications(
            c: &mut $conn,
            account: &str,
            before_ms: i64,
        ) -> Result<u64, StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM verifications WHERE account_sid = ? AND date_created < ?"))
                .bind(account)
                .bind(before_ms)
                .execute(c)
                .await?;
            Ok(done.rows_affected())
        }

        pub async fn load_catalog(c: &mut $conn) -> Result<Catalog, sqlx::Error> {
            let mut catalog = Catalog::default();
            let rows = sqlx::query(&$sql("SELECT sid, account_sid, friendly_name, code_length, custom_code_enabled, settings, date_created, date_updated FROM services"))
                .fetch_all(&mut *c)
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
            let rows = sqlx::query(&$sql("SELECT id, sid, service_sid, account_sid, unique_name, description, date_created, date_updated FROM rate_limits"))
                .fetch_all(&mut *c)
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
            let rows = sqlx::query(&$sql("SELECT sid, rate_limit_id, max, \"interval\", live_since_ms, date_created, date_updated FROM buckets"))
                .fetch_all(&mut *c)
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

        pub async fn load_clocks(c: &mut $conn) -> Result<HashMap<String, i64>, sqlx::Error> {
            let rows = sqlx::query(&$sql("SELECT sid, clock_offset_ms FROM accounts"))
                .fetch_all(&mut *c)
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        }

        /// One page of the outbox of an account, ordered by attempt SID.
        pub async fn outbox(
            c: &mut $conn,
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
            let sql = $sql(&sql);
            let mut q = sqlx::query(&sql);
            for b in &binds {
                q = q.bind(b);
            }
            let rows = q
                .bind((limit + 1) as i64)
                .bind(offset as i64)
                .fetch_all(&mut *c)
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
        pub async fn outbox_has_before(c: &mut $conn, account: &str, sid: &str) -> Result<bool, sqlx::Error> {
            let row = sqlx::query(
                &$sql("SELECT EXISTS (SELECT 1 FROM send_attempts WHERE account_sid = ? AND sid < ?)"),
            )
            .bind(account)
            .bind(sid)
            .fetch_one(&mut *c)
            .await?;
            Ok(row.get::<bool, _>(0))
        }

        /// Stores the TLS authority unless one is kept already; returns the one kept
        /// (certificate and key, PEM).
        pub async fn keep_tls_authority(
            c: &mut $conn,
            cert_pem: &str,
            key_pem: &str,
            created_ms: i64,
        ) -> Result<(String, String), StoreError> {
            sqlx::query(&$sql("INSERT INTO tls_authority (id, cert_pem, key_pem, date_created) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING"))
                .bind(cert_pem)
                .bind(key_pem)
                .bind(created_ms)
                .execute(&mut *c)
                .await?;
            Ok(sqlx::query_as(&$sql("SELECT cert_pem, key_pem FROM tls_authority WHERE id = 1"))
                .fetch_one(&mut *c)
                .await?)
        }

        pub(crate) const VERIFICATION_COLUMNS: &str = "sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version";

        /// A verification's `VERIFICATION_COLUMNS`, as read from a row or from JSON.
        pub(crate) type VerificationColumns = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            i64,
            i64,
            i64,
            i64,
            i64,
        );

        /// The verification of `VERIFICATION_COLUMNS` (without its attempts).
        pub(crate) fn verification_from_columns(c: VerificationColumns) -> Verification {
            Verification {
                sid: c.0,
                service_sid: c.1,
                account_sid: c.2,
                to: c.3,
                channel: c.4,
                status: Status::parse(&c.5).unwrap_or(Status::Failed),
                code: c.6,
                amount: c.7,
                payee: c.8,
                checks_failed: c.9 as u32,
                expires_ms: c.10,
                date_created: c.11,
                date_updated: c.12,
                version: c.13 as u64,
                attempts: Vec::new(),
            }
        }

        // Unused by SQLite outside tests: its start-up reads verifications as JSON
        // (`sqlite::load_pending`), and a test compares the two.
        #[allow(dead_code)]
        pub(crate) fn verification_from_row(r: &$row) -> Verification {
            verification_from_columns((
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
                r.get(10),
                r.get(11),
                r.get(12),
                r.get(13),
            ))
        }

    };
}

pub mod sqlite {
    use std::borrow::Cow;

    statements!(
        sqlx::SqliteConnection,
        sqlx::sqlite::SqliteRow,
        super::as_is
    );

    // --- start-up: what the cache is rebuilt from ---------------------------------------------
    //
    // A start-up with a million live values reads millions of rows. Through sqlx each value of
    // each row is copied by SQLite's thread and handed to the caller's (about 15 µs a pending
    // verification of 17 columns); here SQLite builds JSON arrays of `CHUNK` rows at a time
    // instead, in rowid order, and serde_json reads them: a row costs one JSON element.

    /// Rows per statement: a chunk's text (~200 KB of verifications) stays small enough for
    /// the allocator to reuse its memory from one chunk to the next (at 8,192 rows each
    /// chunk's megabytes were fresh pages, faulted in and zeroed, then given back).
    const CHUNK: usize = 1024;

    /// Rows of a table by rowid: those after `.0` up to `.1`.
    pub type Rowids = (i64, i64);

    /// Every row.
    pub const ALL: Rowids = (i64::MIN, i64::MAX);

    /// Whether `table` is a view here: the reader of last resort (a full disk) reads the
    /// journal through views of the tables' names, which have no rowid.
    async fn is_view(c: &mut sqlx::SqliteConnection, table: &str) -> Result<bool, sqlx::Error> {
        let (views,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sqlite_temp_master WHERE type = 'view' AND name = ?",
        )
        .bind(table)
        .fetch_one(&mut *c)
        .await?;
        Ok(views > 0)
    }

    /// `table`'s rows in up to `parts` ranges of about equal spans of rowids, for readers that
    /// work at once (one range, `ALL`, when the table is a view).
    pub async fn split(
        c: &mut sqlx::SqliteConnection,
        table: &str,
        parts: usize,
    ) -> Result<Vec<Rowids>, sqlx::Error> {
        if is_view(c, table).await? {
            return Ok(vec![ALL]);
        }
        let (first, last): (Option<i64>, Option<i64>) =
            sqlx::query_as(&format!("SELECT min(rowid), max(rowid) FROM {table}"))
                .fetch_one(&mut *c)
                .await?;
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(vec![ALL]);
        };
        let parts = parts.max(1) as i128;
        let span = (i128::from(last) - i128::from(first) + parts) / parts;
        let mut out = Vec::new();
        let mut after = i64::MIN;
        for i in 1..=parts {
            let upto = if i == parts {
                i64::MAX
            } else {
                i64::try_from(i128::from(first) - 1 + span * i).unwrap_or(i64::MAX)
            };
            if upto > after {
                out.push((after, upto));
                after = upto;
            }
        }
        Ok(out)
    }

    /// Calls `chunk` with the JSON text of every row of `SELECT json_array(columns) FROM
    /// table WHERE filter` (`?2` in `filter` is `bind`) among `rows`, in rowid order, as
    /// arrays of `CHUNK` rows (`each_row` reads them).
    async fn json_rows(
        c: &mut sqlx::SqliteConnection,
        table: &str,
        columns: &str,
        filter: &str,
        bind: Option<i64>,
        rows: Rowids,
        mut chunk: impl FnMut(&str) -> Result<(), serde_json::Error>,
    ) -> Result<(), sqlx::Error> {
        // The rows' JSON texts are joined as text: `json_group_array` would parse each again.
        let row = format!("json_array({columns})");
        // The reader of last resort's views have no rowid: one statement for all the rows.
        let text = if is_view(c, table).await? {
            format!(
                "SELECT NULL, '[' || coalesce(group_concat(j, ','), '') || ']' FROM \
                 (SELECT {row} AS j FROM {table} \
                  WHERE ?1 IS NOT NULL AND ?3 IS NOT NULL AND {filter})"
            )
        } else {
            format!(
                "SELECT max(r), '[' || group_concat(j, ',') || ']' FROM \
                 (SELECT {table}.rowid AS r, {row} AS j FROM {table} \
                  WHERE {table}.rowid > ?1 AND {table}.rowid <= ?3 AND {filter} \
                  ORDER BY {table}.rowid LIMIT {CHUNK})"
            )
        };
        let mut read = |body: &str| chunk(body).map_err(|e| sqlx::Error::Decode(Box::new(e)));
        // Pipelined: while SQLite's thread builds the next chunk, this one reads the last.
        let (mut after, upto) = rows;
        let mut unread: Option<String> = None;
        loop {
            let fetch = sqlx::query_as::<_, (Option<i64>, Option<String>)>(&text)
                .bind(after)
                .bind(bind.unwrap_or(0))
                .bind(upto)
                .fetch_one(&mut *c);
            let reading = async { unread.take().map_or(Ok(()), |body| read(&body)) };
            let (fetched, reading) = tokio::join!(fetch, reading);
            reading?;
            let (last, body) = fetched?;
            match (last, body) {
                (Some(last), Some(body)) => {
                    after = last;
                    unread = Some(body);
                }
                (_, Some(body)) => return read(&body),
                (_, None) => return Ok(()),
            }
        }
    }

    /// Hands `each` the rows of one chunk, their text borrowed from it where JSON did not
    /// escape it.
    fn each_row<'de, T: serde::Deserialize<'de>>(
        body: &'de str,
        each: impl FnMut(T),
    ) -> Result<(), serde_json::Error> {
        let rows: Vec<T> = serde_json::from_str(body)?;
        rows.into_iter().for_each(each);
        Ok(())
    }

    /// Every admission, in no order: (rate limit id, value, time).
    pub async fn load_admissions(
        c: &mut sqlx::SqliteConnection,
    ) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
        let mut out = Vec::new();
        json_rows(
            c,
            "admissions",
            "rate_limit_id, value, at_ms",
            "1",
            None,
            ALL,
            |body| each_row(body, |row| out.push(row)),
        )
        .await?;
        Ok(out)
    }

    /// How many verifications are pending (to size the cache before they are read).
    pub async fn count_pending(c: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM verifications WHERE status = 'pending'")
                .fetch_one(&mut *c)
                .await?;
        Ok(n)
    }

    /// A pending verification's `VERIFICATION_COLUMNS` as the start-up reads them.
    #[derive(Debug, serde::Deserialize)]
    pub struct PendingRow<'a> {
        #[serde(borrow)]
        pub sid: Cow<'a, str>,
        #[serde(borrow)]
        pub service_sid: Cow<'a, str>,
        #[serde(borrow)]
        pub account_sid: Cow<'a, str>,
        #[serde(borrow)]
        pub to: Cow<'a, str>,
        #[serde(borrow)]
        pub channel: Cow<'a, str>,
        #[serde(borrow)]
        pub status: Cow<'a, str>,
        #[serde(borrow)]
        pub code: Cow<'a, str>,
        pub amount: Option<String>,
        pub payee: Option<String>,
        pub checks_failed: i64,
        pub expires_ms: i64,
        pub date_created: i64,
        pub date_updated: i64,
        pub version: i64,
    }

    #[cfg(test)]
    impl PendingRow<'_> {
        /// The verification of the row (without its attempts).
        pub fn verification(&self) -> Verification {
            verification_from_columns((
                self.sid.to_string(),
                self.service_sid.to_string(),
                self.account_sid.to_string(),
                self.to.to_string(),
                self.channel.to_string(),
                self.status.to_string(),
                self.code.to_string(),
                self.amount.clone(),
                self.payee.clone(),
                self.checks_failed,
                self.expires_ms,
                self.date_created,
                self.date_updated,
                self.version,
            ))
        }
    }

    /// Calls `each` with every verification still pending among `rows`, its attempts left out (the
    /// start-up reads them with the recent sends, in one pass: `load_attempts`).
    pub async fn load_pending(
        c: &mut sqlx::SqliteConnection,
        rows: Rowids,
        mut each: impl FnMut(PendingRow<'_>),
    ) -> Result<(), sqlx::Error> {
        // `+status`: not through the index on (status, expires_ms), whose order is not rowid's.
        json_rows(
            c,
            "verifications",
            VERIFICATION_COLUMNS,
            "+status = 'pending'",
            None,
            rows,
            |body| each_row(body, &mut each),
        )
        .await
    }

    /// A send attempt as the start-up reads it.
    #[derive(Debug, serde::Deserialize)]
    pub struct AttemptRow<'a> {
        #[serde(borrow)]
        pub verification_sid: Cow<'a, str>,
        #[serde(borrow)]
        pub account_sid: Cow<'a, str>,
        #[serde(borrow)]
        pub service_sid: Cow<'a, str>,
        #[serde(borrow)]
        pub recipient: Cow<'a, str>,
        #[serde(borrow)]
        pub sid: Cow<'a, str>,
        #[serde(borrow)]
        pub channel: Cow<'a, str>,
        pub at_ms: i64,
    }

    /// Calls `each` with every send attempt among `rows` made at or after `since_ms`, in the
    /// order they were stored.
    pub async fn load_attempts(
        c: &mut sqlx::SqliteConnection,
        rows: Rowids,
        since_ms: i64,
        mut each: impl FnMut(AttemptRow<'_>),
    ) -> Result<(), sqlx::Error> {
        json_rows(
            c,
            "send_attempts",
            "verification_sid, account_sid, service_sid, recipient, sid, channel, at_ms",
            "+at_ms >= ?2",
            Some(since_ms),
            rows,
            |body| each_row(body, &mut each),
        )
        .await
    }
    // --- one entry read back: what the cache evicted (`engine::sqlite::fault_in`) ----------

    /// The admission times of one (rate limit, value), oldest first.
    pub async fn admissions_of(
        c: &mut sqlx::SqliteConnection,
        rate_limit_id: i64,
        value: &str,
    ) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT at_ms FROM admissions WHERE rate_limit_id = ? AND value = ? ORDER BY at_ms",
        )
        .bind(rate_limit_id)
        .bind(value)
        .fetch_all(&mut *c)
        .await
    }

    /// One recipient's pending verifications (oldest first, without their attempts), and its
    /// send attempts since `sends_since` or the oldest of those was created, whichever is
    /// earlier (what the start-up reads of it): (verification, account, attempt, channel,
    /// time), in time order.
    #[allow(clippy::type_complexity)]
    pub async fn recipient_rows(
        c: &mut sqlx::SqliteConnection,
        service: &str,
        to: &str,
        sends_since: Option<i64>,
    ) -> Result<
        (
            Vec<Verification>,
            Vec<(String, String, String, String, i64)>,
        ),
        sqlx::Error,
    > {
        // Through the attempts' index by recipient (every verification has its first attempt),
        // then by SID; `+status`: never through the index on (status, expires_ms), which would
        // read every pending verification.
        let pending: Vec<Verification> = sqlx::query(&format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE sid IN \
             (SELECT verification_sid FROM send_attempts WHERE service_sid = ?1 AND recipient = ?2) \
             AND +status = 'pending' ORDER BY date_created, sid"
        ))
        .bind(service)
        .bind(to)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(verification_from_row)
        .collect();
        let from = pending
            .iter()
            .map(|v| v.date_created)
            .chain(sends_since)
            .min();
        let Some(from) = from else {
            return Ok((pending, Vec::new()));
        };
        let attempts = sqlx::query_as(
            "SELECT verification_sid, account_sid, sid, channel, at_ms FROM send_attempts \
             WHERE service_sid = ?1 AND recipient = ?2 AND at_ms >= ?3 ORDER BY at_ms, sid",
        )
        .bind(service)
        .bind(to)
        .bind(from)
        .fetch_all(&mut *c)
        .await?;
        Ok((pending, attempts))
    }

    /// The (service, recipient) of a pending verification.
    pub async fn pending_recipient(
        c: &mut sqlx::SqliteConnection,
        sid: &str,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT service_sid, recipient FROM verifications WHERE sid = ? AND status = 'pending'",
        )
        .bind(sid)
        .fetch_optional(&mut *c)
        .await
    }

    /// An account's pending verifications whose expiry is at or before `before` (its time),
    /// up to `limit`, soonest first: (service, recipient).
    pub async fn pending_due(
        c: &mut sqlx::SqliteConnection,
        account: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT service_sid, recipient FROM verifications WHERE status = 'pending' \
             AND expires_ms <= ? AND account_sid = ? ORDER BY expires_ms LIMIT ?",
        )
        .bind(before)
        .bind(account)
        .bind(limit)
        .fetch_all(&mut *c)
        .await
    }

    /// The admissions of one rate limit from `since` on, optionally of one value: (value,
    /// time), ordered by value and time.
    pub async fn admissions_since(
        c: &mut sqlx::SqliteConnection,
        rate_limit_id: i64,
        value: Option<&str>,
        since: i64,
    ) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT value, at_ms FROM admissions WHERE rate_limit_id = ?1 AND at_ms >= ?2 \
             AND (?3 IS NULL OR value = ?3) ORDER BY value, at_ms",
        )
        .bind(rate_limit_id)
        .bind(since)
        .bind(value)
        .fetch_all(&mut *c)
        .await
    }
}

pub mod pg {
    statements!(sqlx::PgConnection, sqlx::postgres::PgRow, super::numbered);
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(numbered("a = ?1 OR b = ?1"), "a = $1 OR b = $1");
    }
}
