//! Verify TOTP end to end: Entities, Factors and Challenges through the real server.
//!
//! Codes are computed here from the secret the server returns, with this file's own RFC 6238
//! implementation (independent of the server's), at the account's clock: each test first moves
//! the clock to a known time a few seconds into a 60-second boundary, so every code's time step
//! is known in advance and no test depends on when it runs.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use jsonschema::Validator;
use serde_json::{Value, json};

use crate::harness::{Client, ServerOptions, TestServer};
use crate::helpers::*;
use crate::openapi_schema::{self, assert_valid};

// --- an independent RFC 6238 -----------------------------------------------------------------

/// The code of a base32 `secret` at epoch second `at_s`.
fn code(secret: &str, alg: &str, digits: u32, period: i64, at_s: i64) -> String {
    let key = data_encoding::BASE32_NOPAD
        .decode(secret.trim_end_matches('=').as_bytes())
        .expect("the secret is base32");
    let counter = ((at_s / period) as u64).to_be_bytes();
    let digest = match alg {
        "sha1" => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
            m.update(&counter);
            m.finalize().into_bytes().to_vec()
        }
        "sha256" => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
            m.update(&counter);
            m.finalize().into_bytes().to_vec()
        }
        "sha512" => {
            let mut m = Hmac::<sha2::Sha512>::new_from_slice(&key).unwrap();
            m.update(&counter);
            m.finalize().into_bytes().to_vec()
        }
        other => panic!("unknown algorithm {other}"),
    };
    let o = (digest[digest.len() - 1] & 0xf) as usize;
    let n = (u32::from(digest[o]) & 0x7f) << 24
        | u32::from(digest[o + 1]) << 16
        | u32::from(digest[o + 2]) << 8
        | u32::from(digest[o + 3]);
    format!("{:0w$}", n % 10u32.pow(digits), w = digits as usize)
}

#[test]
fn the_tests_own_totp_matches_rfc_6238() {
    // Appendix B's SHA-1 seed "12345678901234567890", base32.
    let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(code(seed, "sha1", 8, 30, 59), "94287082");
    assert_eq!(code(seed, "sha1", 8, 30, 1_111_111_109), "07081804");
    assert_eq!(code(seed, "sha1", 8, 30, 20_000_000_000), "65353130");
}

/// A code that is certainly not `right` (same length).
fn wrong(right: &str) -> String {
    right
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect()
}

// --- helpers ----------------------------------------------------------------------------------

