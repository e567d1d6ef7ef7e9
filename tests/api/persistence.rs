//! What a client was told exists survives the process: SIGKILL right after the answers, restart on
//! the same SQLite file, and every resource comes back with identical JSON.

use serde_json::Value;

use crate::harness::{Client, ServerOptions, TestServer};
use crate::helpers::*;

/// Everything account A and B can read: each resource and each list, keyed by its path.
async fn snapshot(server: &TestServer) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for client in [server.a(), server.b()] {
        snapshot_account(&client, &mut out).await;
    }
    out
}

async fn snapshot_account(client: &Client, out: &mut Vec<(String, Value)>) {
    let services = client.get("/v2/Services?PageSize=1000").await.expect(200);
    for service in services["services"].as_array().expect("services") {
        let vs = str_of(&service["sid"]);
        out.push((
            service_path(&vs),
            client.get(&service_path(&vs)).await.expect(200),
        ));
        let rate_limits = client
            .get(&format!("{}?PageSize=1000", rate_limits_path(&vs)))
            .await
            .expect(200);
        for rate_limit in rate_limits["rate_limits"].as_array().expect("rate_limits") {
            let rk = str_of(&rate_limit["sid"]);
            let path = rate_limit_path(&vs, &rk);
            out.push((path.clone(), client.get(&path).await.expect(200)));
            let buckets = client
                .get(&format!("{}?PageSize=1000", buckets_path(&vs, &rk)))
                .await
                .expect(200);
            for bucket in buckets["buckets"].as_array().expect("buckets") {
                let path = bucket_path(&vs, &rk, &str_of(&bucket["sid"]));
                out.push((path.clone(), client.get(&path).await.expect(200)));
            }
            out.push((buckets_path(&vs, &rk), buckets["buckets"].clone()));
        }
        out.push((rate_limits_path(&vs), rate_limits["rate_limits"].clone()));
    }
    out.push(("/v2/Services".into(), services["services"].clone()));
}

/// The snapshot with the server's own address replaced, so runs on different ports compare.
fn portable(snapshot: &[(String, Value)], base_url: &str) -> String {
    serde_json::to_string_pretty(snapshot)
        .expect("serialize")
        .replace(base_url, "http://verilimit.test")
}

