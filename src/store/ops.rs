//! Write operations, each run by the writer inside its own savepoint. Checks that must be exact
//! under concurrency (counts, uniqueness) are made here, in the transaction, not in memory.

use sqlx::SqliteConnection;

use crate::catalog::{BucketRecord, RateLimitRecord, ServiceRecord};
use crate::twilio::ApiError;
use crate::verification::{Attempt, Verification};

/// Maps a unique-constraint violation to the given client error; anything else is internal.
fn unique_or_internal(e: sqlx::Error, on_unique: impl FnOnce() -> ApiError) -> ApiError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => on_unique(),
        _ => ApiError::from(e),
    }
}

pub async fn insert_service(c: &mut SqliteConnection, s: &ServiceRecord) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO services (sid, account_sid, friendly_name, code_length, custom_code_enabled, settings, date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&s.sid)
        .bind(&s.account_sid)
        .bind(&s.friendly_name)
        .bind(s.code_length as i64)
        .bind(s.custom_code_enabled)
        .bind(serde_json::to_string(&s.settings).map_err(ApiError::internal)?)
        .bind(s.date_created)
        .bind(s.date_updated)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn update_service(c: &mut SqliteConnection, s: &ServiceRecord) -> Result<(), ApiError> {
    let done = sqlx::query("UPDATE services SET friendly_name = ?, code_length = ?, custom_code_enabled = ?, settings = ?, date_updated = ? WHERE sid = ? AND account_sid = ?")
        .bind(&s.friendly_name)
        .bind(s.code_length as i64)
        .bind(s.custom_code_enabled)
        .bind(serde_json::to_string(&s.settings).map_err(ApiError::internal)?)
        .bind(s.date_updated)
        .bind(&s.sid)
        .bind(&s.account_sid)
        .execute(c)
        .await?;
    found(done.rows_affected(), || format!("/Services/{}", s.sid))
}

fn found(rows: u64, path: impl FnOnce() -> String) -> Result<(), ApiError> {
    if rows == 0 {
        Err(ApiError::not_found(path()))
    } else {
        Ok(())
    }
}

pub async fn delete_service(
    c: &mut SqliteConnection,
    account: &str,
    sid: &str,
) -> Result<(), ApiError> {
    let done = sqlx::query("DELETE FROM services WHERE sid = ? AND account_sid = ?")
        .bind(sid)
        .bind(account)
        .execute(c)
        .await?;
    found(done.rows_affected(), || format!("/Services/{sid}"))
}

/// Inserts a rate limit (its `id` is assigned here) unless the service already has
/// `max_per_service` (60207) or one with the same unique name (60208).
pub async fn insert_rate_limit(
    c: &mut SqliteConnection,
    mut r: RateLimitRecord,
    max_per_service: u32,
) -> Result<RateLimitRecord, ApiError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM rate_limits WHERE service_sid = ?")
        .bind(&r.service_sid)
        .fetch_one(&mut *c)
        .await?;
    if count >= i64::from(max_per_service) {
        return Err(ApiError::bad_request(
            60207,
            format!(
                "Max Rate Limits per Service reached: a service can have at most {max_per_service} rate limits"
            ),
        ));
    }
    let duplicate = || {
        ApiError::bad_request(
            60208,
            "A Rate Limit with this UniqueName already exists in this Service",
        )
    };
    let id: (i64,) = sqlx::query_as("INSERT INTO rate_limits (sid, service_sid, account_sid, unique_name, description, date_created, date_updated) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?) RETURNING id")
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
        .map_err(|e| unique_or_internal(e, duplicate))?
        .ok_or_else(|| ApiError::not_found(format!("/Services/{}", r.service_sid)))?;
    r.id = id.0;
    Ok(r)
}

pub async fn update_rate_limit(
    c: &mut SqliteConnection,
    r: &RateLimitRecord,
) -> Result<(), ApiError> {
    let done = sqlx::query("UPDATE rate_limits SET description = ?, date_updated = ? WHERE id = ?")
        .bind(&r.description)
        .bind(r.date_updated)
        .bind(r.id)
        .execute(c)
        .await?;
    found(done.rows_affected(), || {
        format!("/Services/{}/RateLimits/{}", r.service_sid, r.sid)
    })
}

pub async fn delete_rate_limit(c: &mut SqliteConnection, id: i64) -> Result<(), ApiError> {
    let done = sqlx::query("DELETE FROM rate_limits WHERE id = ?")
        .bind(id)
        .execute(c)
        .await?;
    found(done.rows_affected(), || "/RateLimits".to_owned())
}

fn duplicate_interval() -> ApiError {
    ApiError::bad_request(
        60211,
        "A Bucket with this Interval already exists in this Rate Limit",
    )
}

/// Inserts a bucket unless the rate limit already has `max_per_rate_limit` (60210) or one with
/// the same interval (60211).
pub async fn insert_bucket(
    c: &mut SqliteConnection,
    b: &BucketRecord,
    rate_limit_id: i64,
    max_per_rate_limit: u32,
) -> Result<(), ApiError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM buckets WHERE rate_limit_id = ?")
        .bind(rate_limit_id)
        .fetch_one(&mut *c)
        .await?;
    if count >= i64::from(max_per_rate_limit) {
        return Err(ApiError::bad_request(
            60210,
            format!(
                "Max Buckets per Rate Limit reached: a rate limit can have at most {max_per_rate_limit} buckets"
            ),
        ));
    }
    let done = sqlx::query("INSERT INTO buckets (sid, rate_limit_id, max, interval, live_since_ms, date_created, date_updated) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM rate_limits WHERE id = ?)")
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
        .map_err(|e| unique_or_internal(e, duplicate_interval))?;
    found(done.rows_affected(), || {
        format!(
            "/Services/{}/RateLimits/{}",
            b.service_sid, b.rate_limit_sid
        )
    })
}