/// Moves the account's clock to a second 5 s past a whole minute, about a day ahead; returns it.
async fn aligned_clock(a: &Client) -> i64 {
    let target = (clock_now(a).await + 86_400) / 60 * 60 + 65;
    let now = chrono::DateTime::from_timestamp(target, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    a.post_form("/emulator/v1/Clock", &[("Now", &now)])
        .await
        .expect(200);
    target
}

fn entities_path(vs: &str) -> String {
    format!("/v2/Services/{vs}/Entities")
}

fn entity_path(vs: &str, identity: &str) -> String {
    format!("/v2/Services/{vs}/Entities/{identity}")
}

fn factors_path(vs: &str, identity: &str) -> String {
    format!("{}/Factors", entity_path(vs, identity))
}

fn challenges_path(vs: &str, identity: &str) -> String {
    format!("{}/Challenges", entity_path(vs, identity))
}

const IDENTITY: &str = "ff483d1ff591898a9942916050d2ca3f";

/// A new TOTP factor (default settings) of `IDENTITY`: its SID and secret.
async fn enrol(a: &Client, vs: &str, extra: &[(&str, &str)]) -> Value {
    let mut form = vec![("FriendlyName", "My Phone"), ("FactorType", "totp")];
    form.extend_from_slice(extra);
    a.post_form(&factors_path(vs, IDENTITY), &form)
        .await
        .expect(201)
}

/// Enrols and verifies a default factor at `t`; returns (factor SID, secret).
async fn verified_factor(a: &Client, vs: &str, t: i64) -> (String, String) {
    let f = enrol(a, vs, &[]).await;
    let (yf, secret) = (str_of(&f["sid"]), str_of(&f["binding"]["secret"]));
    let verified = a
        .post_form(
            &format!("{}/{yf}", factors_path(vs, IDENTITY)),
            &[("AuthPayload", &code(&secret, "sha1", 6, 30, t))],
        )
        .await
        .expect(200);
    assert_eq!(verified["status"], "verified");
    (yf, secret)
}

async fn challenge(a: &Client, vs: &str, yf: &str, code: &str) -> Value {
    a.post_form(
        &challenges_path(vs, IDENTITY),
        &[("FactorSid", yf), ("AuthPayload", code)],
    )
    .await
    .expect(201)
}

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/twilio_verify_v2.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

/// The validator of an operation's JSON response.
fn response(path: &str, method: &str, status: &str) -> Validator {
    let schema = &spec()["paths"][path][method]["responses"][status]["content"]["application/json"]
        ["schema"];
    assert!(schema.is_object(), "no schema for {method} {path} {status}");
    openapi_schema::compile(spec(), schema, &[])
}

// --- the flow ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_totp_factor_is_enrolled_verified_and_then_approves_challenges() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let t = aligned_clock(&a).await;

    // Creating a factor creates its entity; the answer has a real secret and its key URI.
    let f = enrol(&a, &vs, &[]).await;
    let yf = assert_sid(&f["sid"], "YF");
    assert_sid(&f["entity_sid"], "YE");
    assert_eq!(f["identity"], IDENTITY);
    assert_eq!(f["status"], "unverified");
    assert_eq!(f["factor_type"], "totp");
    assert_eq!(
        f["config"],
        json!({"alg": "sha1", "skew": 1, "code_length": 6, "time_step": 30})
    );
    let secret = str_of(&f["binding"]["secret"]);
    assert_eq!(
        data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap()
            .len(),
        20,
        "a 160-bit secret"
    );
    assert_eq!(
        f["binding"]["uri"],
        format!(
            "otpauth://totp/Bank:My%20Phone?secret={secret}&issuer=Bank&algorithm=SHA1&digits=6&period=30"
        )
    );
    let factor_path = format!("{}/{yf}", factors_path(&vs, IDENTITY));
    let fetched = a.get(&factor_path).await.expect(200);
    assert!(
        fetched.get("binding").is_none(),
        "the binding is only shown on create"
    );
    let entity = a.get(&entity_path(&vs, IDENTITY)).await.expect(200);
    assert_eq!(entity["sid"], f["entity_sid"]);

    // An unverified factor cannot be challenged.
    a.post_form(
        &challenges_path(&vs, IDENTITY),
        &[
            ("FactorSid", &yf),
            ("AuthPayload", &code(&secret, "sha1", 6, 30, t)),
        ],
    )
    .await
    .expect_error(403, 60318);

    // A wrong code leaves it unverified (200, not an error); the right one verifies it.
    let now_code = code(&secret, "sha1", 6, 30, t);
    let still = a
        .post_form(&factor_path, &[("AuthPayload", &wrong(&now_code))])
        .await
        .expect(200);
    assert_eq!(still["status"], "unverified");
    let verified = a
        .post_form(&factor_path, &[("AuthPayload", &now_code)])
        .await
        .expect(200);
    assert_eq!(verified["status"], "verified");

    // The code that verified the factor is used up: a challenge with it stays pending.
    let replayed = challenge(&a, &vs, &yf, &now_code).await;
    assert_eq!(replayed["status"], "pending");
    assert_eq!(replayed["date_responded"], Value::Null);

    // Thirty seconds later, the next code approves a challenge, once.
    advance_clock(&a, 30).await;
    let next_code = code(&secret, "sha1", 6, 30, t + 30);
    let approved = challenge(&a, &vs, &yf, &next_code).await;
    assert_sid(&approved["sid"], "YC");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["factor_sid"], yf);
    assert_eq!(approved["factor_type"], "totp");
    assert_eq!(approved["responded_reason"], "none");
    assert_date(&approved["date_responded"]);
    assert_eq!(
        assert_date(&approved["expiration_date"]) - assert_date(&approved["date_created"]),
        300,
        "five minutes to answer"
    );
    let again = challenge(&a, &vs, &yf, &next_code).await;
    assert_eq!(again["status"], "pending", "a code is accepted only once");

    // The pending challenge is answered by a later code through update.
    advance_clock(&a, 30).await;
    let pending_path = format!(
        "{}/{}",
        challenges_path(&vs, IDENTITY),
        str_of(&again["sid"])
    );
    let wrong_answer = a
        .post_form(
            &pending_path,
            &[("AuthPayload", &wrong(&code(&secret, "sha1", 6, 30, t + 60)))],
        )
        .await
        .expect(200);
    assert_eq!(wrong_answer["status"], "pending");
    let answered = a
        .post_form(
            &pending_path,
            &[("AuthPayload", &code(&secret, "sha1", 6, 30, t + 60))],
        )
        .await
        .expect(200);
    assert_eq!(answered["status"], "approved");
    assert_eq!(a.get(&pending_path).await.expect(200)["status"], "approved");

    // The list filters by status and factor.
    let approved_list = a
        .get(&format!(
            "{}?Status=approved&FactorSid={yf}",
            challenges_path(&vs, IDENTITY)
        ))
        .await
        .expect(200);
    let sids: Vec<&Value> = approved_list["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["sid"])
        .collect();
    assert_eq!(sids, [&approved["sid"], &again["sid"]]);
    let pending_list = a
        .get(&format!(
            "{}?Status=pending",
            challenges_path(&vs, IDENTITY)
        ))
        .await
        .expect(200);
    assert_eq!(pending_list["challenges"].as_array().unwrap().len(), 1);
    assert_eq!(pending_list["challenges"][0]["sid"], replayed["sid"]);
}

