//! The one engine: both backends decide alike. These ran differently on SQLite and PostgreSQL
//! before there was one core; the suite runs on both (`VERILIMIT_TEST_BACKEND=postgres`).

use serde_json::Value;

use crate::harness::{Client, ServerOptions, TestServer};
use crate::support::*;

/// The events of one verification, oldest first, as type names.
async fn events_of(c: &Client, verification: &str) -> Vec<String> {
    let body = c.get("/emulator/v1/Events").await.expect(200);
    let mut kinds: Vec<String> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verification_sid"] == verification)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.reverse();
    kinds
}

fn sid(v: &Value) -> String {
    v["sid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn maintenance_expires_a_verification_past_its_lifetime_exactly_once() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let v = start(&c, &f.service, &phone(1), None).await.expect(201);
    let ve = sid(&v);
    advance(&c, 601).await;
    for _ in 0..2 {
        c.post_form("/emulator/v1/Maintenance", &[])
            .await
            .expect(204);
    }
    assert_eq!(events_of(&c, &ve).await, ["started", "expired"]);
    // Expired: not fetchable, not checkable, and a new start makes a new verification.
    c.get(&format!("/v2/Services/{}/Verifications/{ve}", f.service))
        .await
        .expect(404);
    let codes = codes_sent_to(&c, &phone(1)).await;
    check(&c, &f.service, &phone(1), &codes[0])
        .await
        .expect(404);
    let again = start(&c, &f.service, &phone(1), None).await.expect(201);
    assert_ne!(sid(&again), ve);
    assert_eq!(events_of(&c, &ve).await, ["started", "expired"]);
}

#[tokio::test]
async fn a_finished_verifications_sid_names_nothing_and_touches_no_other_verification() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let first = sid(&start(&c, &f.service, &phone(2), None).await.expect(201));
    let path = |ve: &str| format!("/v2/Services/{}/Verifications/{ve}", f.service);
    c.post_form(&path(&first), &[("Status", "canceled")])
        .await
        .expect(200);
    let second = sid(&start(&c, &f.service, &phone(2), None).await.expect(201));
    assert_ne!(first, second);
    // The second one's code lifetime passes; nothing has looked at it yet.
    advance(&c, 601).await;
    for (method, reply) in [
        ("fetch", c.get(&path(&first)).await),
        (
            "update",
            c.post_form(&path(&first), &[("Status", "approved")]).await,
        ),
        (
            "check",
            c.post_form(
                &format!("/v2/Services/{}/VerificationCheck", f.service),
                &[("VerificationSid", first.as_str()), ("Code", "123456")],
            )
            .await,
        ),
    ] {
        assert_eq!(
            reply.status, 404,
            "{method} of a finished SID: {}",
            reply.body
        );
        reply.expect_error(404, 20404);
    }
    assert_eq!(events_of(&c, &first).await, ["started", "canceled"]);
    assert_eq!(
        events_of(&c, &second).await,
        ["started"],
        "addressing another SID must not expire the recipient's verification"
    );
    // Addressed by its recipient, the second one is found expired: 404, stored as expired.
    c.post_form(&path(&phone(2)), &[("Status", "approved")])
        .await
        .expect(404);
    assert_eq!(events_of(&c, &second).await, ["started", "expired"]);
}

#[tokio::test]
async fn a_refused_start_leaves_no_trace() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(1, 60)])]).await;
    start(&c, &f.service, &phone(3), Some(r#"{"ip":"203.0.113.9"}"#))
        .await
        .expect(201);
    let refused = start(&c, &f.service, &phone(4), Some(r#"{"ip":"203.0.113.9"}"#)).await;
    refused.expect_error(429, 20429);
    c.get(&format!(
        "/v2/Services/{}/Verifications/%2B{}",
        f.service,
        &phone(4)[1..]
    ))
    .await
    .expect(404);
    assert!(codes_sent_to(&c, &phone(4)).await.is_empty());
    let rows = usage(&c, &f.service, "RateLimit=ip").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["count"], 1, "{rows:?}");
}