/// A's and B's resources, with every kind of setting.
async fn populate(server: &TestServer) {
    let a = server.a();
    let full = a
        .post_form(
            "/v2/Services",
            &[
                ("FriendlyName", "Persisted service"),
                ("CodeLength", "8"),
                ("LookupEnabled", "true"),
                ("Psd2Enabled", "false"),
                ("CustomCodeEnabled", "true"),
                ("TtsName", "alice"),
                ("Push.IncludeDate", "true"),
                (
                    "Push.FcmCredentialSid",
                    "CRbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                ),
                ("Totp.Issuer", "issuer"),
                ("Totp.TimeStep", "45"),
                ("Totp.CodeLength", "7"),
                ("Totp.Skew", "2"),
                ("DefaultTemplateSid", "HJaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
                ("Whatsapp.From", "whatsapp:+1234567890"),
                ("Passkeys.RelyingParty.Id", "example.com"),
                ("Passkeys.RelyingParty.Name", "Example"),
                (
                    "Passkeys.RelyingParty.Origins",
                    "example.com,login.example.com",
                ),
                ("VerifyEventSubscriptionEnabled", "true"),
            ],
        )
        .await
        .expect(201);
    let vs = str_of(&full["sid"]);
    for (name, intervals) in [("ip", &[1u64, 60, 3600][..]), ("phone", &[86400][..])] {
        let buckets: Vec<(u64, u64)> = intervals
            .iter()
            .enumerate()
            .map(|(i, interval)| (3 + i as u64, *interval))
            .collect();
        add_rate_limit(
            &a,
            &vs,
            &[
                ("UniqueName", name),
                ("Description", "Kept across restarts"),
            ],
            &buckets,
        )
        .await;
    }
    // An updated resource keeps its update.
    let renamed = create_service(&a, "Before rename").await;
    a.post_form(
        &service_path(&str_of(&renamed["sid"])),
        &[("FriendlyName", "After rename"), ("CodeLength", "5")],
    )
    .await
    .expect(200);
    // A deleted resource stays deleted.
    let doomed = create_service(&a, "Deleted").await;
    assert_deleted(&a.delete(&service_path(&str_of(&doomed["sid"]))).await);

    one_of_each(&server.b()).await;
}

#[tokio::test]
async fn everything_survives_sigkill_and_a_restart_on_the_same_database() {
    let mut first = TestServer::start(ServerOptions::new()).await;
    populate(&first).await;
    let before = snapshot(&first).await;
    assert!(
        before.len() > 10,
        "the snapshot holds the resources: {before:?}"
    );
    let before = portable(&before, first.base_url());
    first.kill9();

    let second = TestServer::start(ServerOptions::new().database_of(&first)).await;
    let after = portable(&snapshot(&second).await, second.base_url());
    assert_eq!(after, before, "resources after the restart");
    assert!(
        !after.contains("Deleted"),
        "the deleted service stays deleted"
    );

    // And the restarted server keeps working on that data.
    let a = second.a();
    let list = a.get("/v2/Services").await.expect(200);
    let vs = str_of(&list["services"][0]["sid"]);
    create_rate_limit(&a, &vs, "after_restart").await;
}

#[tokio::test]
async fn the_last_write_before_sigkill_is_not_lost() {
    let mut first = TestServer::start(ServerOptions::new()).await;
    let a = first.a();
    let vs = str_of(&create_service(&a, "Quick").await["sid"]);
    let rk = str_of(&create_rate_limit(&a, &vs, "ip").await["sid"]);
    let bucket = create_bucket(&a, &vs, &rk, 5, 60).await;
    let path = bucket_path(&vs, &rk, &str_of(&bucket["sid"]));
    let updated = a.post_form(&path, &[("Max", "9")]).await.expect(200);
    // Killed immediately after the acknowledgement.
    first.kill9();

    let second = TestServer::start(ServerOptions::new().database_of(&first)).await;
    let fetched = second.a().get(&path).await.expect(200);
    assert_eq!(
        portable(&[(path.clone(), fetched)], second.base_url()),
        portable(&[(path, updated)], first.base_url())
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly_and_keeps_the_data() {
    let mut first = TestServer::start(ServerOptions::new()).await;
    populate(&first).await;
    let before = portable(&snapshot(&first).await, first.base_url());
    let status = first.terminate().await;
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\nstderr:\n{}",
        first.stderr()
    );

    let second = TestServer::start(ServerOptions::new().database_of(&first)).await;
    let after = portable(&snapshot(&second).await, second.base_url());
    assert_eq!(after, before);
}

#[tokio::test]
async fn limits_are_enforced_against_what_was_persisted() {
    let options = || {
        ServerOptions::new()
            .arg("--max-rate-limits-per-service", 2)
            .arg("--max-buckets-per-rate-limit", 1)
    };
    let mut first = TestServer::start(options()).await;
    let a = first.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let rk = str_of(&create_rate_limit(&a, &vs, "ip").await["sid"]);
    create_rate_limit(&a, &vs, "phone").await;
    create_bucket(&a, &vs, &rk, 5, 60).await;
    first.kill9();

    let second = TestServer::start(options().database_of(&first)).await;
    let a = second.a();
    a.post_form(&rate_limits_path(&vs), &[("UniqueName", "third")])
        .await
        .expect_error(400, 60207);
    a.post_form(&buckets_path(&vs, &rk), &[("Max", "1"), ("Interval", "1")])
        .await
        .expect_error(400, 60210);
    // A smaller limit than before: more rate limits exist than allowed, so creates are refused.
    let mut second = second;
    second.kill9();
    let third = TestServer::start(
        ServerOptions::new()
            .arg("--max-rate-limits-per-service", 1)
            .database_of(&first),
    )
    .await;
    third
        .a()
        .post_form(&rate_limits_path(&vs), &[("UniqueName", "another")])
        .await
        .expect_error(400, 60207);
}