#[tokio::test]
async fn codes_are_those_of_the_accounts_clock_within_the_skew() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Clock").await["sid"]);
    let real = clock_now(&a).await;
    let t = aligned_clock(&a).await;
    let (yf, secret) = verified_factor(&a, &vs, t).await;

    // The code of real time (a day earlier than the account's clock) is refused.
    let of_real_time = challenge(&a, &vs, &yf, &code(&secret, "sha1", 6, 30, real)).await;
    assert_eq!(of_real_time["status"], "pending");
    // Skew 1: the next step's code is accepted now, the one after it is not.
    let two_ahead = challenge(&a, &vs, &yf, &code(&secret, "sha1", 6, 30, t + 60)).await;
    assert_eq!(two_ahead["status"], "pending");
    let one_ahead = challenge(&a, &vs, &yf, &code(&secret, "sha1", 6, 30, t + 30)).await;
    assert_eq!(one_ahead["status"], "approved");
    // Once a step is used, its own and every earlier step's code are refused.
    advance_clock(&a, 30).await;
    let earlier = challenge(&a, &vs, &yf, &code(&secret, "sha1", 6, 30, t)).await;
    assert_eq!(earlier["status"], "pending");
    let later = challenge(&a, &vs, &yf, &code(&secret, "sha1", 6, 30, t + 60)).await;
    assert_eq!(later["status"], "approved");
}

#[tokio::test]
async fn the_same_code_sent_concurrently_approves_exactly_one_challenge() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Race").await["sid"]);
    let t = aligned_clock(&a).await;
    let (yf, secret) = verified_factor(&a, &vs, t).await;
    // Several rounds, each with the next step's code sent by many requests at once.
    for round in 1..=6 {
        advance_clock(&a, 30).await;
        let fresh = code(&secret, "sha1", 6, 30, t + 30 * round);
        let tries: Vec<_> = (0..24)
            .map(|_| {
                let (a, vs, yf, fresh) = (a.clone(), vs.clone(), yf.clone(), fresh.clone());
                tokio::spawn(async move { challenge(&a, &vs, &yf, &fresh).await })
            })
            .collect();
        let mut approved = 0;
        for t in tries {
            if t.await.unwrap()["status"] == "approved" {
                approved += 1;
            }
        }
        assert_eq!(approved, 1, "round {round}: one code, one approval");
    }
}

