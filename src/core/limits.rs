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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Decides a start against the admission log of every check (`None`: nothing recorded yet).
/// Admitted: the admissions to record (one per check that has buckets), each at the time
/// `window::record` would give it. Refused: the bucket that waits longest.
pub fn admit(
    checks: &[(LimitCheck<'_>, Option<&VecDeque<i64>>)],
    now: i64,
) -> Result<Vec<Admission>, Refusal> {
    let empty = VecDeque::new();
    let mut refusal: Option<(i64, &str)> = None;
    for (c, log) in checks {
        let log = log.unwrap_or(&empty);
        for rule in c.rules {
            if let Some(wait) = window::wait_ms(log, rule, now)
                && refusal.is_none_or(|(w, _)| wait > w)
            {
                refusal = Some((wait, c.unique_name));
            }
        }
    }
    if let Some((retry_after_ms, unique_name)) = refusal {
        return Err(Refusal {
            retry_after_ms,
            unique_name: unique_name.to_owned(),
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
