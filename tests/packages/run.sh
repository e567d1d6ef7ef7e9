#!/usr/bin/env bash
# Builds the two test-helper packages from this repository and uses them as a user would:
#   1. the Python wheel (maturin, pyproject.toml): verilimit binary + verilimit package + pytest
#      plugin, built with `maturin build --release` (maturin from PyPI, in its own venv);
#   2. installs it into a FRESH venv with twilio and pytest from PyPI and runs examples/pytest
#      (only the `verilimit` fixture and the official SDK) from a copy outside the repository,
#      with the README's Python examples;
#   3. `npm pack`s packages/node, installs the tarball with twilio from npm into a FRESH project
#      and runs examples/node and the README's Node example with node:test, the server binary
#      found on PATH (the wheel's, in that venv): no VERILIMIT_BIN anywhere.
# Everything lives in ${VERILIMIT_SDK_CACHE:-target/sdk}/packages; the release build reuses
# $CARGO_TARGET_DIR, so a second run rebuilds nothing. Every step is bounded by a timeout, and
# the run fails if a server the suites started is still running (or its files remain) after them.
#   bash tests/packages/run.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
cache="${VERILIMIT_SDK_CACHE:-$repo/target/sdk}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
work="$cache/packages"
mkdir -p "$work"

# The official SDK versions the SDK suites certify (one source of truth for the pins).
twilio_py="$(grep -E '^twilio==' tests/sdk/python/requirements.txt)"
pytest_py="$(grep -E '^pytest==' tests/sdk/python/requirements.txt)"
twilio_node="$(node -p 'require("./tests/sdk/node/package.json").dependencies.twilio')"

# manylinux_2_34: what the binary built on this project's machines (Debian bookworm, glibc
# 2.36) really needs (its newest glibc symbol version is GLIBC_2.34); maturin's auditwheel check
# refuses the build if a newer one ever creeps in. VERILIMIT_WHEEL_COMPATIBILITY=auto lets
# maturin pick the tag from the symbols it finds (other hosts); either way it must be manylinux.
# The wheel CI keeps as an artifact is built in a manylinux_2_28 container instead (ci.yml).
compatibility="${VERILIMIT_WHEEL_COMPATIBILITY:-manylinux_2_34}"
compat_args=()
[[ "$compatibility" == auto ]] || compat_args=(--compatibility "$compatibility")

say() { printf '[packages %(%H:%M:%S)T] %s\n' -1 "$*"; }
bounded() { # seconds, command...: the command and everything it started end at the deadline
    local secs=$1
    shift
    timeout --kill-after=10 "$secs" "$@"
}
pip_quiet=(--quiet --disable-pip-version-check --no-input)

# Servers the suites start keep their temporary directories under $suite_tmp (TMPDIR), so any
# left behind can be found, reported and ended here, by pid.
suite_tmp="$work/tmp"
leftovers() { pgrep -f -- "$suite_tmp/" || true; }
cleanup() {
    local pids
    pids="$(leftovers)"
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
}
trap cleanup EXIT
rm -rf "$suite_tmp"
mkdir -p "$suite_tmp"

# --- 1. the wheel ---------------------------------------------------------------------------
build_venv="$work/build-venv"
build_reqs="$here/requirements-build.txt"
if [[ ! -x "$build_venv/bin/python" ]]; then
    python3 -m venv "$build_venv"
fi
if ! cmp -s "$build_reqs" "$build_venv/.verilimit-requirements" 2>/dev/null; then
    say "installing maturin from PyPI"
    bounded 600 "$build_venv/bin/python" -m pip install "${pip_quiet[@]}" -r "$build_reqs"
    cp "$build_reqs" "$build_venv/.verilimit-requirements"
fi

