"""Drives verilimit's load benchmark; bench/run.sh installs the tools, builds the binary and calls
this with VERILIMIT_BIN and BENCH_WORK set. Standard library only.

Scenarios (same thread/connection count and duration each, wrk over HTTP/1.1 keep-alive):
floor (GET /healthz), admit (verification starts that pass 3 rate limits x 3 buckets), refuse
(the same with one hot value: 429s), read (GET one bucket), a scaling table (admit with 1, 3, 9,
27 bucket checks), then kill -9 + restart and a durability check against the SQLite file.
With a PostgreSQL admin URL (BENCH_PG_URL, else VERILIMIT_TEST_PG as bench/run.sh sets it), the
admit scenario again on PostgreSQL with 1 and with 3 instances sharing one fresh database.
BENCH_MEMORY=1 adds the memory scenario (1,000,000 tracked values) on a fresh server.
BENCH_BASELINE_BIN=PATH adds the comparison: floor, admit, refuse and read on that binary and on
this one, alternating, each on a fresh database, so the ratios of both come from one run.
"""

import base64
import datetime
import json
import os
import platform
import re
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
ACCOUNT = "AC00000000000000000000000000000000"
TOKEN = "verilimit-dev-token"
AUTH = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()

# (Max, Interval) of the three buckets of every rate limit: traffic spread over many values is
# always admitted; one hot value is refused after 5 admissions in a minute.
BUCKETS = [(5, 60), (20, 3600), (100, 86400)]
# The targets of the speed issue (bench/README.md): admit at -c64 (0.30 at -c16), refuse, read.
TARGETS = {"admit": 0.40, "refuse": 0.60, "read": 0.75}


def env_flag(name):
    return os.environ.get(name, "") not in ("", "0", "false", "no")


