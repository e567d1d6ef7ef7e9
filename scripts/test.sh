#!/usr/bin/env bash
# Runs every test of verilimit: formatting, clippy, the Rust unit, property and integration
# tests (SQLite, then PostgreSQL), the official Python and Node SDK suites against the built
# server, the Python wheel and npm package of test helpers (built, installed, used), the dashboard in headless Chromium, the benchmark's smoke run and the container image
# with the compose example. Installs what it needs itself (SDK packages into the build
# directory; Chromium, PostgreSQL, wrk, podman from Debian's packages). Usage: bash scripts/test.sh
# VERILIMIT_SKIP_CONTAINER_TEST=1 leaves out the container test (for CI that runs it with a real
# Docker engine in a job of its own, as .github/workflows/ci.yml does).
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
VERILIMIT_TEST_BACKEND=postgres cargo test --locked --test api --test verify --test reliability --test tls --test event_streams

step "Python SDK suite (twilio on PyPI)"
bash tests/sdk/python/run.sh

step "Node SDK suite (twilio on npm)"
bash tests/sdk/node/run.sh

step "Python and Node SDK suites again with the server on PostgreSQL"
VERILIMIT_SDK_DATABASE_URL=$(fresh_pg_database sdk_python) bash tests/sdk/python/run.sh
VERILIMIT_SDK_DATABASE_URL=$(fresh_pg_database sdk_node) bash tests/sdk/node/run.sh

step "Test-helper packages: the Python wheel with its pytest plugin, the npm package (tests/packages/run.sh)"
bash tests/packages/run.sh

step "Dashboard in headless Chromium"
bash tests/ui/run.sh

step "Benchmark smoke run (bench/run.sh: statuses and durability, never timings)"
BENCH_SMOKE=1 bash bench/run.sh

if [ "${VERILIMIT_SKIP_CONTAINER_TEST:-}" = 1 ]; then
    step "container test left out (VERILIMIT_SKIP_CONTAINER_TEST=1)"
else
    step "Container image and the compose example (scripts/container-test.sh)"
    bash scripts/container-test.sh
fi

step "all test suites passed"
