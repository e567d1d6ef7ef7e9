//! verilimit's own OpenAPI document (`src/emulator/openapi.json`, served at
//! `GET /emulator/v1/openapi.json`) checked against the running server:
//! - it documents exactly the routes the router serves outside `/v2` (listed in [`ROUTES`]);
//! - every GET answers 200 with a body that validates against the documented schema, every POST
//!   answers as documented, and the documented 400 / 401 / 404 answers happen and carry Twilio's
//!   error body as documented;
//! - every field of every real JSON response is documented and required (removing any one of
//!   them makes the response invalid), except the few listed in [`OPTIONAL`];
//! - with `--control-plane=false` the control-plane operations answer 404 and the operations
//!   endpoints stay up, as the document says.
//!
//! OpenAPI 3.0 schemas are translated to JSON Schema 2020-12 by `../common/openapi_schema.rs`,
//! as for `../api/schema.rs`: every listed property becomes required, except [`OPTIONAL`].

use std::collections::BTreeSet;

use jsonschema::Validator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Client, Reply, ServerOptions, TestServer};
use crate::openapi_schema::{self, assert_valid};
use crate::support::*;

/// Every route outside the Twilio surface, as the router registers it (`src/lib.rs`,
/// `src/emulator/mod.rs`, `src/ui/mod.rs`, `src/tls.rs`; the dashboard's assets under `/ui/` are described in
/// the `/ui` operation).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/emulator/v1/Outbox"),
    ("get", "/emulator/v1/Clock"),
    ("post", "/emulator/v1/Clock"),
    ("post", "/emulator/v1/Reset"),
    ("get", "/emulator/v1/Services/{ServiceSid}/Usage"),
    ("get", "/emulator/v1/Export"),
    ("get", "/emulator/v1/Events"),
    ("post", "/emulator/v1/Maintenance"),
    ("get", "/emulator/v1/openapi.json"),
    ("get", "/emulator/v1/Devices"),
    ("post", "/emulator/v1/Devices"),
    ("get", "/emulator/v1/Devices/{Id}"),
    ("post", "/emulator/v1/Devices/{Id}/Sign"),
    (
        "post",
        "/emulator/v1/Devices/{Id}/Factors/{FactorSid}/Verify",
    ),
    ("get", "/emulator/v1/Devices/{Id}/Challenges"),
    (
        "post",
        "/emulator/v1/Devices/{Id}/Challenges/{ChallengeSid}",
    ),
    ("get", "/emulator/v1/ca.pem"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/ui"),
];

/// This document's own path: its body is checked against the document, but its nested objects
/// are not described field by field.
const SELF_PATH: &str = "/emulator/v1/openapi.json";

/// Properties a real response may leave out: (component schema, property). The document must
/// list every other property of every component as required.
const OPTIONAL: &[(&str, &str)] = &[
    ("ExportRateLimit", "description"),
    ("Device", "factor_sids"),
];

/// The same properties as JSON pointers into responses (`*` for any array index).
const OPTIONAL_POINTERS: &[&str] = &[
    "/services/*/rate_limits/*/description",
    "/factor_sids",
    "/devices/*/factor_sids",
];

/// A form body for each documented POST (the happy path); `{Param}` in a value is replaced
/// like a path parameter.
const POST_FORMS: &[(&str, &[(&str, &str)])] = &[
    ("/emulator/v1/Clock", &[("AdvanceSeconds", "1")]),
    ("/emulator/v1/Maintenance", &[]),
    ("/emulator/v1/Devices", &[]),
    (
        "/emulator/v1/Devices/{Id}/Sign",
        &[("Message", "{FactorSid}")],
    ),
    (
        "/emulator/v1/Devices/{Id}/Factors/{FactorSid}/Verify",
        &[("ServiceSid", "{ServiceSid}"), ("Identity", "{Identity}")],
    ),
    (
        "/emulator/v1/Devices/{Id}/Challenges/{ChallengeSid}",
        &[("Status", "approved")],
    ),
    ("/emulator/v1/Reset", &[("Scope", "counters")]),
];

