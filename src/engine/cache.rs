//! The SQLite engine's in-memory cache of committed state: the admission log of every
//! (rate limit, value) and, per (service, recipient), the pending verification and recent send
//! times — exactly what decisions need at speed. Everything here is rebuilt from the database
//! at start-up and can be dropped at any time; the database is the authority.
//!
//! Only the writer changes it (`publish`, after its transaction committed), so readers — fetch,
//! usage, SID lookups — only ever see committed state. While a batch is decided, its changes
//! live in a `Batch` overlay over the cache; a failed batch is dropped with its overlay.
//!
//! Entries are held compactly (`record`): the cache may hold millions of them, so a recipient
//! (its text, recent sends and pending verification with its attempts) and an admission log
//! are each one allocation of bytes, held in tables whose slots are that pointer (`Table`). A
//! recipient's service and account are shared (`Scopes`), and the index of pending SIDs holds
//! two hashes, the recipient's record telling whether it is that SID. The decisions see the same
//! `Verification` either way: what goes in comes back out (unit tests below and in `record`).

mod record;

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::core::{Status, Verification, window};
use crate::store::sql::sqlite::PendingRow;
use record::{Pending, Rec, Wanted};

const SHARDS: usize = 64;

type LogKey = (i64, Box<str>);
type OverlayKey = (String, String);

/// What is known of one recipient of one service.
#[derive(Debug, Default, Clone)]
pub struct Recipient {
    pub account_sid: String,
    pub pending: Option<Verification>,
    /// Times of recent sends (for the send-attempts rule), oldest first.
    pub sends: VecDeque<i64>,
}

/// Sharded tables of entries that hold their own keys: a reader locks one shard briefly.
struct Table<T> {
    shards: Vec<Mutex<HashTable<T>>>,
    hasher: RandomState,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<T> Table<T> {
    fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of a hash, chosen by bits its table does not look at (a table takes a
    /// bucket's index from the low bits and its tag from the top seven).
    fn shard(&self, hash: u64) -> &Mutex<HashTable<T>> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Makes room for `n` more entries spread over the shards (at start-up: no table is
    /// rebuilt as it grows).
    fn reserve(&self, n: usize, rehash: impl Fn(&T) -> u64) {
        let each = n / SHARDS + n / SHARDS / 8 + 1;
        for s in &self.shards {
            s.lock().reserve(each, &rehash);
        }
    }

    /// Puts `entry` in place of the one `is` finds, or adds it.
    fn put(&self, hash: u64, entry: T, is: impl Fn(&T) -> bool, rehash: impl Fn(&T) -> u64) {
        let mut shard = self.shard(hash).lock();
        match shard.find_mut(hash, is) {
            Some(held) => *held = entry,
            None => {
                shard.insert_unique(hash, entry, rehash);
            }
        }
    }
}

/// A service and its account, held once however many recipients name them.
struct Scope {
    service: Box<str>,
    account: Box<str>,
}

#[derive(Default)]
struct Scopes(Mutex<HashMap<Box<str>, Arc<Scope>>>);

impl Scopes {
    fn get(&self, service: &str, account: &str) -> Arc<Scope> {
        let mut map = self.0.lock();
        match map.get(service) {
            Some(scope) if *scope.account == *account => scope.clone(),
            _ => {
                let scope = Arc::new(Scope {
                    service: service.into(),
                    account: account.into(),
                });
                map.insert(service.into(), scope.clone());
                scope
            }
        }
    }

    /// Forgets the scopes no recipient holds any more.
    fn sweep(&self) {
        let mut map = self.0.lock();
        map.retain(|_, scope| Arc::strong_count(scope) > 1);
        shrink(&mut map);
    }
}

/// A recipient of a service: the scope it shares, and its record (`record::recipient`).
struct Entry {
    scope: Arc<Scope>,
    data: Box<[u8]>,
}

impl Entry {
    fn rec(&self) -> Rec<'_> {
        Rec::read(&self.data)
    }

    fn is(&self, service: &str, to: &str) -> bool {
        *self.scope.service == *service && self.rec().to == to
    }

    fn unpack(&self) -> Recipient {
        let rec = self.rec();
        Recipient {
            account_sid: self.scope.account.to_string(),
            pending: rec.pending(&self.scope.service, &self.scope.account),
            sends: rec.sends_deque(),
        }
    }
}

/// Live usage of one value of one rate limit.
pub struct ValueLog {
    pub value: String,
    pub log: VecDeque<i64>,
}

#[derive(Default)]
pub struct Cache {
    /// Admission logs (`record::log`), by (rate limit, value).
    logs: Table<Box<[u8]>>,
    /// Recipients, by (service, recipient).
    recipients: Table<Entry>,
    /// Pending verification SIDs: (the SID's hash, its recipient's). The recipient's record
    /// says whether it is that SID, so hashes that collide find nothing wrong.
    by_sid: Mutex<HashTable<(u64, u64)>>,
    scopes: Scopes,
}

impl Cache {
    fn log_hash(&self, rate_limit_id: i64, value: &str) -> u64 {
        self.logs.hash((rate_limit_id, value))
    }

    fn log_rehash(&self) -> impl Fn(&Box<[u8]>) -> u64 + '_ {
        |b| {
            let log = record::Log::read(b);
            self.log_hash(log.id, log.value)
        }
    }

    fn recipient_hash(&self, service: &str, to: &str) -> u64 {
        self.recipients.hash((service, to))
    }

    fn recipient_rehash(&self) -> impl Fn(&Entry) -> u64 + '_ {
        |e| self.recipient_hash(&e.scope.service, e.rec().to)
    }

