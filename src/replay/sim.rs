//! One configuration run over the traffic: the server's decision for every start, made by the
//! same pure core (`core::verification::too_many_sends`, `core::limits::longest_wait`,
//! `core::window`), with the state the server keeps (admission logs per (rate limit, value),
//! send times per recipient), pruned as the records' clock moves on.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::ops::Range;

use serde::Serialize;

use super::log::CompactLog;
use super::parse::Record;
use super::table::{Fx, Hint, Probe, Seen, Slots, hash_of, prefetch};
use crate::catalog::values::{Interval, Max};
use crate::core::limits::longest_wait;
use crate::core::verification::{prune_sends, too_many_sends};
use crate::core::window::Log;
use crate::core::{Policy, Rule, window};
use crate::seed::SeedFile;

pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// One bucket as configured.
#[derive(Debug, Clone, Serialize)]
pub struct BucketCfg {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub max: u32,
    pub interval: u32,
}

#[derive(Debug)]
struct RateLimitCfg {
    unique_name: String,
    buckets: Vec<BucketCfg>,
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct ServiceCfg {
    sid: Option<String>,
    friendly_name: String,
    /// Sorted by unique name: the order the server checks them in (its JSON object is sorted).
    rate_limits: Vec<RateLimitCfg>,
    by_name: FxMap<String, usize>,
}

/// A configuration (seed file or export) as the replay needs it.
#[derive(Debug)]
pub struct Config {
    services: Vec<ServiceCfg>,
    by_sid: FxMap<String, usize>,
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let seed: SeedFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: line {}: {e}", path.display(), e.line()))?;
        Self::from_seed(seed).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_seed(seed: SeedFile) -> Result<Self, String> {
        let mut services = Vec::new();
        let mut by_sid = FxMap::default();
        for (i, s) in seed.services.into_iter().enumerate() {
            let mut rate_limits: Vec<RateLimitCfg> = Vec::new();
            for (j, r) in s.rate_limits.into_iter().enumerate() {
                let mut buckets = Vec::new();
                for (k, b) in r.buckets.into_iter().enumerate() {
                    // The bounds the server accepts (a bucket's log then spans at most a day,
                    // which `CompactLog` relies on).
                    let key = format!("services[{i}].rate_limits[{j}].buckets[{k}]");
                    let max = Max::try_from(b.max).map_err(|e| format!("{key}.max: {e}"))?;
                    let interval = Interval::try_from(b.interval)
                        .map_err(|e| format!("{key}.interval: {e}"))?;
                    buckets.push(BucketCfg {
                        sid: b.sid,
                        max: max.get(),
                        interval: interval.get(),
                    });
                }
                if rate_limits.iter().any(|o| o.unique_name == r.unique_name) {
                    return Err(format!(
                        "services[{i}].rate_limits[{j}].unique_name {:?} appears twice",
                        r.unique_name
                    ));
                }
                rate_limits.push(RateLimitCfg {
                    unique_name: r.unique_name,
                    // Buckets that existed before the traffic began.
                    rules: buckets
                        .iter()
                        .map(|b| Rule {
                            max: b.max,
                            interval_ms: i64::from(b.interval) * 1000,
                            live_since_ms: i64::MIN,
                        })
                        .collect(),
                    buckets,
                });
            }
            rate_limits.sort_by(|a, b| a.unique_name.cmp(&b.unique_name));
            let by_name = rate_limits
                .iter()
                .enumerate()
                .map(|(k, r)| (r.unique_name.clone(), k))
                .collect();
            if let Some(sid) = &s.sid {
                by_sid.insert(sid.clone(), services.len());
            }
            by_sid
                .entry(s.friendly_name.clone())
                .or_insert(services.len());
            services.push(ServiceCfg {
                sid: s.sid,
                friendly_name: s.friendly_name,
                rate_limits,
                by_name,
            });
        }
        Ok(Self { services, by_sid })
    }

