//! `/v2/Services/{ServiceSid}/RateLimits`: create, fetch, list, update, delete and their errors.

use serde_json::{Value, json};

use crate::harness::{ACCOUNT_A, ServerOptions, TestServer};
use crate::helpers::*;

#[tokio::test]
async fn creating_a_rate_limit_answers_201_with_the_documented_fields() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let service = create_service(&a, "Limits").await;
    let vs = str_of(&service["sid"]);

    let rate_limit = a
        .post_form(
            &rate_limits_path(&vs),
            &[
                ("UniqueName", "end_user.ip-v4"),
                ("Description", "Limit by IP"),
            ],
        )
        .await
        .expect(201);
    let rk = assert_sid(&rate_limit["sid"], "RK");
    assert_eq!(rate_limit["service_sid"], vs.as_str());
    assert_eq!(rate_limit["account_sid"], ACCOUNT_A);
    assert_eq!(rate_limit["unique_name"], "end_user.ip-v4");
    assert_eq!(rate_limit["description"], "Limit by IP");
    assert_fresh_dates(&rate_limit);
    let base = server.base_url();
    let url = format!("{base}/v2/Services/{vs}/RateLimits/{rk}");
    assert_eq!(rate_limit["url"], url);
    assert_eq!(rate_limit["links"]["buckets"], format!("{url}/Buckets"));
}

#[tokio::test]
async fn a_rate_limit_may_be_created_without_a_description() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let rate_limit = create_rate_limit(&a, &vs, "phone_number").await;
    assert_eq!(rate_limit["unique_name"], "phone_number");
    assert!(
        rate_limit.get("description").is_some(),
        "description is listed in the spec, so it is present (null allowed): {rate_limit}"
    );
}

#[tokio::test]
async fn fetching_a_rate_limit_returns_what_create_returned() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let created = a
        .post_form(
            &rate_limits_path(&vs),
            &[("UniqueName", "session"), ("Description", "Per session")],
        )
        .await
        .expect(201);
    let rk = str_of(&created["sid"]);
    assert_eq!(a.get(&rate_limit_path(&vs, &rk)).await.expect(200), created);
}

#[tokio::test]
async fn listing_rate_limits_returns_them_in_a_rate_limits_envelope() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let other = str_of(&create_service(&a, "Other").await["sid"]);
    let empty = a.get(&rate_limits_path(&vs)).await.expect(200);
    assert_eq!(empty["rate_limits"], json!([]));
    assert_eq!(empty["meta"]["key"], "rate_limits");

    let first = create_rate_limit(&a, &vs, "ip").await;
    let second = create_rate_limit(&a, &vs, "phone").await;
    create_rate_limit(&a, &other, "elsewhere").await;
    let list = a.get(&rate_limits_path(&vs)).await.expect(200);
    let items = list["rate_limits"].as_array().expect("rate_limits array");
    assert_eq!(items.len(), 2, "only this service's rate limits: {list}");
    assert!(items.contains(&first) && items.contains(&second), "{list}");
    assert_eq!(list["meta"]["key"], "rate_limits");
    let prefix = format!("{}/v2/Services/{vs}/RateLimits", server.base_url());
    for key in ["first_page_url", "url"] {
        let url = list["meta"][key].as_str().unwrap_or_default();
        assert!(url.starts_with(&prefix), "meta.{key} = {url}");
    }
}

#[tokio::test]
async fn updating_a_rate_limit_changes_its_description_and_bumps_date_updated() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let created = a
        .post_form(
            &rate_limits_path(&vs),
            &[("UniqueName", "ip"), ("Description", "Old")],
        )
        .await
        .expect(201);
    let path = rate_limit_path(&vs, &str_of(&created["sid"]));
    advance_clock(&a, 5).await;

    let updated = a
        .post_form(&path, &[("Description", "New description")])
        .await
        .expect(200);
    assert_eq!(updated["description"], "New description");
    assert_eq!(updated["unique_name"], "ip");
    assert!(
        assert_date(&updated["date_updated"]) >= assert_date(&created["date_updated"]) + 5,
        "date_updated {} after advancing the clock by 5 s from {}",
        updated["date_updated"],
        created["date_updated"]
    );
    assert_eq!(
        without(&updated, &["description", "date_updated"]),
        without(&created, &["description", "date_updated"])
    );
    assert_eq!(a.get(&path).await.expect(200), updated);
}