    pub fn log(&self, rate_limit_id: i64, value: &str) -> Option<VecDeque<i64>> {
        let hash = self.log_hash(rate_limit_id, value);
        let shard = self.logs.shard(hash).lock();
        shard
            .find(hash, |b| {
                let log = record::Log::read(b);
                log.id == rate_limit_id && log.value == value
            })
            .map(|b| record::Log::read(b).times())
    }

    /// Reads a recipient's entry under its shard's lock (`None` if it has none).
    fn read_recipient<T>(
        &self,
        service: &str,
        to: &str,
        f: impl FnOnce(&Entry) -> Option<T>,
    ) -> Option<T> {
        let hash = self.recipient_hash(service, to);
        self.recipients
            .shard(hash)
            .lock()
            .find(hash, |e| e.is(service, to))
            .and_then(f)
    }

    pub fn recipient(&self, service: &str, to: &str) -> Option<Recipient> {
        self.read_recipient(service, to, |e| Some(e.unpack()))
    }

    /// A recipient's recent send times (for the send-attempts rule).
    pub fn sends(&self, service: &str, to: &str) -> Option<VecDeque<i64>> {
        self.read_recipient(service, to, |e| Some(e.rec().sends_deque()))
    }

    /// The pending verification of a recipient, if any (live or not).
    pub fn pending(&self, service: &str, to: &str) -> Option<Verification> {
        self.read_recipient(service, to, |e| {
            e.rec().pending(&e.scope.service, &e.scope.account)
        })
    }

    /// Finds the recipient whose pending verification is `sid`, and applies `f` to it under its
    /// shard's lock.
    fn with_sid<T>(&self, sid: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let hash = self.recipients.hash(sid);
        let candidates: Vec<u64> = self
            .by_sid
            .lock()
            .iter_hash(hash)
            .filter(|(h, _)| *h == hash)
            .map(|(_, recipient)| *recipient)
            .collect();
        let want = Wanted::new(sid);
        for hash in candidates {
            let mut shard = self.recipients.shard(hash).lock();
            if let Some(e) = shard.find_mut(hash, |e| e.rec().pending_is(&want)) {
                return Some(f(e));
            }
        }
        None
    }

    /// The (service, recipient) of a pending verification SID.
    pub fn find_sid(&self, sid: &str) -> Option<(String, String)> {
        self.with_sid(sid, |e| {
            (e.scope.service.to_string(), e.rec().to.to_owned())
        })
    }