    /// The service a record names: by SID, else by friendly name, else the only one.
    fn service(&self, sid: &str) -> Option<usize> {
        self.by_sid
            .get(sid)
            .copied()
            .or((self.services.len() == 1).then_some(0))
    }
}

/// Prefetches the oldest entry of a log, which a prune reads first.
fn front_ahead(log: &CompactLog) {
    if !log.is_empty() {
        prefetch(log.addr(0));
    }
}

/// Records `now` in the log `probe` found for `key`, or in a new one where it would go.
fn record_in(table: &mut Slots<CompactLog>, probe: Probe, hash: u64, key: &[u8], now: i64) {
    match probe {
        Probe::Found(j) => {
            if let Some(log) = table.at_mut(j) {
                window::record(log, now);
            }
        }
        Probe::Vacant(j) => table.fill(j, hash, key, CompactLog::with(now)),
    }
}

/// What the server would have answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admitted,
    /// 60203.
    TooManySends,
    /// 20429, and the rate limit (index in its service) the server would name.
    Refused {
        rate_limit: usize,
    },
}

#[derive(Default)]
struct Counts {
    admitted: u64,
    refused: u64,
    refused_since: Option<i64>,
}

#[derive(Default)]
struct RateLimitStats {
    counts: Counts,
    /// Per bucket: starts refused while it was full (a start may fill several).
    buckets: Vec<Counts>,
    refused_values: Slots<u64>,
}

#[derive(Default)]
struct ServiceState {
    /// Per rate limit: value → admission log.
    logs: Vec<Slots<CompactLog>>,
    /// To → send times (admitted starts).
    sends: Slots<CompactLog>,
    stats: Vec<RateLimitStats>,
}

/// Records between two prunes.
const PRUNE_EVERY: u64 = 1 << 16;
/// Records may come this far out of time order without a prune forgetting what they count.
const PRUNE_SLACK_MS: i64 = 60_000;

/// What a record names in one configuration, resolved once (`Sim::plan`) for the loads ahead
/// (`touch_slots`, `touch_logs`) and the decision (`step`).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The service; `None` if the configuration has no such service.
    service: Option<usize>,
    to_hash: u64,
    seen_hash: u64,
    /// Into `Plans::checks`.
    checks: Range<usize>,
}

/// (rate limit index, index of the value in the record, hash of the value), sorted by rate
/// limit: the order the server checks them in.
type Check = (usize, usize, u64);

/// The plans of a batch of records.
#[derive(Default)]
pub struct Plans {
    pub plans: Vec<Plan>,
    checks: Vec<Check>,
    /// Per check: where `touch_logs` found its log.
    hints: Vec<Hint>,
    /// Per plan: where `touch_logs` found its recipient's sends.
    sent_hints: Vec<Hint>,
}

impl Plans {
    pub fn clear(&mut self) {
        self.plans.clear();
        self.checks.clear();
        self.hints.clear();
        self.sent_hints.clear();
    }
}

pub struct Sim {
    config: Config,
    policy: Policy,
    state: Vec<ServiceState>,
    pub starts: u64,
    pub admitted: u64,
    pub refused_20429: u64,
    pub refused_60203: u64,
    pub first_refusal: Option<i64>,
    /// Every (service, To) seen, by a 64-bit hash: whether it ever met a 429.
    tos: Seen,
    tos_429: u64,
    pub unknown_services: FxMap<String, u64>,
    pub unknown_rate_limits: FxMap<(usize, String), u64>,
    latest: i64,
    since_prune: u64,
    prune_after: u64,
    /// Scratch: where each check's value is in its table.
    probes: Vec<Probe>,
}

/// A (service, To) as a 64-bit hash, for the distinct-To share.
fn to_key(service: usize, to: &str) -> u64 {
    let mut h = Fx::default();
    service.hash(&mut h);
    to.hash(&mut h);
    h.finish()
}

