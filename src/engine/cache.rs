//! The SQLite engine's in-memory cache of committed state: the admission log of every
//! (rate limit, value) and, per (service, recipient), the pending verification and recent send
//! times — exactly what decisions need at speed. Everything here is rebuilt from the database
//! at start-up and can be dropped at any time; the database is the authority.
//!
//! Only the writer changes it (`publish`, after its transaction committed), so readers — fetch,
//! usage, SID lookups — only ever see committed state. While a batch is decided, its changes
//! live in a `Batch` overlay over the cache; a failed batch is dropped with its overlay.
//!
//! Entries are held compactly: the cache may hold millions of them, so a recipient (its text,
//! recent sends and pending verification with its attempts) and an admission log are each a
//! record of bytes (`record`), kept in the buffers of sharded tables whose slots are 4-byte
//! offsets (`arena`). A recipient's service and account are a number (`Scopes`), and the index of
//! pending SIDs holds two hashes, the recipient's record telling whether it is that SID. The
//! decisions see the same `Verification` either way: what goes in comes back out (unit tests
//! below and in `record`; the whole cache against a model of maps).

mod arena;
mod filter;
mod record;

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};

use crate::core::{Status, Verification, window};
use crate::store::sql::sqlite::PendingRow;
use arena::Table;
use filter::Evicted;
use record::{Pending, Rec, Wanted};

/// How long an evicted admission log may matter at least: a bucket's widest interval
/// (`Interval` is at most a day) — what an interval raised later may count again.
const LOG_HORIZON_MS: i64 = 86_400_000;
/// How long past its expiry an evicted pending verification matters: the expiry sweep stores
/// it as expired (reading it back from the database) well within this.
const PENDING_HORIZON_MS: i64 = 3_600_000;

type LogKey = (i64, Box<str>);

/// What the start-up writes for a recipient, typically (a number's text, one send, a pending
/// verification with one attempt: ~100 bytes with its length), twice: without its attempt, then
/// with it. Only room made at once; what is not written is never touched.
const RESTORED_BYTES: usize = 200;
type OverlayKey = (String, String);

/// What is known of one recipient of one service.
#[derive(Debug, Default, Clone)]
pub struct Recipient {
    pub account_sid: String,
    pub pending: Option<Verification>,
    /// Times of recent sends (for the send-attempts rule), oldest first.
    pub sends: VecDeque<i64>,
}

/// The services that recipients belong to, numbered (a record holds the number), each with its
/// account.
#[derive(Default)]
struct Scopes(RwLock<ScopeList>);

#[derive(Default)]
struct ScopeList {
    ids: HashMap<Box<str>, u32>,
    /// (service, account) by number; `None` for a number free to reuse (also in `free`).
    list: Vec<Option<(Box<str>, Box<str>)>>,
    free: Vec<u32>,
}

impl ScopeList {
    /// The service and account of a number a record holds.
    fn get(&self, id: u32) -> (&str, &str) {
        let (service, account) = self.list[id as usize]
            .as_ref()
            .expect("a record's service is numbered");
        (service, account)
    }
}

impl Scopes {
    fn id(&self, service: &str) -> Option<u32> {
        self.0.read().ids.get(service).copied()
    }

    /// The number of a service, made if it has none; `account` is the service's.
    fn get(&self, service: &str, account: &str) -> u32 {
        {
            let list = self.0.read();
            if let Some(&id) = list.ids.get(service)
                && list.get(id).1 == account
            {
                return id;
            }
        }
        let mut guard = self.0.write();
        let list = &mut *guard;
        let id = match list.ids.get(service) {
            Some(&id) => id,
            None => {
                let id = list.free.pop().unwrap_or_else(|| {
                    list.list.push(None);
                    u32::try_from(list.list.len() - 1).expect("fewer than 2^32 services")
                });
                list.ids.insert(service.into(), id);
                id
            }
        };
        list.list[id as usize] = Some((service.into(), account.into()));
        id
    }

    /// Frees the numbers no record holds (`live` holds every number that records hold).
    fn sweep(&self, live: &HashSet<u32>) {
        let mut guard = self.0.write();
        let list = &mut *guard;
        for (id, scope) in list.list.iter_mut().enumerate() {
            let id = id as u32;
            if !live.contains(&id)
                && let Some((service, _)) = scope.take()
            {
                list.ids.remove(&service);
                list.free.push(id);
            }
        }
        shrink(&mut list.ids);
    }
}

/// Live usage of one value of one rate limit.
pub struct ValueLog {
    pub value: String,
    pub log: VecDeque<i64>,
}

impl ValueLog {
    /// The logs of (value, time) rows ordered by value and time.
    pub fn grouped(rows: Vec<(String, i64)>) -> Vec<ValueLog> {
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
        out
    }
}

/// Lock order: `by_sid`, then a shard, then `scopes`; `scopes` is never held while another lock
/// is taken, except `evicted`, which is taken last of all (nothing is taken while it is held).
///
/// **Eviction.** Past its budget the cache lets go of what was used least recently (`evict`),
/// with the database's tables holding all of it, and keeps the keys in a filter. An entry whose
/// key the filter may hold leaves the tables only by another eviction (an entry emptied is kept
/// empty): what the tables hold for a key the cache does not is then always that key's state,
/// and a decision reads it back from them first (`Need`).
pub struct Cache {
    /// Admission logs (`record::log`), by (rate limit, value).
    logs: Table,
    /// Recipients (`record::recipient`), by (service number, recipient).
    recipients: Table,
    /// Pending verification SIDs: (the SID's hash, its recipient's). The recipient's record
    /// says whether it is that SID, so hashes that collide find nothing wrong.
    by_sid: Mutex<HashTable<(u64, u64)>>,
    scopes: Scopes,
    /// The keys of what was evicted to stay within `budget` (their state is in the database's
    /// tables: `evict`).
    evicted: Mutex<Evicted>,
    /// Bytes the tables may hold before the least recently used entries are evicted.
    budget: AtomicUsize,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            logs: Table::default(),
            recipients: Table::default(),
            by_sid: Mutex::default(),
            scopes: Scopes::default(),
            evicted: Mutex::default(),
            budget: AtomicUsize::new(usize::MAX),
        }
    }
}

