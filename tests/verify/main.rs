//! End-to-end tests of Verifications, Verification Checks, Service Rate Limits and the control
//! plane, through HTTP against the real binary with a real SQLite file (see `../api/harness.rs`).

#[path = "../common/fixtures.rs"]
mod fixtures;
#[path = "../api/harness.rs"]
mod harness;

mod builtin;
mod control_plane;
mod engine;
mod eviction;
mod openapi;
#[path = "../common/openapi_schema.rs"]
mod openapi_schema;
mod operations;
mod rate_limits;
mod records;
mod support;
