//! A bounded, seeded fuzz pass through HTTP: random form bodies and query strings, built from
//! random bytes and real parameter names, sent to every endpoint. No 5xx, a Twilio body for every
//! 4xx, JSON for every success, and the server stays up.
//!
//! `VERILIMIT_FUZZ_CASES` (default 300) and `VERILIMIT_FUZZ_SEED` (default: from the clock,
//! printed) replay or lengthen it.

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::harness::{ServerOptions, TestServer};
use crate::util::*;

const NAMES: &[&str] = &[
    "To",
    "Channel",
    "RateLimits",
    "Max",
    "Interval",
    "FriendlyName",
    "UniqueName",
    "Description",
    "CodeLength",
    "CustomCodeEnabled",
    "CustomCode",
    "Code",
    "VerificationSid",
    "Status",
    "Locale",
    "Amount",
    "Payee",
    "ChannelConfiguration",
    "PageSize",
    "Page",
    "PageToken",
    "AdvanceSeconds",
    "Now",
    "Scope",
    "ServiceSid",
    "RateLimit",
    "Value",
    "Push.IncludeDate",
    "Totp.TimeStep",
    "LookupEnabled",
    "SkipSmsToLandlines",
    "DoNotShareWarningEnabled",
    "PhoneNumber",
    "Country",
    "MessagingServiceSid",
    "TemplateSid",
    "ChannelData.To",
    "DateCreatedAfter",
    "DateCreatedBefore",
    "DestinationPrefix",
    "VerifyServiceSid",
    "EventTypes",
    "WebhookUrl",
    "Version",
    "Identity",
    "FactorType",
    "FactorFriendlyName",
    "Ttl",
    "AuthPayload",
    "FactorSid",
    "SinkSid",
    "SinkType",
    "SinkConfiguration",
    "Types",
    "Type",
];

const WORDS: &[&str] = &[
    "",
    "sms",
    "email",
    "call",
    "whatsapp",
    "auto",
    "canceled",
    "approved",
    "true",
    "false",
    "counters",
    "all",
    "+15551234567",
    "user@example.com",
    "0",
    "1",
    "-1",
    "6",
    "60",
    "86400",
    "86401",
    "1000",
    "1001",
    "9223372036854775807",
    "9223372036854775808",
    "1e3",
    "1.5",
    "0x10",
    " 5",
    "2031-01-01T00:00:00Z",
    "'; DROP TABLE services; --",
    "PA",
    "VA00000000000000000000000000000000",
    "ip",
    "hot",
];

struct Ids {
    service: String,
    rate_limit: String,
    bucket: String,
    verification: String,
}

fn json_ish(rng: &mut Rng, depth: usize) -> String {
    match rng.below(if depth > 3 { 4 } else { 9 }) {
        0 => format!("\"{}\"", rng.pick(WORDS)),
        1 => rng
            .pick(&["1", "-0", "1e999", "null", "true", "[]", "{}", "1.5"])
            .to_string(),
        2 => String::from_utf8_lossy(&rng.bytes(12)).into_owned(),
        3 => rng
            .pick(&["{", "[", "\"", "}", "]", ":", ",", "\\u0000", "\\ud800"])
            .repeat(1 + rng.below(50)),
        4 | 5 => {
            let n = rng.below(4);
            let entries: Vec<String> = (0..n)
                .map(|_| {
                    let key = if rng.chance(70) {
                        rng.pick(&["ip", "hot", "phone"]).to_string()
                    } else {
                        rng.pick(WORDS).to_string()
                    };
                    format!("\"{key}\": {}", json_ish(rng, depth + 1))
                })
                .collect();
            let closing = if rng.chance(90) { "}" } else { "" };
            format!("{{{}{closing}", entries.join(","))
        }
        6 => format!("[{}]", json_ish(rng, depth + 1)),
        7 => json!({"ip": rng.pick(WORDS)}).to_string(),
        _ => json!({"ip": rng.next_u64() % 1000}).to_string(),
    }
}

/// One value, already encoded for a form body or query string.
fn value(rng: &mut Rng, name: &str, ids: &Ids) -> String {
    match rng.below(10) {
        0 | 1 => {
            let word: &&str = rng.pick(WORDS);
            enc(word)
        }
        2 => enc_bytes(&rng.bytes(24)),
        // Raw bytes, including & = % + and invalid percent escapes.
        3 => rng
            .bytes(16)
            .into_iter()
            .map(|b| match b % 8 {
                0 => '&',
                1 => '=',
                2 => '%',
                3 => '+',
                _ => (b'a' + b % 26) as char,
            })
            .collect(),
        4 | 5 if name == "RateLimits" => enc(&json_ish(rng, 0)),
        4 => enc(&json_ish(rng, 0)),
        6 => {
            let all = [
                ids.service.as_str(),
                &ids.rate_limit,
                &ids.bucket,
                &ids.verification,
            ];
            let id: &&str = rng.pick(&all);
            enc(id)
        }
        7 => format!("{}", rng.next_u64() as i64 % 100_000),
        8 => enc(&"9".repeat(1 + rng.below(40))),
        _ => enc(&format!("+1555{:07}", rng.below(10_000_000))),
    }
}

fn params(rng: &mut Rng, ids: &Ids) -> String {
    let n = rng.below(7);
    let mut parts = Vec::new();
    for _ in 0..n {
        let name = if rng.chance(85) {
            (*rng.pick(NAMES)).to_string()
        } else {
            enc_bytes(&rng.bytes(8))
        };
        let v = value(rng, &name, ids);
        parts.push(format!("{name}={v}"));
    }
    if rng.chance(5) {
        parts.push(enc_bytes(&rng.bytes(40)));
    }
    parts.join("&")
}

