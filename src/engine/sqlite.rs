//! The SQLite backend: every decision is made by the writer task (`writer::Writer::decide`),
//! in arrival order, with the core, against the cache of committed state plus the changes of
//! the batch being decided; reads come from the cache, which holds committed state only.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::RwLock;

use super::cache::{Cache, Need, ValueLog, settle};
use super::writer::Batch;
use super::{Change, Clocks, Key, Modified};
use crate::catalog::{Catalog, RateLimitNode};
use crate::core::Verification;
use crate::core::{self, Checked, Fresh, LimitCheck, Policy, Resolved, StartRequest, Started};
use crate::store::StoreError;
use crate::store::sql::sqlite as q;
use crate::store::{BoxFuture, SqliteStore};

/// Rebuilds the cache from the database at start-up: admission logs, pending verifications
/// with their attempts, and the send times the send-attempts rule still counts.
///
/// Readers work at once, each on a thread of its own (`in_parallel`), and each overlaps
/// SQLite's work with its own (`json_rows`): first the admission logs beside the pending
/// verifications (in ranges of rowids), then the send attempts (in ranges) — one pass for both
/// the attempts of pending verifications and the sends the send-attempts rule counts.
pub async fn rebuild(
    s: &SqliteStore,
    catalog: &Catalog,
    clocks: &Clocks,
    policy: &Policy,
) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    let ms = |since: std::time::Instant| since.elapsed().as_millis() as u64;
    let parts = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    s.cache
        .reserve_pending(usize::try_from(s.count_pending().await?).unwrap_or(0));

    // The admission logs (one reader: they are sorted whole), and the pending verifications;
    // each job gives the oldest creation time it restored.
    let mut jobs: Vec<BoxFuture<'_, Result<i64, sqlx::Error>>> = vec![Box::pin(async {
        s.cache.restore_admissions(s.load_admissions().await?);
        Ok(i64::MAX)
    })];
    for rows in s.split("verifications", parts).await? {
        jobs.push(Box::pin(async move {
            let mut oldest = i64::MAX;
            s.load_pending(rows, |v| {
                oldest = oldest.min(v.date_created);
                s.cache.restore_pending(&v)
            })
            .await?;
            Ok(oldest)
        }));
    }
    let mut oldest = i64::MAX;
    for job in in_parallel(jobs).await {
        oldest = oldest.min(job?);
    }
    let pending_ms = ms(started);

    // The send attempts: of pending verifications, made since the oldest was created; the
    // sends the send-attempts rule counts, since its window began (with the rule off none is
    // kept: `decide_start`).
    let phase = std::time::Instant::now();
    let since = super::real_now_ms() + clocks.earliest_offset() - policy.send_window_ms;
    let keep_sends = policy.send_attempts_limit > 0;
    let from = if keep_sends {
        since.min(oldest)
    } else {
        oldest
    };
    let mut jobs: Vec<BoxFuture<'_, Result<(), sqlx::Error>>> = Vec::new();
    for rows in s.split("send_attempts", parts).await? {
        jobs.push(Box::pin(s.load_attempts(rows, from, move |a| {
            if keep_sends
                && a.at_ms >= since
                && catalog.service(&a.account_sid, &a.service_sid).is_some()
            {
                s.cache
                    .restore_send(&a.account_sid, &a.service_sid, &a.recipient, a.at_ms);
            }
            s.cache
                .restore_attempt(&a.verification_sid, &a.sid, &a.channel, a.at_ms);
        })));
    }
    in_parallel(jobs)
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;
    s.cache.restored();
    let (values, recipients) = s.cache.tracked();
    tracing::info!(
        values,
        recipients,
        ms = ms(started),
        pending_ms,
        attempts_ms = ms(phase),
        "rebuilt the live state from the database"
    );
    // What the reads held (rows, JSON chunks, the admissions sorted whole) is free now: give it
    // back rather than keep it resident beside the live state.
    let _ = tokio::task::spawn_blocking(crate::memory::give_back).await;
    Ok(())
}

/// Runs the jobs to completion at once: each on a thread of its own where the runtime has
/// worker threads (their CPU work then runs in parallel), else one after the other.
async fn in_parallel<R: Send>(jobs: Vec<BoxFuture<'_, R>>) -> Vec<R> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = Handle::current();
    if handle.runtime_flavor() != RuntimeFlavor::MultiThread {
        let mut out = Vec::new();
        for job in jobs {
            out.push(job.await);
        }
        return out;
    }
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let handle = &handle;
            let threads: Vec<_> = jobs
                .into_iter()
                .map(|job| scope.spawn(move || handle.block_on(job)))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    })
}