/// A request per operation that documents a 400, and the Twilio code it must get:
/// (method, path, query string or form body, code).
const BAD_REQUESTS: &[(&str, &str, &str, u64)] = &[
    ("get", "/emulator/v1/Outbox", "PageSize=0", 60200),
    ("post", "/emulator/v1/Clock", "", 20001),
    ("post", "/emulator/v1/Reset", "Scope=bogus", 60200),
    ("get", "/emulator/v1/Events", "PageSize=0", 60200),
    ("post", "/emulator/v1/Devices/{Id}/Sign", "", 20001),
    (
        "post",
        "/emulator/v1/Devices/{Id}/Factors/{FactorSid}/Verify",
        "",
        20001,
    ),
    (
        "post",
        "/emulator/v1/Devices/{Id}/Challenges/{ChallengeSid}",
        "Status=pending",
        60200,
    ),
];

const SOURCE: &str = include_str!("../../src/emulator/openapi.json");

/// The options with `--tls` on a free port.
fn tls(options: ServerOptions) -> ServerOptions {
    options.raw_arg("--tls").arg("--tls-listen", "127.0.0.1:0")
}

fn source_document() -> Value {
    serde_json::from_str(SOURCE).expect("src/emulator/openapi.json is JSON")
}

// ---------------------------------------------------------------------------------------------
// OpenAPI 3.0 → JSON Schema 2020-12 (`../common/openapi_schema.rs`)

/// A validator for `schema` (a schema of `doc`): every property required but [`OPTIONAL`].
fn compile(doc: &Value, schema: &Value) -> Validator {
    openapi_schema::compile(doc, schema, OPTIONAL)
}

fn is_optional(component: Option<&str>, property: &str) -> bool {
    component.is_some_and(|c| OPTIONAL.contains(&(c, property)))
}

// ---------------------------------------------------------------------------------------------
// Reading the document

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// (method, path) of every documented operation.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                ops.insert((method.to_owned(), path.clone()));
            }
        }
    }
    ops
}

/// A response object, following a `#/components/responses/X` reference.
fn response<'a>(doc: &'a Value, op: &'a Value, status: &str) -> Option<&'a Value> {
    let r = op["responses"].get(status)?;
    match r.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/responses/")
                .unwrap_or_else(|| panic!("unexpected response $ref {reference}"));
            let resolved = &doc["components"]["responses"][name];
            assert!(resolved.is_object(), "dangling $ref {reference}");
            Some(resolved)
        }
        None => Some(r),
    }
}

/// The single media type of a response and its schema.
fn media<'a>(response: &'a Value, what: &str) -> (&'a str, &'a Value) {
    let content = response["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no content"));
    assert_eq!(content.len(), 1, "{what}: one media type expected");
    let (media_type, body) = content.iter().next().unwrap();
    (media_type.as_str(), &body["schema"])
}

/// Whether the operation needs credentials (the document's default unless it says otherwise).
fn needs_credentials(doc: &Value, op: &Value) -> bool {
    let security = op.get("security").unwrap_or(&doc["security"]);
    !security.as_array().is_some_and(|s| s.is_empty())
}

/// The path with every `{Param}` replaced by its value.
fn concrete<V: AsRef<str>>(path: &str, params: &[(&str, V)]) -> String {
    let mut out = path.to_owned();
    for (name, value) in params {
        out = out.replace(&format!("{{{name}}}"), value.as_ref());
    }
    assert!(!out.contains('{'), "no value for a parameter of {path}");
    out
}

async fn call(c: &Client, method: &str, path: &str, input: &str) -> Reply {
    match method {
        "get" if input.is_empty() => c.get(path).await,
        "get" => c.get(&format!("{path}?{input}")).await,
        "post" => c.post_raw(path, input).await,
        other => panic!("no call for method {other}"),
    }
}

