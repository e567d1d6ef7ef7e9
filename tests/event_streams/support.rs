//! Shared steps: sinks, subscriptions, services and verifications as an SDK would make them.

use serde_json::{Value, json};

use crate::harness::Client;

pub const PENDING: &str = "com.twilio.accountsecurity.verify.verification.pending";
pub const APPROVED: &str = "com.twilio.accountsecurity.verify.verification.approved";
pub const CANCELED: &str = "com.twilio.accountsecurity.verify.verification.canceled";
pub const EXPIRED: &str = "com.twilio.accountsecurity.verify.verification.expired";
pub const MAX_ATTEMPTS: &str =
    "com.twilio.accountsecurity.verify.verification.max-attempts-reached";
pub const TEST_EVENT: &str = "com.twilio.eventstreams.test-event";
pub const VERIFY_TYPES: [&str; 5] = [PENDING, APPROVED, CANCELED, EXPIRED, MAX_ATTEMPTS];

/// A webhook sink (201 answer).
pub async fn create_sink(c: &Client, destination: &str) -> Value {
    let config = json!({ "destination": destination, "method": "POST", "batch_events": false });
    c.post_form(
        "/v1/Sinks",
        &[
            ("Description", "test sink"),
            ("SinkConfiguration", &config.to_string()),
            ("SinkType", "webhook"),
        ],
    )
    .await
    .expect(201)
}

/// A subscription of `sink` to `types`, sent as twilio-python does: one `Types` field per
/// element, each a JSON object with spaces after the separators.
pub async fn subscribe(c: &Client, sink: &str, types: &[&str]) -> Value {
    let encoded: Vec<String> = types
        .iter()
        .map(|t| format!("{{\"type\": \"{t}\", \"schema_version\": 3}}"))
        .collect();
    let mut form: Vec<(&str, &str)> = vec![("Description", "test subscription"), ("SinkSid", sink)];
    form.extend(encoded.iter().map(|t| ("Types", t.as_str())));
    c.post_form("/v1/Subscriptions", &form).await.expect(201)
}

/// A Verify service with `VerifyEventSubscriptionEnabled` as given; its SID.
pub async fn create_service(c: &Client, events: bool) -> String {
    let body = c
        .post_form(
            "/v2/Services",
            &[
                ("FriendlyName", "Event app"),
                (
                    "VerifyEventSubscriptionEnabled",
                    if events { "true" } else { "false" },
                ),
            ],
        )
        .await
        .expect(201);
    assert_eq!(body["verify_event_subscription_enabled"], events);
    body["sid"].as_str().unwrap().to_owned()
}

/// Starts (or re-sends) a verification by SMS; its SID.
pub async fn start(c: &Client, service: &str, to: &str) -> String {
    let body = c
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[("To", to), ("Channel", "sms")],
        )
        .await
        .expect(201);
    body["sid"].as_str().unwrap().to_owned()
}

/// The code last sent to `to`.
pub async fn latest_code(c: &Client, to: &str) -> String {
    let to = to.replace('+', "%2B");
    let body = c
        .get(&format!("/emulator/v1/Outbox?To={to}&PageSize=1000"))
        .await
        .expect(200);
    body["messages"]
        .as_array()
        .unwrap()
        .last()
        .expect("a code was sent")["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn check(c: &Client, service: &str, to: &str, code: &str) -> crate::harness::Reply {
    c.post_form(
        &format!("/v2/Services/{service}/VerificationCheck"),
        &[("To", to), ("Code", code)],
    )
    .await
}
