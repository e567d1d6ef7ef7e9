//! The logs of a full flow never contain a secret or a recipient: no auth token, API key secret,
//! rejected password, phone number, email address or code.

use base64::Engine;

use crate::harness::*;
use crate::util::*;

const PHONE: &str = "+14155550199";
const EMAIL: &str = "log.marker+x@example.org";
const WRONG_PASSWORD: &str = "wrong-password-MARKER-8d1c";

async fn logs_of_a_full_flow(server: &mut TestServer) -> (String, Vec<(String, String)>) {
    let a = server.a();
    let Chain { service, .. } = create_chain(
        &a,
        &[("FriendlyName", "log-marker-7f3a"), ("CodeLength", "10")],
        &[("phone", &[(1, 60)])],
    )
    .await;
    // The phone number is also the rate-limited value; the second use of it is refused.
    let limit_phone = serde_json::json!({ "phone": PHONE }).to_string();
    let v = a
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[
                ("To", PHONE),
                ("Channel", "sms"),
                ("RateLimits", &limit_phone),
            ],
        )
        .await
        .expect(201);
    let sid = v["sid"].as_str().unwrap().to_owned();
    a.post_form(
        &format!("/v2/Services/{service}/Verifications"),
        &[
            ("To", EMAIL),
            ("Channel", "email"),
            ("RateLimits", &limit_phone),
        ],
    )
    .await
    .expect_error(429, 20429);
    let e = a
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[("To", EMAIL), ("Channel", "email")],
        )
        .await
        .expect(201);
    let email_sid = e["sid"].as_str().unwrap().to_owned();
    // An invalid start naming the recipient.
    let bad = a
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[("To", PHONE), ("Channel", "pigeon")],
        )
        .await;
    twilio_4xx(&bad);
    // Reading the codes back, with the recipient in the query string.
    let outbox = get(&a, &format!("/emulator/v1/Outbox?To={}", enc(PHONE)))
        .await
        .expect(200);
    let code = outbox["messages"][0]["code"].as_str().unwrap().to_owned();
    let email_code = code_of(&a, &email_sid).await;
    get(&a, &format!("/emulator/v1/Outbox?To={}", enc(EMAIL)))
        .await
        .expect(200);
    get(&a, &format!("/v2/Services/{service}/Verifications/{sid}"))
        .await
        .expect(200);
    // A wrong check, then the right one.
    let wrong = if email_code.starts_with('1') {
        "2"
    } else {
        "1"
    }
    .repeat(email_code.len());
    a.post_form(
        &format!("/v2/Services/{service}/VerificationCheck"),
        &[("To", EMAIL), ("Code", &wrong)],
    )
    .await
    .expect(200);
    let checked = a
        .post_form(
            &format!("/v2/Services/{service}/VerificationCheck"),
            &[("To", PHONE), ("Code", &code)],
        )
        .await;
    assert!(matches!(checked.status, 200 | 201), "{}", checked.body);
    assert_eq!(checked.json()["status"], "approved");
    a.post_form(
        &format!("/v2/Services/{service}/VerificationCheck"),
        &[("VerificationSid", &email_sid), ("Code", &email_code)],
    )
    .await;
    // API keys, good and bad; a wrong password.
    server.api_key().get("/v2/Services").await.expect(200);
    server
        .basic(API_KEY_SID, WRONG_PASSWORD)
        .get("/v2/Services")
        .await
        .expect_error(401, 20003);
    server
        .basic(ACCOUNT_A, WRONG_PASSWORD)
        .get("/v2/Services")
        .await
        .expect_error(401, 20003);
    server
        .basic(WRONG_PASSWORD, TOKEN_A)
        .get("/v2/Services")
        .await
        .expect_error(401, 20003);
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let forbidden = vec![
        ("the auth token", TOKEN_A.to_owned()),
        (
            "the auth token (Basic)",
            b64(&format!("{ACCOUNT_A}:{TOKEN_A}")),
        ),
        ("the API key secret", API_KEY_SECRET.to_owned()),
        (
            "the API key secret (Basic)",
            b64(&format!("{API_KEY_SID}:{API_KEY_SECRET}")),
        ),
        ("the wrong password", WRONG_PASSWORD.to_owned()),
        (
            "the wrong password (Basic)",
            b64(&format!("{ACCOUNT_A}:{WRONG_PASSWORD}")),
        ),
        ("the phone number", PHONE.to_owned()),
        ("the phone number (encoded)", enc(PHONE)),
        ("the phone number's digits", PHONE[1..].to_owned()),
        ("the email address", EMAIL.to_owned()),
        ("the email address (encoded)", enc(EMAIL)),
        (
            "the email address (form-encoded)",
            EMAIL.replace('+', "%2B").replace('@', "%40"),
        ),
        ("the code sent by SMS", code),
        ("the code sent by email", email_code),
    ];
    let logs = server.stderr();
    (
        logs,
        forbidden
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b))
            .collect(),
    )
}

fn assert_clean(logs: &str, forbidden: &[(String, String)], level: &str) {
    // The logs are there (one line per request at info), so their absence of secrets means something.
    assert!(
        logs.lines().count() >= 15,
        "too few log lines at {level} to judge: {logs}"
    );
    let leaks: Vec<String> = forbidden
        .iter()
        .filter(|(_, secret)| logs.contains(secret.as_str()))
        .map(|(what, secret)| {
            let line = logs
                .lines()
                .find(|l| l.contains(secret.as_str()))
                .unwrap_or_default();
            format!("{what} ({secret:?}) in: {}", shorten(line, 200))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "the logs at {level} leak:\n  {}",
        leaks.join("\n  ")
    );
}

#[tokio::test]
async fn logs_at_the_default_level_never_show_secrets_recipients_or_codes() {
    let mut server = TestServer::start(ServerOptions::new()).await;
    let (logs, forbidden) = logs_of_a_full_flow(&mut server).await;
    assert_clean(&logs, &forbidden, "the default level (info)");
}

#[tokio::test]
async fn logs_at_debug_level_never_show_secrets_recipients_or_codes() {
    let mut server = TestServer::start(ServerOptions::new().arg("--log", "debug")).await;
    let (logs, forbidden) = logs_of_a_full_flow(&mut server).await;
    assert_clean(&logs, &forbidden, "debug");
}
