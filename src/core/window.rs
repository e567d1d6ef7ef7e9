//! Pure sliding-window arithmetic over one admission log.
//!
//! A rate limit keeps, per value, one sorted log of admission times (ms): every admission for that
//! value is recorded in all buckets of the rate limit at once, so the buckets share the log and
//! differ only in their rule. A bucket counts the admissions `t` with
//! `t >= live_since` and `now - t < interval` — a true sliding window at millisecond resolution.
//!
//! `live_since` makes the counting exact across configuration changes: it is the bucket's
//! creation time, and when its Interval changes at time `u` it moves to `u - old_interval + 1`,
//! so an admission that had already left the window never comes back when the window grows.

use std::collections::VecDeque;

/// One bucket's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub max: u32,
    pub interval_ms: i64,
    pub live_since_ms: i64,
}

impl Rule {
    /// The oldest admission time this rule still counts at `now`.
    pub fn lower_bound(&self, now: i64) -> i64 {
        self.live_since_ms
            .max(now.saturating_sub(self.interval_ms) + 1)
    }

    /// `live_since` after the Interval changes at `now` (see the module docs).
    pub fn live_since_after_interval_change(&self, now: i64) -> i64 {
        self.live_since_ms.max(self.lower_bound(now))
    }
}

/// An admission log as the rules read and change it: sorted times (ms), oldest first. The
/// server keeps `VecDeque<i64>`; the replay a compact form (`crate::replay::log`). The rules
/// below are written once, for both.
pub trait Log {
    fn len(&self) -> usize;
    /// The `i`-th oldest time; `i < len()`.
    fn at(&self, i: usize) -> i64;
    /// Appends `t`, at least the newest time.
    fn push(&mut self, t: i64);
    /// Drops the `n` oldest times; `n <= len()`.
    fn drop_oldest(&mut self, n: usize);

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn newest(&self) -> Option<i64> {
        self.len().checked_sub(1).map(|i| self.at(i))
    }
}

impl Log for VecDeque<i64> {
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
    fn at(&self, i: usize) -> i64 {
        self[i]
    }
    fn push(&mut self, t: i64) {
        self.push_back(t);
    }
    fn drop_oldest(&mut self, n: usize) {
        self.drain(..n);
    }
}

/// The index of the first admission at or after `lower` (`partition_point`, searched from the
/// newest end: a short window's bound lies near it, so a long log costs a few steps).
fn first_from<L: Log + ?Sized>(log: &L, lower: i64) -> usize {
    let len = log.len();
    let mut step = 1;
    let mut hi = len;
    while step <= len && log.at(len - step) >= lower {
        hi = len - step;
        step *= 2;
    }
    // log[len - step] < lower, if it exists: the first at or after `lower` is past it.
    let mut lo = if step <= len { len - step + 1 } else { 0 };
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if log.at(mid) < lower {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Drops the times before `from`.
pub fn drop_before<L: Log + ?Sized>(log: &mut L, from: i64) {
    log.drop_oldest(first_from(log, from));
}

/// Admissions this rule counts at `now`.
pub fn count<L: Log + ?Sized>(log: &L, rule: &Rule, now: i64) -> usize {
    let lower = rule.lower_bound(now);
    log.len() - first_from(log, lower)
}

/// `None` if one more admission fits at `now`; otherwise the milliseconds until it would.
///
/// O(1): the log is sorted, so at least `max` admissions are counted exactly when the `max`-th
/// newest is; and room appears when that one leaves the window, at its time + interval (all but
/// `max - 1` counted admissions have then left). No search: the decision reads one entry.
pub fn wait_ms<L: Log + ?Sized>(log: &L, rule: &Rule, now: i64) -> Option<i64> {
    let max = rule.max as usize;
    if max == 0 {
        return Some(i64::MAX);
    }
    let t = log.at(log.len().checked_sub(max)?);
    if t < rule.lower_bound(now) {
        return None;
    }
    Some((t + rule.interval_ms - now).max(1))
}

/// Drops the admissions no rule counts at `now` or later. With no rules, everything goes.
pub fn prune<L: Log + ?Sized>(log: &mut L, rules: &[Rule], now: i64) {
    let Some(keep_from) = rules.iter().map(|r| r.lower_bound(now)).min() else {
        log.drop_oldest(log.len());
        return;
    };
    // Most logs lose nothing at a prune: one read tells.
    if log.is_empty() || log.at(0) >= keep_from {
        return;
    }
    drop_before(log, keep_from);
}

/// Appends `now`, keeping the log sorted even if the wall clock stepped back.
pub fn record<L: Log + ?Sized>(log: &mut L, now: i64) {
    let t = log.newest().map_or(now, |last| last.max(now));
    log.push(t);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ts: &[i64]) -> VecDeque<i64> {
        ts.iter().copied().collect()
    }

    #[test]
    fn the_search_from_the_newest_end_is_partition_point() {
        for len in 0..40 {
            let l: VecDeque<i64> = (0..len).map(|i| i / 3 * 10).collect();
            for lower in -5..(len / 3 * 10 + 15) {
                assert_eq!(
                    first_from(&l, lower),
                    l.partition_point(|&t| t < lower),
                    "len {len}, lower {lower}"
                );
            }
        }
    }

    /// The definition `wait_ms` answers in O(1): with `counted` admissions in the window, none
    /// if fewer than `max`; else the (counted - max)-th counted one's exit.
    fn wait_by_counting(l: &VecDeque<i64>, r: &Rule, now: i64) -> Option<i64> {
        let start = first_from(l, r.lower_bound(now));
        let counted = l.len() - start;
        let max = r.max as usize;
        if counted < max {
            return None;
        }
        if max == 0 {
            return Some(i64::MAX);
        }
        Some((l[start + (counted - max)] + r.interval_ms - now).max(1))
    }

    proptest::proptest! {
        #[test]
        fn wait_is_the_counting_definition(
            mut ts in proptest::collection::vec(0i64..5_000, 0..60),
            max in 0u32..8,
            interval_ms in 1i64..3_000,
            live_since_ms in proptest::prop_oneof![proptest::strategy::Just(i64::MIN), 0i64..4_000],
            now in 0i64..8_000,
        ) {
            ts.sort_unstable();
            let l: VecDeque<i64> = ts.into_iter().collect();
            let r = Rule { max, interval_ms, live_since_ms };
            proptest::prop_assert_eq!(wait_ms(&l, &r, now), wait_by_counting(&l, &r, now));
        }
    }

    #[test]
    fn counts_a_true_sliding_window() {
        let r = Rule {
            max: 2,
            interval_ms: 1000,
            live_since_ms: 0,
        };
        let l = log(&[100, 500]);
        assert_eq!(count(&l, &r, 1099), 2);
        assert_eq!(count(&l, &r, 1100), 1);
        assert_eq!(wait_ms(&l, &r, 600), Some(500));
        assert_eq!(wait_ms(&l, &r, 1100), None);
    }

    #[test]
    fn a_grown_interval_does_not_revive_expired_admissions() {
        let r = Rule {
            max: 1,
            interval_ms: 1000,
            live_since_ms: 0,
        };
        let l = log(&[100]);
        let grown = Rule {
            interval_ms: 10_000,
            live_since_ms: r.live_since_after_interval_change(2000),
            ..r
        };
        assert_eq!(count(&l, &grown, 2000), 0);
        let grown_early = Rule {
            interval_ms: 10_000,
            live_since_ms: r.live_since_after_interval_change(900),
            ..r
        };
        assert_eq!(count(&l, &grown_early, 5000), 1);
    }
}
