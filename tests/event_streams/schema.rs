//! Real Event Streams responses validated against Twilio's own Events v1 OpenAPI document
//! (`tests/fixtures/twilio_events_v1.json`, Apache-2.0, see `tests/fixtures/NOTICE`), translated
//! to JSON Schema by `../common/openapi_schema.rs`: every property the spec lists required.

use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

use crate::harness::{Client, ServerOptions, TestServer};
use crate::openapi_schema::{self, assert_valid};
use crate::support::*;

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/twilio_events_v1.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
    })
}

/// The validator for an operation's JSON response (`GET /v1/Sinks` → 200, …).
fn response(path: &str, method: &str, status: &str) -> Validator {
    let schema = &spec()["paths"][path][method]["responses"][status]["content"]["application/json"]
        ["schema"];
    assert!(schema.is_object(), "no schema for {method} {path} {status}");
    openapi_schema::compile(spec(), schema, &[])
}

async fn check(
    c: &Client,
    method: &str,
    path: &str,
    spec_path: &str,
    status: u16,
    form: &[(&str, &str)],
) -> Value {
    let reply = match method {
        "get" => c.get(path).await,
        _ => c.post_form(path, form).await,
    };
    let body = reply.expect(status);
    assert_valid(
        &response(spec_path, method, &status.to_string()),
        &body,
        &format!("{} {path}", method.to_uppercase()),
    );
    body
}

#[test]
fn the_fixture_is_twilios_events_v1_document() {
    assert_eq!(spec()["info"]["title"], "Twilio - Events");
    assert!(spec()["paths"]["/v1/Sinks/{Sid}/Test"].is_object());
}

#[tokio::test]
async fn every_answer_matches_the_events_v1_spec() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let sink = check(
        &c,
        "post",
        "/v1/Sinks",
        "/v1/Sinks",
        201,
        &[
            ("Description", "d"),
            (
                "SinkConfiguration",
                r#"{"destination": "http://127.0.0.1:9/h", "method": "POST"}"#,
            ),
            ("SinkType", "webhook"),
        ],
    )
    .await;
    let sink_sid = sink["sid"].as_str().unwrap();
    let sink_path = format!("/v1/Sinks/{sink_sid}");
    check(&c, "get", "/v1/Sinks", "/v1/Sinks", 200, &[]).await;
    check(&c, "get", &sink_path, "/v1/Sinks/{Sid}", 200, &[]).await;
    check(
        &c,
        "post",
        &sink_path,
        "/v1/Sinks/{Sid}",
        200,
        &[("Description", "e")],
    )
    .await;
    check(
        &c,
        "post",
        &format!("{sink_path}/Test"),
        "/v1/Sinks/{Sid}/Test",
        201,
        &[],
    )
    .await;
    check(
        &c,
        "post",
        &format!("{sink_path}/Validate"),
        "/v1/Sinks/{Sid}/Validate",
        201,
        &[("TestId", "t")],
    )
    .await;

    let pending = format!(r#"{{"type": "{PENDING}", "schema_version": 3}}"#);
    let sub = check(
        &c,
        "post",
        "/v1/Subscriptions",
        "/v1/Subscriptions",
        201,
        &[
            ("Description", "d"),
            ("SinkSid", sink_sid),
            ("Types", &pending),
        ],
    )
    .await;
    let sub_path = format!("/v1/Subscriptions/{}", sub["sid"].as_str().unwrap());
    check(
        &c,
        "get",
        "/v1/Subscriptions",
        "/v1/Subscriptions",
        200,
        &[],
    )
    .await;
    check(&c, "get", &sub_path, "/v1/Subscriptions/{Sid}", 200, &[]).await;
    check(
        &c,
        "post",
        &sub_path,
        "/v1/Subscriptions/{Sid}",
        200,
        &[("Description", "e")],
    )
    .await;
    let events = format!("{sub_path}/SubscribedEvents");
    let events_spec = "/v1/Subscriptions/{SubscriptionSid}/SubscribedEvents";
    let one_spec = "/v1/Subscriptions/{SubscriptionSid}/SubscribedEvents/{Type}";
    check(&c, "post", &events, events_spec, 201, &[("Type", APPROVED)]).await;
    check(&c, "get", &events, events_spec, 200, &[]).await;
    check(
        &c,
        "get",
        &format!("{events}/{APPROVED}"),
        one_spec,
        200,
        &[],
    )
    .await;
    check(
        &c,
        "post",
        &format!("{events}/{APPROVED}"),
        one_spec,
        200,
        &[("SchemaVersion", "2")],
    )
    .await;

    check(&c, "get", "/v1/Types", "/v1/Types", 200, &[]).await;
    check(
        &c,
        "get",
        &format!("/v1/Types/{PENDING}"),
        "/v1/Types/{Type}",
        200,
        &[],
    )
    .await;
    let schema_path = "/v1/Schemas/AccountSecurity.VerifyEventStreamEvent";
    check(&c, "get", schema_path, "/v1/Schemas/{Id}", 200, &[]).await;
    check(
        &c,
        "get",
        &format!("{schema_path}/Versions"),
        "/v1/Schemas/{Id}/Versions",
        200,
        &[],
    )
    .await;
    check(
        &c,
        "get",
        &format!("{schema_path}/Versions/3"),
        "/v1/Schemas/{Id}/Versions/{SchemaVersion}",
        200,
        &[],
    )
    .await;
}
