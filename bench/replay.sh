#!/usr/bin/env bash
# Replay throughput and memory: generates LINES starts (default 10 million, 9 bucket checks
# each) with bench/replay_gen.py, then times `verilimit replay` on one core and reports
# starts per second and peak resident memory. Usage:
#   bench/replay.sh [LINES] [POOL]      (POOL: see bench/replay_gen.py; 0 = every value new)
# Environment: VERILIMIT (the binary; default: build with cargo --release), OUT (work dir).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lines=${1:-10000000}
pool=${2:-200000}
out=${OUT:-${TMPDIR:-/tmp}/verilimit-replay-bench-$lines-$pool}
if [[ -z "${VERILIMIT:-}" ]]; then
  cargo build --release --quiet --manifest-path "$here/../Cargo.toml"
  VERILIMIT="${CARGO_TARGET_DIR:-$here/../target}/release/verilimit"
fi
mkdir -p "$out"
if [[ ! -s "$out/traffic.jsonl" ]] || (( $(wc -l < "$out/traffic.jsonl") != lines )); then
  echo "generating $lines starts in $out ..." >&2
  python3 "$here/replay_gen.py" "$lines" "$out" "$pool"
fi
pin=()
command -v taskset > /dev/null && pin=(taskset -c 0)
/usr/bin/time -v "${pin[@]}" "$VERILIMIT" replay --no-progress --format json \
  --config "$out/config.json" "$out/traffic.jsonl" > "$out/report.json" 2> "$out/time.log"
wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time.log")
user=$(sed -n 's/.*User time (seconds): //p' "$out/time.log")
sys=$(sed -n 's/.*System time (seconds): //p' "$out/time.log")
rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time.log")
python3 - "$lines" "$wall" "$user" "$sys" "$rss" "$out/report.json" <<'PY'
import json, sys
lines, wall, user, sys_, rss, report = sys.argv[1:]
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
r = json.load(open(report))
print(f"starts: {int(lines):,}  wall: {secs:.2f} s  cpu: {float(user) + float(sys_):.2f} s")
print(f"throughput: {int(lines) / secs:,.0f} starts/s (wall), {int(lines) / (float(user) + float(sys_)):,.0f} starts/s (cpu)")
print(f"peak RSS: {int(rss) / 1024:.0f} MiB")
print(f"admitted {r['admitted']:,}, refused {r['refused_by_code']}, distinct To {r['distinct_to']:,}")
PY
