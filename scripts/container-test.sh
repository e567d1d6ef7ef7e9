#!/usr/bin/env bash
# Proves the container image and the compose example, through scripts/container-env.sh: Docker
# (with `docker compose`) when a Docker engine answers, otherwise podman from Debian's packages
# with docker-compose on podman's API; base images built locally when no registry is reachable:
#   1. builds the image (Dockerfile) and checks its contract: non-root user, HEALTHCHECK;
#   2. security: started on 0.0.0.0 with NO credentials it must refuse to start (development
#      account); with credentials it answers /healthz and `verilimit healthcheck` passes;
#   3. the compose example exactly as documented (`up --build --abort-on-container-exit
#      --exit-code-from client`): verilimit seeded and healthy; the `app` container, with the
#      official SDK and no base URL (only REQUESTS_CA_BUNDLE and the network alias
#      verify.twilio.com), verifies a phone number over TLS; the official-SDK client gets its
#      429 / 20429 on the 4th start; then a restart on the kept volume re-applies the seed
#      without duplicating anything and presents the same CA, which the host can use over the
#      published TLS port (and a client without it is refused).
# The commands it runs in 2. and 3. are the README's ("Run with Docker", "Use in docker-compose"),
# read from the README itself, and the compose file the README shows must be byte-for-byte the
# one it runs, so the two cannot drift.
# Everything it starts is removed on exit. Idempotent; a second run reuses the cached layers.
# Needs root with podman. Prints one final line: "container-test: PASS ..." or "container-test: FAIL: ...".
#   bash scripts/container-test.sh
# Knobs: CONTAINER_TEST_TIMEOUT (seconds, default 3600), and scripts/container-env.sh's
# (VERILIMIT_CONTAINER_ENGINE=docker|podman, VERILIMIT_CONTAINER_OFFLINE=1|0).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

started=$(date +%s)
deadline=$((started + ${CONTAINER_TEST_TIMEOUT:-3600}))
image=verilimit:local              # the tag docker-compose.yml gives the server image
build_cache=verilimit-build-cache:local
compose_dir=examples/compose
project=verilimit-container-test
solo=verilimit-container-test-solo
account=AC0123456789abcdef0123456789abcdef        # docker-compose.yml's documented defaults
token=compose-example-token
service_sid=VAc0ffee0000000000000000000000c0de   # examples/compose/seed.json

say() { printf '[container-test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fail() {
    say "$*"
    echo "container-test: FAIL: $*"
    exit 1
}
elapsed() { echo "$(($(date +%s) - started))s"; }
# Runs a command with at most the remaining time budget (and at most $1 seconds).
bounded() {
    local cap=$1 left
    shift
    left=$((deadline - $(date +%s)))
    ((left > 0)) || fail "time budget exhausted before: $*"
    ((left < cap)) && cap=$left
    timeout --kill-after=10 "$cap" "$@"
}

ce=$repo/scripts/container-env.sh
engine=$(bash "$ce" engine) || fail "no container engine"
[[ $engine == docker || $(id -u) == 0 ]] || fail "must run as root (no Docker engine here: podman is set up)"
compose=(bash "$ce" compose "$compose_dir" -p "$project")

# Runs the image's HEALTHCHECK now (podman, which has no scheduler here) or waits for Docker's
# own scheduler to report the container healthy.
health_check_now() {
    if [[ $engine == podman ]]; then
        bounded 30 podman healthcheck run "$1" >/dev/null
        return
    fi
    local _
    for _ in $(seq 1 60); do
        [[ $(docker inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null) == healthy ]] && return 0
        sleep 1
    done
    return 1
}