#[tokio::test]
async fn factor_settings_come_from_the_request_else_the_service_else_twilios_defaults() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(
        &a.post_form(
            "/v2/Services",
            &[
                ("FriendlyName", "Settings"),
                ("Totp.Issuer", "Acme Corp"),
                ("Totp.TimeStep", "60"),
                ("Totp.CodeLength", "8"),
                ("Totp.Skew", "0"),
            ],
        )
        .await
        .expect(201)["sid"],
    );
    let t = aligned_clock(&a).await;
    let from_service = enrol(&a, &vs, &[]).await;
    assert_eq!(
        from_service["config"],
        json!({"alg": "sha1", "skew": 0, "code_length": 8, "time_step": 60})
    );
    let uri = str_of(&from_service["binding"]["uri"]);
    assert!(
        uri.starts_with("otpauth://totp/Acme%20Corp:My%20Phone?")
            && uri.ends_with("&issuer=Acme%20Corp&algorithm=SHA1&digits=8&period=60"),
        "{uri}"
    );

    // The request's own settings and secret win; its codes are SHA-256, 7 digits, 20 s.
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let own = enrol(
        &a,
        &vs,
        &[
            ("Binding.Secret", &secret.to_lowercase()),
            ("Config.Alg", "sha256"),
            ("Config.CodeLength", "7"),
            ("Config.TimeStep", "20"),
            ("Config.Skew", "2"),
        ],
    )
    .await;
    assert_eq!(own["binding"]["secret"], secret);
    assert_eq!(
        own["config"],
        json!({"alg": "sha256", "skew": 2, "code_length": 7, "time_step": 20})
    );
    let path = format!("{}/{}", factors_path(&vs, IDENTITY), str_of(&own["sid"]));
    let verified = a
        .post_form(&path, &[("AuthPayload", &code(secret, "sha256", 7, 20, t))])
        .await
        .expect(200);
    assert_eq!(verified["status"], "verified");

    // Changing the settings changes which codes are accepted.
    let updated = a
        .post_form(
            &path,
            &[
                ("FriendlyName", "Renamed"),
                ("Config.Alg", "sha512"),
                ("Config.CodeLength", "6"),
                ("Config.TimeStep", "30"),
                ("Config.Skew", "0"),
            ],
        )
        .await
        .expect(200);
    assert_eq!(updated["friendly_name"], "Renamed");
    assert_eq!(
        updated["config"],
        json!({"alg": "sha512", "skew": 0, "code_length": 6, "time_step": 30})
    );
    advance_clock(&a, 30).await;
    let c = challenge(
        &a,
        &vs,
        &str_of(&own["sid"]),
        &code(secret, "sha512", 6, 30, t + 30),
    )
    .await;
    assert_eq!(c["status"], "approved");

    // A default service and no settings: Twilio's defaults, the service name as issuer.
    let plain = str_of(&create_service(&a, "Plain").await["sid"]);
    let default = enrol(&a, &plain, &[]).await;
    assert_eq!(
        default["config"],
        json!({"alg": "sha1", "skew": 1, "code_length": 6, "time_step": 30})
    );
    assert!(str_of(&default["binding"]["uri"]).starts_with("otpauth://totp/Plain:My%20Phone?"));
}