pub async fn start(
    s: &SqliteStore,
    clocks: Arc<Clocks>,
    policy: Policy,
    request: StartRequest,
    limits: &[(Arc<RateLimitNode>, String)],
    fresh: Fresh,
) -> Result<Started, StoreError> {
    let limits: Vec<(Arc<RateLimitNode>, String)> = limits
        .iter()
        .filter(|(rl, _)| !rl.rules.is_empty())
        .cloned()
        .collect();
    // A start that committed state already refuses is refused now: refusals are monotonic
    // (`core::verification::refusal`), so the decisions in flight could only confirm it.
    if let Some(refused) = refused_by_committed(s, &clocks, &policy, &request, &limits) {
        return Ok(refused);
    }
    let mut needs: Vec<Need> = limits
        .iter()
        .map(|(rl, value)| Need::Log(rl.record.id, value.clone()))
        .collect();
    needs.push(Need::Recipient {
        service: request.service_sid.clone(),
        to: request.to.clone(),
        sends_since: sends_since(&policy, clocks.now(&request.account_sid)),
    });
    s.writer
        .decide_needing(needs, move |batch| {
            let now = clocks.now(&request.account_sid);
            decide_start(batch, &policy, request, &limits, fresh, now)
        })
        .await
}

/// From when a recipient's sends count for the send-attempts rule (`None`: the rule is off,
/// none is kept).
fn sends_since(policy: &Policy, now: i64) -> Option<i64> {
    (policy.send_attempts_limit > 0).then(|| now - policy.send_window_ms)
}

/// Reads back from the tables what `needs` names and the cache evicted. The writer calls this
/// on its own connection before it decides a batch: the tables hold every evicted entry as it
/// was evicted (`Cache::evict` runs with the journal applied, and nothing is decided about an
/// entry before it is read back).
pub(crate) async fn fault_in(
    conn: &mut sqlx::SqliteConnection,
    cache: &Cache,
    needs: &[Need],
) -> Result<(), sqlx::Error> {
    for need in needs {
        match need {
            Need::Log(id, value) => {
                if !cache.has_log(*id, value) && cache.log_evicted(*id, value) {
                    let times = q::admissions_of(conn, *id, value).await?;
                    if !times.is_empty() {
                        cache.restore_log(*id, value, &times);
                    }
                }
            }
            Need::Recipient {
                service,
                to,
                sends_since,
            } => recipient_in(conn, cache, service, to, *sends_since).await?,
        }
    }
    Ok(())
}

/// `fault_in` of one recipient: its newest pending verification with its attempts, and its
/// sends, read whole first and held again in one write (a read that fails changes nothing; a
/// reader never sees it half restored).
async fn recipient_in(
    conn: &mut sqlx::SqliteConnection,
    cache: &Cache,
    service: &str,
    to: &str,
    sends_since: Option<i64>,
) -> Result<(), sqlx::Error> {
    if cache.has_recipient(service, to) || !cache.recipient_evicted(service, to) {
        return Ok(());
    }
    let (pending, attempts) = q::recipient_rows(conn, service, to, sends_since).await?;
    let mut pending = pending.into_iter().last();
    let mut account = pending.as_ref().map(|v| v.account_sid.clone());
    let mut sends = Vec::new();
    for (verification, attempt_account, sid, channel, at_ms) in attempts {
        if sends_since.is_some_and(|since| at_ms >= since) {
            sends.push(at_ms);
            account.get_or_insert(attempt_account);
        }
        if let Some(v) = pending.as_mut().filter(|v| v.sid == verification) {
            v.attempts.push(core::Attempt {
                sid,
                channel,
                at_ms,
            });
        }
    }
    if let Some(account) = account {
        cache.restore_recipient(service, &account, to, pending.as_ref(), &sends);
    }
    Ok(())
}

