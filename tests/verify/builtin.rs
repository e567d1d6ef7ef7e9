//! Verify's own behaviour: codes, re-sends, send and check attempts, expiry, cancel and approve,
//! custom codes, and switching the built-in limits off.

use crate::harness::{ServerOptions, TestServer};
use crate::support::*;
use serde_json::Value;

#[tokio::test]
async fn a_start_while_pending_resends_the_same_code_and_sid() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = create_chain(&c, &[("FriendlyName", "x"), ("CodeLength", "8")], &[]).await;
    let first = start(&c, &f.service, &phone(1), None).await.expect(201);
    assert_eq!(first["status"], "pending");
    assert_eq!(first["valid"], false);
    assert_eq!(first["channel"], "sms");
    assert_eq!(first["to"], phone(1));
    assert_eq!(first["send_code_attempts"].as_array().unwrap().len(), 1);
    let second = start(&c, &f.service, &phone(1), None).await.expect(201);
    assert_eq!(second["sid"], first["sid"]);
    let attempts = second["send_code_attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_ne!(attempts[0]["attempt_sid"], attempts[1]["attempt_sid"]);
    let codes = codes_sent_to(&c, &phone(1)).await;
    assert_eq!(codes.len(), 2);
    assert_eq!(codes[0], codes[1]);
    assert_eq!(codes[0].len(), 8);
    assert!(codes[0].bytes().all(|b| b.is_ascii_digit()));
}

#[tokio::test]
async fn the_sixth_send_to_one_recipient_within_ten_minutes_is_refused_with_60203() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    for _ in 0..5 {
        start(&c, &f.service, &phone(1), None).await.expect(201);
    }
    start(&c, &f.service, &phone(1), None)
        .await
        .expect_error(429, 60203);
    start(&c, &f.service, &phone(2), None).await.expect(201);
    advance(&c, 601).await;
    // The first verification expired meanwhile: a new one starts.
    start(&c, &f.service, &phone(1), None).await.expect(201);
}

/// After kill -9 and a restart on the same database, a re-sent pending verification has every
/// send attempt, oldest first, and the send-attempts rule still counts the sends made before.
#[tokio::test]
async fn a_resent_verification_and_the_sends_it_counts_survive_kill_9_and_restart() {
    let mut server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let mut before = Value::Null;
    for _ in 0..3 {
        before = start(&c, &f.service, &phone(1), None).await.expect(201);
    }
    // Another recipient's sends, made before a verification that ended: they count too.
    for _ in 0..4 {
        start(&c, &f.service, &phone(2), None).await.expect(201);
    }
    let code = codes_sent_to(&c, &phone(2)).await.pop().unwrap();
    check(&c, &f.service, &phone(2), &code).await.expect(200);
    server.kill9();

    let server = TestServer::start(ServerOptions::new().database_of(&server)).await;
    let c = server.a();
    let sid = before["sid"].as_str().unwrap();
    let fetched = c
        .get(&format!("/v2/Services/{}/Verifications/{sid}", f.service))
        .await
        .expect(200);
    assert_eq!(fetched["send_code_attempts"], before["send_code_attempts"]);
    assert_eq!(fetched["send_code_attempts"].as_array().unwrap().len(), 3);
    // Two more sends to the first recipient, then the sixth within ten minutes is refused; the
    // second recipient has one send left.
    for _ in 0..2 {
        start(&c, &f.service, &phone(1), None).await.expect(201);
    }
    start(&c, &f.service, &phone(1), None)
        .await
        .expect_error(429, 60203);
    start(&c, &f.service, &phone(2), None).await.expect(201);
    start(&c, &f.service, &phone(2), None)
        .await
        .expect_error(429, 60203);
}

#[tokio::test]
async fn a_right_code_approves_and_the_verification_then_ends() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let v = start(&c, &f.service, &phone(1), None).await.expect(201);
    let sid = v["sid"].as_str().unwrap();
    let wrong = check(&c, &f.service, &phone(1), "000000x")
        .await
        .expect(200);
    assert_eq!(wrong["status"], "pending");
    assert_eq!(wrong["valid"], false);
    let code = codes_sent_to(&c, &phone(1)).await.pop().unwrap();
    let ok = check(&c, &f.service, &phone(1), &code).await.expect(200);
    assert_eq!(ok["status"], "approved");
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["sid"], sid);
    assert!(ok.get("url").is_none(), "a verification check has no url");
    c.get(&format!("/v2/Services/{}/Verifications/{sid}", f.service))
        .await
        .expect_error(404, 20404);
    check(&c, &f.service, &phone(1), &code)
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn five_wrong_checks_use_every_attempt_and_the_next_gets_60202() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    start(&c, &f.service, &phone(1), None).await.expect(201);
    let code = codes_sent_to(&c, &phone(1)).await.pop().unwrap();
    for _ in 0..5 {
        let r = check(&c, &f.service, &phone(1), "999999999")
            .await
            .expect(200);
        assert_eq!(r["status"], "pending");
    }
    check(&c, &f.service, &phone(1), &code)
        .await
        .expect_error(429, 60202);
    check(&c, &f.service, &phone(1), &code)
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn a_check_by_verification_sid_works_and_one_without_target_gets_60221() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let v = start(&c, &f.service, "someone@example.com", None).await;
    // email needs the email channel
    v.expect_error(400, 60200);
    let v = c
        .post_form(
            &format!("/v2/Services/{}/Verifications", f.service),
            &[("To", "someone@example.com"), ("Channel", "email")],
        )
        .await
        .expect(201);
    let sid = v["sid"].as_str().unwrap();
    let code = codes_sent_to(&c, "someone@example.com")
        .await
        .pop()
        .unwrap();
    c.post_form(
        &format!("/v2/Services/{}/VerificationCheck", f.service),
        &[("Code", &code)],
    )
    .await
    .expect_error(400, 60221);
    let ok = c
        .post_form(
            &format!("/v2/Services/{}/VerificationCheck", f.service),
            &[("VerificationSid", sid), ("Code", &code)],
        )
        .await
        .expect(200);
    assert_eq!(ok["status"], "approved");
    assert_eq!(ok["channel"], "email");
}

