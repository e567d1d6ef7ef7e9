#!/usr/bin/env bash
# Drives the dashboard (/ui) in a real browser against a verilimit binary.
#   VERILIMIT_BIN=target/debug/verilimit bash tests/ui/run.sh [extra node --test args...]
# Needs Debian's chromium (installed with apt-get when /usr/bin/chromium is missing; as root;
# CHROMIUM_PATH points elsewhere, e.g. at Google Chrome) and
# playwright-core (pinned in package-lock.json, installed with `npm ci` when node_modules is
# missing or older than the lockfile). Starts one server on a free port with a throwaway SQLite
# file, runs test/*.test.js with node's test runner (TAP: the summary lines are `# pass N` /
# `# fail N`) and stops the server. The screenshot goes to tests/ui/artifacts/dashboard.png; with
# UPDATE_SCREENSHOT=1 it is also copied to docs/dashboard.png. The exit code is node's.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ -z "${VERILIMIT_BIN:-}" ]]; then
    echo "run.sh: VERILIMIT_BIN is not set (path to the verilimit server binary)" >&2
    exit 2
fi
if [[ ! -f "$VERILIMIT_BIN" || ! -x "$VERILIMIT_BIN" ]]; then
    echo "run.sh: VERILIMIT_BIN=$VERILIMIT_BIN is not an executable file" >&2
    exit 2
fi
bin="$(cd "$(dirname "$VERILIMIT_BIN")" && pwd)/$(basename "$VERILIMIT_BIN")"

CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM_PATH" ]]; then
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "run.sh: $CHROMIUM_PATH is missing; install Debian's chromium (apt-get install chromium) as root" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y chromium; then
        apt-get update
        apt-get install -y chromium
    fi
fi
export CHROMIUM_PATH

cd "$here"
if [[ ! -d node_modules || ! -d node_modules/playwright-core || package-lock.json -nt node_modules ]]; then
    npm ci --no-audit --no-fund
    touch node_modules
fi

# Nothing from the caller's environment may reconfigure the server behind the flags we pass.
while IFS= read -r name; do
    [[ "$name" == VERILIMIT_LOG ]] || unset "$name"
done < <(compgen -e | grep -E '^(VERILIMIT_|TWILIO_)' || true)
export TWILIO_ACCOUNT_SID="AC$(printf '5e%.0s' {1..16})"
export TWILIO_AUTH_TOKEN="0123456789abcdef0123456789abcdef"
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/verilimit-ui.XXXXXX")"
server_pid=""
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    exec 3<&-
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT INT TERM

# The start-up line arrives through a FIFO, opened read-write so that opening it never waits for
# the server. `read` returns as soon as the line is there; between one-second slices we check
# that the server is still alive, so a server that dies is reported at once.
mkfifo "$tmp/stdout"
exec 3<>"$tmp/stdout"
(
    trap - EXIT INT TERM
    exec "$bin" --listen 127.0.0.1:0 --database-url "sqlite://$tmp/db.sqlite" \
        >"$tmp/stdout" 2>"$tmp/server.log"
) &
server_pid=$!
line=""
for _ in {1..30}; do
    if IFS= read -r -t 1 line <&3; then
        break
    fi
    line=""
    kill -0 "$server_pid" 2>/dev/null || break
done
if [[ ! "$line" =~ ^verilimit\ listening\ on\ (http://127\.0\.0\.1:[0-9]+)$ ]]; then
    echo "run.sh: verilimit did not print its start-up line (got: '$line'); its log:" >&2
    cat "$tmp/server.log" >&2 || true
    exit 1
fi
export VERILIMIT_URL="${BASH_REMATCH[1]}"
echo "# verilimit at $VERILIMIT_URL (pid $server_pid)"

export UI_ARTIFACTS="$here/artifacts"
export UI_DOCS_SCREENSHOT="$repo/docs/dashboard.png"
mkdir -p "$UI_ARTIFACTS"

set +e
node --test --test-reporter=tap "$@" test/*.test.js
status=$?
set -e
if [[ $status -ne 0 ]]; then
    echo "# server log (tail):" >&2
    tail -n 40 "$tmp/server.log" >&2 || true
fi
exit "$status"