pub async fn update_bucket(c: &mut SqliteConnection, b: &BucketRecord) -> Result<(), ApiError> {
    let done = sqlx::query("UPDATE buckets SET max = ?, interval = ?, live_since_ms = ?, date_updated = ? WHERE sid = ?")
        .bind(i64::from(b.max))
        .bind(i64::from(b.interval))
        .bind(b.live_since_ms)
        .bind(b.date_updated)
        .bind(&b.sid)
        .execute(c)
        .await
        .map_err(|e| unique_or_internal(e, duplicate_interval))?;
    found(done.rows_affected(), || {
        format!(
            "/Services/{}/RateLimits/{}/Buckets/{}",
            b.service_sid, b.rate_limit_sid, b.sid
        )
    })
}

pub async fn delete_bucket(c: &mut SqliteConnection, sid: &str) -> Result<(), ApiError> {
    let done = sqlx::query("DELETE FROM buckets WHERE sid = ?")
        .bind(sid)
        .execute(c)
        .await?;
    found(done.rows_affected(), || "/Buckets".to_owned())
}

/// Saves a verification's state (only if newer than what is stored: concurrent requests may
/// reach the writer out of order), its new send attempt, and the admissions that let it through.
/// A verification whose service was deleted meanwhile is not stored.
pub async fn save_verification(
    c: &mut SqliteConnection,
    v: &Verification,
    attempt: Option<&Attempt>,
    code: &str,
    admissions: &[(i64, Box<str>, i64)],
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO verifications (sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?) \
         ON CONFLICT (sid) DO UPDATE SET channel = excluded.channel, status = excluded.status, \
           checks_failed = excluded.checks_failed, expires_ms = excluded.expires_ms, \
           date_updated = excluded.date_updated, version = excluded.version \
         WHERE excluded.version > verifications.version",
    )
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
        sqlx::query("INSERT INTO send_attempts (sid, verification_sid, service_sid, account_sid, recipient, channel, code, at_ms) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM verifications WHERE sid = ?)")
            .bind(&a.sid)
            .bind(&v.sid)
            .bind(&v.service_sid)
            .bind(&v.account_sid)
            .bind(&v.to)
            .bind(&a.channel)
            .bind(code)
            .bind(a.at_ms)
            .bind(&v.sid)
            .execute(&mut *c)
            .await?;
    }
    for (rate_limit_id, value, at) in admissions {
        sqlx::query("INSERT INTO admissions (rate_limit_id, value, at_ms) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM rate_limits WHERE id = ?)")
            .bind(rate_limit_id)
            .bind(&**value)
            .bind(at)
            .bind(rate_limit_id)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

pub async fn set_clock_offset(
    c: &mut SqliteConnection,
    account: &str,
    offset_ms: i64,
) -> Result<(), ApiError> {
    sqlx::query("INSERT INTO accounts (sid, clock_offset_ms) VALUES (?, ?) ON CONFLICT (sid) DO UPDATE SET clock_offset_ms = excluded.clock_offset_ms")
        .bind(account)
        .bind(offset_ms)
        .execute(c)
        .await?;
    Ok(())
}

/// Deletes an account's verifications, codes and counters (and, with `everything`, its
/// services), and puts its clock back to real time.
pub async fn reset_account(
    c: &mut SqliteConnection,
    account: &str,
    everything: bool,
) -> Result<(), ApiError> {
    let mut statements = vec![
        "DELETE FROM verifications WHERE account_sid = ?1",
        "DELETE FROM admissions WHERE rate_limit_id IN (SELECT id FROM rate_limits WHERE account_sid = ?1)",
        "DELETE FROM accounts WHERE sid = ?1",
    ];
    if everything {
        statements.push("DELETE FROM services WHERE account_sid = ?1");
    }
    for sql in statements {
        sqlx::query(sql).bind(account).execute(&mut *c).await?;
    }
    Ok(())
}

/// Deletes the admissions of a rate limit older than `before_ms`.
pub async fn prune_admissions(
    c: &mut SqliteConnection,
    rate_limit_id: i64,
    before_ms: i64,
) -> Result<u64, ApiError> {
    let done = sqlx::query("DELETE FROM admissions WHERE rate_limit_id = ? AND at_ms < ?")
        .bind(rate_limit_id)
        .bind(before_ms)
        .execute(c)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes an account's verifications (and their codes) created before `before_ms`.
pub async fn purge_verifications(
    c: &mut SqliteConnection,
    account: &str,
    before_ms: i64,
) -> Result<u64, ApiError> {
    let done = sqlx::query("DELETE FROM verifications WHERE account_sid = ? AND date_created < ?")
        .bind(account)
        .bind(before_ms)
        .execute(c)
        .await?;
    Ok(done.rows_affected())
}
