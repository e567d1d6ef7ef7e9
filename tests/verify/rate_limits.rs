//! Service Rate Limits on verification starts: exact counts, all or nothing, Retry-After,
//! concurrency, configuration changes, restarts.

use crate::harness::{ServerOptions, TestServer};
use crate::support::*;

#[tokio::test]
async fn a_bucket_admits_exactly_max_starts_per_value_and_then_answers_429() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("end_user_ip", &[(3, 60)])]).await;
    for i in 0..3 {
        let v = start(
            &c,
            &f.service,
            &phone(i),
            Some(r#"{"end_user_ip": "10.0.0.1"}"#),
        )
        .await
        .expect(201);
        assert_eq!(v["status"], "pending");
    }
    let refused = start(
        &c,
        &f.service,
        &phone(3),
        Some(r#"{"end_user_ip": "10.0.0.1"}"#),
    )
    .await;
    let body = refused.expect_error(429, 20429);
    assert_eq!(body["message"], "Too many requests");
    assert_eq!(
        refused.header("twilio-reached-rate-limit"),
        Some("end_user_ip")
    );
    let retry: i64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "Retry-After {retry}");
    // Another value is not affected, and node-style JSON (no spaces) is the same thing.
    start(
        &c,
        &f.service,
        &phone(4),
        Some(r#"{"end_user_ip":"10.0.0.2"}"#),
    )
    .await
    .expect(201);
    // Nothing refused was sent.
    assert!(codes_sent_to(&c, &phone(3)).await.is_empty());
}

#[tokio::test]
async fn retry_after_is_the_true_time_until_a_slot_frees() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(2, 60)])]).await;
    let rl = Some(r#"{"ip": "192.0.2.7"}"#);
    start(&c, &f.service, &phone(1), rl).await.expect(201);
    advance(&c, 20).await;
    start(&c, &f.service, &phone(2), rl).await.expect(201);
    let refused = start(&c, &f.service, &phone(3), rl).await;
    refused.expect_error(429, 20429);
    assert_eq!(refused.header("retry-after"), Some("40"));
    advance(&c, 39).await;
    let refused = start(&c, &f.service, &phone(3), rl).await;
    refused.expect_error(429, 20429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    advance(&c, 1).await;
    start(&c, &f.service, &phone(3), rl).await.expect(201);
    // The second admission is still in its window: full again, until it leaves.
    let refused = start(&c, &f.service, &phone(4), rl).await;
    assert_eq!(refused.header("retry-after"), Some("20"));
}

#[tokio::test]
async fn the_window_slides_rather_than_resetting_at_fixed_boundaries() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(2, 10)])]).await;
    let rl = Some(r#"{"ip": "v"}"#);
    // Two admissions 9 s apart; a fixed 10 s window would reset at its boundary and let a third
    // through within 10 s of the second.
    start(&c, &f.service, &phone(1), rl).await.expect(201);
    advance(&c, 9).await;
    start(&c, &f.service, &phone(2), rl).await.expect(201);
    advance(&c, 2).await;
    // The first left the window; the second has not.
    start(&c, &f.service, &phone(3), rl).await.expect(201);
    let refused = start(&c, &f.service, &phone(4), rl).await;
    refused.expect_error(429, 20429);
    assert_eq!(refused.header("retry-after"), Some("8"));
}

