//! The SQLite engine's in-memory cache of committed state: the admission log of every
//! (rate limit, value) and, per (service, recipient), the pending verification and recent send
//! times — exactly what decisions need at speed. Everything here is rebuilt from the database
//! at start-up and can be dropped at any time; the database is the authority.
//!
//! Only the writer changes it (`publish`, after its transaction committed), so readers — fetch,
//! usage, SID lookups — only ever see committed state. While a batch is decided, its changes
//! live in a `Batch` overlay over the cache; a failed batch is dropped with its overlay.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, RandomState};

use parking_lot::Mutex;

use crate::core::{Verification, window};

const SHARDS: usize = 64;

type LogKey = (i64, Box<str>);
type RecipientKey = (String, String);

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
}

/// Live usage of one value of one rate limit.
pub struct ValueLog {
    pub value: String,
    pub log: VecDeque<i64>,
}

#[derive(Default)]
pub struct Cache {
    logs: Sharded<LogKey, VecDeque<i64>>,
    /// Boxed: a table keeps its capacity after a burst, and an empty slot then costs a pointer.
    recipients: Sharded<RecipientKey, Box<Recipient>>,
    /// Pending verification SID → (service, recipient).
    by_sid: Mutex<HashMap<String, RecipientKey>>,
}

impl Cache {
    pub fn log(&self, rate_limit_id: i64, value: &str) -> Option<VecDeque<i64>> {
        let key = (rate_limit_id, Box::<str>::from(value));
        self.logs.shard(&key).lock().get(&key).cloned()
    }

    /// Reads a recipient's entry under its shard's lock (`None` if it has none).
    fn read_recipient<T>(
        &self,
        service: &str,
        to: &str,
        f: impl FnOnce(&Recipient) -> Option<T>,
    ) -> Option<T> {
        let key = (service.to_owned(), to.to_owned());
        self.recipients
            .shard(&key)
            .lock()
            .get(&key)
            .and_then(|r| f(r))
    }

    pub fn recipient(&self, service: &str, to: &str) -> Option<Recipient> {
        self.read_recipient(service, to, |r| Some(r.clone()))
    }

    /// A recipient's recent send times (for the send-attempts rule).
    pub fn sends(&self, service: &str, to: &str) -> Option<VecDeque<i64>> {
        self.read_recipient(service, to, |r| Some(r.sends.clone()))
    }

    /// The pending verification of a recipient, if any (live or not).
    pub fn pending(&self, service: &str, to: &str) -> Option<Verification> {
        self.read_recipient(service, to, |r| r.pending.clone())
    }

    /// The (service, recipient) of a pending verification SID.
    pub fn find_sid(&self, sid: &str) -> Option<(String, String)> {
        self.by_sid.lock().get(sid).cloned()
    }

    /// The logs of one rate limit, optionally of one value, ordered by value.
    pub fn usage(&self, rate_limit_id: i64, value: Option<&str>) -> Vec<ValueLog> {
        let mut out = Vec::new();
        for shard in &self.logs.shards {
            for ((id, v), log) in shard.lock().iter() {
                if *id == rate_limit_id && value.is_none_or(|want| want == &**v) {
                    out.push(ValueLog {
                        value: v.to_string(),
                        log: log.clone(),
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

    /// Restores one persisted admission (call in time order per key).
    pub fn restore_admission(&self, rate_limit_id: i64, value: &str, t: i64) {
        let key = (rate_limit_id, Box::<str>::from(value));
        let mut shard = self.logs.shard(&key).lock();
        window::record(
            shard
                .entry(key)
                .or_insert_with(|| VecDeque::with_capacity(1)),
            t,
        );
    }

    pub fn restore_pending(&self, v: Verification) {
        self.by_sid
            .lock()
            .insert(v.sid.clone(), (v.service_sid.clone(), v.to.clone()));
        let key = (v.service_sid.clone(), v.to.clone());
        let mut shard = self.recipients.shard(&key).lock();
        let r = shard.entry(key).or_default();
        r.account_sid = v.account_sid.clone();
        r.pending = Some(v);
    }

    pub fn restore_send(&self, account: &str, service: &str, to: &str, at: i64) {
        let key = (service.to_owned(), to.to_owned());
        let mut shard = self.recipients.shard(&key).lock();
        let r = shard.entry(key).or_default();
        r.account_sid = account.to_owned();
        r.sends.push_back(at);
    }

    // --- the writer's side ----------------------------------------------------------------

    /// Applies a committed batch's overlay.
    pub fn publish(&self, overlay: Overlay) {
        for (key, log) in overlay.logs {
            let mut shard = self.logs.shard(&key).lock();
            if log.is_empty() {
                shard.remove(&key);
            } else {
                shard.insert(key, log);
            }
        }
        let mut index = self.by_sid.lock();
        for (key, r) in overlay.recipients {
            let mut shard = self.recipients.shard(&key).lock();
            let old_sid = shard
                .get(&key)
                .and_then(|o| o.pending.as_ref().map(|v| v.sid.clone()));
            let new_sid = r.pending.as_ref().map(|v| v.sid.clone());
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
                shard.insert(key, Box::new(r));
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
                    .is_some_and(|v| !v.is_live(now_of(&r.account_sid)))
                {
                    out.push(key.clone());
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
    /// between batches: it changes no decision.
    pub fn trim(
        &self,
        mut rules_of: impl FnMut(i64) -> Option<(Vec<window::Rule>, i64)>,
        now_of: impl Fn(&str) -> i64,
        send_window_ms: i64,
    ) {
        let mut cache: HashMap<i64, Option<(Vec<window::Rule>, i64)>> = HashMap::new();
        for shard in &self.logs.shards {
            let mut map = shard.lock();
            map.retain(
                |(id, _), log| match cache.entry(*id).or_insert_with(|| rules_of(*id)) {
                    Some((rules, now)) => {
                        window::prune(log, rules, *now);
                        if log.capacity() > 4 * log.len().max(2) {
                            log.shrink_to_fit();
                        }
                        !log.is_empty()
                    }
                    None => false,
                },
            );
            shrink(&mut map);
        }
        for shard in &self.recipients.shards {
            let mut map = shard.lock();
            map.retain(|_, r| {
                let now = now_of(&r.account_sid);
                crate::core::verification::prune_sends(&mut r.sends, send_window_ms, now);
                r.pending.is_some() || !r.sends.is_empty()
            });
            shrink(&mut map);
        }
        shrink(&mut self.by_sid.lock());
    }

    /// Forgets every log of the given rate limits, and every recipient matching `gone`.
    pub fn forget(&self, rate_limit_ids: &HashSet<i64>, gone: impl Fn(&str, &Recipient) -> bool) {
        if !rate_limit_ids.is_empty() {
            for shard in &self.logs.shards {
                shard
                    .lock()
                    .retain(|(id, _), _| !rate_limit_ids.contains(id));
            }
        }
        let mut index = self.by_sid.lock();
        for shard in &self.recipients.shards {
            shard.lock().retain(|(service, _), r| {
                if gone(service, r) {
                    if let Some(v) = &r.pending {
                        index.remove(&v.sid);
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
    recipients: HashMap<RecipientKey, Recipient>,
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
        &mut HashMap<RecipientKey, Recipient>,
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
