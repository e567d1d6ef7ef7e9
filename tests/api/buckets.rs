//! `/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets`: create, fetch, list, update,
//! delete and their errors.

use serde_json::json;

use crate::harness::{ACCOUNT_A, Client, ServerOptions, TestServer};
use crate::helpers::*;

/// A service and a rate limit: `(service_sid, rate_limit_sid)`.
async fn parent(a: &Client) -> (String, String) {
    let vs = str_of(&create_service(a, "Buckets").await["sid"]);
    let rk = str_of(&create_rate_limit(a, &vs, "end_user_ip").await["sid"]);
    (vs, rk)
}

#[tokio::test]
async fn creating_a_bucket_answers_201_with_the_documented_fields() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let bucket = a
        .post_form(&buckets_path(&vs, &rk), &[("Max", "5"), ("Interval", "60")])
        .await
        .expect(201);
    let bl = assert_sid(&bucket["sid"], "BL");
    assert_eq!(bucket["rate_limit_sid"], rk.as_str());
    assert_eq!(bucket["service_sid"], vs.as_str());
    assert_eq!(bucket["account_sid"], ACCOUNT_A);
    assert_eq!(bucket["max"], 5);
    assert_eq!(bucket["interval"], 60);
    assert_fresh_dates(&bucket);
    assert_eq!(
        bucket["url"],
        format!(
            "{}/v2/Services/{vs}/RateLimits/{rk}/Buckets/{bl}",
            server.base_url()
        )
    );
    assert!(
        bucket.get("links").is_none(),
        "buckets have no links: {bucket}"
    );
}

#[tokio::test]
async fn fetching_a_bucket_returns_what_create_returned() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let created = create_bucket(&a, &vs, &rk, 10, 3600).await;
    let bl = str_of(&created["sid"]);
    assert_eq!(
        a.get(&bucket_path(&vs, &rk, &bl)).await.expect(200),
        created
    );
}

#[tokio::test]
async fn listing_buckets_returns_them_in_a_buckets_envelope() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let other_rk = str_of(&create_rate_limit(&a, &vs, "phone").await["sid"]);
    let empty = a.get(&buckets_path(&vs, &rk)).await.expect(200);
    assert_eq!(empty["buckets"], json!([]));
    assert_eq!(empty["meta"]["key"], "buckets");

    let minute = create_bucket(&a, &vs, &rk, 5, 60).await;
    let hour = create_bucket(&a, &vs, &rk, 50, 3600).await;
    create_bucket(&a, &vs, &other_rk, 1, 60).await;
    let list = a.get(&buckets_path(&vs, &rk)).await.expect(200);
    let items = list["buckets"].as_array().expect("buckets array");
    assert_eq!(items.len(), 2, "only this rate limit's buckets: {list}");
    assert!(items.contains(&minute) && items.contains(&hour), "{list}");
    assert_eq!(list["meta"]["key"], "buckets");
    let prefix = format!(
        "{}/v2/Services/{vs}/RateLimits/{rk}/Buckets",
        server.base_url()
    );
    for key in ["first_page_url", "url"] {
        let url = list["meta"][key].as_str().unwrap_or_default();
        assert!(url.starts_with(&prefix), "meta.{key} = {url}");
    }
}

#[tokio::test]
async fn updating_max_keeps_the_interval_and_bumps_date_updated() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let created = create_bucket(&a, &vs, &rk, 5, 60).await;
    let path = bucket_path(&vs, &rk, &str_of(&created["sid"]));
    advance_clock(&a, 5).await;

    let updated = a.post_form(&path, &[("Max", "7")]).await.expect(200);
    assert_eq!(updated["max"], 7);
    assert_eq!(updated["interval"], 60);
    assert_eq!(updated["date_created"], created["date_created"]);
    assert!(
        assert_date(&updated["date_updated"]) >= assert_date(&created["date_updated"]) + 5,
        "date_updated {} after advancing the clock by 5 s from {}",
        updated["date_updated"],
        created["date_updated"]
    );
    assert_eq!(
        without(&updated, &["max", "date_updated"]),
        without(&created, &["max", "date_updated"])
    );
    assert_eq!(a.get(&path).await.expect(200), updated);
}

