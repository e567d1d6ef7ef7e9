//! The replay's logs (admission times per (rate limit, value), send times per recipient):
//! the same sorted times as the server's `VecDeque<i64>`, held as 32-bit millisecond offsets
//! from a base, in a ring of them. Half the bytes a time: a day of traffic keeps every
//! admission of its day-long buckets live, so the times are most of the replay's memory, and
//! of the cache lines a decision waits for. The rules read and change it through
//! `core::window::Log`, as they do the server's.
//!
//! Every time a log holds lies within 2^32 ms (49.7 days) of its newest: the replay's
//! configuration bounds every window by a day (bucket Interval ≤ 86,400 s, like the server's;
//! send window ≤ 86,400 s), so anything older is beyond every window and is dropped when the
//! newest moves that far on (`push`).

use crate::core::window::Log;

/// Sorted times: `base + ring[(head + i) % capacity]`, oldest first. 32 bytes, so a table
/// slot with its key and the log's header is one 64-byte line (`super::table`).
#[derive(Debug, Default, Clone)]
pub struct CompactLog {
    base: i64,
    /// Capacity 0 or a power of two.
    ring: Box<[u32]>,
    head: u32,
    len: u32,
}

impl CompactLog {
    pub fn with(t: i64) -> Self {
        let mut log = Self::default();
        log.push(t);
        log
    }

    /// Where the `i`-th oldest time is (an empty ring has none: index 0, out of its bounds).
    fn slot(&self, i: usize) -> usize {
        (self.head as usize + i) & self.ring.len().saturating_sub(1)
    }

    /// Where the `i`-th oldest time is held (for a prefetch); `i < len`.
    pub fn addr(&self, i: usize) -> *const u32 {
        self.ring.as_ptr().wrapping_add(self.slot(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        self.iter_offsets().map(|o| self.base + i64::from(o))
    }

    fn iter_offsets(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len()).map(|i| self.ring[self.slot(i)])
    }

    /// Room for one more, the times kept in order from slot 0.
    fn grow(&mut self) {
        let capacity = (self.ring.len() * 2).max(4);
        let mut ring = Vec::with_capacity(capacity);
        ring.extend(self.iter_offsets());
        ring.resize(capacity, 0);
        self.ring = ring.into_boxed_slice();
        self.head = 0;
    }

    /// Moves the base to the oldest time, after dropping the times more than 2^32 - 1 ms
    /// older than `t` (see the module docs).
    fn rebase(&mut self, t: i64) {
        let mut n = 0;
        while n < self.len() && t - self.at(n) > i64::from(u32::MAX) {
            n += 1;
        }
        self.drop_oldest(n);
        let Some(oldest) = (!self.is_empty()).then(|| self.at(0)) else {
            self.base = t;
            return;
        };
        let shift = oldest - self.base;
        for i in 0..self.len() {
            let s = self.slot(i);
            // Within u32: oldest <= every time, and they were offsets from a lower base.
            self.ring[s] = (i64::from(self.ring[s]) - shift) as u32;
        }
        self.base = oldest;
    }
}

impl Log for CompactLog {
    fn len(&self) -> usize {
        self.len as usize
    }

    fn at(&self, i: usize) -> i64 {
        self.base + i64::from(self.ring[self.slot(i)])
    }

    fn push(&mut self, t: i64) {
        if self.is_empty() {
            self.base = t;
            self.head = 0;
        }
        // `window::record` appends in order; anything else keeps the log sorted the same way.
        let t = self.newest().map_or(t, |last| last.max(t));
        if t - self.base > i64::from(u32::MAX) {
            self.rebase(t);
        }
        if self.len() == self.ring.len() {
            self.grow();
        }
        let s = self.slot(self.len());
        self.ring[s] = (t - self.base) as u32;
        self.len += 1;
    }

    fn drop_oldest(&mut self, n: usize) {
        let n = n.min(self.len());
        if n == 0 {
            return;
        }
        self.head = self.slot(n) as u32;
        self.len -= n as u32;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;
    use crate::core::window::{self, Rule};

    #[test]
    fn a_log_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<CompactLog>(), 32);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Record(i64),
        Prune(i64),
        DropOldest(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Steps from milliseconds to past the 32-bit range, and back (out-of-order times).
            4 => prop_oneof![0i64..2_000, 0i64..10_000_000, 4_000_000_000i64..9_000_000_000]
                .prop_map(Op::Record),
            1 => (-5_000i64..5_000).prop_map(Op::Record),
            1 => (0i64..5_000_000_000).prop_map(Op::Prune),
            1 => (0usize..6).prop_map(Op::DropOldest),
        ]
    }

    proptest! {
        /// The compact log holds what the server's `VecDeque<i64>` holds after the same
        /// records, prunes and drops (times within 2^32 ms of the newest: see the module docs),
        /// and the rules read the same from both.
        #[test]
        fn the_compact_log_is_the_servers_log(ops in proptest::collection::vec(op(), 0..200)) {
            let rules = [
                Rule { max: 3, interval_ms: 1_000, live_since_ms: i64::MIN },
                Rule { max: 7, interval_ms: 86_400_000, live_since_ms: i64::MIN },
            ];
            let mut compact = CompactLog::default();
            let mut plain: VecDeque<i64> = VecDeque::new();
            let mut now = 1_796_040_000_000i64;
            for op in ops {
                match op {
                    Op::Record(step) => {
                        now += step;
                        window::record(&mut compact, now);
                        window::record(&mut plain, now);
                        // What the compact log forgets: beyond 2^32 - 1 ms of the newest.
                        let newest = *plain.back().unwrap();
                        while plain.front().is_some_and(|&t| newest - t > i64::from(u32::MAX)) {
                            plain.pop_front();
                        }
                    }
                    Op::Prune(back) => {
                        window::prune(&mut compact, &rules, now - back);
                        window::prune(&mut plain, &rules, now - back);
                    }
                    Op::DropOldest(n) => {
                        let n = n.min(plain.len());
                        compact.drop_oldest(n);
                        plain.drain(..n);
                    }
                }
                prop_assert_eq!(compact.iter().collect::<Vec<_>>(), plain.iter().copied().collect::<Vec<_>>());
                for rule in &rules {
                    for at in [now - 2_000, now, now + 500, now + 86_400_000] {
                        prop_assert_eq!(window::wait_ms(&compact, rule, at), window::wait_ms(&plain, rule, at));
                        prop_assert_eq!(window::count(&compact, rule, at), window::count(&plain, rule, at));
                    }
                }
            }
        }
    }
}
