//! The recent verification events of every account, in memory: what the dashboard and
//! `GET /emulator/v1/Events` show to answer "why was this verification refused?".

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

/// Events kept per account; older ones are dropped.
pub const PER_ACCOUNT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Started,
    Resent,
    Refused,
    Approved,
    CheckFailed,
    Canceled,
    Expired,
    MaxAttemptsReached,
}

impl Kind {
    /// The name it has in JSON and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Started => "started",
            Kind::Resent => "resent",
            Kind::Refused => "refused",
            Kind::Approved => "approved",
            Kind::CheckFailed => "check_failed",
            Kind::Canceled => "canceled",
            Kind::Expired => "expired",
            Kind::MaxAttemptsReached => "max_attempts_reached",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: Kind,
    pub service_sid: String,
    pub verification_sid: Option<String>,
    pub to: String,
    pub rate_limit: Option<String>,
    pub error_code: Option<u32>,
    #[serde(skip)]
    pub at_ms: i64,
    /// For a start (started, resent or refused): its channel and every rate limit it named
    /// with its value, for `GET /emulator/v1/Events?Format=replay`.
    #[serde(skip)]
    pub start: Option<Box<StartInfo>>,
}

/// What a start asked for, as `verilimit replay` reads it.
#[derive(Debug, Clone)]
pub struct StartInfo {
    pub channel: String,
    pub rate_limits: Vec<(String, String)>,
}

impl Event {
    /// The start as one line of replay traffic (`verilimit replay`), if it is a start.
    pub fn replay_line(&self) -> Option<serde_json::Value> {
        let s = self.start.as_ref()?;
        let limits: serde_json::Map<String, serde_json::Value> = s
            .rate_limits
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        Some(serde_json::json!({
            "time": crate::replay::format_time(self.at_ms),
            "service_sid": self.service_sid,
            "to": self.to,
            "channel": s.channel,
            "rate_limits": limits,
        }))
    }
}

impl Event {
    /// An event about `v` (no rate limit, no error code).
    pub fn of(v: &crate::core::Verification, kind: Kind) -> Self {
        Self {
            kind,
            service_sid: v.service_sid.clone(),
            verification_sid: Some(v.sid.clone()),
            to: v.to.clone(),
            rate_limit: None,
            error_code: None,
            at_ms: v.date_updated,
            start: None,
        }
    }
}

/// Called with every event about a verification as it is recorded, with the verification as the
/// event left it (Event Streams delivery); it copies what it keeps.
pub type Tap = Box<dyn Fn(&str, &Event, &crate::core::Verification) + Send + Sync>;

#[derive(Default)]
pub struct Events {
    accounts: Mutex<HashMap<String, VecDeque<Event>>>,
    tap: std::sync::OnceLock<Tap>,
}

impl Events {
    /// Installs the tap (once; later calls are ignored).
    pub fn set_tap(&self, tap: Tap) {
        let _ = self.tap.set(tap);
    }

    /// Records an event about `verification` (the tap sees it first).
    pub fn record_of(&self, account: &str, event: Event, verification: &crate::core::Verification) {
        if let Some(tap) = self.tap.get() {
            tap(account, &event, verification);
        }
        self.record(account, event);
    }

    pub fn record(&self, account: &str, event: Event) {
        crate::metrics::verification_event(event.kind.as_str());
        let mut accounts = self.accounts.lock();
        // The account's log exists but for its first event: no key allocated per event.
        let log = match accounts.get_mut(account) {
            Some(log) => log,
            None => accounts.entry(account.to_owned()).or_default(),
        };
        if log.len() == PER_ACCOUNT {
            log.pop_front();
        }
        log.push_back(event);
    }

    /// Newest first, optionally of one service.
    pub fn recent(&self, account: &str, service: Option<&str>, limit: usize) -> Vec<Event> {
        self.accounts
            .lock()
            .get(account)
            .map(|log| {
                log.iter()
                    .rev()
                    .filter(|e| service.is_none_or(|s| s == e.service_sid))
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn clear_account(&self, account: &str) {
        self.accounts.lock().remove(account);
    }
}
