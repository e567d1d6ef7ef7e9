#!/usr/bin/env bash
# Runs the official twilio-node SDK suite against a verilimit binary.
#   VERILIMIT_BIN=target/release/verilimit bash tests/sdk/node/run.sh [extra node --test args...]
# Installs the pinned SDK (package-lock.json) with `npm ci` when node_modules is missing or older
# than the lockfile. The exit code is node's test runner's.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

if [[ -z "${VERILIMIT_BIN:-}" ]]; then
    echo "run.sh: VERILIMIT_BIN is not set (path to the verilimit server binary)" >&2
    exit 2
fi
if [[ ! -f "$VERILIMIT_BIN" || ! -x "$VERILIMIT_BIN" ]]; then
    echo "run.sh: VERILIMIT_BIN=$VERILIMIT_BIN is not an executable file" >&2
    exit 2
fi
# Absolute, so the tests find it whatever their working directory.
VERILIMIT_BIN="$(cd "$(dirname "$VERILIMIT_BIN")" && pwd)/$(basename "$VERILIMIT_BIN")"
export VERILIMIT_BIN

cd "$here"

if [[ ! -d node_modules || ! -d node_modules/twilio || package-lock.json -nt node_modules ]]; then
    npm ci --no-audit --no-fund
    touch node_modules
fi

# The SDK must never be steered towards Twilio's real hosts, nor through a proxy to loopback.
unset TWILIO_REGION TWILIO_EDGE
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

# TAP reporter: the closing summary lines are `# pass N` / `# fail N` whether or not stdout is a TTY.
set +e
# Test files run in parallel, each with its own server and SQLite file; on a shared PostgreSQL
# database (VERILIMIT_SDK_DATABASE_URL) one after another.
concurrency=()
if [[ -n "${VERILIMIT_SDK_DATABASE_URL:-}" ]]; then
    concurrency=(--test-concurrency=1)
fi
node --test --test-reporter=tap "${concurrency[@]}" "$@" test/*.test.js
status=$?
set -e
exit "$status"
