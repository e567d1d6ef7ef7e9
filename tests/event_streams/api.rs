//! The Event Streams v1 resources as the SDKs use them: sinks, subscriptions, subscribed
//! events, types and schemas; account scoping, auth, errors, reset.

use serde_json::json;

use crate::harness::{ACCOUNT_A, ServerOptions, TestServer};
use crate::support::*;

const DESTINATION: &str = "http://127.0.0.1:9/hook";

#[tokio::test]
async fn sinks_are_created_active_listed_updated_and_deleted() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let sink = create_sink(&c, DESTINATION).await;
    let sid = sink["sid"].as_str().unwrap();
    assert!(sid.starts_with("DG") && sid.len() == 34, "{sid}");
    assert_eq!(sink["status"], "active");
    assert_eq!(sink["sink_type"], "webhook");
    assert_eq!(sink["description"], "test sink");
    assert_eq!(sink["sink_configuration"]["destination"], DESTINATION);
    let url = format!("{}/v1/Sinks/{sid}", server.base_url());
    assert_eq!(sink["url"], url.as_str());
    assert_eq!(sink["links"]["sink_test"], format!("{url}/Test"));
    assert_eq!(sink["links"]["sink_validate"], format!("{url}/Validate"));

    assert_eq!(c.get(&format!("/v1/Sinks/{sid}")).await.expect(200), sink);
    let list = c.get("/v1/Sinks?PageSize=1").await.expect(200);
    assert_eq!(list["meta"]["key"], "sinks");
    assert_eq!(list["sinks"], json!([sink.clone()]));
    assert_eq!(
        c.get("/v1/Sinks?InUse=true").await.expect(200)["sinks"],
        json!([])
    );
    subscribe(&c, sid, &[PENDING]).await;
    assert_eq!(
        c.get("/v1/Sinks?InUse=true&Status=active")
            .await
            .expect(200)["sinks"][0]["sid"],
        sid
    );

    let updated = c
        .post_form(&format!("/v1/Sinks/{sid}"), &[("Description", "renamed")])
        .await
        .expect(200);
    assert_eq!(updated["description"], "renamed");
    c.delete(&format!("/v1/Sinks/{sid}")).await.expect(204);
    c.get(&format!("/v1/Sinks/{sid}"))
        .await
        .expect_error(404, 20404);
    assert_eq!(
        c.get("/v1/Subscriptions").await.expect(200)["subscriptions"],
        json!([])
    );
}

