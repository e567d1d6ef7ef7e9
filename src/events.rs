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
        }
    }
}

#[derive(Default)]
pub struct Events {
    accounts: Mutex<HashMap<String, VecDeque<Event>>>,
}

impl Events {
    pub fn record(&self, account: &str, event: Event) {
        crate::metrics::verification_event(event.kind.as_str());
        let mut accounts = self.accounts.lock();
        let log = accounts.entry(account.to_owned()).or_default();
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
