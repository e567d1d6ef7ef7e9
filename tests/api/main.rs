//! End-to-end tests of verilimit's Twilio Verify v2 surface for Services, RateLimits and Buckets:
//! each test starts the real binary on a free port with its own database (see `harness`).

#[path = "../common/fixtures.rs"]
mod fixtures;
mod harness;
mod helpers;
#[path = "../common/openapi_schema.rs"]
mod openapi_schema;

mod auth;
mod buckets;
mod errors;
mod paging;
mod passkeys;
mod persistence;
mod push;
mod rate_limits;
mod schema;
mod services;
mod totp;
