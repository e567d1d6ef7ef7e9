//! The test control plane: outbox, clock, reset, usage, isolation, and switching it off.

use crate::harness::{ServerOptions, TestServer};
use crate::support::*;

#[tokio::test]
async fn the_outbox_lists_codes_of_the_callers_account_only() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let b = server.b();
    let f = service_with(&a, &[]).await;
    let v = start(&a, &f.service, &phone(1), None).await.expect(201);
    let outbox = a.get("/emulator/v1/Outbox").await.expect(200);
    let m = &outbox["messages"][0];
    assert_eq!(m["to"], phone(1));
    assert_eq!(m["channel"], "sms");
    assert_eq!(m["verification_sid"], v["sid"]);
    assert_eq!(m["service_sid"], f.service.as_str());
    assert_eq!(m["code"].as_str().unwrap().len(), 6);
    assert_eq!(outbox["meta"]["key"], "messages");
    let other = b.get("/emulator/v1/Outbox").await.expect(200);
    assert_eq!(other["messages"].as_array().unwrap().len(), 0);
    server
        .anon()
        .get("/emulator/v1/Outbox")
        .await
        .expect_error(401, 20003);
    b.get(&format!("/emulator/v1/Services/{}/Usage", f.service))
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn the_clock_moves_forward_per_account_and_dates_follow_it() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let b = server.b();
    let before = a.get("/emulator/v1/Clock").await.expect(200);
    let moved = a
        .post_form("/emulator/v1/Clock", &[("Now", "2031-01-02T03:04:05Z")])
        .await
        .expect(200);
    assert_eq!(moved["now"], "2031-01-02T03:04:05Z");
    let s = a
        .post_form("/v2/Services", &[("FriendlyName", "t")])
        .await
        .expect(201);
    assert_eq!(s["date_created"], "2031-01-02T03:04:05Z");
    a.post_form("/emulator/v1/Clock", &[("Now", "2030-01-01T00:00:00Z")])
        .await
        .expect_error(400, 60200);
    a.post_form("/emulator/v1/Clock", &[("AdvanceSeconds", "-5")])
        .await
        .expect_error(400, 60200);
    a.post_form("/emulator/v1/Clock", &[])
        .await
        .expect_error(400, 20001);
    // B's clock did not move.
    let b_now = b.get("/emulator/v1/Clock").await.expect(200);
    assert!(b_now["now_ms"].as_i64().unwrap() < before["now_ms"].as_i64().unwrap() + 60_000);
}

#[tokio::test]
async fn reset_forgets_the_callers_state_and_nothing_else() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let b = server.b();
    let fa = service_with(&a, &[("ip", &[(1, 3600)])]).await;
    let fb = service_with(&b, &[("ip", &[(1, 3600)])]).await;
    start(&a, &fa.service, &phone(1), Some(r#"{"ip": "x"}"#))
        .await
        .expect(201);
    start(&b, &fb.service, &phone(1), Some(r#"{"ip": "x"}"#))
        .await
        .expect(201);
    advance(&a, 100).await;
    a.post_form("/emulator/v1/Reset", &[("Scope", "counters")])
        .await
        .expect(204);
    // Configuration kept, counters and codes gone, clock back.
    start(&a, &fa.service, &phone(2), Some(r#"{"ip": "x"}"#))
        .await
        .expect(201);
    assert_eq!(codes_sent_to(&a, &phone(1)).await.len(), 0);
    assert_eq!(
        a.get("/emulator/v1/Clock").await.expect(200)["offset_ms"],
        0
    );
    // B untouched.
    start(&b, &fb.service, &phone(2), Some(r#"{"ip": "x"}"#))
        .await
        .expect_error(429, 20429);
    a.post_form("/emulator/v1/Reset", &[]).await.expect(204);
    a.get(&format!("/v2/Services/{}", fa.service))
        .await
        .expect_error(404, 20404);
    b.get(&format!("/v2/Services/{}", fb.service))
        .await
        .expect(200);
}

#[tokio::test]
async fn usage_shows_count_remaining_and_next_slot_per_bucket_and_value() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(3, 60)])]).await;
    start(&c, &f.service, &phone(1), Some(r#"{"ip": "v1"}"#))
        .await
        .expect(201);
    start(&c, &f.service, &phone(2), Some(r#"{"ip": "v1"}"#))
        .await
        .expect(201);
    let usage = c
        .get(&format!("/emulator/v1/Services/{}/Usage", f.service))
        .await
        .expect(200);
    let row = &usage["usage"][0];
    assert_eq!(row["unique_name"], "ip");
    assert_eq!(row["value"], "v1");
    assert_eq!(row["count"], 2);
    assert_eq!(row["remaining"], 1);
    assert_eq!(row["max"], 3);
    assert_eq!(row["interval"], 60);
    assert!(row["next_slot_at"].is_string());
    advance(&c, 61).await;
    let usage = c
        .get(&format!("/emulator/v1/Services/{}/Usage", f.service))
        .await
        .expect(200);
    assert_eq!(usage["usage"].as_array().unwrap().len(), 0, "{usage}");
}

#[tokio::test]
async fn the_control_plane_can_be_switched_off() {
    let server = TestServer::start(ServerOptions::new().arg("--control-plane", false)).await;
    let c = server.a();
    for path in ["/emulator/v1/Outbox", "/emulator/v1/Clock"] {
        c.get(path).await.expect_error(404, 20404);
    }
    c.post_form("/emulator/v1/Reset", &[])
        .await
        .expect_error(404, 20404);
}