#[tokio::test]
async fn an_update_with_no_parameters_keeps_the_description() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let created = a
        .post_form(
            &rate_limits_path(&vs),
            &[("UniqueName", "ip"), ("Description", "Keep")],
        )
        .await
        .expect(201);
    let path = rate_limit_path(&vs, &str_of(&created["sid"]));
    let updated = a.post_form(&path, &[]).await.expect(200);
    assert_eq!(
        without(&updated, &["date_updated"]),
        without(&created, &["date_updated"])
    );
}

#[tokio::test]
async fn deleting_a_rate_limit_answers_204_and_it_is_gone() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let rk = str_of(&create_rate_limit(&a, &vs, "ip").await["sid"]);
    let path = rate_limit_path(&vs, &rk);

    assert_deleted(&a.delete(&path).await);
    let expected = format!("/Services/{vs}/RateLimits/{rk}");
    assert_not_found(&a.get(&path).await, &expected);
    assert_not_found(
        &a.post_form(&path, &[("Description", "x")]).await,
        &expected,
    );
    assert_not_found(&a.delete(&path).await, &expected);
    let list = a.get(&rate_limits_path(&vs)).await.expect(200);
    assert_eq!(list["rate_limits"], json!([]));
    // The service itself is untouched.
    a.get(&service_path(&vs)).await.expect(200);
}

#[tokio::test]
async fn deleting_a_rate_limit_deletes_its_buckets() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk, bl) = one_of_each(&a).await.first_sids();
    assert_deleted(&a.delete(&rate_limit_path(&vs, &rk)).await);
    a.get(&bucket_path(&vs, &rk, &bl))
        .await
        .expect_error(404, 20404);
    a.get(&buckets_path(&vs, &rk))
        .await
        .expect_error(404, 20404);

    // A new rate limit with the same name starts without buckets.
    let again = create_rate_limit(&a, &vs, "end_user_ip").await;
    let list = a
        .get(&buckets_path(&vs, &str_of(&again["sid"])))
        .await
        .expect(200);
    assert_eq!(list["buckets"], json!([]));
}

#[tokio::test]
async fn a_missing_unique_name_is_a_missing_parameter() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let reply = a
        .post_form(&rate_limits_path(&vs), &[("Description", "No name")])
        .await;
    assert_eq!(
        reply.error_message(400, 20001),
        "Missing required parameter UniqueName in the post body"
    );
}

#[tokio::test]
async fn unique_names_of_letters_digits_dots_dashes_and_underscores_are_accepted() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    for name in ["a", "Z", "9", "end_user.ip-v4_X", "...", "-_-"] {
        let rate_limit = create_rate_limit(&a, &vs, name).await;
        assert_eq!(rate_limit["unique_name"], name);
    }
}

#[tokio::test]
async fn a_unique_name_with_other_characters_is_refused_with_60209() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    for name in [
        "has space",
        "slash/name",
        "semi;colon",
        "at@sign",
        "plus+sign",
        "caf\u{e9}",
        "tab\tname",
        "{json}",
    ] {
        let reply = a
            .post_form(&rate_limits_path(&vs), &[("UniqueName", name)])
            .await;
        reply.expect_error(400, 60209);
    }
    let list = a.get(&rate_limits_path(&vs)).await.expect(200);
    assert_eq!(list["rate_limits"], json!([]), "nothing was created");
}

