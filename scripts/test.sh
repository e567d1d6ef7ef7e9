#!/usr/bin/env bash
# Runs every test of verilimit: formatting, clippy, the Rust unit, property and integration
# tests, and the official Python and Node SDK suites against the built server. Installs the SDK
# packages it needs itself (into the build directory). Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export VERILIMIT_SDK_CACHE="${VERILIMIT_SDK_CACHE:-$CARGO_TARGET_DIR/sdk}"

step() { printf '\n==> %s\n' "$*"; }

# PostgreSQL for the scale-out suites: VERILIMIT_TEST_PG if set, else this machine's server
# (127.0.0.1:5432, trust auth, database test); with none reachable, a throwaway cluster.
source scripts/postgres.sh
ensure_postgres
trap cleanup_postgres EXIT

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

step "build"
cargo build --locked --bin verilimit
export VERILIMIT_BIN="$CARGO_TARGET_DIR/debug/verilimit"

step "Rust tests (unit, property, integration) on SQLite, scale-out on PostgreSQL"
cargo test --locked

step "Rust integration tests again with every server on PostgreSQL"
VERILIMIT_TEST_BACKEND=postgres cargo test --locked --test api --test verify --test reliability

step "Python SDK suite (twilio on PyPI)"
bash tests/sdk/python/run.sh

step "Node SDK suite (twilio on npm)"
bash tests/sdk/node/run.sh

step "Dashboard in headless Chromium"
bash tests/ui/run.sh

step "all test suites passed"