#[tokio::test]
async fn admission_is_all_or_nothing_across_keys_and_buckets() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(
        &c,
        &[
            ("ip", &[(1, 60), (10, 3600)]),
            ("phone_country", &[(5, 60)]),
        ],
    )
    .await;
    start(
        &c,
        &f.service,
        &phone(1),
        Some(r#"{"ip": "A", "phone_country": "US"}"#),
    )
    .await
    .expect(201);
    // ip A is full: the whole request is refused, and nothing is counted for country FR.
    let refused = start(
        &c,
        &f.service,
        &phone(2),
        Some(r#"{"ip": "A", "phone_country": "FR"}"#),
    )
    .await;
    refused.expect_error(429, 20429);
    assert_eq!(refused.header("twilio-reached-rate-limit"), Some("ip"));
    let rows = usage(&c, &f.service, "RateLimit=phone_country").await;
    let values: Vec<&str> = rows.iter().map(|u| u["value"].as_str().unwrap()).collect();
    assert_eq!(
        values,
        vec!["US"],
        "a refused request recorded something: {rows:?}"
    );
    // FR still has all 5 slots.
    for i in 0..5 {
        start(
            &c,
            &f.service,
            &phone(10 + i),
            Some(&format!(r#"{{"ip": "ip-{i}", "phone_country": "FR"}}"#)),
        )
        .await
        .expect(201);
    }
    start(
        &c,
        &f.service,
        &phone(20),
        Some(r#"{"ip": "ip-x", "phone_country": "FR"}"#),
    )
    .await
    .expect_error(429, 20429);
    // An admitted request counted in every bucket of ip: the hour bucket holds 1 for A.
    let rows = usage(&c, &f.service, "RateLimit=ip&Value=A").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["count"] == 1), "{rows:?}");
}

#[tokio::test]
async fn hundreds_of_concurrent_starts_for_one_value_admit_exactly_max() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(10, 3600)])]).await;
    let replies = concurrent_starts(&c, &f.service, 500, |i| {
        (phone(1000 + i), Some(r#"{"ip": "203.0.113.9"}"#.to_owned()))
    })
    .await;
    let mut admitted = 0;
    let mut refused = 0;
    for reply in replies {
        match reply.status {
            201 => admitted += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((admitted, refused), (10, 490));
    let outbox = c.get("/emulator/v1/Outbox?PageSize=1000").await.expect(200);
    assert_eq!(outbox["messages"].as_array().unwrap().len(), 10);
}

/// Concurrent starts to one recipient (decided together on PostgreSQL, where starts waiting
/// at once share a transaction): they re-send one verification, and exactly as many are sent
/// as the send-attempts rule allows (5 in 600 s); the rest are 60203.
#[tokio::test]
async fn concurrent_starts_to_one_recipient_resend_one_verification_up_to_the_send_limit() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(1000, 3600)])]).await;
    let replies = concurrent_starts(&c, &f.service, 60, |i| {
        let ip = format!(r#"{{"ip": "198.51.100.{}"}}"#, i % 7);
        (phone(7), Some(ip))
    })
    .await;
    let mut sids = std::collections::BTreeSet::new();
    let mut refused = 0;
    for reply in replies {
        if reply.status == 201 {
            sids.insert(reply.expect(201)["sid"].as_str().unwrap().to_owned());
        } else {
            reply.expect_error(429, 60203);
            refused += 1;
        }
    }
    assert_eq!(refused, 55);
    assert_eq!(sids.len(), 1, "{sids:?}");
    let sid = sids.into_iter().next().unwrap();
    let v = c
        .get(&format!("/v2/Services/{}/Verifications/{sid}", f.service))
        .await
        .expect(200);
    assert_eq!(v["send_code_attempts"].as_array().unwrap().len(), 5, "{v}");
    let codes = codes_sent_to(&c, &phone(7)).await;
    assert_eq!(codes.len(), 5);
    assert!(codes.iter().all(|code| *code == codes[0]), "{codes:?}");
    // Only the five admitted starts are counted: 5 for the seven IPs together.
    let rows = usage(&c, &f.service, "RateLimit=ip").await;
    let counted: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 5, "{rows:?}");
}

