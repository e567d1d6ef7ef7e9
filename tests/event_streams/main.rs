//! End-to-end tests of the Event Streams v1 surface (sinks, subscriptions, types) and of the
//! delivery of Verify events to webhook sinks, through the real binary (see `../api/harness.rs`)
//! and a webhook receiver inside the test (`receiver`); and of Verify's factor and challenge
//! events to Service Webhooks (`service_webhooks`), which use the same delivery.

#[path = "../api/harness.rs"]
mod harness;
#[path = "../common/openapi_schema.rs"]
mod openapi_schema;

mod api;
mod delivery;
mod receiver;
mod schema;
mod service_webhooks;
mod support;