def seconds(text):
    m = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", text)
    if not m:
        raise SystemExit(f"bench: cannot read a duration from {text!r} (use e.g. 10s, 2m)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


SMOKE = env_flag("BENCH_SMOKE")
MEMORY = env_flag("BENCH_MEMORY") and not SMOKE
DURATION = seconds(os.environ.get("BENCH_DURATION") or ("2s" if SMOKE else "10s"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS") or (4 if SMOKE else 64))
THREADS = min(int(os.environ.get("BENCH_THREADS") or 2), CONNECTIONS)
SCALING = os.environ.get("BENCH_SCALING", "1") not in ("0", "false", "no")
PG_ADMIN = os.environ.get("BENCH_PG_URL") or os.environ.get("VERILIMIT_TEST_PG") or ""
PG = bool(PG_ADMIN) and os.environ.get("BENCH_PG", "1") not in ("0", "false", "no")
MEMORY_VALUES = int(os.environ.get("BENCH_MEMORY_VALUES") or 1_000_000)
SOAK = 0 if SMOKE else seconds(os.environ.get("BENCH_SOAK") or "0")
BASELINE_BIN = os.environ.get("BENCH_BASELINE_BIN") or ""
COMPARE_ROUNDS = int(os.environ.get("BENCH_COMPARE_ROUNDS") or 3)
WORK = os.environ["BENCH_WORK"]
BIN = os.environ["VERILIMIT_BIN"]
PIDS = os.path.join(WORK, "pids")


def say(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------- the server


class Server:
    """One verilimit process on a SQLite file (or on database_url); the port comes from its
    start-up line."""

    def __init__(self, db, name, database_url=None, binary=None, server_defaults=False):
        self.db = db
        self.log = os.path.join(WORK, f"{name}.stderr.log")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("VERILIMIT_") and k not in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
        }
        cmd = [
            binary or BIN,
            "--listen", "127.0.0.1:0",
            "--database-url", database_url or f"sqlite://{db}",
            "--log", "warn",
        ]
        # The send-attempts rule (5 sends per recipient in 600 s) is off for the scenarios that
        # measure the rate limits alone; the soak keeps the server's defaults.
        if not server_defaults:
            cmd += ["--send-attempts-limit", "0"]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        with open(PIDS, "a") as f:
            f.write(f"{self.proc.pid}\n")
        line = self._first_line(timeout=120)
        m = re.fullmatch(r"verilimit listening on (http://127\.0\.0\.1:(\d+))\s*", line)
        if not m:
            self.kill()
            raise SystemExit(f"bench: unexpected start-up line {line!r}\n{self.stderr_tail()}")
        self.url = m.group(1)
        self.port = int(m.group(2))

    def _first_line(self, timeout):
        """Blocks on the server's stdout (no polling) until its first line, exit or timeout."""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.kill()
                raise SystemExit(f"bench: no start-up line within {timeout}s\n{self.stderr_tail()}")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                code = self.proc.wait()
                raise SystemExit(f"bench: the server exited ({code}) before listening\n{self.stderr_tail()}")
            buf += chunk
        sel.close()
        return buf.split(b"\n", 1)[0].decode(errors="replace")

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def rss_parts(self):
        """VmRSS split as the kernel reports it: anonymous (heap), file-backed, shared memory."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(line.split()[1]) * 1024
        return out

    def kill(self):
        """kill -9, then reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def stderr_tail(self, lines=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def call(self, method, path, form=None, timeout=60):
        """One API call with the dev account; returns (status, parsed JSON or text, headers)."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", AUTH)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, body, headers = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, body, headers = e.code, e.read(), e.headers
        text = body.decode(errors="replace")
        try:
            return status, json.loads(text) if text else None, headers
        except ValueError:
            return status, text, headers

    def must(self, method, path, form=None, want=(200, 201)):
        status, body, _ = self.call(method, path, form)
        if status not in want:
            raise SystemExit(f"bench: {method} {path} {form} answered {status}: {body}")
        return body

    def create_service(self, name, rate_limits):
        """rate_limits: [(unique_name, [(max, interval), ...])]; returns sids."""
        svc = self.must("POST", "/v2/Services", {"FriendlyName": name})
        out = {"sid": svc["sid"], "rate_limits": {}}
        for unique_name, buckets in rate_limits:
            rl = self.must("POST", f"/v2/Services/{svc['sid']}/RateLimits", {"UniqueName": unique_name})
            sids = []
            for mx, interval in buckets:
                b = self.must(
                    "POST",
                    f"/v2/Services/{svc['sid']}/RateLimits/{rl['sid']}/Buckets",
                    {"Max": str(mx), "Interval": str(interval)},
                )
                sids.append(b["sid"])
            out["rate_limits"][unique_name] = {"sid": rl["sid"], "buckets": sids}
        return out

    def store_totals(self):
        """(commits, jobs, commit seconds) so far, from /metrics; None if not exposed."""
        vals = [self.metric(n) for n in ("verilimit_store_batch_jobs_count", "verilimit_store_batch_jobs_sum",
                                         "verilimit_store_commit_duration_seconds_sum")]
        return None if None in vals else vals

    def metric(self, name):
        """A gauge from /metrics, or None when the server does not expose it."""
        status, body, _ = self.call("GET", "/metrics")
        if status != 200 or not isinstance(body, str):
            return None
        m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", body, re.M)
        return float(m.group(1)) if m else None


# ---------------------------------------------------------------- wrk


def cpu_times(pid=None):
    """(this process's CPU seconds, the machine's busy and idle seconds) so far, from /proc: a
    scenario's difference says where the two cores went (the server, or nothing)."""
    tick = os.sysconf("SC_CLK_TCK")
    proc_s = None
    if pid:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            proc_s = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        except (OSError, ValueError, IndexError):
            proc_s = None
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = (cpu[3] + cpu[4]) / tick  # idle + iowait
    return proc_s, sum(cpu[:8]) / tick - idle, idle


def wrk(name, script, url, args, duration=None, expected=None, background=False, threads=None, connections=None,
        server=None):
    duration = duration or DURATION
    threads = threads or THREADS
    connections = connections or CONNECTIONS
    cmd = [
        "wrk",
        f"-t{threads}", f"-c{connections}", f"-d{duration}s",
        "--timeout", "10s",
        "-s", os.path.join(BENCH, script),
        url,
    ]
    if args:
        cmd += ["--"] + list(args)
    out_path = os.path.join(WORK, f"wrk-{name}.out")
    if background:
        return subprocess.Popen(cmd, stdout=open(out_path, "wb"), stderr=subprocess.STDOUT), out_path
    load = loadavg()
    say(f"--> {name}: wrk -t{threads} -c{connections} -d{duration}s -s bench/{script}  (load average {load})")
    pid = server.proc.pid if server else None
    cpu0 = cpu_times(pid)
    with open(out_path, "wb") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=duration + 120).returncode
    cpu1 = cpu_times(pid)
    r = parse_wrk(name, out_path, code)
    r["loadavg_before"] = load
    busy, idle = cpu1[1] - cpu0[1], cpu1[2] - cpu0[2]
    r["cpu"] = {
        "machine_idle_fraction": idle / (busy + idle) if busy + idle else None,
        "server_cores": (cpu1[0] - cpu0[0]) / r["duration_s"] if pid and cpu0[0] is not None and cpu1[0] is not None and r["duration_s"] else None,
        "server_us_per_request": 1e6 * (cpu1[0] - cpu0[0]) / r["requests"] if pid and cpu0[0] is not None and cpu1[0] is not None and r["requests"] else None,
    }
    return r


def wrk_multi(name, script, urls, args_for):
    """One wrk process per server URL, all at once, splitting the connections (and threads)
    of a single-server scenario between them; returns the combined result. args_for(i) gives
    the script arguments of the i-th process. Latency: the mean of the p50s and the worst p99."""
    n = len(urls)
    conns = [CONNECTIONS // n + (1 if i < CONNECTIONS % n else 0) for i in range(n)]
    threads = [max(1, min(THREADS // n, c)) for c in conns]
    load = loadavg()
    say(f"--> {name}: {n} wrk processes at once, -c{'+'.join(map(str, conns))} -t{'+'.join(map(str, threads))} "
        f"-d{DURATION}s -s bench/{script}, one per instance  (load average {load})")
    procs = [wrk(f"{name}-{i}", script, url, args_for(i), background=True, threads=threads[i], connections=conns[i])
             for i, url in enumerate(urls)]
    with open(PIDS, "a") as f:
        f.writelines(f"{p.pid}\n" for p, _ in procs)
    parts = [parse_wrk(f"{name}-{i}", out, p.wait(timeout=DURATION + 120)) for i, (p, out) in enumerate(procs)]
    statuses = {}
    for r in parts:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "scenario": name,
        "requests": sum(r["requests"] for r in parts),
        "duration_s": max(r["duration_s"] for r in parts),
        "rps": sum(r["rps"] for r in parts),
        "p50_ms": sum(r["p50_ms"] for r in parts) / n,
        "p90_ms": max(r["p90_ms"] for r in parts),
        "p99_ms": max(r["p99_ms"] for r in parts),
        "max_ms": max(r["max_ms"] for r in parts),
        "socket_errors": {k: sum(r["socket_errors"][k] for r in parts) for k in parts[0]["socket_errors"]},
        "errors": sum(r["errors"] for r in parts),
        "expected_status": parts[0]["expected_status"],
        "unexpected": sum(r["unexpected"] for r in parts),
        "statuses": dict(sorted(statuses.items())),
        "first_unexpected": next((r["first_unexpected"] for r in parts if r["first_unexpected"]), None),
        "loadavg_before": load,
        "processes": parts,
    }


def loadavg():
    """The 1-minute load average: the machine is shared, so say how busy it was."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return None


def parse_wrk(name, out_path, code):
    text = open(out_path, errors="replace").read()
    m = re.search(r"^BENCH_RESULT (\{.*\})$", text, re.M)
    if code != 0 or not m:
        say(text)
        raise SystemExit(f"bench: wrk for {name} failed (exit {code}, no BENCH_RESULT line)")
    r = json.loads(m.group(1))
    statuses = {int(k): v for k, v in r["statuses"].items()}
    e = r["errors"]
    socket_errors = e["connect"] + e["read"] + e["write"] + e["timeout"]
    responses = sum(statuses.values())
    tolerated = set(r.get("tolerated", []))
    bad_statuses = sum(n for s, n in statuses.items() if not (200 <= s < 300 or s == 429 or s in tolerated))
    return {
        "scenario": name,
        "requests": r["requests"],
        "duration_s": r["duration_us"] / 1e6,
        "rps": r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0,
        "p50_ms": r["latency_us"]["p50"] / 1000,
        "p90_ms": r["latency_us"]["p90"] / 1000,
        "p99_ms": r["latency_us"]["p99"] / 1000,
        "max_ms": r["latency_us"]["max"] / 1000,
        "socket_errors": e,
        "errors": socket_errors + bad_statuses,
        "expected_status": r["expected"],
        # Responses neither expected nor tolerated by the script.
        "unexpected": sum(n for s, n in statuses.items() if s != r["expected"] and s not in tolerated),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "first_unexpected": r["first_bad"],
    }


# ---------------------------------------------------------------- the database


def sql_count(db, query):
    """Counts with the sqlite3 CLI (read-only), else Python's sqlite3 module."""
    if shutil.which("sqlite3"):
        out = subprocess.run(
            ["sqlite3", "-readonly", db, query], capture_output=True, text=True, timeout=600
        )
        if out.returncode == 0:
            return [line.split("|") for line in out.stdout.strip().splitlines()]
        say(f"(sqlite3 CLI failed: {out.stderr.strip()}; using Python's sqlite3)")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    try:
        return [[str(c) for c in row] for row in con.execute(query).fetchall()]
    finally:
        con.close()


def psql(url, query):
    out = subprocess.run(["psql", url, "-Atqc", query], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"bench: psql failed on {query!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def pg_url(database):
    """PG_ADMIN with its database replaced."""
    u = urllib.parse.urlsplit(PG_ADMIN)
    return u._replace(path="/" + database).geturl()


# ---------------------------------------------------------------- output


def fmt_table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def statuses_text(s):
    return " ".join(f"{k}:{v}" for k, v in s.items()) or "-"


def machine():
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "cpu": cpu, "kernel": platform.release()}


def git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# ---------------------------------------------------------------- scenarios


def main_scenarios(results):
    db = os.path.join(WORK, "bench.db")
    server = Server(db, "main")
    try:
        say(f"server {server.url} (pid {server.proc.pid}, db {db})")
        keys3 = ["ip", "phone", "session"]
        admit_svc = server.create_service("bench admit", [(k, BUCKETS) for k in keys3])
        refuse_svc = server.create_service("bench refuse", [(k, BUCKETS) for k in keys3])
        read_rl = admit_svc["rate_limits"]["ip"]
        read_path = f"/v2/Services/{admit_svc['sid']}/RateLimits/{read_rl['sid']}/Buckets/{read_rl['buckets'][0]}"
        scaling_specs = [
            (1, "1x1", [("rl0", BUCKETS[:1])]),
            (3, "1x3", [("rl0", BUCKETS)]),
            (9, "3x3", [(f"rl{i}", BUCKETS) for i in range(3)]),
            (27, "9x3", [(f"rl{i}", BUCKETS) for i in range(9)]),
        ]
        scaling_svcs = [(n, shape, server.create_service(f"bench scaling {shape}", spec), [k for k, _ in spec])
                        for n, shape, spec in scaling_specs] if SCALING else []
        rss_before = server.rss_bytes()

        runs = results["scenarios"]
        runs["floor"] = wrk("floor", "floor.lua", server.url + "/healthz", [], server=server)
        verif = lambda svc: f"/v2/Services/{svc['sid']}/Verifications"
        store0 = server.store_totals()
        runs["admit"] = wrk("admit", "admit.lua", server.url, [verif(admit_svc), AUTH, ",".join(keys3)], server=server)
        runs["admit"]["service_sid"] = admit_svc["sid"]
        store1 = server.store_totals()
        if store0 and store1:
            commits, jobs, secs = (b - a for a, b in zip(store0, store1))
            results["writer_during_admit"] = {
                "commits": int(commits),
                "jobs_per_commit": jobs / commits if commits else 0,
                "ms_per_commit": 1000 * secs / commits if commits else 0,
                "commit_busy_fraction": secs / runs["admit"]["duration_s"],
            }
        # Admit leaves its journal to be applied to the tables (tens of thousands of states, a
        # second or two of the writer's time). Refuse and read are measured once it is: each
        # scenario in its own steady state, not in admit's tail. How long it took is reported.
        t0 = time.monotonic()
        drained = wait_until(lambda: server.metric("verilimit_sqlite_journal_items") == 0, 300,
                             "the journal to be applied", step=0.1)
        results["journal_after_admit"] = {"seconds": round(time.monotonic() - t0, 1), "drained": drained}
        runs["refuse"] = wrk("refuse", "refuse.lua", server.url, [verif(refuse_svc), AUTH, ",".join(keys3), "hot"],
                             server=server)
        runs["refuse"]["service_sid"] = refuse_svc["sid"]
        runs["read"] = wrk("read", "read.lua", server.url + read_path, [AUTH], server=server)
        # What a user of verilimit meets in a load test: 10,000 values, Zipf-hot, a mix of starts
        # (admitted, or refused by the hot values' buckets and the 5-sends rule), checks and fetches.
        mixed_svc = server.create_service("bench mixed", [("ip", [(10, 60), (100, 3600)])])
        runs["mixed"] = wrk("mixed", "mixed.lua", server.url, [f"/v2/Services/{mixed_svc['sid']}", AUTH], server=server)
        runs["mixed"]["service_sid"] = mixed_svc["sid"]
        for n, shape, svc, keys in scaling_svcs:
            r = wrk(f"scale-{n}", "admit.lua", server.url, [verif(svc), AUTH, ",".join(keys)])
            r.update({"checks": n, "shape": shape, "service_sid": svc["sid"]})
            results["scaling"].append(r)
        results["server_rss_bytes"] = {"before": rss_before, "after": server.rss_bytes()}

        # Rate-limit counters of the hot value, to compare after the restart (the 1-hour and
        # 1-day buckets; the 1-minute one may legitimately empty in between).
        _, usage, _ = server.call("GET", f"/emulator/v1/Services/{refuse_svc['sid']}/Usage?Value=hot")
        before_usage = usage_counts(usage)

        # Durability: kill -9 right after the load, restart on the same file, count rows.
        say("--> durability: kill -9, restart on the same database")
        server.kill()
        t0 = time.monotonic()
        server = Server(db, "restart")
        restart_s = time.monotonic() - t0
        say(f"restarted {server.url} (pid {server.proc.pid}) in {restart_s:.1f}s")
        rows = {sid: int(n) for sid, n in sql_count(db, "SELECT service_sid, COUNT(*) FROM verifications GROUP BY service_sid")}
        checks = []
        for name, r in [("admit", runs["admit"]), ("refuse", runs["refuse"])] + [(f"scale-{r['checks']}", r) for r in results["scaling"]]:
            acked = int(r["statuses"].get("201", 0))
            stored = rows.get(r["service_sid"], 0)
            checks.append({"scenario": name, "acknowledged_201": acked, "rows": stored, "ok": stored >= acked})
        _, usage, _ = server.call("GET", f"/emulator/v1/Services/{refuse_svc['sid']}/Usage?Value=hot")
        after_usage = usage_counts(usage)
        long_buckets = {k: v for k, v in before_usage.items() if k[1] >= 3600}
        counters_ok = all(after_usage.get(k, 0) >= v for k, v in long_buckets.items()) and bool(long_buckets)
        results["durability"] = {
            "durable": all(c["ok"] for c in checks),
            "checks": checks,
            "hot_value_counts_before_kill": {f"{k[0]}/{k[1]}s": v for k, v in before_usage.items()},
            "hot_value_counts_after_restart": {f"{k[0]}/{k[1]}s": v for k, v in after_usage.items()},
            "rate_limit_counters_durable": counters_ok,
            "restart_seconds": round(restart_s, 2),
        }
        server.stop()
    finally:
        server.kill()
    for name in ("main", "restart"):
        log = os.path.join(WORK, f"{name}.stderr.log")
        lines = [l.rstrip() for l in open(log, errors="replace")] if os.path.exists(log) else []
        lines = [l for l in lines if l and "no credentials configured" not in l]
        results["server_log"][name] = {"lines": len(lines), "first": lines[:10]}


def pg_scenarios(results):
    """admit on PostgreSQL: 1 instance, then 3 instances sharing one database (each on a fresh
    database); every instance kill -9'd after the load, the 201s counted against the rows."""
    keys3 = ["ip", "phone", "session"]
    for instances in (1, 3):
        database = f"verilimit_bench_{os.getpid()}_{instances}"
        psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        psql(PG_ADMIN, f"CREATE DATABASE {database}")
        servers = []
        try:
            url = pg_url(database)
            # One after the other: the first runs the migrations.
            for i in range(instances):
                servers.append(Server(None, f"pg{instances}-{i}", database_url=url))
            say(f"PostgreSQL, {instances} instance(s): {' '.join(s.url for s in servers)} (database {database})")
            svc = servers[0].create_service(f"bench pg admit x{instances}", [(k, BUCKETS) for k in keys3])
            path = f"/v2/Services/{svc['sid']}/Verifications"
            name = f"pg-admit-{instances}"
            if instances == 1:
                r = wrk(name, "admit.lua", servers[0].url, [path, AUTH, ",".join(keys3)])
            else:
                r = wrk_multi(name, "admit.lua", [s.url for s in servers],
                              lambda i: [path, AUTH, ",".join(keys3), str(10 * (i + 1))])
            for s in servers:
                s.kill()
            rows = int(psql(url, f"SELECT COUNT(*) FROM verifications WHERE service_sid = '{svc['sid']}'"))
            acked = int(r["statuses"].get("201", 0))
            r.update({"instances": instances, "acknowledged_201": acked, "rows_after_kill": rows, "durable": rows >= acked})
            results["postgres"].append(r)
        finally:
            for s in servers:
                s.kill()
            psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def compare_scenarios(results):
    """floor, admit, refuse, read on the baseline binary and on this one, alternating
    (baseline, current, baseline, current, ...: BENCH_COMPARE_ROUNDS each), each on a fresh
    database; the best of each binary's rounds is kept (the machine is shared, and noise only
    ever slows a round)."""
    keys3 = ["ip", "phone", "session"]
    rounds = {"baseline": [], "current": []}
    for i, (label, binary) in enumerate([("baseline", BASELINE_BIN), ("current", BIN)] * COMPARE_ROUNDS):
        db = os.path.join(WORK, f"compare-{i}.db")
        server = Server(db, f"compare-{i}-{label}", binary=binary)
        try:
            admit_svc = server.create_service("compare admit", [(k, BUCKETS) for k in keys3])
            refuse_svc = server.create_service("compare refuse", [(k, BUCKETS) for k in keys3])
            rl = admit_svc["rate_limits"]["ip"]
            read_path = f"/v2/Services/{admit_svc['sid']}/RateLimits/{rl['sid']}/Buckets/{rl['buckets'][0]}"
            verif = lambda svc: f"/v2/Services/{svc['sid']}/Verifications"
            runs = {
                "floor": wrk(f"{label}-floor", "floor.lua", server.url + "/healthz", []),
                "admit": wrk(f"{label}-admit", "admit.lua", server.url, [verif(admit_svc), AUTH, ",".join(keys3)]),
                "refuse": wrk(f"{label}-refuse", "refuse.lua", server.url,
                              [verif(refuse_svc), AUTH, ",".join(keys3), "hot"]),
                "read": wrk(f"{label}-read", "read.lua", server.url + read_path, [AUTH]),
            }
            rounds[label].append({name: r["rps"] for name, r in runs.items()})
        finally:
            server.kill()
    out = {}
    for label, rs in rounds.items():
        best = {name: max(r[name] for r in rs) for name in rs[0]}
        out[label] = {"rps": {k: round(v) for k, v in best.items()},
                      "ratios": {k: round(best[k] / (best["floor"] or 1.0), 3) for k in ("admit", "refuse", "read")}}
    out["baseline"]["binary"] = BASELINE_BIN
    results["comparison"] = out


def usage_counts(usage):
    counts = {}
    for row in (usage or {}).get("usage", []) if isinstance(usage, dict) else []:
        counts[(row["unique_name"], int(row["interval"]))] = int(row["count"])
    return counts


def memory_scenario(results):
    """1,000,000 distinct values admitted into one bucket; RSS per tracked value; prune."""
    db = os.path.join(WORK, "memory.db")
    server = Server(db, "memory")
    mem = {"values": MEMORY_VALUES}
    results["memory"] = mem
    try:
        say(f"--> memory: {MEMORY_VALUES} distinct values into one bucket (server {server.url}, pid {server.proc.pid})")
        # Interval 3600 > the 600 s code lifetime: the clock can first expire the verifications
        # (so the limiter is measured alone), then the window.
        svc = server.create_service("bench memory", [("ip", [(5, 3600)])])
        rss0 = server.rss_bytes()
        donedir = os.path.join(WORK, "memory-done")
        os.makedirs(donedir, exist_ok=True)
        quota = -(-MEMORY_VALUES // THREADS)
        mem["values"] = quota * THREADS
        timeout = int(os.environ.get("BENCH_MEMORY_TIMEOUT") or 3600)
        start = time.monotonic()
        proc, out_path = wrk("memory", "memory.lua", server.url,
                             [f"/v2/Services/{svc['sid']}/Verifications", AUTH, "ip", str(quota), donedir],
                             duration=timeout, background=True)
        with open(PIDS, "a") as f:
            f.write(f"{proc.pid}\n")
        # wrk's main thread sleeps for the whole -d even when every thread has stopped: wait
        # for the per-thread markers, then SIGINT it (it then reports as usual).
        last = 0
        while proc.poll() is None and len(os.listdir(donedir)) < THREADS:
            time.sleep(1)
            if time.monotonic() - last > 30:
                last = time.monotonic()
                say(f"    {int(last - start)}s: {len(os.listdir(donedir))}/{THREADS} threads done, "
                    f"server RSS {server.rss_bytes() / 1e6:.0f} MB, tracked values {server.metric('verilimit_limiter_tracked_values')}")
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
        r = parse_wrk("memory", out_path, code)
        # (Connections left open after a thread's quota ask GET /healthz: memory.lua tolerates
        # those 200s, so they are not counted as unexpected.)
        mem["load"] = r
        mem["load_seconds"] = round(time.monotonic() - start, 1)
        admitted = int(r["statuses"].get("201", 0))
        mem["admitted_201"] = admitted
        rss1 = server.rss_bytes()
        mem["rss_parts_after_load"] = server.rss_parts()
        mem["tracked_values_metric"] = server.metric("verilimit_limiter_tracked_values")
        mem["admission_rows"] = int(sql_count(db, "SELECT COUNT(*) FROM admissions")[0][0])

        # Restart with every value live: kill -9, then the time until the new process listens
        # (it has rebuilt what decisions need), and what that rebuilt state holds resident.
        server.kill()
        t0 = time.monotonic()
        server = Server(db, "memory-restart")
        mem["restart_seconds"] = round(time.monotonic() - t0, 2)
        mem["rss_after_restart"] = server.rss_bytes()
        mem["rss_parts_after_restart"] = server.rss_parts()
        mem["bytes_per_value_after_restart"] = (mem["rss_after_restart"] - rss0) / max(admitted, 1)
        say(f"    restarted with {admitted} live values in {mem['restart_seconds']}s, "
            f"RSS {mem['rss_after_restart'] / 1e6:.0f} MB")

        # Step 1: past the code lifetime (600 s), inside the window: verifications expire and
        # leave memory (and are stored as expired); the limiter keeps every value.
        t0 = time.monotonic()
        advance_clock(server, 700, mem)
        pending = lambda: int(sql_count(db, "SELECT COUNT(*) FROM verifications WHERE status = 'pending'")[0][0])
        wait_until(lambda: server.metric("verilimit_recipients_tracked") in (0.0, None) and pending() == 0,
                   900, "pending verifications to be swept")
        mem["expiry_sweep_seconds"] = round(time.monotonic() - t0, 1)
        mem["expiry_round_wait_seconds"] = round_finished(server)
        rss2 = server.rss_bytes()
        mem["rss_parts_after_verifications_expired"] = server.rss_parts()

        # Step 2: past the window: the maintenance sweep (every 5 s) prunes the values.
        t0 = time.monotonic()
        advance_clock(server, 3600, mem)
        usage_path = f"/emulator/v1/Services/{svc['sid']}/Usage?RateLimit=ip"
        usage_empty = lambda: server.must("GET", usage_path)["usage"] == []
        no_rows = lambda: int(sql_count(db, "SELECT COUNT(*) FROM admissions")[0][0]) == 0
        if server.metric("verilimit_limiter_tracked_values") is not None:
            # Usage copies every tracked log: poll the cheap gauge, then ask Usage once.
            wait_until(lambda: server.metric("verilimit_limiter_tracked_values") == 0 and no_rows(),
                       900, "the maintenance sweep to prune the values")
        else:
            wait_until(usage_empty, 900, "Usage to be empty")
            wait_until(no_rows, 900, "the maintenance sweep to prune the admissions")
        mem["prune_sweep_seconds"] = round(time.monotonic() - t0, 1)
        mem["prune_round_wait_seconds"] = round_finished(server)
        mem["usage_empty_after_prune"] = usage_empty()
        rss3 = server.rss_bytes()
        mem["rss_parts_after_prune"] = server.rss_parts()
        mem.update({
            "rss_before": rss0,
            "rss_after_load": rss1,
            "rss_after_verifications_expired": rss2,
            "rss_after_prune": rss3,
            "bytes_per_value_with_verifications": (rss1 - rss0) / max(admitted, 1),
            "bytes_per_value_limiter_only": (rss2 - rss0) / max(admitted, 1),
            "admission_rows_after_prune": int(sql_count(db, "SELECT COUNT(*) FROM admissions")[0][0]),
            "tracked_values_metric_after_prune": server.metric("verilimit_limiter_tracked_values"),
        })
        server.stop()
    finally:
        server.kill()


def soak_scenario(results):
    """Admit at full speed for SOAK seconds on a fresh server with its default settings (the
    send-attempts rule on), distinct `To`s and values, the wide buckets: resident memory sampled
    every 10 s."""
    db = os.path.join(WORK, "soak.db")
    server = Server(db, "soak", server_defaults=True)
    soak = {"seconds": SOAK, "samples": []}
    results["soak"] = soak
    try:
        keys3 = ["ip", "phone", "session"]
        svc = server.create_service("bench soak", [(k, BUCKETS) for k in keys3])
        say(f"--> soak: admit for {SOAK}s with the server's defaults (server {server.url}, pid {server.proc.pid})")
        soak["rss_before"] = server.rss_bytes()
        start = time.monotonic()
        proc, out_path = wrk("soak", "admit.lua", server.url,
                             [f"/v2/Services/{svc['sid']}/Verifications", AUTH, ",".join(keys3)],
                             duration=SOAK, background=True)
        with open(PIDS, "a") as f:
            f.write(f"{proc.pid}\n")
        next_sample = start
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                sample = {"t": round(now - start), "rss": server.rss_bytes(),
                          "tracked_values": server.metric("verilimit_limiter_tracked_values"),
                          "recipients": server.metric("verilimit_recipients_tracked")}
                soak["samples"].append(sample)
                if sample["t"] % 60 < 10:
                    say(f"    {sample['t']}s: RSS {sample['rss'] / 1e6:.0f} MB, tracked values "
                        f"{sample['tracked_values']}, recipients {sample['recipients']}")
                next_sample += 10
            time.sleep(0.5)
        r = parse_wrk("soak", out_path, proc.wait())
        soak["load"] = r
        soak["rss_after"] = server.rss_bytes()
        soak["rss_max"] = max([s["rss"] for s in soak["samples"]] + [soak["rss_after"]])
        server.stop()
    finally:
        server.kill()


def round_finished(server):
    """Waits for a maintenance round to finish after this call: "a sweep ran", including the
    memory a round gives back at its end (read in the middle of the round, RSS is what the
    allocators still hold). Returns the seconds waited (None from a build without the counter,
    which is measured at once)."""
    rounds = server.metric("verilimit_maintenance_rounds_total")
    if rounds is None:
        return None
    t0 = time.monotonic()
    wait_until(lambda: (server.metric("verilimit_maintenance_rounds_total") or 0) > rounds,
               120, "a maintenance round to finish")
    return round(time.monotonic() - t0, 1)


def advance_clock(server, secs, mem):
    """Moves the account's clock secs ahead with an absolute `Now`, so that a retry after a 503
    (the request timed out behind a long write) cannot move it twice."""
    now_ms = server.must("GET", "/emulator/v1/Clock")["now_ms"]
    target = datetime.datetime.fromtimestamp(now_ms / 1000 + secs, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    deadline = time.monotonic() + 900
    while True:
        t0 = time.monotonic()
        status, body, _ = server.call("POST", "/emulator/v1/Clock", {"Now": target}, timeout=120)
        if status == 200:
            return
        mem.setdefault("clock_errors", []).append(
            {"request": f"POST /emulator/v1/Clock Now={target}", "status": status, "body": body,
             "seconds": round(time.monotonic() - t0, 1)})
        say(f"    POST /emulator/v1/Clock Now={target} answered {status} after {time.monotonic() - t0:.1f}s: {body}")
        if status != 503 or time.monotonic() > deadline:
            raise SystemExit(f"bench: cannot move the clock: {status} {body}")


def wait_until(pred, timeout, what, step=1.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            say(f"    (gave up after {timeout}s waiting for {what})")
            return False
        time.sleep(step)
    return True


# ---------------------------------------------------------------- report


def report(results):
    runs = results["scenarios"]
    say()
    say(f"verilimit bench — {results['date']} — commit {results['commit']} — "
        f"{results['machine']['cores']} cores, {results['machine']['memory_gib']} GiB — "
        f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s{' (smoke)' if SMOKE else ''}")
    say()
    rows = [[name, f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["errors"],
             f"{r['unexpected']} (want {r['expected_status']})", statuses_text(r["statuses"]), r["loadavg_before"]]
            for name, r in runs.items()]
    say(fmt_table(["scenario", "req/s", "p50 ms", "p99 ms", "errors", "unexpected", "statuses", "load avg"], rows))
    say()
    floor = runs["floor"]["rps"] or 1.0
    ratio_rows = []
    for name, target in TARGETS.items():
        ratio = runs[name]["rps"] / floor
        results["ratios"][name] = round(ratio, 3)
        ratio_rows.append([f"{name}/floor", f"{ratio:.2f}", f">= {target:.2f}", "met" if ratio >= target else "NOT met"])
    say(fmt_table(["ratio", "this run", "target", ""], ratio_rows))
    cpu_rows = [[name, f"{r['rps']:.0f}", f"{r['cpu']['server_us_per_request']:.1f}", f"{r['cpu']['server_cores']:.2f}",
                 f"{100 * r['cpu']['machine_idle_fraction']:.0f}%"]
                for name, r in runs.items()
                if r.get("cpu", {}).get("server_us_per_request") is not None
                and r["cpu"].get("machine_idle_fraction") is not None]
    if cpu_rows:
        say()
        say("where the CPU went (from /proc: the server's CPU time per request, the cores it kept busy, and how much "
            "of the machine stayed idle; the rest is wrk and the kernel's loopback):")
        say(fmt_table(["scenario", "req/s", "server CPU us/request", "server cores", "machine idle"], cpu_rows))
    cmp = results.get("comparison")
    if cmp:
        say()
        say(f"comparison with {cmp['baseline']['binary']} (same run, best of {COMPARE_ROUNDS} alternating rounds each):")
        rows = [[name, f"{cmp['baseline']['rps'][name]}", f"{cmp['current']['rps'][name]}",
                 f"{cmp['current']['rps'][name] / (cmp['baseline']['rps'][name] or 1):.2f}",
                 "" if name == "floor" else f"{cmp['baseline']['ratios'][name]:.2f}",
                 "" if name == "floor" else f"{cmp['current']['ratios'][name]:.2f}"]
                for name in ("floor", "admit", "refuse", "read")]
        say(fmt_table(["scenario", "baseline req/s", "current req/s", "current/baseline",
                       "baseline /floor", "current /floor"], rows))
    if results["scaling"]:
        say()
        base = results["scaling"][0]["rps"] or 1.0
        srows = [[r["checks"], r["shape"], f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                  f"{r['rps'] / base:.2f}", f"{r['rps'] / floor:.2f}", r["errors"], r["unexpected"], r["loadavg_before"]]
                 for r in results["scaling"]]
        say(fmt_table(["bucket checks", "rate limits x buckets", "req/s", "p50 ms", "p99 ms",
                       "vs 1 check", "vs floor", "errors", "unexpected", "load avg"], srows))
    if results["postgres"]:
        say()
        admit = runs["admit"]["rps"] or 1.0
        prow = [["SQLite, 1 instance (admit above)", f"{runs['admit']['rps']:.0f}", f"{runs['admit']['p50_ms']:.2f}",
                 f"{runs['admit']['p99_ms']:.2f}", "1.00", f"{runs['admit']['rps'] / floor:.2f}", runs["admit"]["errors"],
                 runs["admit"]["unexpected"], "-", runs["admit"]["loadavg_before"]]]
        for r in results["postgres"]:
            prow.append([f"PostgreSQL, {r['instances']} instance(s)", f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                         f"{r['rps'] / admit:.2f}", f"{r['rps'] / floor:.2f}", r["errors"], r["unexpected"],
                         f"{r['acknowledged_201']} / {r['rows_after_kill']} {'ok' if r['durable'] else 'LOST'}", r["loadavg_before"]])
        say(fmt_table(["admit, 9 bucket checks", "req/s", "p50 ms", "p99 ms", "vs SQLite", "vs floor", "errors",
                       "unexpected", "201s / rows after kill -9", "load avg"], prow))
    w = results.get("writer_during_admit")
    if w:
        say()
        say(f"SQLite writer during admit (from /metrics): {w['commits']} commits, {w['jobs_per_commit']:.1f} jobs "
            f"and {w['ms_per_commit']:.2f} ms per commit, committing {100 * w['commit_busy_fraction']:.0f}% of the time")
    j = results.get("journal_after_admit")
    if j:
        say(f"journal applied to the tables after admit: {'in' if j['drained'] else 'NOT within'} {j['seconds']:.1f}s "
            f"(refuse and read start once it is)")
    d = results["durability"]
    say()
    say(f"durable: {'yes' if d['durable'] else 'NO'} (kill -9 after the load, restart on the same file: "
        f"listening again after {d['restart_seconds']:.1f}s)")
    say(fmt_table(["scenario", "201s acknowledged", "verifications rows"],
                  [[c["scenario"], c["acknowledged_201"], c["rows"]] for c in d["checks"]]))
    say(f"rate-limit counters of the hot value after restart: {'kept' if d['rate_limit_counters_durable'] else 'NOT kept'} "
        f"(before {d['hot_value_counts_before_kill']}, after {d['hot_value_counts_after_restart']})")
    bad = [(n, r["first_unexpected"]) for n, r in list(runs.items()) + [(f"scale-{r['checks']}", r) for r in results["scaling"]]
           if r["first_unexpected"]]
    for n, fb in bad:
        say(f"first unexpected response in {n}: {fb['status']} {fb['body']}")
    for name, log in results["server_log"].items():
        if log["lines"]:
            say(f"server stderr ({name}): {log['lines']} lines at --log warn besides the dev-account notice, first:")
            for l in log["first"]:
                say(f"    {l}")
    m = results.get("memory")
    if m and m.get("error"):
        say(f"\nmemory scenario failed: {m['error']}")
    for c in (m or {}).get("clock_errors", []):
        say(f"memory: {c['request']} answered {c['status']} after {c['seconds']}s: {c['body']}")
    if m and "rss_after_prune" in m:
        say()
        mb = lambda b: f"{b / 1e6:.1f} MB"
        say(f"memory: {m['admitted_201']} values admitted in {m['load_seconds']}s "
            f"({m['load']['rps']:.0f} req/s, {m['load']['errors']} errors, {m['load']['unexpected']} unexpected)")
        say(fmt_table(["stage", "VmRSS", "(RSS - before) / values"], [
            ["before the load", mb(m["rss_before"]), "-"],
            ["after the load (values + their pending verifications)", mb(m["rss_after_load"]), f"{m['bytes_per_value_with_verifications']:.0f} B"],
            [f"kill -9 and restart (ready in {m['restart_seconds']}s): the same state rebuilt", mb(m["rss_after_restart"]), f"{m['bytes_per_value_after_restart']:.0f} B"],
            ["clock +700s: verifications expired and swept", mb(m["rss_after_verifications_expired"]), f"{m['bytes_per_value_limiter_only']:.0f} B"],
            ["clock +3600s more: window passed, values pruned", mb(m["rss_after_prune"]), f"{(m['rss_after_prune'] - m['rss_before']) / max(m['admitted_201'], 1):.0f} B"],
        ]))
        parts = lambda key: ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in m.get(key, {}).items())
        say(f"resident memory by kind: after the load {parts('rss_parts_after_load')}; after the restart "
            f"{parts('rss_parts_after_restart')}; after expiry "
            f"{parts('rss_parts_after_verifications_expired')}; after the prune {parts('rss_parts_after_prune')}")
        say(f"sweeps: verifications expired and stored in {m['expiry_sweep_seconds']}s, values pruned in {m['prune_sweep_seconds']}s "
            "(freed memory is kept by the allocator for reuse: RSS that stays up after a sweep is not a leak by itself)")
        say(f"admissions rows: {m['admission_rows']} after load, {m['admission_rows_after_prune']} after the prune; "
            f"tracked values (metric): {m['tracked_values_metric']} -> {m['tracked_values_metric_after_prune']}; "
            f"Usage empty after the prune: {'yes' if m['usage_empty_after_prune'] else 'NO'}")


def report_soak(results):
    s = results.get("soak")
    if not s:
        return
    if s.get("error"):
        say(f"\nsoak scenario failed: {s['error']}")
        return
    say()
    load = s.get("load", {})
    say(f"soak: admit for {s['seconds']}s with the server's defaults: {load.get('rps', 0):.0f} req/s, "
        f"{load.get('errors')} errors, {load.get('unexpected')} unexpected, statuses {statuses_text(load.get('statuses', {}))}")
    rows = [[f"{x['t']}s", f"{x['rss'] / 1e6:.0f} MB", x["tracked_values"], x["recipients"]]
            for x in s["samples"] if x["t"] % 60 < 10]
    rows.append(["after", f"{s['rss_after'] / 1e6:.0f} MB", "", ""])
    say(fmt_table(["time", "VmRSS", "tracked values", "recipients"], rows))
    say(f"soak: RSS before {s['rss_before'] / 1e6:.0f} MB, highest {s['rss_max'] / 1e6:.0f} MB")


def smoke_failures(results):
    fails = []
    runs = results["scenarios"]
    for name in ("floor", "admit", "refuse", "read", "mixed"):
        if name not in runs or runs[name]["requests"] == 0:
            fails.append(f"{name} did not run")
    for name, r in list(runs.items()) + [(f"scale-{r['checks']}", r) for r in results["scaling"]]:
        if r["errors"]:
            fails.append(f"{name}: {r['errors']} errors ({r['socket_errors']}, statuses {r['statuses']})")
        if name == "refuse":
            if r["requests"] and r["statuses"].get("429", 0) < 0.9 * r["requests"]:
                fails.append(f"refuse: fewer than 90% 429 ({r['statuses']})")
            if r["statuses"].get("201", 0) > 5 * max(1, DURATION // 60 + 1):
                fails.append(f"refuse: {r['statuses'].get('201')} admitted, at most 5 a minute expected")
        elif r["unexpected"]:
            fails.append(f"{name}: {r['unexpected']} responses not {r['expected_status']} ({r['statuses']})")
    for r in results["postgres"]:
        name = f"pg-admit-{r['instances']}"
        if r["requests"] == 0:
            fails.append(f"{name} did not run")
        if r["errors"] or r["unexpected"]:
            fails.append(f"{name}: {r['errors']} errors, {r['unexpected']} not 201 ({r['statuses']})")
        if not r["durable"]:
            fails.append(f"{name}: {r['acknowledged_201']} acknowledged but {r['rows_after_kill']} rows after kill -9")
    if PG and len(results["postgres"]) != 2:
        fails.append("the PostgreSQL scenarios did not run")
    if SCALING and len(results["scaling"]) != 4:
        fails.append("the scaling table did not run")
    if not results["durability"].get("durable"):
        fails.append("durability: acknowledged verifications missing after kill -9")
    if not results["durability"].get("rate_limit_counters_durable"):
        fails.append("durability: the hot value's rate-limit counters were not kept across the restart")
    return fails


def main():
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""),
        "machine": machine(),
        "settings": {"threads": THREADS, "connections": CONNECTIONS, "duration_s": DURATION,
                     "smoke": SMOKE, "memory": MEMORY, "buckets": BUCKETS,
                     "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]},
        "targets": TARGETS,
        "scenarios": {},
        "ratios": {},
        "scaling": [],
        "durability": {},
        "postgres": [],
        "server_log": {},
    }
    main_scenarios(results)
    if BASELINE_BIN and not SMOKE:
        compare_scenarios(results)
    if PG:
        pg_scenarios(results)
    if SOAK:
        try:
            soak_scenario(results)
        except (SystemExit, Exception) as e:  # keep the main results
            results.setdefault("soak", {})["error"] = str(e)
    if MEMORY:
        try:
            memory_scenario(results)
        except (SystemExit, Exception) as e:  # keep the main results
            results.setdefault("memory", {})["error"] = str(e)
    report(results)
    report_soak(results)
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    out = os.path.join(BENCH, "results", "latest.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=False)
        f.write("\n")
    say(f"\nresults written to {os.path.relpath(out, ROOT)}")
    if SMOKE:
        fails = smoke_failures(results)
        for f in fails:
            say(f"SMOKE FAIL: {f}")
        say(f"smoke: {'FAILED' if fails else 'passed'}")
        return 1 if fails else 0
    if (not results["durability"]["durable"] or not all(r["durable"] for r in results["postgres"])
            or (results.get("memory") or {}).get("error") or (results.get("soak") or {}).get("error")):
        return 1
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