/// The refusal the committed cache alone decides for a start, if any.
fn refused_by_committed(
    s: &SqliteStore,
    clocks: &Clocks,
    policy: &Policy,
    request: &StartRequest,
    limits: &[(Arc<RateLimitNode>, String)],
) -> Option<Started> {
    let now = clocks.now(&request.account_sid);
    let sends = if policy.send_attempts_limit > 0 {
        s.cache.sends(&request.service_sid, &request.to)
    } else {
        None
    };
    let logs: Vec<Option<VecDeque<i64>>> = limits
        .iter()
        .map(|(rl, value)| s.cache.log(rl.record.id, value))
        .collect();
    let checks: Vec<(LimitCheck<'_>, Option<&VecDeque<i64>>)> = limits
        .iter()
        .zip(&logs)
        .map(|((rl, value), log)| (super::limit_check(rl, value), log.as_ref()))
        .collect();
    core::verification::refusal(sends.into_iter().flatten(), &checks, policy, now)
}

fn decide_start(
    batch: &mut Batch<'_>,
    policy: &Policy,
    request: StartRequest,
    limits: &[(Arc<RateLimitNode>, String)],
    fresh: Fresh,
    now: i64,
) -> Started {
    let cache = batch.cache;
    for (rl, value) in limits {
        batch.overlay.log(cache, rl.record.id, value);
    }
    let (service, to) = (request.service_sid.clone(), request.to.clone());
    batch.overlay.recipient(cache, &service, &to);
    let (logs, recipients) = batch.overlay.parts();
    let r = recipients
        .get_mut(&(service, to))
        .expect("loaded into the overlay above");
    let keys: Vec<(i64, Box<str>)> = limits
        .iter()
        .map(|(rl, v)| (rl.record.id, Box::from(v.as_str())))
        .collect();
    let checks: Vec<(LimitCheck<'_>, Option<&VecDeque<i64>>)> = limits
        .iter()
        .zip(&keys)
        .map(|((rl, value), key)| (super::limit_check(rl, value), logs.get(key)))
        .collect();
    let started = core::verification::start(
        request,
        r.pending.as_ref(),
        r.sends.iter().copied(),
        &checks,
        policy,
        fresh,
        now,
    );
    drop(checks);
    let Started::Admitted(a) = &started else {
        return started;
    };
    for (adm, key) in a.admissions.iter().zip(&keys) {
        if let Some(log) = logs.get_mut(key) {
            log.push_back(adm.at_ms);
        }
    }
    if let Some(old) = &a.expired {
        settle(r, old);
    }
    // Only the send-attempts rule reads a recipient's sends: with it off, none is kept.
    if policy.send_attempts_limit > 0 {
        r.sends.push_back(a.attempt.at_ms);
    }
    settle(r, &a.verification);
    if let Some(old) = &a.expired {
        batch.save((old.clone(), None, Vec::new()));
    }
    batch.save((
        a.verification.clone(),
        Some(a.attempt.clone()),
        a.admissions.clone(),
    ));
    started
}

/// Which recipient a key names, by the cache's index of pending SIDs (committed state: a SID
/// not yet acknowledged cannot be named).
fn recipient_of(s: &SqliteStore, service: &str, key: &str) -> Option<(String, Option<String>)> {
    match Key::parse(key) {
        Key::Sid(sid) => {
            let (svc, to) = s.cache.find_sid(sid)?;
            (svc == service).then(|| (to, Some(sid.to_owned())))
        }
        Key::To(to) => Some((to.to_owned(), None)),
    }
}

pub async fn change(
    s: &SqliteStore,
    clocks: Arc<Clocks>,
    policy: Policy,
    account: &str,
    service: &str,
    key: &str,
    change: Change,
) -> Result<Modified, StoreError> {
    let since = sends_since(&policy, clocks.now(account));
    let Some((target, needs)) = target(s, service, key, since).await? else {
        return Ok(Modified::Missing);
    };
    let (account, service) = (account.to_owned(), service.to_owned());
    s.writer
        .decide_needing(needs, move |batch| {
            let now = clocks.now(&account);
            let cache = batch.cache;
            let Some((to, sid)) = target.resolve(cache, &service) else {
                return Modified::Missing;
            };
            let r = batch.overlay.recipient(cache, &service, &to);
            match core::verification::resolve(r.pending.as_ref(), sid.as_deref(), now) {
                Resolved::Missing => Modified::Missing,
                Resolved::Expired(old) => {
                    settle(r, &old);
                    batch.save((old.clone(), None, Vec::new()));
                    Modified::Expired(Box::new(old))
                }
                Resolved::Live(v) => {
                    let outcome = change.apply(&v, &policy, now);
                    if let Checked::Done(after) | Checked::MaxAttempts(after) = &outcome {
                        settle(r, after);
                        batch.save((after.clone(), None, Vec::new()));
                    }
                    Modified::Live(Box::new((v, outcome)))
                }
            }
        })
        .await
}

/// Whom a key names: a recipient the cache held when asked (with the SID named, if any), or a
/// pending SID the cache may have evicted.
enum Target {
    Held(String, Option<String>),
    Evicted(String),
}

impl Target {
    /// The recipient and the SID named, as the cache holds them now (read back if they were
    /// evicted: `Need`).
    fn resolve(self, cache: &Cache, service: &str) -> Option<(String, Option<String>)> {
        match self {
            Target::Held(to, sid) => Some((to, sid)),
            Target::Evicted(sid) => {
                let (svc, to) = cache.find_sid(&sid)?;
                (svc == service).then_some((to, Some(sid)))
            }
        }
    }
}

/// The recipient of a pending SID the cache's index does not hold, if the tables name one the
/// cache may have evicted (read without waiting for the journal: a SID the cache holds is in
/// its index; the writer decides again with the recipient read back, `Target::resolve`).
async fn evicted_sid(
    s: &SqliteStore,
    service: &str,
    sid: &str,
) -> Result<Option<String>, StoreError> {
    if !s.cache.evicted_any() {
        return Ok(None);
    }
    let found = q::pending_recipient(&mut *s.pool.acquire().await?, sid).await?;
    Ok(found.and_then(|(svc, to)| {
        (svc == service
            && !s.cache.has_recipient(service, &to)
            && s.cache.recipient_evicted(service, &to))
        .then_some(to)
    }))
}

/// Whom a key names, and what a decision about it needs the cache to hold; `None` if it names
/// no recipient held or evicted.
async fn target(
    s: &SqliteStore,
    service: &str,
    key: &str,
    sends_since: Option<i64>,
) -> Result<Option<(Target, Vec<Need>)>, StoreError> {
    let need = |to: &str| Need::Recipient {
        service: service.to_owned(),
        to: to.to_owned(),
        sends_since,
    };
    if let Some((to, sid)) = recipient_of(s, service, key) {
        let needs = vec![need(&to)];
        return Ok(Some((Target::Held(to, sid), needs)));
    }
    if let Key::Sid(sid) = Key::parse(key)
        && let Some(to) = evicted_sid(s, service, sid).await?
    {
        return Ok(Some((Target::Evicted(sid.to_owned()), vec![need(&to)])));
    }
    Ok(None)
}

pub async fn fetch(
    s: &SqliteStore,
    clocks: &Clocks,
    policy: &Policy,
    account: &str,
    service: &str,
    key: &str,
) -> Result<Option<Verification>, StoreError> {
    let now = clocks.now(account);
    // The cache first; what it does not hold and may have evicted is read back through the
    // writer, which reads it from the tables (`Need`). The filter is asked after the cache: an
    // eviction adds the keys to it before it lets go of the entries.
    let read_back = match recipient_of(s, service, key) {
        Some((to, sid)) => {
            let pending = s.cache.pending(service, &to);
            if pending.is_some()
                || s.cache.has_recipient(service, &to)
                || !s.cache.recipient_evicted(service, &to)
            {
                return Ok(live(pending, sid, now));
            }
            target(s, service, key, sends_since(policy, now)).await?
        }
        None => target(s, service, key, sends_since(policy, now)).await?,
    };
    let Some(read_back) = read_back else {
        return Ok(None);
    };
    let (target, needs) = read_back;
    let service = service.to_owned();
    let (pending, sid) = s
        .writer
        .decide_needing(needs, move |batch| {
            let (to, sid) = target.resolve(batch.cache, &service)?;
            Some((batch.cache.pending(&service, &to), sid))
        })
        .await?
        .unwrap_or((None, None));
    Ok(live(pending, sid, now))
}

/// The verification a fetch answers: the pending one, if live and the SID named (if any).
fn live(pending: Option<Verification>, sid: Option<String>, now: i64) -> Option<Verification> {
    match core::verification::resolve(pending.as_ref(), sid.as_deref(), now) {
        Resolved::Live(v) => Some(v),
        Resolved::Expired(_) | Resolved::Missing => None,
    }
}

/// The admission logs of one rate limit from `since` on (optionally of one value), from the
/// tables: what `Engine::usage` reads once the cache has evicted some.
pub async fn usage(
    s: &SqliteStore,
    rate_limit_id: i64,
    value: Option<&str>,
    since: i64,
) -> Result<Vec<ValueLog>, StoreError> {
    let rows = q::admissions_since(&mut *s.reader().await?, rate_limit_id, value, since).await?;
    Ok(ValueLog::grouped(rows))
}

/// Verifications a decision batch may expire at once (one transaction each).
const EXPIRE_CHUNK: usize = 4096;

/// Expires every verification past its lifetime (decided by the writer, like any change), then
/// drops from the cache what no decision needs. Returns the verifications expired, the number
/// of cache entries dropped, and the number still held.
pub async fn maintain(
    s: &SqliteStore,
    catalog: Arc<RwLock<Catalog>>,
    clocks: Arc<Clocks>,
    policy: Policy,
) -> Result<(Vec<Verification>, usize, usize), StoreError> {
    let mut due = s.cache.expired(|a| clocks.now(a), usize::MAX);
    if s.cache.evicted_any() {
        // Evicted pending verifications past their lifetime, each account's at its own time:
        // the tables know them (read without waiting for the journal: these are candidates,
        // decided again below).
        let accounts: Vec<String> = catalog.read().accounts().cloned().collect();
        let held: std::collections::HashSet<(String, String)> = due
            .iter()
            .map(|(_, service, to)| (service.clone(), to.clone()))
            .collect();
        let mut conn = s.pool.acquire().await.map_err(StoreError::from)?;
        for account in accounts {
            let rows = q::pending_due(
                &mut conn,
                &account,
                clocks.now(&account),
                EXPIRE_CHUNK as i64 * 16,
            )
            .await?;
            due.extend(
                rows.into_iter()
                    .filter(|key| !held.contains(key))
                    .map(|(service, to)| (account.clone(), service, to)),
            );
        }
    }
    let mut expired = Vec::new();
    for chunk in due.chunks(EXPIRE_CHUNK) {
        let chunk = chunk.to_vec();
        let clocks = clocks.clone();
        let needs = chunk
            .iter()
            .map(|(account, service, to)| Need::Recipient {
                service: service.clone(),
                to: to.clone(),
                sends_since: sends_since(&policy, clocks.now(account)),
            })
            .collect();
        expired.extend(
            s.writer
                .decide_needing(needs, move |batch| {
                    let cache = batch.cache;
                    let mut out = Vec::new();
                    for (_, service, to) in chunk {
                        let r = batch.overlay.recipient(cache, &service, &to);
                        let now = clocks.now(&r.account_sid);
                        if let Some(old) = r
                            .pending
                            .as_ref()
                            .and_then(|v| core::verification::expire(v, now))
                        {
                            settle(r, &old);
                            out.push(old);
                        }
                    }
                    for old in &out {
                        batch.save((old.clone(), None, Vec::new()));
                    }
                    out
                })
                .await?,
        );
    }
    let (evict_catalog, evict_clocks) = (catalog.clone(), clocks.clone());
    let dropped = s
        .writer
        .decide(move |batch| {
            let catalog = catalog.read();
            let tables_current = batch.tables_current;
            batch.cache.trim(
                |id| {
                    let (account, rl) = catalog.rate_limit_by_id(id)?;
                    Some((rl.rules.clone(), clocks.now(account)))
                },
                |a| clocks.now(a),
                policy.send_window_ms,
                tables_current,
            )
        })
        .await?;
    // Over its budget, the cache evicts what was used least recently, once the tables hold
    // everything it holds (the writer empties its journal first, deciding meanwhile).
    s.cache.expire_evicted(super::real_now_ms());
    let mut evicted = 0;
    if s.cache.bytes() > s.cache.evict_above() {
        let (cache, catalog, clocks) = (s.cache.clone(), evict_catalog, evict_clocks);
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        s.writer
            .write_drained(
                |_| Box::pin(async { Ok(()) }),
                move |_: &()| {
                    let catalog = catalog.read();
                    let n = cache.evict(
                        |id| {
                            let (account, rl) = catalog.rate_limit_by_id(id)?;
                            let widest = rl.rules.iter().map(|r| r.interval_ms).max().unwrap_or(0);
                            Some((clocks.now(account), widest))
                        },
                        |a| clocks.now(a),
                        policy.send_window_ms,
                        super::real_now_ms(),
                    );
                    counted.store(n, std::sync::atomic::Ordering::Relaxed);
                },
            )
            .await?;
        evicted = count.load(std::sync::atomic::Ordering::Relaxed);
        if evicted > 0 {
            tracing::debug!(
                evicted,
                bytes = s.cache.bytes(),
                filter_bytes = s.cache.evicted_bytes(),
                "the cache evicted what was used least recently"
            );
        }
    }
    let (logs, recipients) = s.cache.tracked();
    Ok((expired, dropped + evicted, logs + recipients))
}
