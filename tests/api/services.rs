//! `/v2/Services`: create, fetch, list, update, delete, the form dialect and the URLs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ACCOUNT_A, ServerOptions, TestServer};
use crate::helpers::*;

/// Every setting the create/update request schema lists, as twilio-python would send it.
const ALL_SETTINGS: &[(&str, &str)] = &[
    ("FriendlyName", "Full settings"),
    ("CodeLength", "7"),
    ("LookupEnabled", "true"),
    ("SkipSmsToLandlines", "true"),
    ("DtmfInputRequired", "true"),
    ("TtsName", "alice"),
    ("Psd2Enabled", "true"),
    ("DoNotShareWarningEnabled", "true"),
    ("CustomCodeEnabled", "true"),
    ("Push.IncludeDate", "true"),
    (
        "Push.ApnCredentialSid",
        "CRaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ),
    (
        "Push.FcmCredentialSid",
        "CRbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ),
    ("Totp.Issuer", "test-issuer"),
    ("Totp.TimeStep", "30"),
    ("Totp.CodeLength", "6"),
    ("Totp.Skew", "2"),
    ("DefaultTemplateSid", "HJaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    (
        "Whatsapp.MsgServiceSid",
        "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ),
    ("Whatsapp.From", "whatsapp:+1234567890"),
    ("Passkeys.RelyingParty.Id", "www.mydomain.com"),
    ("Passkeys.RelyingParty.Name", "My domain"),
    ("Passkeys.AuthenticatorAttachment", "platform"),
    ("Passkeys.DiscoverableCredentials", "preferred"),
    ("Passkeys.UserVerification", "discouraged"),
    ("VerifyEventSubscriptionEnabled", "true"),
];

#[tokio::test]
async fn creating_a_service_answers_201_with_the_documented_fields() {
    let server = TestServer::start(ServerOptions::new()).await;
    let reply = server
        .a()
        .post_form("/v2/Services", &[("FriendlyName", "My App")])
        .await;
    let service = reply.expect(201);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "content-type: {:?}",
        reply.header("content-type")
    );

    let sid = assert_sid(&service["sid"], "VA");
    assert_eq!(service["account_sid"], ACCOUNT_A);
    assert_eq!(service["friendly_name"], "My App");
    let code_length = service["code_length"]
        .as_u64()
        .expect("integer code_length");
    assert!((4..=10).contains(&code_length), "code_length {code_length}");
    assert_fresh_dates(&service);

    let base = server.base_url();
    assert_eq!(service["url"], format!("{base}/v2/Services/{sid}"));
    let links = service["links"].as_object().expect("links object");
    assert_eq!(
        links["rate_limits"],
        format!("{base}/v2/Services/{sid}/RateLimits")
    );
    assert_eq!(
        links["verifications"],
        format!("{base}/v2/Services/{sid}/Verifications")
    );
    assert_eq!(
        links["verification_checks"],
        format!("{base}/v2/Services/{sid}/VerificationCheck")
    );
    for (name, link) in links {
        let link = link
            .as_str()
            .unwrap_or_else(|| panic!("link {name}: {link}"));
        assert!(
            link.starts_with(&format!("{base}/v2/Services/{sid}/")),
            "link {name} = {link} is not under the service's absolute URL"
        );
    }
}

#[tokio::test]
async fn fetching_a_service_returns_what_create_returned() {
    let server = TestServer::start(ServerOptions::new()).await;
    let created = server
        .a()
        .post_form("/v2/Services", ALL_SETTINGS)
        .await
        .expect(201);
    let sid = str_of(&created["sid"]);
    let fetched = server.a().get(&service_path(&sid)).await.expect(200);
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn a_plus_in_the_form_body_is_a_space() {
    let server = TestServer::start(ServerOptions::new()).await;
    let service = server
        .a()
        .post_raw("/v2/Services", "FriendlyName=My+Test+Service")
        .await
        .expect(201);
    assert_eq!(service["friendly_name"], "My Test Service");

    let sid = str_of(&service["sid"]);
    let updated = server
        .a()
        .post_raw(&service_path(&sid), "FriendlyName=Renamed+Service%2Dtwo")
        .await
        .expect(200);
    assert_eq!(updated["friendly_name"], "Renamed Service-two");
}

#[tokio::test]
async fn every_documented_setting_is_accepted_and_echoed() {
    let server = TestServer::start(ServerOptions::new()).await;
    let service = server
        .a()
        .post_form("/v2/Services", ALL_SETTINGS)
        .await
        .expect(201);

    assert_eq!(service["friendly_name"], "Full settings");
    assert_eq!(service["code_length"], 7);
    assert_eq!(service["lookup_enabled"], true);
    assert_eq!(service["skip_sms_to_landlines"], true);
    assert_eq!(service["dtmf_input_required"], true);
    assert_eq!(service["tts_name"], "alice");
    assert_eq!(service["psd2_enabled"], true);
    assert_eq!(service["do_not_share_warning_enabled"], true);
    assert_eq!(service["custom_code_enabled"], true);
    assert_eq!(service["verify_event_subscription_enabled"], true);
    assert_eq!(
        service["default_template_sid"],
        "HJaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    );
    assert_eq!(
        service["push"],
        json!({
            "include_date": true,
            "apn_credential_sid": "CRaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "fcm_credential_sid": "CRbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        })
    );
    assert_eq!(
        service["totp"],
        json!({"issuer": "test-issuer", "time_step": 30, "code_length": 6, "skew": 2})
    );
    assert_eq!(
        service["whatsapp"],
        json!({
            "msg_service_sid": "MGaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "from": "whatsapp:+1234567890",
        })
    );
    let passkeys = &service["passkeys"];
    assert_eq!(passkeys["relying_party"]["id"], "www.mydomain.com");
    assert_eq!(passkeys["relying_party"]["name"], "My domain");
    assert_eq!(passkeys["authenticator_attachment"], "platform");
    assert_eq!(passkeys["discoverable_credentials"], "preferred");
    assert_eq!(passkeys["user_verification"], "discouraged");
}

#[tokio::test]
async fn dotted_names_become_nested_objects() {
    let server = TestServer::start(ServerOptions::new()).await;
    let service = server
        .a()
        .post_raw(
            "/v2/Services",
            "FriendlyName=Nested&Push.IncludeDate=true&Totp.TimeStep=30",
        )
        .await
        .expect(201);
    assert_eq!(service["push"]["include_date"], true);
    assert_eq!(service["totp"]["time_step"], 30);
    assert!(
        service.get("Push.IncludeDate").is_none() && service.get("push.include_date").is_none(),
        "dotted names must not be echoed flat: {service}"
    );
}

#[tokio::test]
async fn passkeys_origins_are_echoed_as_a_list_split_on_commas() {
    // The spec's createRecord example shows `origins` as an array, while the request parameter
    // is one comma-separated string.
    let server = TestServer::start(ServerOptions::new()).await;
    let service = server
        .a()
        .post_form(
            "/v2/Services",
            &[
                ("FriendlyName", "Passkeys"),
                ("Passkeys.RelyingParty.Id", "www.mydomain.com"),
                (
                    "Passkeys.RelyingParty.Origins",
                    "www.mydomain.com,www.login.mydomain.com",
                ),
            ],
        )
        .await
        .expect(201);
    assert_eq!(
        service["passkeys"]["relying_party"]["origins"],
        json!(["www.mydomain.com", "www.login.mydomain.com"])
    );
}

#[tokio::test]
async fn false_booleans_are_echoed_as_false() {
    let server = TestServer::start(ServerOptions::new()).await;
    let service = server
        .a()
        .post_form(
            "/v2/Services",
            &[
                ("FriendlyName", "Falsy"),
                ("LookupEnabled", "false"),
                ("Psd2Enabled", "false"),
                ("CustomCodeEnabled", "false"),
                ("DoNotShareWarningEnabled", "false"),
                ("Push.IncludeDate", "false"),
            ],
        )
        .await
        .expect(201);
    assert_eq!(service["lookup_enabled"], false);
    assert_eq!(service["psd2_enabled"], false);
    assert_eq!(service["custom_code_enabled"], false);
    assert_eq!(service["do_not_share_warning_enabled"], false);
    assert_eq!(service["push"]["include_date"], false);
}

#[tokio::test]
async fn a_boolean_that_is_not_true_or_false_is_an_invalid_parameter() {
    let server = TestServer::start(ServerOptions::new()).await;
    let reply = server
        .a()
        .post_form(
            "/v2/Services",
            &[("FriendlyName", "Bad bool"), ("LookupEnabled", "maybe")],
        )
        .await;
    let message = reply.error_message(400, 60200);
    assert!(
        message.starts_with("Invalid parameter: LookupEnabled"),
        "{message}"
    );
}

#[tokio::test]
async fn code_lengths_from_4_to_10_are_accepted() {
    let server = TestServer::start(ServerOptions::new()).await;
    for length in ["4", "10"] {
        let service = server
            .a()
            .post_form(
                "/v2/Services",
                &[("FriendlyName", "Lengths"), ("CodeLength", length)],
            )
            .await
            .expect(201);
        assert_eq!(service["code_length"].to_string(), length);
    }
}

#[tokio::test]
async fn code_lengths_outside_4_to_10_or_not_integers_are_invalid() {
    let server = TestServer::start(ServerOptions::new()).await;
    for length in ["3", "11", "0", "-5", "six", "5.5"] {
        let reply = server
            .a()
            .post_form(
                "/v2/Services",
                &[("FriendlyName", "Lengths"), ("CodeLength", length)],
            )
            .await;
        let message = reply.error_message(400, 60200);
        assert!(
            message.starts_with("Invalid parameter: CodeLength"),
            "CodeLength={length:?}: {message}"
        );
    }
    let list = server.a().get("/v2/Services").await.expect(200);
    assert_eq!(list["services"], json!([]), "nothing was created");
}

#[tokio::test]
async fn a_missing_friendly_name_is_a_missing_parameter() {
    let server = TestServer::start(ServerOptions::new()).await;
    let reply = server
        .a()
        .post_form("/v2/Services", &[("CodeLength", "6")])
        .await;
    assert_eq!(
        reply.error_message(400, 20001),
        "Missing required parameter FriendlyName in the post body"
    );
    let reply = server.a().post_raw("/v2/Services", "").await;
    assert_eq!(
        reply.error_message(400, 20001),
        "Missing required parameter FriendlyName in the post body"
    );
}

#[tokio::test]
async fn a_friendly_name_of_up_to_32_characters_is_accepted() {
    // CreateServiceRequest.FriendlyName: "It can be up to 32 characters long."
    let server = TestServer::start(ServerOptions::new()).await;
    let name = "abcdefghij abcdefghij abcdefghij"; // 32 characters
    assert_eq!(name.chars().count(), 32);
    let service = create_service(&server.a(), name).await;
    assert_eq!(service["friendly_name"], name);
}

#[tokio::test]
async fn a_friendly_name_longer_than_32_characters_is_invalid() {
    let server = TestServer::start(ServerOptions::new()).await;
    let name = "abcdefghij abcdefghij abcdefghijk"; // 33 characters
    let reply = server
        .a()
        .post_form("/v2/Services", &[("FriendlyName", name)])
        .await;
    let message = reply.error_message(400, 60200);
    assert!(
        message.starts_with("Invalid parameter: FriendlyName"),
        "{message}"
    );

    let service = create_service(&server.a(), "Short").await;
    let path = service_path(&str_of(&service["sid"]));
    let reply = server.a().post_form(&path, &[("FriendlyName", name)]).await;
    let message = reply.error_message(400, 60200);
    assert!(
        message.starts_with("Invalid parameter: FriendlyName"),
        "{message}"
    );
    let fetched = server.a().get(&path).await.expect(200);
    assert_eq!(fetched, service, "a refused update changes nothing");
}

#[tokio::test]
async fn listing_services_returns_them_in_a_services_envelope() {
    let server = TestServer::start(ServerOptions::new()).await;
    let empty = server.a().get("/v2/Services").await.expect(200);
    assert_eq!(empty["services"], json!([]));
    assert_eq!(empty["meta"]["key"], "services");
    assert_eq!(empty["meta"]["page"], 0);
    assert_eq!(empty["meta"]["page_size"], 50);
    assert_eq!(empty["meta"]["previous_page_url"], Value::Null);
    assert_eq!(empty["meta"]["next_page_url"], Value::Null);

    let first = create_service(&server.a(), "First").await;
    let second = create_service(&server.a(), "Second").await;
    let list = server.a().get("/v2/Services").await.expect(200);
    let services = list["services"].as_array().expect("services array");
    assert_eq!(services.len(), 2, "{list}");
    assert!(services.contains(&first), "{list}");
    assert!(services.contains(&second), "{list}");
    let base = server.base_url();
    for key in ["first_page_url", "url"] {
        let url = list["meta"][key].as_str().expect(key);
        assert!(
            url.starts_with(&format!("{base}/v2/Services")),
            "meta.{key} = {url}"
        );
    }
}

#[tokio::test]
async fn updating_a_service_changes_only_what_was_sent_and_bumps_date_updated() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let created = a.post_form("/v2/Services", ALL_SETTINGS).await.expect(201);
    let path = service_path(&str_of(&created["sid"]));
    advance_clock(&a, 5).await;

    let updated = a
        .post_form(&path, &[("FriendlyName", "Renamed")])
        .await
        .expect(200);
    assert_eq!(updated["friendly_name"], "Renamed");
    assert_eq!(updated["date_created"], created["date_created"]);
    let before = assert_date(&created["date_updated"]);
    let after = assert_date(&updated["date_updated"]);
    assert!(
        after >= before + 5,
        "date_updated {} must follow the clock advanced by 5 s from {}",
        updated["date_updated"],
        created["date_updated"]
    );
    assert!(
        after <= clock_now(&a).await,
        "date_updated {} is read from the caller's clock",
        updated["date_updated"]
    );
    assert_eq!(
        without(&updated, &["friendly_name", "date_updated"]),
        without(&created, &["friendly_name", "date_updated"]),
        "only friendly_name and date_updated change"
    );
    assert_eq!(a.get(&path).await.expect(200), updated);
}

#[tokio::test]
async fn updating_one_nested_setting_keeps_its_siblings() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let created = a.post_form("/v2/Services", ALL_SETTINGS).await.expect(201);
    let path = service_path(&str_of(&created["sid"]));

    let updated = a
        .post_form(
            &path,
            &[
                ("Totp.TimeStep", "45"),
                ("Push.IncludeDate", "false"),
                ("CodeLength", "9"),
                ("LookupEnabled", "false"),
            ],
        )
        .await
        .expect(200);
    assert_eq!(
        updated["totp"],
        json!({"issuer": "test-issuer", "time_step": 45, "code_length": 6, "skew": 2})
    );
    assert_eq!(updated["push"]["include_date"], false);
    assert_eq!(
        updated["push"]["apn_credential_sid"],
        created["push"]["apn_credential_sid"]
    );
    assert_eq!(
        updated["push"]["fcm_credential_sid"],
        created["push"]["fcm_credential_sid"]
    );
    assert_eq!(updated["code_length"], 9);
    assert_eq!(updated["lookup_enabled"], false);
    assert_eq!(
        without(
            &updated,
            &[
                "totp",
                "push",
                "code_length",
                "lookup_enabled",
                "date_updated"
            ]
        ),
        without(
            &created,
            &[
                "totp",
                "push",
                "code_length",
                "lookup_enabled",
                "date_updated"
            ]
        )
    );
}

#[tokio::test]
async fn an_update_with_no_parameters_changes_no_setting() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let created = a.post_form("/v2/Services", ALL_SETTINGS).await.expect(201);
    let path = service_path(&str_of(&created["sid"]));
    let updated = a.post_form(&path, &[]).await.expect(200);
    assert_eq!(
        without(&updated, &["date_updated"]),
        without(&created, &["date_updated"])
    );
}

#[tokio::test]
async fn an_invalid_update_is_refused_and_changes_nothing() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let created = create_service(&a, "Keep me").await;
    let path = service_path(&str_of(&created["sid"]));
    let reply = a
        .post_form(&path, &[("FriendlyName", "Changed"), ("CodeLength", "11")])
        .await;
    let message = reply.error_message(400, 60200);
    assert!(
        message.starts_with("Invalid parameter: CodeLength"),
        "{message}"
    );
    assert_eq!(a.get(&path).await.expect(200), created);
}

