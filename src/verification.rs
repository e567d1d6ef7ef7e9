//! Verifications in memory: the pending verification and the recent sends of every
//! (service, recipient). Only pending verifications can be fetched, re-sent or checked (a
//! finished one answers 404), so memory is the authority for them and the database their durable
//! copy, written before any request that changed them is answered.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use parking_lot::{Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Approved,
    Canceled,
    MaxAttemptsReached,
    Deleted,
    Failed,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Canceled => "canceled",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Deleted => "deleted",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "canceled" => Status::Canceled,
            "max_attempts_reached" => Status::MaxAttemptsReached,
            "deleted" => Status::Deleted,
            "failed" => Status::Failed,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub sid: String,
    pub channel: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    pub channel: String,
    pub status: Status,
    pub code: String,
    pub amount: Option<String>,
    pub payee: Option<String>,
    pub checks_failed: u32,
    pub expires_ms: i64,
    pub date_created: i64,
    pub date_updated: i64,
    /// Increases with every change, so the store keeps the newest state whatever order
    /// concurrent writes reach it in.
    pub version: u64,
    pub attempts: Vec<Attempt>,
}

impl Verification {
    pub fn is_live(&self, now: i64) -> bool {
        self.status == Status::Pending && now < self.expires_ms
    }

    /// Ends the verification with `status` at `now`.
    pub fn finish(&mut self, status: Status, now: i64) {
        self.status = status;
        self.date_updated = now.max(self.date_updated);
        self.version += 1;
    }
}

/// What is known of one recipient of one service.
#[derive(Debug, Default)]
pub struct Recipient {
    pub account_sid: String,
    pub pending: Option<Verification>,
    /// Times of recent sends (for the send-attempts rule), oldest first.
    pub sends: VecDeque<i64>,
}

impl Recipient {
    /// Sends within the last `window_ms` at `now`.
    pub fn recent_sends(&mut self, now: i64, window_ms: i64) -> usize {
        while self.sends.front().is_some_and(|&t| now - t >= window_ms) {
            self.sends.pop_front();
        }
        self.sends.len()
    }

    /// Takes out the pending verification if it has expired, finished as `expired` (to be
    /// stored as such). Afterwards `pending`, if any, is live.
    pub fn take_expired(&mut self, now: i64) -> Option<Verification> {
        if self.pending.as_ref().is_some_and(|v| !v.is_live(now)) {
            self.pending.take().map(|mut v| {
                let at = v.expires_ms;
                v.finish(Status::Expired, at);
                v
            })
        } else {
            None
        }
    }
}

type Key = (String, String);

const SHARDS: usize = 64;

/// Every recipient, sharded by (service SID, recipient); and pending verification SIDs → key.
/// Recipients are boxed: a table keeps its capacity after a burst, and an empty slot then costs
/// a pointer, not a whole `Recipient` (see `shrink`).
pub struct Recipients {
    shards: Vec<Mutex<HashMap<Key, Box<Recipient>>>>,
    by_sid: Mutex<HashMap<String, Key>>,
    hasher: RandomState,
}

impl Default for Recipients {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            by_sid: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }
}

/// A locked recipient shard, with the key of the recipient asked for.
pub struct Locked<'a> {
    guard: MutexGuard<'a, HashMap<Key, Box<Recipient>>>,
    key: Key,
    index: &'a Mutex<HashMap<String, Key>>,
}

impl Locked<'_> {
    pub fn get(&mut self) -> Option<&mut Recipient> {
        self.guard.get_mut(&self.key).map(|r| &mut **r)
    }

    pub fn get_or_insert(&mut self, account: &str) -> &mut Recipient {
        self.guard.entry(self.key.clone()).or_insert_with(|| {
            Box::new(Recipient {
                account_sid: account.to_owned(),
                ..Recipient::default()
            })
        })
    }

    /// Records that `sid` is the pending verification of this recipient.
    pub fn index(&self, sid: &str) {
        self.index.lock().insert(sid.to_owned(), self.key.clone());
    }

    pub fn unindex(&self, sid: &str) {
        self.index.lock().remove(sid);
    }
}

