//! Prometheus metrics at `/metrics`: requests by route and status with latency histograms,
//! admissions and refusals by service and rate limit (never by value: bounded cardinality),
//! verification events, tracked state, and the store's batch sizes, commit times and errors.
//! Hand-written text format: a few counters do not need a metrics framework.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const BATCH_BOUNDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

struct RouteStats {
    /// By (method, status); a method outside HTTP's standard ones counts as `other`.
    statuses: HashMap<(&'static str, u16), u64>,
    latency: Histogram,
}

#[derive(Default)]
struct Metrics {
    routes: Mutex<HashMap<String, RouteStats>>,
    /// service → rate limit → [admitted, refused]
    decisions: Mutex<HashMap<String, HashMap<String, [u64; 2]>>>,
    events: [AtomicU64; 8],
    store: Mutex<Option<(Histogram, Histogram)>>,
    db_errors: AtomicU64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The verification event types counted (`crate::events::Kind::as_str`).
const KINDS: [&str; 8] = [
    "started",
    "resent",
    "refused",
    "approved",
    "check_failed",
    "canceled",
    "expired",
    "max_attempts_reached",
];

pub fn request(route: &str, method: &str, status: u16, seconds: f64) {
    let mut routes = METRICS.routes.lock();
    let stats = match routes.get_mut(route) {
        Some(s) => s,
        None => routes
            .entry(route.to_owned())
            .or_insert_with(|| RouteStats {
                statuses: HashMap::new(),
                latency: Histogram::new(LATENCY_BOUNDS),
            }),
    };
    *stats
        .statuses
        .entry((method_label(method), status))
        .or_default() += 1;
    stats.latency.observe(seconds);
}

/// A request method as a label: HTTP's standard methods as they are, any other token (a client
/// may send any) as `other`, so that neither the labels nor the work per request grow with
/// what clients send.
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

/// One rate limit's decision for one request.
pub fn decision(service: &str, rate_limit: &str, admitted: bool) {
    let mut d = METRICS.decisions.lock();
    let per_service = match d.get_mut(service) {
        Some(m) => m,
        None => d.entry(service.to_owned()).or_default(),
    };
    let counts = match per_service.get_mut(rate_limit) {
        Some(c) => c,
        None => per_service.entry(rate_limit.to_owned()).or_default(),
    };
    counts[usize::from(!admitted)] += 1;
}

pub fn verification_event(kind: &str) {
    if let Some(i) = KINDS.iter().position(|k| *k == kind) {
        METRICS.events[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// One committed (or failed) transaction of `jobs` write jobs.
pub fn batch(jobs: usize, seconds: f64, committed: bool) {
    let mut store = METRICS.store.lock();
    let (sizes, durations) =
        store.get_or_insert_with(|| (Histogram::new(BATCH_BOUNDS), Histogram::new(LATENCY_BOUNDS)));
    sizes.observe(jobs as f64);
    durations.observe(seconds);
    if !committed {
        METRICS.db_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Verification states in the SQLite writer's journal, not yet applied to their tables.
static JOURNAL: AtomicU64 = AtomicU64::new(0);

pub fn journal(items: usize) {
    JOURNAL.store(items as u64, Ordering::Relaxed);
}

/// Maintenance rounds that finished, successfully or not (a round: verifications expired, past
/// retention purged, admissions pruned, then, after a large sweep, freed memory given back).
static MAINTENANCE_ROUNDS: AtomicU64 = AtomicU64::new(0);

pub fn maintenance_round() {
    MAINTENANCE_ROUNDS.fetch_add(1, Ordering::Relaxed);
}

pub fn db_error() {
    METRICS.db_errors.fetch_add(1, Ordering::Relaxed);
}

/// Webhook deliveries of Event Streams (`[0]`) and of Service Webhooks (`[1]`): delivered,
/// failed (given up), retried, dropped (a full queue), and the events waiting or being sent now.
static DELIVERIES: [[AtomicU64; 4]; 2] = [const { [const { AtomicU64::new(0) }; 4] }; 2];
static QUEUED: [std::sync::atomic::AtomicI64; 2] =
    [const { std::sync::atomic::AtomicI64::new(0) }; 2];
const DELIVERY_OUTCOMES: [&str; 4] = ["delivered", "failed", "retried", "dropped"];

/// What became of one try, or one event, of a webhook delivery.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    Delivered = 0,
    Failed = 1,
    Retried = 2,
    Dropped = 3,
}

/// Counts one delivery outcome of Event Streams, or (`service_webhooks`) of Service Webhooks.
pub fn delivery(service_webhooks: bool, outcome: Delivery) {
    DELIVERIES[usize::from(service_webhooks)][outcome as usize].fetch_add(1, Ordering::Relaxed);
}

pub fn delivery_queued(service_webhooks: bool, delta: i64) {
    QUEUED[usize::from(service_webhooks)].fetch_add(delta, Ordering::Relaxed);
}

fn render_event_streams(out: &mut String) {
    let families = [
        (
            "event_stream",
            "Event Streams webhook deliveries",
            "Event Streams events",
        ),
        (
            "service_webhook",
            "Verify Service Webhook deliveries",
            "Service Webhook events",
        ),
    ];
    for (i, (name, what, events)) in families.iter().enumerate() {
        let _ = writeln!(
            out,
            "# HELP verilimit_{name}_deliveries_total {what} by outcome (retried: one more try of an event).\n# TYPE verilimit_{name}_deliveries_total counter"
        );
        for (j, outcome) in DELIVERY_OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "verilimit_{name}_deliveries_total{{outcome=\"{outcome}\"}} {}",
                DELIVERIES[i][j].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP verilimit_{name}_queued {events} waiting for, or in, delivery.\n# TYPE verilimit_{name}_queued gauge\nverilimit_{name}_queued {}",
            QUEUED[i].load(Ordering::Relaxed).max(0)
        );
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole registry in Prometheus text format; rate-limit decisions only of the services `visible` accepts (the
/// caller's own).
pub fn render(
    limiter_tracked: usize,
    recipients_tracked: usize,
    visible: impl Fn(&str) -> bool,
) -> String {
    let mut out = String::new();
    out.push_str("# HELP verilimit_http_requests_total HTTP requests by route, method and status.\n# TYPE verilimit_http_requests_total counter\n");
    let routes = METRICS.routes.lock();
    let mut names: Vec<&String> = routes.keys().collect();
    names.sort();
    for route in &names {
        let mut rows: Vec<_> = routes[*route].statuses.iter().collect();
        rows.sort();
        for ((method, status), n) in rows {
            let _ = writeln!(
                out,
                "verilimit_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
    }
    out.push_str("# HELP verilimit_http_request_duration_seconds HTTP request latency by route.\n# TYPE verilimit_http_request_duration_seconds histogram\n");
    for route in &names {
        routes[*route].latency.render(
            &mut out,
            "verilimit_http_request_duration_seconds",
            &format!("route=\"{}\"", escape(route)),
        );
    }
    drop(routes);
    out.push_str("# HELP verilimit_rate_limit_decisions_total Service Rate Limit decisions by service and rate limit.\n# TYPE verilimit_rate_limit_decisions_total counter\n");
    let decisions = METRICS.decisions.lock();
    let mut services: Vec<_> = decisions.iter().collect();
    services.sort_by_key(|(s, _)| *s);
    for (service, per) in services.into_iter().filter(|(s, _)| visible(s)) {
        let mut per: Vec<_> = per.iter().collect();
        per.sort_by_key(|(r, _)| *r);
        for (rl, [admitted, refused]) in per {
            for (outcome, n) in [("admitted", admitted), ("refused", refused)] {
                let _ = writeln!(
                    out,
                    "verilimit_rate_limit_decisions_total{{service_sid=\"{}\",rate_limit=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(service),
                    escape(rl)
                );
            }
        }
    }
    drop(decisions);
    out.push_str("# HELP verilimit_verification_events_total Verification events by type.\n# TYPE verilimit_verification_events_total counter\n");
    for (i, name) in KINDS.iter().enumerate() {
        let _ = writeln!(
            out,
            "verilimit_verification_events_total{{type=\"{name}\"}} {}",
            METRICS.events[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP verilimit_limiter_tracked_values (rate limit, value) admission logs held in memory.\n# TYPE verilimit_limiter_tracked_values gauge\nverilimit_limiter_tracked_values {limiter_tracked}"
    );
    let _ = writeln!(
        out,
        "# HELP verilimit_sqlite_journal_items Verification states committed to the SQLite journal and not yet applied to their tables.\n# TYPE verilimit_sqlite_journal_items gauge\nverilimit_sqlite_journal_items {}\n# HELP verilimit_recipients_tracked Recipients with a pending verification or recent sends.\n# TYPE verilimit_recipients_tracked gauge\nverilimit_recipients_tracked {recipients_tracked}",
        JOURNAL.load(Ordering::Relaxed)
    );
    if let Some((sizes, durations)) = METRICS.store.lock().as_ref() {
        out.push_str("# HELP verilimit_store_batch_jobs Write jobs per committed transaction.\n# TYPE verilimit_store_batch_jobs histogram\n");
        sizes.render(&mut out, "verilimit_store_batch_jobs", "");
        out.push_str("# HELP verilimit_store_commit_duration_seconds Time to run and commit one transaction.\n# TYPE verilimit_store_commit_duration_seconds histogram\n");
        durations.render(&mut out, "verilimit_store_commit_duration_seconds", "");
    }
    let _ = writeln!(
        out,
        "# HELP verilimit_store_errors_total Database errors.\n# TYPE verilimit_store_errors_total counter\nverilimit_store_errors_total {}",
        METRICS.db_errors.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP verilimit_maintenance_rounds_total Maintenance rounds finished, successfully or not (expiry, retention, pruning, then memory given back after a large sweep).\n# TYPE verilimit_maintenance_rounds_total counter\nverilimit_maintenance_rounds_total {}",
        MAINTENANCE_ROUNDS.load(Ordering::Relaxed)
    );
    render_event_streams(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_ones_count_as_other() {
        request("/metrics-test/{sid}", "GET", 200, 0.001);
        request("/metrics-test/{sid}", "GET", 200, 0.001);
        request("/metrics-test/{sid}", "FROBNICATE", 405, 0.001);
        request("/metrics-test/{sid}", "XYZZY", 405, 0.001);
        let out = render(0, 0, |_| false);
        assert!(out.contains(
            "verilimit_http_requests_total{route=\"/metrics-test/{sid}\",method=\"GET\",status=\"200\"} 2"
        ), "{out}");
        assert!(out.contains(
            "verilimit_http_requests_total{route=\"/metrics-test/{sid}\",method=\"other\",status=\"405\"} 2"
        ), "{out}");
        assert!(
            !out.contains("FROBNICATE") && !out.contains("XYZZY"),
            "{out}"
        );
    }
}
