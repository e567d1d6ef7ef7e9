//! Authentication and tenancy, table-driven over every route: bad credentials are 401/20003 and
//! change nothing; account B never sees anything of account A (404/20404 or empty lists), and an
//! API key acts only for its own account.

use reqwest::Method;

use crate::harness::*;
use crate::util::*;

const B_KEY_SID: &str = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const B_KEY_SECRET: &str = "secret-of-the-key-of-account-b";

fn options() -> ServerOptions {
    ServerOptions::new().env(
        "VERILIMIT_API_KEYS",
        format!(
            "{API_KEY_SID}:{API_KEY_SECRET}:{ACCOUNT_A},{DEFAULT_API_KEY_SID}:{DEFAULT_API_KEY_SECRET},\
             {B_KEY_SID}:{B_KEY_SECRET}:{ACCOUNT_B}"
        ),
    )
}

/// Account A's world: a service with a rate limit, a bucket, a verification to a phone and one to
/// an email address, one refused start (an event), and the codes.
struct World {
    service: String,
    rate_limit: String,
    bucket: String,
    verification: String,
    email_verification: String,
    phone: String,
    email: String,
    code: String,
}

async fn world_of_a(server: &TestServer) -> World {
    let a = server.a();
    let Chain {
        service,
        rate_limits: rls,
        ..
    } = create_chain(&a, &[("FriendlyName", "tenant-a")], &[("ip", &[(1, 3600)])]).await;
    let phone = "+15557770001".to_owned();
    let email = "tenant.a@example.org".to_owned();
    let v = a
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[
                ("To", &phone),
                ("Channel", "sms"),
                ("RateLimits", r#"{"ip": "10.1.1.1"}"#),
            ],
        )
        .await
        .expect(201);
    let verification = v["sid"].as_str().unwrap().to_owned();
    a.post_form(
        &format!("/v2/Services/{service}/Verifications"),
        &[
            ("To", "+15557770002"),
            ("Channel", "sms"),
            ("RateLimits", r#"{"ip": "10.1.1.1"}"#),
        ],
    )
    .await
    .expect_error(429, 20429);
    let e = a
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[("To", &email), ("Channel", "email")],
        )
        .await
        .expect(201);
    let code = code_of(&a, &verification).await;
    World {
        service,
        rate_limit: rls[0].sid.clone(),
        bucket: rls[0].buckets[0].sid.clone(),
        verification,
        email_verification: e["sid"].as_str().unwrap().to_owned(),
        phone,
        email,
        code,
    }
}

/// Every route, aimed at A's resources, with a harmless valid body.
/// (method, path, form)
type Route = (Method, String, Vec<(&'static str, String)>);

fn routes(w: &World) -> Vec<Route> {
    let (s, rk, bl, ve) = (&w.service, &w.rate_limit, &w.bucket, &w.verification);
    let p = |x: &str| x.to_owned();
    vec![
        (Method::GET, p("/v2/Services"), vec![]),
        (
            Method::POST,
            p("/v2/Services"),
            vec![("FriendlyName", p("intruder"))],
        ),
        (Method::GET, format!("/v2/Services/{s}"), vec![]),
        (
            Method::POST,
            format!("/v2/Services/{s}"),
            vec![("FriendlyName", p("taken over"))],
        ),
        (Method::DELETE, format!("/v2/Services/{s}"), vec![]),
        (Method::GET, format!("/v2/Services/{s}/RateLimits"), vec![]),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits"),
            vec![("UniqueName", p("intruder"))],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{rk}"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{rk}"),
            vec![("Description", p("taken over"))],
        ),
        (
            Method::DELETE,
            format!("/v2/Services/{s}/RateLimits/{rk}"),
            vec![],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"),
            vec![("Max", p("9")), ("Interval", p("9"))],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
            vec![("Max", p("1000"))],
        ),
        (
            Method::DELETE,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/Verifications"),
            vec![("To", w.phone.clone()), ("Channel", p("sms"))],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/Verifications/{ve}"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/Verifications/{ve}"),
            vec![("Status", p("approved"))],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/VerificationCheck"),
            vec![("To", w.phone.clone()), ("Code", w.code.clone())],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/VerificationCheck"),
            vec![("VerificationSid", ve.clone()), ("Code", w.code.clone())],
        ),
        (Method::GET, p("/emulator/v1/Outbox"), vec![]),
        (Method::GET, p("/emulator/v1/Clock"), vec![]),
        (
            Method::POST,
            p("/emulator/v1/Clock"),
            vec![("AdvanceSeconds", p("100000"))],
        ),
        (Method::POST, p("/emulator/v1/Reset"), vec![]),
        (
            Method::GET,
            format!("/emulator/v1/Services/{s}/Usage"),
            vec![],
        ),
        (Method::GET, p("/emulator/v1/Export"), vec![]),
        (Method::GET, p("/emulator/v1/Events"), vec![]),
    ]
}

