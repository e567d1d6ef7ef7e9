//! Verify events delivered to webhook sinks: every type, in order per verification, signed as
//! Twilio signs JSON webhooks, only for subscribed types of services that enabled events;
//! the sink test event; retries.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Client, ServerOptions, TOKEN_A, TestServer};
use crate::receiver::{DELIVERY_TIMEOUT, Received, Receiver};
use crate::support::*;

fn wrong(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// Asserts the CloudEvents envelope and the Verify data of one delivered event.
#[track_caller]
fn assert_verify_event(r: &Received, event_type: &str, verification: &str, service: &str) -> Value {
    r.assert_signed_by(TOKEN_A);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let e = r.event();
    assert_eq!(e["type"], event_type, "{e}");
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["datacontenttype"], "application/json");
    assert_eq!(
        e["dataschema"],
        "https://events-schemas.twilio.com/AccountSecurity.VerifyEventStreamEvent/3"
    );
    assert_eq!(
        e["source"],
        format!(
            "/v1/Accounts/{}/Services/{service}/Verifications/{verification}",
            crate::harness::ACCOUNT_A
        )
    );
    let id = e["id"].as_str().unwrap();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    let data = &e["data"];
    assert_eq!(data["verification_sid"], verification);
    assert_eq!(data["service_sid"], service);
    assert_eq!(data["account_sid"], crate::harness::ACCOUNT_A);
    assert_eq!(data["friendly_name"], "Event app");
    let status = event_type
        .rsplit('.')
        .next()
        .unwrap()
        .replace('-', "_")
        .to_uppercase();
    assert_eq!(data["verification_status"], status.as_str());
    assert!(data.get("code").is_none(), "a code in the event: {data}");
    assert!(!String::from_utf8_lossy(&r.body).contains("\"code\""));
    e
}

async fn sink_with_all_verify_types(c: &Client, receiver: &Receiver) -> String {
    let sink = create_sink(c, &receiver.destination()).await;
    let sink = sink["sid"].as_str().unwrap().to_owned();
    subscribe(c, &sink, &VERIFY_TYPES).await;
    sink
}

#[tokio::test]
async fn every_verification_event_reaches_the_sink_in_order_and_signed() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let mut hook = Receiver::start().await;
    sink_with_all_verify_types(&c, &hook).await;
    let service = create_service(&c, true).await;

    // Pending, pending again on a re-send, approved.
    let to1 = "+15005550001";
    let v1 = start(&c, &service, to1).await;
    assert_eq!(
        start(&c, &service, to1).await,
        v1,
        "a re-send keeps the verification"
    );
    let code = latest_code(&c, to1).await;
    assert_eq!(
        check(&c, &service, to1, &code).await.expect(200)["status"],
        "approved"
    );
    // Pending, canceled.
    let to2 = "+15005550002";
    let v2 = start(&c, &service, to2).await;
    c.post_form(
        &format!("/v2/Services/{service}/Verifications/{v2}"),
        &[("Status", "canceled")],
    )
    .await
    .expect(200);
    // Pending, expired (found expired by a check after the clock moved past its lifetime).
    let to3 = "+15005550003";
    let v3 = start(&c, &service, to3).await;
    c.post_form("/emulator/v1/Clock", &[("AdvanceSeconds", "601")])
        .await
        .expect(200);
    check(&c, &service, to3, "123456")
        .await
        .expect_error(404, 20404);
    // Pending, max attempts reached (five wrong checks use every attempt; the next is refused).
    let to4 = "+15005550004";
    let v4 = start(&c, &service, to4).await;
    let bad = wrong(&latest_code(&c, to4).await);
    for _ in 0..5 {
        assert_eq!(
            check(&c, &service, to4, bad).await.expect(200)["valid"],
            false
        );
    }
    check(&c, &service, to4, bad).await.expect_error(429, 60202);

    let expected = [
        (PENDING, &v1),
        (PENDING, &v1),
        (APPROVED, &v1),
        (PENDING, &v2),
        (CANCELED, &v2),
        (PENDING, &v3),
        (EXPIRED, &v3),
        (PENDING, &v4),
        (MAX_ATTEMPTS, &v4),
    ];
    let mut got = Vec::new();
    for (event_type, verification) in expected {
        let r = hook.next_delivered().await;
        got.push(assert_verify_event(&r, event_type, verification, &service));
    }
    // A re-send is one more send attempt in the second pending event; approval records when.
    assert_eq!(got[0]["data"]["send_code_attempts"]["count"], 1);
    assert_eq!(got[1]["data"]["send_code_attempts"]["count"], 2);
    let attempt = &got[1]["data"]["send_code_attempts"]["attempts"][1];
    assert_eq!(attempt["channel"], "SMS");
    assert!(attempt["attempt_sid"].as_str().unwrap().starts_with("VL"));
    assert!(got[2]["data"]["verified_at"].is_string());
    assert!(got[0]["data"].get("verified_at").is_none());
    assert_eq!(got[8]["data"]["check_attempts"]["count"], 5);
    assert!(hook.pending().is_empty(), "more than was expected arrived");
}