# The compose example runs with its documented default credentials, whatever the caller has set;
# it publishes verilimit on a free loopback port of the host.
unset TWILIO_ACCOUNT_SID TWILIO_AUTH_TOKEN TWILIO_REGION TWILIO_EDGE
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# readme_snippet NAME: the code block after `<!-- snippet: NAME -->` in README.md, continuation
# lines (ending in a backslash) joined.
readme_snippet() {
    python3 -c 'import re, sys
text = open("README.md").read()
m = re.search(r"<!-- snippet: %s -->\s*```[a-z]*\n(.*?)```" % re.escape(sys.argv[1]), text, re.S)
if not m:
    sys.exit("README.md has no snippet %r" % sys.argv[1])
print(re.sub(r"\\\n\s*", "", m.group(1)), end="")' "$1"
}
# must_replace TEXT OLD NEW: TEXT with OLD replaced, failing if OLD is not in it.
must_replace() {
    [[ $1 == *"$2"* ]] || fail "the README's command no longer contains '$2': $1"
    printf '%s' "${1//"$2"/"$3"}"
}

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/verilimit-container-test.XXXXXX")
services_were_up=
cleanup() {
    local rc=$?
    set +e
    "$engine" rm -f -v "$solo" >/dev/null 2>&1
    "$engine" volume rm -f "$solo-data" >/dev/null 2>&1
    [[ -n ${compose_up:-} ]] && timeout 120 "${compose[@]}" \
        down -v --remove-orphans -t 5 >"$log_dir/down.log" 2>&1
    # Leave the podman API service and health runner as we found them.
    [[ -z $services_were_up && -n ${compose_up:-} ]] && bash "$ce" service-stop >/dev/null 2>&1
    if ((rc == 0)); then rm -rf "$log_dir"; else say "logs kept in $log_dir"; fi
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# --- 1. environment and image ----------------------------------------------------------------
say "container-env setup with $engine (first offline run: debootstrap + toolchain image, several minutes)"
bounded 2400 bash "$ce" setup >"$log_dir/setup.log" 2>&1 \
    || { tail -20 "$log_dir/setup.log" >&2; fail "container-env.sh setup failed (log: $log_dir/setup.log)"; }
bash "$ce" status 2>/dev/null | grep 'healthcheck runner: up' >/dev/null && services_were_up=1

# The README's "Run with Docker" commands: the build is the one below; the run is done in 2.
docker_snippet=$(readme_snippet docker-run) || fail "README.md: no docker-run snippet"
grep -qxF "docker build -t $image ." <<<"$docker_snippet" \
    || fail "README's Run with Docker does not build with 'docker build -t $image .'"
docker_run=$(grep '^docker run ' <<<"$docker_snippet") || fail "README's Run with Docker has no 'docker run' line"
compose_file=$(python3 -c 'import re, sys
t = open("README.md").read()
m = re.search(r"<!-- file: examples/compose/docker-compose.yml -->\s*```yaml\n(.*?)```", t, re.S)
sys.stdout.write(m.group(1) if m else "")')
[[ "$compose_file" == "$(cat "$compose_dir/docker-compose.yml")" ]] \
    || fail "the docker-compose.yml shown in README.md differs from $compose_dir/docker-compose.yml"
compose_cmd=$(readme_snippet compose-up) || fail "README.md: no compose-up snippet"
compose_args=$(must_replace "$(head -1 <<<"$compose_cmd")" "docker compose -f $compose_dir/docker-compose.yml " "")

say "building $image (a cold release build takes a while)"
t0=$(date +%s)
bounded 3000 bash "$ce" build . "$image" >"$log_dir/build.log" 2>&1 \
    || { tail -30 "$log_dir/build.log" >&2; fail "image build failed (log: $log_dir/build.log)"; }
# Keep the build stage tagged: `setup` prunes dangling images, and the untagged build stage would
# take the cached dependency layer with it (a 10-minute rebuild on the next run).
bounded 600 bash "$ce" build . "$build_cache" --target build >>"$log_dir/build.log" 2>&1 \
    || { tail -30 "$log_dir/build.log" >&2; fail "tagging the build stage failed (log: $log_dir/build.log)"; }
say "built $image in $(($(date +%s) - t0))s: $("$engine" images --format "{{.Size}}" "$image")"
user=$("$engine" image inspect --format '{{.Config.User}}' "$image")
[[ $user != "" && $user != root && $user != 0 && $user != 0:* ]] || fail "the image runs as root (User=$user)"
"$engine" image inspect "$image" | python3 -c 'import json, sys
img = json.load(sys.stdin)[0]
hc = img.get("Healthcheck") or (img.get("Config") or {}).get("Healthcheck") or {}
sys.exit(hc.get("Test") != ["CMD", "/usr/local/bin/verilimit", "healthcheck"])' \
    || fail "the image has no HEALTHCHECK running 'verilimit healthcheck'"

# --- 2. security contract --------------------------------------------------------------------
say "no credentials on 0.0.0.0: the server must refuse to start"
"$engine" rm -f -v "$solo" >/dev/null 2>&1 || true
set +e
out=$(bounded 60 "$engine" run --rm --name "$solo" --network none "$image" 2>&1)
rc=$?
set -e
((rc != 0 && rc != 124 && rc != 137)) || fail "without credentials the container did not refuse to start (exit $rc): $out"
grep -qi 'development account' <<<"$out" \
    || fail "without credentials the refusal does not mention the development account: $out"
say "refused (exit $rc): $(tail -1 <<<"$out")"

say "the README's docker run (host port and names made unique): /healthz answers, 'verilimit healthcheck' passes"
# e.g. docker run -d --name verilimit -p 127.0.0.1:8765:8765 -e … -v verilimit-data:/data verilimit:local
run_cmd=$(must_replace "$docker_run" "docker run " "$engine run ")
run_cmd=$(must_replace "$run_cmd" "--name verilimit " "--name $solo ")
run_cmd=$(must_replace "$run_cmd" "127.0.0.1:8765:8765" "127.0.0.1::8765")
run_cmd=$(must_replace "$run_cmd" "verilimit-data:/data" "$solo-data:/data")
[[ $run_cmd == *"TWILIO_ACCOUNT_SID=$account"* && $run_cmd == *"TWILIO_AUTH_TOKEN=$token"* ]] \
    || fail "the README's docker run does not pass the documented example credentials: $docker_run"
"$engine" volume rm -f "$solo-data" >/dev/null 2>&1 || true
eval "$run_cmd" >/dev/null || fail "the README's docker run failed: $run_cmd"
port=$("$engine" port "$solo" 8765/tcp | head -1 | sed 's/.*://')
ok=
for _ in $(seq 1 60); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then ok=1; break; fi
    [[ $("$engine" inspect --format '{{.State.Running}}' "$solo") == true ]] \
        || fail "the container with credentials exited: $("$engine" logs "$solo" 2>&1 | tail -5)"
    sleep 0.5
done
[[ -n $ok ]] || fail "/healthz did not answer on 127.0.0.1:$port: $("$engine" logs "$solo" 2>&1 | tail -5)"
"$engine" logs "$solo" 2>/dev/null | grep '^verilimit listening on http://0.0.0.0:8765$' >/dev/null \
    || fail "no start-up line 'verilimit listening on http://0.0.0.0:8765' on stdout"
health_check_now "$solo" || fail "the image's HEALTHCHECK (verilimit healthcheck) failed"
[[ $("$engine" exec "$solo" id -u) == 10001 ]] || fail "the server does not run as uid 10001"
"$engine" exec "$solo" test -s /data/verilimit.db || fail "no database in /data (volume not writable?)"
code=$(curl -sS -o /dev/null -w '%{http_code}' -u "$account:wrong" "http://127.0.0.1:$port/v2/Services")
[[ $code == 401 ]] || fail "wrong credentials answered $code, expected 401"
code=$(curl -sS -o /dev/null -w '%{http_code}' -u "$account:$token" "http://127.0.0.1:$port/v2/Services")
[[ $code == 200 ]] || fail "the configured credentials answered $code, expected 200"
t0=$(date +%s)
"$engine" stop -t 10 "$solo" >/dev/null
stop_s=$(($(date +%s) - t0))
((stop_s < 8)) || fail "the server took ${stop_s}s to stop on SIGTERM (graceful shutdown expected)"
[[ $("$engine" inspect --format '{{.State.ExitCode}}' "$solo") == 0 ]] \
    || fail "the server exited $("$engine" inspect --format '{{.State.ExitCode}}' "$solo") on SIGTERM"
"$engine" rm -f -v "$solo" >/dev/null
"$engine" volume rm -f "$solo-data" >/dev/null
say "healthy as uid 10001, 401/200 on bad/good credentials, stopped cleanly in ${stop_s}s"

# --- 3. the compose example ------------------------------------------------------------------
export VERILIMIT_HOST_PORT VERILIMIT_HOST_TLS_PORT
VERILIMIT_HOST_PORT=$(free_port)
VERILIMIT_HOST_TLS_PORT=$(free_port)
compose_up=1
bounded 120 "${compose[@]}" down -v --remove-orphans -t 5 \
    >"$log_dir/down-before.log" 2>&1 || true

say "compose (the README's command): $compose_args"
set +e
# shellcheck disable=SC2086 # the README's arguments, split as the shell would
bounded 1800 "${compose[@]}" $compose_args >"$log_dir/compose-up.log" 2>&1
rc=$?
set -e
# The clients' own lines (compose colours its prefixes).
sed -E 's/\x1b\[[0-9;]*m//g' "$log_dir/compose-up.log" | sed -nE 's/^(app|client)[-_]1 +\| //p' >&2 || true
if ((rc != 0)); then
    tail -40 "$log_dir/compose-up.log" >&2
    fail "the compose example failed (client exit $rc; log: $log_dir/compose-up.log)"
fi
grep -q 'smoke: PASS' "$log_dir/compose-up.log" || fail "the client exited 0 without its PASS line"
grep -q 'app: PASS: .* verified over TLS as verify.twilio.com' "$log_dir/compose-up.log" \
    || fail "the app (official SDK, no base URL) did not verify its number over TLS"
# `grep` without -q reads to the end: with pipefail, `grep -q` leaving early fails the pipeline
# through the writer's SIGPIPE once the log is long enough (seen in CI).
sed -E 's/\x1b\[[0-9;]*m//g' "$log_dir/compose-up.log" \
    | grep -E '^verilimit[-_]1 +\| verilimit listening on https://0\.0\.0\.0:443$' >/dev/null \
    || fail "no start-up line 'verilimit listening on https://0.0.0.0:443' from verilimit"
# The CA the first run wrote to the shared volume.
ca_before=$("$engine" run --rm --network none --entrypoint cat -v "${project}_verilimit-ca:/ca:ro" "$image" \
    /ca/verilimit-ca.pem) || fail "no CA certificate in the verilimit-ca volume"
[[ $ca_before == "-----BEGIN CERTIFICATE-----"* ]] || fail "the shared CA file is not a PEM certificate"

say "compose: restart verilimit on the kept volume; the seed must apply again without duplicates"
bounded 300 "${compose[@]}" up -d --no-build verilimit \
    >"$log_dir/compose-restart.log" 2>&1 || fail "compose restart failed (log: $log_dir/compose-restart.log)"
cid=$("${compose[@]}" ps -q verilimit 2>/dev/null)
[[ -n $cid ]] || fail "no verilimit container after the restart"
health=
for _ in $(seq 1 90); do
    health=$("$engine" inspect --format '{{.State.Health.Status}}' "$cid" 2>/dev/null || true)
    [[ $health == healthy ]] && break
    sleep 1
done
[[ $health == healthy ]] || fail "verilimit did not become healthy after the restart (status: ${health:-none}): $("$engine" logs "$cid" 2>&1 | tail -5)"
export_json=$(curl -fsS --max-time 5 -u "$account:$token" "http://127.0.0.1:$VERILIMIT_HOST_PORT/emulator/v1/Export") \
    || fail "GET /emulator/v1/Export from the host (127.0.0.1:$VERILIMIT_HOST_PORT) failed"
python3 - "$export_json" "$service_sid" <<'EOF' || fail "the export after the restart does not match the seed: $export_json"
import json, sys
seed = json.load(open("examples/compose/seed.json"))
got = json.loads(sys.argv[1])
services = got["services"]
assert [s["sid"] for s in services] == [sys.argv[2]], services
rls = services[0]["rate_limits"]
want = seed["services"][0]["rate_limits"][0]
assert [(r["sid"], r["unique_name"]) for r in rls] == [(want["sid"], want["unique_name"])], rls
assert [(b["sid"], b["max"], b["interval"]) for b in rls[0]["buckets"]] == \
    [(b["sid"], b["max"], b["interval"]) for b in want["buckets"]], rls[0]["buckets"]
EOF

say "TLS from the host: the same CA after the restart; trusted it answers as verify.twilio.com, untrusted it is refused"
ca_file=$log_dir/verilimit-ca.pem
curl -fsS --max-time 5 -o "$ca_file" "http://127.0.0.1:$VERILIMIT_HOST_PORT/emulator/v1/ca.pem" \
    || fail "GET /emulator/v1/ca.pem (no credentials) failed"
[[ $(cat "$ca_file") == "$ca_before" ]] || fail "the CA changed across the restart (it is kept in the database)"
tls_url="https://verify.twilio.com:$VERILIMIT_HOST_TLS_PORT"
tls_resolve=(--resolve "verify.twilio.com:$VERILIMIT_HOST_TLS_PORT:127.0.0.1")
services_json=$(curl -fsS --max-time 5 --cacert "$ca_file" "${tls_resolve[@]}" -u "$account:$token" \
    "$tls_url/v2/Services") || fail "HTTPS with verilimit's CA failed"
[[ $services_json == *"\"url\": \"$tls_url/v2/Services/$service_sid\""* || $services_json == *"\"url\":\"$tls_url/v2/Services/$service_sid\""* ]] \
    || fail "over TLS the service's url is not $tls_url/v2/Services/$service_sid: $services_json"
set +e
curl -sS --max-time 5 -o /dev/null --cacert /etc/ssl/certs/ca-certificates.crt "${tls_resolve[@]}" "$tls_url/healthz" 2>/dev/null
rc=$?
set -e
((rc == 60)) || fail "a client without verilimit's CA was not refused (curl exit $rc, expected 60)"

bounded 120 "${compose[@]}" down -v --remove-orphans -t 5 \
    >"$log_dir/down.log" 2>&1 || fail "compose down failed (log: $log_dir/down.log)"
compose_up=
[[ -z $services_were_up ]] && bash "$ce" service-stop >/dev/null 2>&1
echo "container-test: PASS (image $image $("$engine" images --format '{{.Size}}' "$image"), refusal without credentials, compose example 429/20429 and the unchanged SDK over TLS, seed idempotent, CA kept; $(elapsed))"