#[tokio::test]
async fn deleting_a_service_answers_204_and_it_is_gone() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let service = create_service(&a, "Doomed").await;
    let sid = str_of(&service["sid"]);
    let path = service_path(&sid);

    assert_deleted(&a.delete(&path).await);
    assert_not_found(&a.get(&path).await, &format!("/Services/{sid}"));
    assert_not_found(
        &a.post_form(&path, &[("FriendlyName", "Back")]).await,
        &format!("/Services/{sid}"),
    );
    assert_not_found(&a.delete(&path).await, &format!("/Services/{sid}"));
    let list = a.get("/v2/Services").await.expect(200);
    assert_eq!(list["services"], json!([]));
}

#[tokio::test]
async fn deleting_a_service_deletes_its_rate_limits_and_buckets() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk, bl) = one_of_each(&a).await.first_sids();

    assert_deleted(&a.delete(&service_path(&vs)).await);
    assert_eq!(a.get(&rate_limit_path(&vs, &rk)).await.status, 404);
    assert_eq!(a.get(&bucket_path(&vs, &rk, &bl)).await.status, 404);
    a.get(&rate_limits_path(&vs)).await.expect_error(404, 20404);
    a.get(&buckets_path(&vs, &rk))
        .await
        .expect_error(404, 20404);
    a.get(&bucket_path(&vs, &rk, &bl))
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn an_unknown_service_is_not_found() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let sid = unknown_sid("VA");
    let path = service_path(&sid);
    let expected = format!("/Services/{sid}");
    assert_not_found(&a.get(&path).await, &expected);
    assert_not_found(
        &a.post_form(&path, &[("FriendlyName", "x")]).await,
        &expected,
    );
    assert_not_found(&a.delete(&path).await, &expected);
    // Not even a well-formed SID.
    a.get("/v2/Services/VAnot-a-sid")
        .await
        .expect_error(404, 20404);
    a.get("/v2/Services/RK00000000000000000000000000000000")
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn urls_are_built_from_the_host_the_client_used() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let host = "verify.custom-host.test:4321";
    let reply = a
        .send(
            a.request(Method::POST, "/v2/Services")
                .header("Host", host)
                .form(&[("FriendlyName", "Custom host")]),
        )
        .await;
    let service = reply.expect(201);
    let sid = str_of(&service["sid"]);
    let expected = format!("http://{host}/v2/Services/{sid}");
    assert_eq!(service["url"], expected);
    for (name, link) in service["links"].as_object().expect("links") {
        let link = link.as_str().unwrap_or_default();
        assert!(
            link.starts_with(&format!("{expected}/")),
            "link {name} = {link}"
        );
    }

    let list = a
        .send(
            a.request(Method::GET, "/v2/Services?PageSize=1")
                .header("Host", host),
        )
        .await
        .expect(200);
    assert_eq!(list["services"][0]["url"], expected);
    for key in ["first_page_url", "url"] {
        let url = list["meta"][key].as_str().unwrap_or_default();
        assert!(
            url.starts_with(&format!("http://{host}/v2/Services?")),
            "meta.{key} = {url}"
        );
    }

    // The same service fetched through the ordinary address uses that address.
    let fetched = a.get(&service_path(&sid)).await.expect(200);
    assert_eq!(
        fetched["url"],
        format!("{}/v2/Services/{sid}", server.base_url())
    );
}

