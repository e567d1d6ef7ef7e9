//! The SQLite engine's in-memory cache of committed state: the admission log of every
//! (rate limit, value) and, per (service, recipient), the pending verification and recent send
//! times — exactly what decisions need at speed. Everything here is rebuilt from the database
//! at start-up and can be dropped at any time; the database is the authority.
//!
//! Only the writer changes it (`publish`, after its transaction committed), so readers — fetch,
//! usage, SID lookups — only ever see committed state. While a batch is decided, its changes
//! live in a `Batch` overlay over the cache; a failed batch is dropped with its overlay.
//!
//! Recipients are held compactly (`Stored`, `Packed`): the cache may hold millions of them, so
//! SIDs are packed into 18 bytes, service and account SIDs and channels are shared (`Names`),
//! and the service and recipient of a key are one allocation (`RecipientKey`). The decisions see
//! the same `Verification` either way: what goes in comes back out (unit tests below).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;

use data_encoding::HEXLOWER;
use parking_lot::Mutex;

use crate::core::{Attempt, Status, Verification, window};
use crate::store::sql::sqlite::PendingRow;

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

/// Sharded maps: a reader locks one shard briefly.
struct Sharded<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<HashMap<K, V>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Makes room for `n` more entries spread over the shards (at start-up: no table is
    /// rebuilt as it grows).
    fn reserve(&self, n: usize) {
        let each = n / SHARDS + n / SHARDS / 8 + 1;
        for s in &self.shards {
            s.lock().reserve(each);
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
    /// Each log exactly its entries' size (the batch that grew it works on a `VecDeque`).
    logs: Sharded<LogKey, Box<[i64]>>,
    /// Boxed: the tables are sized in powers of two, up to half of their slots stay empty.
    recipients: Sharded<RecipientKey, Box<Stored>>,
    /// Pending verification SID → its (service, recipient).
    by_sid: Mutex<HashMap<Sid, RecipientKey>>,
    names: Names,
}

impl Cache {
    pub fn log(&self, rate_limit_id: i64, value: &str) -> Option<VecDeque<i64>> {
        let key = (rate_limit_id, Box::<str>::from(value));
        let shard = self.logs.shard(&key).lock();
        shard.get(&key).map(|log| VecDeque::from(log.to_vec()))
    }

    /// Reads a recipient's entry under its shard's lock (`None` if it has none).
    fn read_recipient<T>(
        &self,
        service: &str,
        to: &str,
        f: impl FnOnce(&Stored) -> Option<T>,
    ) -> Option<T> {
        let key = RecipientKey::new(service, to);
        self.recipients
            .shard(&key)
            .lock()
            .get(&key)
            .and_then(|r| f(r))
    }

    pub fn recipient(&self, service: &str, to: &str) -> Option<Recipient> {
        self.read_recipient(service, to, |r| Some(r.unpack(service, to)))
    }

    /// A recipient's recent send times (for the send-attempts rule).
    pub fn sends(&self, service: &str, to: &str) -> Option<VecDeque<i64>> {
        self.read_recipient(service, to, |r| Some(VecDeque::from(r.sends.to_vec())))
    }

    /// The pending verification of a recipient, if any (live or not).
    pub fn pending(&self, service: &str, to: &str) -> Option<Verification> {
        self.read_recipient(service, to, |r| {
            let p = r.pending.as_ref()?;
            Some(p.unpack(service, &r.account, to))
        })
    }

    /// The (service, recipient) of a pending verification SID.
    pub fn find_sid(&self, sid: &str) -> Option<(String, String)> {
        let key = self.by_sid.lock().get(&Sid::new(sid))?.clone();
        let (service, to) = key.parts();
        Some((service.to_owned(), to.to_owned()))
    }

    /// The logs of one rate limit, optionally of one value, ordered by value.
    pub fn usage(&self, rate_limit_id: i64, value: Option<&str>) -> Vec<ValueLog> {
        let mut out = Vec::new();
        for shard in &self.logs.shards {
            for ((id, v), log) in shard.lock().iter() {
                if *id == rate_limit_id && value.is_none_or(|want| want == &**v) {
                    out.push(ValueLog {
                        value: v.to_string(),
                        log: VecDeque::from(log.to_vec()),
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
        self.logs.reserve(logs);
        let mut rows = rows.into_iter().peekable();
        while let Some((id, value, t)) = rows.next() {
            let mut log = VecDeque::from([t]);
            while let Some((_, _, t)) = rows.next_if(|(i, v, _)| *i == id && *v == value) {
                window::record(&mut log, t);
            }
            let key = (id, value.into_boxed_str());
            self.logs.shard(&key).lock().insert(key, boxed(log));
        }
    }

    /// Makes room for `n` recipients with a pending verification.
    pub fn reserve_pending(&self, n: usize) {
        self.recipients.reserve(n);
        self.by_sid.lock().reserve(n);
    }

    /// Restores a pending verification as the start-up reads it (its attempts follow:
    /// `restore_attempt`).
    pub fn restore_pending(&self, row: &PendingRow<'_>) {
        let key = RecipientKey::new(&row.service_sid, &row.to);
        let sid = Sid::new(&row.sid);
        let pending = Packed {
            sid: sid.clone(),
            channel: self.names.get(&row.channel),
            code: (*row.code).into(),
            psd2: Packed::psd2(&row.amount, &row.payee),
            attempts: Box::new([]),
            expires_ms: row.expires_ms,
            date_created: row.date_created,
            date_updated: row.date_updated,
            version: row.version as u64,
            checks_failed: row.checks_failed as u32,
            status: Status::parse(&row.status).unwrap_or(Status::Failed),
        };
        self.by_sid.lock().insert(sid, key.clone());
        self.restore(key, &row.account_sid, |r| r.pending = Some(pending));
    }

    /// Restores one send attempt of a pending verification (in any order; of any other
    /// verification, nothing).
    pub fn restore_attempt(&self, verification_sid: &str, sid: &str, channel: &str, at_ms: i64) {
        let key = {
            let index = self.by_sid.lock();
            match index.get(&Sid::new(verification_sid)) {
                Some(key) => key.clone(),
                None => return,
            }
        };
        let mut shard = self.recipients.shard(&key).lock();
        let Some(p) = shard.get_mut(&key).and_then(|r| r.pending.as_mut()) else {
            return;
        };
        // Oldest first (then by SID).
        let attempt = PackedAttempt {
            sid: Sid::new(sid),
            channel: self.names.get(channel),
            at_ms,
        };
        insert_sorted(&mut p.attempts, attempt, |a| {
            a.at_ms > at_ms || (a.at_ms == at_ms && a.sid.text().as_str() > sid)
        });
    }

    /// Restores one recent send of a recipient (in any order).
    pub fn restore_send(&self, account: &str, service: &str, to: &str, at: i64) {
        self.restore(RecipientKey::new(service, to), account, |r| {
            insert_sorted(&mut r.sends, at, |&t| t > at);
        });
    }

    /// Changes a recipient's entry at start-up (made if it has none).
    fn restore(&self, key: RecipientKey, account: &str, f: impl FnOnce(&mut Stored)) {
        let account = self.names.get(account);
        let mut shard = self.recipients.shard(&key).lock();
        let r = shard
            .entry(key)
            .or_insert_with(|| Box::new(Stored::new(account.clone())));
        r.account = account;
        f(r);
    }

    // --- the writer's side ----------------------------------------------------------------

    /// Applies a committed batch's overlay.
    pub fn publish(&self, overlay: Overlay) {
        for (key, log) in overlay.logs {
            let mut shard = self.logs.shard(&key).lock();
            if log.is_empty() {
                shard.remove(&key);
            } else {
                shard.insert(key, boxed(log));
            }
        }
        let mut index = self.by_sid.lock();
        for ((service, to), r) in overlay.recipients {
            let key = RecipientKey::new(&service, &to);
            let mut shard = self.recipients.shard(&key).lock();
            // The key already held (so that the SID index shares its text), and its SID.
            let (key, old_sid) = match shard.get_key_value(&key) {
                Some((held, o)) => (held.clone(), o.pending.as_ref().map(|p| p.sid.clone())),
                None => (key, None),
            };
            let new_sid = r.pending.as_ref().map(|v| Sid::new(&v.sid));
            if old_sid != new_sid {
                if let Some(s) = old_sid {
                    index.remove(&s);
                }
                if let Some(s) = new_sid {
                    index.insert(s, key.clone());
                }
            }
            if r.pending.is_none() && r.sends.is_empty() {
                shard.remove(&key);
            } else {
                let stored = Box::new(Stored::pack(r, &self.names));
                shard.insert(key, stored);
            }
        }
    }

    /// Recipients whose pending verification has expired, as `now_of(account)` says.
    pub fn expired(&self, now_of: impl Fn(&str) -> i64, limit: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for shard in &self.recipients.shards {
            for (key, r) in shard.lock().iter() {
                if r.pending
                    .as_ref()
                    .is_some_and(|p| !p.is_live(now_of(&r.account)))
                {
                    let (service, to) = key.parts();
                    out.push((service.to_owned(), to.to_owned()));
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
        for shard in &self.logs.shards {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(
                |(id, _), log| match cache.entry(*id).or_insert_with(|| rules_of(*id)) {
                    Some((rules, now)) => {
                        // No copy unless something is pruned (`deque` and `boxed` then only
                        // hand the allocation over).
                        let mut d = deque(std::mem::take(log));
                        window::prune(&mut d, rules, *now);
                        *log = boxed(d);
                        !log.is_empty()
                    }
                    None => false,
                },
            );
            dropped += before - map.len();
            shrink(&mut map);
        }
        for shard in &self.recipients.shards {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(|_, r| {
                let now = now_of(&r.account);
                // (No copy unless something is pruned, as with the logs above.)
                let mut sends = deque(std::mem::take(&mut r.sends));
                crate::core::verification::prune_sends(&mut sends, send_window_ms, now);
                r.sends = boxed(sends);
                r.pending.is_some() || !r.sends.is_empty()
            });
            dropped += before - map.len();
            shrink(&mut map);
        }
        shrink(&mut self.by_sid.lock());
        self.names.sweep();
        dropped
    }

    /// Forgets every log of the given rate limits, and every recipient for which
    /// `gone(service, account)` holds.
    pub fn forget(&self, rate_limit_ids: &HashSet<i64>, gone: impl Fn(&str, &str) -> bool) {
        if !rate_limit_ids.is_empty() {
            for shard in &self.logs.shards {
                shard
                    .lock()
                    .retain(|(id, _), _| !rate_limit_ids.contains(id));
            }
        }
        let mut index = self.by_sid.lock();
        for shard in &self.recipients.shards {
            shard.lock().retain(|key, r| {
                if gone(key.parts().0, &r.account) {
                    if let Some(p) = &r.pending {
                        index.remove(&p.sid);
                    }
                    false
                } else {
                    true
                }
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

/// Inserts `item` into `sorted` before the trailing elements that come `after` it (the start-up
/// restores in any order, mostly in order already: the search runs from the end).
fn insert_sorted<T>(sorted: &mut Box<[T]>, item: T, after: impl Fn(&T) -> bool) {
    let mut v = std::mem::take(sorted).into_vec();
    let later = v.iter().rev().take_while(|x| after(x)).count();
    v.insert(v.len() - later, item);
    *sorted = v.into_boxed_slice();
}

/// A log as the cache keeps it: exactly its entries.
fn boxed(log: VecDeque<i64>) -> Box<[i64]> {
    Vec::from(log).into_boxed_slice()
}

fn deque(log: Box<[i64]>) -> VecDeque<i64> {
    VecDeque::from(Vec::from(log))
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

// --- compact storage ------------------------------------------------------------------------

/// Text the cache holds once however many entries name it: service and account SIDs, channels.
#[derive(Default)]
struct Names(Mutex<HashSet<Arc<str>>>);

impl Names {
    fn get(&self, text: &str) -> Arc<str> {
        let mut set = self.0.lock();
        if let Some(name) = set.get(text) {
            return name.clone();
        }
        let name: Arc<str> = Arc::from(text);
        set.insert(name.clone());
        name
    }

    /// Forgets the names nothing holds any more.
    fn sweep(&self) {
        let mut set = self.0.lock();
        set.retain(|name| Arc::strong_count(name) > 1);
        if set.capacity() > 64 && set.capacity() > 4 * set.len() {
            set.shrink_to_fit();
        }
    }
}

/// A SID as the cache keeps it: a generated one (two capital letters, 32 lowercase hex digits)
/// in 18 bytes, anything else as it is. The same text always gives the same value, so equality
/// and hashing are those of the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Sid {
    Packed([u8; 18]),
    Text(Box<str>),
}

impl Sid {
    fn new(text: &str) -> Self {
        let b = text.as_bytes();
        if b.len() == 34 && b[..2].iter().all(u8::is_ascii_uppercase) {
            let mut out = [0u8; 18];
            out[..2].copy_from_slice(&b[..2]);
            // Lowercase only: the text must come back as it was.
            if HEXLOWER.decode_mut(&b[2..], &mut out[2..]).is_ok() {
                return Sid::Packed(out);
            }
        }
        Sid::Text(text.into())
    }

    fn text(&self) -> String {
        match self {
            Sid::Packed(b) => {
                let mut s = String::with_capacity(34);
                s.push(b[0] as char);
                s.push(b[1] as char);
                s.push_str(&HEXLOWER.encode(&b[2..]));
                s
            }
            Sid::Text(t) => t.to_string(),
        }
    }
}

/// A (service, recipient) key in one allocation, shared by the recipient's entry and the index
/// of its pending SID: the service's length as one character, the service, the recipient (so
/// the key is as thin as a pointer to text, and equal texts are equal pairs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RecipientKey {
    text: Arc<str>,
}

impl RecipientKey {
    fn new(service: &str, to: &str) -> Self {
        let len = u32::try_from(service.len())
            .ok()
            .and_then(char::from_u32)
            .expect("a service SID is short");
        let mut text = String::with_capacity(len.len_utf8() + service.len() + to.len());
        text.push(len);
        text.push_str(service);
        text.push_str(to);
        Self {
            text: Arc::from(text),
        }
    }

    fn parts(&self) -> (&str, &str) {
        let mut chars = self.text.chars();
        let len = chars.next().map_or(0, |c| c as usize);
        chars.as_str().split_at(len)
    }
}

/// A recipient as the cache keeps it.
struct Stored {
    account: Arc<str>,
    /// Inline: a recipient is held mostly for its pending verification (one allocation of
    /// 160 bytes for both, not 64 + 128).
    pending: Option<Packed>,
    /// Times of recent sends, oldest first (exactly their size).
    sends: Box<[i64]>,
}

impl Stored {
    fn new(account: Arc<str>) -> Self {
        Self {
            account,
            pending: None,
            sends: Box::new([]),
        }
    }

    fn pack(r: Recipient, names: &Names) -> Self {
        let sends = boxed(r.sends);
        Self {
            account: names.get(&r.account_sid),
            pending: r.pending.as_ref().map(|v| Packed::pack(v, names)),
            sends,
        }
    }

    fn unpack(&self, service: &str, to: &str) -> Recipient {
        Recipient {
            account_sid: self.account.to_string(),
            pending: self
                .pending
                .as_ref()
                .map(|p| p.unpack(service, &self.account, to)),
            sends: VecDeque::from(self.sends.to_vec()),
        }
    }
}

/// A pending verification as the cache keeps it: its service, account and recipient are its
/// entry's.
struct Packed {
    sid: Sid,
    channel: Arc<str>,
    code: Box<str>,
    /// Amount and payee (PSD2 verifications only).
    psd2: Option<Box<(Option<String>, Option<String>)>>,
    attempts: Box<[PackedAttempt]>,
    expires_ms: i64,
    date_created: i64,
    date_updated: i64,
    version: u64,
    checks_failed: u32,
    status: Status,
}

struct PackedAttempt {
    sid: Sid,
    channel: Arc<str>,
    at_ms: i64,
}

impl Packed {
    fn pack(v: &Verification, names: &Names) -> Self {
        Self {
            sid: Sid::new(&v.sid),
            channel: names.get(&v.channel),
            code: v.code.as_str().into(),
            psd2: Self::psd2(&v.amount, &v.payee),
            attempts: v
                .attempts
                .iter()
                .map(|a| PackedAttempt {
                    sid: Sid::new(&a.sid),
                    channel: names.get(&a.channel),
                    at_ms: a.at_ms,
                })
                .collect(),
            expires_ms: v.expires_ms,
            date_created: v.date_created,
            date_updated: v.date_updated,
            version: v.version,
            checks_failed: v.checks_failed,
            status: v.status,
        }
    }

    fn psd2(
        amount: &Option<String>,
        payee: &Option<String>,
    ) -> Option<Box<(Option<String>, Option<String>)>> {
        (amount.is_some() || payee.is_some()).then(|| Box::new((amount.clone(), payee.clone())))
    }

    fn unpack(&self, service: &str, account: &str, to: &str) -> Verification {
        let (amount, payee) = self.psd2.as_deref().cloned().unwrap_or_default();
        Verification {
            sid: self.sid.text(),
            service_sid: service.to_owned(),
            account_sid: account.to_owned(),
            to: to.to_owned(),
            channel: self.channel.to_string(),
            status: self.status,
            code: self.code.to_string(),
            amount,
            payee,
            checks_failed: self.checks_failed,
            expires_ms: self.expires_ms,
            date_created: self.date_created,
            date_updated: self.date_updated,
            version: self.version,
            attempts: self
                .attempts
                .iter()
                .map(|a| Attempt {
                    sid: a.sid.text(),
                    channel: a.channel.to_string(),
                    at_ms: a.at_ms,
                })
                .collect(),
        }
    }

    fn is_live(&self, now: i64) -> bool {
        self.status == Status::Pending && now < self.expires_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    proptest! {
        /// A key gives back the pair it was made of, and two keys are equal exactly when their
        /// pairs are.
        #[test]
        fn a_recipient_key_is_its_pair(
            a in (".{0,40}", ".{0,20}"),
            b in (".{0,40}", ".{0,20}"),
        ) {
            let ka = RecipientKey::new(&a.0, &a.1);
            let kb = RecipientKey::new(&b.0, &b.1);
            prop_assert_eq!(ka.parts(), (a.0.as_str(), a.1.as_str()));
            prop_assert_eq!(ka == kb, a == b);
            let joined = RecipientKey::new(&format!("{}{}", a.0, a.1), "");
            prop_assert_eq!(joined == ka, a.1.is_empty());
        }
    }

    /// What a recipient with its pending verification costs: one allocation of at most 160
    /// bytes (an allocator's size class), plus its key, code and attempts.
    #[test]
    fn a_recipient_is_one_small_allocation() {
        assert_eq!(std::mem::size_of::<RecipientKey>(), 16);
        assert!(
            std::mem::size_of::<Stored>() <= 160,
            "{}",
            std::mem::size_of::<Stored>()
        );
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

    proptest! {
        #[test]
        fn a_sid_is_its_text(a in "[A-Z]{2}[0-9a-f]{32}|[A-Za-z0-9]{0,40}|\\PC{0,40}", b in "[A-Z]{2}[0-9a-fA-F]{32}") {
            for text in [&a, &b] {
                prop_assert_eq!(Sid::new(text).text(), text.as_str());
                prop_assert_eq!(Sid::new(text), Sid::new(text));
            }
            prop_assert_eq!(Sid::new(&a) == Sid::new(&b), a == b);
        }
    }
}