impl Sim {
    pub fn new(config: Config, policy: Policy) -> Self {
        let state = config
            .services
            .iter()
            .map(|s| ServiceState {
                logs: s.rate_limits.iter().map(|_| Slots::default()).collect(),
                sends: Slots::default(),
                stats: s
                    .rate_limits
                    .iter()
                    .map(|r| RateLimitStats {
                        buckets: r.buckets.iter().map(|_| Counts::default()).collect(),
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect();
        Self {
            config,
            policy,
            state,
            starts: 0,
            admitted: 0,
            refused_20429: 0,
            refused_60203: 0,
            first_refusal: None,
            tos: Seen::default(),
            tos_429: 0,
            unknown_services: FxMap::default(),
            unknown_rate_limits: FxMap::default(),
            latest: i64::MIN,
            since_prune: 0,
            prune_after: PRUNE_EVERY,
            probes: Vec::new(),
        }
    }

    /// Resolves what `r` names (service, rate limits, hashes) into `plans`, counting the
    /// services and rate limits the configuration does not have.
    pub fn plan(&mut self, r: &Record<'_>, plans: &mut Plans) {
        let from = plans.checks.len();
        let Some(si) = self.config.service(&r.service_sid) else {
            *self
                .unknown_services
                .entry(r.service_sid.to_string())
                .or_default() += 1;
            plans.sent_hints.push(Hint::default());
            plans.plans.push(Plan {
                service: None,
                to_hash: 0,
                seen_hash: 0,
                checks: from..from,
            });
            return;
        };
        let svc = &self.config.services[si];
        for (k, (name, value)) in r.rate_limits.iter().enumerate() {
            match svc.by_name.get(name.as_ref()) {
                // A rate limit without buckets records nothing (the server skips it).
                Some(&i) if !svc.rate_limits[i].rules.is_empty() => {
                    plans.checks.push((i, k, hash_of(value.as_bytes())))
                }
                Some(_) => {}
                None => {
                    *self
                        .unknown_rate_limits
                        .entry((si, name.to_string()))
                        .or_default() += 1
                }
            }
        }
        plans.checks[from..].sort_unstable_by_key(|c| c.0);
        plans.hints.resize(plans.checks.len(), Hint::default());
        plans.sent_hints.push(Hint::default());
        plans.plans.push(Plan {
            service: Some(si),
            to_hash: hash_of(r.to.as_bytes()),
            seen_hash: to_key(si, &r.to),
            checks: from..plans.checks.len(),
        });
    }

    /// The first of the loads ahead: prefetches the slots where the probes of a planned
    /// record begin.
    pub fn touch_slots(&self, plan: &Plan, plans: &Plans) {
        let Some(si) = plan.service else { return };
        let st = &self.state[si];
        self.tos.touch(plan.seen_hash);
        st.sends.touch(plan.to_hash);
        for &(i, _, hash) in &plans.checks[plan.checks.clone()] {
            st.logs[i].touch(hash);
        }
    }

    /// The second: prefetches the log entries the decision reads (`window::wait_ms` reads the
    /// `max`-th newest, `window::record` the newest); the slots are in the cache by now. Where
    /// it finds them is kept for `step` (`Plans::hints`).
    pub fn touch_logs(&self, r: &Record<'_>, j: usize, plans: &mut Plans) {
        let plan = &plans.plans[j];
        let Some(si) = plan.service else { return };
        let (svc, st) = (&self.config.services[si], &self.state[si]);
        for c in plan.checks.clone() {
            let (i, k, hash) = plans.checks[c];
            let (log, hint) = st.logs[i].get_hinted(hash, r.rate_limits[k].1.as_bytes());
            plans.hints[c] = hint;
            if let Some(log) = log {
                for rule in &svc.rate_limits[i].rules {
                    if let Some(at) = log.len().checked_sub(rule.max as usize) {
                        prefetch(log.addr(at));
                    }
                }
                if let Some(newest) = log.len().checked_sub(1) {
                    prefetch(log.addr(newest));
                }
            }
        }
        let (sent, hint) = st.sends.get_hinted(plan.to_hash, r.to.as_bytes());
        plans.sent_hints[j] = hint;
        if let Some(s) = sent
            && let Some(newest) = s.len().checked_sub(1)
        {
            prefetch(s.addr(newest));
        }
    }

    /// Decides one planned start at the record's time; `None` if its service is not configured.
    pub fn step(&mut self, r: &Record<'_>, j: usize, plans: &Plans) -> Option<(usize, Decision)> {
        let plan = &plans.plans[j];
        let now = r.time_ms;
        let si = plan.service?;
        let svc = &self.config.services[si];
        let ServiceState { logs, sends, stats } = &mut self.state[si];
        let checks = &plans.checks[plan.checks.clone()];
        self.starts += 1;
        self.tos.see(plan.seen_hash);

        self.probes.clear();
        let hints = &plans.hints[plan.checks.clone()];
        for (&(i, k, hash), &hint) in checks.iter().zip(hints) {
            self.probes
                .push(logs[i].probe_hinted(hint, hash, r.rate_limits[k].1.as_bytes()));
        }
        let empty = CompactLog::default();
        let log_of = |c: usize| match self.probes[c] {
            Probe::Found(j) => logs[checks[c].0].at(j).unwrap_or(&empty),
            Probe::Vacant(_) => &empty,
        };
        let sent = sends.probe_hinted(plans.sent_hints[j], plan.to_hash, r.to.as_bytes());
        let sent_log = match sent {
            Probe::Found(j) => sends.at(j),
            Probe::Vacant(_) => None,
        };
        let decision = if too_many_sends(
            sent_log.into_iter().flat_map(CompactLog::iter),
            &self.policy,
            now,
        ) {
            Decision::TooManySends
        } else {
            let refusal = longest_wait(
                (0..checks.len())
                    .map(|c| (svc.rate_limits[checks[c].0].rules.as_slice(), log_of(c))),
                now,
                |c, b, _| {
                    let counts = &mut stats[checks[c].0].buckets[b];
                    counts.refused += 1;
                    counts.refused_since.get_or_insert(now);
                },
            );
            match refusal {
                Some((c, _)) => Decision::Refused {
                    rate_limit: checks[c].0,
                },
                None => Decision::Admitted,
            }
        };
        match decision {
            Decision::Admitted => {
                self.admitted += 1;
                for (&(i, k, hash), probe) in checks.iter().zip(&self.probes) {
                    record_in(
                        &mut logs[i],
                        *probe,
                        hash,
                        r.rate_limits[k].1.as_bytes(),
                        now,
                    );
                    stats[i].counts.admitted += 1;
                }
                record_in(sends, sent, plan.to_hash, r.to.as_bytes(), now);
            }
            Decision::TooManySends => {
                self.refused_60203 += 1;
                self.first_refusal.get_or_insert(now);
            }
            Decision::Refused { rate_limit } => {
                self.refused_20429 += 1;
                self.first_refusal.get_or_insert(now);
                if self.tos.flag(plan.seen_hash) {
                    self.tos_429 += 1;
                }
                let s = &mut stats[rate_limit];
                s.counts.refused += 1;
                s.counts.refused_since.get_or_insert(now);
                let value = checks
                    .iter()
                    .find(|c| c.0 == rate_limit)
                    .map_or("", |c| r.rate_limits[c.1].1.as_ref());
                s.refused_values.upsert(value.as_bytes(), || 0, |n| *n += 1);
            }
        }
        self.latest = self.latest.max(now);
        self.since_prune += 1;
        if self.since_prune >= self.prune_after {
            self.prune();
        }
        Some((si, decision))
    }

    /// Drops what no window counts any more (a little behind the latest record's time).
    pub fn prune(&mut self) {
        self.since_prune = 0;

        let at = self.latest.saturating_sub(PRUNE_SLACK_MS);
        let window = self.policy.send_window_ms;
        for (svc, st) in self.config.services.iter().zip(&mut self.state) {
            for (rl, logs) in svc.rate_limits.iter().zip(&mut st.logs) {
                logs.retain(
                    |log| {
                        window::prune(log, &rl.rules, at);
                        !log.is_empty()
                    },
                    front_ahead,
                );
            }
            st.sends.retain(
                |s| {
                    prune_sends(s, window, at);
                    !s.is_empty()
                },
                front_ahead,
            );
        }
        // A prune costs the live state: the next waits twice as many records, so it costs
        // O(1) a record however much is live (and holds at most that many expired entries).
        let (values, recipients) = self.tracked();
        self.prune_after = PRUNE_EVERY.max(2 * (values + recipients) as u64);
    }

    /// Live (rate limit, value) logs and recipients held.
    pub fn tracked(&self) -> (usize, usize) {
        self.state.iter().fold((0, 0), |(v, r), s| {
            (
                v + s.logs.iter().map(|l| l.len()).sum::<usize>(),
                r + s.sends.len(),
            )
        })
    }

    pub fn unique_name(&self, service: usize, rate_limit: usize) -> &str {
        &self.config.services[service].rate_limits[rate_limit].unique_name
    }

    /// The summary, with the `top` values refused most per rate limit.
    pub fn report(&self, top: usize) -> serde_json::Value {
        use serde_json::json;
        let time = |t: Option<i64>| t.map(super::format_time);
        let mut rate_limits = Vec::new();
        for (svc, st) in self.config.services.iter().zip(&self.state) {
            for (rl, s) in svc.rate_limits.iter().zip(&st.stats) {
                let mut values: Vec<(&str, u64)> = s
                    .refused_values
                    .iter()
                    .map(|(v, n)| (std::str::from_utf8(v).unwrap_or_default(), *n))
                    .collect();
                values.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                values.truncate(top);
                rate_limits.push(json!({
                    "service_sid": svc.sid,
                    "service": svc.friendly_name,
                    "unique_name": rl.unique_name,
                    "admitted": s.counts.admitted,
                    "refused": s.counts.refused,
                    "refused_since": time(s.counts.refused_since),
                    "refused_values": s.refused_values.len(),
                    "top_refused": values
                        .iter()
                        .map(|(v, n)| json!({"value": v, "refused": n}))
                        .collect::<Vec<_>>(),
                    "buckets": rl.buckets.iter().zip(&s.buckets).map(|(b, c)| json!({
                        "sid": b.sid,
                        "max": b.max,
                        "interval": b.interval,
                        "refused_while_full": c.refused,
                        "full_since": time(c.refused_since),
                    })).collect::<Vec<_>>(),
                }));
            }
        }
        let mut unknown: Vec<_> = self
            .unknown_rate_limits
            .iter()
            .map(|((si, name), n)| {
                json!({
                    "service_sid": self.config.services[*si].sid,
                    "unique_name": name,
                    "starts": n,
                })
            })
            .collect();
        unknown.sort_by_key(|v| v["unique_name"].as_str().map(str::to_owned));
        let mut unknown_services: Vec<_> = self
            .unknown_services
            .iter()
            .map(|(s, n)| json!({"service_sid": s, "records": n}))
            .collect();
        unknown_services.sort_by_key(|v| v["service_sid"].as_str().map(str::to_owned));
        let tos = self.tos.len() as u64;
        let tos_429 = self.tos_429;
        json!({
            "starts": self.starts,
            "admitted": self.admitted,
            "refused": self.refused_20429 + self.refused_60203,
            "refused_by_code": {"20429": self.refused_20429, "60203": self.refused_60203},
            "refused_since": time(self.first_refusal),
            "distinct_to": tos,
            "distinct_to_met_429": tos_429,
            "share_of_to_met_429": if tos == 0 { 0.0 } else { tos_429 as f64 / tos as f64 },
            "rate_limits": rate_limits,
            "unknown_rate_limits": unknown,
            "unknown_services": unknown_services,
        })
    }
}
