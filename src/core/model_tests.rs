//! The limiter against a brute-force model with a manual clock: random Max/Interval, arrivals
//! on several keys and buckets, bucket updates, creations and deletions, sweeps and undos.
//!
//! The model keeps, per bucket, every admission recorded in it, and marks an admission dead when
//! the bucket's Interval changes after the admission had already left the old window. It answers
//! Retry-After by stepping the clock one millisecond at a time.

use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Advance(i64),
    Admit(Vec<(usize, u8)>),
    AdmitThenUndo(Vec<(usize, u8)>),
    SetMax(usize, u32),
    SetInterval(usize, i64),
    AddBucket(usize, u32, i64),
    DeleteBucket(usize),
    Sweep,
}

const RATE_LIMITS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    let keys = proptest::collection::vec((0..RATE_LIMITS, 0u8..3), 1..=3);
    prop_oneof![
        3 => (0i64..400).prop_map(Op::Advance),
        6 => keys.clone().prop_map(Op::Admit),
        1 => keys.prop_map(Op::AdmitThenUndo),
        1 => (0usize..16, 1u32..5).prop_map(|(b, m)| Op::SetMax(b, m)),
        1 => (0usize..16, 1i64..1500).prop_map(|(b, i)| Op::SetInterval(b, i)),
        1 => (0..RATE_LIMITS, 1u32..5, 1i64..1500).prop_map(|(r, m, i)| Op::AddBucket(r, m, i)),
        1 => (0usize..16).prop_map(Op::DeleteBucket),
        1 => Just(Op::Sweep),
    ]
}

struct ModelBucket {
    rate_limit: usize,
    max: u32,
    interval: i64,
    /// (value, time, dead)
    admissions: Vec<(u8, i64, bool)>,
    /// The limiter's view of the same bucket.
    rule: Rule,
}

impl ModelBucket {
    fn count(&self, value: u8, now: i64) -> usize {
        self.admissions
            .iter()
            .filter(|(v, t, dead)| *v == value && !dead && now - t < self.interval)
            .count()
    }
}

struct World {
    buckets: Vec<Option<ModelBucket>>,
    /// Every admission recorded per rate limit (only while it had a bucket), for new buckets:
    /// a bucket counts its rate limit's admissions from the millisecond it was created on.
    history: Vec<Vec<(u8, i64)>>,
    now: i64,
}

impl World {
    fn rules(&self, rl: usize) -> Vec<Rule> {
        self.buckets
            .iter()
            .flatten()
            .filter(|b| b.rate_limit == rl)
            .map(|b| b.rule)
            .collect()
    }

    fn model_admits(&self, keys: &[(usize, u8)], at: i64) -> bool {
        keys.iter().all(|(rl, v)| {
            self.buckets
                .iter()
                .flatten()
                .filter(|b| b.rate_limit == *rl)
                .all(|b| b.count(*v, at) < b.max as usize)
        })
    }

    fn nth_bucket(&mut self, i: usize) -> Option<&mut ModelBucket> {
        let live: Vec<usize> = (0..self.buckets.len())
            .filter(|&j| self.buckets[j].is_some())
            .collect();
        if live.is_empty() {
            return None;
        }
        let j = live[i % live.len()];
        self.buckets[j].as_mut()
    }
}

