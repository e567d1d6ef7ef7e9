//! A verification's life, decided purely: what a start, a check, an update or the passing of
//! time does to the verification a recipient has pending, and what must be persisted.
//!
//! Only a *live* verification (pending and not past its code's lifetime) can be fetched,
//! re-sent, checked or updated; a pending one past its lifetime is expired first (and stored
//! as `expired`), then treated as absent.

use std::collections::VecDeque;

use super::limits::{self, Admission, LimitCheck, Refusal};
use super::window;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Canceled,
    MaxAttemptsReached,
    Deleted,
    Failed,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Canceled => "canceled",
            Status::MaxAttemptsReached => "max_attempts_reached",
            Status::Deleted => "deleted",
            Status::Failed => "failed",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "canceled" => Status::Canceled,
            "max_attempts_reached" => Status::MaxAttemptsReached,
            "deleted" => Status::Deleted,
            "failed" => Status::Failed,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// One code sent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    pub sid: String,
    pub channel: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verification {
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    pub channel: String,
    pub status: Status,
    pub code: String,
    pub amount: Option<String>,
    pub payee: Option<String>,
    pub checks_failed: u32,
    pub expires_ms: i64,
    pub date_created: i64,
    pub date_updated: i64,
    /// Increases with every change: a stored row is only ever replaced by a newer version.
    pub version: u64,
    pub attempts: Vec<Attempt>,
}

impl Verification {
    pub fn is_live(&self, now: i64) -> bool {
        self.status == Status::Pending && now < self.expires_ms
    }

    /// Ends the verification with `status` at `now`.
    fn finish(&mut self, status: Status, now: i64) {
        self.status = status;
        self.date_updated = now.max(self.date_updated);
        self.version += 1;
    }
}

/// The built-in rules (the server's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Sends to one recipient of a service within `send_window_ms` (60203); 0: no limit.
    pub send_attempts_limit: u32,
    pub send_window_ms: i64,
    /// Wrong checks before a verification ends (60202); 0: no limit.
    pub check_attempts_limit: u32,
    pub code_ttl_ms: i64,
}

/// The expired form of `v` if it is pending and past its lifetime at `now` (it expired at
/// `expires_ms`, whenever that is noticed).
pub fn expire(v: &Verification, now: i64) -> Option<Verification> {
    (v.status == Status::Pending && now >= v.expires_ms).then(|| {
        let mut e = v.clone();
        let at = e.expires_ms;
        e.finish(Status::Expired, at);
        e
    })
}

/// Which verification a path segment names: a `VE` SID or the recipient itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// The live verification named.
    Live(Verification),
    /// It was pending but its code's lifetime has passed: store this expired form, answer 404.
    Expired(Verification),
    /// Nothing live by that name: 404, nothing changes.
    Missing,
}

/// Resolves `sid` (if the path named a SID) against the recipient's pending verification.
/// A SID names only that verification: a different pending one of the same recipient is left
/// alone.
pub fn resolve(pending: Option<&Verification>, sid: Option<&str>, now: i64) -> Resolved {
    match pending {
        Some(v) if v.status == Status::Pending && sid.is_none_or(|s| s == v.sid) => {
            match expire(v, now) {
                Some(e) => Resolved::Expired(e),
                None => Resolved::Live(v.clone()),
            }
        }
        _ => Resolved::Missing,
    }
}

/// What a client asked a start for, parsed.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub service_sid: String,
    pub account_sid: String,
    pub to: String,
    pub channel: String,
    pub custom_code: Option<String>,
    pub amount: Option<String>,
    pub payee: Option<String>,
}

/// The identifiers and code a new verification or attempt would take (drawn by the caller).
#[derive(Debug, Clone)]
pub struct Fresh {
    pub verification_sid: String,
    pub attempt_sid: String,
    pub code: String,
}

/// An admitted start, and everything it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The verification as it now is (new, or the re-sent pending one).
    pub verification: Verification,
    pub is_new: bool,
    /// The code sent.
    pub attempt: Attempt,
    /// The recipient's previous verification, expired by this start (to store as expired).
    pub expired: Option<Verification>,
    /// One admission per rate limit with buckets.
    pub admissions: Vec<Admission>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    Admitted(Box<Admitted>),
    /// 60203: too many sends to this recipient within the send window.
    TooManySends,
    /// 20429: a bucket of a named rate limit is full.
    Refused(Refusal),
}

/// Sends within the send window at `now`, of the recipient's send times (any order).
pub fn sends_in_window(sends: impl IntoIterator<Item = i64>, policy: &Policy, now: i64) -> usize {
    sends
        .into_iter()
        .filter(|&t| now - t < policy.send_window_ms)
        .count()
}

/// Drops the sends (sorted, oldest first) that no window at `now` or later counts: what
/// `sends_in_window` keeps is what remains.
pub fn prune_sends<L: window::Log + ?Sized>(sends: &mut L, send_window_ms: i64, now: i64) {
    // A send counts while `now - t < send_window_ms`: from `now - send_window_ms + 1` on.
    window::drop_before(sends, now.saturating_sub(send_window_ms).saturating_add(1));
}