#[tokio::test]
async fn codes_expire_after_ten_minutes_of_the_accounts_clock() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let v = start(&c, &f.service, &phone(1), None).await.expect(201);
    let sid = v["sid"].as_str().unwrap();
    let code = codes_sent_to(&c, &phone(1)).await.pop().unwrap();
    advance(&c, 599).await;
    c.get(&format!("/v2/Services/{}/Verifications/{sid}", f.service))
        .await
        .expect(200);
    advance(&c, 2).await;
    c.get(&format!("/v2/Services/{}/Verifications/{sid}", f.service))
        .await
        .expect_error(404, 20404);
    check(&c, &f.service, &phone(1), &code)
        .await
        .expect_error(404, 20404);
    // A new start makes a new verification.
    let again = start(&c, &f.service, &phone(1), None).await.expect(201);
    assert_ne!(again["sid"], v["sid"]);
}

#[tokio::test]
async fn cancel_and_approve_end_a_verification_addressed_by_sid_or_to() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let v = start(&c, &f.service, &phone(1), None).await.expect(201);
    let sid = v["sid"].as_str().unwrap();
    let canceled = c
        .post_form(
            &format!("/v2/Services/{}/Verifications/{sid}", f.service),
            &[("Status", "canceled")],
        )
        .await
        .expect(200);
    assert_eq!(canceled["status"], "canceled");
    c.get(&format!("/v2/Services/{}/Verifications/{sid}", f.service))
        .await
        .expect_error(404, 20404);
    start(&c, &f.service, &phone(2), None).await.expect(201);
    let to = phone(2).replace('+', "%2B");
    let fetched = c
        .get(&format!("/v2/Services/{}/Verifications/{to}", f.service))
        .await
        .expect(200);
    assert_eq!(fetched["to"], phone(2));
    let approved = c
        .post_form(
            &format!("/v2/Services/{}/Verifications/{to}", f.service),
            &[("Status", "approved")],
        )
        .await
        .expect(200);
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["valid"], true);
    c.post_form(
        &format!("/v2/Services/{}/Verifications/{to}", f.service),
        &[("Status", "pending")],
    )
    .await
    .expect_error(400, 60200);
}

#[tokio::test]
async fn custom_codes_only_where_the_service_allows_them() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let plain = service_with(&c, &[]).await;
    c.post_form(
        &format!("/v2/Services/{}/Verifications", plain.service),
        &[
            ("To", &phone(1)),
            ("Channel", "sms"),
            ("CustomCode", "867530"),
        ],
    )
    .await
    .expect_error(400, 60200);
    let custom = create_chain(
        &c,
        &[("FriendlyName", "c"), ("CustomCodeEnabled", "true")],
        &[],
    )
    .await;
    c.post_form(
        &format!("/v2/Services/{}/Verifications", custom.service),
        &[
            ("To", &phone(1)),
            ("Channel", "sms"),
            ("CustomCode", "867530"),
        ],
    )
    .await
    .expect(201);
    assert_eq!(codes_sent_to(&c, &phone(1)).await, vec!["867530"]);
    let ok = check(&c, &custom.service, &phone(1), "867530")
        .await
        .expect(200);
    assert_eq!(ok["status"], "approved");
}

#[tokio::test]
async fn missing_and_invalid_parameters_of_a_start() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    let path = format!("/v2/Services/{}/Verifications", f.service);
    c.post_form(&path, &[("Channel", "sms")])
        .await
        .expect_error(400, 20001);
    c.post_form(&path, &[("To", &phone(1))])
        .await
        .expect_error(400, 20001);
    c.post_form(&path, &[("To", &phone(1)), ("Channel", "pigeon")])
        .await
        .expect_error(400, 60200);
    c.post_form(&path, &[("To", "5551234"), ("Channel", "sms")])
        .await
        .expect_error(400, 60200);
}

#[tokio::test]
async fn the_built_in_limits_can_be_switched_off() {
    let server = TestServer::start(
        ServerOptions::new()
            .arg("--send-attempts-limit", 0)
            .arg("--check-attempts-limit", 0),
    )
    .await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    for _ in 0..12 {
        start(&c, &f.service, &phone(1), None).await.expect(201);
    }
    for _ in 0..12 {
        check(&c, &f.service, &phone(1), "bad-code")
            .await
            .expect(200);
    }
    let code = codes_sent_to(&c, &phone(1)).await.pop().unwrap();
    assert_eq!(
        check(&c, &f.service, &phone(1), &code).await.expect(200)["status"],
        "approved"
    );
}
