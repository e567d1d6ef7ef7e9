#!/usr/bin/env bash
# Runs the official twilio-python SDK suite against a verilimit binary.
#   VERILIMIT_BIN=target/release/verilimit bash tests/sdk/python/run.sh [pytest args...]
# The venv lives in ${VERILIMIT_SDK_CACHE:-<repo>/target/sdk}/python-venv and is reused;
# packages are installed only when requirements.txt changed or the venv lacks them.
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

cache="${VERILIMIT_SDK_CACHE:-$here/../../../target/sdk}"
venv="$cache/python-venv"
stamp="$venv/.verilimit-requirements"

if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$cache"
    python3 -m venv "$venv"
fi

if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null \
    || ! "$venv/bin/python" -c 'import twilio, pytest, pyotp' >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi

# Keep the source tree clean (no __pycache__, no .pytest_cache).
export PYTHONDONTWRITEBYTECODE=1

# The SDK must never be steered towards Twilio's real hosts.
unset TWILIO_REGION TWILIO_EDGE

cd "$here"
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider "$here" "$@"
status=$?
set -e
exit "$status"
