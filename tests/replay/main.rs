//! The replay decides like the server: a server is driven through its clock with a sample of
//! starts (hot and cold values, several rate limits, the send-attempts rule), every answer is
//! kept; the same starts, as `GET /emulator/v1/Events?Format=replay` gives them, are replayed
//! with `verilimit replay` against `GET /emulator/v1/Export`, and every decision must be equal.

#[path = "../common/fixtures.rs"]
mod fixtures;
#[path = "../api/harness.rs"]
mod harness;

use std::process::Command;

use harness::{ServerOptions, TestServer};
use serde_json::Value;

/// A small deterministic generator (no dependency on a seeded RNG crate's stream).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    status: u64,
    code: Option<u64>,
    rate_limit: Option<String>,
}

#[tokio::test]
async fn the_replay_decides_every_start_as_the_server_did() {
    // Advances are whole multiples of 5 s and every Interval and the send window multiples of
    // 30 s, so a window edge never falls within the few real milliseconds between a refused
    // start's decision and the time its event is stamped with (while the test takes < 5 s).
    let server = TestServer::start(
        ServerOptions::new()
            .arg("--send-attempts-limit", 3)
            .arg("--send-attempts-window", 300),
    )
    .await;
    let c = server.a();
    let chain = fixtures::create_chain(
        &c,
        &[("FriendlyName", "replay")],
        &[
            ("ip", &[(4, 60), (7, 600)]),
            ("user", &[(2, 30), (5, 300)]),
            ("device", &[(3, 120)]),
            ("none", &[]),
        ],
    )
    .await;
    let service = chain.service.clone();
    let mut rng = Lcg(17);
    let mut outcomes = Vec::new();
    for _ in 0..260 {
        if rng.next(6) == 0 {
            let secs = [5, 10, 25, 55][rng.next(4) as usize];
            c.post_form(
                "/emulator/v1/Clock",
                &[("AdvanceSeconds", &secs.to_string())],
            )
            .await
            .expect(200);
            continue;
        }
        let to = format!("+1555000{:04}", rng.next(9));
        let ip = if rng.next(3) == 0 {
            format!("10.0.0.{}", rng.next(50))
        } else {
            format!("203.0.113.{}", rng.next(2))
        };
        let mut limits = serde_json::Map::new();
        limits.insert("ip".into(), Value::String(ip));
        if rng.next(4) != 0 {
            limits.insert("user".into(), Value::from(rng.next(4)));
        }
        if rng.next(3) == 0 {
            limits.insert("device".into(), Value::String(format!("d{}", rng.next(3))));
        }
        if rng.next(5) == 0 {
            limits.insert("none".into(), Value::String("x".into()));
        }
        let limits = Value::Object(limits).to_string();
        let reply = c
            .post_form(
                &format!("/v2/Services/{service}/Verifications"),
                &[("To", &to), ("Channel", "sms"), ("RateLimits", &limits)],
            )
            .await;
        let outcome = match reply.status {
            201 => Outcome {
                status: 201,
                code: None,
                rate_limit: None,
            },
            429 => Outcome {
                status: 429,
                code: reply.json()["code"].as_u64(),
                rate_limit: reply.header("twilio-reached-rate-limit").map(str::to_owned),
            },
            _ => panic!("unexpected answer: {}", reply.context()),
        };
        outcomes.push(outcome);
    }
    let count = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    assert!(count(&|o| o.status == 201) >= 20, "too few admitted");
    assert!(count(&|o| o.code == Some(20429)) >= 20, "too few 20429");
    assert!(count(&|o| o.code == Some(60203)) >= 3, "too few 60203");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let traffic = c.get("/emulator/v1/Events?Format=replay").await;
    assert_eq!(traffic.status, 200, "{}", traffic.context());
    assert_eq!(traffic.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(traffic.body.lines().count(), outcomes.len());
    let traffic_path = dir.path().join("traffic.jsonl");
    std::fs::write(&traffic_path, &traffic.body).expect("write the traffic");
    let export = c.get("/emulator/v1/Export").await.expect(200);
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, export.to_string()).expect("write the config");
    let decisions_path = dir.path().join("decisions.jsonl");

    let out = Command::new(env!("CARGO_BIN_EXE_verilimit"))
        .env_remove("VERILIMIT_SEND_ATTEMPTS_LIMIT")
        .env_remove("VERILIMIT_SEND_ATTEMPTS_WINDOW")
        .args(["replay", "--format", "json", "--send-attempts-limit", "3"])
        .args(["--send-attempts-window", "300", "--config"])
        .arg(&config_path)
        .arg("--decisions")
        .arg(&decisions_path)
        .arg(&traffic_path)
        .output()
        .expect("run verilimit replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let decisions = std::fs::read_to_string(&decisions_path).expect("the decisions");
    let replayed: Vec<Outcome> = decisions
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            Outcome {
                status: v["status"].as_u64().expect("a status"),
                code: v["code"].as_u64(),
                rate_limit: v["rate_limit"].as_str().map(str::to_owned),
            }
        })
        .collect();
    assert_eq!(replayed.len(), outcomes.len());
    for (i, (server, replay)) in outcomes.iter().zip(&replayed).enumerate() {
        assert_eq!(
            server,
            replay,
            "start {} ({}) decided differently",
            i + 1,
            traffic.body.lines().nth(i).unwrap_or_default()
        );
    }
    let n = |f: &dyn Fn(&Outcome) -> bool| Value::from(count(f) as u64);
    assert_eq!(report["starts"], Value::from(outcomes.len() as u64));
    assert_eq!(report["admitted"], n(&|o| o.status == 201));
    assert_eq!(report["refused"], n(&|o| o.status == 429));
    assert_eq!(
        report["refused_by_code"]["20429"],
        n(&|o| o.code == Some(20429))
    );
    assert_eq!(
        report["refused_by_code"]["60203"],
        n(&|o| o.code == Some(60203))
    );
    for rl in report["rate_limits"].as_array().expect("rate_limits") {
        let name = rl["unique_name"].as_str().expect("a name");
        assert_eq!(
            rl["refused"],
            n(&|o| o.rate_limit.as_deref() == Some(name)),
            "refusals of {name}"
        );
        assert!(rl["buckets"].is_array());
    }
}