#[tokio::test]
async fn entities_are_created_listed_paged_fetched_and_deleted_with_their_factors() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Entities").await["sid"]);
    let mut created = Vec::new();
    for identity in ["user-0001", "user-0002", "user-0003"] {
        let e = a
            .post_form(&entities_path(&vs), &[("Identity", identity)])
            .await
            .expect(201);
        assert_sid(&e["sid"], "YE");
        assert_eq!(e["identity"], identity);
        assert_fresh_dates(&e);
        let url = str_of(&e["url"]);
        assert!(url.ends_with(&entity_path(&vs, identity)), "{url}");
        assert_eq!(e["links"]["factors"], format!("{url}/Factors"));
        assert_eq!(e["links"]["challenges"], format!("{url}/Challenges"));
        created.push(e);
    }
    a.post_form(&entities_path(&vs), &[("Identity", "user-0001")])
        .await
        .expect_error(409, 60301);
    a.post_form(&entities_path(&vs), &[("Identity", "short")])
        .await
        .expect_error(400, 60200);
    a.post_form(&entities_path(&vs), &[])
        .await
        .expect_error(400, 20001);

    // Pages of one, by next_page_url, in creation order.
    let mut seen = Vec::new();
    let mut page = a
        .get(&format!("{}?PageSize=1", entities_path(&vs)))
        .await
        .expect(200);
    loop {
        assert_eq!(page["meta"]["key"], "entities");
        seen.extend(
            page["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sid"].clone()),
        );
        match page["meta"]["next_page_url"].as_str().map(str::to_owned) {
            Some(next) => page = a.get(&next).await.expect(200),
            None => break,
        }
    }
    let expected: Vec<Value> = created.iter().map(|e| e["sid"].clone()).collect();
    assert_eq!(seen, expected);

    // Deleting an entity deletes its factors: a new one under the identity starts empty.
    let f = a
        .post_form(
            &factors_path(&vs, "user-0002"),
            &[("FriendlyName", "phone"), ("FactorType", "totp")],
        )
        .await
        .expect(201);
    assert_eq!(f["entity_sid"], created[1]["sid"]);
    assert_deleted(&a.delete(&entity_path(&vs, "user-0002")).await);
    assert_not_found(
        &a.get(&entity_path(&vs, "user-0002")).await,
        &format!("/Services/{vs}/Entities/user-0002"),
    );
    a.get(&factors_path(&vs, "user-0002"))
        .await
        .expect_error(404, 20404);
    a.post_form(&entities_path(&vs), &[("Identity", "user-0002")])
        .await
        .expect(201);
    let factors = a.get(&factors_path(&vs, "user-0002")).await.expect(200);
    assert_eq!(factors["factors"], json!([]));
    assert_eq!(factors["meta"]["key"], "factors");

    // Another account sees none of it.
    server
        .b()
        .get(&entity_path(&vs, "user-0001"))
        .await
        .expect_error(404, 20404);
    server
        .b()
        .post_form(&entities_path(&vs), &[("Identity", "user-0009")])
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn bad_requests_get_twilios_errors() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Errors").await["sid"]);
    let t = aligned_clock(&a).await;
    let factors = factors_path(&vs, IDENTITY);
    let totp = [("FriendlyName", "phone"), ("FactorType", "totp")];
    for (extra, status, code) in [
        (vec![("FactorType", "push")], 400, 60200),
        (vec![("FactorType", "sms")], 400, 60200),
        (vec![("Config.TimeStep", "19")], 400, 60200),
        (vec![("Config.CodeLength", "9")], 400, 60200),
        (vec![("Config.Skew", "3")], 400, 60200),
        (vec![("Config.Alg", "md5")], 400, 60200),
        (vec![("Binding.Secret", "not base32 at all!")], 400, 60200),
        (vec![("Binding.Secret", "JBSWY3DP")], 400, 60200),
        (vec![("Metadata", "[1]")], 400, 60200),
    ] {
        let mut form = totp.to_vec();
        form.extend(extra.iter().copied());
        a.post_form(&factors, &form)
            .await
            .expect_error(status, code);
    }
    a.post_form(&factors, &[("FactorType", "totp")])
        .await
        .expect_error(400, 20001);
    a.post_form(&factors, &[("FriendlyName", "phone")])
        .await
        .expect_error(400, 20001);
    a.post_form(&factors_path(&vs, "bad identity"), &totp)
        .await
        .expect_error(400, 60200);

    // Unknown service, entity, factor and challenge: 404 / 20404.
    let nobody = unknown_sid("VA");
    a.post_form(&factors_path(&nobody, IDENTITY), &totp)
        .await
        .expect_error(404, 20404);
    a.get(&entity_path(&vs, IDENTITY))
        .await
        .expect_error(404, 20404);
    let (yf, secret) = verified_factor(&a, &vs, t).await;
    let unknown_factor = unknown_sid("YF");
    assert_not_found(
        &a.get(&format!("{factors}/{unknown_factor}")).await,
        &format!("/Services/{vs}/Entities/{IDENTITY}/Factors/{unknown_factor}"),
    );
    a.get(&format!("{factors}/not-a-sid"))
        .await
        .expect_error(404, 20404);
    let challenges = challenges_path(&vs, IDENTITY);
    a.get(&format!("{challenges}/{}", unknown_sid("YC")))
        .await
        .expect_error(404, 20404);
    a.post_form(&challenges, &[("FactorSid", &unknown_factor)])
        .await
        .expect_error(404, 20404);

    // Challenge parameters.
    a.post_form(&challenges, &[]).await.expect_error(400, 20001);
    a.post_form(&challenges, &[("FactorSid", "YFnope")])
        .await
        .expect_error(400, 60200);
    a.post_form(&challenges, &[("FactorSid", &yf), ("AuthPayload", "12")])
        .await
        .expect_error(400, 60200);
    a.post_form(
        &challenges,
        &[
            ("FactorSid", &yf),
            ("ExpirationDate", "2000-01-01T00:00:00Z"),
        ],
    )
    .await
    .expect_error(400, 60200);
    for bad in ["Status=finished", "Order=sideways", "FactorSid=YF1"] {
        a.get(&format!("{challenges}?{bad}"))
            .await
            .expect_error(400, 60200);
    }

    // A challenge not answered within its expiration date expires: 403 / 60323.
    let open = a
        .post_form(&challenges, &[("FactorSid", &yf)])
        .await
        .expect(201);
    assert_eq!(open["status"], "pending");
    let open_path = format!("{challenges}/{}", str_of(&open["sid"]));
    a.post_form(&open_path, &[]).await.expect_error(400, 20001);
    advance_clock(&a, 300).await;
    assert_eq!(a.get(&open_path).await.expect(200)["status"], "expired");
    a.post_form(
        &open_path,
        &[("AuthPayload", &code(&secret, "sha1", 6, 30, t + 300))],
    )
    .await
    .expect_error(403, 60323);

    // A deleted factor is gone, with its challenges.
    assert_deleted(&a.delete(&format!("{factors}/{yf}")).await);
    a.get(&format!("{factors}/{yf}"))
        .await
        .expect_error(404, 20404);
    a.get(&open_path).await.expect_error(404, 20404);
}

