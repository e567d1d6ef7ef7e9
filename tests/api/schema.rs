//! Real responses validated against Twilio's own OpenAPI schemas
//! (`tests/fixtures/twilio_verify_v2.json`, Apache-2.0, see `tests/fixtures/NOTICE`).
//!
//! OpenAPI 3.0 schemas are not quite JSON Schema, so they are translated in memory:
//! `nullable: true` becomes a `"null"` member of `type` (and of `enum`), `#/components/schemas/X`
//! references point into a root document's `$defs`. Two deliberate choices:
//! - every property the spec lists is `required`: the SDKs read each one, so each must be present
//!   (null is fine where the spec says nullable);
//! - `additionalProperties` is left exactly as the spec has it (it never forbids extras), so the
//!   validation is no stricter about unknown keys than Twilio's own spec.

use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use serde_json::{Map, Value, json};

use crate::harness::{ServerOptions, TestServer};
use crate::helpers::*;

const SERVICE: &str = "verify.v2.service";
const RATE_LIMIT: &str = "verify.v2.service.rate_limit";
const BUCKET: &str = "verify.v2.service.rate_limit.bucket";

const SERVICES_PATH: &str = "/v2/Services";
const SERVICE_PATH: &str = "/v2/Services/{Sid}";
const RATE_LIMITS_PATH: &str = "/v2/Services/{ServiceSid}/RateLimits";
const RATE_LIMIT_PATH: &str = "/v2/Services/{ServiceSid}/RateLimits/{Sid}";
const BUCKETS_PATH: &str = "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets";
const BUCKET_PATH: &str = "/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets/{Sid}";

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/twilio_verify_v2.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
    })
}

/// Translates one OpenAPI 3.0 schema (recursively) into JSON Schema 2020-12.
fn translate(schema: &Value) -> Value {
    match schema {
        Value::Array(items) => Value::Array(items.iter().map(translate).collect()),
        Value::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object {
                match key.as_str() {
                    "nullable" => {}
                    // Examples are data, not schemas: keep them out of the translation.
                    "example" | "examples" => {}
                    "$ref" => {
                        let reference = value.as_str().unwrap_or_default();
                        let name = reference
                            .strip_prefix("#/components/schemas/")
                            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
                        out.insert(key.clone(), Value::from(format!("#/$defs/{name}")));
                    }
                    // A map from property names to schemas: translate each schema, keep names.
                    "properties" => {
                        let properties = value
                            .as_object()
                            .expect("properties is an object")
                            .iter()
                            .map(|(name, s)| (name.clone(), translate(s)))
                            .collect();
                        out.insert(key.clone(), Value::Object(properties));
                    }
                    _ => {
                        out.insert(key.clone(), translate(value));
                    }
                }
            }
            if object.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(ty)) = out.get("type").cloned() {
                    out.insert("type".into(), json!([ty, "null"]));
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    if !values.contains(&Value::Null) {
                        values.push(Value::Null);
                    }
                }
            }
            // Every listed property must be present.
            if let Some(Value::Object(properties)) = out.get("properties") {
                let mut required: Vec<Value> = out
                    .get("required")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for name in properties.keys() {
                    let name = Value::from(name.clone());
                    if !required.contains(&name) {
                        required.push(name);
                    }
                }
                out.insert("required".into(), Value::Array(required));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// A root document holding every component schema under `$defs`, validating against `schema`.
fn root_document(schema: &Value) -> Value {
    let components = spec()["components"]["schemas"]
        .as_object()
        .expect("components.schemas");
    let defs: Map<String, Value> = components
        .iter()
        .map(|(name, s)| (name.clone(), translate(s)))
        .collect();
    let mut root = translate(schema)
        .as_object()
        .cloned()
        .expect("schema is an object");
    root.insert(
        "$schema".into(),
        Value::from("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert("$defs".into(), Value::Object(defs));
    Value::Object(root)
}

fn compile(schema: &Value) -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root_document(schema))
        .unwrap_or_else(|e| panic!("the translated schema does not compile: {e}"))
}

/// The validator for one component schema (`verify.v2.service`, …).
fn component(name: &str) -> Validator {
    assert!(
        spec()["components"]["schemas"].get(name).is_some(),
        "no component {name}"
    );
    compile(&json!({"$ref": format!("#/components/schemas/{name}")}))
}

/// The validator for an operation's JSON response (`GET /v2/Services` → 200, …).
fn response(path: &str, method: &str, status: &str) -> Validator {
    compile(response_schema(path, method, status))
}

fn response_schema<'a>(path: &str, method: &str, status: &str) -> &'a Value {
    let schema = &spec()["paths"][path][method]["responses"][status]["content"]["application/json"]
        ["schema"];
    assert!(schema.is_object(), "no schema for {method} {path} {status}");
    schema
}

/// Errors of `instance` against `validator`, one line each.
fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path.to_string()))
        .collect()
}