/// `verilimit replay --format json --config CONFIG [EXTRA…] TRAFFIC`.
fn replay_json(
    config: &std::path::Path,
    traffic: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_verilimit"))
        .args(["replay", "--format", "json", "--config"])
        .arg(config)
        .args(extra)
        .arg(traffic)
        .output()
        .expect("run")
}

/// Writes a configuration of one service `s` with one rate limit `ip` of these buckets
/// (`[{"max": …, "interval": …}, …]` as JSON) into `dir`.
fn ip_config(dir: &std::path::Path, buckets: &str) -> std::path::PathBuf {
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"services": [{{"friendly_name": "s", "rate_limits": [{{"unique_name": "ip", "buckets": {buckets}}}]}}]}}"#
        ),
    )
    .expect("write");
    config
}

#[test]
fn a_malformed_line_names_its_file_and_line_and_skip_invalid_counts_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = ip_config(dir.path(), r#"[{"max": 1, "interval": 60}]"#);
    let traffic = dir.path().join("t.jsonl");
    std::fs::write(
        &traffic,
        concat!(
            r#"{"time": "2026-11-30T12:00:00.250Z", "service_sid": "s", "to": "+1", "rate_limits": {"ip": "a"}}"#,
            "\n",
            "not json\n",
            r#"{"time": 1796040001000, "service_sid": "s", "to": "+2", "rate_limits": {"ip": "a", "zz": 1}}"#,
            "\n",
        ),
    )
    .expect("write");
    let run = |extra: &[&str]| replay_json(&config, &traffic, extra);
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("t.jsonl:2:"), "{err}");
    let out = run(&["--skip-invalid"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("\"zz\"").count(), 1, "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["invalid_lines"], 1);
    assert_eq!(report["starts"], 2);
    assert_eq!(report["admitted"], 1);
    assert_eq!(report["refused_by_code"]["20429"], 1);
    assert_eq!(report["unknown_rate_limits"][0]["starts"], 1);
}

/// A configuration the server would refuse (a bucket past its bounds) is refused by the replay
/// too, naming the key; the bounds themselves are accepted.
#[test]
fn a_bucket_past_the_servers_bounds_is_refused_with_its_key() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let traffic = dir.path().join("t.jsonl");
    std::fs::write(
        &traffic,
        r#"{"time": 1796040000000, "service_sid": "s", "to": "+1", "rate_limits": {"ip": "a"}}"#,
    )
    .expect("write");
    let with_bucket = |max: u64, interval: u64| {
        let config = ip_config(
            dir.path(),
            &format!(r#"[{{"max": 2, "interval": 60}}, {{"max": {max}, "interval": {interval}}}]"#),
        );
        replay_json(&config, &traffic, &[])
    };
    for (max, interval, key) in [
        (5, 86_401, "buckets[1].interval"),
        (5, 0, "buckets[1].interval"),
        (0, 600, "buckets[1].max"),
    ] {
        let out = with_bucket(max, interval);
        assert!(!out.status.success(), "max {max}, interval {interval}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{err}");
    }
    let out = with_bucket(1_000_000_000, 86_400);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["admitted"], 1);
}