/// Concurrent starts naming several rate limits and values at once: every value of every rate
/// limit admits exactly its bucket's max, a start is admitted only if all of its values had
/// room, and the counts the server shows are the admitted starts.
#[tokio::test]
async fn concurrent_starts_over_several_values_admit_exactly_max_of_each() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    // 4 IPs of at most 6 each, 12 users of at most 2 each.
    let f = service_with(&c, &[("ip", &[(6, 3600)]), ("user", &[(2, 3600)])]).await;
    let replies = concurrent_starts(&c, &f.service, 240, |i| {
        let limits = format!(r#"{{"ip": "ip-{}", "user": "user-{}"}}"#, i % 4, i % 12);
        (phone(2000 + i), Some(limits))
    })
    .await;
    let mut per_ip = [0u32; 4];
    let mut per_user = [0u32; 12];
    for (i, reply) in replies.iter().enumerate() {
        match reply.status {
            201 => {
                per_ip[i % 4] += 1;
                per_user[i % 12] += 1;
            }
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // Each IP's starts name 3 users (i % 12 over i % 4 = ip): 3 users × 2 = 6 = the IP's max.
    assert_eq!(per_ip, [6; 4]);
    assert_eq!(per_user, [2; 12]);
    for (name, values, max) in [("ip", 4, 6), ("user", 12, 2)] {
        let rows = usage(&c, &f.service, &format!("RateLimit={name}")).await;
        assert_eq!(rows.len(), values, "{rows:?}");
        assert!(rows.iter().all(|r| r["count"] == max), "{rows:?}");
    }
    let outbox = c.get("/emulator/v1/Outbox?PageSize=1000").await.expect(200);
    assert_eq!(outbox["messages"].as_array().unwrap().len(), 24);
}

#[tokio::test]
async fn bad_rate_limits_are_refused_with_60200() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(1, 60)])]).await;
    for bad in [
        r#"{"unknown": "x"}"#,
        r#"{"ip": "x""#,
        r#"["ip"]"#,
        r#""ip""#,
        r#"{"ip": {"nested": 1}}"#,
        r#"{"ip": null}"#,
        r#"{"ip": true}"#,
    ] {
        start(&c, &f.service, &phone(1), Some(bad))
            .await
            .expect_error(400, 60200);
    }
    // A number is a value like any other.
    start(&c, &f.service, &phone(1), Some(r#"{"ip": 12345}"#))
        .await
        .expect(201);
    start(&c, &f.service, &phone(2), Some(r#"{"ip": "12345"}"#))
        .await
        .expect_error(429, 20429);
}

#[tokio::test]
async fn a_bucket_change_is_in_force_from_the_next_request() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(1, 60)])]).await;
    let rk = &f.rate_limits[0].sid;
    let buckets = c
        .get(&format!(
            "/v2/Services/{}/RateLimits/{rk}/Buckets",
            f.service
        ))
        .await
        .expect(200);
    let bl = buckets["buckets"][0]["sid"].as_str().unwrap().to_owned();
    let rl = Some(r#"{"ip": "x"}"#);
    start(&c, &f.service, &phone(1), rl).await.expect(201);
    start(&c, &f.service, &phone(2), rl)
        .await
        .expect_error(429, 20429);
    c.post_form(
        &format!("/v2/Services/{}/RateLimits/{rk}/Buckets/{bl}", f.service),
        &[("Max", "2")],
    )
    .await
    .expect(200);
    start(&c, &f.service, &phone(2), rl).await.expect(201);
    start(&c, &f.service, &phone(3), rl)
        .await
        .expect_error(429, 20429);
    // Deleting the bucket deletes its counters: the rate limit now limits nothing.
    c.delete(&format!(
        "/v2/Services/{}/RateLimits/{rk}/Buckets/{bl}",
        f.service
    ))
    .await
    .expect(204);
    start(&c, &f.service, &phone(3), rl).await.expect(201);
}

#[tokio::test]
async fn counters_survive_kill_9_and_restart() {
    let mut server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(3, 3600)])]).await;
    let rl = Some(r#"{"ip": "198.51.100.1"}"#);
    let mut sids = Vec::new();
    for i in 0..3 {
        let v = start(&c, &f.service, &phone(i), rl).await.expect(201);
        sids.push(v["sid"].as_str().unwrap().to_owned());
    }
    server.kill9();
    let server = TestServer::start(ServerOptions::new().database_of(&server)).await;
    let c = server.a();
    start(&c, &f.service, &phone(9), rl)
        .await
        .expect_error(429, 20429);
    for sid in &sids {
        let v = c
            .get(&format!("/v2/Services/{}/Verifications/{sid}", f.service))
            .await
            .expect(200);
        assert_eq!(v["status"], "pending");
    }
    // The codes survive too, and still check.
    let code = codes_sent_to(&c, &phone(0)).await.pop().unwrap();
    let checked = check(&c, &f.service, &phone(0), &code).await.expect(200);
    assert_eq!(checked["status"], "approved");
}

#[tokio::test]
async fn a_rate_limit_of_another_account_cannot_be_named() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let b = server.b();
    let fa = service_with(&a, &[("ip", &[(1, 60)])]).await;
    // B cannot use A's service at all.
    start(&b, &fa.service, &phone(1), Some(r#"{"ip": "x"}"#))
        .await
        .expect_error(404, 20404);
    // B's own service does not know A's rate limit names.
    let fb = service_with(&b, &[]).await;
    start(&b, &fb.service, &phone(1), Some(r#"{"ip": "x"}"#))
        .await
        .expect_error(400, 60200);
}
