//! Real responses validated against Twilio's own OpenAPI schemas
//! (`tests/fixtures/twilio_verify_v2.json`, Apache-2.0, see `tests/fixtures/NOTICE`).
//!
//! The schemas are translated to JSON Schema by `../common/openapi_schema.rs`, with every
//! property the spec lists required (the SDKs read each one) and `additionalProperties` exactly
//! as the spec has it (it never forbids extras), so the validation is no stricter about unknown
//! keys than Twilio's own spec.

use jsonschema::Validator;
use serde_json::{Value, json};

use crate::harness::{ServerOptions, TestServer};
use crate::helpers::*;
use crate::openapi_schema::{self, assert_valid, errors};

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
    openapi_schema::verify_spec()
}

/// A validator for `schema`, a schema of Twilio's document; every listed property required.
fn compile(schema: &Value) -> Validator {
    openapi_schema::compile(spec(), schema, &[])
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