#[tokio::test]
async fn invalid_sinks_are_refused_with_twilios_codes() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let post = |form: Vec<(&'static str, &'static str)>| {
        let c = c.clone();
        async move { c.post_form("/v1/Sinks", &form).await }
    };
    post(vec![("SinkType", "webhook"), ("SinkConfiguration", "{}")])
        .await
        .expect_error(400, 20001);
    post(vec![
        ("Description", "d"),
        ("SinkType", "webhook"),
        ("SinkConfiguration", "not json"),
    ])
    .await
    .expect_error(400, 60200);
    post(vec![
        ("Description", "d"),
        ("SinkType", "webhook"),
        ("SinkConfiguration", r#"{"destination": "ftp://x"}"#),
    ])
    .await
    .expect_error(400, 60200);
    post(vec![
        ("Description", "d"),
        ("SinkType", "pigeon"),
        ("SinkConfiguration", "{}"),
    ])
    .await
    .expect_error(400, 60200);
    // Kinesis sinks are stored (nothing is sent to them).
    let kinesis = post(vec![
        ("Description", "k"),
        ("SinkType", "kinesis"),
        ("SinkConfiguration", r#"{"arn": "arn:aws:kinesis:us-east-1:1:stream/t", "role_arn": "r", "external_id": "e"}"#),
    ])
    .await
    .expect(201);
    assert_eq!(kinesis["sink_type"], "kinesis");
    c.get("/v1/Sinks/DGffffffffffffffffffffffffffffffff")
        .await
        .expect_error(404, 20404);
    c.get("/v1/Sinks/nonsense").await.expect_error(404, 20404);
    server
        .anon()
        .get("/v1/Sinks")
        .await
        .expect_error(401, 20003);
    server
        .anon()
        .get("/v1/Types")
        .await
        .expect_error(401, 20003);
}

#[tokio::test]
async fn subscriptions_and_their_subscribed_events_round_trip() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let sink = create_sink(&c, DESTINATION).await;
    let sink_sid = sink["sid"].as_str().unwrap();
    let other_sink = create_sink(&c, DESTINATION).await;
    let sub = subscribe(&c, sink_sid, &[PENDING, APPROVED]).await;
    let sid = sub["sid"].as_str().unwrap();
    assert!(sid.starts_with("DF") && sid.len() == 34);
    assert_eq!(sub["account_sid"], ACCOUNT_A);
    assert_eq!(sub["sink_sid"], sink_sid);
    let url = format!("{}/v1/Subscriptions/{sid}", server.base_url());
    assert_eq!(sub["url"], url.as_str());
    assert_eq!(
        sub["links"]["subscribed_events"],
        format!("{url}/SubscribedEvents")
    );
    assert_eq!(
        c.get(&format!("/v1/Subscriptions/{sid}")).await.expect(200),
        sub
    );

    // Node sends the same objects without spaces; a missing schema_version means the latest.
    let node_style = c
        .post_form(
            "/v1/Subscriptions",
            &[
                ("Description", "node"),
                ("SinkSid", other_sink["sid"].as_str().unwrap()),
                ("Types", &format!(r#"{{"type":"{CANCELED}"}}"#)),
            ],
        )
        .await
        .expect(201);
    let filtered = c
        .get(&format!("/v1/Subscriptions?SinkSid={sink_sid}"))
        .await
        .expect(200);
    assert_eq!(filtered["subscriptions"], json!([sub.clone()]));
    assert!(
        filtered["meta"]["url"]
            .as_str()
            .unwrap()
            .contains(&format!("SinkSid={sink_sid}"))
    );
    assert_eq!(
        c.get("/v1/Subscriptions").await.expect(200)["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let types = c
        .get(&format!("/v1/Subscriptions/{sid}/SubscribedEvents"))
        .await
        .expect(200);
    assert_eq!(types["meta"]["key"], "types");
    assert_eq!(
        types["types"],
        json!([
            {"account_sid": ACCOUNT_A, "type": APPROVED, "schema_version": 3, "subscription_sid": sid,
             "url": format!("{url}/SubscribedEvents/{APPROVED}")},
            {"account_sid": ACCOUNT_A, "type": PENDING, "schema_version": 3, "subscription_sid": sid,
             "url": format!("{url}/SubscribedEvents/{PENDING}")},
        ])
    );
    let node_types = c
        .get(&format!(
            "/v1/Subscriptions/{}/SubscribedEvents",
            node_style["sid"].as_str().unwrap()
        ))
        .await
        .expect(200);
    assert_eq!(node_types["types"][0]["schema_version"], 3);

    let events = format!("/v1/Subscriptions/{sid}/SubscribedEvents");
    let added = c
        .post_form(&events, &[("Type", EXPIRED), ("SchemaVersion", "2")])
        .await
        .expect(201);
    assert_eq!(added["schema_version"], 2);
    c.post_form(&events, &[("Type", EXPIRED), ("SchemaVersion", "1")])
        .await
        .expect(200);
    let one = format!("{events}/{EXPIRED}");
    assert_eq!(c.get(&one).await.expect(200)["schema_version"], 1);
    assert_eq!(
        c.post_form(&one, &[("SchemaVersion", "3")])
            .await
            .expect(200)["schema_version"],
        3
    );
    c.post_form(&events, &[("Type", "com.example.nope")])
        .await
        .expect_error(400, 60200);
    c.post_form(&events, &[("Type", PENDING), ("SchemaVersion", "9")])
        .await
        .expect_error(400, 60200);
    c.delete(&one).await.expect(204);
    c.get(&one).await.expect_error(404, 20404);

    let updated = c
        .post_form(
            &format!("/v1/Subscriptions/{sid}"),
            &[("Description", "new")],
        )
        .await
        .expect(200);
    assert_eq!(updated["description"], "new");
    c.delete(&format!("/v1/Subscriptions/{sid}"))
        .await
        .expect(204);
    c.get(&format!("/v1/Subscriptions/{sid}"))
        .await
        .expect_error(404, 20404);
    c.get(&events).await.expect_error(404, 20404);

    // Refusals: no types, an unknown type, a sink that is not the caller's.
    c.post_form(
        "/v1/Subscriptions",
        &[("Description", "d"), ("SinkSid", sink_sid)],
    )
    .await
    .expect_error(400, 20001);
    c.post_form(
        "/v1/Subscriptions",
        &[
            ("Description", "d"),
            ("SinkSid", sink_sid),
            ("Types", r#"{"type": "x.y"}"#),
        ],
    )
    .await
    .expect_error(400, 60200);
    c.post_form(
        "/v1/Subscriptions",
        &[
            ("Description", "d"),
            ("SinkSid", "DGffffffffffffffffffffffffffffffff"),
            ("Types", &format!(r#"{{"type": "{PENDING}"}}"#)),
        ],
    )
    .await
    .expect_error(404, 20404);
}

#[tokio::test]
async fn another_accounts_sinks_and_subscriptions_are_not_found() {
    let server = TestServer::start(ServerOptions::new()).await;
    let (a, b) = (server.a(), server.b());
    let sink = create_sink(&a, DESTINATION).await;
    let sink_sid = sink["sid"].as_str().unwrap();
    let sub = subscribe(&a, sink_sid, &[PENDING]).await;
    let sub_sid = sub["sid"].as_str().unwrap();
    b.get(&format!("/v1/Sinks/{sink_sid}"))
        .await
        .expect_error(404, 20404);
    b.post_form(&format!("/v1/Sinks/{sink_sid}"), &[("Description", "x")])
        .await
        .expect_error(404, 20404);
    b.delete(&format!("/v1/Sinks/{sink_sid}"))
        .await
        .expect_error(404, 20404);
    b.post_form(&format!("/v1/Sinks/{sink_sid}/Test"), &[])
        .await
        .expect_error(404, 20404);
    b.get(&format!("/v1/Subscriptions/{sub_sid}"))
        .await
        .expect_error(404, 20404);
    b.get(&format!("/v1/Subscriptions/{sub_sid}/SubscribedEvents"))
        .await
        .expect_error(404, 20404);
    b.delete(&format!("/v1/Subscriptions/{sub_sid}"))
        .await
        .expect_error(404, 20404);
    b.post_form(
        "/v1/Subscriptions",
        &[
            ("Description", "d"),
            ("SinkSid", sink_sid),
            ("Types", &format!(r#"{{"type": "{PENDING}"}}"#)),
        ],
    )
    .await
    .expect_error(404, 20404);
    assert_eq!(b.get("/v1/Sinks").await.expect(200)["sinks"], json!([]));
    assert_eq!(
        b.get("/v1/Subscriptions").await.expect(200)["subscriptions"],
        json!([])
    );
    // A still has both.
    a.get(&format!("/v1/Subscriptions/{sub_sid}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn types_and_schemas_describe_the_verify_events() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let list = c.get("/v1/Types").await.expect(200);
    assert_eq!(list["meta"]["key"], "types");
    let names: Vec<&str> = list["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    for t in VERIFY_TYPES.iter().chain([&TEST_EVENT]) {
        assert!(names.contains(t), "{t} missing from {names:?}");
    }
    let pending = c.get(&format!("/v1/Types/{PENDING}")).await.expect(200);
    assert_eq!(
        pending["schema_id"],
        "AccountSecurity.VerifyEventStreamEvent"
    );
    assert_eq!(pending["status"], "available");
    assert_eq!(
        pending["links"]["schema"],
        format!(
            "{}/v1/Schemas/AccountSecurity.VerifyEventStreamEvent",
            server.base_url()
        )
    );
    let verify_only = c
        .get("/v1/Types?SchemaId=AccountSecurity.VerifyEventStreamEvent&PageSize=2")
        .await
        .expect(200);
    assert_eq!(verify_only["types"].as_array().unwrap().len(), 2);
    let next = verify_only["meta"]["next_page_url"].as_str().unwrap();
    let page2 = c.get(next).await.expect(200);
    assert_eq!(page2["types"].as_array().unwrap().len(), 2);
    c.get("/v1/Types/com.example.nope")
        .await
        .expect_error(404, 20404);

    let schema = c
        .get("/v1/Schemas/AccountSecurity.VerifyEventStreamEvent")
        .await
        .expect(200);
    assert_eq!(schema["latest_version"], 3);
    let versions = c
        .get(schema["links"]["versions"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(versions["meta"]["key"], "schema_versions");
    assert_eq!(versions["schema_versions"].as_array().unwrap().len(), 3);
    let v3 = c
        .get("/v1/Schemas/AccountSecurity.VerifyEventStreamEvent/Versions/3")
        .await
        .expect(200);
    assert_eq!(
        v3["raw"],
        "https://events-schemas.twilio.com/AccountSecurity.VerifyEventStreamEvent/3"
    );
    c.get("/v1/Schemas/Nope").await.expect_error(404, 20404);
}

#[tokio::test]
async fn a_reset_of_everything_deletes_the_accounts_sinks_and_subscriptions() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let sink = create_sink(&c, DESTINATION).await;
    subscribe(&c, sink["sid"].as_str().unwrap(), &[PENDING]).await;
    c.post_form("/emulator/v1/Reset", &[("Scope", "counters")])
        .await
        .expect(204);
    assert_eq!(
        c.get("/v1/Sinks").await.expect(200)["sinks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.post_form("/emulator/v1/Reset", &[("Scope", "all")])
        .await
        .expect(204);
    assert_eq!(c.get("/v1/Sinks").await.expect(200)["sinks"], json!([]));
    assert_eq!(
        c.get("/v1/Subscriptions").await.expect(200)["subscriptions"],
        json!([])
    );
}

#[tokio::test]
async fn sinks_and_subscriptions_survive_a_restart() {
    let mut server = TestServer::start(ServerOptions::new()).await;
    let sink = create_sink(&server.a(), DESTINATION).await;
    let sub = subscribe(&server.a(), sink["sid"].as_str().unwrap(), &[PENDING]).await;
    server.terminate().await;
    let again = TestServer::start(ServerOptions::new().database_of(&server)).await;
    let c = again.a();
    let fetched = c
        .get(&format!("/v1/Sinks/{}", sink["sid"].as_str().unwrap()))
        .await
        .expect(200);
    assert_eq!(fetched["sink_configuration"], sink["sink_configuration"]);
    c.get(&format!(
        "/v1/Subscriptions/{}",
        sub["sid"].as_str().unwrap()
    ))
    .await
    .expect(200);
}
