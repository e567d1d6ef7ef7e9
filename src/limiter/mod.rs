//! The sliding-window limiter: pure window arithmetic (`window`) and the keyed, concurrent state
//! of every (rate limit, value) admission log.
//!
//! State is sharded by key; an admission locks every shard it touches in ascending order (so two
//! requests can never deadlock), checks every bucket of every key, and then records in all of
//! them or in none: all-or-nothing and exact under any concurrency.

pub mod window;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use parking_lot::Mutex;

pub use window::Rule;

const SHARDS: usize = 64;

/// An admission log's key: the rate limit's internal id and the limited value.
type Key = (i64, Box<str>);

pub struct Limiter {
    shards: Vec<Mutex<HashMap<Key, VecDeque<i64>>>>,
    hasher: RandomState,
}

/// One rate limit of a request: the value it limits and the rules of its buckets.
pub struct Check<'a> {
    pub rate_limit_id: i64,
    pub unique_name: &'a str,
    pub value: &'a str,
    pub rules: &'a [Rule],
}

#[derive(Debug)]
pub enum Decision {
    /// Recorded in every bucket; `undo` if the request fails before it is acknowledged.
    Admitted(Reservation),
    /// Nothing recorded. `retry_after_ms`: until every refusing bucket has room again.
    Refused {
        retry_after_ms: i64,
        unique_name: String,
    },
}

/// The admissions one request recorded.
#[derive(Debug, Default)]
pub struct Reservation {
    pub entries: Vec<(i64, Box<str>, i64)>,
}

/// Live usage of one value of one rate limit.
pub struct ValueLog {
    pub value: String,
    pub log: VecDeque<i64>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Limiter {
    fn shard_of(&self, rate_limit_id: i64, value: &str) -> usize {
        (self.hasher.hash_one((rate_limit_id, value)) as usize) % SHARDS
    }

    /// Checks every bucket of every key at `now`; admits (recording `now` in all of them) only
    /// if all have room.
    pub fn admit(&self, checks: &[Check<'_>], now: i64) -> Decision {
        let checks: Vec<&Check> = checks.iter().filter(|c| !c.rules.is_empty()).collect();
        let shard_ids: Vec<usize> = checks
            .iter()
            .map(|c| self.shard_of(c.rate_limit_id, c.value))
            .collect();
        let mut order = shard_ids.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<_> = order.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let guard_index = |shard: usize| order.binary_search(&shard).unwrap_or(0);

        let mut refusal: Option<(i64, &str)> = None;
        for (c, &shard) in checks.iter().zip(&shard_ids) {
            let map = &mut guards[guard_index(shard)].1;
            let Some(log) = map.get_mut(&(c.rate_limit_id, Box::from(c.value))) else {
                if c.rules.iter().any(|r| r.max == 0) {
                    refusal = Some((i64::MAX, c.unique_name));
                }
                continue;
            };
            window::prune(log, c.rules, now);
            for rule in c.rules {
                if let Some(wait) = window::wait_ms(log, rule, now) {
                    if refusal.is_none_or(|(w, _)| wait > w) {
                        refusal = Some((wait, c.unique_name));
                    }
                }
            }
        }
        if let Some((retry_after_ms, unique_name)) = refusal {
            return Decision::Refused {
                retry_after_ms,
                unique_name: unique_name.to_owned(),
            };
        }
        let mut reservation = Reservation::default();
        for (c, &shard) in checks.iter().zip(&shard_ids) {
            let map = &mut guards[guard_index(shard)].1;
            let log = map
                .entry((c.rate_limit_id, Box::from(c.value)))
                // Most values are seen once: room for exactly one time, not the default four.
                .or_insert_with(|| VecDeque::with_capacity(1));
            window::record(log, now);
            let t = *log.back().unwrap_or(&now);
            reservation
                .entries
                .push((c.rate_limit_id, Box::from(c.value), t));
        }
        Decision::Admitted(reservation)
    }

    /// Takes back admissions that were never acknowledged.
    pub fn undo(&self, reservation: Reservation) {
        for (id, value, t) in reservation.entries {
            let shard = self.shard_of(id, &value);
            let mut map = self.shards[shard].lock();
            let key = (id, value);
            if let Some(log) = map.get_mut(&key) {
                if let Some(pos) = log.iter().rposition(|&x| x == t) {
                    log.remove(pos);
                }
                if log.is_empty() {
                    map.remove(&key);
                }
            }
        }
    }

    /// Restores one persisted admission (call in time order per key).
    pub fn restore(&self, rate_limit_id: i64, value: &str, t: i64) {
        let shard = self.shard_of(rate_limit_id, value);
        let mut map = self.shards[shard].lock();
        window::record(
            map.entry((rate_limit_id, Box::from(value)))
                .or_insert_with(|| VecDeque::with_capacity(1)),
            t,
        );
    }

    /// Drops every log of a deleted rate limit.
    pub fn forget_rate_limit(&self, rate_limit_id: i64) {
        for shard in &self.shards {
            shard.lock().retain(|(id, _), _| *id != rate_limit_id);
        }
    }

    /// Drops admissions no rule counts any more, and empty logs. `rules_of` gives a rate limit's
    /// rules and its account's current time, or `None` if the rate limit no longer exists.
    pub fn sweep(&self, mut rules_of: impl FnMut(i64) -> Option<(Vec<Rule>, i64)>) {
        let mut cache: HashMap<i64, Option<(Vec<Rule>, i64)>> = HashMap::new();
        for shard in &self.shards {
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
            crate::verification::shrink(&mut map);
        }
    }

    /// The logs of one rate limit, optionally of one value.
    pub fn usage(&self, rate_limit_id: i64, value: Option<&str>) -> Vec<ValueLog> {
        let mut out = Vec::new();
        for shard in &self.shards {
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

    /// How many (rate limit, value) logs are held.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Forgets everything (control-plane reset), for the given rate limits.
    pub fn clear(&self, rate_limit_ids: &std::collections::HashSet<i64>) {
        for shard in &self.shards {
            shard
                .lock()
                .retain(|(id, _), _| !rate_limit_ids.contains(id));
        }
    }
}

#[cfg(test)]
mod model_tests;
