//! Scale-out: several verilimit instances sharing one PostgreSQL database, still exact.
//!
//! Always runs against PostgreSQL: `VERILIMIT_TEST_PG` if set, else this machine's
//! (`postgres://postgres@127.0.0.1:5432/test`); each test makes a database of its own. The test
//! script provides a server when none is reachable; an unreachable one fails the tests.

#[path = "../common/fixtures.rs"]
mod fixtures;
#[path = "../api/harness.rs"]
mod harness;

use std::sync::Arc;

use fixtures::create_chain;
use harness::{Client, ServerOptions, TestServer, fresh_postgres_database};

async fn cluster(n: usize) -> (String, Vec<TestServer>) {
    let url = fresh_postgres_database().await;
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(TestServer::start(ServerOptions::new().database_url(url.clone())).await);
    }
    (url, servers)
}

/// A service with rate limit `ip` and one bucket: (service, rate limit, bucket) SIDs.
async fn service_with_bucket(c: &Client, max: u64, interval: u64) -> (String, String, String) {
    create_chain(
        c,
        &[("FriendlyName", "shared")],
        &[("ip", &[(max, interval)])],
    )
    .await
    .first_sids()
}

fn phone(i: usize) -> String {
    format!("+1555{:07}", i)
}

async fn start(c: &Client, service: &str, to: &str, value: &str) -> u16 {
    c.post_form(
        &format!("/v2/Services/{service}/Verifications"),
        &[
            ("To", to),
            ("Channel", "sms"),
            ("RateLimits", &format!(r#"{{"ip": "{value}"}}"#)),
        ],
    )
    .await
    .status
}

#[tokio::test]
async fn three_instances_admit_exactly_max_of_hundreds_of_concurrent_starts() {
    let (_, servers) = cluster(3).await;
    let clients: Vec<Client> = servers.iter().map(|s| s.a()).collect();
    let (service, _, _) = service_with_bucket(&clients[0], 10, 3600).await;
    let service = Arc::new(service);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let c = clients[i % 3].clone();
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            start(&c, &service, &phone(i), "198.51.100.77").await
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 10);
    // Every instance sees the same ten codes.
    for c in &clients {
        let outbox = c.get("/emulator/v1/Outbox?PageSize=1000").await.expect(200);
        assert_eq!(outbox["messages"].as_array().unwrap().len(), 10);
    }
}

#[tokio::test]
async fn a_change_on_one_instance_is_in_force_on_every_other_by_the_next_request() {
    let (_, servers) = cluster(3).await;
    let (a, b, c) = (servers[0].a(), servers[1].a(), servers[2].a());
    let (service, rk, bl) = service_with_bucket(&a, 1, 3600).await;
    // Created on A, visible on B and C at once.
    b.get(&format!(
        "/v2/Services/{service}/RateLimits/{rk}/Buckets/{bl}"
    ))
    .await
    .expect(200);
    assert_eq!(start(&c, &service, &phone(1), "v").await, 201);
    assert_eq!(start(&b, &service, &phone(2), "v").await, 429);
    a.post_form(
        &format!("/v2/Services/{service}/RateLimits/{rk}/Buckets/{bl}"),
        &[("Max", "2")],
    )
    .await
    .expect(200);
    assert_eq!(start(&b, &service, &phone(2), "v").await, 201);
    assert_eq!(start(&c, &service, &phone(3), "v").await, 429);
    // A clock moved on one instance is the account's clock on all of them.
    a.post_form("/emulator/v1/Clock", &[("AdvanceSeconds", "3601")])
        .await
        .expect(200);
    assert_eq!(start(&c, &service, &phone(3), "v").await, 201);
    // A delete too.
    a.delete(&format!("/v2/Services/{service}"))
        .await
        .expect(204);
    c.get(&format!("/v2/Services/{service}"))
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn a_killed_instance_loses_nothing_it_acknowledged() {
    let (_, mut servers) = cluster(3).await;
    let clients: Vec<Client> = servers.iter().map(|s| s.a()).collect();
    let (service, _, _) = service_with_bucket(&clients[0], 100_000, 3600).await;
    let service = Arc::new(service);
    let mut tasks = Vec::new();
    for i in 0..240 {
        let c = clients[i % 3].clone();
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .request(
                    reqwest::Method::POST,
                    &format!("/v2/Services/{service}/Verifications"),
                )
                .form(&[("To", phone(i).as_str()), ("Channel", "sms")])
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 201 => {
                    let v: serde_json::Value = r.json().await.unwrap();
                    Some(v["sid"].as_str().unwrap().to_owned())
                }
                Ok(r) => {
                    assert!(r.status().as_u16() < 500, "status {}", r.status());
                    None
                }
                Err(_) => None, // the killed instance's connections
            }
        }));
        if i == 120 {
            servers[1].kill9();
        }
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        if let Some(sid) = t.await.unwrap() {
            acknowledged.push(sid);
        }
    }
    assert!(
        acknowledged.len() >= 160,
        "only {} acknowledged",
        acknowledged.len()
    );
    for sid in &acknowledged {
        clients[2]
            .get(&format!("/v2/Services/{service}/Verifications/{sid}"))
            .await
            .expect(200);
    }
}
