//! Past its memory budget (`VERILIMIT_CACHE_MEMORY`, MiB) the SQLite engine evicts the live
//! state used least recently and reads it back from the database when a request needs it:
//! decisions, fetches, checks, usage and expiry are exactly what they would have been. (On
//! PostgreSQL, which keeps no such state in memory, the same steps hold.)

use serde_json::Value;

use crate::harness::{Client, ServerOptions, TestServer};
use crate::support::*;

/// Recipients and values started after the first ones: several times what 1 MiB holds.
const FLOOD: usize = 8_000;

fn sid(v: &Value) -> String {
    v["sid"].as_str().unwrap().to_owned()
}

fn on_sqlite() -> bool {
    std::env::var("VERILIMIT_TEST_BACKEND").as_deref() != Ok("postgres")
}

/// A line of `/metrics` without labels beyond those in `name`.
async fn metric(c: &Client, name: &str) -> u64 {
    let reply = c.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not shown"))
}

/// The admission logs held in memory.
async fn tracked_values(c: &Client) -> u64 {
    metric(c, "verilimit_limiter_tracked_values").await
}

#[tokio::test]
async fn what_the_cache_evicted_decides_exactly_as_before() {
    let server = TestServer::start(ServerOptions::new().env("VERILIMIT_CACHE_MEMORY", "1")).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(3, 3600)])]).await;
    let ip = |v: &str| format!(r#"{{"ip": "{v}"}}"#);

    // Before the flood: value A admitted twice (one more allowed); recipient 0 sent to twice
    // (three more sends allowed), its verification pending.
    for i in 1..=2 {
        start(&c, &f.service, &phone(i), Some(&ip("A")))
            .await
            .expect(201);
    }
    let v0 = sid(&start(&c, &f.service, &phone(0), None).await.expect(201));
    let resent = start(&c, &f.service, &phone(0), None).await.expect(201);
    assert_eq!(sid(&resent), v0);

    // The flood: distinct recipients and values, far more than 1 MiB holds.
    let mut first_of_flood = String::new();
    for chunk in 0..FLOOD / 200 {
        let replies = concurrent_starts(&c, &f.service, 200, |i| {
            let i = chunk * 200 + i;
            (phone(1000 + i), Some(ip(&format!("flood-{i}"))))
        })
        .await;
        for r in replies {
            let body = r.expect(201);
            if first_of_flood.is_empty() {
                first_of_flood = sid(&body);
            }
        }
    }
    c.post_form("/emulator/v1/Maintenance", &[])
        .await
        .expect(204);
    if on_sqlite() {
        let held = tracked_values(&c).await;
        assert!(
            held < FLOOD as u64 / 2,
            "{held} admission logs still held: nothing was evicted"
        );
    }

    // Value A: one more admitted, then refused, as if nothing had been evicted.
    start(&c, &f.service, &phone(3), Some(&ip("A")))
        .await
        .expect(201);
    start(&c, &f.service, &phone(4), Some(&ip("A")))
        .await
        .expect_error(429, 20429);
    let rows = usage(&c, &f.service, "RateLimit=ip&Value=A").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["count"], 3, "{rows:?}");

    // Recipient 0's verification, by SID and by recipient, with both its attempts.
    let path = format!("/v2/Services/{}/Verifications/{v0}", f.service);
    let fetched = c.get(&path).await.expect(200);
    assert_eq!(fetched["status"], "pending");
    assert_eq!(fetched["send_code_attempts"].as_array().unwrap().len(), 2);
    let to = phone(0).replace('+', "%2B");
    let by_to = c
        .get(&format!("/v2/Services/{}/Verifications/{to}", f.service))
        .await
        .expect(200);
    assert_eq!(sid(&by_to), v0);

    // Its sends count: three more, then 60203.
    for _ in 0..3 {
        let again = start(&c, &f.service, &phone(0), None).await.expect(201);
        assert_eq!(sid(&again), v0);
    }
    start(&c, &f.service, &phone(0), None)
        .await
        .expect_error(429, 60203);
    let codes = codes_sent_to(&c, &phone(0)).await;
    let approved = check(&c, &f.service, &phone(0), codes.last().unwrap())
        .await
        .expect(200);
    assert_eq!(approved["status"], "approved");
    c.get(&path).await.expect(404);

    // Every pending verification, evicted or not, expires on time, once: the flood's and
    // value A's three (recipient 0's was approved).
    advance(&c, 601).await;
    for _ in 0..3 {
        c.post_form("/emulator/v1/Maintenance", &[])
            .await
            .expect(204);
    }
    assert_eq!(
        metric(&c, "verilimit_verification_events_total{type=\"expired\"}").await,
        FLOOD as u64 + 3
    );
    c.get(&format!(
        "/v2/Services/{}/Verifications/{first_of_flood}",
        f.service
    ))
    .await
    .expect(404);
}

#[tokio::test]
async fn a_restart_holds_what_was_evicted_as_it_was() {
    let mut server =
        TestServer::start(ServerOptions::new().env("VERILIMIT_CACHE_MEMORY", "1")).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(2, 3600)])]).await;
    let first = sid(&start(&c, &f.service, &phone(0), Some(r#"{"ip": "A"}"#))
        .await
        .expect(201));
    for chunk in 0..FLOOD / 200 {
        for r in concurrent_starts(&c, &f.service, 200, |i| {
            let i = chunk * 200 + i;
            (phone(1000 + i), Some(format!(r#"{{"ip": "flood-{i}"}}"#)))
        })
        .await
        {
            r.expect(201);
        }
    }
    c.post_form("/emulator/v1/Maintenance", &[])
        .await
        .expect(204);
    server.kill9();
    let server = TestServer::start(
        ServerOptions::new()
            .env("VERILIMIT_CACHE_MEMORY", "1")
            .database_of(&server),
    )
    .await;
    let c = server.a();
    // The start-up reads everything back; the next round evicts again.
    c.post_form("/emulator/v1/Maintenance", &[])
        .await
        .expect(204);
    if on_sqlite() {
        assert!(tracked_values(&c).await < FLOOD as u64 / 2);
    }
    let path = format!("/v2/Services/{}/Verifications/{first}", f.service);
    assert_eq!(c.get(&path).await.expect(200)["status"], "pending");
    start(&c, &f.service, &phone(1), Some(r#"{"ip": "A"}"#))
        .await
        .expect(201);
    start(&c, &f.service, &phone(2), Some(r#"{"ip": "A"}"#))
        .await
        .expect_error(429, 20429);
}