impl Recipients {
    fn shard(&self, key: &Key) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    pub fn lock(&self, service_sid: &str, to: &str) -> Locked<'_> {
        let key = (service_sid.to_owned(), to.to_owned());
        let guard = self.shards[self.shard(&key)].lock();
        Locked {
            guard,
            key,
            index: &self.by_sid,
        }
    }

    /// The (service, recipient) of a pending verification SID.
    pub fn find_sid(&self, sid: &str) -> Option<(String, String)> {
        self.by_sid.lock().get(sid).cloned()
    }

    /// Restores a pending verification and its sends at start-up.
    pub fn restore_pending(&self, v: Verification) {
        let mut locked = self.lock(&v.service_sid, &v.to);
        locked.index(&v.sid);
        let account = v.account_sid.clone();
        locked.get_or_insert(&account).pending = Some(v);
    }

    pub fn restore_send(&self, account: &str, service_sid: &str, to: &str, at: i64) {
        let mut locked = self.lock(service_sid, to);
        let r = locked.get_or_insert(account);
        r.sends.push_back(at);
    }

    /// Takes out expired verifications and forgets recipients with nothing left in memory.
    /// `now_of` gives an account's current time. Returns the verifications that expired.
    pub fn sweep(&self, now_of: impl Fn(&str) -> i64, send_window_ms: i64) -> Vec<Verification> {
        let mut expired = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock();
            map.retain(|_, r| {
                let now = now_of(&r.account_sid);
                if let Some(v) = r.take_expired(now) {
                    expired.push(v);
                }
                r.recent_sends(now, send_window_ms);
                r.pending.is_some() || !r.sends.is_empty()
            });
            shrink(&mut map);
        }
        let mut index = self.by_sid.lock();
        for v in &expired {
            index.remove(&v.sid);
        }
        shrink(&mut index);
        expired
    }

    /// Forgets everything of the given account.
    pub fn clear_account(&self, account: &str) {
        for shard in &self.shards {
            shard.lock().retain(|_, r| r.account_sid != account);
        }
        // The index holds only SIDs of pending verifications; drop the ones no longer pending.
        let live: std::collections::HashSet<String> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .values()
                    .filter_map(|r| r.pending.as_ref().map(|v| v.sid.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        self.by_sid.lock().retain(|sid, _| live.contains(sid));
    }

    /// Forgets every recipient of a deleted service.
    pub fn clear_service(&self, service_sid: &str) {
        let mut gone = Vec::new();
        for shard in &self.shards {
            shard.lock().retain(|(s, _), r| {
                if s == service_sid {
                    if let Some(v) = &r.pending {
                        gone.push(v.sid.clone());
                    }
                    false
                } else {
                    true
                }
            });
        }
        let mut index = self.by_sid.lock();
        for sid in gone {
            index.remove(&sid);
        }
    }

    /// How many recipients are held.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// A verification start that passed every check: it re-sends the pending verification of the
/// recipient, or makes a new one. The same rule on both backends.
pub struct Start {
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    pub channel: String,
    pub code_length: u32,
    pub custom_code: Option<String>,
    pub amount: Option<String>,
    pub payee: Option<String>,
    pub code_ttl_ms: i64,
}

impl Start {
    /// Applies the start to the recipient's live pending verification (if any) at `now`.
    /// Returns the verification as it now is, the send attempt, and whether it is new.
    pub fn apply(
        self,
        pending: &mut Option<Verification>,
        now: i64,
    ) -> (Verification, Attempt, bool) {
        let attempt = Attempt {
            sid: crate::twilio::sid::generate(crate::twilio::sid::ATTEMPT),
            channel: self.channel.clone(),
            at_ms: now,
        };
        let is_new = pending.is_none();
        let v = pending.get_or_insert_with(|| Verification {
            sid: crate::twilio::sid::generate(crate::twilio::sid::VERIFICATION),
            service_sid: self.service_sid,
            account_sid: self.account_sid,
            to: self.to,
            channel: self.channel.clone(),
            status: Status::Pending,
            code: random_code(self.code_length),
            amount: None,
            payee: None,
            checks_failed: 0,
            expires_ms: now + self.code_ttl_ms,
            date_created: now,
            date_updated: now,
            version: 0,
            attempts: Vec::new(),
        });
        v.attempts.push(attempt.clone());
        v.channel = self.channel;
        v.date_updated = now.max(v.date_updated);
        v.version += 1;
        if let Some(code) = self.custom_code {
            v.code = code;
        }
        if self.amount.is_some() {
            v.amount = self.amount;
        }
        if self.payee.is_some() {
            v.payee = self.payee;
        }
        (v.clone(), attempt, is_new)
    }
}

/// A random numeric code of `len` digits.
pub fn random_code(len: u32) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// Gives back a table's memory once most of it is empty (hash tables keep their capacity when
/// entries are removed): after a burst of a million recipients or values has passed, their
/// slots would otherwise stay resident.
pub fn shrink<K: std::hash::Hash + Eq, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > 64 && map.capacity() > 4 * map.len() {
        map.shrink_to_fit();
    }
}
