#!/usr/bin/env python3
"""Generates replay traffic and its configuration for bench/replay.sh.

usage: replay_gen.py LINES OUT_DIR [POOL]

Writes OUT_DIR/config.json (one service, three rate limits `ip`, `user`, `phone_prefix`,
three buckets each: 9 bucket checks per start) and OUT_DIR/traffic.jsonl: LINES starts over
one simulated day (about 115 per second for 10 million), values drawn from skewed pools
(a few hot IPs and users, many cold ones): POOL distinct cold IPs, users and
recipients each (default 200000); POOL 0 draws them from the whole space (about 6 million
distinct IPs and recipients a day for 10 million lines: every start is a new value).
"""
import json
import random
import sys

SERVICE = "VA" + "0" * 31 + "1"


def main():
    lines, out = int(sys.argv[1]), sys.argv[2]
    pool = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
    space = pool or 16_000_000
    rnd = random.Random(17)
    config = {"services": [{"sid": SERVICE, "friendly_name": "bench", "rate_limits": [
        {"unique_name": name, "buckets": [
            {"max": m1, "interval": 60}, {"max": m2, "interval": 3600}, {"max": m3, "interval": 86400}]}
        for name, m1, m2, m3 in [("ip", 20, 200, 1000), ("user", 5, 20, 50), ("phone_prefix", 30, 600, 12000)]
    ]}]}
    with open(f"{out}/config.json", "w") as f:
        json.dump(config, f, indent=2)
    start = 1_796_040_000_000  # 2026-11-30T12:00:00Z
    step = 86_400_000 / lines
    hot_ips = [f"203.0.113.{i}" for i in range(50)]
    with open(f"{out}/traffic.jsonl", "w", buffering=1 << 20) as f:
        w = f.write
        for i in range(lines):
            t = start + int(i * step)
            if rnd.random() < 0.05:
                ip = rnd.choice(hot_ips)
            else:
                n = rnd.randrange(space)
                ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            if rnd.random() < 0.02:
                user = f"u{rnd.randrange(100)}"
            else:
                user = f"u{rnd.randrange(space)}"
            to = f"+1555{rnd.randrange(space) * 7919 % 10_000_000:07d}"
            w('{"time": %d, "service_sid": "%s", "to": "%s", "channel": "sms", '
              '"rate_limits": {"ip": "%s", "user": "%s", "phone_prefix": "%s"}}\n'
              % (t, SERVICE, to, ip, user, to[:8]))


if __name__ == "__main__":
    main()