fn dedup_keys(keys: &[(usize, u8)]) -> Vec<(usize, u8)> {
    let mut seen = std::collections::HashSet::new();
    keys.iter()
        .copied()
        .filter(|(rl, _)| seen.insert(*rl))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn limiter_agrees_with_brute_force_model(
        initial in proptest::collection::vec((0..RATE_LIMITS, 1u32..5, 1i64..1500), 1..6),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let limiter = Limiter::default();
        let mut w = World { buckets: Vec::new(), history: vec![Vec::new(); RATE_LIMITS], now: 1_000_000 };
        for (rl, max, interval) in initial {
            w.buckets.push(Some(ModelBucket {
                rate_limit: rl, max, interval, admissions: Vec::new(),
                rule: Rule { max, interval_ms: interval, live_since_ms: w.now },
            }));
        }
        let names = ["a", "b", "c"];
        let values = ["v0", "v1", "v2"];
        for op in ops {
            match op {
                Op::Advance(ms) => w.now += ms,
                Op::Admit(ref keys) | Op::AdmitThenUndo(ref keys) => {
                    let keys = dedup_keys(keys);
                    let rules: Vec<Vec<Rule>> = keys.iter().map(|(rl, _)| w.rules(*rl)).collect();
                    let checks: Vec<Check> = keys.iter().zip(&rules).map(|((rl, v), rules)| Check {
                        rate_limit_id: *rl as i64,
                        unique_name: names[*rl],
                        value: values[*v as usize],
                        rules,
                    }).collect();
                    let expected = w.model_admits(&keys, w.now);
                    match limiter.admit(&checks, w.now) {
                        Decision::Admitted(res) => {
                            prop_assert!(expected, "limiter admitted what the model refuses at {}", w.now);
                            if matches!(op, Op::AdmitThenUndo(_)) {
                                limiter.undo(res);
                            } else {
                                let now = w.now;
                                for (rl, v) in &keys {
                                    if w.buckets.iter().flatten().any(|b| b.rate_limit == *rl) {
                                        w.history[*rl].push((*v, now));
                                    }
                                    for b in w.buckets.iter_mut().flatten().filter(|b| b.rate_limit == *rl) {
                                        b.admissions.push((*v, now, false));
                                    }
                                }
                            }
                        }
                        Decision::Refused { retry_after_ms, .. } => {
                            prop_assert!(!expected, "limiter refused what the model admits at {}", w.now);
                            // Brute force: the first millisecond at which the model admits.
                            let mut d = 1;
                            while !w.model_admits(&keys, w.now + d) { d += 1; prop_assert!(d < 10_000); }
                            prop_assert_eq!(retry_after_ms, d);
                        }
                    }
                }
                Op::SetMax(i, max) => {
                    if let Some(b) = w.nth_bucket(i) { b.max = max; b.rule.max = max; }
                }
                Op::SetInterval(i, interval) => {
                    let now = w.now;
                    if let Some(b) = w.nth_bucket(i) {
                        for a in &mut b.admissions {
                            if now - a.1 >= b.interval { a.2 = true; }
                        }
                        b.interval = interval;
                        b.rule.live_since_ms = b.rule.live_since_after_interval_change(now);
                        b.rule.interval_ms = interval;
                    }
                }
                Op::AddBucket(rl, max, interval) => {
                    let now = w.now;
                    let same_ms = w.history[rl].iter().filter(|(_, t)| *t >= now).map(|(v, t)| (*v, *t, false)).collect();
                    w.buckets.push(Some(ModelBucket {
                        rate_limit: rl, max, interval, admissions: same_ms,
                        rule: Rule { max, interval_ms: interval, live_since_ms: now },
                    }));
                }
                Op::DeleteBucket(i) => {
                    // A rate limit keeps at least one bucket here: with none it records nothing,
                    // which the model's history does not follow.
                    let live: Vec<usize> = (0..w.buckets.len()).filter(|&j| w.buckets[j].is_some()).collect();
                    if !live.is_empty() {
                        let j = live[i % live.len()];
                        let rl = w.buckets[j].as_ref().map(|b| b.rate_limit);
                        let siblings = w.buckets.iter().flatten().filter(|b| Some(b.rate_limit) == rl).count();
                        if siblings > 1 { w.buckets[j] = None; }
                    }
                }
                Op::Sweep => {
                    let now = w.now;
                    let rules: Vec<Vec<Rule>> = (0..RATE_LIMITS).map(|rl| w.rules(rl)).collect();
                    limiter.sweep(|id| Some((rules[id as usize].clone(), now)));
                }
            }
        }
    }

    #[test]
    fn sweeping_after_every_window_passed_forgets_every_value(
        n in 1usize..200, interval in 1i64..5000,
    ) {
        let limiter = Limiter::default();
        let rules = [Rule { max: 3, interval_ms: interval, live_since_ms: 0 }];
        for i in 0..n {
            let v = format!("value-{i}");
            let d = limiter.admit(&[Check { rate_limit_id: 1, unique_name: "k", value: &v, rules: &rules }], 10);
            prop_assert!(matches!(d, Decision::Admitted(_)));
        }
        prop_assert_eq!(limiter.tracked(), n);
        limiter.sweep(|_| Some((rules.to_vec(), 9 + interval)));
        prop_assert_eq!(limiter.tracked(), n);
        limiter.sweep(|_| Some((rules.to_vec(), 10 + interval)));
        prop_assert_eq!(limiter.tracked(), 0);
    }
}

#[test]
fn concurrent_admissions_for_one_value_admit_exactly_max() {
    let limiter = std::sync::Arc::new(Limiter::default());
    let rules = [
        Rule {
            max: 10,
            interval_ms: 60_000,
            live_since_ms: 0,
        },
        Rule {
            max: 50,
            interval_ms: 600_000,
            live_since_ms: 0,
        },
    ];
    let admitted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let limiter = &limiter;
            let admitted = &admitted;
            s.spawn(move || {
                for i in 0..100 {
                    let other = format!("other-{t}-{i}");
                    let checks = [
                        Check {
                            rate_limit_id: 1,
                            unique_name: "ip",
                            value: "10.0.0.1",
                            rules: &rules,
                        },
                        Check {
                            rate_limit_id: 2,
                            unique_name: "phone",
                            value: &other,
                            rules: &rules,
                        },
                    ];
                    if let Decision::Admitted(_) = limiter.admit(&checks, 1000 + i) {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 10);
    // All or nothing: only the 10 admitted requests left a trace under rate limit 2.
    assert_eq!(limiter.usage(2, None).len(), 10);
}
