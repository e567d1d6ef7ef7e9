//! Verification starts on PostgreSQL, decided in batches: group commit for the shared database.
//!
//! A start alone is 6–7 round trips and a commit; PostgreSQL's cost is per statement and per
//! commit far more than per row. So the starts waiting at the same moment are taken together
//! (up to `BATCH`, by one task per instance) and decided in one transaction:
//!
//! 1. `BEGIN`; the advisory locks of every recipient and every (rate limit, value) the batch
//!    names, in ascending key order in one statement (as every transaction here takes its own:
//!    two batches, or a batch and a check, never deadlock, and every instance serializes on
//!    them);
//! 2. one statement reading every named value's admissions still in a window and every
//!    recipient's sends in the send window; one reading (and locking, `FOR UPDATE`, so a sweep
//!    on another instance skips them) the recipients' pending verifications; one their attempts;
//! 3. the decisions, in arrival order, by the pure core (`core::verification::start`), each
//!    against the database's state plus what the batch's earlier decisions admitted;
//! 4. one statement writing every verification state, send attempt and admission; `COMMIT`.
//!
//! Only then is any start answered: a 201 is never sent for a start that is not committed. A
//! batch that fails before its commit changed nothing (its transaction is rolled back), so its
//! starts are decided again one by one, each a batch of its own: one start the database refuses
//! fails alone (unless the connection was lost or a statement timed out: then every start of
//! the batch answers an error at once). A failed `COMMIT` is not retried — whether it took
//! effect is unknown — and every start of the batch answers an error.
//!
//! So a batch of n starts costs 6–7 round trips instead of 6n–7n, and one commit instead of n.
//! A start arriving while no batch is under way is decided at once: batching happens only
//! under load, of the starts that would otherwise queue for connections. The price: a batch
//! waiting for a lock another instance holds holds up the starts queued behind it, at most for
//! the connections' `statement_timeout`, after which the batch answers an error.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sqlx::{PgPool, Postgres, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::clock::Clocks;
use crate::catalog::RateLimitNode;
use crate::core::{self, Admission, Attempt, Fresh, Policy, StartRequest, Started, Verification};
use crate::store::StoreError;
use crate::store::pg::{lock_all, lock_key};
use crate::store::sql::pg as q;

/// Starts in one batch at most.
const BATCH: usize = 256;

/// The batching front of PostgreSQL starts (one per instance).
pub struct Starts {
    queue: mpsc::Sender<Item>,
}

/// A start to decide: what `Engine::start` was given.
struct Start {
    policy: Policy,
    request: StartRequest,
    limits: Vec<(Arc<RateLimitNode>, String)>,
    fresh: Fresh,
}

struct Item {
    start: Start,
    reply: oneshot::Sender<Result<Started, StoreError>>,
}

impl Starts {
    /// Starts the task deciding the batches; it ends once this is dropped.
    ///
    /// One task: while it waits for PostgreSQL, the starts arriving queue up and form the next
    /// batch. More tasks (each deciding batches of its own at once) were measured slower on the
    /// 2-core machine (`bench/README.md`): smaller batches, more transactions for the same
    /// starts.
    ///
    /// The task runs on a thread of its own (`own_thread`) with two connections of its own (a
    /// batch uses one at a time; the second is there at once when the first is being
    /// replaced): a batch is a chain of round trips to PostgreSQL, and every start of the next
    /// batch waits for the whole chain.
    pub fn spawn(pool: &PgPool, clocks: Arc<Clocks>) -> Self {
        let (queue, rx) = mpsc::channel::<Item>(BATCH * 4);
        let options = (*pool.connect_options()).clone();
        super::own_thread::spawn("verilimit-pg-starts", async move {
            let pool = crate::store::pg::pool_options(2).connect_lazy_with(options);
            serve(pool, clocks, rx).await;
        });
        Self { queue }
    }

    /// Decides a start (with every rate limit it names and the value it limits) in the next
    /// batch; answers once that batch has committed.
    pub async fn start(
        &self,
        policy: Policy,
        request: StartRequest,
        limits: &[(Arc<RateLimitNode>, String)],
        fresh: Fresh,
    ) -> Result<Started, StoreError> {
        let (reply, answer) = oneshot::channel();
        let item = Item {
            start: Start {
                policy,
                request,
                limits: limits.to_vec(),
                fresh,
            },
            reply,
        };
        self.queue
            .send(item)
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::NotCommitted)?
    }
}

