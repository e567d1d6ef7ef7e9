//! Operating verilimit: the seed file and export, events, metrics, retention, the health check.

use std::process::Command;

use crate::harness::{ACCOUNT_A, ServerOptions, TestServer};
use crate::support::*;

const SEED: &str = r#"{
  "services": [
    {
      "sid": "VA11111111111111111111111111111111",
      "friendly_name": "Seeded",
      "code_length": 5,
      "rate_limits": [
        {
          "sid": "RK22222222222222222222222222222222",
          "unique_name": "end_user_ip",
          "description": "per IP",
          "buckets": [{ "sid": "BL33333333333333333333333333333333", "max": 2, "interval": 60 }]
        }
      ]
    }
  ]
}"#;

#[tokio::test]
async fn a_seed_file_creates_known_sids_once_and_export_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, SEED).unwrap();
    let mut server = TestServer::start(ServerOptions::new().arg("--seed", seed.display())).await;
    let c = server.a();
    let s = c
        .get("/v2/Services/VA11111111111111111111111111111111")
        .await
        .expect(200);
    assert_eq!(s["friendly_name"], "Seeded");
    assert_eq!(s["code_length"], 5);
    assert_eq!(s["account_sid"], ACCOUNT_A);
    let b = c
        .get("/v2/Services/VA11111111111111111111111111111111/RateLimits/RK22222222222222222222222222222222/Buckets/BL33333333333333333333333333333333")
        .await
        .expect(200);
    assert_eq!(b["max"], 2);
    let service = "VA11111111111111111111111111111111";
    start(&c, service, &phone(1), Some(r#"{"end_user_ip": "x"}"#))
        .await
        .expect(201);
    // Restart with the same seed: nothing duplicated, counters kept.
    server.terminate().await;
    let server = TestServer::start(
        ServerOptions::new()
            .database_of(&server)
            .arg("--seed", seed.display()),
    )
    .await;
    let c = server.a();
    let list = c.get("/v2/Services").await.expect(200);
    assert_eq!(list["services"].as_array().unwrap().len(), 1);
    start(&c, service, &phone(2), Some(r#"{"end_user_ip": "x"}"#))
        .await
        .expect(201);
    start(&c, service, &phone(3), Some(r#"{"end_user_ip": "x"}"#))
        .await
        .expect_error(429, 20429);
    let export = c.get("/emulator/v1/Export").await.expect(200);
    let rl = &export["services"][0]["rate_limits"][0];
    assert_eq!(export["services"][0]["sid"], service);
    assert_eq!(rl["unique_name"], "end_user_ip");
    assert_eq!(
        rl["buckets"][0]["sid"],
        "BL33333333333333333333333333333333"
    );
    assert_eq!(rl["buckets"][0]["interval"], 60);
    // B's export is empty.
    let other = server.b().get("/emulator/v1/Export").await.expect(200);
    assert_eq!(other["services"].as_array().unwrap().len(), 0);
}

#[test]
fn an_invalid_seed_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"services": [{"friendly_name": "x", "rate_limits": [{"unique_name": "has space"}]}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verilimit"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "sqlite::memory:",
        ])
        .arg("--seed")
        .arg(&seed)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services[0].rate_limits[0].unique_name"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "it must not have started listening");
}

#[tokio::test]
async fn events_say_which_rate_limit_refused_a_start() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = service_with(&c, &[("ip", &[(1, 60)])]).await;
    start(&c, &f.service, &phone(1), Some(r#"{"ip": "x"}"#))
        .await
        .expect(201);
    start(&c, &f.service, &phone(2), Some(r#"{"ip": "x"}"#))
        .await
        .expect_error(429, 20429);
    let events = c.get("/emulator/v1/Events").await.expect(200);
    let e = &events["events"];
    assert_eq!(e[0]["type"], "refused");
    assert_eq!(e[0]["rate_limit"], "ip");
    assert_eq!(e[0]["error_code"], 20429);
    assert_eq!(e[0]["to"], phone(2));
    assert_eq!(e[1]["type"], "started");
    assert!(e[1]["verification_sid"].as_str().unwrap().starts_with("VE"));
    let other = server.b().get("/emulator/v1/Events").await.expect(200);
    assert_eq!(other["events"].as_array().unwrap().len(), 0);
}

fn metric(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn metrics_count_requests_and_decisions() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    server.anon().get("/metrics").await.expect_error(401, 20003);
    let f = service_with(&c, &[("ip", &[(1, 60)])]).await;
    let decisions = |outcome: &str| {
        format!(
            "verilimit_rate_limit_decisions_total{{service_sid=\"{}\",rate_limit=\"ip\",outcome=\"{outcome}\"}}",
            f.service
        )
    };
    start(&c, &f.service, &phone(1), Some(r#"{"ip": "x"}"#))
        .await
        .expect(201);
    start(&c, &f.service, &phone(2), Some(r#"{"ip": "x"}"#))
        .await
        .expect_error(429, 20429);
    start(&c, &f.service, &phone(3), Some(r#"{"ip": "x"}"#))
        .await
        .expect_error(429, 20429);
    let text = c.get("/metrics").await.body;
    assert_eq!(metric(&text, &decisions("admitted")), 1, "{text}");
    assert_eq!(metric(&text, &decisions("refused")), 2, "{text}");
    let created = "verilimit_http_requests_total{route=\"/v2/Services/{service}/Verifications\",method=\"POST\",status=\"429\"}";
    assert_eq!(metric(&text, created), 2, "{text}");
    if std::env::var("VERILIMIT_TEST_BACKEND").as_deref() != Ok("postgres") {
        // On SQLite the limiter's state is in memory (on PostgreSQL it is in the database).
        // ... and writes go through the group-commit writer, whose batches are measured.
        assert_eq!(metric(&text, "verilimit_limiter_tracked_values"), 1);
        assert!(
            metric(&text, "verilimit_store_batch_jobs_count") >= 1,
            "{text}"
        );
    }
    assert!(!text.contains("\"x\""), "values must not be labels");
    // A maintenance round asked for is counted once it has finished (the background rounds
    // may add theirs).
    let rounds = metric(&text, "verilimit_maintenance_rounds_total ");
    c.post_form("/emulator/v1/Maintenance", &[])
        .await
        .expect(204);
    let text = c.get("/metrics").await.body;
    assert!(
        metric(&text, "verilimit_maintenance_rounds_total ") > rounds,
        "{text}"
    );
}

#[tokio::test]
async fn verifications_are_purged_after_the_retention_period() {
    let server = TestServer::start(ServerOptions::new().arg("--retention-days", 2)).await;
    let c = server.a();
    let f = service_with(&c, &[]).await;
    start(&c, &f.service, &phone(1), None).await.expect(201);
    advance(&c, 86_400).await;
    start(&c, &f.service, &phone(2), None).await.expect(201);
    c.post_form("/emulator/v1/Maintenance", &[])
        .await
        .expect(204);
    assert_eq!(codes_sent_to(&c, &phone(1)).await.len(), 1);
    advance(&c, 86_401).await;
    c.post_form("/emulator/v1/Maintenance", &[])
        .await
        .expect(204);
    assert_eq!(
        codes_sent_to(&c, &phone(1)).await.len(),
        0,
        "past retention"
    );
    assert_eq!(
        codes_sent_to(&c, &phone(2)).await.len(),
        1,
        "within retention"
    );
}

#[tokio::test]
async fn the_healthcheck_subcommand_probes_a_running_server() {
    let server = TestServer::start(ServerOptions::new()).await;
    let ok = Command::new(env!("CARGO_BIN_EXE_verilimit"))
        .args([
            "healthcheck",
            "--url",
            &format!("{}/healthz", server.base_url()),
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let down = Command::new(env!("CARGO_BIN_EXE_verilimit"))
        .args(["healthcheck", "--url", "http://127.0.0.1:1/healthz"])
        .status()
        .unwrap();
    assert!(!down.success());
}