/// The body as the instance to validate: JSON for JSON, else the text as a JSON string.
#[track_caller]
fn instance(reply: &Reply, media_type: &str) -> Value {
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with(media_type),
        "{} {}: Content-Type {content_type:?}, documented {media_type}",
        reply.method,
        reply.url
    );
    if media_type == "application/json" {
        reply.json()
    } else {
        Value::String(reply.body.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Deep checks of real responses

/// Every key of every object in `v`, as JSON pointer segments.
fn key_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(k.clone());
                out.push(prefix.clone());
                key_paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(i.to_string());
                key_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn pointer(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{s}")).collect()
}

fn pattern(segments: &[String]) -> String {
    segments
        .iter()
        .map(|s| {
            if s.bytes().all(|b| b.is_ascii_digit()) {
                "/*".to_owned()
            } else {
                format!("/{s}")
            }
        })
        .collect()
}

fn without(v: &Value, segments: &[String]) -> Value {
    let mut copy = v.clone();
    let (last, parent) = segments.split_last().expect("a key path");
    copy.pointer_mut(&pointer(parent))
        .and_then(Value::as_object_mut)
        .expect("the parent object")
        .remove(last);
    copy
}

/// Every field of a real response is documented and required: without it, the response is
/// invalid. Also, no array is empty, so every item schema was exercised.
fn assert_every_field_documented(validator: &Validator, body: &Value, what: &str) {
    let mut paths = Vec::new();
    key_paths(body, &mut Vec::new(), &mut paths);
    assert!(!paths.is_empty(), "{what}: an empty object proves nothing");
    for segments in &paths {
        if OPTIONAL_POINTERS.contains(&pattern(segments).as_str()) {
            continue;
        }
        assert!(
            !validator.is_valid(&without(body, segments)),
            "{what}: {} is in the response but the document does not require it \
             (undocumented, or documented as optional)",
            pointer(segments)
        );
    }
    fn empty_arrays(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Array(items) if items.is_empty() => out.push(at),
            Value::Array(items) => {
                for (i, c) in items.iter().enumerate() {
                    empty_arrays(c, format!("{at}/{i}"), out);
                }
            }
            Value::Object(map) => {
                for (k, c) in map {
                    empty_arrays(c, format!("{at}/{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut empty = Vec::new();
    empty_arrays(body, String::new(), &mut empty);
    assert!(
        empty.is_empty(),
        "{what}: empty arrays at {empty:?}; the test's setup must give them items so their \
         schemas are checked"
    );
}

// ---------------------------------------------------------------------------------------------
// The tests

/// A service with two rate limits (one with a description, one without), one admitted start
/// and one refused start: every list of the control plane then has items, and nullable fields
/// occur both null and set.
async fn populate(a: &Client) -> String {
    let f = service_with(a, &[("ip", &[(1, 60)])]).await;
    let service = f.service.clone();
    add_rate_limit(
        a,
        &service,
        &[("UniqueName", "session"), ("Description", "Per session")],
        &[(5, 600)],
    )
    .await;
    start(
        a,
        &service,
        &phone(1),
        Some(r#"{"ip": "203.0.113.7", "session": "s-1"}"#),
    )
    .await
    .expect(201);
    start(
        a,
        &service,
        &phone(2),
        Some(r#"{"ip": "203.0.113.7", "session": "s-2"}"#),
    )
    .await
    .expect_error(429, 20429);
    service
}

/// Unknown SIDs for every path parameter (`service`: an unknown or other service).
fn unknown_params(service: &str) -> [(&str, String); 5] {
    [
        ("ServiceSid", service.to_owned()),
        ("Id", format!("DV{}", "f".repeat(32))),
        ("FactorSid", format!("YF{}", "f".repeat(32))),
        ("ChallengeSid", format!("YC{}", "f".repeat(32))),
        ("Identity", DEVICE_IDENTITY.to_owned()),
    ]
}

/// The identity of the simulated device's factor.
const DEVICE_IDENTITY: &str = "ff483d1ff591898a9942916050d2ca3f";

/// A simulated device with a verified push factor of `service` and one pending challenge
/// (with a detail field, so no list is empty): (device id, factor SID, challenge SID).
async fn populate_device(a: &Client, service: &str) -> (String, String, String) {
    let device = a.post_form("/emulator/v1/Devices", &[]).await.expect(201);
    let id = device["id"].as_str().unwrap().to_owned();
    let factors = format!("/v2/Services/{service}/Entities/{DEVICE_IDENTITY}/Factors");
    let f = a
        .post_form(
            &factors,
            &[
                ("FriendlyName", "Simulated"),
                ("FactorType", "push"),
                ("Binding.PublicKey", device["public_key"].as_str().unwrap()),
                ("Binding.Alg", "ES256"),
                ("Config.SdkVersion", "0.12.0"),
                ("Config.AppId", "com.example.app"),
                ("Config.NotificationPlatform", "none"),
            ],
        )
        .await
        .expect(201);
    let yf = f["sid"].as_str().unwrap().to_owned();
    a.post_form(
        &format!("/emulator/v1/Devices/{id}/Factors/{yf}/Verify"),
        &[("ServiceSid", service), ("Identity", DEVICE_IDENTITY)],
    )
    .await
    .expect(200);
    let c = a
        .post_form(
            &format!("/v2/Services/{service}/Entities/{DEVICE_IDENTITY}/Challenges"),
            &[
                ("FactorSid", &yf),
                ("Details.Message", "Log in?"),
                ("Details.Fields", r#"{"label": "IP", "value": "10.0.0.1"}"#),
            ],
        )
        .await
        .expect(201);
    (id, yf, c["sid"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_openapi_document_matches_the_router_and_real_responses() {
    // With --tls, so that every documented route answers (`/emulator/v1/ca.pem` needs it).
    let server = TestServer::start(tls(ServerOptions::new())).await;
    let a = server.a();
    let service = populate(&a).await;
    let (device, factor, challenge) = populate_device(&a, &service).await;
    let params = [
        ("ServiceSid", service.as_str()),
        ("Id", device.as_str()),
        ("FactorSid", factor.as_str()),
        ("ChallengeSid", challenge.as_str()),
        ("Identity", DEVICE_IDENTITY),
    ];

    // The document, with account A's credentials.
    let reply = a.get(SELF_PATH).await;
    let doc = reply.expect(200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{SELF_PATH}: Content-Type {:?}",
        reply.header("content-type")
    );
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "openapi is {}",
        doc["openapi"]
    );
    assert_eq!(
        doc,
        source_document(),
        "served document != src/emulator/openapi.json"
    );
    assert!(
        doc["info"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("https://github.com/twilio/twilio-oai")
                && d.contains("spec/json/twilio_verify_v2.json")),
        "info.description must point to Twilio's spec for /v2"
    );

    // Exactly the router's routes.
    let documented = operations(&doc);
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes not in the document: {undocumented:?}"
    );
    assert!(phantom.is_empty(), "documented but not routed: {phantom:?}");

    // The document is consistent: each component lists as required exactly the properties
    // responses always carry; request bodies are form encoded; Basic is the security scheme.
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let expected: BTreeSet<&str> = properties
            .keys()
            .map(String::as_str)
            .filter(|p| !is_optional(Some(name), p))
            .collect();
        let listed: BTreeSet<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(listed, expected, "required properties of {name}");
    }
    for (method, path) in &documented {
        if let Some(content) = doc["paths"][path][method]["requestBody"]["content"].as_object() {
            let types: Vec<&String> = content.keys().collect();
            assert_eq!(
                types,
                ["application/x-www-form-urlencoded"],
                "{method} {path} request body"
            );
        }
    }
    let basic = &doc["components"]["securitySchemes"]["basicAuth"];
    assert_eq!(
        (&basic["type"], &basic["scheme"]),
        (&json!("http"), &json!("basic"))
    );
    assert_eq!(doc["security"], json!([{"basicAuth": []}]));

    // Every GET answers 200 with what the document says.
    let gets: Vec<&String> = documented
        .iter()
        .filter(|(m, _)| m == "get")
        .map(|(_, p)| p)
        .collect();
    for path in &gets {
        let op = &doc["paths"][path.as_str()]["get"];
        let what = format!("GET {path}");
        let ok = response(&doc, op, "200").unwrap_or_else(|| panic!("{what}: no 200"));
        let (media_type, schema) = media(ok, &what);
        let validator = compile(&doc, schema);
        let reply = a.get(&concrete(path, &params)).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.body);
        let body = instance(&reply, media_type);
        assert_valid(&validator, &body, &what);
        if media_type == "application/json" && path.as_str() != SELF_PATH {
            assert_every_field_documented(&validator, &body, &what);
        }
        if media_type != "application/json" {
            assert!(!reply.body.is_empty(), "{what}: empty body");
        }
    }

    // A wrong type is caught too (the validation is not vacuous).
    let clock_schema = media(
        response(&doc, &doc["paths"]["/emulator/v1/Clock"]["get"], "200").unwrap(),
        "clock",
    )
    .1;
    let clock_validator = compile(&doc, clock_schema);
    let mut clock = a.get("/emulator/v1/Clock").await.expect(200);
    assert_valid(&clock_validator, &clock, "the clock");
    clock["offset_ms"] = json!("0");
    assert!(
        !clock_validator.is_valid(&clock),
        "a string offset_ms must be refused"
    );

    // Documented 400s happen, with the documented body.
    let documents_400: BTreeSet<(String, String)> = documented
        .iter()
        .filter(|(m, p)| doc["paths"][p][m]["responses"].get("400").is_some())
        .cloned()
        .collect();
    let tested_400: BTreeSet<(String, String)> = BAD_REQUESTS
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documents_400, tested_400,
        "operations documenting a 400 vs BAD_REQUESTS"
    );
    for (method, path, input, code) in BAD_REQUESTS {
        let op = &doc["paths"][*path][*method];
        let what = format!("{method} {path} ({input:?})");
        let (_, schema) = media(response(&doc, op, "400").unwrap(), &what);
        let reply = call(&a, method, &concrete(path, &params), input).await;
        let body = reply.expect_error(400, *code);
        assert_valid(&compile(&doc, schema), &body, &what);
    }

    // Documented 404s: an unknown service.
    let unknown = format!("VA{}", "f".repeat(32));
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let Some(not_found) = response(&doc, op, "404") else {
            continue;
        };
        let what = format!("{method} {path} (unknown SID)");
        let (_, schema) = media(not_found, &what);
        let reply = call(&a, method, &concrete(path, &unknown_params(&unknown)), "").await;
        let body = reply.expect_error(404, 20404);
        assert_valid(&compile(&doc, schema), &body, &what);
    }

    // Credentials: 401 with the documented body wherever the document asks for them.
    let anon = server.anon();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let what = format!("{method} {path} without credentials");
        let reply = call(&anon, method, &concrete(path, &params), "").await;
        if needs_credentials(&doc, op) {
            let unauthorized =
                response(&doc, op, "401").unwrap_or_else(|| panic!("{what}: no 401 documented"));
            let (_, schema) = media(unauthorized, &what);
            let body = reply.expect_error(401, 20003);
            assert_valid(&compile(&doc, schema), &body, &what);
            assert!(
                reply
                    .header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Basic")),
                "{what}: no Basic challenge"
            );
        } else {
            assert_eq!(reply.status, 200, "{what}: {}", reply.body);
        }
    }

    // Every POST answers as documented (last: Reset forgets the state the GETs read).
    let posts: Vec<&String> = documented
        .iter()
        .filter(|(m, _)| m == "post")
        .map(|(_, p)| p)
        .collect();
    let with_forms: BTreeSet<&str> = POST_FORMS.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        posts.iter().map(|p| p.as_str()).collect::<BTreeSet<_>>(),
        with_forms,
        "documented POSTs vs POST_FORMS"
    );
    for (path, form) in POST_FORMS {
        let op = &doc["paths"][*path]["post"];
        let what = format!("POST {path}");
        let values: Vec<String> = form.iter().map(|(_, v)| concrete(v, &params)).collect();
        let form: Vec<(&str, &str)> = form
            .iter()
            .zip(&values)
            .map(|((k, _), v)| (*k, v.as_str()))
            .collect();
        let reply = a.post_form(&concrete(path, &params), &form).await;
        let created = response(&doc, op, "201").map(|r| (r, 201));
        if let Some((ok, status)) = response(&doc, op, "200").map(|r| (r, 200)).or(created) {
            let (media_type, schema) = media(ok, &what);
            assert_eq!(reply.status, status, "{what}: {}", reply.body);
            let body = instance(&reply, media_type);
            let validator = compile(&doc, schema);
            assert_valid(&validator, &body, &what);
            assert_every_field_documented(&validator, &body, &what);
        } else {
            assert!(
                response(&doc, op, "204").is_some(),
                "{what}: neither 200, 201 nor 204 documented"
            );
            assert_eq!(reply.status, 204, "{what}: {}", reply.body);
            assert!(reply.body.is_empty(), "{what}: a 204 with a body");
        }
    }
}

#[tokio::test]
async fn with_the_control_plane_off_its_documented_operations_answer_404() {
    let server = TestServer::start(tls(ServerOptions::new()).arg("--control-plane", false)).await;
    let a = server.a();
    let doc = source_document();
    let service = service_with(&a, &[]).await.service;
    let params = unknown_params(&service);
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let tags: Vec<&str> = op["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let reply = call(&a, &method, &concrete(&path, &params), "").await;
        let what = format!("{method} {path} with --control-plane=false");
        match tags.as_slice() {
            ["Control plane"] => {
                reply.expect_error(404, 20404);
            }
            ["Operations"] => assert_eq!(reply.status, 200, "{what}: {}", reply.body),
            other => panic!("{what}: unexpected tags {other:?}"),
        }
    }
    // The dashboard's assets go with it.
    for asset in ["/ui/", "/ui/app.js", "/ui/app.css", "/ui/favicon.svg"] {
        a.send(a.request(Method::GET, asset))
            .await
            .expect_error(404, 20404);
    }
}