/// Decides the starts queued, a batch at a time, until the queue closes.
async fn serve(pool: PgPool, clocks: Arc<Clocks>, mut rx: mpsc::Receiver<Item>) {
    let mut items = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut items, BATCH).await > 0 {
        run(&pool, &clocks, std::mem::take(&mut items)).await;
    }
    pool.close().await;
}

/// Decides and commits one batch, and answers each of its starts.
async fn run(pool: &PgPool, clocks: &Clocks, items: Vec<Item>) {
    let (starts, replies): (Vec<Start>, Vec<_>) =
        items.into_iter().map(|i| (i.start, i.reply)).unzip();
    let nows: Vec<i64> = starts
        .iter()
        .map(|s| clocks.now(&s.request.account_sid))
        .collect();
    if starts.len() > 1 {
        match decide(pool, &starts, &nows).await {
            Ok((tx, outcomes)) => {
                let committed = tx.commit().await;
                if let Err(e) = &committed {
                    tracing::error!(error = %e, starts = starts.len(), "a batch of starts did not commit");
                }
                for (reply, started) in replies.into_iter().zip(outcomes) {
                    let answer = match &committed {
                        Ok(()) => Ok(started),
                        Err(_) => Err(StoreError::NotCommitted),
                    };
                    let _ = reply.send(answer);
                }
                return;
            }
            Err(e) if alone_could_succeed(&e) => {
                tracing::warn!(error = %e, starts = starts.len(), "a batch of starts failed before its commit; deciding each alone");
            }
            Err(e) => {
                tracing::error!(error = %e, starts = starts.len(), "a batch of starts failed before its commit");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::NotCommitted));
                }
                return;
            }
        }
    }
    for ((start, now), reply) in starts.iter().zip(&nows).zip(replies) {
        let alone = async {
            let (tx, mut outcomes) =
                decide(pool, std::slice::from_ref(start), std::slice::from_ref(now)).await?;
            tx.commit().await?;
            outcomes.pop().ok_or(StoreError::NotCommitted)
        };
        let _ = reply.send(alone.await);
    }
}

/// Whether a batch's error could spare some of its starts decided one by one: an error of the
/// data (one start's value the database refuses, a deadlock with a deletion), not a lost
/// connection or a statement timeout (a lock held elsewhere), which would only repeat once per
/// start while the instance's other starts wait.
fn alone_could_succeed(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            !db.code().is_some_and(|code| code.starts_with("57"))
        }
        _ => false,
    }
}

/// What one start of the batch names: its recipient, and each rate limit with buckets
/// (index in its `limits`) with the value's index in the batch.
struct Names {
    recipient: usize,
    values: Vec<(usize, usize)>,
}

/// The rows an admitted batch writes.
#[derive(Default)]
struct Writes {
    /// The latest state of each verification the batch changed.
    verifications: Vec<Verification>,
    by_sid: HashMap<String, usize>,
    /// Each send attempt with the verification it belongs to.
    attempts: Vec<(Attempt, Verification)>,
    admissions: Vec<Admission>,
}

impl Writes {
    fn verification(&mut self, v: &Verification) {
        match self.by_sid.get(&v.sid) {
            Some(&i) => self.verifications[i] = v.clone(),
            None => {
                self.by_sid.insert(v.sid.clone(), self.verifications.len());
                self.verifications.push(v.clone());
            }
        }
    }
}

