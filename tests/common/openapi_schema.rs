//! OpenAPI 3.0 schemas checked as JSON Schema 2020-12, for every suite that validates real
//! answers against an OpenAPI document (`#[path = "../common/openapi_schema.rs"]`).
//!
//! OpenAPI 3.0 schemas are not quite JSON Schema, so they are translated in memory:
//! - `nullable: true` becomes a `"null"` member of `type` (and of `enum`);
//! - `#/components/schemas/X` references point into the root document's `$defs`;
//! - examples are data, not schemas, and are left out;
//! - every property a schema lists is `required` (besides what its own `required` says): the
//!   SDKs and dashboards read each one, so each must be present (null is fine where the document
//!   says nullable). The caller names the exceptions: `(component, property)` pairs that stay
//!   optional in that component's own properties.
//!
//! `additionalProperties` is left exactly as the document has it.

#![allow(dead_code)]

use jsonschema::{Draft, Validator};
use serde_json::{Map, Value, json};

/// Translates one OpenAPI schema (recursively). `optional` names the properties of this
/// schema's own `properties` that stay optional (never those of nested schemas).
pub fn translate(schema: &Value, optional: &[&str]) -> Value {
    match schema {
        Value::Array(items) => Value::Array(items.iter().map(|s| translate(s, &[])).collect()),
        Value::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object {
                match key.as_str() {
                    "nullable" | "example" | "examples" => {}
                    "$ref" => {
                        let reference = value.as_str().unwrap_or_default();
                        let name = reference
                            .strip_prefix("#/components/schemas/")
                            .unwrap_or_else(|| panic!("unexpected schema $ref {reference}"));
                        out.insert(key.clone(), Value::from(format!("#/$defs/{name}")));
                    }
                    // A map from property names to schemas: translate each schema, keep names.
                    "properties" => {
                        let properties = value
                            .as_object()
                            .expect("properties is an object")
                            .iter()
                            .map(|(name, s)| (name.clone(), translate(s, &[])))
                            .collect();
                        out.insert(key.clone(), Value::Object(properties));
                    }
                    _ => {
                        out.insert(key.clone(), translate(value, &[]));
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
            if let Some(Value::Object(properties)) = out.get("properties") {
                let listed = out.get("required").and_then(Value::as_array);
                let mut required: Vec<Value> = Vec::new();
                for name in listed
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .chain(properties.keys().map(String::as_str))
                {
                    let name_value = Value::from(name);
                    if !optional.contains(&name) && !required.contains(&name_value) {
                        required.push(name_value);
                    }
                }
                out.insert("required".into(), Value::Array(required));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// A validator for `schema` (a schema of the OpenAPI document `doc`), with every component of
/// `doc` under `$defs`; `optional` lists the `(component, property)` pairs that stay optional.
pub fn compile(doc: &Value, schema: &Value, optional: &[(&str, &str)]) -> Validator {
    let defs: Map<String, Value> = doc["components"]["schemas"]
        .as_object()
        .expect("components.schemas")
        .iter()
        .map(|(name, s)| {
            let own: Vec<&str> = optional
                .iter()
                .filter(|(component, _)| component == name)
                .map(|(_, property)| *property)
                .collect();
            (name.clone(), translate(s, &own))
        })
        .collect();
    let mut root = translate(schema, &[])
        .as_object()
        .cloned()
        .expect("a schema is an object");
    root.insert(
        "$schema".into(),
        Value::from("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert("$defs".into(), Value::Object(defs));
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&Value::Object(root))
        .unwrap_or_else(|e| panic!("the translated schema does not compile: {e}\n{schema}"))
}

/// Errors of `instance` against `validator`, one line each.
pub fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("at {:?}: {e}", e.instance_path.to_string()))
        .collect()
}

#[track_caller]
pub fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors = errors(validator, instance);
    assert!(
        errors.is_empty(),
        "{what} does not match its OpenAPI schema:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(instance).unwrap_or_default()
    );
}

/// Twilio's Verify v2 OpenAPI document, the project's copy
/// (`tests/fixtures/twilio_verify_v2.json`, see `tests/fixtures/NOTICE`).
pub fn verify_spec() -> &'static Value {
    static SPEC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/twilio_verify_v2.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
    })
}

/// A validator for the JSON answer of one operation of Twilio's Verify v2 document
/// (`("/v2/Attempts", "get", "200")`), every listed property required.
pub fn verify_response(path: &str, method: &str, status: &str) -> Validator {
    let schema = &verify_spec()["paths"][path][method]["responses"][status]["content"]["application/json"]
        ["schema"];
    assert!(schema.is_object(), "no schema for {method} {path} {status}");
    compile(verify_spec(), schema, &[])
}