/// What a decision needs in the cache: an entry evicted is read back from the tables first
/// (`engine::sqlite::fault_in`).
#[derive(Debug, Clone)]
pub enum Need {
    Log(i64, String),
    /// A recipient, with the sends since `sends_since` (none kept if `None`).
    Recipient {
        service: String,
        to: String,
        sends_since: Option<i64>,
    },
}

/// An entry's age in one of 512 classes, 8 to each doubling (16 ms units): ages an eighth
/// apart fall in different classes.
fn age_class(age_ms: i64) -> usize {
    let a = (age_ms.max(0) as u64) / 16;
    if a < 8 {
        return a as usize;
    }
    let octave = 63 - a.leading_zeros() as usize;
    8 + (octave - 3) * 8 + ((a >> (octave - 3)) & 7) as usize
}

fn is_log(rec: &[u8], rate_limit_id: i64, value: &str) -> bool {
    let log = record::Log::read(rec);
    log.id == rate_limit_id && log.value == value
}

fn is_recipient(rec: &[u8], scope: u32, to: &str) -> bool {
    let r = Rec::read(rec);
    r.scope == scope && r.to == to
}

impl Cache {
    fn log_hash(&self, rate_limit_id: i64, value: &str) -> u64 {
        self.logs.hash((rate_limit_id, value))
    }