#[tokio::test]
async fn a_configured_public_url_is_the_base_of_every_url() {
    let public = "https://verify.public.example";
    let server = TestServer::start(ServerOptions::new().arg("--public-url", public)).await;
    let a = server.a();
    let service = create_service(&a, "Public").await;
    let sid = str_of(&service["sid"]);
    assert_eq!(service["url"], format!("{public}/v2/Services/{sid}"));
    assert_eq!(
        service["links"]["rate_limits"],
        format!("{public}/v2/Services/{sid}/RateLimits")
    );
    let rate_limit = create_rate_limit(&a, &sid, "by_ip").await;
    let rk = str_of(&rate_limit["sid"]);
    assert_eq!(
        rate_limit["url"],
        format!("{public}/v2/Services/{sid}/RateLimits/{rk}")
    );
    assert_eq!(
        rate_limit["links"]["buckets"],
        format!("{public}/v2/Services/{sid}/RateLimits/{rk}/Buckets")
    );
    let bucket = create_bucket(&a, &sid, &rk, 3, 60).await;
    let bl = str_of(&bucket["sid"]);
    assert_eq!(
        bucket["url"],
        format!("{public}/v2/Services/{sid}/RateLimits/{rk}/Buckets/{bl}")
    );

    create_service(&a, "Public two").await;
    // Even when the client sent another Host.
    let list = a
        .send(
            a.request(Method::GET, "/v2/Services?PageSize=1")
                .header("Host", "other-host.test"),
        )
        .await
        .expect(200);
    for key in ["first_page_url", "url", "next_page_url"] {
        let url = list["meta"][key].as_str().unwrap_or_default();
        assert!(
            url.starts_with(&format!("{public}/v2/Services?")),
            "meta.{key} = {url}"
        );
    }
    assert!(
        list["services"][0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(public)),
        "{list}"
    );
}
