//! Verification Attempts (and their summary), the Safe List, Templates, Forms and Messaging
//! Configurations, through HTTP; every answer validated against Twilio's Verify v2 spec.

use serde_json::Value;

use crate::harness::{Client, ServerOptions, TestServer};
use crate::openapi_schema::{assert_valid, verify_response};
use crate::support::*;

/// `+` as a query string carries it.
fn q(number: &str) -> String {
    number.replace('+', "%2B")
}

fn sids(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|r| r["sid"].as_str().unwrap().to_owned())
        .collect()
}

async fn attempts(c: &Client, query: &str) -> Value {
    let list = c.get(&format!("/v2/Attempts?{query}")).await.expect(200);
    assert_valid(
        &verify_response("/v2/Attempts", "get", "200"),
        &list,
        "GET /v2/Attempts",
    );
    list
}

async fn summary(c: &Client, query: &str) -> Value {
    let s = c
        .get(&format!("/v2/Attempts/Summary?{query}"))
        .await
        .expect(200);
    assert_valid(
        &verify_response("/v2/Attempts/Summary", "get", "200"),
        &s,
        "GET /v2/Attempts/Summary",
    );
    s
}

#[tokio::test]
async fn every_code_sent_is_an_attempt_that_converts_when_its_verification_is_approved() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let chain = service_with(&c, &[("ip", &[(2, 60)])]).await;
    let service = chain.service.clone();
    let (one, two) = (phone(1), "+447700900123".to_owned());

    let first = start(&c, &service, &one, Some(r#"{"ip": "a"}"#))
        .await
        .expect(201);
    let again = start(&c, &service, &one, Some(r#"{"ip": "b"}"#))
        .await
        .expect(201);
    let other = start(&c, &service, &two, Some(r#"{"ip": "a"}"#))
        .await
        .expect(201);
    // Refused: the bucket of "a" is full. A refused start sends nothing.
    start(&c, &service, &phone(3), Some(r#"{"ip": "a"}"#))
        .await
        .expect_error(429, 20429);
    assert_eq!(again["sid"], first["sid"]);

    let sent: Vec<String> = again["send_code_attempts"]
        .as_array()
        .unwrap()
        .iter()
        .chain(other["send_code_attempts"].as_array().unwrap())
        .map(|a| a["attempt_sid"].as_str().unwrap().to_owned())
        .collect();
    let list = attempts(&c, "").await;
    assert_eq!(
        sids(&list, "attempts"),
        sent,
        "one attempt per code sent, in order"
    );
    assert_eq!(list["meta"]["key"], "attempts");
    for a in list["attempts"].as_array().unwrap() {
        assert_eq!(a["conversion_status"], "unconverted");
        assert_eq!(a["channel"], "sms");
        assert_eq!(a["service_sid"], service.as_str());
        assert_eq!(a["channel_data"]["status"], "unconfirmed");
        assert_eq!(a["channel_data"]["code_length"], 6);
    }
    let fetched = c
        .get(&format!("/v2/Attempts/{}", sent[2]))
        .await
        .expect(200);
    assert_valid(
        &verify_response("/v2/Attempts/{Sid}", "get", "200"),
        &fetched,
        "GET /v2/Attempts/{Sid}",
    );
    assert_eq!(fetched["verification_sid"], other["sid"]);
    assert_eq!(fetched["channel_data"]["to"], two.as_str());
    assert_eq!(fetched["channel_data"]["country"], "GB");
    assert_eq!(
        fetched["url"].as_str().unwrap(),
        c.url(&format!("/v2/Attempts/{}", sent[2]))
    );

    // Approve the first verification: both of its attempts convert, and outlive it.
    let code = codes_sent_to(&c, &one).await.pop().unwrap();
    check(&c, &service, &one, &code).await.expect(200);
    c.get(&format!(
        "/v2/Services/{service}/Verifications/{}",
        first["sid"].as_str().unwrap()
    ))
    .await
    .expect_error(404, 20404);
    let converted = attempts(&c, "Status=converted").await;
    assert_eq!(sids(&converted, "attempts"), sent[..2]);
    for a in converted["attempts"].as_array().unwrap() {
        assert_eq!(a["conversion_status"], "converted");
        assert_eq!(a["channel_data"]["status"], "confirmed");
    }
    assert_eq!(
        sids(&attempts(&c, "Status=unconverted").await, "attempts"),
        sent[2..]
    );

    // Filters.
    let first_sid = first["sid"].as_str().unwrap();
    assert_eq!(
        sids(
            &attempts(&c, &format!("VerificationSid={first_sid}")).await,
            "attempts"
        ),
        sent[..2]
    );
    assert_eq!(
        sids(
            &attempts(&c, &format!("ChannelData.To={}", q(&two))).await,
            "attempts"
        ),
        sent[2..]
    );
    assert_eq!(
        sids(&attempts(&c, "Country=GB").await, "attempts"),
        sent[2..]
    );
    assert_eq!(
        sids(&attempts(&c, "Country=us").await, "attempts"),
        sent[..2]
    );
    assert!(sids(&attempts(&c, "Country=FR").await, "attempts").is_empty());
    assert_eq!(sids(&attempts(&c, "Channel=sms").await, "attempts"), sent);
    assert!(sids(&attempts(&c, "Channel=call").await, "attempts").is_empty());
    assert_eq!(
        sids(
            &attempts(&c, &format!("VerifyServiceSid={service}")).await,
            "attempts"
        ),
        sent
    );
    let now = fetched["date_created"].as_str().unwrap().to_owned();
    assert_eq!(
        sids(
            &attempts(&c, &format!("DateCreatedBefore={now}")).await,
            "attempts"
        ),
        sent
    );
    assert!(
        sids(
            &attempts(&c, "DateCreatedAfter=2099-01-01T00:00:00Z").await,
            "attempts"
        )
        .is_empty()
    );

    // Paging one at a time, by the URLs given.
    let mut walked = Vec::new();
    let mut page = attempts(&c, "PageSize=1").await;
    loop {
        walked.extend(sids(&page, "attempts"));
        match page["meta"]["next_page_url"].as_str() {
            Some(next) => page = c.get(next).await.expect(200),
            None => break,
        }
    }
    assert_eq!(walked, sent);
    let filtered = attempts(&c, "PageSize=1&Country=US").await;
    let next = filtered["meta"]["next_page_url"].as_str().unwrap();
    assert!(next.contains("Country=US"), "{next}");
    assert_eq!(sids(&c.get(next).await.expect(200), "attempts"), sent[1..2]);

    // The summary.
    let s = summary(&c, "").await;
    assert_eq!(s["total_attempts"], 3);
    assert_eq!(s["total_converted"], 2);
    assert_eq!(s["total_unconverted"], 1);
    assert_eq!(s["conversion_rate_percentage"], "66.666666667");
    assert_eq!(summary(&c, "Country=GB").await["total_attempts"], 1);
    assert_eq!(
        summary(&c, "DestinationPrefix=%2B44").await["total_attempts"],
        1
    );
    assert_eq!(
        summary(&c, "DestinationPrefix=1555").await["total_converted"],
        2
    );
    assert_eq!(
        summary(&c, "VerifyServiceSid=VA00000000000000000000000000000000").await["conversion_rate_percentage"],
        "0"
    );

    // Another account sees none of them.
    let b = server.b();
    assert!(sids(&attempts(&b, "").await, "attempts").is_empty());
    b.get(&format!("/v2/Attempts/{}", sent[0]))
        .await
        .expect_error(404, 20404);
    assert_eq!(summary(&b, "").await["total_attempts"], 0);

    // Bad filters get Twilio's error body.
    for bad in [
        "Channel=fax",
        "VerifyServiceSid=VA1",
        "VerificationSid=bogus",
        "Status=maybe",
        "Country=USA",
        "DateCreatedAfter=yesterday",
        "PageSize=0",
    ] {
        c.get(&format!("/v2/Attempts?{bad}"))
            .await
            .expect_error(400, 60200);
    }
    c.get("/v2/Attempts?PageSize=1001")
        .await
        .expect_error(400, 20007);
    c.get("/v2/Attempts/VLnothex")
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn the_safe_list_keeps_numbers_per_account_and_changes_no_decision() {
    let server = TestServer::start(ServerOptions::new()).await;
    let (a, b) = (server.a(), server.b());
    let number = phone(7);
    let created = a
        .post_form("/v2/SafeList/Numbers", &[("PhoneNumber", &number)])
        .await
        .expect(201);
    assert_valid(
        &verify_response("/v2/SafeList/Numbers", "post", "201"),
        &created,
        "POST /v2/SafeList/Numbers",
    );
    assert!(created["sid"].as_str().unwrap().starts_with("GN"));
    assert_eq!(created["phone_number"], number.as_str());
    // Adding it again keeps the entry.
    let again = a
        .post_form("/v2/SafeList/Numbers", &[("PhoneNumber", &number)])
        .await
        .expect(201);
    assert_eq!(again["sid"], created["sid"]);
    let path = format!("/v2/SafeList/Numbers/{}", q(&number));
    let fetched = a.get(&path).await.expect(200);
    assert_valid(
        &verify_response("/v2/SafeList/Numbers/{PhoneNumber}", "get", "200"),
        &fetched,
        "GET /v2/SafeList/Numbers/{PhoneNumber}",
    );
    assert_eq!(fetched["sid"], created["sid"]);
    b.get(&path).await.expect_error(404, 20404);
    b.delete(&path).await.expect_error(404, 20404);

    // Still rate limited and still under the send-attempts rule.
    let chain = service_with(&a, &[("ip", &[(1, 60)])]).await;
    start(&a, &chain.service, &number, Some(r#"{"ip": "x"}"#))
        .await
        .expect(201);
    start(&a, &chain.service, &number, Some(r#"{"ip": "x"}"#))
        .await
        .expect_error(429, 20429);

    assert_eq!(a.delete(&path).await.status, 204);
    a.get(&path).await.expect_error(404, 20404);
    a.delete(&path).await.expect_error(404, 20404);

    a.post_form("/v2/SafeList/Numbers", &[("PhoneNumber", "12345")])
        .await
        .expect_error(400, 60200);
    a.post_form("/v2/SafeList/Numbers", &[])
        .await
        .expect_error(400, 20001);
}

#[tokio::test]
async fn templates_are_a_fixed_catalogue_and_a_start_must_name_one() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let list = c.get("/v2/Templates").await.expect(200);
    assert_valid(
        &verify_response("/v2/Templates", "get", "200"),
        &list,
        "GET /v2/Templates",
    );
    let templates = list["templates"].as_array().unwrap();
    assert!(!templates.is_empty());
    let default = &templates[0];
    assert_eq!(default["friendly_name"], "Verify Default");
    assert_eq!(default["account_sid"], crate::harness::ACCOUNT_A);
    assert_eq!(
        default["translations"]["en"]["is_default_translation"],
        true
    );
    let sms_only = templates
        .iter()
        .find(|t| t["channels"] == serde_json::json!(["sms"]))
        .expect("an SMS-only template");
    let named = c
        .get("/v2/Templates?FriendlyName=Verify%20Default")
        .await
        .expect(200);
    assert_eq!(
        sids(&named, "templates"),
        [default["sid"].as_str().unwrap()]
    );
    let page = c.get("/v2/Templates?PageSize=1").await.expect(200);
    assert_eq!(page["templates"].as_array().unwrap().len(), 1);
    assert!(page["meta"]["next_page_url"].is_string());

    let chain = service_with(&c, &[]).await;
    let service = chain.service;
    let path = format!("/v2/Services/{service}/Verifications");
    let default_sid = default["sid"].as_str().unwrap();
    c.post_form(
        &path,
        &[
            ("To", &phone(1)),
            ("Channel", "call"),
            ("TemplateSid", default_sid),
        ],
    )
    .await
    .expect(201);
    c.post_form(
        &path,
        &[
            ("To", &phone(2)),
            ("Channel", "sms"),
            ("TemplateSid", "HJffffffffffffffffffffffffffffffff"),
        ],
    )
    .await
    .expect_error(400, 60200);
    c.post_form(
        &path,
        &[
            ("To", &phone(3)),
            ("Channel", "call"),
            ("TemplateSid", sms_only["sid"].as_str().unwrap()),
        ],
    )
    .await
    .expect_error(400, 60440);
    // Nothing was sent for the refused starts.
    assert!(codes_sent_to(&c, &phone(2)).await.is_empty());
    assert!(codes_sent_to(&c, &phone(3)).await.is_empty());
}

#[tokio::test]
async fn the_push_form_is_served() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let form = c.get("/v2/Forms/form-push").await.expect(200);
    assert_valid(
        &verify_response("/v2/Forms/{FormType}", "get", "200"),
        &form,
        "GET /v2/Forms/{FormType}",
    );
    assert_eq!(form["form_type"], "form-push");
    for f in ["create_factor", "verify_factor", "create_challenge"] {
        assert!(form["forms"][f].is_object(), "{f} in {form}");
    }
    c.get("/v2/Forms/form-sms").await.expect_error(404, 20404);
    server
        .anon()
        .get("/v2/Forms/form-push")
        .await
        .expect_error(401, 20003);
}

#[tokio::test]
async fn messaging_configurations_are_kept_per_service_and_country() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let chain = service_with(&c, &[]).await;
    let service = chain.service;
    let service_json = c.get(&format!("/v2/Services/{service}")).await.expect(200);
    let list_url = service_json["links"]["messaging_configurations"]
        .as_str()
        .unwrap()
        .to_owned();
    let mg = |n: u8| format!("MG{:032x}", n);
    let base = format!("/v2/Services/{service}/MessagingConfigurations");
    let created = c
        .post_form(&base, &[("Country", "us"), ("MessagingServiceSid", &mg(1))])
        .await
        .expect(201);
    assert_valid(
        &verify_response(
            "/v2/Services/{ServiceSid}/MessagingConfigurations",
            "post",
            "201",
        ),
        &created,
        "POST MessagingConfigurations",
    );
    assert_eq!(created["country"], "US");
    assert_eq!(created["service_sid"], service.as_str());
    c.post_form(
        &base,
        &[("Country", "all"), ("MessagingServiceSid", &mg(2))],
    )
    .await
    .expect(201);
    c.post_form(&base, &[("Country", "US"), ("MessagingServiceSid", &mg(3))])
        .await
        .expect_error(400, 60200);

    let list = c.get(&list_url).await.expect(200);
    assert_valid(
        &verify_response(
            "/v2/Services/{ServiceSid}/MessagingConfigurations",
            "get",
            "200",
        ),
        &list,
        "GET MessagingConfigurations",
    );
    let countries: Vec<&str> = list["messaging_configurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["country"].as_str().unwrap())
        .collect();
    assert_eq!(countries, ["US", "all"]);
    let first = c.get(&format!("{list_url}?PageSize=1")).await.expect(200);
    let next = first["meta"]["next_page_url"].as_str().unwrap();
    let second = c.get(next).await.expect(200);
    assert_eq!(second["messaging_configurations"][0]["country"], "all");
    assert!(second["meta"]["next_page_url"].is_null());

    let one = format!("{base}/US");
    let fetched = c.get(&one).await.expect(200);
    assert_valid(
        &verify_response(
            "/v2/Services/{ServiceSid}/MessagingConfigurations/{Country}",
            "get",
            "200",
        ),
        &fetched,
        "GET MessagingConfiguration",
    );
    assert_eq!(fetched["messaging_service_sid"], mg(1).as_str());
    let updated = c
        .post_form(&one, &[("MessagingServiceSid", &mg(4))])
        .await
        .expect(200);
    assert_eq!(updated["messaging_service_sid"], mg(4).as_str());
    assert_eq!(
        c.get(&one).await.expect(200)["messaging_service_sid"],
        mg(4).as_str()
    );

    server.b().get(&one).await.expect_error(404, 20404);
    c.post_form(&one, &[("MessagingServiceSid", "MGshort")])
        .await
        .expect_error(400, 60200);
    c.post_form(&base, &[("MessagingServiceSid", &mg(5))])
        .await
        .expect_error(400, 20001);
    c.post_form(
        &base,
        &[("Country", "Utopia"), ("MessagingServiceSid", &mg(5))],
    )
    .await
    .expect_error(400, 60200);
    c.post_form(&format!("{base}/FR"), &[("MessagingServiceSid", &mg(5))])
        .await
        .expect_error(404, 20404);

    assert_eq!(c.delete(&one).await.status, 204);
    c.get(&one).await.expect_error(404, 20404);
    c.delete(&one).await.expect_error(404, 20404);

    // They go with their service.
    assert_eq!(
        c.delete(&format!("/v2/Services/{service}")).await.status,
        204
    );
    c.get(&format!("{base}/all")).await.expect_error(404, 20404);
}

#[tokio::test]
async fn webhooks_are_kept_per_service_with_their_event_types() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let service = service_with(&c, &[]).await.service;
    let base = format!("/v2/Services/{service}/Webhooks");
    let created = c
        .post_raw(
            &base,
            "FriendlyName=push+events&EventTypes=factor.created&EventTypes=challenge.approved\
             &WebhookUrl=https%3A%2F%2Fexample.com%2Fhook",
        )
        .await
        .expect(201);
    assert_valid(
        &verify_response("/v2/Services/{ServiceSid}/Webhooks", "post", "201"),
        &created,
        "POST Webhooks",
    );
    assert!(created["sid"].as_str().unwrap().starts_with("YW"));
    assert_eq!(
        created["event_types"],
        serde_json::json!(["factor.created", "challenge.approved"])
    );
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["version"], "v2");
    assert_eq!(created["webhook_method"], "POST");
    let one = format!("{base}/{}", created["sid"].as_str().unwrap());
    let updated = c
        .post_raw(&one, "EventTypes=*&Status=disabled&FriendlyName=all")
        .await
        .expect(200);
    assert_eq!(updated["event_types"], serde_json::json!(["*"]));
    assert_eq!(updated["status"], "disabled");
    assert_eq!(updated["webhook_url"], "https://example.com/hook");
    let fetched = c.get(&one).await.expect(200);
    assert_valid(
        &verify_response("/v2/Services/{ServiceSid}/Webhooks/{Sid}", "get", "200"),
        &fetched,
        "GET Webhook",
    );
    assert_eq!(fetched["friendly_name"], "all");
    let list = c.get(&base).await.expect(200);
    assert_valid(
        &verify_response("/v2/Services/{ServiceSid}/Webhooks", "get", "200"),
        &list,
        "GET Webhooks",
    );
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);

    server.b().get(&one).await.expect_error(404, 20404);
    for bad in [
        "FriendlyName=x&EventTypes=factor.exploded&WebhookUrl=https%3A%2F%2Fexample.com",
        "FriendlyName=x&EventTypes=*&WebhookUrl=ftp%3A%2F%2Fexample.com",
        "FriendlyName=x&EventTypes=*&WebhookUrl=https%3A%2F%2Fexample.com&Status=on",
        "FriendlyName=x&EventTypes=*&WebhookUrl=https%3A%2F%2Fexample.com&Version=v3",
    ] {
        c.post_raw(&base, bad).await.expect_error(400, 60200);
    }
    for missing in [
        "EventTypes=*&WebhookUrl=https%3A%2F%2Fexample.com",
        "FriendlyName=x&WebhookUrl=https%3A%2F%2Fexample.com",
        "FriendlyName=x&EventTypes=*",
    ] {
        c.post_raw(&base, missing).await.expect_error(400, 20001);
    }
    assert_eq!(c.delete(&one).await.status, 204);
    c.get(&one).await.expect_error(404, 20404);
    c.post_raw(&one, "Status=enabled")
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn access_tokens_are_signed_jwts_kept_for_their_service() {
    use base64::Engine as _;
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let service = service_with(&c, &[]).await.service;
    let base = format!("/v2/Services/{service}/AccessTokens");
    let created = c
        .post_form(
            &base,
            &[
                ("Identity", "ff483d1ff591898a9942916050d2ca3f"),
                ("FactorType", "push"),
                ("FactorFriendlyName", "John's phone"),
                ("Ttl", "300"),
            ],
        )
        .await
        .expect(201);
    assert_valid(
        &verify_response("/v2/Services/{ServiceSid}/AccessTokens", "post", "201"),
        &created,
        "POST AccessTokens",
    );
    assert!(created["sid"].as_str().unwrap().starts_with("YK"));
    assert_eq!(created["ttl"], 300);
    assert_eq!(
        created["entity_identity"],
        "ff483d1ff591898a9942916050d2ca3f"
    );
    let token = created["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["jti"], created["sid"]);
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        300
    );
    let one = format!("{base}/{}", created["sid"].as_str().unwrap());
    let fetched = c.get(&one).await.expect(200);
    assert_valid(
        &verify_response("/v2/Services/{ServiceSid}/AccessTokens/{Sid}", "get", "200"),
        &fetched,
        "GET AccessToken",
    );
    assert_eq!(fetched["token"], created["token"]);
    server.b().get(&one).await.expect_error(404, 20404);

    let defaulted = c
        .post_form(&base, &[("Identity", "someone"), ("FactorType", "push")])
        .await
        .expect(201);
    assert_eq!(defaulted["ttl"], 60);
    c.post_form(&base, &[("Identity", "x"), ("FactorType", "totp")])
        .await
        .expect_error(400, 60200);
    c.post_form(
        &base,
        &[("Identity", "x"), ("FactorType", "push"), ("Ttl", "301")],
    )
    .await
    .expect_error(400, 60200);
    c.post_form(&base, &[("FactorType", "push")])
        .await
        .expect_error(400, 20001);
}

#[tokio::test]
async fn deleting_a_service_takes_its_verifications_and_their_attempts_along() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let doomed = service_with(&c, &[("ip", &[(5, 60)])]).await.service;
    let kept = service_with(&c, &[("ip", &[(5, 60)])]).await.service;
    let gone = start(&c, &doomed, &phone(1), Some(r#"{"ip": "a"}"#))
        .await
        .expect(201);
    let stays = start(&c, &kept, &phone(1), Some(r#"{"ip": "a"}"#))
        .await
        .expect(201);
    let attempt_of = |v: &Value| {
        v["send_code_attempts"][0]["attempt_sid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        sids(&attempts(&c, "").await, "attempts"),
        [attempt_of(&gone), attempt_of(&stays)]
    );

    c.delete(&format!("/v2/Services/{doomed}"))
        .await
        .expect(204);
    assert_eq!(
        sids(&attempts(&c, "").await, "attempts"),
        [attempt_of(&stays)]
    );
    c.get(&format!("/v2/Attempts/{}", attempt_of(&gone)))
        .await
        .expect_error(404, 20404);
    // The other service's verification is untouched: its code still approves it.
    let code = codes_sent_to(&c, &phone(1)).await.pop().unwrap();
    check(&c, &kept, &phone(1), &code).await.expect(200);
}