#[tokio::test]
async fn challenges_page_in_either_order() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Paging").await["sid"]);
    let t = aligned_clock(&a).await;
    let (yf, _) = verified_factor(&a, &vs, t).await;
    let mut sids = Vec::new();
    for _ in 0..5 {
        let c = a
            .post_form(&challenges_path(&vs, IDENTITY), &[("FactorSid", &yf)])
            .await
            .expect(201);
        sids.push(c["sid"].clone());
    }
    for (order, expected) in [
        ("asc", sids.clone()),
        ("desc", sids.iter().rev().cloned().collect()),
    ] {
        let mut seen = Vec::new();
        let mut page = a
            .get(&format!(
                "{}?Order={order}&PageSize=2",
                challenges_path(&vs, IDENTITY)
            ))
            .await
            .expect(200);
        loop {
            assert_eq!(page["meta"]["key"], "challenges");
            seen.extend(
                page["challenges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["sid"].clone()),
            );
            match page["meta"]["next_page_url"].as_str().map(str::to_owned) {
                Some(next) => page = a.get(&next).await.expect(200),
                None => break,
            }
        }
        assert_eq!(seen, expected, "Order={order}");
    }
}

#[tokio::test]
async fn a_reset_forgets_entities_and_a_deleted_service_takes_them_along() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Reset").await["sid"]);
    enrol(&a, &vs, &[]).await;
    a.post_form("/emulator/v1/Reset", &[("Scope", "counters")])
        .await
        .expect(204);
    a.get(&entity_path(&vs, IDENTITY))
        .await
        .expect_error(404, 20404);

    // A service with entities, factors and challenges can be deleted (they go with it).
    let t = aligned_clock(&a).await;
    let (yf, _) = verified_factor(&a, &vs, t).await;
    a.post_form(&challenges_path(&vs, IDENTITY), &[("FactorSid", &yf)])
        .await
        .expect(201);
    assert_deleted(&a.delete(&service_path(&vs)).await);
    a.get(&entity_path(&vs, IDENTITY))
        .await
        .expect_error(404, 20404);
}