/// Traffic with gaps longer than 2^32 ms (49.7 days) between a value's starts: each day-long
/// window still counts exactly what it holds (the replay keeps times as offsets from a base
/// that moves on).
#[test]
fn a_window_counts_exactly_across_months_of_quiet() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = ip_config(dir.path(), r#"[{"max": 2, "interval": 86400}]"#);
    let day = 86_400_000i64;
    let t0 = 1_796_040_000_000i64;
    // (time, expected status): two a day fit; a third within the day is refused.
    let starts = [
        (t0, 201),
        (t0 + 1, 201),
        (t0 + 2, 429),
        (t0 + 60 * day, 201),
        (t0 + 60 * day + 10, 201),
        (t0 + 60 * day + day - 1, 429),
        (t0 + 60 * day + day + 10, 201),
        (t0 + 200 * day, 201),
        (t0 + 200 * day + 5, 201),
        (t0 + 200 * day + day - 1, 429),
    ];
    let traffic = dir.path().join("t.jsonl");
    let lines: String = starts
        .iter()
        .enumerate()
        .map(|(i, (t, _))| {
            format!(
                "{{\"time\": {t}, \"service_sid\": \"s\", \"to\": \"+1555000{i:04}\", \"rate_limits\": {{\"ip\": \"a\"}}}}\n"
            )
        })
        .collect();
    std::fs::write(&traffic, lines).expect("write");
    let decisions = dir.path().join("decisions.jsonl");
    let out = replay_json(
        &config,
        &traffic,
        &["--decisions", decisions.to_str().expect("a UTF-8 path")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<u64> = std::fs::read_to_string(&decisions)
        .expect("decisions")
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["status"]
                .as_u64()
                .expect("a status")
        })
        .collect();
    let want: Vec<u64> = starts.iter().map(|s| s.1).collect();
    assert_eq!(got, want);
}

/// Thousands of lines (the replay reads and decides them in batches, prefetching ahead): every
/// decision in order, line numbers counted across batches, blank lines included.
#[test]
fn long_inputs_are_decided_in_order_with_their_line_numbers() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.json");
    // One start a minute for the value, and three for the hot value an hour.
    std::fs::write(
        &config,
        r#"{"services": [{"friendly_name": "s", "rate_limits": [
            {"unique_name": "ip", "buckets": [{"max": 1, "interval": 60}]},
            {"unique_name": "user", "buckets": [{"max": 3, "interval": 3600}]}]}]}"#,
    )
    .expect("write");
    let lines = 5_000u64;
    let bad_line = 4_500u64;
    let mut text = String::new();
    // Line n (1-based) is the start at second n - 1, except one blank line and one bad line.
    let mut expected = Vec::new();
    for n in 1..=lines {
        if n == 2_049 {
            text.push('\n');
            continue;
        }
        if n == bad_line {
            text.push_str("{\"time\": 1, \"service_sid\": \"s\"\n");
            continue;
        }
        let t = n - 1;
        // `user` is the same value every 7th start, else a new one.
        let user = if n % 7 == 0 {
            "hot".to_owned()
        } else {
            format!("u{n}")
        };
        text.push_str(&format!(
            "{{\"time\": {}, \"service_sid\": \"s\", \"to\": \"+1555{n:07}\", \"rate_limits\": {{\"ip\": \"{}\", \"user\": \"{user}\"}}}}\n",
            1_796_040_000_000 + t * 1000,
            n % 3
        ));
        expected.push((n, t, n % 3, user == "hot"));
    }
    // Sliding windows by arithmetic: `ip` value v admits when its last admission is >= 60 s
    // old; `user` "hot" when fewer than 3 admissions in the last 3600 s. All or nothing;
    // ip is checked before user, and the server names the bucket that waits longest.
    let mut ip_admitted: [Option<u64>; 3] = [None; 3];
    let mut user_admitted: Vec<u64> = Vec::new();
    let mut want = Vec::new();
    for (n, t, v, hot) in expected {
        let ip_ok = ip_admitted[v as usize].is_none_or(|a| t - a >= 60);
        let in_window = user_admitted.iter().filter(|&&a| t - a < 3600).count();
        let user_ok = !hot || in_window < 3;
        if ip_ok && user_ok {
            ip_admitted[v as usize] = Some(t);
            if hot {
                user_admitted.push(t);
            }
            want.push((n, 201u64));
        } else {
            want.push((n, 429));
        }
    }
    let traffic = dir.path().join("t.jsonl");
    std::fs::write(&traffic, &text).expect("write");
    let decisions = dir.path().join("decisions.jsonl");
    let run = |extra: &[&str]| replay_json(&config, &traffic, extra);

    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("t.jsonl:{bad_line}:")), "{err}");

    let out = run(&[
        "--skip-invalid",
        "--decisions",
        decisions.to_str().expect("a UTF-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(u64, u64)> = std::fs::read_to_string(&decisions)
        .expect("the decisions")
        .lines()
        .map(|l| {
            let d: Value = serde_json::from_str(l).expect("a JSON line");
            (
                d["line"].as_u64().expect("line"),
                d["status"].as_u64().expect("status"),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "decision of line {}", w.0);
    }
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["invalid_lines"], 1);
    assert_eq!(report["starts"], want.len());
    let admitted = want.iter().filter(|w| w.1 == 201).count();
    assert_eq!(report["admitted"], admitted);
    assert!(admitted > 100 && admitted < want.len() - 100, "{admitted}");
}
