//! The core against brute-force models with a manual clock.
//!
//! Rate limits: random Max/Interval, arrivals on several keys and buckets, bucket updates,
//! creations and deletions, prunes, and starts decided but never published (a failed batch).
//! The admission logs are kept the way both engines keep them: `limits::admit` decides, and
//! only a published decision appends its admissions.
//!
//! The model keeps, per bucket, every admission recorded in it, and marks an admission dead when
//! the bucket's Interval changes after the admission had already left the old window. It answers
//! Retry-After by stepping the clock one millisecond at a time.

use std::collections::{HashMap, VecDeque};

use super::limits::{self, LimitCheck, Refusal};
use super::verification::{self, *};
use super::window::{self, Rule};
use proptest::prelude::*;

/// The admission logs of every (rate limit, value), as an engine's cache holds them.
#[derive(Default)]
struct Logs(HashMap<(i64, String), VecDeque<i64>>);

impl Logs {
    /// Decides with the core; records the admissions only if `publish`.
    fn admit(&mut self, checks: &[LimitCheck<'_>], now: i64, publish: bool) -> Result<(), Refusal> {
        let with_logs: Vec<_> = checks
            .iter()
            .map(|c| (*c, self.0.get(&(c.rate_limit_id, c.value.to_owned()))))
            .collect();
        let admissions = limits::admit(&with_logs, now)?;
        if publish {
            for a in admissions {
                self.0
                    .entry((a.rate_limit_id, a.value.to_string()))
                    .or_default()
                    .push_back(a.at_ms);
            }
        }
        Ok(())
    }

    fn prune(&mut self, rules_of: impl Fn(i64) -> Vec<Rule>, now: i64) {
        self.0.retain(|(id, _), log| {
            window::prune(log, &rules_of(*id), now);
            !log.is_empty()
        });
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(i64),
    Admit(Vec<(usize, u8)>),
    DecideUnpublished(Vec<(usize, u8)>),
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
        1 => keys.prop_map(Op::DecideUnpublished),
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
    fn rate_limits_agree_with_brute_force_model(
        initial in proptest::collection::vec((0..RATE_LIMITS, 1u32..5, 1i64..1500), 1..6),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let mut logs = Logs::default();
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
                Op::Admit(ref keys) | Op::DecideUnpublished(ref keys) => {
                    let keys = dedup_keys(keys);
                    let rules: Vec<Vec<Rule>> = keys.iter().map(|(rl, _)| w.rules(*rl)).collect();
                    let checks: Vec<LimitCheck> = keys.iter().zip(&rules).map(|((rl, v), rules)| LimitCheck {
                        rate_limit_id: *rl as i64,
                        unique_name: names[*rl],
                        value: values[*v as usize],
                        rules,
                    }).collect();
                    let expected = w.model_admits(&keys, w.now);
                    let publish = !matches!(op, Op::DecideUnpublished(_));
                    match logs.admit(&checks, w.now, publish) {
                        Ok(()) => {
                            prop_assert!(expected, "the core admitted what the model refuses at {}", w.now);
                            if publish {
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
                        Err(Refusal { retry_after_ms, .. }) => {
                            prop_assert!(!expected, "the core refused what the model admits at {}", w.now);
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
                    logs.prune(|id| rules[id as usize].clone(), now);
                }
            }
        }
    }

    #[test]
    fn pruning_after_every_window_passed_forgets_every_value(
        n in 1usize..200, interval in 1i64..5000,
    ) {
        let mut logs = Logs::default();
        let rules = [Rule { max: 3, interval_ms: interval, live_since_ms: 0 }];
        for i in 0..n {
            let v = format!("value-{i}");
            let d = logs.admit(&[LimitCheck { rate_limit_id: 1, unique_name: "k", value: &v, rules: &rules }], 10, true);
            prop_assert!(d.is_ok());
        }
        prop_assert_eq!(logs.0.len(), n);
        logs.prune(|_| rules.to_vec(), 9 + interval);
        prop_assert_eq!(logs.0.len(), n);
        logs.prune(|_| rules.to_vec(), 10 + interval);
        prop_assert_eq!(logs.0.len(), 0);
    }
}

/// One recipient's state as both engines keep it: the pending verification and the send times.
#[derive(Default, Debug)]
struct Recipient {
    pending: Option<Verification>,
    sends: Vec<i64>,
    /// SIDs of its verifications that have ended (a path may still name them).
    ended: Vec<String>,
}

/// The model: what Twilio's documented behaviour says, written as plainly as possible.
#[derive(Default, Debug, Clone)]
struct ModelVerification {
    sid: String,
    code: String,
    fails: u32,
    expires: i64,
}

#[derive(Debug, Clone)]
enum LifeOp {
    Advance(i64),
    Start(usize, Option<u16>),
    Check {
        who: usize,
        right: bool,
        by_sid: bool,
    },
    CheckEnded(usize),
    Update(usize, bool),
}

fn life_op() -> impl Strategy<Value = LifeOp> {
    prop_oneof![
        2 => (0i64..400).prop_map(LifeOp::Advance),
        4 => (0usize..3, proptest::option::weighted(0.2, 1000u16..9999)).prop_map(|(w, c)| LifeOp::Start(w, c)),
        4 => (0usize..3, any::<bool>(), any::<bool>()).prop_map(|(who, right, by_sid)| LifeOp::Check { who, right, by_sid }),
        1 => (0usize..3).prop_map(LifeOp::CheckEnded),
        1 => (0usize..3, any::<bool>()).prop_map(|(w, a)| LifeOp::Update(w, a)),
    ]
}

/// Publishes a decided change into the recipient's state, as an engine does after commit.
fn publish(r: &mut Recipient, v: &Verification) {
    if v.status == Status::Pending {
        r.pending = Some(v.clone());
    } else {
        r.ended.push(v.sid.clone());
        r.pending = None;
    }
}

proptest! {
    /// Pruning a recipient's sends at `now` changes no count of the send-attempts rule at `now`
    /// or later, and keeps nothing that no such count includes.
    #[test]
    fn pruned_sends_count_the_same_now_and_later(
        mut sends in proptest::collection::vec(0i64..2_000, 0..30),
        window in 1i64..1_000, now in 0i64..3_000, later in 0i64..1_000,
    ) {
        sends.sort_unstable();
        let policy = Policy { send_attempts_limit: 1, send_window_ms: window, check_attempts_limit: 0, code_ttl_ms: 1 };
        let mut pruned: VecDeque<i64> = sends.iter().copied().collect();
        verification::prune_sends(&mut pruned, window, now);
        for at in [now, now + later] {
            prop_assert_eq!(
                sends_in_window(pruned.iter().copied(), &policy, at),
                sends_in_window(sends.iter().copied(), &policy, at)
            );
        }
        prop_assert!(pruned.iter().all(|&t| now - t < window));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn verification_lifecycle_agrees_with_model(
        send_limit in 0u32..4, send_window in 1i64..1500,
        check_limit in 0u32..4, ttl in 1i64..1500,
        ops in proptest::collection::vec(life_op(), 1..120),
    ) {
        let policy = Policy {
            send_attempts_limit: send_limit,
            send_window_ms: send_window,
            check_attempts_limit: check_limit,
            code_ttl_ms: ttl,
        };
        let mut now = 1_000_000i64;
        let mut state: Vec<Recipient> = (0..3).map(|_| Recipient::default()).collect();
        let mut model: Vec<(Option<ModelVerification>, Vec<i64>)> = vec![(None, Vec::new()); 3];
        let mut serial = 0u32;
        for op in ops {
            match op {
                LifeOp::Advance(ms) => now += ms,
                LifeOp::Start(who, custom) => {
                    serial += 1;
                    let fresh = Fresh {
                        verification_sid: format!("VE{serial}"),
                        attempt_sid: format!("VL{serial}"),
                        code: format!("{:06}", serial),
                    };
                    let request = StartRequest {
                        service_sid: "VA1".into(), account_sid: "AC1".into(),
                        to: format!("+1555000000{who}"), channel: "sms".into(),
                        custom_code: custom.map(|c| c.to_string()), amount: None, payee: None,
                    };
                    let r = &mut state[who];
                    let got = verification::start(request, r.pending.as_ref(), r.sends.iter().copied(), &[], &policy, fresh.clone(), now);
                    let (m, sends) = &mut model[who];
                    let recent = sends.iter().filter(|&&t| now - t < send_window).count();
                    if send_limit > 0 && recent >= send_limit as usize {
                        prop_assert_eq!(got, Started::TooManySends);
                        continue;
                    }
                    let Started::Admitted(a) = got else { return Err(TestCaseError::fail("refused an unlimited start")); };
                    sends.push(now);
                    let live = m.as_ref().is_some_and(|m| now < m.expires);
                    prop_assert_eq!(a.is_new, !live);
                    prop_assert_eq!(a.expired.is_some(), m.is_some() && !live);
                    if let Some(e) = &a.expired {
                        prop_assert_eq!(e.status, Status::Expired);
                        prop_assert_eq!(Some(&e.sid), m.as_ref().map(|m| &m.sid));
                    }
                    if !live {
                        *m = Some(ModelVerification { sid: fresh.verification_sid.clone(), code: fresh.code.clone(), fails: 0, expires: now + ttl });
                    }
                    let mm = m.as_mut().expect("set above");
                    if let Some(c) = custom { mm.code = c.to_string(); }
                    prop_assert_eq!(&a.verification.sid, &mm.sid);
                    prop_assert_eq!(&a.verification.code, &mm.code);
                    prop_assert_eq!(a.verification.expires_ms, mm.expires);
                    prop_assert_eq!(a.verification.attempts.last(), Some(&a.attempt));
                    if let Some(e) = &a.expired { publish(r, e); }
                    r.sends.push(a.attempt.at_ms);
                    publish(r, &a.verification);
                }
                LifeOp::Check { who, right, by_sid } => {
                    let r = &mut state[who];
                    let (m, _) = &mut model[who];
                    let sid = by_sid.then(|| r.pending.as_ref().map(|v| v.sid.clone())).flatten();
                    let resolved = verification::resolve(r.pending.as_ref(), sid.as_deref(), now);
                    match m.clone() {
                        None => prop_assert_eq!(resolved, Resolved::Missing),
                        Some(mm) if now >= mm.expires => {
                            let Resolved::Expired(e) = resolved else { return Err(TestCaseError::fail("an expired verification was not expired")); };
                            prop_assert_eq!(e.date_updated, mm.expires);
                            publish(r, &e);
                            *m = None;
                        }
                        Some(mm) => {
                            let Resolved::Live(v) = resolved else { return Err(TestCaseError::fail("a live verification was not found")); };
                            let code = if right { mm.code.clone() } else { format!("x{}", mm.code) };
                            match verification::check(&v, &code, None, &policy, now) {
                                Checked::MaxAttempts(v) => {
                                    prop_assert!(check_limit > 0 && mm.fails >= check_limit);
                                    prop_assert_eq!(v.status, Status::MaxAttemptsReached);
                                    publish(r, &v);
                                    *m = None;
                                }
                                Checked::Done(v) => {
                                    prop_assert!(check_limit == 0 || mm.fails < check_limit);
                                    if right {
                                        prop_assert_eq!(v.status, Status::Approved);
                                        *m = None;
                                    } else {
                                        prop_assert_eq!(v.status, Status::Pending);
                                        prop_assert_eq!(v.checks_failed, mm.fails + 1);
                                        m.as_mut().expect("live").fails += 1;
                                    }
                                    publish(r, &v);
                                }
                                Checked::ToMismatch => return Err(TestCaseError::fail("no To was given")),
                            }
                        }
                    }
                }
                LifeOp::CheckEnded(who) => {
                    // A SID of an ended verification names nothing, whatever else is pending.
                    let r = &state[who];
                    if let Some(sid) = r.ended.last() {
                        prop_assert_eq!(verification::resolve(r.pending.as_ref(), Some(sid), now), Resolved::Missing);
                    }
                }
                LifeOp::Update(who, approve) => {
                    let r = &mut state[who];
                    let (m, _) = &mut model[who];
                    match verification::resolve(r.pending.as_ref(), None, now) {
                        Resolved::Live(v) => {
                            prop_assert!(m.as_ref().is_some_and(|m| now < m.expires));
                            let status = if approve { Status::Approved } else { Status::Canceled };
                            let v = verification::update(&v, status, now);
                            prop_assert_eq!(v.status, status);
                            publish(r, &v);
                            *m = None;
                        }
                        Resolved::Expired(e) => {
                            prop_assert!(m.as_ref().is_some_and(|m| now >= m.expires));
                            publish(r, &e);
                            *m = None;
                        }
                        Resolved::Missing => prop_assert!(m.is_none()),
                    }
                }
            }
        }
    }
}

#[test]
fn a_check_with_another_recipients_to_changes_nothing() {
    let policy = Policy {
        send_attempts_limit: 5,
        send_window_ms: 600_000,
        check_attempts_limit: 5,
        code_ttl_ms: 600_000,
    };
    let Started::Admitted(a) = verification::start(
        StartRequest {
            service_sid: "VA1".into(),
            account_sid: "AC1".into(),
            to: "+15550000001".into(),
            channel: "sms".into(),
            custom_code: None,
            amount: None,
            payee: None,
        },
        None,
        [],
        &[],
        &policy,
        Fresh {
            verification_sid: "VE1".into(),
            attempt_sid: "VL1".into(),
            code: "123456".into(),
        },
        0,
    ) else {
        panic!("admitted");
    };
    assert_eq!(
        verification::check(&a.verification, "123456", Some("+15550000002"), &policy, 1),
        Checked::ToMismatch
    );
}

/// Two rate limits' rules (max, interval), their admission logs, send times, the send limit,
/// `now`, and times to add.
type RefusalCase = (
    Vec<Vec<(u32, i64)>>,
    Vec<Vec<i64>>,
    Vec<i64>,
    u32,
    i64,
    Vec<i64>,
);

fn refusal_case() -> impl Strategy<Value = RefusalCase> {
    (
        prop::collection::vec(prop::collection::vec((1u32..4, 1i64..60), 0..3), 2),
        prop::collection::vec(prop::collection::vec(0i64..100, 0..8), 2),
        prop::collection::vec(0i64..100, 0..6),
        0u32..4,
        0i64..120,
        prop::collection::vec(0i64..100, 1..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `refusal` answers exactly what `start` answers when `start` refuses, and `None` when it
    /// admits; and a refusal stays a refusal when more admissions and sends are added (what the
    /// SQLite engine relies on to refuse against committed state without waiting for the writer).
    #[test]
    fn refusal_is_starts_refusal_and_is_monotonic(case in refusal_case()) {
        let (rules, logs, sends, send_limit, now, extra) = case;
        let rules: Vec<Vec<Rule>> = rules
            .iter()
            .map(|r| r.iter().map(|&(max, interval_ms)| Rule { max, interval_ms, live_since_ms: 0 }).collect())
            .collect();
        let mut logs: Vec<VecDeque<i64>> = logs
            .into_iter()
            .map(|mut l| { l.sort_unstable(); l.into_iter().filter(|t| *t <= now).collect() })
            .collect();
        let names = ["a", "b"];
        let policy = Policy {
            send_attempts_limit: send_limit,
            send_window_ms: 50,
            check_attempts_limit: 5,
            code_ttl_ms: 600,
        };
        let decide = |logs: &[VecDeque<i64>], sends: &[i64]| {
            let checks: Vec<(LimitCheck<'_>, Option<&VecDeque<i64>>)> = (0..2)
                .map(|i| (LimitCheck { rate_limit_id: i as i64, unique_name: names[i], value: "v", rules: &rules[i] }, Some(&logs[i])))
                .collect();
            let request = StartRequest {
                service_sid: "VA".into(),
                account_sid: "AC".into(),
                to: "+15550000000".into(),
                channel: "sms".into(),
                custom_code: None,
                amount: None,
                payee: None,
            };
            let fresh = Fresh { verification_sid: "VE".into(), attempt_sid: "VL".into(), code: "123456".into() };
            let started = verification::start(request, None, sends.iter().copied(), &checks, &policy, fresh, now);
            (verification::refusal(sends.iter().copied(), &checks, &policy, now), started)
        };
        let (refused, started) = decide(&logs, &sends);
        match &started {
            Started::Admitted(_) => prop_assert_eq!(&refused, &None),
            other => prop_assert_eq!(refused.as_ref(), Some(other)),
        }
        if refused.is_some() {
            // More admissions (at or before now) and more sends: still refused.
            for t in &extra {
                let t = (*t).min(now);
                for l in logs.iter_mut() {
                    let at = l.partition_point(|x| *x <= t);
                    l.insert(at, t);
                }
            }
            let mut more_sends = sends.clone();
            more_sends.extend(extra.iter().map(|t| (*t).min(now)));
            let (still, _) = decide(&logs, &more_sends);
            prop_assert!(still.is_some(), "a refusal turned into an admission");
        }
    }
}