fn request(
    c: &Client,
    method: &Method,
    path: &str,
    body: &[(&'static str, String)],
) -> reqwest::RequestBuilder {
    let rb = c.request(method.clone(), path);
    if body.is_empty() { rb } else { rb.form(body) }
}

/// A's world is exactly as it was: nothing done by an intruder had any effect.
async fn assert_world_intact(server: &TestServer, w: &World, why: &str) {
    let a = server.a();
    let (s, rk, bl, ve) = (&w.service, &w.rate_limit, &w.bucket, &w.verification);
    let svc = get(&a, &format!("/v2/Services/{s}")).await.expect(200);
    assert_eq!(
        svc["friendly_name"], "tenant-a",
        "{why}: the service changed"
    );
    assert_eq!(
        get(&a, "/v2/Services").await.expect(200)["services"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{why}: services added or removed"
    );
    let rl = get(&a, &format!("/v2/Services/{s}/RateLimits/{rk}"))
        .await
        .expect(200);
    assert!(
        rl["description"].is_null() || rl["description"] == "",
        "{why}: the rate limit changed: {rl}"
    );
    assert_eq!(
        get(&a, &format!("/v2/Services/{s}/RateLimits"))
            .await
            .expect(200)["rate_limits"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{why}"
    );
    let b = get(
        &a,
        &format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
    )
    .await
    .expect(200);
    assert_eq!(
        (b["max"].as_u64(), b["interval"].as_u64()),
        (Some(1), Some(3600)),
        "{why}: the bucket changed"
    );
    assert_eq!(
        get(&a, &format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"))
            .await
            .expect(200)["buckets"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{why}"
    );
    let v = get(&a, &format!("/v2/Services/{s}/Verifications/{ve}"))
        .await
        .expect(200);
    assert_eq!(v["status"], "pending", "{why}: the verification changed");
    assert_eq!(
        v["send_code_attempts"].as_array().map(|a| a.len()),
        Some(1),
        "{why}: a code was re-sent: {v}"
    );
    let outbox = outbox_all(&a, None).await;
    assert_eq!(outbox.len(), 2, "{why}: the outbox changed: {outbox:?}");
    let clock = get(&a, "/emulator/v1/Clock").await.expect(200);
    assert!(
        clock["offset_ms"].as_i64().unwrap_or(0) < 60_000,
        "{why}: the clock moved: {clock}"
    );
    let usage = get(&a, &format!("/emulator/v1/Services/{s}/Usage"))
        .await
        .expect(200);
    assert_eq!(
        usage["usage"][0]["count"], 1,
        "{why}: usage changed: {usage}"
    );
}

#[tokio::test]
async fn every_route_refuses_missing_malformed_and_wrong_credentials_with_401() {
    let server = TestServer::start(options()).await;
    let w = world_of_a(&server).await;
    let anon = server.anon();
    let bad_headers: Vec<(String, String)> = vec![
        ("Basic !!!".into(), "Basic !!!".into()),
        ("Bearer x".into(), "Bearer x".into()),
        ("Basic without a colon".into(), basic_value(ACCOUNT_A)),
        ("empty Basic".into(), "Basic ".into()),
        (
            "Basic with an empty password".into(),
            basic_value(&format!("{ACCOUNT_A}:")),
        ),
        (
            "wrong token".into(),
            basic_value(&format!("{ACCOUNT_A}:wrong")),
        ),
        (
            "token with a suffix".into(),
            basic_value(&format!("{ACCOUNT_A}:{TOKEN_A}x")),
        ),
        (
            "token prefix".into(),
            basic_value(&format!("{ACCOUNT_A}:{}", &TOKEN_A[..TOKEN_A.len() - 1])),
        ),
        (
            "B's token for A".into(),
            basic_value(&format!("{ACCOUNT_A}:{TOKEN_B}")),
        ),
        (
            "unknown account".into(),
            basic_value(&format!("AC99999999999999999999999999999999:{TOKEN_A}")),
        ),
        (
            "account SID with the API key secret".into(),
            basic_value(&format!("{ACCOUNT_A}:{API_KEY_SECRET}")),
        ),
        (
            "API key SID with the auth token".into(),
            basic_value(&format!("{API_KEY_SID}:{TOKEN_A}")),
        ),
        (
            "API key with B's key secret".into(),
            basic_value(&format!("{API_KEY_SID}:{B_KEY_SECRET}")),
        ),
        (
            "API key SID with a wrong secret".into(),
            basic_value(&format!("{API_KEY_SID}:nope")),
        ),
        ("empty user".into(), basic_value(&format!(":{TOKEN_A}"))),
        (
            "credentials in the wrong scheme".into(),
            format!(
                "Bearer {}",
                basic_value(&format!("{ACCOUNT_A}:{TOKEN_A}")).trim_start_matches("Basic ")
            ),
        ),
        (
            "NUL-padded token".into(),
            basic_value(&format!("{ACCOUNT_A}:{TOKEN_A}\u{0}")),
        ),
    ];
    let mut fails = Failures::default();
    for (method, path, body) in routes(&w) {
        let r = send_bounded(request(&anon, &method, &path, &body)).await;
        fails.check(
            &format!("no credentials: {method} {path}"),
            check_error_in(&r, &[(401, 20003)]),
        );
        for (what, header) in &bad_headers {
            let r = send_bounded(with_authorization(
                request(&anon, &method, &path, &body),
                header,
            ))
            .await;
            fails.check(
                &format!("{what}: {method} {path}"),
                check_error_in(&r, &[(401, 20003)]),
            );
        }
    }
    fails.assert_none("bad credentials");
    assert_world_intact(&server, &w, "after requests with bad credentials").await;
}

#[tokio::test]
async fn account_b_and_its_api_key_never_see_or_touch_account_a() {
    let server = TestServer::start(options()).await;
    let w = world_of_a(&server).await;
    let b = server.b();
    let b_key = server.basic(B_KEY_SID, B_KEY_SECRET);
    // B has a world of its own, with a verification to the very same phone number.
    let Chain {
        service: b_service, ..
    } = create_chain(&b, &[("FriendlyName", "tenant-b")], &[("ip", &[(1, 3600)])]).await;
    let bv = b
        .post_form(
            &format!("/v2/Services/{b_service}/Verifications"),
            &[
                ("To", &w.phone),
                ("Channel", "sms"),
                ("RateLimits", r#"{"ip": "10.1.1.1"}"#),
            ],
        )
        .await
        .expect(201);
    assert_ne!(
        bv["sid"],
        w.verification.as_str(),
        "B's start to the same To returned A's verification"
    );
    assert_eq!(
        bv["send_code_attempts"].as_array().map(|a| a.len()),
        Some(1),
        "B's start re-sent A's code: {bv}"
    );

    // Everything that identifies A's world.
    let secrets = [
        w.service.as_str(),
        w.rate_limit.as_str(),
        w.bucket.as_str(),
        w.verification.as_str(),
        w.email_verification.as_str(),
        w.email.as_str(),
        "tenant-a",
        "+15557770002",
    ];
    let mut fails = Failures::default();
    for (who, c) in [("account B", &b), ("B's API key", &b_key)] {
        for (method, path, body) in routes(&w) {
            if path == "/emulator/v1/Reset"
                || (method == Method::POST
                    && matches!(path.as_str(), "/emulator/v1/Clock" | "/v2/Services"))
            {
                continue; // B's own state, not A's: checked below.
            }
            let r = send_bounded(request(c, &method, &path, &body)).await;
            let what = format!("{who}: {method} {path}");
            let own_list = matches!(
                path.as_str(),
                "/v2/Services"
                    | "/emulator/v1/Outbox"
                    | "/emulator/v1/Clock"
                    | "/emulator/v1/Export"
                    | "/emulator/v1/Events"
            );
            if own_list {
                // B's own collection: allowed, but nothing of A's in it.
                if !(200..300).contains(&r.status) {
                    fails.fail(format!("{what}: expected B's own answer: {}", r.context()));
                }
            } else {
                fails.check(&what, check_error_in(&r, &[(404, 20404)]));
            }
            // The answer may echo what B itself sent (a 404 names the path); nothing else of A's.
            let sent = format!("{path} {body:?}");
            for s in secrets.iter().filter(|s| !sent.contains(**s)) {
                if r.body.contains(s) {
                    fails.fail(format!(
                        "{what}: the answer reveals {s:?} of account A: {}",
                        shorten(&r.body, 200)
                    ));
                }
            }
            if r.body.contains(&w.code) && own_list {
                // B's own code could collide with A's by chance (1 in a million); A's code paired
                // with A's verification or service would not.
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                if v["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["service_sid"] == w.service.as_str()))
                {
                    fails.fail(format!("{what}: B sees A's code"));
                }
            }
        }
        // Filters naming A's things find nothing.
        for q in [
            format!("/emulator/v1/Outbox?To={}", enc(&w.email)),
            format!("/emulator/v1/Outbox?ServiceSid={}", w.service),
            format!("/emulator/v1/Outbox?VerificationSid={}", w.verification),
            format!("/emulator/v1/Events?ServiceSid={}", w.service),
        ] {
            let r = get(c, &q).await;
            if r.status == 200 {
                let v = r.json();
                let key = if q.contains("Events") {
                    "events"
                } else {
                    "messages"
                };
                if v[key].as_array().is_none_or(|a| !a.is_empty()) {
                    fails.fail(format!(
                        "{who}: {q} is not empty: {}",
                        shorten(&r.body, 200)
                    ));
                }
            } else {
                fails.check(&format!("{who}: {q}"), check_4xx(&r));
            }
        }
        // By To: B has no verification to A's email address, and A's code does not approve B's.
        let r = post_raw(
            c,
            &format!("/v2/Services/{b_service}/VerificationCheck"),
            format!("To={}&Code={}", enc(&w.email), w.code),
        )
        .await;
        fails.check(
            &format!("{who}: check of A's email in B's service"),
            check_error_in(&r, &[(404, 20404)]),
        );
        let r = post_raw(
            c,
            &format!("/v2/Services/{b_service}/VerificationCheck"),
            format!("VerificationSid={}&Code={}", w.verification, w.code),
        )
        .await;
        fails.check(
            &format!("{who}: check of A's verification sid in B's service"),
            check_error_in(&r, &[(404, 20404), (400, 60200)]),
        );
        let r = get(
            c,
            &format!("/v2/Services/{b_service}/Verifications/{}", w.verification),
        )
        .await;
        fails.check(
            &format!("{who}: A's verification under B's service"),
            check_error_in(&r, &[(404, 20404)]),
        );
    }
    // B's key is B: it sees B's service.
    let listed = get(&b_key, "/v2/Services").await.expect(200);
    if listed["services"]
        .as_array()
        .is_none_or(|a| a.len() != 1 || a[0]["sid"] != b_service.as_str())
    {
        fails.fail(format!("B's API key does not act for B: {listed}"));
    }
    // A's keys are A: they see A's service and not B's.
    for (who, c) in [
        ("A's API key", server.api_key()),
        ("the default API key", server.default_api_key()),
    ] {
        let r = get(&c, &format!("/v2/Services/{}", w.service)).await;
        fails.check(&format!("{who} on A's service"), check_status(&r, 200));
        let r = get(&c, &format!("/v2/Services/{b_service}")).await;
        fails.check(
            &format!("{who} on B's service"),
            check_error_in(&r, &[(404, 20404)]),
        );
        let r = get(&c, &format!("/emulator/v1/Services/{b_service}/Usage")).await;
        fails.check(
            &format!("{who} on B's usage"),
            check_error_in(&r, &[(404, 20404)]),
        );
    }
    // B's clock, reset and rate limits are B's alone.
    b.post_form("/emulator/v1/Clock", &[("AdvanceSeconds", "100000")])
        .await
        .expect(200);
    b_key
        .post_form("/emulator/v1/Reset", &[("Scope", "counters")])
        .await
        .expect(204);
    b.post_form("/emulator/v1/Reset", &[]).await.expect(204);
    fails.assert_none("tenancy");
    assert_world_intact(&server, &w, "after account B's requests").await;
    // And A's own check still works with A's code.
    let ok = server
        .a()
        .post_form(
            &format!("/v2/Services/{}/VerificationCheck", w.service),
            &[("To", &w.phone), ("Code", &w.code)],
        )
        .await;
    let v = ok.json();
    assert!(
        matches!(ok.status, 200 | 201) && v["status"] == "approved",
        "A's own check: {}",
        ok.body
    );
}

#[tokio::test]
async fn the_control_plane_answers_for_the_right_account() {
    // Export and Events exist, and show A its own things.
    let server = TestServer::start(options()).await;
    let w = world_of_a(&server).await;
    let a = server.a();
    let export = get(&a, "/emulator/v1/Export").await;
    assert_eq!(
        export.status, 200,
        "Export for its own account: {}",
        export.body
    );
    assert!(
        export.body.contains(&w.service),
        "A's export lacks A's service: {}",
        export.body
    );
    let events = get(&a, "/emulator/v1/Events").await;
    assert_eq!(
        events.status, 200,
        "Events for its own account: {}",
        events.body
    );
    let v = events.json();
    let list = v["events"].as_array().expect("events array");
    assert!(
        list.iter()
            .any(|e| e["verification_sid"] == w.verification.as_str() && e["type"] == "started"),
        "{v}"
    );
    assert!(
        list.iter()
            .any(|e| e["type"] == "refused" && e["error_code"] == 20429 && e["rate_limit"] == "ip"),
        "{v}"
    );
    // The same through A's API key.
    let by_key = get(&server.api_key(), "/emulator/v1/Events")
        .await
        .expect(200);
    assert_eq!(
        by_key["events"].as_array().map(|a| a.len()),
        Some(list.len())
    );
}

#[tokio::test]
async fn metrics_do_not_reveal_another_accounts_services() {
    let server = TestServer::start(options()).await;
    let w = world_of_a(&server).await;
    let r = get(&server.b(), "/metrics").await;
    if r.status == 200 {
        assert!(
            !r.body.contains(&w.service),
            "GET /metrics as account B names account A's service {}:\n{}",
            w.service,
            r.body
                .lines()
                .filter(|l| l.contains(&w.service))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    } else {
        twilio_4xx(&r);
    }
    twilio_error_in(&get(&server.anon(), "/metrics").await, &[(401, 20003)]);
}
