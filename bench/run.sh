#!/usr/bin/env bash
# verilimit's load benchmark, in one command: bash bench/run.sh
# Installs wrk (and the sqlite3 CLI) if missing, builds the release binary, then bench/bench.py
# starts it on a fresh SQLite file, drives each scenario with wrk + bench/*.lua, checks durability
# after kill -9, prints the tables and writes bench/results/latest.json. See bench/README.md.
# Knobs: BENCH_DURATION, BENCH_CONNECTIONS, BENCH_THREADS, BENCH_SMOKE=1, BENCH_MEMORY=1, BENCH_SOAK=10m, BENCH_PG=0, ...
set -euo pipefail

# A relative CARGO_TARGET_DIR means relative to where the command was run.
target="${CARGO_TARGET_DIR:-}"
if [ -n "$target" ] && [ "${target#/}" = "$target" ]; then target="$PWD/$target"; fi
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${target:-$PWD/target}"

step() { printf '\n==> %s\n' "$*"; }

# apt_install PACKAGE: as root; `apt-get update` only when the plain install fails.
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench: $1 is missing and installing it needs root (apt-get install -y $1)" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$1" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq "$1" >/dev/null; }
}

step "tools"
command -v python3 >/dev/null || apt_install python3
command -v wrk >/dev/null || apt_install wrk
# The row counts also work through Python's sqlite3 module, so the CLI is optional.
command -v sqlite3 >/dev/null || apt_install sqlite3 || echo "bench: no sqlite3 CLI; counting with Python's sqlite3"
echo "$(wrk -v 2>&1 | head -n1 || true)"

# PostgreSQL for the scale-out figures (admit with 1 and 3 instances): BENCH_PG_URL or
# VERILIMIT_TEST_PG if set, else this machine's server, else a throwaway cluster (the same
# helper as the test command). BENCH_PG=0 skips them.
pg_cleanup() { :; }
if [ "${BENCH_PG:-1}" != 0 ]; then
    if [ -n "${BENCH_PG_URL:-}" ]; then export VERILIMIT_TEST_PG="$BENCH_PG_URL"; fi
    command -v psql >/dev/null || apt_install postgresql-client
    source scripts/postgres.sh
    ensure_postgres
    pg_cleanup() { cleanup_postgres; }
fi

step "release build"
cargo build --release --locked --bin verilimit
export VERILIMIT_BIN="$CARGO_TARGET_DIR/release/verilimit"

BENCH_WORK="$(mktemp -d "${TMPDIR:-/tmp}/verilimit-bench.XXXXXX")"
export BENCH_WORK

# Whatever happens, no server or wrk outlives the run: bench.py records every pid it starts.
cleanup() {
    local pid
    if [ -f "$BENCH_WORK/pids" ]; then
        while read -r pid; do
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
                    *verilimit*|wrk*) kill -9 "$pid" 2>/dev/null || true ;;
                esac
            fi
        done <"$BENCH_WORK/pids"
    fi
    pg_cleanup
    if [ -n "${BENCH_KEEP_WORK:-}" ]; then
        echo "bench: work files kept in $BENCH_WORK"
    else
        rm -rf "$BENCH_WORK"
    fi
}
trap cleanup EXIT

step "benchmark"
# In the background so that INT/TERM reach bench.py at once (it then stops its servers and wrk);
# a background job of a script ignores SIGINT, so both are forwarded as TERM.
python3 bench/bench.py &
bench_pid=$!
stop_bench() {
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
    exit "$1"
}
trap 'stop_bench 130' INT
trap 'stop_bench 143' TERM
wait "$bench_pid"
