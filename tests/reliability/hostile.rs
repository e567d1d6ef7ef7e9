//! Hostile input: every answer is a Twilio error body (or the documented success), never a 5xx,
//! a panic or a hang, and the server keeps working afterwards.

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;

use crate::harness::{ACCOUNT_A, Client, ServerOptions, TOKEN_A, TestServer};
use crate::util::*;

/// A service (custom codes enabled) with rate limit `ip` (one bucket, Max 1 per hour) and one
/// pending verification.
struct Fixture {
    service: String,
    rate_limit: String,
    bucket: String,
    verification: String,
}

async fn fixture(c: &Client) -> Fixture {
    let chain = create_chain(
        c,
        &[("FriendlyName", "hostile"), ("CustomCodeEnabled", "true")],
        &[("ip", &[(1, 3600)])],
    )
    .await;
    let (service, rate_limit, bucket) = chain.first_sids();
    let to = "+15550000001";
    let v = c
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[("To", to), ("Channel", "sms")],
        )
        .await
        .expect(201);
    Fixture {
        service,
        rate_limit,
        bucket,
        verification: v["sid"].as_str().unwrap().to_owned(),
    }
}

async fn service_count(c: &Client) -> usize {
    get(c, "/v2/Services?PageSize=1000").await.expect(200)["services"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn oversized_bodies_get_413_with_a_twilio_body() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = fixture(&c).await;
    let mut fails = Failures::default();

    let big = format!("FriendlyName={}", "a".repeat(70 * 1024));
    let r = post_raw(&c, "/v2/Services", big).await;
    fails.check(
        "70 KiB form body",
        check_status(&r, 413).and_then(|_| r.check_error()),
    );

    // 100,000 '[' in RateLimits: over the limit too.
    let deep = format!(
        "To=%2B15550000002&Channel=sms&RateLimits={}",
        "[".repeat(100_000)
    );
    let r = post_raw(
        &c,
        &format!("/v2/Services/{}/Verifications", f.service),
        deep,
    )
    .await;
    fails.check(
        "100k '[' RateLimits",
        check_status(&r, 413).and_then(|_| r.check_error()),
    );

    // Exactly 64 KiB is still read (and refused for what it says, not for its size).
    let prefix = "FriendlyName=";
    let at_limit = format!("{prefix}{}", "b".repeat(64 * 1024 - prefix.len()));
    assert_eq!(at_limit.len(), 64 * 1024);
    let r = post_raw(&c, "/v2/Services", at_limit).await;
    if r.status == 413 {
        fails.fail(format!("a body of exactly 64 KiB got 413: {}", r.context()));
    } else {
        fails.check("64 KiB body", check_4xx(&r));
    }

    // A declared 10 GB body: refused at once, without waiting for the bytes.
    let auth = basic_value(&format!("{ACCOUNT_A}:{TOKEN_A}"));
    let raw = format!(
        "POST /v2/Services HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10737418240\r\n\r\n\
         FriendlyName=x"
    );
    let reply = raw_exchange(
        server.port(),
        raw.as_bytes(),
        std::time::Duration::from_secs(5),
    )
    .await;
    match reply.status {
        Some(413) => {
            fails.check("413 for a 10 GB Content-Length", reply.check_error());
        }
        other => fails.fail(format!(
            "declared 10 GB body (14 bytes sent): expected an immediate 413, got within 5 s {other:?} after {:?}: {:?}",
            reply.elapsed,
            tail(&reply.text, 500)
        )),
    }

    // A chunked body that grows past the limit.
    let mut chunked = format!(
        "POST /v2/Services HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    chunked.extend_from_slice(b"d\r\nFriendlyName=\r\n");
    for _ in 0..100 {
        chunked.extend_from_slice(format!("400\r\n{}\r\n", "c".repeat(1024)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = raw_exchange(server.port(), &chunked, std::time::Duration::from_secs(8)).await;
    if reply.status != Some(413) {
        fails.fail(format!(
            "100 KiB chunked body: expected 413 with a Twilio body, got {:?}: {:?}",
            reply.status,
            tail(&reply.text, 500)
        ));
    } else {
        fails.check("100 KiB chunked body", reply.check_error());
    }

    fails.assert_none("oversized bodies");
    assert_alive(&server, "oversized bodies").await;
    assert_no_panic(&server);
}

#[tokio::test]
async fn hostile_rate_limits_json_is_refused_or_counted_exactly() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let Chain { service, .. } =
        create_chain(&c, &[("FriendlyName", "json")], &[("ip", &[(100, 3600)])]).await;
    let path = format!("/v2/Services/{service}/Verifications");
    let mut fails = Failures::default();
    let mut n = 0;
    let mut next_to = || {
        n += 1;
        format!("%2B1555100{n:04}")
    };

    // Raw (unencoded) JSON in the body: none of these contain & = + %, so it decodes as is.
    let refused: Vec<(&str, String)> = vec![
        ("60,000 nested '['", "[".repeat(60_000)),
        ("20,000 nested objects", r#"{"ip":"#.repeat(10_000)),
        ("60,000 ']'", "]".repeat(60_000)),
        (
            "3,000 unknown keys",
            format!(
                "{{{}}}",
                (0..3000)
                    .map(|i| format!(r#""k{i}":"v""#))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        (
            "a raw control byte inside a JSON string",
            "{\"ip\":\"a\u{1}b\"}".to_owned(),
        ),
        ("truncated", r#"{"ip":"#.to_owned()),
        ("a JSON array", r#"["ip","x"]"#.to_owned()),
        ("an object value", r#"{"ip":{"ip":"x"}}"#.to_owned()),
    ];
    for (what, json) in &refused {
        let body = format!("To={}&Channel=sms&RateLimits={json}", next_to());
        let r = post_raw(&c, &path, body).await;
        fails.check(what, check_error_in(&r, &[(400, 60200)]));
    }
    // Invalid UTF-8 inside a JSON string: refused, or kept apart. Folding it into U+FFFD would
    // make different values share one counter: with Max 1, the second distinct value would be
    // refused for the first one's admission.
    add_rate_limit(&c, &service, &[("UniqueName", "bin")], &[(1, 3600)]).await;
    let mut admitted_raw: Vec<&str> = Vec::new();
    for bytes in ["%FF%FE", "%C0%80", "%ED%A0%80"] {
        let body = format!(
            "To={}&Channel=sms&RateLimits=%7B%22bin%22%3A%22{bytes}%22%7D",
            next_to()
        );
        let r = post_raw(&c, &path, body).await;
        match r.status {
            201 => admitted_raw.push(bytes),
            429 => fails.fail(format!(
                "RateLimits {{\"bin\": \"{bytes}\"}} (invalid UTF-8) was refused 429 after {admitted_raw:?} \
                 were admitted: distinct byte strings share one counter (folded into U+FFFD) instead \
                 of being refused with 60200"
            )),
            _ => {
                fails.check(&format!("invalid UTF-8 {bytes} in a value"), check_error_in(&r, &[(400, 60200)]));
            }
        }
    }

    // Thousands of duplicate keys: either refused, or one admission in the bucket (not thousands).
    let dup = format!("{{{}}}", vec![r#""ip":"dup""#; 3000].join(","));
    let r = post_raw(
        &c,
        &path,
        format!("To={}&Channel=sms&RateLimits={dup}", next_to()),
    )
    .await;
    if r.status == 201 {
        let usage = get(
            &c,
            &format!("/emulator/v1/Services/{service}/Usage?RateLimit=ip&Value=dup"),
        )
        .await
        .expect(200);
        if usage["usage"][0]["count"] != 1 {
            fails.fail(format!(
                "3,000 duplicate keys counted {} times: {usage}",
                usage["usage"][0]["count"]
            ));
        }
    } else {
        fails.check("3,000 duplicate keys", check_error_in(&r, &[(400, 60200)]));
    }

    // Values that are valid JSON strings or numbers: admitted and counted under exactly that value.
    let admitted: Vec<(&str, String, String)> = vec![
        (
            "50 KB string",
            format!(r#"{{"ip":"{}"}}"#, "v".repeat(50_000)),
            "v".repeat(50_000),
        ),
        (
            "escaped NUL",
            r#"{"ip":"a\u0000b"}"#.to_owned(),
            "a\u{0}b".to_owned(),
        ),
        (
            "escaped newline",
            r#"{"ip":"line\nbreak"}"#.to_owned(),
            "line\nbreak".to_owned(),
        ),
        (
            "unicode",
            r#"{"ip":"日本🚀"}"#.to_owned(),
            "日本🚀".to_owned(),
        ),
    ];
    for (what, json, value) in &admitted {
        let body = format!("To={}&Channel=sms&RateLimits={}", next_to(), enc(json));
        let r = post_raw(&c, &path, body).await;
        if r.status == 201 {
            let usage = get(
                &c,
                &format!(
                    "/emulator/v1/Services/{service}/Usage?RateLimit=ip&Value={}",
                    enc(value)
                ),
            )
            .await;
            match check_status(&usage, 200) {
                Ok(u) => {
                    let rows = u["usage"].as_array().cloned().unwrap_or_default();
                    if rows.len() != 1
                        || rows[0]["value"] != value.as_str()
                        || rows[0]["count"] != 1
                    {
                        fails.fail(format!(
                            "{what}: admitted but not counted verbatim: {}",
                            shorten(&u.to_string(), 200)
                        ));
                    }
                }
                Err(e) => fails.fail(format!("{what}: usage: {e}")),
            }
        } else {
            // Refusing odd values is allowed, with the documented code.
            fails.check(what, check_error_in(&r, &[(400, 60200)]));
        }
    }
    // Numbers: admitted (a number is a value) or refused as invalid; never a 5xx.
    for json in [
        r#"{"ip":1e400}"#,
        r#"{"ip":-0}"#,
        r#"{"ip":1.5}"#,
        r#"{"ip":18446744073709551616}"#,
        "{}",
        "",
    ] {
        let r = post_raw(
            &c,
            &path,
            format!("To={}&Channel=sms&RateLimits={}", next_to(), enc(json)),
        )
        .await;
        if r.status != 201 {
            fails.check(json, check_error_in(&r, &[(400, 60200)]));
        }
    }

    fails.assert_none("hostile RateLimits");
    assert_alive(&server, "hostile RateLimits").await;
    assert_no_panic(&server);
}

/// Control characters and invalid UTF-8 (already percent-encoded).
const BAD_TEXT: &[&str] = &[
    "%FF%FE",
    "ok%C3%28",
    "nul%00x",
    "a%01b",
    "%1B%5B31mred",
    "del%7F",
    "cr%0D%0Alf",
    "tab%09tab",
    "%C2%85nel",
];

#[tokio::test]
async fn control_characters_and_invalid_utf8_in_string_fields_are_refused() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = fixture(&c).await;
    let s = &f.service;
    let rk = &f.rate_limit;
    let before = service_count(&c).await;
    let mut fails = Failures::default();
    // (path, field, other fields already encoded, allowed refusals)
    let invalid = [(400, 60200)];
    let unique_name = [(400, 60200), (400, 60209)];
    type Target<'a> = (String, &'a str, String, &'a [(u16, u64)]);
    let targets: Vec<Target> = vec![
        (
            "/v2/Services".into(),
            "FriendlyName",
            String::new(),
            &invalid,
        ),
        (
            format!("/v2/Services/{s}"),
            "FriendlyName",
            String::new(),
            &invalid,
        ),
        (
            format!("/v2/Services/{s}/RateLimits"),
            "UniqueName",
            String::new(),
            &unique_name,
        ),
        (
            format!("/v2/Services/{s}/RateLimits"),
            "Description",
            "UniqueName=descr".into(),
            &invalid,
        ),
        (
            format!("/v2/Services/{s}/RateLimits/{rk}"),
            "Description",
            String::new(),
            &invalid,
        ),
        (
            format!("/v2/Services/{s}/Verifications"),
            "To",
            "Channel=sms".into(),
            &invalid,
        ),
        (
            format!("/v2/Services/{s}/Verifications"),
            "To",
            "Channel=email".into(),
            &invalid,
        ),
        (
            format!("/v2/Services/{s}/Verifications"),
            "CustomCode",
            "To=%2B15550000077&Channel=sms".into(),
            &invalid,
        ),
    ];
    for (path, field, others, allowed) in &targets {
        for bad in BAD_TEXT {
            let body = if others.is_empty() {
                format!("{field}={bad}")
            } else {
                format!("{others}&{field}={bad}")
            };
            let r = post_raw(&c, path, body).await;
            fails.check(
                &format!("{field}={bad} on {path}"),
                check_error_in(&r, allowed),
            );
        }
    }
    // A check naming a `To` with control characters finds nothing to check, or is invalid.
    for bad in BAD_TEXT {
        let r = post_raw(
            &c,
            &format!("/v2/Services/{s}/VerificationCheck"),
            format!("To={bad}&Code=123456"),
        )
        .await;
        fails.check(
            &format!("VerificationCheck To={bad}"),
            check_error_in(&r, &[(400, 60200), (404, 20404)]),
        );
    }
    // ... and a Code with them is a wrong code or an invalid one, never a 5xx.
    for bad in &BAD_TEXT[..3] {
        let r = post_raw(
            &c,
            &format!("/v2/Services/{s}/VerificationCheck"),
            format!("VerificationSid={}&Code={bad}", f.verification),
        )
        .await;
        if r.status == 200 {
            if r.json()["valid"] != false {
                fails.fail(format!("Code={bad} was accepted as valid: {}", r.body));
            }
        } else {
            fails.check(
                &format!("VerificationCheck Code={bad}"),
                check_error_in(&r, &[(400, 60200)]),
            );
        }
    }
    // Nothing was created or changed by the refused requests.
    if service_count(&c).await != before {
        fails.fail("a refused request created a service".to_owned());
    }
    let svc = get(&c, &format!("/v2/Services/{s}")).await.expect(200);
    if svc["friendly_name"] != "hostile" {
        fails.fail(format!("a refused update changed the service: {svc}"));
    }
    let rls = get(&c, &format!("/v2/Services/{s}/RateLimits"))
        .await
        .expect(200);
    if rls["rate_limits"].as_array().unwrap().len() != 1 {
        fails.fail(format!("a refused request created a rate limit: {rls}"));
    }
    let outbox = outbox_all(&c, Some(s)).await;
    if outbox.len() != 1 {
        fails.fail(format!("a refused start sent a code: {outbox:?}"));
    }
    fails.assert_none("control characters / invalid UTF-8");
    assert_alive(&server, "control characters").await;
    assert_no_panic(&server);
}

#[tokio::test]
async fn valid_unicode_text_is_stored_verbatim() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let name = "Café 日本 🚀 Ωμέγα";
    let s = c
        .post_form("/v2/Services", &[("FriendlyName", name)])
        .await
        .expect(201);
    assert_eq!(s["friendly_name"], name);
    let sid = s["sid"].as_str().unwrap();
    assert_eq!(
        get(&c, &format!("/v2/Services/{sid}")).await.expect(200)["friendly_name"],
        name
    );
    let rl = c
        .post_form(
            &format!("/v2/Services/{sid}/RateLimits"),
            &[("UniqueName", "u"), ("Description", name)],
        )
        .await
        .expect(201);
    assert_eq!(rl["description"], name);
}

const SQL: &[&str] = &[
    "'; DROP TABLE services; --",
    "\" OR \"1\"=\"1",
    "\\'; --",
    "a\\\\b\\",
    "'",
    "''",
    "%' OR '1'='1",
    "`x`; /* */",
    "x'); DELETE FROM buckets;--",
    "1; SELECT * FROM sqlite_master",
];

#[tokio::test]
async fn sql_metacharacters_are_stored_verbatim_or_refused_and_the_database_survives() {
    let mut server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = fixture(&c).await;
    let s = f.service.clone();
    let mut fails = Failures::default();
    let mut stored_services: Vec<(String, String)> = Vec::new();

    // FriendlyName on create and update, Description on create and update.
    let mut stored = 0;
    for (i, text) in SQL.iter().enumerate() {
        let r = c.post_form("/v2/Services", &[("FriendlyName", text)]).await;
        if r.status == 201 {
            stored += 1;
            let v = r.json();
            let sid = v["sid"].as_str().unwrap().to_owned();
            if v["friendly_name"] != *text {
                fails.fail(format!(
                    "FriendlyName {text:?} echoed as {}",
                    v["friendly_name"]
                ));
            }
            stored_services.push((sid, text.to_string()));
        } else {
            fails.check(
                &format!("FriendlyName {text:?}"),
                check_error_in(&r, &[(400, 60200)]),
            );
        }
        let r = c
            .post_form(
                &format!("/v2/Services/{s}/RateLimits"),
                &[("UniqueName", &format!("sql{i}")), ("Description", text)],
            )
            .await;
        match check_status(&r, 201) {
            Ok(v) => {
                if v["description"] != *text {
                    fails.fail(format!(
                        "Description {text:?} echoed as {}",
                        v["description"]
                    ));
                }
                let rk = v["sid"].as_str().unwrap();
                let again = get(&c, &format!("/v2/Services/{s}/RateLimits/{rk}"))
                    .await
                    .expect(200);
                if again["description"] != *text {
                    fails.fail(format!(
                        "Description {text:?} fetched as {}",
                        again["description"]
                    ));
                }
                let r = c
                    .post_form(
                        &format!("/v2/Services/{s}/RateLimits/{rk}"),
                        &[("Description", &format!("{text}{text}"))],
                    )
                    .await;
                if r.status != 200 {
                    fails.check(
                        &format!("Description update {text:?}"),
                        check_error_in(&r, &[(400, 60200)]),
                    );
                } else if r.json()["description"] != format!("{text}{text}") {
                    fails.fail(format!(
                        "Description update {text:?} not verbatim: {}",
                        r.body
                    ));
                }
            }
            Err(_) => {
                fails.check(
                    &format!("Description {text:?}"),
                    check_error_in(&r, &[(400, 60200)]),
                );
            }
        }
        // UniqueName: outside [A-Za-z0-9._-], so refused with the documented code.
        let r = c
            .post_form(
                &format!("/v2/Services/{s}/RateLimits"),
                &[("UniqueName", text)],
            )
            .await;
        fails.check(
            &format!("UniqueName {text:?}"),
            check_error_in(&r, &[(400, 60209)]),
        );
    }
    if stored < SQL.len() / 2 {
        fails.fail(format!(
            "only {stored} of {} FriendlyNames with quotes were accepted",
            SQL.len()
        ));
    }
    // Service update with them.
    if let Some((sid, _)) = stored_services.first().cloned() {
        for text in SQL {
            let r = c
                .post_form(&format!("/v2/Services/{sid}"), &[("FriendlyName", text)])
                .await;
            if r.status == 200 {
                let back = get(&c, &format!("/v2/Services/{sid}")).await.expect(200);
                if back["friendly_name"] != *text {
                    fails.fail(format!(
                        "FriendlyName update {text:?} fetched as {}",
                        back["friendly_name"]
                    ));
                }
            } else {
                fails.check(
                    &format!("FriendlyName update {text:?}"),
                    check_error_in(&r, &[(400, 60200)]),
                );
            }
        }
        let r = c
            .post_form(&format!("/v2/Services/{sid}"), &[("FriendlyName", SQL[0])])
            .await;
        if r.status == 200 {
            stored_services[0].1 = SQL[0].to_owned();
        } else {
            stored_services.remove(0);
        }
    }

    // RateLimits values are arbitrary strings: admitted, counted under exactly that value, and a
    // second start with the same value hits the Max=1 bucket.
    for (i, text) in SQL.iter().enumerate() {
        let rl = serde_json::json!({ "ip": text }).to_string();
        let to = format!("+1555200{i:04}");
        let r = c
            .post_form(
                &format!("/v2/Services/{s}/Verifications"),
                &[("To", &to), ("Channel", "sms"), ("RateLimits", &rl)],
            )
            .await;
        if fails
            .check(&format!("RateLimits value {text:?}"), check_status(&r, 201))
            .is_none()
        {
            continue;
        }
        let usage = get(
            &c,
            &format!(
                "/emulator/v1/Services/{s}/Usage?RateLimit=ip&Value={}",
                enc(text)
            ),
        )
        .await
        .expect(200);
        let rows = usage["usage"].as_array().unwrap();
        if rows.len() != 1 || rows[0]["value"] != *text || rows[0]["count"] != 1 {
            fails.fail(format!("value {text:?} not counted verbatim: {usage}"));
        }
        let to2 = format!("+1555300{i:04}");
        let r = c
            .post_form(
                &format!("/v2/Services/{s}/Verifications"),
                &[("To", &to2), ("Channel", "sms"), ("RateLimits", &rl)],
            )
            .await;
        fails.check(
            &format!("second start with value {text:?}"),
            check_error_in(&r, &[(429, 20429)]),
        );
    }

    // To and CustomCode: stored verbatim or refused as invalid.
    for (i, text) in SQL.iter().enumerate() {
        for channel in ["sms", "email"] {
            let r = c
                .post_form(
                    &format!("/v2/Services/{s}/Verifications"),
                    &[("To", text), ("Channel", channel)],
                )
                .await;
            if r.status == 201 {
                let v = r.json();
                if v["to"] != *text {
                    fails.fail(format!("To {text:?} echoed as {}", v["to"]));
                }
                let sid = v["sid"].as_str().unwrap();
                let fetched = get(&c, &format!("/v2/Services/{s}/Verifications/{sid}"))
                    .await
                    .expect(200);
                if fetched["to"] != *text {
                    fails.fail(format!("To {text:?} fetched as {}", fetched["to"]));
                }
                let outbox = get(&c, &format!("/emulator/v1/Outbox?To={}", enc(text)))
                    .await
                    .expect(200);
                let msgs = outbox["messages"].as_array().unwrap();
                if msgs.is_empty() || msgs.iter().any(|m| m["to"] != *text) {
                    fails.fail(format!("Outbox?To={text:?} answered {outbox}"));
                }
                // Cancel it, so the next channel is a new verification.
                c.post_form(
                    &format!("/v2/Services/{s}/Verifications/{sid}"),
                    &[("Status", "canceled")],
                )
                .await
                .expect(200);
            } else {
                fails.check(
                    &format!("To {text:?} ({channel})"),
                    check_error_in(&r, &[(400, 60200)]),
                );
            }
        }
        let to = format!("+1555400{i:04}");
        let r = c
            .post_form(
                &format!("/v2/Services/{s}/Verifications"),
                &[("To", &to), ("Channel", "sms"), ("CustomCode", text)],
            )
            .await;
        if r.status == 201 {
            let code = code_of(&c, r.json()["sid"].as_str().unwrap()).await;
            if code != *text {
                fails.fail(format!("CustomCode {text:?} sent as {code:?}"));
            }
        } else {
            fails.check(
                &format!("CustomCode {text:?}"),
                check_error_in(&r, &[(400, 60200)]),
            );
        }
    }

    // In query strings and paths: no match, or a Twilio error; never a 5xx.
    for text in SQL {
        let e = enc(text);
        let r = get(&c, &format!("/emulator/v1/Outbox?ServiceSid={e}")).await;
        if r.status == 200 {
            if !r.json()["messages"].as_array().unwrap().is_empty() {
                fails.fail(format!(
                    "Outbox?ServiceSid={text:?} matched messages: {}",
                    r.body
                ));
            }
        } else {
            fails.check(&format!("Outbox?ServiceSid={text:?}"), check_4xx(&r));
        }
        let r = get(
            &c,
            &format!("/emulator/v1/Services/{s}/Usage?RateLimit={e}"),
        )
        .await;
        if r.status == 200 {
            if !r.json()["usage"].as_array().unwrap().is_empty() {
                fails.fail(format!("Usage?RateLimit={text:?} matched rows: {}", r.body));
            }
        } else {
            fails.check(&format!("Usage?RateLimit={text:?}"), check_4xx(&r));
        }
        let r = get(&c, &format!("/v2/Services?PageToken={e}")).await;
        fails.check(
            &format!("PageToken={text:?}"),
            check_error_in(&r, &[(400, 21481)]),
        );
        let r = get(&c, &format!("/v2/Services/{e}")).await;
        fails.check(
            &format!("/v2/Services/{text:?}"),
            check_error_in(&r, &[(404, 20404)]),
        );
        let r = get(&c, &format!("/v2/Services/{s}/RateLimits/{e}")).await;
        fails.check(
            &format!("RateLimits/{text:?}"),
            check_error_in(&r, &[(404, 20404)]),
        );
    }

    // The database still works, also after a restart: everything stored reads back verbatim.
    let all = get(&c, "/v2/Services?PageSize=1000").await.expect(200);
    for (sid, text) in &stored_services {
        let found = all["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["sid"] == sid.as_str());
        match found {
            Some(v) if v["friendly_name"] == text.as_str() => {}
            other => fails.fail(format!("service {sid} ({text:?}) listed as {other:?}")),
        }
    }
    get(
        &c,
        &format!(
            "/v2/Services/{s}/RateLimits/{}/Buckets/{}",
            f.rate_limit, f.bucket
        ),
    )
    .await
    .expect(200);
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let server = TestServer::start(ServerOptions::new().database_of(&server)).await;
    let c = server.a();
    for (sid, text) in &stored_services {
        let r = get(&c, &format!("/v2/Services/{sid}")).await;
        match check_status(&r, 200) {
            Ok(v) if v["friendly_name"] == text.as_str() => {}
            Ok(v) => fails.fail(format!("after restart, {sid} reads {}", v["friendly_name"])),
            Err(e) => fails.fail(format!("after restart: {e}")),
        }
    }
    get(
        &c,
        &format!(
            "/v2/Services/{s}/RateLimits/{}/Buckets/{}",
            f.rate_limit, f.bucket
        ),
    )
    .await
    .expect(200);
    fails.assert_none("SQL metacharacters");
    assert_alive(&server, "SQL metacharacters").await;
}

const NOT_INTEGERS: &[&str] = &[
    "-1",
    "0",
    "-0",
    "1e3",
    "1.5",
    "5.0",
    "0x10",
    " 5",
    "5 ",
    "٥",
    "５",
    "NaN",
    "Infinity",
    "1_0",
    "1,0",
    "--1",
    "9223372036854775808",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999999",
    "5\u{0}",
    "abc",
];

#[tokio::test]
async fn absurd_integers_are_refused_with_60200_and_change_nothing() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = fixture(&c).await;
    let (s, rk, bl) = (&f.service, &f.rate_limit, &f.bucket);
    let mut fails = Failures::default();
    let buckets = format!("/v2/Services/{s}/RateLimits/{rk}/Buckets");

    for bad in NOT_INTEGERS.iter().chain(&["86401"]) {
        // Max=86401 is a fine Max: only Interval has that ceiling.
        if *bad != "86401" {
            let r = c
                .post_form(&buckets, &[("Max", bad), ("Interval", "77")])
                .await;
            fails.check(
                &format!("create Max={bad:?}"),
                check_error_in(&r, &[(400, 60200)]),
            );
            let r = c
                .post_form(&format!("{buckets}/{bl}"), &[("Max", bad)])
                .await;
            fails.check(
                &format!("update Max={bad:?}"),
                check_error_in(&r, &[(400, 60200)]),
            );
        }
        let r = c
            .post_form(&buckets, &[("Max", "3"), ("Interval", bad)])
            .await;
        fails.check(
            &format!("create Interval={bad:?}"),
            check_error_in(&r, &[(400, 60200)]),
        );
        let r = c
            .post_form(&format!("{buckets}/{bl}"), &[("Interval", bad)])
            .await;
        fails.check(
            &format!("update Interval={bad:?}"),
            check_error_in(&r, &[(400, 60200)]),
        );
    }
    let b = get(&c, &format!("{buckets}/{bl}")).await.expect(200);
    if b["max"] != 1 || b["interval"] != 3600 {
        fails.fail(format!("refused updates changed the bucket: {b}"));
    }
    let list = get(&c, &buckets).await.expect(200);
    if list["buckets"].as_array().unwrap().len() != 1 {
        fails.fail(format!("a refused create added a bucket: {list}"));
    }

    for bad in NOT_INTEGERS.iter().chain(&["3", "11", "6.0", "0x6"]) {
        let r = c
            .post_form(
                "/v2/Services",
                &[("FriendlyName", "x"), ("CodeLength", bad)],
            )
            .await;
        fails.check(
            &format!("create CodeLength={bad:?}"),
            check_error_in(&r, &[(400, 60200)]),
        );
        let r = c
            .post_form(&format!("/v2/Services/{s}"), &[("CodeLength", bad)])
            .await;
        fails.check(
            &format!("update CodeLength={bad:?}"),
            check_error_in(&r, &[(400, 60200)]),
        );
    }
    if get(&c, &format!("/v2/Services/{s}")).await.expect(200)["code_length"] != 6 {
        fails.fail("a refused update changed code_length".to_owned());
    }

    // Paging parameters on every list.
    let lists = [
        "/v2/Services".to_owned(),
        format!("/v2/Services/{s}/RateLimits"),
        buckets.clone(),
        "/emulator/v1/Outbox".to_owned(),
    ];
    for list in &lists {
        for bad in NOT_INTEGERS.iter().chain(&["1001", "100000"]) {
            let r = get(&c, &format!("{list}?PageSize={}", enc(bad))).await;
            fails.check(
                &format!("{list}?PageSize={bad:?}"),
                check_error_in(&r, &[(400, 60200), (400, 20007)]),
            );
        }
        for bad in NOT_INTEGERS.iter().filter(|b| !matches!(**b, "0" | "-0")) {
            let r = get(&c, &format!("{list}?Page={}", enc(bad))).await;
            fails.check(
                &format!("{list}?Page={bad:?}"),
                check_error_in(&r, &[(400, 60200)]),
            );
        }
        // Far-away pages: empty, or refused; never an overflow.
        for page in ["1000000", "9223372036854775807"] {
            for size in ["1", "1000"] {
                let r = get(&c, &format!("{list}?Page={page}&PageSize={size}")).await;
                if r.status == 200 {
                    let v = r.json();
                    let key = v["meta"]["key"].as_str().unwrap_or_default().to_owned();
                    if v[&key].as_array().is_none_or(|a| !a.is_empty()) {
                        fails.fail(format!(
                            "{list}?Page={page}: not an empty page: {}",
                            shorten(&r.body, 200)
                        ));
                    }
                } else {
                    fails.check(
                        &format!("{list}?Page={page}&PageSize={size}"),
                        check_4xx(&r),
                    );
                }
            }
        }
        for token in [
            "x",
            "PA",
            "PA%FF%FE",
            &"A".repeat(5000),
            "PA%00",
            "PAVA%27%3B",
        ] {
            let r = get(&c, &format!("{list}?PageToken={token}")).await;
            fails.check(
                &format!("{list}?PageToken={}", shorten(token, 200)),
                check_error_in(&r, &[(400, 21481)]),
            );
        }
    }
    fails.assert_none("absurd integers");
    assert_alive(&server, "absurd integers").await;
    assert_no_panic(&server);
}

#[tokio::test]
async fn huge_but_integral_bucket_values_are_refused_or_work_without_overflow() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let Chain { service: s, .. } = create_chain(&c, &[("FriendlyName", "huge")], &[]).await;
    let mut fails = Failures::default();
    for (i, max) in ["2147483648", "4294967296", "9223372036854775807"]
        .iter()
        .enumerate()
    {
        let name = format!("huge{i}");
        let rl = c
            .post_form(
                &format!("/v2/Services/{s}/RateLimits"),
                &[("UniqueName", &name)],
            )
            .await
            .expect(201);
        let rk = rl["sid"].as_str().unwrap();
        let r = c
            .post_form(
                &format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"),
                &[("Max", max), ("Interval", "86400")],
            )
            .await;
        if r.status != 201 {
            fails.check(&format!("Max={max}"), check_error_in(&r, &[(400, 60200)]));
            continue;
        }
        if r.json()["max"].as_u64() != max.parse::<u64>().ok() {
            fails.fail(format!("Max={max} echoed as {}", r.json()["max"]));
        }
        let v = c
            .post_form(
                &format!("/v2/Services/{s}/Verifications"),
                &[
                    ("To", &format!("+1555500{i:04}")),
                    ("Channel", "sms"),
                    ("RateLimits", &format!(r#"{{"{name}": "v"}}"#)),
                ],
            )
            .await;
        fails.check(&format!("start under Max={max}"), check_status(&v, 201));
        let usage = get(
            &c,
            &format!("/emulator/v1/Services/{s}/Usage?RateLimit={name}"),
        )
        .await;
        match check_status(&usage, 200) {
            Ok(u) => {
                let row = &u["usage"][0];
                if row["count"] != 1 || row["max"].as_u64() != max.parse::<u64>().ok() {
                    fails.fail(format!("usage under Max={max}: {u}"));
                }
                if row["remaining"].as_i64().is_some_and(|r| r < 0)
                    || row["remaining"].as_f64().is_some_and(|r| r < 0.0)
                {
                    fails.fail(format!("negative remaining under Max={max}: {u}"));
                }
            }
            Err(e) => fails.fail(e),
        }
    }
    fails.assert_none("huge bucket values");
    assert_alive(&server, "huge bucket values").await;
    assert_no_panic(&server);
}

#[tokio::test]
async fn absurd_clock_moves_are_refused_or_leave_a_working_server() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let mut fails = Failures::default();
    for bad in NOT_INTEGERS.iter().filter(|b| !matches!(**b, "0" | "-0")) {
        let r = c
            .post_form("/emulator/v1/Clock", &[("AdvanceSeconds", bad)])
            .await;
        fails.check(
            &format!("AdvanceSeconds={bad:?}"),
            check_error_in(&r, &[(400, 60200)]),
        );
    }
    for bad in [
        "2020-01-01T00:00:00Z",
        "garbage",
        "2031-13-45T99:99:99Z",
        "2031-02-30T00:00:00Z",
        "2031-01-01T00:00:00.5Z",
        "2031-01-01 00:00:00",
        "-2031-01-01T00:00:00Z",
        "%FF%FE",
        "'; DROP TABLE clocks; --",
    ] {
        let r = c.post_form("/emulator/v1/Clock", &[("Now", bad)]).await;
        fails.check(&format!("Now={bad:?}"), check_error_in(&r, &[(400, 60200)]));
    }
    // Moves that are integers: refused, or the server keeps rendering valid dates afterwards.
    let moves: Vec<(&str, &str)> = vec![
        ("AdvanceSeconds", "9223372036854775807"),
        ("AdvanceSeconds", "9223372036854775"),
        ("AdvanceSeconds", "315569520000"),
        ("AdvanceSeconds", "253402300799"),
        ("Now", "9999-12-31T23:59:59Z"),
    ];
    for (name, value) in moves {
        let r = c.post_form("/emulator/v1/Clock", &[(name, value)]).await;
        if r.status != 200 {
            fails.check(
                &format!("{name}={value}"),
                check_error_in(&r, &[(400, 60200)]),
            );
        } else {
            // Then one more second on top.
            let r2 = c
                .post_form("/emulator/v1/Clock", &[("AdvanceSeconds", "1")])
                .await;
            if r2.status != 200 {
                fails.check(
                    &format!("{name}={value} then AdvanceSeconds=1"),
                    check_error_in(&r2, &[(400, 60200)]),
                );
            }
            let clock = get(&c, "/emulator/v1/Clock").await;
            match check_status(&clock, 200) {
                Ok(v) => {
                    if !is_twilio_date(v["now"].as_str().unwrap_or_default()) {
                        fails.fail(format!("after {name}={value}: clock reads {v}"));
                    }
                }
                Err(e) => fails.fail(format!("after {name}={value}: {e}")),
            }
            let r = c
                .post_form("/v2/Services", &[("FriendlyName", "future")])
                .await;
            match check_status(&r, 201) {
                Ok(v) => {
                    if !is_twilio_date(v["date_created"].as_str().unwrap_or_default()) {
                        fails.fail(format!(
                            "after {name}={value}: date_created {}",
                            v["date_created"]
                        ));
                    }
                }
                Err(e) => fails.fail(format!("after {name}={value}: creating a service: {e}")),
            }
        }
        c.post_form("/emulator/v1/Reset", &[]).await.expect(204);
    }
    fails.assert_none("absurd clock moves");
    assert_alive(&server, "absurd clock moves").await;
    assert_no_panic(&server);
}

/// `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`
pub fn is_twilio_date(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:ddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(c, &shape)| match shape {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

#[tokio::test]
async fn malformed_sids_in_every_path_position_are_404() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = fixture(&c).await;
    let (s, rk, bl, ve) = (&f.service, &f.rate_limit, &f.bucket, &f.verification);
    let hex = "0123456789abcdef0123456789abcdef";
    let long = format!("VA{}", "a".repeat(5000));
    let bad_sids: Vec<String> = vec![
        "VA123".into(),
        format!("XX{hex}"),
        format!("RK{hex}"),
        format!("VA{}", "g".repeat(32)),
        format!("VA{}", &hex[..31]),
        format!("VA{hex}0"),
        format!("VA{}", hex.to_uppercase()),
        "%00%FF%FE".into(),
        "VA%2F..%2F..%2Fetc%2Fpasswd".into(),
        "%2e%2e".into(),
        "%F0%9F%98%80".into(),
        format!("VA%0A{}", &hex[..30]),
        "%20".into(),
        "%27%3B%20DROP%20TABLE%20services%3B%20--".into(),
        long,
        format!("VA{}", "0".repeat(32)),
    ];
    // (method, path with {X}, form)
    let v_to = [("To", "+15550000009"), ("Channel", "sms")];
    type Template<'a> = (Method, String, Vec<(&'a str, &'a str)>);
    let templates: Vec<Template> = vec![
        (Method::GET, "/v2/Services/{X}".into(), vec![]),
        (
            Method::POST,
            "/v2/Services/{X}".into(),
            vec![("FriendlyName", "x")],
        ),
        (Method::DELETE, "/v2/Services/{X}".into(), vec![]),
        (Method::GET, "/v2/Services/{X}/RateLimits".into(), vec![]),
        (
            Method::POST,
            "/v2/Services/{X}/RateLimits".into(),
            vec![("UniqueName", "u2")],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{{X}}"),
            vec![],
        ),
        (
            Method::GET,
            format!("/v2/Services/{{X}}/RateLimits/{rk}"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{{X}}"),
            vec![("Description", "d")],
        ),
        (
            Method::DELETE,
            format!("/v2/Services/{s}/RateLimits/{{X}}"),
            vec![],
        ),
        (
            Method::GET,
            format!("/v2/Services/{{X}}/RateLimits/{rk}/Buckets"),
            vec![],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{{X}}/Buckets"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{{X}}/Buckets"),
            vec![("Max", "1"), ("Interval", "9")],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{{X}}"),
            vec![],
        ),
        (
            Method::GET,
            format!("/v2/Services/{{X}}/RateLimits/{rk}/Buckets/{bl}"),
            vec![],
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{{X}}/Buckets/{bl}"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{{X}}"),
            vec![("Max", "2")],
        ),
        (
            Method::DELETE,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{{X}}"),
            vec![],
        ),
        (
            Method::POST,
            "/v2/Services/{X}/Verifications".into(),
            v_to.to_vec(),
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/Verifications/{{X}}"),
            vec![],
        ),
        (
            Method::GET,
            format!("/v2/Services/{{X}}/Verifications/{ve}"),
            vec![],
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/Verifications/{{X}}"),
            vec![("Status", "canceled")],
        ),
        (
            Method::POST,
            "/v2/Services/{X}/VerificationCheck".into(),
            vec![("To", "+15550000001"), ("Code", "123456")],
        ),
        (
            Method::GET,
            "/emulator/v1/Services/{X}/Usage".into(),
            vec![],
        ),
    ];
    let mut fails = Failures::default();
    for (method, template, body) in &templates {
        for bad in &bad_sids {
            let path = template.replace("{X}", bad);
            let mut rb = c.request(method.clone(), &path);
            if !body.is_empty() {
                rb = rb.form(body);
            }
            let r = send_bounded(rb).await;
            fails.check(
                &format!("{method} {}", shorten(&path, 200)),
                check_error_in(&r, &[(404, 20404)]),
            );
        }
    }
    // A malformed VerificationSid in a check body: not found, or an invalid parameter.
    for bad in &bad_sids {
        let r = post_raw(
            &c,
            &format!("/v2/Services/{s}/VerificationCheck"),
            format!("VerificationSid={bad}&Code=123456"),
        )
        .await;
        fails.check(
            &format!("VerificationSid={}", shorten(bad, 200)),
            check_error_in(&r, &[(404, 20404), (400, 60200)]),
        );
    }
    fails.assert_none("malformed SIDs");
    // The fixture is intact.
    get(&c, &format!("/v2/Services/{s}/Verifications/{ve}"))
        .await
        .expect(200);
    get(
        &c,
        &format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
    )
    .await
    .expect(200);
    assert_alive(&server, "malformed SIDs").await;
    assert_no_panic(&server);
}

#[tokio::test]
async fn unknown_parameters_are_ignored() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let r = post_raw(
        &c,
        "/v2/Services",
        "FriendlyName=kept&Foo=bar&%5B%5D=1&=&&&=x&Friendly=no&friendlyname=lower",
    )
    .await;
    let v = r.expect(201);
    assert_eq!(v["friendly_name"], "kept");
    let s = v["sid"].as_str().unwrap();
    let rl = post_raw(
        &c,
        &format!("/v2/Services/{s}/RateLimits"),
        "UniqueName=ip&Max=5&Bogus=%FF",
    )
    .await
    .expect(201);
    let rk = rl["sid"].as_str().unwrap();
    post_raw(
        &c,
        &format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"),
        "Max=1&Interval=60&Burst=9&Unit=ms",
    )
    .await
    .expect(201);
    post_raw(
        &c,
        &format!("/v2/Services/{s}/Verifications"),
        "To=%2B15550000003&Channel=sms&Nope=1&SendDigits=2",
    )
    .await
    .expect(201);
    get(&c, "/v2/Services?Foo=bar&%FF=%FE").await.expect(200);
    get(&c, "/emulator/v1/Outbox?Unknown=1").await.expect(200);
}

#[tokio::test]
async fn wrong_content_types_get_415_with_a_twilio_body() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let Chain { service: s, .. } = create_chain(&c, &[("FriendlyName", "ct")], &[]).await;
    let mut fails = Failures::default();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "/v2/Services",
            "application/json",
            br#"{"FriendlyName":"x"}"#.to_vec(),
        ),
        ("/v2/Services", "text/plain", b"FriendlyName=x".to_vec()),
        (
            "/v2/Services",
            "multipart/form-data; boundary=XX",
            b"--XX\r\nContent-Disposition: form-data; name=\"FriendlyName\"\r\n\r\nx\r\n--XX--\r\n"
                .to_vec(),
        ),
        (
            "/v2/Services",
            "application/x-www-form-urlencodedXYZ",
            b"FriendlyName=x".to_vec(),
        ),
        (
            "/v2/Services",
            "application/xml",
            b"<FriendlyName>x</FriendlyName>".to_vec(),
        ),
    ];
    let v_path = format!("/v2/Services/{s}/Verifications");
    let mut cases = cases;
    cases.push((
        &v_path,
        "application/json",
        br#"{"To":"+15550000001","Channel":"sms"}"#.to_vec(),
    ));
    for (path, ct, body) in cases {
        let r = send_bounded(
            c.request(Method::POST, path)
                .header(CONTENT_TYPE, ct)
                .body(body),
        )
        .await;
        if r.status != 415 {
            fails.fail(format!("{ct} on {path}: expected 415: {}", r.context()));
        } else {
            fails.check(&format!("{ct} on {path}"), r.check_error());
        }
    }
    // The form type with parameters or in capitals is still the form type.
    for ct in [
        "application/x-www-form-urlencoded; charset=utf-8",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        let r = send_bounded(
            c.request(Method::POST, "/v2/Services")
                .header(CONTENT_TYPE, ct)
                .body("FriendlyName=ok"),
        )
        .await;
        fails.check(ct, check_status(&r, 201));
    }
    if service_count(&c).await != 3 {
        fails.fail("a refused content type created a service".to_owned());
    }
    fails.assert_none("content types");
    assert_alive(&server, "wrong content types").await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_twilio_bodies() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = fixture(&c).await;
    let (s, rk, bl, ve) = (&f.service, &f.rate_limit, &f.bucket, &f.verification);
    let mut fails = Failures::default();
    let unknown = [
        "/",
        "/v2",
        "/v2/",
        "/v2/Nope",
        "/v3/Services",
        "/v2/services",
        "/emulator/v1/Nope",
        "/emulator/v2/Outbox",
        "/%FF%FE",
        "/v2/Services%00",
        "/v2//Services",
    ];
    let mut unknown: Vec<String> = unknown.iter().map(|s| s.to_string()).collect();
    unknown.push(format!("/v2/Services/{s}/Nope"));
    unknown.push(format!(
        "/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}/Nope"
    ));
    unknown.push(format!("/v2/Services/{s}/Verifications/{ve}/Check"));
    for path in &unknown {
        for method in [Method::GET, Method::POST, Method::DELETE] {
            let r = send_bounded(c.request(method.clone(), path)).await;
            fails.check(
                &format!("{method} {path}"),
                check_error_in(&r, &[(404, 20404)]),
            );
        }
    }
    let patch = Method::PATCH;
    let put = Method::PUT;
    let wrong: Vec<(Method, String)> = vec![
        (put.clone(), "/v2/Services".into()),
        (patch.clone(), "/v2/Services".into()),
        (Method::DELETE, "/v2/Services".into()),
        (put.clone(), format!("/v2/Services/{s}")),
        (patch.clone(), format!("/v2/Services/{s}")),
        (Method::DELETE, format!("/v2/Services/{s}/RateLimits")),
        (put.clone(), format!("/v2/Services/{s}/RateLimits/{rk}")),
        (
            Method::DELETE,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"),
        ),
        (
            patch.clone(),
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
        ),
        (Method::GET, format!("/v2/Services/{s}/Verifications")),
        (
            Method::DELETE,
            format!("/v2/Services/{s}/Verifications/{ve}"),
        ),
        (Method::GET, format!("/v2/Services/{s}/VerificationCheck")),
        (Method::GET, "/emulator/v1/Reset".into()),
        (Method::POST, "/emulator/v1/Outbox".into()),
        (Method::DELETE, "/emulator/v1/Clock".into()),
        (Method::POST, "/emulator/v1/Export".into()),
        (Method::POST, "/emulator/v1/Events".into()),
        (Method::POST, format!("/emulator/v1/Services/{s}/Usage")),
        (Method::OPTIONS, "/v2/Services".into()),
        (Method::from_bytes(b"FROB").unwrap(), "/v2/Services".into()),
    ];
    for (method, path) in &wrong {
        let r = send_bounded(
            c.request(method.clone(), path)
                .form(&[("FriendlyName", "x")]),
        )
        .await;
        if fails
            .check(
                &format!("{method} {path}"),
                check_status(&r, 405).and_then(|_| r.check_error()),
            )
            .is_some()
            && r.header("allow").is_none()
        {
            fails.fail(format!(
                "{method} {path}: 405 without an Allow header (RFC 9110 §15.5.6)"
            ));
        }
    }
    // None of the wrong methods did anything.
    get(&c, &format!("/v2/Services/{s}/Verifications/{ve}"))
        .await
        .expect(200);
    get(
        &c,
        &format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
    )
    .await
    .expect(200);
    fails.assert_none("unknown paths and wrong methods");
    assert_alive(&server, "unknown paths").await;
}

#[tokio::test]
async fn hostile_headers_and_request_lines_never_get_a_5xx() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let port = server.port();
    let auth = basic_value(&format!("{ACCOUNT_A}:{TOKEN_A}"));
    let mut fails = Failures::default();
    let limit = std::time::Duration::from_secs(12);

    // A Host that is not a host: refused, or never echoed into URLs.
    for host in [
        "evil.example\"><script>x</script>",
        "a b",
        "x/../../y",
        "[::1",
        &"h".repeat(300),
    ] {
        let r = send_bounded(c.request(Method::GET, "/v2/Services").header("host", host)).await;
        if r.status == 200 {
            if r.body.contains("<script>") || r.body.contains("a b") || r.body.contains("/../") {
                fails.fail(format!(
                    "Host {host:?} echoed into URLs: {}",
                    shorten(&r.body, 200)
                ));
            }
        } else {
            fails.check(&format!("Host {}", shorten(host, 200)), check_4xx(&r));
        }
    }

    let raw_cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("binary junk", (0u8..=255).cycle().take(4096).collect()),
        (
            "100 KB header",
            format!("GET /v2/Services HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        ),
        (
            "1,000 headers",
            format!(
                "GET /v2/Services HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n{}\r\n",
                (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
        ),
        (
            "Content-Length and Transfer-Encoding",
            format!(
                "POST /v2/Services HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "negative Content-Length",
            format!("POST /v2/Services HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: -5\r\nConnection: close\r\n\r\nFriendlyName=x").into_bytes(),
        ),
        (
            "two Content-Lengths",
            format!("POST /v2/Services HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 14\r\nContent-Length: 2\r\nConnection: close\r\n\r\nFriendlyName=x").into_bytes(),
        ),
        ("HTTP/1.0 without Host", format!("GET /v2/Services HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n").into_bytes()),
        ("HTTP/2 preface over HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("absolute-form URI to another host", format!("GET http://evil.example/v2/Services HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").into_bytes()),
        ("raw non-ASCII in the path", format!("GET /v2/Services/VA\u{fffd}\u{0} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").into_bytes()),
    ];
    for (what, bytes) in &raw_cases {
        let reply = raw_exchange(port, bytes, limit).await;
        match reply.status {
            Some(s) if s >= 500 => fails.fail(format!("{what}: {s}: {}", tail(&reply.text, 300))),
            Some(s)
                if (200..300).contains(&s)
                    && !what.contains("header")
                    && !what.starts_with("HTTP/1.0")
                    && !what.starts_with("absolute") =>
            {
                fails.fail(format!(
                    "{what}: accepted with {s}: {}",
                    tail(&reply.text, 300)
                ))
            }
            None if !reply.closed => fails.fail(format!(
                "{what}: neither answered nor closed within {limit:?}"
            )),
            _ => {}
        }
    }
    fails.assert_none("hostile headers");
    assert_alive(&server, "hostile headers").await;
    assert_no_panic(&server);
}

#[tokio::test]
async fn control_characters_in_path_segments_name_nothing() {
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let f = fixture(&c).await;
    let s = &f.service;
    // A NUL cannot even be held by PostgreSQL's text: such a segment names nothing (404), on
    // every resource addressed by a name rather than a SID.
    for path in [
        format!("/v2/Services/{s}/Verifications/%2B1555%00"),
        format!("/v2/Services/{s}/Verifications/%0A"),
        "/v2/SafeList/Numbers/%2B1555%00".to_owned(),
        format!("/v2/Services/{s}/MessagingConfigurations/U%00"),
        format!("/v2/Services/{s}/Entities/abcdefgh%00"),
        format!("/v2/Services/{s}/Entities/abcdefgh%00/Factors"),
        "/v1/Types/com.twilio%00".to_owned(),
    ] {
        c.get(&path).await.expect_error(404, 20404);
    }
    c.post_form(
        &format!("/v2/Services/{s}/Verifications/%2B1555%00"),
        &[("Status", "canceled")],
    )
    .await
    .expect_error(404, 20404);
    c.get("/v2/Attempts?ChannelData.To=%2B1%00")
        .await
        .expect_error(400, 60200);
    c.get("/v2/Attempts/Summary?DestinationPrefix=%00")
        .await
        .expect_error(400, 60200);
    assert_alive(&server, "control characters in paths").await;
    assert_no_panic(&server);
}