#[tokio::test]
async fn updating_the_interval_keeps_max() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let created = create_bucket(&a, &vs, &rk, 5, 60).await;
    let path = bucket_path(&vs, &rk, &str_of(&created["sid"]));
    let updated = a
        .post_form(&path, &[("Interval", "86400")])
        .await
        .expect(200);
    assert_eq!(updated["max"], 5);
    assert_eq!(updated["interval"], 86400);

    let both = a
        .post_form(&path, &[("Max", "1"), ("Interval", "1")])
        .await
        .expect(200);
    assert_eq!(both["max"], 1);
    assert_eq!(both["interval"], 1);
    assert_eq!(a.get(&path).await.expect(200), both);
}

#[tokio::test]
async fn missing_max_or_interval_is_a_missing_parameter() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let path = buckets_path(&vs, &rk);
    assert_eq!(
        a.post_form(&path, &[("Interval", "60")])
            .await
            .error_message(400, 20001),
        "Missing required parameter Max in the post body"
    );
    assert_eq!(
        a.post_form(&path, &[("Max", "5")])
            .await
            .error_message(400, 20001),
        "Missing required parameter Interval in the post body"
    );
    a.post_form(&path, &[]).await.expect_error(400, 20001);
    assert_eq!(
        a.get(&path).await.expect(200)["buckets"],
        json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn max_must_be_a_positive_integer() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let path = buckets_path(&vs, &rk);
    for max in ["0", "-1", "five", "1.5", "1e3", "99999999999999999999999"] {
        let message = a
            .post_form(&path, &[("Max", max), ("Interval", "60")])
            .await
            .error_message(400, 60200);
        assert!(
            message.starts_with("Invalid parameter: Max"),
            "Max={max:?}: {message}"
        );
    }
    assert_eq!(a.get(&path).await.expect(200)["buckets"], json!([]));
}

#[tokio::test]
async fn interval_must_be_an_integer_from_1_to_86400() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let path = buckets_path(&vs, &rk);
    for interval in ["0", "-60", "86401", "sixty", "2.5", "60s"] {
        let message = a
            .post_form(&path, &[("Max", "5"), ("Interval", interval)])
            .await
            .error_message(400, 60200);
        assert!(
            message.starts_with("Invalid parameter: Interval"),
            "Interval={interval:?}: {message}"
        );
    }
    assert_eq!(a.get(&path).await.expect(200)["buckets"], json!([]));
    for interval in [1, 86400] {
        let bucket = create_bucket(&a, &vs, &rk, 1, interval).await;
        assert_eq!(bucket["interval"], interval);
    }
}

#[tokio::test]
async fn an_invalid_update_is_refused_and_changes_nothing() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let created = create_bucket(&a, &vs, &rk, 5, 60).await;
    let path = bucket_path(&vs, &rk, &str_of(&created["sid"]));
    let message = a
        .post_form(&path, &[("Max", "0")])
        .await
        .error_message(400, 60200);
    assert!(message.starts_with("Invalid parameter: Max"), "{message}");
    let message = a
        .post_form(&path, &[("Max", "9"), ("Interval", "abc")])
        .await
        .error_message(400, 60200);
    assert!(
        message.starts_with("Invalid parameter: Interval"),
        "{message}"
    );
    assert_eq!(a.get(&path).await.expect(200), created);
}

#[tokio::test]
async fn a_duplicate_interval_on_the_same_rate_limit_is_refused_with_60211() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let original = create_bucket(&a, &vs, &rk, 5, 60).await;
    a.post_form(&buckets_path(&vs, &rk), &[("Max", "9"), ("Interval", "60")])
        .await
        .expect_error(400, 60211);
    assert_eq!(
        a.get(&buckets_path(&vs, &rk)).await.expect(200)["buckets"],
        json!([original])
    );

    // The same interval on another rate limit is fine.
    let other = str_of(&create_rate_limit(&a, &vs, "phone").await["sid"]);
    create_bucket(&a, &vs, &other, 5, 60).await;
}

#[tokio::test]
async fn updating_a_bucket_to_another_buckets_interval_is_refused_with_60211() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    create_bucket(&a, &vs, &rk, 5, 60).await;
    let hour = create_bucket(&a, &vs, &rk, 50, 3600).await;
    let path = bucket_path(&vs, &rk, &str_of(&hour["sid"]));
    a.post_form(&path, &[("Interval", "60")])
        .await
        .expect_error(400, 60211);
    assert_eq!(a.get(&path).await.expect(200), hour);
}

