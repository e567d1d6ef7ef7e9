//! The PostgreSQL backend: the core inside one transaction per request. A start takes
//! transaction-scoped advisory locks on its recipient and on every (rate limit, value) it names
//! — in ascending key order, so two starts never deadlock — reads the state the core needs,
//! decides with it, and writes the changes in that same transaction. Decisions for one
//! recipient or one value are thereby serialized across every instance: exact, all or nothing,
//! and acknowledged only after commit.
//!
//! Expiry runs in the background on any instance (`expire_due`): it claims due verifications
//! with `FOR UPDATE SKIP LOCKED`, so each is expired exactly once, whether by a sweep or by the
//! request that touched it first.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Change, Key, Modified, ValueLog};
use crate::catalog::RateLimitNode;
use crate::core::{
    self, Checked, Fresh, LimitCheck, Policy, Resolved, StartRequest, Started, Verification,
};
use crate::store::StoreError;
use crate::store::pg::{PgStore, lock_all, lock_key, pending_of};
use crate::store::sql::pg as q;
use sqlx::PgPool;

pub async fn start(
    pool: &PgPool,
    now: i64,
    policy: Policy,
    request: StartRequest,
    limits: &[(Arc<RateLimitNode>, String)],
    fresh: Fresh,
) -> Result<Started, StoreError> {
    let counted: Vec<&(Arc<RateLimitNode>, String)> = limits
        .iter()
        .filter(|(rl, _)| !rl.rules.is_empty())
        .collect();
    let mut tx = pool.begin().await?;
    let mut keys = vec![lock_key(&["recipient", &request.service_sid, &request.to])];
    for (rl, value) in &counted {
        keys.push(lock_key(&["admission", &rl.record.id.to_string(), value]));
    }
    lock_all(&mut tx, keys).await?;

    // Every (rate limit, value)'s admissions still in some window, and the recipient's sends the
    // send-attempts rule counts, in one round trip (after the locks: a statement's snapshot is
    // taken when it starts). Row 0 holds sends; row i the admissions of check i.
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
        "SELECT 0::int4, s.at_ms FROM send_attempts s \
           WHERE $4 AND s.service_sid = $5 AND s.recipient = $6 AND s.at_ms > $7 \
         UNION ALL \
         SELECT q.i::int4, a.at_ms FROM unnest($1::int8[], $2::text[], $3::int8[]) WITH ORDINALITY AS q(id, v, lower, i) \
           JOIN admissions a ON a.rate_limit_id = q.id AND a.value = q.v AND a.at_ms >= q.lower \
         ORDER BY 1, 2",
    )
    .bind(counted.iter().map(|(rl, _)| rl.record.id).collect::<Vec<i64>>())
    .bind(counted.iter().map(|(_, v)| v.as_str()).collect::<Vec<&str>>())
    .bind(&lowers)
    .bind(policy.send_attempts_limit > 0)
    .bind(&request.service_sid)
    .bind(&request.to)
    .bind(now - policy.send_window_ms)
    .fetch_all(&mut *tx)
    .await?;
    let mut sends: Vec<i64> = Vec::new();
    let mut logs: Vec<VecDeque<i64>> = vec![VecDeque::new(); counted.len()];
    for (i, at) in rows {
        if i == 0 {
            sends.push(at);
        // WITH ORDINALITY counts from 1.
        } else if let Some(log) = usize::try_from(i - 1).ok().and_then(|i| logs.get_mut(i)) {
            log.push_back(at);
        }
    }
    let checks: Vec<(LimitCheck<'_>, Option<&VecDeque<i64>>)> = counted
        .iter()
        .zip(&logs)
        .map(|((rl, value), log)| (super::limit_check(rl, value), Some(log)))
        .collect();
    let pending = pending_of(&mut tx, &request.service_sid, &request.to).await?;
    let started = core::verification::start(
        request,
        pending.as_ref(),
        sends,
        &checks,
        &policy,
        fresh,
        now,
    );
    if let Started::Admitted(a) = &started {
        if let Some(old) = &a.expired {
            q::save_verification(&mut tx, old, None, &[]).await?;
        }
        crate::store::pg::save_start(&mut tx, &a.verification, &a.attempt, &a.admissions).await?;
        tx.commit().await?;
    }
    Ok(started)
}

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