#[tokio::test]
async fn entities_factors_and_challenges_match_twilios_schemas() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Schema").await["sid"]);
    let t = aligned_clock(&a).await;
    const ENTITIES: &str = "/v2/Services/{ServiceSid}/Entities";
    const ENTITY: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}";
    const FACTORS: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors";
    const FACTOR: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors/{Sid}";
    const CHALLENGES: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges";
    const CHALLENGE: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges/{Sid}";

    let e = a
        .post_form(&entities_path(&vs), &[("Identity", "user-0001")])
        .await
        .expect(201);
    assert_valid(&response(ENTITIES, "post", "201"), &e, "a created entity");
    assert_valid(
        &response(ENTITY, "get", "200"),
        &a.get(&entity_path(&vs, "user-0001")).await.expect(200),
        "a fetched entity",
    );
    assert_valid(
        &response(ENTITIES, "get", "200"),
        &a.get(&format!("{}?PageSize=1", entities_path(&vs)))
            .await
            .expect(200),
        "an entities page",
    );

    let f = enrol(&a, &vs, &[("Metadata", r#"{"os": "Android"}"#)]).await;
    assert_eq!(f["metadata"], json!({"os": "Android"}));
    assert_valid(&response(FACTORS, "post", "201"), &f, "a created factor");
    let secret = str_of(&f["binding"]["secret"]);
    let path = format!("{}/{}", factors_path(&vs, IDENTITY), str_of(&f["sid"]));
    assert_valid(
        &response(FACTOR, "get", "200"),
        &a.get(&path).await.expect(200),
        "a fetched factor",
    );
    assert_valid(
        &response(FACTOR, "post", "200"),
        &a.post_form(&path, &[("AuthPayload", &code(&secret, "sha1", 6, 30, t))])
            .await
            .expect(200),
        "a verified factor",
    );
    assert_valid(
        &response(FACTORS, "get", "200"),
        &a.get(&factors_path(&vs, IDENTITY)).await.expect(200),
        "a factors page",
    );

    let c = a
        .post_form(
            &challenges_path(&vs, IDENTITY),
            &[
                ("FactorSid", &str_of(&f["sid"])),
                ("Details.Message", "Sign in?"),
                ("HiddenDetails", r#"{"ip": "172.168.1.234"}"#),
            ],
        )
        .await
        .expect(201);
    assert_eq!(c["hidden_details"], json!({"ip": "172.168.1.234"}));
    assert_valid(
        &response(CHALLENGES, "post", "201"),
        &c,
        "a created challenge",
    );
    let c_path = format!("{}/{}", challenges_path(&vs, IDENTITY), str_of(&c["sid"]));
    advance_clock(&a, 30).await;
    let answered = a
        .post_form(
            &c_path,
            &[
                ("AuthPayload", &code(&secret, "sha1", 6, 30, t + 30)),
                ("Metadata", r#"{"os": "iOS"}"#),
            ],
        )
        .await
        .expect(200);
    assert_eq!(answered["status"], "approved");
    assert_eq!(answered["metadata"], json!({"os": "iOS"}));
    assert_valid(
        &response(CHALLENGE, "post", "200"),
        &answered,
        "an answered challenge",
    );
    assert_valid(
        &response(CHALLENGE, "get", "200"),
        &a.get(&c_path).await.expect(200),
        "a fetched challenge",
    );
    assert_valid(
        &response(CHALLENGES, "get", "200"),
        &a.get(&format!("{}?PageSize=1", challenges_path(&vs, IDENTITY)))
            .await
            .expect(200),
        "a challenges page",
    );
}

#[tokio::test]
async fn factors_and_their_last_used_step_survive_a_restart() {
    let mut first = TestServer::start(ServerOptions::new()).await;
    let a = first.a();
    let service = create_service(&a, "Restart").await;
    let vs = str_of(&service["sid"]);
    // The service's `links.entities` is the Entities list.
    let entities = a
        .get(&str_of(&service["links"]["entities"]))
        .await
        .expect(200);
    assert_eq!(entities["entities"], json!([]));
    let t = aligned_clock(&a).await;
    let (yf, secret) = verified_factor(&a, &vs, t).await;
    advance_clock(&a, 30).await;
    let next = code(&secret, "sha1", 6, 30, t + 30);
    assert_eq!(challenge(&a, &vs, &yf, &next).await["status"], "approved");
    assert!(first.terminate().await.success());

    let second = TestServer::start(ServerOptions::new().database_of(&first)).await;
    let a = second.a();
    let factor = a
        .get(&format!("{}/{yf}", factors_path(&vs, IDENTITY)))
        .await
        .expect(200);
    assert_eq!(factor["status"], "verified");
    // The used step is remembered: the same code is still refused, the next one approves.
    assert_eq!(challenge(&a, &vs, &yf, &next).await["status"], "pending");
    advance_clock(&a, 30).await;
    let after = code(&secret, "sha1", 6, 30, t + 60);
    assert_eq!(challenge(&a, &vs, &yf, &after).await["status"], "approved");
    let list = a.get(&challenges_path(&vs, IDENTITY)).await.expect(200);
    assert_eq!(list["challenges"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn another_account_reaches_none_of_an_accounts_entities_factors_or_challenges() {
    let server = TestServer::start(ServerOptions::new()).await;
    let (a, b) = (server.a(), server.b());
    let vs = str_of(&create_service(&a, "Tenant A").await["sid"]);
    let t = aligned_clock(&a).await;
    let (yf, secret) = verified_factor(&a, &vs, t).await;
    let yc = str_of(
        &a.post_form(&challenges_path(&vs, IDENTITY), &[("FactorSid", &yf)])
            .await
            .expect(201)["sid"],
    );
    let next = code(&secret, "sha1", 6, 30, t + 30);
    let (entity, factors, challenges) = (
        entity_path(&vs, IDENTITY),
        factors_path(&vs, IDENTITY),
        challenges_path(&vs, IDENTITY),
    );
    let factor = format!("{factors}/{yf}");
    let one_challenge = format!("{challenges}/{yc}");
    let totp = [("FriendlyName", "intruder"), ("FactorType", "totp")];
    for reply in [
        b.get(&entities_path(&vs)).await,
        b.post_form(&entities_path(&vs), &[("Identity", "intruder-1")])
            .await,
        b.get(&entity).await,
        b.delete(&entity).await,
        b.get(&factors).await,
        b.post_form(&factors, &totp).await,
        b.get(&factor).await,
        b.post_form(&factor, &[("FriendlyName", "taken over")])
            .await,
        b.delete(&factor).await,
        b.get(&challenges).await,
        b.post_form(&challenges, &[("FactorSid", &yf), ("AuthPayload", &next)])
            .await,
        b.get(&one_challenge).await,
        b.post_form(&one_challenge, &[("AuthPayload", &next)]).await,
    ] {
        reply.expect_error(404, 20404);
    }
    // A's world is untouched: the code B tried is still unused, the challenge still pending.
    let f = a.get(&factor).await.expect(200);
    assert_eq!(f["friendly_name"], "My Phone");
    assert_eq!(a.get(&one_challenge).await.expect(200)["status"], "pending");
    advance_clock(&a, 30).await;
    let answered = a
        .post_form(&one_challenge, &[("AuthPayload", &next)])
        .await
        .expect(200);
    assert_eq!(answered["status"], "approved");
    let list = a.get(&entities_path(&vs)).await.expect(200);
    assert_eq!(list["entities"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn hostile_values_on_every_totp_route_never_get_a_5xx() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Hostile").await["sid"]);
    let t = aligned_clock(&a).await;
    let (yf, _) = verified_factor(&a, &vs, t).await;
    let yc = str_of(
        &a.post_form(&challenges_path(&vs, IDENTITY), &[("FactorSid", &yf)])
            .await
            .expect(201)["sid"],
    );
    let names = [
        "Identity",
        "FriendlyName",
        "FactorType",
        "Binding.Secret",
        "Config.Alg",
        "Config.CodeLength",
        "Config.TimeStep",
        "Config.Skew",
        "Metadata",
        "AuthPayload",
        "FactorSid",
        "ExpirationDate",
        "Details.Message",
        "HiddenDetails",
    ];
    let values = [
        String::new(),
        " ".into(),
        "0".into(),
        "-1".into(),
        "99999999999999999999".into(),
        "totp".into(),
        "sha1".into(),
        "\u{0}".into(),
        "'; DROP TABLE factors; --".into(),
        "{\"a\": 1}".into(),
        "{\"a\": \"b\"}".into(),
        "[]".into(),
        "null".into(),
        "x".repeat(2000),
        "2999-01-01T00:00:00Z".into(),
        "2000-01-01T00:00:00.000+05:00".into(),
        yf.clone(),
        "YF".to_owned() + &"A".repeat(32),
        "ü€😀".into(),
        "=====".into(),
        "JBSWY3DPEHPK3PXP====".into(),
    ];
    let paths = [
        entities_path(&vs),
        entity_path(&vs, IDENTITY),
        factors_path(&vs, IDENTITY),
        format!("{}/{yf}", factors_path(&vs, IDENTITY)),
        challenges_path(&vs, IDENTITY),
        format!("{}/{yc}", challenges_path(&vs, IDENTITY)),
        factors_path(&vs, "user-0009"),
    ];
    // A deterministic walk over (path, three parameters with values).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..400 {
        let path = &paths[next(paths.len())];
        let form: Vec<(&str, &str)> = (0..3)
            .map(|_| {
                (
                    names[next(names.len())],
                    values[next(values.len())].as_str(),
                )
            })
            .collect();
        let reply = a.post_form(path, &form).await;
        assert!(reply.status < 500, "{}", reply.context());
        let query = serde_urlencoded::to_string(&form).unwrap();
        let reply = a.get(&format!("{path}?{query}")).await;
        assert!(reply.status < 500, "{}", reply.context());
    }
    // Still serving, and consistent.
    assert_eq!(
        a.get(&format!("{}/{yf}", factors_path(&vs, IDENTITY)))
            .await
            .expect(200)["sid"],
        yf
    );
}
