//! The PostgreSQL backend: the core inside one transaction per request (starts: per batch of the
//! starts waiting at once, `pg_starts`). A change takes a transaction-scoped advisory lock on
//! its recipient, as a start does on its recipient and on every (rate limit, value) it names —
//! in ascending key order, so no two transactions deadlock — reads the state the core needs,
//! decides with it, and writes the changes in that same transaction. Decisions for one
//! recipient or one value are thereby serialized across every instance: exact, all or nothing,
//! and acknowledged only after commit.
//!
//! Expiry runs in the background on any instance (`expire_due`): it claims due verifications
//! with `FOR UPDATE SKIP LOCKED`, so each is expired exactly once, whether by a sweep or by the
//! request that touched it first.

use super::{Change, Key, Modified, ValueLog};
use crate::core::{self, Checked, Policy, Resolved, Verification};
use crate::store::StoreError;
use crate::store::pg::{PgStore, lock_all, lock_key, pending_of};
use crate::store::sql::pg as q;

/// The recipient a key names (a `VE` SID only names a pending verification) and the SID.
async fn recipient_of(
    c: &mut sqlx::PgConnection,
    service: &str,
    key: &str,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    Ok(match Key::parse(key) {
        Key::Sid(sid) => sqlx::query_scalar::<_, String>(
            "SELECT recipient FROM verifications WHERE sid = $1 AND service_sid = $2 AND status = 'pending'",
        )
        .bind(sid)
        .bind(service)
        .fetch_optional(&mut *c)
        .await?
        .map(|to| (to, Some(sid.to_owned()))),
        Key::To(to) => Some((to.to_owned(), None)),
    })
}

pub async fn change(
    p: &PgStore,
    now: i64,
    policy: Policy,
    service: &str,
    key: &str,
    change: Change,
) -> Result<Modified, StoreError> {
    let mut tx = p.pool.begin().await?;
    let Some((to, sid)) = recipient_of(&mut tx, service, key).await? else {
        return Ok(Modified::Missing);
    };
    lock_all(&mut tx, vec![lock_key(&["recipient", service, &to])]).await?;
    let pending = pending_of(&mut tx, service, &to).await?;
    let modified = match core::verification::resolve(pending.as_ref(), sid.as_deref(), now) {
        Resolved::Missing => return Ok(Modified::Missing),
        Resolved::Expired(old) => {
            q::save_verification(&mut tx, &old, None, &[]).await?;
            Modified::Expired(Box::new(old))
        }
        Resolved::Live(v) => {
            let outcome = change.apply(&v, &policy, now);
            if let Checked::Done(after) | Checked::MaxAttempts(after) = &outcome {
                q::save_verification(&mut tx, after, None, &[]).await?;
            }
            Modified::Live(Box::new((v, outcome)))
        }
    };
    tx.commit().await?;
    Ok(modified)
}

pub async fn fetch(
    p: &PgStore,
    service: &str,
    key: &str,
    now: i64,
) -> Result<Option<Verification>, StoreError> {
    let mut tx = p.pool.begin().await?;
    let Some((to, sid)) = recipient_of(&mut tx, service, key).await? else {
        return Ok(None);
    };
    let pending = pending_of(&mut tx, service, &to).await?;
    tx.commit().await?;
    Ok(
        match core::verification::resolve(pending.as_ref(), sid.as_deref(), now) {
            Resolved::Live(v) => Some(v),
            Resolved::Expired(_) | Resolved::Missing => None,
        },
    )
}

/// The admission logs of one rate limit from `since` on, optionally of one value.
pub async fn usage(
    p: &PgStore,
    rate_limit_id: i64,
    value: Option<&str>,
    since: i64,
) -> Result<Vec<ValueLog>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT value, at_ms FROM admissions WHERE rate_limit_id = $1 AND at_ms >= $2 \
         AND ($3::text IS NULL OR value = $3) ORDER BY value, at_ms",
    )
    .bind(rate_limit_id)
    .bind(since)
    .bind(value)
    .fetch_all(&p.pool)
    .await?;
    Ok(ValueLog::grouped(rows))
}

/// Verifications one sweep transaction claims.
const EXPIRE_CHUNK: i64 = 1000;

/// Expires an account's pending verifications past their lifetime at `now`. Rows another
/// transaction holds (a request deciding about that recipient) are skipped: that request
/// expires them itself if they are due. Returns the verifications expired.
pub async fn expire_due(
    p: &PgStore,
    account: &str,
    now: i64,
) -> Result<Vec<Verification>, StoreError> {
    let mut expired = Vec::new();
    loop {
        let mut tx = p.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM verifications WHERE account_sid = $1 AND status = 'pending' \
             AND expires_ms <= $2 ORDER BY expires_ms LIMIT $3 FOR UPDATE SKIP LOCKED",
            q::VERIFICATION_COLUMNS
        ))
        .bind(account)
        .bind(now)
        .bind(EXPIRE_CHUNK)
        .fetch_all(&mut *tx)
        .await?;
        let claimed = rows.len() as i64;
        let due: Vec<Verification> = rows
            .iter()
            .map(q::verification_from_row)
            .filter_map(|v| core::verification::expire(&v, now))
            .collect();
        sqlx::query(
            "UPDATE verifications v SET status = 'expired', date_updated = u.updated, version = u.version \
             FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(sid, updated, version) WHERE v.sid = u.sid",
        )
        .bind(due.iter().map(|v| v.sid.as_str()).collect::<Vec<_>>())
        .bind(due.iter().map(|v| v.date_updated).collect::<Vec<_>>())
        .bind(due.iter().map(|v| v.version as i64).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        expired.extend(due);
        if claimed < EXPIRE_CHUNK {
            return Ok(expired);
        }
    }
}
