//! Reliability and security: crash safety (SIGKILL/SIGTERM under load), hostile input, a bounded
//! fuzz pass, authentication and tenancy over every route, secrets in logs, and a short soak.
//! Everything runs against the real binary through HTTP (see `../api/harness.rs`).
//!
//! Knobs: `VERILIMIT_SOAK_SECS` (default 10), `VERILIMIT_FUZZ_CASES` (default 300),
//! `VERILIMIT_FUZZ_SEED` and `VERILIMIT_CRASH_SEED` (printed on every run, to replay one).

#[path = "../common/fixtures.rs"]
mod fixtures;
#[path = "../api/harness.rs"]
mod harness;

mod crash;
mod full_disk;
mod fuzz;
mod hostile;
mod logs;
mod slowloris;
mod soak;
mod tenancy;
mod util;