#[tokio::test]
async fn the_bucket_limit_per_rate_limit_is_enforced_with_60210() {
    let server =
        TestServer::start(ServerOptions::new().arg("--max-buckets-per-rate-limit", 2)).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let first = create_bucket(&a, &vs, &rk, 1, 1).await;
    create_bucket(&a, &vs, &rk, 10, 60).await;
    a.post_form(
        &buckets_path(&vs, &rk),
        &[("Max", "100"), ("Interval", "3600")],
    )
    .await
    .expect_error(400, 60210);
    assert_eq!(
        a.get(&buckets_path(&vs, &rk)).await.expect(200)["buckets"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // The limit is per rate limit.
    let other = str_of(&create_rate_limit(&a, &vs, "phone").await["sid"]);
    create_bucket(&a, &vs, &other, 1, 1).await;
    create_bucket(&a, &vs, &other, 10, 60).await;

    // Deleting one makes room again.
    assert_deleted(
        &a.delete(&bucket_path(&vs, &rk, &str_of(&first["sid"])))
            .await,
    );
    create_bucket(&a, &vs, &rk, 100, 3600).await;
}

#[tokio::test]
async fn deleting_a_bucket_answers_204_and_it_is_gone() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let bl = str_of(&create_bucket(&a, &vs, &rk, 5, 60).await["sid"]);
    let path = bucket_path(&vs, &rk, &bl);
    assert_deleted(&a.delete(&path).await);
    let expected = format!("/Services/{vs}/RateLimits/{rk}/Buckets/{bl}");
    assert_not_found(&a.get(&path).await, &expected);
    assert_not_found(&a.post_form(&path, &[("Max", "1")]).await, &expected);
    assert_not_found(&a.delete(&path).await, &expected);
    assert_eq!(
        a.get(&buckets_path(&vs, &rk)).await.expect(200)["buckets"],
        json!([])
    );
    // The interval is free again.
    create_bucket(&a, &vs, &rk, 5, 60).await;
    // The rate limit is untouched.
    a.get(&rate_limit_path(&vs, &rk)).await.expect(200);
}

#[tokio::test]
async fn buckets_of_an_unknown_rate_limit_are_not_found() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Buckets").await["sid"]);
    let rk = unknown_sid("RK");
    a.post_form(&buckets_path(&vs, &rk), &[("Max", "5"), ("Interval", "60")])
        .await
        .expect_error(404, 20404);
    a.get(&buckets_path(&vs, &rk))
        .await
        .expect_error(404, 20404);
    let bl = unknown_sid("BL");
    a.get(&bucket_path(&vs, &rk, &bl))
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn an_unknown_bucket_is_not_found() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let bl = unknown_sid("BL");
    let path = bucket_path(&vs, &rk, &bl);
    let expected = format!("/Services/{vs}/RateLimits/{rk}/Buckets/{bl}");
    assert_not_found(&a.get(&path).await, &expected);
    assert_not_found(&a.post_form(&path, &[("Max", "1")]).await, &expected);
    assert_not_found(&a.delete(&path).await, &expected);
}

#[tokio::test]
async fn a_bucket_is_only_reachable_under_its_own_rate_limit_and_service() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk) = parent(&a).await;
    let bucket = create_bucket(&a, &vs, &rk, 5, 60).await;
    let bl = str_of(&bucket["sid"]);
    let other_rk = str_of(&create_rate_limit(&a, &vs, "phone").await["sid"]);
    let other_vs = str_of(&create_service(&a, "Other").await["sid"]);
    let other_vs_rk = str_of(&create_rate_limit(&a, &other_vs, "ip").await["sid"]);
    for wrong in [
        bucket_path(&vs, &other_rk, &bl),
        bucket_path(&other_vs, &rk, &bl),
        bucket_path(&other_vs, &other_vs_rk, &bl),
    ] {
        a.get(&wrong).await.expect_error(404, 20404);
        a.post_form(&wrong, &[("Max", "1000")])
            .await
            .expect_error(404, 20404);
        a.delete(&wrong).await.expect_error(404, 20404);
    }
    assert_eq!(a.get(&bucket_path(&vs, &rk, &bl)).await.expect(200), bucket);
}