#[track_caller]
fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors = errors(validator, instance);
    assert!(
        errors.is_empty(),
        "{what} does not match Twilio's schema:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(instance).unwrap_or_default()
    );
}

#[test]
fn the_spec_fixture_is_twilios_openapi_document() {
    // tests/fixtures/twilio_verify_v2.json is the project's copy of Twilio's official Verify v2
    // OpenAPI document (twilio-oai); what the suite checks never depends on the folder it runs in.
    assert_eq!(spec()["openapi"], "3.0.1");
    assert!(
        spec()["paths"]["/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets"].is_object(),
        "the fixture lacks the Buckets path"
    );
}

#[test]
fn the_specs_own_examples_match_the_translated_schemas() {
    let mut checked = 0;
    for path in [
        SERVICES_PATH,
        SERVICE_PATH,
        RATE_LIMITS_PATH,
        RATE_LIMIT_PATH,
        BUCKETS_PATH,
        BUCKET_PATH,
    ] {
        for (method, operation) in spec()["paths"][path].as_object().expect("path item") {
            let Some(responses) = operation.get("responses").and_then(Value::as_object) else {
                continue;
            };
            for (status, response) in responses {
                let content = &response["content"]["application/json"];
                let Some(examples) = content.get("examples").and_then(Value::as_object) else {
                    continue;
                };
                let validator = compile(&content["schema"]);
                for (name, example) in examples {
                    assert_valid(
                        &validator,
                        &example["value"],
                        &format!("example {name} of {method} {path} {status}"),
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 13, "only {checked} examples checked");
}

#[test]
fn the_translated_schemas_are_not_vacuous() {
    let service = component(SERVICE);
    let example = &response_schema_example(SERVICE_PATH, "get", "200", "fetchRecord");
    assert_valid(&service, example, "the fetchRecord example");

    let mut missing = example.clone();
    missing.as_object_mut().unwrap().remove("links");
    assert!(
        !errors(&service, &missing).is_empty(),
        "a missing property is an error"
    );

    let mut null_sid = example.clone();
    null_sid["sid"] = Value::Null;
    assert_valid(&service, &null_sid, "a null sid (the spec says nullable)");

    for (key, bad) in [
        ("sid", json!(5)),
        ("sid", json!("VAnot-hex")),
        ("code_length", json!(null)),
        ("code_length", json!("4")),
        ("lookup_enabled", json!("false")),
        ("url", json!(7)),
        ("date_created", json!("yesterday")),
    ] {
        let mut wrong = example.clone();
        wrong[key] = bad.clone();
        assert!(
            !errors(&service, &wrong).is_empty(),
            "{key} = {bad} must be rejected"
        );
    }

    // Extra keys are not rejected: the spec does not forbid them.
    let mut extra = example.clone();
    extra["something_new"] = json!(true);
    assert_valid(&service, &extra, "a service with an extra key");

    let list = response(BUCKETS_PATH, "get", "200");
    let mut envelope = response_schema_example(BUCKETS_PATH, "get", "200", "readEmpty");
    assert_valid(&list, &envelope, "the readEmpty example");
    envelope["meta"]
        .as_object_mut()
        .unwrap()
        .remove("next_page_url");
    assert!(
        !errors(&list, &envelope).is_empty(),
        "meta.next_page_url is required"
    );
}

fn response_schema_example(path: &str, method: &str, status: &str, name: &str) -> Value {
    spec()["paths"][path][method]["responses"][status]["content"]["application/json"]["examples"]
        [name]["value"]
        .clone()
}

#[tokio::test]
async fn services_match_the_service_schema() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let service = component(SERVICE);

    let minimal = create_service(&a, "Minimal").await;
    assert_valid(&service, &minimal, "a minimal created service");
    let full = a
        .post_form(
            "/v2/Services",
            &[
                ("FriendlyName", "Full"),
                ("CodeLength", "8"),
                ("LookupEnabled", "true"),
                ("CustomCodeEnabled", "true"),
                ("Push.IncludeDate", "true"),
                (
                    "Push.ApnCredentialSid",
                    "CRaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                ),
                ("Totp.Issuer", "issuer"),
                ("Totp.TimeStep", "30"),
                ("Totp.CodeLength", "6"),
                ("Totp.Skew", "1"),
                ("DefaultTemplateSid", "HJaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
                (
                    "Whatsapp.MsgServiceSid",
                    "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                ),
                ("Whatsapp.From", "whatsapp:+1234567890"),
                ("Passkeys.RelyingParty.Id", "example.com"),
                ("VerifyEventSubscriptionEnabled", "true"),
            ],
        )
        .await
        .expect(201);
    assert_valid(&service, &full, "a created service with every setting");

    let path = service_path(&str_of(&full["sid"]));
    let fetched = a.get(&path).await.expect(200);
    assert_valid(&service, &fetched, "a fetched service");
    let updated = a
        .post_form(&path, &[("FriendlyName", "Updated")])
        .await
        .expect(200);
    assert_valid(&service, &updated, "an updated service");

    let list = response(SERVICES_PATH, "get", "200");
    let page = a.get("/v2/Services?PageSize=1").await.expect(200);
    assert_valid(&list, &page, "a services page with a next page");
    let next = page["meta"]["next_page_url"].as_str().expect("next page");
    let last = a.get(next).await.expect(200);
    assert_valid(&list, &last, "the last services page");

    let empty = server.b().get("/v2/Services").await.expect(200);
    assert_valid(&list, &empty, "an empty services list");
}

#[tokio::test]
async fn rate_limits_match_the_rate_limit_schema() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let rate_limit = component(RATE_LIMIT);
    let list = response(RATE_LIMITS_PATH, "get", "200");
    let vs = str_of(&create_service(&a, "Schema").await["sid"]);

    let empty = a.get(&rate_limits_path(&vs)).await.expect(200);
    assert_valid(&list, &empty, "an empty rate limits list");

    let bare = create_rate_limit(&a, &vs, "no_description").await;
    assert_valid(&rate_limit, &bare, "a rate limit without description");
    let described = a
        .post_form(
            &rate_limits_path(&vs),
            &[("UniqueName", "ip"), ("Description", "By IP")],
        )
        .await
        .expect(201);
    assert_valid(&rate_limit, &described, "a created rate limit");
    let path = rate_limit_path(&vs, &str_of(&described["sid"]));
    assert_valid(
        &rate_limit,
        &a.get(&path).await.expect(200),
        "a fetched rate limit",
    );
    assert_valid(
        &rate_limit,
        &a.post_form(&path, &[("Description", "Changed")])
            .await
            .expect(200),
        "an updated rate limit",
    );
    let page = a
        .get(&format!("{}?PageSize=1", rate_limits_path(&vs)))
        .await
        .expect(200);
    assert_valid(&list, &page, "a rate limits page");
}

#[tokio::test]
async fn buckets_match_the_bucket_schema() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let bucket = component(BUCKET);
    let list = response(BUCKETS_PATH, "get", "200");
    let vs = str_of(&create_service(&a, "Schema").await["sid"]);
    let rk = str_of(&create_rate_limit(&a, &vs, "ip").await["sid"]);

    let empty = a.get(&buckets_path(&vs, &rk)).await.expect(200);
    assert_valid(&list, &empty, "an empty buckets list");

    let created = create_bucket(&a, &vs, &rk, 5, 60).await;
    assert_valid(&bucket, &created, "a created bucket");
    create_bucket(&a, &vs, &rk, 50, 3600).await;
    let path = bucket_path(&vs, &rk, &str_of(&created["sid"]));
    assert_valid(&bucket, &a.get(&path).await.expect(200), "a fetched bucket");
    assert_valid(
        &bucket,
        &a.post_form(&path, &[("Max", "6")]).await.expect(200),
        "an updated bucket",
    );
    let page = a
        .get(&format!("{}?PageSize=1", buckets_path(&vs, &rk)))
        .await
        .expect(200);
    assert_valid(&list, &page, "a buckets page");
    let full = a.get(&buckets_path(&vs, &rk)).await.expect(200);
    assert_valid(&list, &full, "a full buckets list");
}

#[tokio::test]
async fn create_responses_match_the_schemas_of_their_operations() {
    // The same checks through the operations' own response schemas (201 / 200), not only the
    // components, in case an operation ever points elsewhere.
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let chain = one_of_each(&a).await;
    let (service, rate_limit, bucket) = (
        &chain.service_body,
        &chain.rate_limits[0].body,
        &chain.rate_limits[0].buckets[0].body,
    );
    assert_valid(
        &response(SERVICES_PATH, "post", "201"),
        service,
        "POST /v2/Services",
    );
    assert_valid(
        &response(RATE_LIMITS_PATH, "post", "201"),
        rate_limit,
        "POST …/RateLimits",
    );
    assert_valid(
        &response(BUCKETS_PATH, "post", "201"),
        bucket,
        "POST …/Buckets",
    );
    let (vs, rk, bl) = chain.first_sids();
    assert_valid(
        &response(SERVICE_PATH, "get", "200"),
        &a.get(&service_path(&vs)).await.expect(200),
        "GET /v2/Services/{Sid}",
    );
    assert_valid(
        &response(RATE_LIMIT_PATH, "get", "200"),
        &a.get(&rate_limit_path(&vs, &rk)).await.expect(200),
        "GET …/RateLimits/{Sid}",
    );
    assert_valid(
        &response(BUCKET_PATH, "get", "200"),
        &a.get(&bucket_path(&vs, &rk, &bl)).await.expect(200),
        "GET …/Buckets/{Sid}",
    );
}