    fn log_rehash(&self) -> impl Fn(&[u8]) -> u64 + '_ {
        |b| {
            let log = record::Log::read(b);
            self.log_hash(log.id, log.value)
        }
    }

    fn recipient_hash(&self, scope: u32, to: &str) -> u64 {
        self.recipients.hash((scope, to))
    }

    fn recipient_rehash(&self) -> impl Fn(&[u8]) -> u64 + '_ {
        |b| {
            let r = Rec::read(b);
            self.recipient_hash(r.scope, r.to)
        }
    }

    fn sid_hash(&self, sid: &str) -> u64 {
        self.recipients.hash(sid)
    }

    pub fn log(&self, rate_limit_id: i64, value: &str) -> Option<VecDeque<i64>> {
        let hash = self.log_hash(rate_limit_id, value);
        self.logs
            .lock(hash)
            .find(hash, |b| is_log(b, rate_limit_id, value))
            .map(|b| record::Log::read(b).times())
    }

    /// Reads a recipient's record under its shard's lock, with its service's account (`None`
    /// if it has none).
    fn read_recipient<T>(
        &self,
        service: &str,
        to: &str,
        f: impl FnOnce(Rec<'_>, &str) -> Option<T>,
    ) -> Option<T> {
        let scope = self.scopes.id(service)?;
        let hash = self.recipient_hash(scope, to);
        let shard = self.recipients.lock(hash);
        let rec = Rec::read(shard.find(hash, |b| is_recipient(b, scope, to))?);
        let scopes = self.scopes.0.read();
        // The number may have been freed and given to another service since it was looked up
        // (a sweep between the two locks): the record found is then that service's.
        let (held, account) = scopes.get(scope);
        if held != service {
            return None;
        }
        f(rec, account)
    }

    pub fn recipient(&self, service: &str, to: &str) -> Option<Recipient> {
        self.read_recipient(service, to, |rec, account| {
            Some(Recipient {
                account_sid: account.to_owned(),
                pending: rec.pending(service, account),
                sends: rec.sends().collect(),
            })
        })
    }

    /// A recipient's recent send times (for the send-attempts rule).
    pub fn sends(&self, service: &str, to: &str) -> Option<VecDeque<i64>> {
        self.read_recipient(service, to, |rec, _| Some(rec.sends().collect()))
    }

    /// The pending verification of a recipient, if any (live or not).
    pub fn pending(&self, service: &str, to: &str) -> Option<Verification> {
        self.read_recipient(service, to, |rec, account| rec.pending(service, account))
    }

    /// The hashes of the recipients that may hold the pending verification `sid`.
    fn sid_candidates(&self, sid: &str) -> Vec<u64> {
        let hash = self.sid_hash(sid);
        self.by_sid
            .lock()
            .iter_hash(hash)
            .filter(|(h, _)| *h == hash)
            .map(|(_, recipient)| *recipient)
            .collect()
    }

    /// The (service, recipient) of a pending verification SID.
    pub fn find_sid(&self, sid: &str) -> Option<(String, String)> {
        let want = Wanted::new(sid);
        self.sid_candidates(sid).into_iter().find_map(|hash| {
            let shard = self.recipients.lock(hash);
            let rec = Rec::read(shard.find(hash, |b| Rec::read(b).pending_is(&want))?);
            let service = self.scopes.0.read().get(rec.scope).0.to_owned();
            Some((service, rec.to.to_owned()))
        })
    }

    /// The logs of one rate limit, optionally of one value, ordered by value.
    pub fn usage(&self, rate_limit_id: i64, value: Option<&str>) -> Vec<ValueLog> {
        let mut out = Vec::new();
        for shard in self.logs.shards() {
            for b in shard.iter() {
                let log = record::Log::read(b);
                if log.id == rate_limit_id && value.is_none_or(|want| want == log.value) {
                    out.push(ValueLog {
                        value: log.value.to_owned(),
                        log: log.times(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.value.cmp(&b.value));
        out
    }

    /// How many (rate limit, value) logs and recipients are held.
    pub fn tracked(&self) -> (usize, usize) {
        (self.logs.len(), self.recipients.len())
    }

    // --- the budget and what was evicted ------------------------------------------------

    /// Sets the bytes the cache may hold before it evicts (`evict`).
    pub fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    /// What the tables may hold: the budget less what the filter of evicted keys holds (the
    /// budget bounds both), but at least a quarter of it.
    pub fn budget(&self) -> usize {
        let budget = self.budget.load(Ordering::Relaxed);
        budget
            .saturating_sub(self.evicted.lock().bytes())
            .max(budget / 4)
    }

    /// Beyond what the tables are evicted (down to half the budget): three quarters of it, so
    /// that what arrives while the writer empties its journal for the eviction (it goes on
    /// deciding meanwhile) still fits in the budget.
    pub fn evict_above(&self) -> usize {
        self.budget() / 4 * 3
    }

    /// Bytes held by the filter of evicted keys.
    pub fn evicted_bytes(&self) -> usize {
        self.evicted.lock().bytes()
    }

    /// Forgets the evicted keys that no longer matter at `real_now` (ms).
    pub fn expire_evicted(&self, real_now: i64) {
        self.evicted.lock().expire(real_now);
    }

    /// Bytes held by the tables and the SID index (not the filter of evicted keys).
    pub fn bytes(&self) -> usize {
        self.logs.bytes() + self.recipients.bytes() + 17 * self.by_sid.lock().capacity()
    }

    /// The filter's key of a recipient: by its service's SID (a service's number may be given
    /// to another service once no record holds it).
    fn recipient_key(&self, service: &str, to: &str) -> u64 {
        self.recipients.hash((service, to))
    }

    fn was_evicted(&self, key: u64) -> bool {
        let evicted = self.evicted.lock();
        !evicted.is_empty() && evicted.may_hold(key)
    }

    /// Whether anything evicted may still matter (reads that list must then read the tables).
    pub fn evicted_any(&self) -> bool {
        !self.evicted.lock().is_empty()
    }

    /// Whether the log of (rate limit, value) is held.
    pub fn has_log(&self, rate_limit_id: i64, value: &str) -> bool {
        let hash = self.log_hash(rate_limit_id, value);
        self.logs
            .lock(hash)
            .find(hash, |b| is_log(b, rate_limit_id, value))
            .is_some()
    }

    /// Whether the recipient is held.
    pub fn has_recipient(&self, service: &str, to: &str) -> bool {
        self.read_recipient(service, to, |_, _| Some(())).is_some()
    }

    /// Whether the log of (rate limit, value), not held, may have been evicted.
    pub fn log_evicted(&self, rate_limit_id: i64, value: &str) -> bool {
        self.was_evicted(self.log_hash(rate_limit_id, value))
    }

    /// Whether the recipient, not held, may have been evicted.
    pub fn recipient_evicted(&self, service: &str, to: &str) -> bool {
        self.was_evicted(self.recipient_key(service, to))
    }

    /// Holds again a log read back from the tables (`times` in time order).
    pub fn restore_log(&self, rate_limit_id: i64, value: &str, times: &[i64]) {
        let hash = self.log_hash(rate_limit_id, value);
        self.logs.lock(hash).write(
            hash,
            |b| is_log(b, rate_limit_id, value),
            self.log_rehash(),
            |_, out| record::log(out, rate_limit_id, value, times.iter().copied()),
        );
    }

    /// Holds again a recipient read back from the tables, in one write: its pending
    /// verification (with its attempts), if any, and its recent sends (in time order).
    pub fn restore_recipient(
        &self,
        service: &str,
        account: &str,
        to: &str,
        pending: Option<&Verification>,
        sends: &[i64],
    ) {
        let scope = self.scopes.get(service, account);
        let hash = self.recipient_hash(scope, to);
        let pending = pending.map(Pending::from);
        let mut index = self.by_sid.lock();
        self.recipients.lock(hash).write(
            hash,
            |b| is_recipient(b, scope, to),
            self.recipient_rehash(),
            |held, out| {
                let sid = pending.as_ref().map(|p| p.sid);
                self.follow_sid(&mut index, held.map(Rec::read), sid, hash);
                record::recipient(out, scope, to, sends.iter().copied(), pending.as_ref());
            },
        );
    }

    /// Evicts the entries used least recently until the tables hold about half of the budget,
    /// if they hold more than it. Each evicted key (and pending SID) goes to the filter with the
    /// real time until which it may matter (a pending SID the index no longer holds is looked
    /// up in the tables: `engine::sqlite`). Only the writer calls this, with the journal
    /// applied and nothing decided since: the tables then hold every evicted entry as it is
    /// here, and a decision reads it back from them first (`Need`). `log_home(rate limit)`: its
    /// account's time and its widest interval (`None`: it is gone). Answers how many entries it
    /// evicted.
    pub fn evict(
        &self,
        mut log_home: impl FnMut(i64) -> Option<(i64, i64)>,
        now_of: impl Fn(&str) -> i64,
        send_window_ms: i64,
        real_now: i64,
    ) -> usize {
        let budget = self.budget();
        if self.bytes() <= self.evict_above() {
            return 0;
        }
        let mut homes: HashMap<i64, Option<(i64, i64)>> = HashMap::new();
        let mut home = |id: i64| *homes.entry(id).or_insert_with(|| log_home(id));
        let mut nows: HashMap<u32, i64> = HashMap::new();
        // An entry's age class, and until when (real time) it matters once evicted (`None`:
        // never again).
        let mut log_age = |b: &[u8]| {
            let log = record::Log::read(b);
            let newest = log.iter().last().unwrap_or(i64::MIN / 4);
            match home(log.id) {
                Some((now, widest)) => (
                    age_class(now - newest),
                    Some(real_now + newest + widest.max(LOG_HORIZON_MS) - now),
                ),
                None => (usize::MAX, None),
            }
        };
        let mut recipient_age = |b: &[u8], scopes: &ScopeList| {
            let rec = Rec::read(b);
            let now = *nows
                .entry(rec.scope)
                .or_insert_with(|| now_of(scopes.get(rec.scope).1));
            let last_send = rec.sends().last();
            let span = rec.pending_span();
            let newest = last_send
                .max(span.map(|(created, _)| created))
                .unwrap_or(i64::MIN / 4);
            let until = last_send
                .map(|t| t + send_window_ms)
                .max(span.map(|(_, expires)| expires + PENDING_HORIZON_MS))
                .unwrap_or(now);
            (age_class(now - newest), real_now + until - now)
        };
        // Bytes by age class, youngest first; the classes kept are the youngest whose bytes
        // stay within half the budget.
        let mut bytes = [0usize; 513];
        for shard in self.logs.shards() {
            for b in shard.iter() {
                bytes[log_age(b).0.min(512)] += b.len() + 9;
            }
        }
        for shard in self.recipients.shards() {
            let scopes = self.scopes.0.read();
            for b in shard.iter() {
                bytes[recipient_age(b, &scopes).0] += b.len() + 9;
            }
        }
        let mut kept = 0;
        let cut = bytes
            .iter()
            .position(|&n| {
                kept += n;
                kept > budget / 2
            })
            .unwrap_or(bytes.len());
        // The keys go to the filter before their entries leave the tables: a reader that
        // finds an entry gone then finds its key (the ages are the same in both passes: each
        // account's time and each rate limit's home were taken once).
        let mut keys: Vec<(u64, i64)> = Vec::new();
        for shard in self.logs.shards() {
            for b in shard.iter() {
                if let (class, Some(until)) = log_age(b)
                    && class >= cut
                {
                    let log = record::Log::read(b);
                    keys.push((self.log_hash(log.id, log.value), until));
                }
            }
        }
        for shard in self.recipients.shards() {
            let scopes = self.scopes.0.read();
            for b in shard.iter() {
                let (class, until) = recipient_age(b, &scopes);
                if class >= cut {
                    let rec = Rec::read(b);
                    keys.push((self.recipient_key(scopes.get(rec.scope).0, rec.to), until));
                }
            }
        }
        let mut filter = self.evicted.lock();
        for (key, until) in keys {
            filter.insert(key, until);
        }
        drop(filter);
        let mut evicted = 0;
        for mut shard in self.logs.shards() {
            let before = shard.len();
            shard.retain(|b, _| log_age(b).0 < cut);
            evicted += before - shard.len();
            shard.fit(self.log_rehash());
        }
        let mut index = self.by_sid.lock();
        for mut shard in self.recipients.shards() {
            let before = shard.len();
            let scopes = self.scopes.0.read();
            shard.retain(|b, _| {
                if recipient_age(b, &scopes).0 < cut {
                    return true;
                }
                let rec = Rec::read(b);
                let recipient = self.recipient_hash(rec.scope, rec.to);
                self.follow_sid(&mut index, Some(rec), None, recipient);
                false
            });
            drop(scopes);
            evicted += before - shard.len();
            shard.fit(self.recipient_rehash());
        }
        if index.capacity() > 2 * index.len() {
            index.shrink_to_fit(|(h, _)| *h);
        }
        evicted
    }

    // --- start-up -------------------------------------------------------------------------

    /// Restores the persisted admissions, `(rate limit, value, time)` in any order.
    pub fn restore_admissions(&self, mut rows: Vec<(i64, String, i64)>) {
        rows.sort_unstable();
        let logs = 1 + rows
            .windows(2)
            .filter(|w| (w[0].0, &w[0].1) != (w[1].0, &w[1].1))
            .count();
        // Each log's bytes: its length, rate limit, value (with a length of one byte, mostly)
        // and times.
        let bytes = 13 * logs + 8 * rows.len() + {
            let mut values = rows.iter().map(|(id, v, _)| (id, v)).collect::<Vec<_>>();
            values.dedup();
            values.iter().map(|(_, v)| v.len()).sum::<usize>()
        };
        self.logs.reserve(logs, bytes, self.log_rehash());
        let mut rows = rows.into_iter().peekable();
        let mut out = Vec::new();
        while let Some((id, value, t)) = rows.next() {
            let mut log = VecDeque::from([t]);
            while let Some((_, _, t)) = rows.next_if(|(i, v, _)| *i == id && *v == value) {
                window::record(&mut log, t);
            }
            out.clear();
            record::log(&mut out, id, &value, log.iter().copied());
            let hash = self.log_hash(id, &value);
            self.logs
                .lock(hash)
                .insert_new(hash, &out, self.log_rehash());
        }
    }

    /// Makes room for `n` recipients with a pending verification: in the buffers, for a
    /// typical record written twice (`RESTORED_BYTES`).
    pub fn reserve_pending(&self, n: usize) {
        self.recipients
            .reserve(n, n * RESTORED_BYTES, self.recipient_rehash());
        self.by_sid.lock().reserve(n, |(h, _)| *h);
    }

    /// Restores a pending verification as the start-up reads it (its attempts follow:
    /// `restore_attempt`).
    pub fn restore_pending(&self, row: &PendingRow<'_>) {
        let pending = Pending {
            sid: &row.sid,
            status: Status::parse(&row.status).unwrap_or(Status::Failed),
            channel: &row.channel,
            code: &row.code,
            amount: row.amount.as_deref(),
            payee: row.payee.as_deref(),
            checks_failed: row.checks_failed as u32,
            expires_ms: row.expires_ms,
            date_created: row.date_created,
            date_updated: row.date_updated,
            version: row.version as u64,
            attempts: &[],
        };
        let scope = self.scopes.get(&row.service_sid, &row.account_sid);
        let hash = self.recipient_hash(scope, &row.to);
        self.recipients.lock(hash).write_keeping_garbage(
            hash,
            |b| is_recipient(b, scope, &row.to),
            self.recipient_rehash(),
            |held, out| {
                let sends: Vec<i64> = held
                    .map(|b| Rec::read(b).sends().collect())
                    .unwrap_or_default();
                record::recipient(out, scope, &row.to, sends.into_iter(), Some(&pending));
            },
        );
        self.index_sid(&mut self.by_sid.lock(), &row.sid, hash);
    }

    /// Restores one send attempt of a pending verification (in any order; of any other
    /// verification, nothing).
    pub fn restore_attempt(&self, verification_sid: &str, sid: &str, channel: &str, at_ms: i64) {
        let want = Wanted::new(verification_sid);
        for hash in self.sid_candidates(verification_sid) {
            self.recipients.lock(hash).write_keeping_garbage(
                hash,
                |b| Rec::read(b).pending_is(&want),
                self.recipient_rehash(),
                |held, out| {
                    if let Some(b) = held {
                        record::with_attempt(out, b, sid, channel, at_ms);
                    }
                },
            );
        }
    }

    /// Restores one recent send of a recipient (in any order).
    pub fn restore_send(&self, account: &str, service: &str, to: &str, at: i64) {
        let scope = self.scopes.get(service, account);
        let hash = self.recipient_hash(scope, to);
        self.recipients.lock(hash).write_keeping_garbage(
            hash,
            |b| is_recipient(b, scope, to),
            self.recipient_rehash(),
            |held, out| match held {
                Some(b) => {
                    let mut sends: Vec<i64> = Rec::read(b).sends().collect();
                    // Before the trailing sends that come after it (mostly in order already).
                    let later = sends.iter().rev().take_while(|&&t| t > at).count();
                    sends.insert(sends.len() - later, at);
                    record::with_sends(out, b, sends.into_iter());
                }
                None => record::recipient(out, scope, to, [at].into_iter(), None),
            },
        );
    }

    /// Ends the start-up: its records were written more than once (a verification, then its
    /// attempts and sends), so the buffers are copied to exactly what is live.
    pub fn restored(&self) {
        self.logs.tighten();
        self.recipients.tighten();
    }

    // --- the writer's side ----------------------------------------------------------------

    /// Applies a committed batch's overlay.
    pub fn publish(&self, overlay: Overlay) {
        for ((id, value), log) in overlay.logs {
            let hash = self.log_hash(id, &value);
            let mut shard = self.logs.lock(hash);
            let is = |b: &[u8]| is_log(b, id, &value);
            if log.is_empty() && !self.log_evicted(id, &value) {
                shard.remove(hash, is);
            } else {
                shard.write(hash, is, self.log_rehash(), |_, out| {
                    record::log(out, id, &value, log.iter().copied());
                });
            }
        }
        let mut index = self.by_sid.lock();
        for ((service, to), r) in overlay.recipients {
            let empty = r.pending.is_none() && r.sends.is_empty();
            // Emptied, but it may have been evicted before: kept empty (see `Cache`).
            let gone = empty && !self.recipient_evicted(&service, &to);
            let scope = if empty {
                match self.scopes.id(&service) {
                    Some(scope) => scope,
                    None => continue,
                }
            } else {
                self.scopes.get(&service, &r.account_sid)
            };
            let hash = self.recipient_hash(scope, &to);
            let mut shard = self.recipients.lock(hash);
            let is = |b: &[u8]| is_recipient(b, scope, &to);
            if gone {
                let held = shard.find(hash, is).map(Rec::read);
                self.follow_sid(&mut index, held, None, hash);
                shard.remove(hash, is);
            } else {
                shard.write(hash, is, self.recipient_rehash(), |held, out| {
                    let pending = r.pending.as_ref().map(Pending::from);
                    let sid = pending.as_ref().map(|p| p.sid);
                    self.follow_sid(&mut index, held.map(Rec::read), sid, hash);
                    record::recipient(out, scope, &to, r.sends.iter().copied(), pending.as_ref());
                });
            }
        }
    }

    /// Keeps the SID index on a recipient's pending verification: `held` is its record before
    /// the change, `sid` its pending SID after.
    fn follow_sid(
        &self,
        index: &mut HashTable<(u64, u64)>,
        held: Option<Rec<'_>>,
        sid: Option<&str>,
        recipient: u64,
    ) {
        if held
            .as_ref()
            .zip(sid)
            .is_some_and(|(rec, sid)| rec.pending_is(&Wanted::new(sid)))
        {
            return;
        }
        if let Some(old) = held.and_then(|rec| rec.pending_sid()) {
            let h = self.sid_hash(&old);
            if let Ok(i) = index.find_entry(h, |&(sh, rh)| sh == h && rh == recipient) {
                i.remove();
            }
        }
        if let Some(sid) = sid {
            self.index_sid(index, sid, recipient);
        }
    }

    fn index_sid(&self, index: &mut HashTable<(u64, u64)>, sid: &str, recipient: u64) {
        let h = self.sid_hash(sid);
        index.insert_unique(h, (h, recipient), |(h, _)| *h);
    }

    /// Recipients whose pending verification has expired, as `now_of(account)` says: (account,
    /// service, recipient).
    pub fn expired(
        &self,
        now_of: impl Fn(&str) -> i64,
        limit: usize,
    ) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for shard in self.recipients.shards() {
            let scopes = self.scopes.0.read();
            for b in shard.iter() {
                let rec = Rec::read(b);
                let (service, account) = scopes.get(rec.scope);
                if rec.pending_ended(now_of(account)) {
                    out.push((account.to_owned(), service.to_owned(), rec.to.to_owned()));
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// Forgets what no decision counts any more: admissions outside every window (`rules_of`
    /// gives a rate limit's rules and its account's time, `None` once it is gone), send times
    /// outside the send window, and recipients with nothing left — those that may have been
    /// evicted before only if `tables_current` (the tables hold every committed decision: see
    /// `Cache`). Only the writer calls this, between batches: it changes no decision. Answers
    /// how many entries it dropped.
    pub fn trim(
        &self,
        mut rules_of: impl FnMut(i64) -> Option<(Vec<window::Rule>, i64)>,
        now_of: impl Fn(&str) -> i64,
        send_window_ms: i64,
        tables_current: bool,
    ) -> usize {
        let mut cache: HashMap<i64, Option<(Vec<window::Rule>, i64)>> = HashMap::new();
        let mut dropped = 0;
        // One buffer for every log and every recipient's sends.
        let mut times = VecDeque::new();
        for mut shard in self.logs.shards() {
            let before = shard.len();
            shard.retain(|b, out| {
                let log = record::Log::read(b);
                let Some((rules, now)) = cache.entry(log.id).or_insert_with(|| rules_of(log.id))
                else {
                    return false;
                };
                times.clear();
                times.extend(log.iter());
                let held = times.len();
                window::prune(&mut times, rules, *now);
                let keep =
                    !times.is_empty() || (!tables_current && self.log_evicted(log.id, log.value));
                if keep && times.len() != held {
                    record::log(out, log.id, log.value, times.iter().copied());
                }
                keep
            });
            dropped += before - shard.len();
            shard.shrink(self.log_rehash());
        }
        // The service numbers still held, to free the others.
        let mut live = HashSet::new();
        for mut shard in self.recipients.shards() {
            let before = shard.len();
            let scopes = self.scopes.0.read();
            shard.retain(|b, out| {
                let rec = Rec::read(b);
                times.clear();
                times.extend(rec.sends());
                let held = times.len();
                if held > 0 {
                    let now = now_of(scopes.get(rec.scope).1);
                    crate::core::verification::prune_sends(&mut times, send_window_ms, now);
                }
                let keep = rec.has_pending()
                    || !times.is_empty()
                    || (!tables_current && self.recipient_evicted(scopes.get(rec.scope).0, rec.to));
                if keep && times.len() != held {
                    record::with_sends(out, b, times.iter().copied());
                }
                if keep {
                    live.insert(rec.scope);
                }
                keep
            });
            drop(scopes);
            dropped += before - shard.len();
            shard.shrink(self.recipient_rehash());
        }
        shrink_table(&mut self.by_sid.lock());
        self.scopes.sweep(&live);
        dropped
    }

    /// Forgets every log of the given rate limits, and every recipient for which
    /// `gone(service, account)` holds.
    pub fn forget(&self, rate_limit_ids: &HashSet<i64>, gone: impl Fn(&str, &str) -> bool) {
        if !rate_limit_ids.is_empty() {
            for mut shard in self.logs.shards() {
                shard.retain(|b, _| !rate_limit_ids.contains(&record::Log::read(b).id));
            }
        }
        let mut index = self.by_sid.lock();
        for mut shard in self.recipients.shards() {
            let scopes = self.scopes.0.read();
            shard.retain(|b, _| {
                let rec = Rec::read(b);
                let (service, account) = scopes.get(rec.scope);
                if !gone(service, account) {
                    return true;
                }
                let recipient = self.recipient_hash(rec.scope, rec.to);
                self.follow_sid(&mut index, Some(rec), None, recipient);
                false
            });
        }
    }
}

/// The changes of a batch being decided, over the committed cache: every entry it touched, as
/// the batch has left it.
#[derive(Default)]
pub struct Overlay {
    logs: HashMap<LogKey, VecDeque<i64>>,
    recipients: HashMap<OverlayKey, Recipient>,
}

impl Overlay {
    /// The admission log of a key as this batch sees it.
    pub fn log(&mut self, cache: &Cache, rate_limit_id: i64, value: &str) -> &VecDeque<i64> {
        let key = (rate_limit_id, Box::<str>::from(value));
        self.logs
            .entry(key)
            .or_insert_with_key(|(id, v)| cache.log(*id, v).unwrap_or_default())
    }

    /// The admission logs and recipients the batch has loaded, to use together.
    #[allow(clippy::type_complexity)]
    pub fn parts(
        &mut self,
    ) -> (
        &mut HashMap<LogKey, VecDeque<i64>>,
        &mut HashMap<OverlayKey, Recipient>,
    ) {
        (&mut self.logs, &mut self.recipients)
    }

    /// A recipient as this batch sees it (empty if unknown).
    pub fn recipient(&mut self, cache: &Cache, service: &str, to: &str) -> &mut Recipient {
        self.recipients
            .entry((service.to_owned(), to.to_owned()))
            .or_insert_with_key(|(s, t)| cache.recipient(s, t).unwrap_or_default())
    }
}

/// Records a changed verification in the recipient: pending, or gone once it has ended.
pub fn settle(r: &mut Recipient, v: &Verification) {
    r.account_sid.clone_from(&v.account_sid);
    if v.status == crate::core::Status::Pending {
        r.pending = Some(v.clone());
    } else if r.pending.as_ref().is_some_and(|p| p.sid == v.sid) {
        r.pending = None;
    }
}

/// Gives back a table's memory once most of it is empty (hash tables keep their capacity when
/// entries are removed): after a burst of a million recipients or values has passed, their
/// slots would otherwise stay resident.
pub fn shrink<K: Hash + Eq, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > 64 && map.capacity() > 4 * map.len() {
        map.shrink_to_fit();
    }
}

/// `shrink` for the SID index.
fn shrink_table(table: &mut HashTable<(u64, u64)>) {
    if table.capacity() > 64 && table.capacity() > 4 * table.len() {
        table.shrink_to_fit(|(h, _)| *h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Attempt;
    use proptest::prelude::*;

    fn verification(sid: &str, attempts: &[(&str, &str)], psd2: bool) -> Verification {
        Verification {
            sid: sid.into(),
            service_sid: "VA0123456789abcdef0123456789abcdef".into(),
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            to: "+15551234567".into(),
            channel: "sms".into(),
            status: Status::Pending,
            code: "123456".into(),
            amount: psd2.then(|| "€39.99".into()),
            payee: psd2.then(|| "Acme".into()),
            checks_failed: 2,
            expires_ms: 1_700_000_600_000,
            date_created: 1_700_000_000_000,
            date_updated: 1_700_000_000_123,
            version: 7,
            attempts: attempts
                .iter()
                .enumerate()
                .map(|(i, (sid, channel))| Attempt {
                    sid: (*sid).into(),
                    channel: (*channel).into(),
                    at_ms: 1_700_000_000_000 + i as i64,
                })
                .collect(),
        }
    }

    /// Restores `v` as the start-up does: its columns, then its attempts (newest first here).
    fn restore(cache: &Cache, v: &Verification) {
        cache.restore_pending(&PendingRow {
            sid: v.sid.as_str().into(),
            service_sid: v.service_sid.as_str().into(),
            account_sid: v.account_sid.as_str().into(),
            to: v.to.as_str().into(),
            channel: v.channel.as_str().into(),
            status: v.status.as_str().into(),
            code: v.code.as_str().into(),
            amount: v.amount.clone(),
            payee: v.payee.clone(),
            checks_failed: v.checks_failed.into(),
            expires_ms: v.expires_ms,
            date_created: v.date_created,
            date_updated: v.date_updated,
            version: v.version as i64,
        });
        for a in v.attempts.iter().rev() {
            cache.restore_attempt(&v.sid, &a.sid, &a.channel, a.at_ms);
        }
        // An attempt of a verification that is not pending is not kept.
        cache.restore_attempt("VEother", "VLother", "sms", 0);
    }

    #[test]
    fn a_pending_verification_comes_back_as_it_went_in() {
        let cases = [
            verification(
                "VE0123456789abcdef0123456789abcdef",
                &[("VLfedcba9876543210fedcba9876543210", "sms")],
                false,
            ),
            verification(
                "VEnot-a-generated-sid",
                &[
                    ("VL0123456789ABCDEF0123456789ABCDEF", "sms"),
                    ("VL0123456789abcdef0123456789abcdef", "call"),
                ],
                true,
            ),
            verification("VE", &[], false),
        ];
        for v in cases {
            let cache = Cache::default();
            restore(&cache, &v);
            for at in [5, 3, 7, 5, 1] {
                cache.restore_send(&v.account_sid, &v.service_sid, &v.to, at);
            }
            assert_eq!(cache.pending(&v.service_sid, &v.to), Some(v.clone()));
            assert_eq!(
                cache.find_sid(&v.sid),
                Some((v.service_sid.clone(), v.to.clone()))
            );
            let r = cache.recipient(&v.service_sid, &v.to).expect("held");
            assert_eq!(r.account_sid, v.account_sid);
            assert_eq!(r.sends, VecDeque::from([1, 3, 5, 5, 7]));
            assert_eq!(r.pending, Some(v.clone()));
            assert_eq!(cache.pending(&v.service_sid, "+15550000000"), None);

            // Published through an overlay, and then ended: the SID index follows.
            let mut overlay = Overlay::default();
            let mut ended = v.clone();
            ended.status = Status::Approved;
            settle(overlay.recipient(&cache, &v.service_sid, &v.to), &ended);
            cache.publish(overlay);
            assert_eq!(cache.pending(&v.service_sid, &v.to), None);
            assert_eq!(cache.find_sid(&v.sid), None);
            assert_eq!(
                cache.sends(&v.service_sid, &v.to),
                Some(VecDeque::from([1, 3, 5, 5, 7]))
            );
        }
    }

    proptest! {
        #[test]
        fn age_classes_follow_ages(a in 0i64..1 << 40, b in 0i64..1 << 40) {
            let (young, old) = (a.min(b), a.max(b));
            prop_assert!(age_class(young) <= age_class(old));
            prop_assert!(age_class(old) < 512);
            // An eighth apart is another class.
            if young >= 256 {
                prop_assert!(age_class(young + young / 8 + 16) > age_class(young));
            }
        }
    }

    #[test]
    fn eviction_lets_go_of_the_oldest_and_remembers_their_keys() {
        let cache = Cache::default();
        let base = 1_700_000_000_000;
        let n = 4000;
        let recipient = |i: usize| {
            let mut v = verification(&format!("VE{i:032x}"), &[("VL0", "sms")], false);
            v.to = format!("+1555{i:07}");
            v.date_created = base + i as i64 * 1000;
            v.date_updated = v.date_created;
            v.expires_ms = v.date_created + 600_000;
            v
        };
        for i in 0..n {
            restore(&cache, &recipient(i));
        }
        cache.restore_admissions(
            (0..n)
                .map(|i| (1, format!("value-{i}"), base + i as i64 * 1000))
                .collect(),
        );
        let now = base + n as i64 * 1000;
        let bytes = cache.bytes();
        cache.set_budget(bytes / 2);
        let evicted = cache.evict(|_| Some((now, 3_600_000)), |_| now, 600_000, now);
        assert!(evicted > 0);
        // What it let go of is given back at once.
        assert!(cache.bytes() <= bytes / 2, "{} of {bytes}", cache.bytes());
        let v = |i: usize| recipient(i);
        let held = |i: usize| cache.has_recipient(&v(i).service_sid, &v(i).to);
        // The youngest stay, the oldest go; what went is remembered, SID and all.
        assert!((n - n / 10..n).all(held));
        assert!((0..n / 10).all(|i| !held(i)));
        for i in 0..n {
            let r = v(i);
            if held(i) {
                assert_eq!(cache.pending(&r.service_sid, &r.to), Some(r.clone()));
            } else {
                assert!(cache.recipient_evicted(&r.service_sid, &r.to));
                assert_eq!(cache.find_sid(&r.sid), None);
            }
            let value = format!("value-{i}");
            assert!(cache.has_log(1, &value) || cache.log_evicted(1, &value));
        }
        assert!(cache.has_log(1, &format!("value-{}", n - 1)));
        assert!(!cache.has_log(1, "value-0"));
        // A key never seen is (nearly always) not taken for an evicted one.
        let strangers = (0..1000)
            .filter(|i| cache.log_evicted(1, &format!("stranger-{i}")))
            .count();
        assert!(strangers < 30, "{strangers}");

        // Read back, then emptied: kept empty (the tables may still hold its older state
        // until the journal reaches them), also through a sweep.
        let old = v(0);
        restore(&cache, &old);
        let mut overlay = Overlay::default();
        let mut ended = old.clone();
        ended.status = Status::Approved;
        settle(overlay.recipient(&cache, &old.service_sid, &old.to), &ended);
        cache.publish(overlay);
        assert!(cache.has_recipient(&old.service_sid, &old.to));
        assert_eq!(cache.pending(&old.service_sid, &old.to), None);
        cache.trim(|_| Some((Vec::new(), now)), |_| now, 600_000, false);
        assert!(cache.has_recipient(&old.service_sid, &old.to));
        // Once the tables hold every decision, it goes.
        cache.trim(|_| Some((Vec::new(), now)), |_| now, 600_000, true);
        assert!(!cache.has_recipient(&old.service_sid, &old.to));
        // Once what it evicted no longer matters, it is forgotten.
        cache.expire_evicted(now + 86_400_000 + 3_600_000 + 1);
        assert!(!cache.evicted_any());
    }

    #[test]
    fn recipients_of_different_services_are_different() {
        let cache = Cache::default();
        let mut v = verification("VE0123456789abcdef0123456789abcdef", &[], false);
        v.service_sid = "VAab".into();
        v.to = "c".into();
        restore(&cache, &v);
        assert!(cache.pending("VAab", "c").is_some());
        assert!(cache.pending("VAa", "bc").is_none());
        assert!(cache.pending("VAabc", "").is_none());
    }

    #[test]
    fn restored_admissions_are_each_values_log_in_time_order() {
        let cache = Cache::default();
        cache.restore_admissions(vec![
            (1, "b".into(), 30),
            (1, "a".into(), 20),
            (2, "a".into(), 5),
            (1, "a".into(), 10),
            (1, "b".into(), 30),
        ]);
        assert_eq!(cache.log(1, "a"), Some(VecDeque::from([10, 20])));
        assert_eq!(cache.log(1, "b"), Some(VecDeque::from([30, 30])));
        assert_eq!(cache.log(2, "a"), Some(VecDeque::from([5])));
        assert_eq!(cache.log(2, "b"), None);
        assert_eq!(cache.tracked(), (3, 0));
        let rule = |max, interval_ms| window::Rule {
            max,
            interval_ms,
            live_since_ms: 0,
        };
        // At 25 a 10 ms window counts only 20: 10 is pruned, the rest stays; the log of
        // (2, "a") goes (the one entry dropped).
        let dropped = cache.trim(
            |id| Some((vec![rule(5, 10)], if id == 1 { 25 } else { 100 })),
            |_| 0,
            1,
            true,
        );
        assert_eq!(dropped, 1);
        assert_eq!(cache.log(1, "a"), Some(VecDeque::from([20])));
        assert_eq!(cache.log(1, "b"), Some(VecDeque::from([30, 30])));
        assert_eq!(cache.log(2, "a"), None);
        assert_eq!(cache.tracked(), (2, 0));
    }

    /// What a model of the cache (plain maps) says after each change.
    #[derive(Debug, Clone)]
    enum Op {
        /// (service, recipient), pending SID (a number of that recipient's), sends.
        Recipient(usize, Option<u8>, Vec<i64>),
        /// (rate limit, value), times.
        Log(i64, usize, Vec<i64>),
        /// Keeps times from this one on.
        Trim(i64),
        /// Forgets a rate limit and the recipients of a service.
        Forget(i64, usize),
    }

    const SERVICES: [&str; 2] = ["VA0123456789abcdef0123456789abcdef", "VAshort"];
    const ACCOUNTS: [&str; 2] = ["AC0123456789abcdef0123456789abcdef", "ACother"];
    const TOS: [&str; 3] = ["+15550000001", "+15550000002", "a@example.com"];
    const VALUES: [&str; 3] = ["1.2.3.4", "1.2.3.5", ""];

    /// A SID per (recipient, number): generated ones for even numbers, other text for odd.
    fn sid_of(recipient: usize, n: u8) -> String {
        if n % 2 == 0 {
            format!("VE{:032x}", recipient * 256 + usize::from(n))
        } else {
            format!("VEtext-{recipient}-{n}")
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        let times = || {
            proptest::collection::vec(0i64..100, 0..4).prop_map(|mut v| {
                v.sort_unstable();
                v
            })
        };
        prop_oneof![
            4 => (0..6usize, proptest::option::of(0u8..4), times())
                .prop_map(|(r, p, s)| Op::Recipient(r, p, s)),
            3 => (0..2i64, 0..3usize, times()).prop_map(|(id, v, t)| Op::Log(id, v, t)),
            1 => (0i64..100).prop_map(Op::Trim),
            1 => (0..3i64, 0..3usize).prop_map(|(id, s)| Op::Forget(id, s)),
        ]
    }

    proptest! {
        #[test]
        fn the_cache_is_its_model(ops in proptest::collection::vec(op(), 1..40)) {
            let cache = Cache::default();
            let mut recipients: HashMap<usize, Recipient> = HashMap::new();
            let mut logs: HashMap<(i64, usize), VecDeque<i64>> = HashMap::new();
            let key = |r: usize| (SERVICES[r % 2], TOS[r / 2]);
            for op in ops {
                match op {
                    Op::Recipient(r, pending, sends) => {
                        let (service, to) = key(r);
                        // A service's recipients are of its account.
                        let account = r % 2;
                        let pending = pending.map(|n| {
                            let mut v = verification(&sid_of(r, n), &[("VLx", "sms")], n == 3);
                            v.service_sid = service.into();
                            v.account_sid = ACCOUNTS[account].into();
                            v.to = to.into();
                            v
                        });
                        let value = Recipient {
                            account_sid: ACCOUNTS[account].into(),
                            pending,
                            sends: sends.into(),
                        };
                        let mut overlay = Overlay::default();
                        *overlay.recipient(&cache, service, to) = value.clone();
                        cache.publish(overlay);
                        if value.pending.is_none() && value.sends.is_empty() {
                            recipients.remove(&r);
                        } else {
                            recipients.insert(r, value);
                        }
                    }
                    Op::Log(id, v, times) => {
                        let mut overlay = Overlay::default();
                        overlay.log(&cache, id, VALUES[v]);
                        overlay.parts().0.insert((id, VALUES[v].into()), times.clone().into());
                        cache.publish(overlay);
                        if times.is_empty() {
                            logs.remove(&(id, v));
                        } else {
                            logs.insert((id, v), times.into());
                        }
                    }
                    Op::Trim(from) => {
                        let rule = window::Rule { max: 100, interval_ms: 100, live_since_ms: 0 };
                        // Rate limit 1 is gone; the window at `from + 99` keeps `from` on;
                        // sends are kept while `now - t < 100`.
                        cache.trim(
                            |id| (id != 1).then(|| (vec![rule], from + 99)),
                            |_| from + 99,
                            100,
                            true,
                        );
                        logs.retain(|(id, _), log| {
                            log.retain(|&t| t >= from);
                            *id != 1 && !log.is_empty()
                        });
                        recipients.retain(|_, r| {
                            r.sends.retain(|&t| t >= from);
                            r.pending.is_some() || !r.sends.is_empty()
                        });
                    }
                    Op::Forget(id, s) => {
                        let gone = SERVICES.get(s).copied();
                        cache.forget(&HashSet::from([id]), |service, _| Some(service) == gone);
                        logs.retain(|(i, _), _| *i != id);
                        recipients.retain(|r, _| Some(key(*r).0) != gone);
                    }
                }
                // Every key, and every SID, as the model has it.
                for r in 0..6 {
                    let (service, to) = key(r);
                    let want = recipients.get(&r);
                    let got = cache.recipient(service, to);
                    prop_assert_eq!(got.as_ref().map(|g| &g.account_sid), want.map(|w| &w.account_sid));
                    prop_assert_eq!(got.as_ref().map(|g| &g.sends), want.map(|w| &w.sends));
                    prop_assert_eq!(got.and_then(|g| g.pending), want.and_then(|w| w.pending.clone()));
                    for n in 0..4 {
                        let held = want.and_then(|w| w.pending.as_ref()).is_some_and(|p| p.sid == sid_of(r, n));
                        let found = cache.find_sid(&sid_of(r, n));
                        prop_assert_eq!(found, held.then(|| (service.to_owned(), to.to_owned())));
                    }
                }
                for id in 0..3 {
                    for (v, value) in VALUES.iter().enumerate() {
                        prop_assert_eq!(cache.log(id, value), logs.get(&(id, v)).cloned());
                    }
                }
                prop_assert_eq!(cache.tracked(), (logs.len(), recipients.len()));
                prop_assert_eq!(cache.by_sid.lock().len(), recipients.values().filter(|r| r.pending.is_some()).count());
            }
        }
    }
}