#[tokio::test]
async fn only_subscribed_types_of_services_with_events_enabled_are_delivered() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let mut hook = Receiver::start().await;
    let sink = create_sink(&c, &hook.destination()).await;
    subscribe(&c, sink["sid"].as_str().unwrap(), &[PENDING]).await;
    let off = create_service(&c, false).await;
    let on = create_service(&c, true).await;

    // The router handles events in the order they happened, so when a later event arrives
    // first, the earlier one was not sent.
    start(&c, &off, "+15005550010").await;
    let first = start(&c, &on, "+15005550011").await;
    let r = hook.next_delivered().await;
    assert_verify_event(&r, PENDING, &first, &on);

    c.post_form(
        &format!("/v2/Services/{on}/Verifications/{first}"),
        &[("Status", "canceled")],
    )
    .await
    .expect(200);
    let second = start(&c, &on, "+15005550012").await;
    let r = hook.next_delivered().await;
    assert_verify_event(&r, PENDING, &second, &on);

    // Switching the flag on for the other service makes its events flow.
    c.post_form(
        &format!("/v2/Services/{off}"),
        &[("VerifyEventSubscriptionEnabled", "true")],
    )
    .await
    .expect(200);
    let third = start(&c, &off, "+15005550013").await;
    let r = hook.next_delivered().await;
    assert_eq!(r.event()["data"]["verification_sid"], third.as_str());
    assert!(hook.pending().is_empty());
}

/// Reads a counter of `/metrics` until it reaches `at_least` (bounded: the server updates it
/// right after the receiver answered).
async fn metric_reaches(c: &Client, line_prefix: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let text = c.get("/metrics").await.body;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_sink_test_sends_the_test_event_and_a_refused_delivery_is_retried() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let mut hook = Receiver::start().await;
    let sink = create_sink(&c, &hook.destination()).await;
    let sid = sink["sid"].as_str().unwrap();
    hook.fail_next(1);
    let reply = c
        .post_form(&format!("/v1/Sinks/{sid}/Test"), &[])
        .await
        .expect(201);
    assert_eq!(reply, serde_json::json!({"result": "submitted"}));

    let refused = hook.next().await;
    assert_eq!(refused.answered, 500);
    let retried = hook.next().await;
    assert_eq!(retried.answered, 200);
    assert_eq!(retried.body, refused.body, "a retry sends the same event");
    retried.assert_signed_by(TOKEN_A);
    let e = retried.event();
    assert_eq!(e["type"], TEST_EVENT);
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(
        e["source"],
        format!(
            "/v1/Accounts/{}/Sinks/{sid}/Test",
            crate::harness::ACCOUNT_A
        )
    );

    let delivered = r#"verilimit_event_stream_deliveries_total{outcome="delivered"} "#;
    let retried_metric = r#"verilimit_event_stream_deliveries_total{outcome="retried"} "#;
    assert_eq!(metric_reaches(&c, delivered, 1).await, 1);
    assert_eq!(metric_reaches(&c, retried_metric, 1).await, 1);

    let valid = c
        .post_form(
            &format!("/v1/Sinks/{sid}/Validate"),
            &[("TestId", "anything")],
        )
        .await
        .expect(201);
    assert_eq!(valid, serde_json::json!({"result": "valid"}));
}

#[tokio::test]
async fn user_info_in_the_destination_is_sent_as_basic_auth_and_left_out_of_the_signed_url() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let mut hook = Receiver::start().await;
    let destination = format!("http://sink-user:s%40cret@127.0.0.1:{}/hook", hook.port);
    let sink = create_sink(&c, &destination).await;
    assert_eq!(
        sink["sink_configuration"]["destination"],
        destination.as_str()
    );
    let sid = sink["sid"].as_str().unwrap();
    c.post_form(&format!("/v1/Sinks/{sid}/Test"), &[])
        .await
        .expect(201);
    let r = hook.next_delivered().await;
    r.assert_signed_by(TOKEN_A);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("sink-user:s@cret");
    assert_eq!(r.authorization, Some(format!("Basic {basic}")));
}

#[tokio::test]
async fn another_instance_on_the_same_postgres_database_delivers_to_sinks_made_on_the_first() {
    if std::env::var("VERILIMIT_TEST_BACKEND").as_deref() != Ok("postgres") {
        return; // several instances share only a PostgreSQL database
    }
    let first = TestServer::start(ServerOptions::new()).await;
    let second = TestServer::start(ServerOptions::new().database_url(first.database_url())).await;
    let mut hook = Receiver::start().await;
    sink_with_all_verify_types(&first.a(), &hook).await;
    let service = create_service(&first.a(), true).await;
    let v = start(&second.a(), &service, "+15005550020").await;
    let r = hook.next_delivered().await;
    assert_verify_event(&r, PENDING, &v, &service);
}