#[tokio::test]
async fn a_duplicate_unique_name_in_the_same_service_is_refused_with_60208() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let original = create_rate_limit(&a, &vs, "ip").await;
    a.post_form(
        &rate_limits_path(&vs),
        &[("UniqueName", "ip"), ("Description", "again")],
    )
    .await
    .expect_error(400, 60208);
    let list = a.get(&rate_limits_path(&vs)).await.expect(200);
    assert_eq!(list["rate_limits"], json!([original]));

    // The same name in another service is fine.
    let other = str_of(&create_service(&a, "Other").await["sid"]);
    create_rate_limit(&a, &other, "ip").await;
}

#[tokio::test]
async fn a_unique_name_can_be_reused_after_its_rate_limit_is_deleted() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let first = create_rate_limit(&a, &vs, "ip").await;
    assert_deleted(
        &a.delete(&rate_limit_path(&vs, &str_of(&first["sid"])))
            .await,
    );
    let second = create_rate_limit(&a, &vs, "ip").await;
    assert_ne!(second["sid"], first["sid"]);
}

#[tokio::test]
async fn the_rate_limit_limit_per_service_is_enforced_with_60207() {
    let server =
        TestServer::start(ServerOptions::new().arg("--max-rate-limits-per-service", 3)).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let mut sids = Vec::new();
    for name in ["one", "two", "three"] {
        sids.push(str_of(&create_rate_limit(&a, &vs, name).await["sid"]));
    }
    a.post_form(&rate_limits_path(&vs), &[("UniqueName", "four")])
        .await
        .expect_error(400, 60207);
    let list = a.get(&rate_limits_path(&vs)).await.expect(200);
    assert_eq!(list["rate_limits"].as_array().map(Vec::len), Some(3));

    // The limit is per service.
    let other = str_of(&create_service(&a, "Other").await["sid"]);
    for name in ["one", "two", "three"] {
        create_rate_limit(&a, &other, name).await;
    }

    // Deleting one makes room again.
    assert_deleted(&a.delete(&rate_limit_path(&vs, &sids[0])).await);
    create_rate_limit(&a, &vs, "four").await;
    a.post_form(&rate_limits_path(&vs), &[("UniqueName", "five")])
        .await
        .expect_error(400, 60207);
}

#[tokio::test]
async fn rate_limits_of_an_unknown_service_are_not_found() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = unknown_sid("VA");
    let rk = unknown_sid("RK");
    a.post_form(&rate_limits_path(&vs), &[("UniqueName", "ip")])
        .await
        .expect_error(404, 20404);
    a.get(&rate_limits_path(&vs)).await.expect_error(404, 20404);
    a.get(&rate_limit_path(&vs, &rk))
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn an_unknown_rate_limit_is_not_found() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let rk = unknown_sid("RK");
    let path = rate_limit_path(&vs, &rk);
    let expected = format!("/Services/{vs}/RateLimits/{rk}");
    assert_not_found(&a.get(&path).await, &expected);
    assert_not_found(
        &a.post_form(&path, &[("Description", "x")]).await,
        &expected,
    );
    assert_not_found(&a.delete(&path).await, &expected);
}

#[tokio::test]
async fn a_rate_limit_is_only_reachable_under_its_own_service() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Owner").await["sid"]);
    let other = str_of(&create_service(&a, "Other").await["sid"]);
    let rate_limit = create_rate_limit(&a, &vs, "ip").await;
    let rk = str_of(&rate_limit["sid"]);
    let wrong = rate_limit_path(&other, &rk);
    a.get(&wrong).await.expect_error(404, 20404);
    a.post_form(&wrong, &[("Description", "hijack")])
        .await
        .expect_error(404, 20404);
    a.delete(&wrong).await.expect_error(404, 20404);
    assert_eq!(
        a.get(&rate_limit_path(&vs, &rk)).await.expect(200),
        rate_limit
    );
}

#[tokio::test]
async fn descriptions_keep_spaces_and_unicode() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Limits").await["sid"]);
    let created = a
        .post_raw(
            &rate_limits_path(&vs),
            "UniqueName=ip&Description=Limit+per+caf%C3%A9+IP",
        )
        .await
        .expect(201);
    assert_eq!(
        created["description"],
        Value::from("Limit per caf\u{e9} IP")
    );
}