/// Locks, reads, decides and writes a batch; the transaction is left to commit.
async fn decide(
    pool: &PgPool,
    items: &[Start],
    nows: &[i64],
) -> Result<(Transaction<'static, Postgres>, Vec<Started>), StoreError> {
    // What the batch names, each once: recipients with the oldest send any start counts,
    // values with the oldest admission any start's windows count.
    let mut recipients: Vec<(&str, &str, i64)> = Vec::new();
    let mut recipient_at: HashMap<(&str, &str), usize> = HashMap::new();
    let mut values: Vec<(i64, &str, i64)> = Vec::new();
    let mut value_at: HashMap<(i64, &str), usize> = HashMap::new();
    let mut names = Vec::with_capacity(items.len());
    for (item, &now) in items.iter().zip(nows) {
        let r = &item.request;
        let since = now - item.policy.send_window_ms;
        let recipient = *recipient_at
            .entry((&r.service_sid, &r.to))
            .or_insert_with(|| {
                recipients.push((&r.service_sid, &r.to, since));
                recipients.len() - 1
            });
        recipients[recipient].2 = recipients[recipient].2.min(since);
        let mut named = Vec::new();
        for (li, (rl, value)) in item.limits.iter().enumerate() {
            let Some(lower) = rl.rules.iter().map(|rule| rule.lower_bound(now)).min() else {
                continue;
            };
            let vi = *value_at.entry((rl.record.id, value)).or_insert_with(|| {
                values.push((rl.record.id, value, lower));
                values.len() - 1
            });
            values[vi].2 = values[vi].2.min(lower);
            named.push((li, vi));
        }
        names.push(Names {
            recipient,
            values: named,
        });
    }

    let mut tx = pool.begin().await?;
    let mut keys: Vec<i64> = recipients
        .iter()
        .map(|(service, to, _)| lock_key(&["recipient", service, to]))
        .collect();
    keys.extend(
        values
            .iter()
            .map(|(id, value, _)| lock_key(&["admission", &id.to_string(), value])),
    );
    lock_all(&mut tx, keys).await?;

    // After the locks (a statement's snapshot is taken when it starts): row (0, i) is a send
    // to recipient i, row (1, i) an admission of value i, oldest first. Each value is looked up
    // through its index (`OFFSET 0` keeps the subquery a parameterized scan): with a batch's
    // arrays the planner otherwise picks a hash join over the whole table.
    let counts_sends = items.iter().any(|i| i.policy.send_attempts_limit > 0);
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        "SELECT 0::int4, q.i, s.at_ms FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS q(service, recipient, since, i) \
           CROSS JOIN LATERAL (SELECT s.at_ms FROM send_attempts s WHERE s.service_sid = q.service \
             AND s.recipient = q.recipient AND s.at_ms > q.since OFFSET 0) s \
           WHERE $7 \
         UNION ALL \
         SELECT 1::int4, q.i, a.at_ms FROM unnest($4::int8[], $5::text[], $6::int8[]) WITH ORDINALITY AS q(id, v, lower, i) \
           CROSS JOIN LATERAL (SELECT a.at_ms FROM admissions a WHERE a.rate_limit_id = q.id \
             AND a.value = q.v AND a.at_ms >= q.lower OFFSET 0) a \
         ORDER BY 1, 2, 3",
    )
    .bind(recipients.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(recipients.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(recipients.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.0).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.1).collect::<Vec<_>>())
    .bind(values.iter().map(|v| v.2).collect::<Vec<_>>())
    .bind(counts_sends)
    .fetch_all(&mut *tx)
    .await?;
    let mut sends: Vec<Vec<i64>> = vec![Vec::new(); recipients.len()];
    let mut logs: Vec<VecDeque<i64>> = vec![VecDeque::new(); values.len()];
    for (kind, i, at) in rows {
        // WITH ORDINALITY counts from 1.
        let Some(i) = usize::try_from(i - 1).ok() else {
            continue;
        };
        match kind {
            0 => sends.get_mut(i).map(|s| s.push(at)),
            _ => logs.get_mut(i).map(|l| l.push_back(at)),
        };
    }

    let mut pending: Vec<Option<Verification>> = vec![None; recipients.len()];
    let rows = sqlx::query(&format!(
        "SELECT v.* FROM unnest($1::text[], $2::text[]) AS q(service, recipient) \
         CROSS JOIN LATERAL (SELECT {} FROM verifications v WHERE v.service_sid = q.service \
           AND v.recipient = q.recipient AND v.status = 'pending' \
           ORDER BY v.date_created DESC LIMIT 1 FOR UPDATE) v",
        q::VERIFICATION_COLUMNS
    ))
    .bind(recipients.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(recipients.iter().map(|r| r.1).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let mut pending_at: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let v = q::verification_from_row(row);
        if let Some(&i) = recipient_at.get(&(v.service_sid.as_str(), v.to.as_str())) {
            pending_at.insert(v.sid.clone(), i);
            pending[i] = Some(v);
        }
    }
    if !pending_at.is_empty() {
        let rows = sqlx::query(
            "SELECT verification_sid, sid, channel, at_ms FROM send_attempts \
             WHERE verification_sid = ANY($1) ORDER BY verification_sid, at_ms, sid",
        )
        .bind(pending_at.keys().map(String::as_str).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let sid: &str = row.get(0);
            if let Some(v) = pending_at.get(sid).and_then(|&i| pending[i].as_mut()) {
                v.attempts.push(Attempt {
                    sid: row.get(1),
                    channel: row.get(2),
                    at_ms: row.get(3),
                });
            }
        }
    }

    // The decisions, in arrival order, each seeing what the ones before it admitted.
    let mut writes = Writes::default();
    let mut outcomes = Vec::with_capacity(items.len());
    for ((item, named), &now) in items.iter().zip(&names).zip(nows) {
        let checks: Vec<_> = named
            .values
            .iter()
            .map(|&(li, vi)| {
                let (rl, value) = &item.limits[li];
                (super::limit_check(rl, value), Some(&logs[vi]))
            })
            .collect();
        let started = core::verification::start(
            item.request.clone(),
            pending[named.recipient].as_ref(),
            sends[named.recipient].iter().copied(),
            &checks,
            &item.policy,
            item.fresh.clone(),
            now,
        );
        drop(checks);
        if let Started::Admitted(a) = &started {
            for admission in &a.admissions {
                if let Some(&vi) = value_at.get(&(admission.rate_limit_id, &*admission.value)) {
                    core::window::record(&mut logs[vi], admission.at_ms);
                }
                writes.admissions.push(admission.clone());
            }
            sends[named.recipient].push(a.attempt.at_ms);
            if let Some(old) = &a.expired {
                writes.verification(old);
            }
            writes.verification(&a.verification);
            writes
                .attempts
                .push((a.attempt.clone(), a.verification.clone()));
            pending[named.recipient] = Some(a.verification.clone());
        }
        outcomes.push(started);
    }
    if !writes.verifications.is_empty() {
        save(&mut tx, &writes).await?;
    }
    Ok((tx, outcomes))
}

