//! What the cache has let go of: a membership filter (Bloom) of the keys of evicted entries, so
//! that a key the cache does not hold costs a database read only if it may have been evicted —
//! never for a key seen for the first time (all but about 1 in 100 of them).
//!
//! A filter answers "maybe" for every key put in (no false negatives) and for a few in a hundred
//! of the others. It cannot forget one key, so the keys are kept in generations: each generation is a
//! filter of its own and the time after which none of its keys matters any more (the latest of
//! its keys' ends); a generation is dropped once that time has passed.

/// Keys of the first generation (about 1.2 MiB of bits); each next one holds twice as many, up
/// to `GENERATION << MAX_LEVEL`.
const GENERATION: usize = 1 << 20;
const MAX_LEVEL: usize = 4;
/// Bits and probes per key: about 0.8 % of absent keys answer "maybe" to a full generation, so
/// under 5 % to the six generations of the 40 million keys of a 10-minute load test at full
/// speed (a false "maybe" costs one indexed read).
const BITS_PER_KEY: usize = 10;
const HASHES: u64 = 7;

struct Generation {
    bits: Vec<u64>,
    keys: usize,
    capacity: usize,
    /// Real time (ms) after which no key of this generation matters.
    until_ms: i64,
}

impl Generation {
    fn new(level: usize) -> Self {
        let capacity = GENERATION << level.min(MAX_LEVEL);
        Self {
            bits: vec![0; (capacity * BITS_PER_KEY).div_ceil(64)],
            keys: 0,
            capacity,
            until_ms: i64::MIN,
        }
    }

    /// The `i`th bit a key sets (word, mask): double hashing of its 64-bit hash.
    fn probe(&self, hash: u64, i: u64) -> (usize, u64) {
        let m = (self.bits.len() * 64) as u64;
        let bit = hash.wrapping_add(i.wrapping_mul(hash.rotate_left(32) | 1)) % m;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn insert(&mut self, hash: u64) {
        for i in 0..HASHES {
            let (word, mask) = self.probe(hash, i);
            self.bits[word] |= mask;
        }
        self.keys += 1;
    }

    fn may_hold(&self, hash: u64) -> bool {
        (0..HASHES).all(|i| {
            let (word, mask) = self.probe(hash, i);
            self.bits[word] & mask != 0
        })
    }
}

#[derive(Default)]
pub struct Evicted {
    generations: Vec<Generation>,
}

impl Evicted {
    /// Records an evicted key (its hash), which matters until `until_ms` (real time).
    pub fn insert(&mut self, hash: u64, until_ms: i64) {
        if self.generations.last().is_none_or(|g| g.keys >= g.capacity) {
            let level = self.generations.len();
            self.generations.push(Generation::new(level));
        }
        let g = self.generations.last_mut().expect("pushed above");
        g.insert(hash);
        g.until_ms = g.until_ms.max(until_ms);
    }

    /// Whether the key may have been evicted (false: it certainly was not, or no longer
    /// matters).
    pub fn may_hold(&self, hash: u64) -> bool {
        self.generations.iter().any(|g| g.may_hold(hash))
    }

    /// Whether nothing evicted still matters (the common case: the cache never went over its
    /// budget).
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// Drops the generations none of whose keys matters at `now_ms` (real time).
    pub fn expire(&mut self, now_ms: i64) {
        self.generations.retain(|g| g.until_ms >= now_ms);
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.generations.iter().map(|g| g.bits.len() * 8).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::hash::{BuildHasher, RandomState};

    proptest! {
        #[test]
        fn an_evicted_key_is_always_maybe(keys in proptest::collection::vec(any::<u64>(), 1..200)) {
            let mut f = Evicted::default();
            for &k in &keys {
                f.insert(k, 10);
            }
            for &k in &keys {
                prop_assert!(f.may_hold(k));
            }
            f.expire(10);
            for &k in &keys {
                prop_assert!(f.may_hold(k), "kept until its time has passed");
            }
            f.expire(11);
            prop_assert!(f.is_empty());
            prop_assert!(!keys.iter().any(|&k| f.may_hold(k)));
        }
    }

    #[test]
    fn few_absent_keys_answer_maybe() {
        let s = RandomState::new();
        let mut f = Evicted::default();
        for i in 0..GENERATION as u64 {
            f.insert(s.hash_one(("in", i)), 0);
        }
        // Past a generation's keys, a second one begins, larger.
        for i in 0..GENERATION as u64 {
            f.insert(s.hash_one(("more", i)), 0);
        }
        assert_eq!(f.generations.len(), 2);
        assert_eq!(f.generations[1].capacity, 2 * GENERATION);
        let false_maybe = (0..100_000u64)
            .filter(|i| f.may_hold(s.hash_one(("out", *i))))
            .count();
        assert!(
            false_maybe < 2_500,
            "{false_maybe} of 100,000 absent keys answered maybe"
        );
    }
}