#[tokio::test]
async fn random_forms_and_queries_on_every_endpoint_never_get_a_5xx() {
    let cases = env_number("VERILIMIT_FUZZ_CASES", 300) as usize;
    let seed = seed_from_env("VERILIMIT_FUZZ_SEED");
    let mut rng = Rng::new(seed);
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let Chain {
        service,
        rate_limits: rls,
        ..
    } = create_chain(
        &c,
        &[("FriendlyName", "fuzz")],
        &[("ip", &[(5, 60)]), ("hot", &[(1, 3600)])],
    )
    .await;
    let v = c
        .post_form(
            &format!("/v2/Services/{service}/Verifications"),
            &[("To", "+15550001111"), ("Channel", "sms")],
        )
        .await
        .expect(201);
    let ids = Ids {
        service: service.clone(),
        rate_limit: rls[0].sid.clone(),
        bucket: rls[0].buckets[0].sid.clone(),
        verification: v["sid"].as_str().unwrap().to_owned(),
    };
    let (s, rk, bl, ve) = (
        &ids.service,
        &ids.rate_limit,
        &ids.bucket,
        &ids.verification,
    );
    let endpoints: Vec<(Method, String)> = vec![
        (Method::GET, "/v2/Services".into()),
        (Method::POST, "/v2/Services".into()),
        (Method::GET, format!("/v2/Services/{s}")),
        (Method::POST, format!("/v2/Services/{s}")),
        (Method::GET, format!("/v2/Services/{s}/RateLimits")),
        (Method::POST, format!("/v2/Services/{s}/RateLimits")),
        (Method::GET, format!("/v2/Services/{s}/RateLimits/{rk}")),
        (Method::POST, format!("/v2/Services/{s}/RateLimits/{rk}")),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"),
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets"),
        ),
        (
            Method::GET,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/RateLimits/{rk}/Buckets/{bl}"),
        ),
        (Method::POST, format!("/v2/Services/{s}/Verifications")),
        (Method::GET, format!("/v2/Services/{s}/Verifications/{ve}")),
        (Method::POST, format!("/v2/Services/{s}/Verifications/{ve}")),
        (Method::POST, format!("/v2/Services/{s}/VerificationCheck")),
        (Method::GET, "/v2/Attempts".into()),
        (Method::GET, "/v2/Attempts/Summary".into()),
        (Method::POST, "/v2/SafeList/Numbers".into()),
        (Method::GET, "/v2/SafeList/Numbers/%2B15550001111".into()),
        (Method::GET, "/v2/Templates".into()),
        (Method::GET, "/v2/Forms/form-push".into()),
        (
            Method::GET,
            format!("/v2/Services/{s}/MessagingConfigurations"),
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/MessagingConfigurations"),
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/MessagingConfigurations/US"),
        ),
        (Method::GET, format!("/v2/Services/{s}/Webhooks")),
        (Method::POST, format!("/v2/Services/{s}/Webhooks")),
        (Method::POST, format!("/v2/Services/{s}/AccessTokens")),
        (Method::GET, format!("/v2/Services/{s}/Entities")),
        (Method::POST, format!("/v2/Services/{s}/Entities")),
        (
            Method::POST,
            format!("/v2/Services/{s}/Entities/fuzz-entity-0001/Factors"),
        ),
        (
            Method::POST,
            format!("/v2/Services/{s}/Entities/fuzz-entity-0001/Challenges"),
        ),
        (Method::GET, "/v1/Types".into()),
        (Method::GET, "/v1/Sinks".into()),
        (Method::POST, "/v1/Sinks".into()),
        (Method::GET, "/v1/Subscriptions".into()),
        (Method::POST, "/v1/Subscriptions".into()),
        (Method::GET, "/emulator/v1/Outbox".into()),
        (Method::GET, "/emulator/v1/Clock".into()),
        (Method::POST, "/emulator/v1/Clock".into()),
        (Method::GET, format!("/emulator/v1/Services/{s}/Usage")),
        (Method::GET, "/emulator/v1/Export".into()),
        (Method::GET, "/emulator/v1/Events".into()),
    ];
    let mut fails = Failures::default();
    for case in 0..cases {
        let (method, path) = rng.pick(&endpoints).clone();
        let query = params(&mut rng, &ids);
        let url = if query.is_empty() || (method == Method::POST && rng.chance(70)) {
            path.clone()
        } else {
            format!("{path}?{query}")
        };
        let mut rb = c.request(method.clone(), &url);
        if method == Method::POST {
            let body = if rng.chance(10) {
                rng.bytes(300)
            } else {
                params(&mut rng, &ids).into_bytes()
            };
            rb = rb
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
        }
        let what = format!(
            "case {case} (VERILIMIT_FUZZ_SEED={seed}): {method} {}",
            shorten(&url, 200)
        );
        let r = match try_send(rb.timeout(HOSTILE_TIMEOUT)).await {
            Ok(r) => r,
            Err(e) => panic!(
                "{what}: no answer: {e}\nserver log tail:\n{}",
                tail(&server.stderr(), 3000)
            ),
        };
        if r.status >= 500 {
            fails.fail(format!("{what}: {}", r.context()));
        } else if r.status >= 400 {
            fails.check(&what, r.check_error());
        } else if r.status != 204 {
            fails.check(&what, check_status(&r, r.status));
        }
        if case % 100 == 99 {
            assert_alive(&server, &what).await;
        }
    }
    fails.assert_none("fuzz");
    assert_alive(&server, "the fuzz pass").await;
    assert_no_panic(&server);
}
