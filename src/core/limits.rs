//! Service Rate Limits: a start names (rate limit, value) pairs; it is admitted only if every
//! bucket of every one has room (all or nothing), and then recorded in all of them at `now`.

use std::collections::VecDeque;

use super::window::{self, Rule};

/// One rate limit a start names: the value it limits and the rules of its buckets.
#[derive(Debug, Clone, Copy)]
pub struct LimitCheck<'a> {
    pub rate_limit_id: i64,
    pub unique_name: &'a str,
    pub value: &'a str,
    pub rules: &'a [Rule],
}

/// An admission to record: (rate limit id, value, time).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Admission {
    pub rate_limit_id: i64,
    pub value: Box<str>,
    pub at_ms: i64,
}

/// Why a start was refused: the rate limit whose bucket waits longest, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after_ms: i64,
    pub unique_name: String,
}

/// The check (index) whose bucket waits longest at `now` (the first on ties), and that wait;
/// `None` if every bucket has room. `full(check, rule, wait)` is told of every full bucket.
/// Allocates nothing: `admit` decides with it, and so does the replay (`crate::replay`).
pub fn longest_wait<'l, L: window::Log + ?Sized + 'l>(
    checks: impl IntoIterator<Item = (&'l [Rule], &'l L)>,
    now: i64,
    mut full: impl FnMut(usize, usize, i64),
) -> Option<(usize, i64)> {
    let mut refusal: Option<(usize, i64)> = None;
    for (i, (rules, log)) in checks.into_iter().enumerate() {
        for (j, rule) in rules.iter().enumerate() {
            if let Some(wait) = window::wait_ms(log, rule, now) {
                full(i, j, wait);
                if refusal.is_none_or(|(_, w)| wait > w) {
                    refusal = Some((i, wait));
                }
            }
        }
    }
    refusal
}

/// Decides a start against the admission log of every check (`None`: nothing recorded yet).
/// Admitted: the admissions to record (one per check that has buckets), each at the time
/// `window::record` would give it. Refused: the bucket that waits longest.
pub fn admit(
    checks: &[(LimitCheck<'_>, Option<&VecDeque<i64>>)],
    now: i64,
) -> Result<Vec<Admission>, Refusal> {
    let empty = VecDeque::new();
    let refusal = longest_wait(
        checks
            .iter()
            .map(|(c, log)| (c.rules, log.unwrap_or(&empty))),
        now,
        |_, _, _| {},
    );
    if let Some((i, retry_after_ms)) = refusal {
        return Err(Refusal {
            retry_after_ms,
            unique_name: checks[i].0.unique_name.to_owned(),
        });
    }
    Ok(checks
        .iter()
        .filter(|(c, _)| !c.rules.is_empty())
        .map(|(c, log)| Admission {
            rate_limit_id: c.rate_limit_id,
            value: Box::from(c.value),
            at_ms: log
                .and_then(|l| l.back())
                .map_or(now, |&last| last.max(now)),
        })
        .collect())
}
