//! Shared steps: a service with rate limits and buckets, starting verifications, the clock.

use serde_json::Value;

pub use crate::fixtures::{Chain, add_rate_limit, create_chain};
use crate::harness::{Client, Reply};

/// A service named `verify` whose rate limits each have the given buckets `(max, interval)`.
pub async fn service_with(c: &Client, limits: &[(&str, &[(u64, u64)])]) -> Chain {
    create_chain(c, &[("FriendlyName", "verify")], limits).await
}

/// A distinct E.164 number per index.
pub fn phone(i: usize) -> String {
    format!("+1555{:07}", i)
}

/// Starts an SMS verification to `to` with the given `RateLimits` JSON (if any).
pub async fn start(c: &Client, service: &str, to: &str, rate_limits: Option<&str>) -> Reply {
    let mut form = vec![("To", to), ("Channel", "sms")];
    if let Some(rl) = rate_limits {
        form.push(("RateLimits", rl));
    }
    c.post_form(&format!("/v2/Services/{service}/Verifications"), &form)
        .await
}

/// `n` starts sent at once (each on a task of its own), the `i`-th to the `To` and `RateLimits`
/// JSON `to_and_limits(i)` gives; the replies in that order.
pub async fn concurrent_starts(
    c: &Client,
    service: &str,
    n: usize,
    to_and_limits: impl Fn(usize) -> (String, Option<String>),
) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (c, service, (to, limits)) = (c.clone(), service.to_owned(), to_and_limits(i));
            tokio::spawn(async move { start(&c, &service, &to, limits.as_deref()).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    replies
}

pub async fn advance(c: &Client, seconds: i64) -> Value {
    c.post_form(
        "/emulator/v1/Clock",
        &[("AdvanceSeconds", &seconds.to_string())],
    )
    .await
    .expect(200)
}

/// The rows of `GET /emulator/v1/Services/{service}/Usage?{query}` (`RateLimit=…[&Value=…]`).
pub async fn usage(c: &Client, service: &str, query: &str) -> Vec<Value> {
    let body = c
        .get(&format!("/emulator/v1/Services/{service}/Usage?{query}"))
        .await
        .expect(200);
    body["usage"].as_array().unwrap().clone()
}

/// The codes sent to `to`, oldest first.
pub async fn codes_sent_to(c: &Client, to: &str) -> Vec<String> {
    let to = to.replace('+', "%2B");
    let body = c
        .get(&format!("/emulator/v1/Outbox?To={to}&PageSize=1000"))
        .await
        .expect(200);
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn check(c: &Client, service: &str, to: &str, code: &str) -> Reply {
    c.post_form(
        &format!("/v2/Services/{service}/VerificationCheck"),
        &[("To", to), ("Code", code)],
    )
    .await
}