/// Writes a batch's verification states, send attempts and admissions in one statement. Locks
/// each service and rate limit the rows belong to once (`FOR KEY SHARE`: a deletion of one
/// waits for this transaction, and its trigger then deletes these rows too) and skips the rows
/// of those a concurrent deletion removed first. The tables have no foreign keys for this
/// (migration 0011): those checked and locked the parent once per row.
async fn save(tx: &mut Transaction<'static, Postgres>, w: &Writes) -> Result<(), sqlx::Error> {
    let v = &w.verifications;
    let a = &w.attempts;
    let mut services: Vec<&str> = v.iter().map(|v| v.service_sid.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let mut rate_limits: Vec<i64> = w.admissions.iter().map(|a| a.rate_limit_id).collect();
    rate_limits.sort_unstable();
    rate_limits.dedup();
    sqlx::query(
        "WITH s AS (SELECT sid FROM services WHERE sid = ANY($26::text[]) FOR KEY SHARE), \
         r AS (SELECT id FROM rate_limits WHERE id = ANY($27::int8[]) FOR KEY SHARE), \
         v AS (\
           INSERT INTO verifications (sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version) \
           SELECT u.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[]) \
             AS u(sid, service_sid, account_sid, recipient, channel, status, code, amount, payee, checks_failed, expires_ms, date_created, date_updated, version) \
           WHERE u.service_sid IN (SELECT sid FROM s) \
           ON CONFLICT (sid) DO UPDATE SET channel = excluded.channel, status = excluded.status, \
             checks_failed = excluded.checks_failed, expires_ms = excluded.expires_ms, \
             date_updated = excluded.date_updated, version = excluded.version \
           WHERE excluded.version > verifications.version \
           RETURNING sid), \
         a AS (\
           INSERT INTO send_attempts (sid, verification_sid, service_sid, account_sid, recipient, channel, code, at_ms) \
           SELECT u.* FROM unnest($15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::int8[]) \
             AS u(sid, verification_sid, service_sid, account_sid, recipient, channel, code, at_ms) \
           WHERE u.verification_sid IN (SELECT sid FROM v)) \
         INSERT INTO admissions (rate_limit_id, value, at_ms) \
         SELECT u.id, u.value, u.at_ms FROM unnest($23::int8[], $24::text[], $25::int8[]) AS u(id, value, at_ms) \
         WHERE u.id IN (SELECT id FROM r)",
    )
    .bind(v.iter().map(|v| v.sid.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.service_sid.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.account_sid.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.to.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.channel.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.status.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.code.as_str()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.amount.as_deref()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.payee.as_deref()).collect::<Vec<_>>())
    .bind(v.iter().map(|v| i64::from(v.checks_failed)).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.expires_ms).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.date_created).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.date_updated).collect::<Vec<_>>())
    .bind(v.iter().map(|v| v.version as i64).collect::<Vec<_>>())
    .bind(a.iter().map(|(a, _)| a.sid.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, v)| v.sid.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, v)| v.service_sid.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, v)| v.account_sid.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, v)| v.to.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(a, _)| a.channel.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, v)| v.code.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(a, _)| a.at_ms).collect::<Vec<_>>())
    .bind(w.admissions.iter().map(|a| a.rate_limit_id).collect::<Vec<_>>())
    .bind(w.admissions.iter().map(|a| &*a.value).collect::<Vec<_>>())
    .bind(w.admissions.iter().map(|a| a.at_ms).collect::<Vec<_>>())
    .bind(services)
    .bind(rate_limits)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