wheels="$work/wheels"
rm -rf "$wheels"
say "building the wheel (maturin build --release ${compat_args[*]})"
t0=$SECONDS
bounded 3600 "$build_venv/bin/maturin" build --release --locked "${compat_args[@]}" --out "$wheels"
say "wheel built in $((SECONDS - t0)) s"
shopt -s nullglob
built=("$wheels"/verilimit-*.whl)
shopt -u nullglob
if [[ ${#built[@]} -ne 1 ]]; then
    echo "packages: expected one wheel in $wheels, found: ${built[*]:-none}" >&2
    exit 1
fi
wheel="${built[0]}"
say "wheel: $(basename "$wheel")"
if [[ "$(basename "$wheel")" != *-py3-none-manylinux_2_*_"$(uname -m)".whl ]]; then
    echo "packages: $(basename "$wheel") is not a manylinux wheel for this machine" >&2
    exit 1
fi
# The Node package carries the same version as the wheel (Cargo.toml's).
node_version="$(node -p 'require("./packages/node/package.json").version')"
if [[ "$(basename "$wheel")" != "verilimit-$node_version-"* ]]; then
    echo "packages: packages/node/package.json has version $node_version, the wheel is $(basename "$wheel")" >&2
    exit 1
fi

# --- 2. a fresh venv with the wheel, twilio and pytest; the example pytest suite -----------
venv="$work/pytest-venv"
rm -rf "$venv"
python3 -m venv "$venv"
say "installing the wheel, $twilio_py and $pytest_py into a fresh venv"
bounded 600 "$venv/bin/python" -m pip install "${pip_quiet[@]}" "$wheel" "$twilio_py" "$pytest_py"
# The wheel put the server on the venv's PATH.
bounded 30 "$venv/bin/verilimit" --version

pyproject="$work/pytest-project"
rm -rf "$pyproject"
mkdir -p "$pyproject"
cp examples/pytest/*.py "$pyproject/"
nodeproject="$work/node-project"
rm -rf "$nodeproject"
mkdir -p "$nodeproject"
cp examples/node/*.test.js "$nodeproject/"
# The README's examples run too, exactly as the README shows them.
python3 "$here/readme_snippets.py" README.md "$pyproject" "$nodeproject"

# Whatever the caller's environment says about binaries, the suites must use the wheel's.
unset VERILIMIT_BIN
export TMPDIR="$suite_tmp"
export PYTHONDONTWRITEBYTECODE=1

say "example pytest suite (the verilimit fixture and the official SDK)"
t0=$SECONDS
(cd "$pyproject" && bounded 600 "$venv/bin/python" -m pytest -p no:cacheprovider -v)
say "pytest suite took $((SECONDS - t0)) s"
say "the README's context-manager example"
(cd "$pyproject" && bounded 120 "$venv/bin/python" readme_server.py)

# --- 3. the npm package in a fresh project; the example node:test suite --------------------
say "npm pack packages/node"
tarball_dir="$work/npm"
rm -rf "$tarball_dir"
mkdir -p "$tarball_dir"
tarball_name="$(cd packages/node && bounded 120 npm pack --silent --pack-destination "$tarball_dir")"
tarball="$tarball_dir/$(tail -n1 <<<"$tarball_name")"
[[ -f "$tarball" ]] || { echo "packages: npm pack made no $tarball" >&2; exit 1; }

cat >"$nodeproject/package.json" <<'EOF'
{ "name": "verilimit-example-project", "version": "0.0.0", "private": true }
EOF
say "installing $(basename "$tarball") and twilio@$twilio_node into a fresh project"
(cd "$nodeproject" && bounded 600 npm install --no-audit --no-fund --loglevel=error "$tarball" "twilio@$twilio_node")

say "example node:test suite (the verilimit helpers and the official SDK; binary from the venv's PATH)"
t0=$SECONDS
(cd "$nodeproject" && PATH="$venv/bin:$PATH" bounded 600 node --test --test-reporter=tap ./*.test.js)
say "node suite took $((SECONDS - t0)) s"

# --- every server the suites started is gone, and so are its files -------------------------
pids="$(leftovers)"
if [[ -n "$pids" ]]; then
    echo "packages: servers still running after the suites:" >&2
    ps -o pid,args -p "${pids//$'\n'/,}" >&2 || true
    exit 1
fi
shopt -s nullglob
left=("$suite_tmp"/verilimit-*)
shopt -u nullglob
if [[ ${#left[@]} -ne 0 ]]; then
    echo "packages: temporary server directories left behind: ${left[*]}" >&2
    exit 1
fi
say "packages: PASS (wheel $(basename "$wheel"), npm $(basename "$tarball"))"
