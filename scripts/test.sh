#!/usr/bin/env bash
# Runs every test of verilimit: formatting, clippy, the Rust unit, property and integration
# tests, and the official Python and Node SDK suites against the built server. Installs the SDK
# packages it needs itself (into the build directory). Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export VERILIMIT_SDK_CACHE="${VERILIMIT_SDK_CACHE:-$CARGO_TARGET_DIR/sdk}"

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --all-targets --locked -- -D warnings

step "build"
cargo build --locked --bin verilimit
export VERILIMIT_BIN="$CARGO_TARGET_DIR/debug/verilimit"

step "Rust tests (unit, property, integration)"
cargo test --locked

step "Python SDK suite (twilio on PyPI)"
bash tests/sdk/python/run.sh

step "Node SDK suite (twilio on npm)"
bash tests/sdk/node/run.sh

step "all test suites passed"