    /// The logs of one rate limit, optionally of one value, ordered by value.
    pub fn usage(&self, rate_limit_id: i64, value: Option<&str>) -> Vec<ValueLog> {
        let mut out = Vec::new();
        for shard in &self.logs.shards {
            for b in shard.lock().iter() {
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

    // --- start-up -------------------------------------------------------------------------

    /// Restores the persisted admissions, `(rate limit, value, time)` in any order.
    pub fn restore_admissions(&self, mut rows: Vec<(i64, String, i64)>) {
        rows.sort_unstable();
        let logs = 1 + rows
            .windows(2)
            .filter(|w| (w[0].0, &w[0].1) != (w[1].0, &w[1].1))
            .count();
        self.logs.reserve(logs, self.log_rehash());
        let mut rows = rows.into_iter().peekable();
        while let Some((id, value, t)) = rows.next() {
            let mut log = VecDeque::from([t]);
            while let Some((_, _, t)) = rows.next_if(|(i, v, _)| *i == id && *v == value) {
                window::record(&mut log, t);
            }
            let hash = self.log_hash(id, &value);
            self.logs.shard(hash).lock().insert_unique(
                hash,
                record::log(id, &value, log.iter()),
                self.log_rehash(),
            );
        }
    }

    /// Makes room for `n` recipients with a pending verification.
    pub fn reserve_pending(&self, n: usize) {
        self.recipients.reserve(n, self.recipient_rehash());
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
        let hash = self.recipient_hash(&row.service_sid, &row.to);
        self.restore(hash, &row.service_sid, &row.account_sid, &row.to, |held| {
            let sends = held
                .map(|rec| rec.sends().collect::<Vec<_>>())
                .unwrap_or_default();
            record::recipient(&row.to, sends.iter(), Some(&pending))
        });
        let sid_hash = self.recipients.hash(&*row.sid);
        self.by_sid
            .lock()
            .insert_unique(sid_hash, (sid_hash, hash), |(h, _)| *h);
    }

    /// Restores one send attempt of a pending verification (in any order; of any other
    /// verification, nothing).
    pub fn restore_attempt(&self, verification_sid: &str, sid: &str, channel: &str, at_ms: i64) {
        self.with_sid(verification_sid, |e| {
            if let Some(data) = record::with_attempt(&e.data, sid, channel, at_ms) {
                e.data = data;
            }
        });
    }

    /// Restores one recent send of a recipient (in any order).
    pub fn restore_send(&self, account: &str, service: &str, to: &str, at: i64) {
        let hash = self.recipient_hash(service, to);
        self.restore(hash, service, account, to, |held| match held {
            Some(rec) => {
                let mut sends: Vec<i64> = rec.sends().collect();
                // Before the trailing sends that come after it (mostly in order already).
                let later = sends.iter().rev().take_while(|&&t| t > at).count();
                sends.insert(sends.len() - later, at);
                record::with_sends(rec.bytes(), sends.iter())
            }
            None => record::recipient(to, [at].iter(), None),
        });
    }

    /// Changes a recipient's entry at start-up: `f` makes its record from the one held, if any.
    fn restore(
        &self,
        hash: u64,
        service: &str,
        account: &str,
        to: &str,
        f: impl FnOnce(Option<Rec<'_>>) -> Box<[u8]>,
    ) {
        let mut shard = self.recipients.shard(hash).lock();
        match shard.find_mut(hash, |e| e.is(service, to)) {
            Some(e) => e.data = f(Some(e.rec())),
            None => {
                let entry = Entry {
                    scope: self.scopes.get(service, account),
                    data: f(None),
                };
                shard.insert_unique(hash, entry, self.recipient_rehash());
            }
        }
    }

    // --- the writer's side ----------------------------------------------------------------

    /// Applies a committed batch's overlay.
    pub fn publish(&self, overlay: Overlay) {
        for ((id, value), log) in overlay.logs {
            let hash = self.log_hash(id, &value);
            let is = |b: &[u8]| {
                let held = record::Log::read(b);
                held.id == id && held.value == &*value
            };
            if log.is_empty() {
                if let Ok(held) = self.logs.shard(hash).lock().find_entry(hash, |b| is(b)) {
                    held.remove();
                }
            } else {
                let entry = record::log(id, &value, log.iter());
                self.logs.put(hash, entry, |b| is(b), self.log_rehash());
            }
        }
        let mut index = self.by_sid.lock();
        for ((service, to), r) in overlay.recipients {
            let hash = self.recipient_hash(&service, &to);
            let mut shard = self.recipients.shard(hash).lock();
            let held = shard.find_entry(hash, |e| e.is(&service, &to)).ok();
            // The SID index follows the pending verification.
            let new_sid = r.pending.as_ref().map(|v| v.sid.as_str());
            let rec = held.as_ref().map(|e| e.get().rec());
            let same = rec
                .as_ref()
                .zip(new_sid)
                .is_some_and(|(rec, sid)| rec.pending_is(&Wanted::new(sid)));
            if !same {
                if let Some(old) = rec.and_then(|rec| rec.pending_sid()) {
                    let h = self.recipients.hash(old.as_str());
                    if let Ok(i) = index.find_entry(h, |&(sh, rh)| sh == h && rh == hash) {
                        i.remove();
                    }
                }
                if let Some(sid) = new_sid {
                    let h = self.recipients.hash(sid);
                    index.insert_unique(h, (h, hash), |(h, _)| *h);
                }
            }
            if r.pending.is_none() && r.sends.is_empty() {
                if let Some(e) = held {
                    e.remove();
                }
                continue;
            }
            let data = record::recipient(
                &to,
                r.sends.iter(),
                r.pending.as_ref().map(Pending::from).as_ref(),
            );
            match held {
                Some(mut e) if *e.get().scope.account == *r.account_sid => e.get_mut().data = data,
                held => {
                    let entry = Entry {
                        scope: self.scopes.get(&service, &r.account_sid),
                        data,
                    };
                    match held {
                        Some(mut e) => *e.get_mut() = entry,
                        None => {
                            shard.insert_unique(hash, entry, self.recipient_rehash());
                        }
                    }
                }
            }
        }
    }

    /// Recipients whose pending verification has expired, as `now_of(account)` says.
    pub fn expired(&self, now_of: impl Fn(&str) -> i64, limit: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for shard in &self.recipients.shards {
            for e in shard.lock().iter() {
                let rec = e.rec();
                if rec.has_pending() && rec.pending_ended(now_of(&e.scope.account)) {
                    out.push((e.scope.service.to_string(), rec.to.to_owned()));
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
    /// outside the send window, and recipients with nothing left. Only the writer calls this,
    /// between batches: it changes no decision. Answers how many entries it dropped.
    pub fn trim(
        &self,
        mut rules_of: impl FnMut(i64) -> Option<(Vec<window::Rule>, i64)>,
        now_of: impl Fn(&str) -> i64,
        send_window_ms: i64,
    ) -> usize {
        let mut cache: HashMap<i64, Option<(Vec<window::Rule>, i64)>> = HashMap::new();
        let mut dropped = 0;
        // One buffer for every log and every recipient's sends.
        let mut times = VecDeque::new();
        for shard in &self.logs.shards {
            let mut table = shard.lock();
            let before = table.len();
            table.retain(|b| {
                let log = record::Log::read(b);
                let Some((rules, now)) = cache.entry(log.id).or_insert_with(|| rules_of(log.id))
                else {
                    return false;
                };
                times.clear();
                times.extend(log.iter());
                let held = times.len();
                window::prune(&mut times, rules, *now);
                if times.len() == held {
                    return true;
                }
                let kept = record::log(log.id, log.value, times.iter());
                *b = kept;
                !times.is_empty()
            });
            dropped += before - table.len();
            shrink_table(&mut table, self.log_rehash());
        }
        for shard in &self.recipients.shards {
            let mut table = shard.lock();
            let before = table.len();
            table.retain(|e| {
                let rec = e.rec();
                if rec.has_sends() {
                    times.clear();
                    times.extend(rec.sends());
                    let held = times.len();
                    let now = now_of(&e.scope.account);
                    crate::core::verification::prune_sends(&mut times, send_window_ms, now);
                    if times.len() != held {
                        e.data = record::with_sends(&e.data, times.iter());
                    }
                }
                let rec = e.rec();
                rec.has_pending() || rec.has_sends()
            });
            dropped += before - table.len();
            shrink_table(&mut table, self.recipient_rehash());
        }
        shrink_table(&mut self.by_sid.lock(), |(h, _)| *h);
        self.scopes.sweep();
        dropped
    }

    /// Forgets every log of the given rate limits, and every recipient for which
    /// `gone(service, account)` holds.
    pub fn forget(&self, rate_limit_ids: &HashSet<i64>, gone: impl Fn(&str, &str) -> bool) {
        if !rate_limit_ids.is_empty() {
            for shard in &self.logs.shards {
                shard
                    .lock()
                    .retain(|b| !rate_limit_ids.contains(&record::Log::read(b).id));
            }
        }
        let mut index = self.by_sid.lock();
        for shard in &self.recipients.shards {
            shard.lock().retain(|e| {
                if !gone(&e.scope.service, &e.scope.account) {
                    return true;
                }
                let rec = e.rec();
                if let Some(sid) = rec.pending_sid() {
                    let h = self.recipients.hash(sid.as_str());
                    let rh = self.recipient_hash(&e.scope.service, rec.to);
                    if let Ok(i) = index.find_entry(h, |&(sh, r)| sh == h && r == rh) {
                        i.remove();
                    }
                }
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

/// `shrink` for a table of entries that hold their keys.
fn shrink_table<T>(table: &mut HashTable<T>, rehash: impl Fn(&T) -> u64) {
    if table.capacity() > 64 && table.capacity() > 4 * table.len() {
        table.shrink_to_fit(rehash);
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

    /// What a recipient costs besides its record: a slot of three words; and an admission
    /// log, two.
    #[test]
    fn a_slot_is_a_pointer() {
        assert_eq!(std::mem::size_of::<Entry>(), 24);
        assert_eq!(std::mem::size_of::<Box<[u8]>>(), 16);
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
        /// (service, recipient), account, pending SID (a number of that recipient's), sends.
        Recipient(usize, usize, Option<u8>, Vec<i64>),
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
            4 => (0..6usize, 0..2usize, proptest::option::of(0u8..4), times())
                .prop_map(|(r, a, p, s)| Op::Recipient(r, a, p, s)),
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
                    Op::Recipient(r, account, pending, sends) => {
                        let (service, to) = key(r);
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