/// The send-attempts rule (60203): whether the recipient's sends within the window at `now`
/// already reach the limit (never, with the rule switched off).
pub fn too_many_sends(sends: impl IntoIterator<Item = i64>, policy: &Policy, now: i64) -> bool {
    policy.send_attempts_limit > 0
        && sends_in_window(sends, policy, now) >= policy.send_attempts_limit as usize
}

/// The refusal `start` would answer with these sends and logs, if any (the same rules in the
/// same order; allocates only for a refusal). A refusal is monotonic: more sends or admissions
/// at the same `now` never turn it into an admission — so a refusal found against committed
/// state is the answer against any later state that includes it, and a start can be refused
/// without waiting for the decisions in flight.
pub fn refusal(
    sends: impl IntoIterator<Item = i64>,
    checks: &[(LimitCheck<'_>, Option<&VecDeque<i64>>)],
    policy: &Policy,
    now: i64,
) -> Option<Started> {
    if too_many_sends(sends, policy, now) {
        return Some(Started::TooManySends);
    }
    let empty = VecDeque::new();
    limits::longest_wait(
        checks
            .iter()
            .map(|(c, log)| (c.rules, log.unwrap_or(&empty))),
        now,
        |_, _, _| {},
    )
    .map(|(i, retry_after_ms)| {
        Started::Refused(Refusal {
            retry_after_ms,
            unique_name: checks[i].0.unique_name.to_owned(),
        })
    })
}

/// A verification start, checked in order: the send-attempts rule (60203), then every bucket of
/// every rate limit named (20429, all or nothing); then a re-send of the live pending
/// verification, or a new one (expiring the old one if its lifetime has passed).
///
/// `pending`: the recipient's pending verification, if any; `sends`: the recipient's send
/// times (those outside the send window are ignored); `checks`: every rate limit named with its
/// admission log.
pub fn start(
    request: StartRequest,
    pending: Option<&Verification>,
    sends: impl IntoIterator<Item = i64>,
    checks: &[(LimitCheck<'_>, Option<&VecDeque<i64>>)],
    policy: &Policy,
    fresh: Fresh,
    now: i64,
) -> Started {
    if too_many_sends(sends, policy, now) {
        return Started::TooManySends;
    }
    let admissions = match limits::admit(checks, now) {
        Ok(a) => a,
        Err(refusal) => return Started::Refused(refusal),
    };
    let (live, expired) = match pending.filter(|v| v.status == Status::Pending) {
        Some(v) => match expire(v, now) {
            Some(e) => (None, Some(e)),
            None => (Some(v.clone()), None),
        },
        None => (None, None),
    };
    let attempt = Attempt {
        sid: fresh.attempt_sid,
        channel: request.channel.clone(),
        at_ms: now,
    };
    let is_new = live.is_none();
    let mut v = live.unwrap_or_else(|| Verification {
        sid: fresh.verification_sid,
        service_sid: request.service_sid,
        account_sid: request.account_sid,
        to: request.to,
        channel: request.channel.clone(),
        status: Status::Pending,
        code: fresh.code,
        amount: None,
        payee: None,
        checks_failed: 0,
        expires_ms: now + policy.code_ttl_ms,
        date_created: now,
        date_updated: now,
        version: 0,
        attempts: Vec::new(),
    });
    v.attempts.push(attempt.clone());
    v.channel = request.channel;
    v.date_updated = now.max(v.date_updated);
    v.version += 1;
    if let Some(code) = request.custom_code {
        v.code = code;
    }
    if request.amount.is_some() {
        v.amount = request.amount;
    }
    if request.payee.is_some() {
        v.payee = request.payee;
    }
    Started::Admitted(Box::new(Admitted {
        verification: v,
        is_new,
        attempt,
        expired,
        admissions,
    }))
}

/// The outcome of a check of a live verification.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// Right code (`approved`) or wrong code (still `pending`, one more failed check).
    Done(Verification),
    /// The allowed wrong checks were used: the verification ends as `max_attempts_reached`
    /// (store it) and the check answers 60202.
    MaxAttempts(Verification),
    /// `To` was given with a `VerificationSid` and names another recipient: nothing changes.
    ToMismatch,
}

/// A check of `code` against the live verification `v`.
pub fn check(v: &Verification, code: &str, to: Option<&str>, policy: &Policy, now: i64) -> Checked {
    if to.is_some_and(|to| to != v.to) {
        return Checked::ToMismatch;
    }
    let mut v = v.clone();
    let limit = policy.check_attempts_limit;
    if limit > 0 && v.checks_failed >= limit {
        v.finish(Status::MaxAttemptsReached, now);
        return Checked::MaxAttempts(v);
    }
    if code == v.code {
        v.finish(Status::Approved, now);
    } else {
        v.checks_failed += 1;
        v.date_updated = now.max(v.date_updated);
        v.version += 1;
    }
    Checked::Done(v)
}

/// An update of the live verification `v` to `canceled` or `approved`.
pub fn update(v: &Verification, status: Status, now: i64) -> Verification {
    let mut v = v.clone();
    v.finish(status, now);
    v
}
