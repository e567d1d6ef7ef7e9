//! Verify Push end to end through the real server, with this test playing the phone: it holds
//! its own P-256 keys (`ring`), enrols a factor with an access token as the Verify Push SDK does
//! (Basic `token:<access token>`), verifies it by signing the factor SID, reads a challenge's
//! `Twilio-Verify-Signature-Fields` and answers with an ES256 JWT over those fields and `status`
//! (twilio/twilio-verify-android `PushChallengeProcessor.kt`, `JwtGenerator.kt`). Also the
//! control plane's simulated device, which does the same server-side.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use serde_json::{Map, Value, json};

use crate::harness::{Client, Reply, ServerOptions, TestServer};
use crate::helpers::*;
use crate::openapi_schema::{assert_valid, verify_response};

const IDENTITY: &str = "ff483d1ff591898a9942916050d2ca3f";
const FACTORS: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors";
const FACTOR: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Factors/{Sid}";
const CHALLENGES: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges";
const CHALLENGE: &str = "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges/{Sid}";
const NOTIFICATIONS: &str =
    "/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges/{ChallengeSid}/Notifications";

/// A device key, as the test's phone holds it.
struct Key {
    pkcs8: Vec<u8>,
}

impl Key {
    fn new() -> Self {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        Key {
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    fn pair(&self, alg: &'static ring::signature::EcdsaSigningAlgorithm) -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8, &SystemRandom::new()).unwrap()
    }

    /// Base64 X.509 SubjectPublicKeyInfo DER, as `Binding.PublicKey`.
    fn public_key(&self) -> String {
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        der.extend_from_slice(
            self.pair(&ECDSA_P256_SHA256_ASN1_SIGNING)
                .public_key()
                .as_ref(),
        );
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    /// Base64 DER ECDSA-SHA256 signature (`AuthPayload` of a factor).
    fn sign(&self, message: &str) -> String {
        let sig = self
            .pair(&ECDSA_P256_SHA256_ASN1_SIGNING)
            .sign(&SystemRandom::new(), message.as_bytes())
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }

    /// An ES256 compact JWS of `payload`.
    fn jwt(&self, payload: &Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let input = format!(
            "{}.{}",
            b64(json!({"typ": "JWT", "alg": "ES256"}).to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let sig = self
            .pair(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

impl Key {
    /// The JWT the SDK signs its own calls with, as Basic `token:<JWT>`
    /// (twilio-verify-android `networking/AuthenticationProvider.kt`: header `cty`
    /// `twilio-pba;v=1` and `kid` = the factor's `config.credential_sid`, payload `sub` = the
    /// account SID, `exp` = now + 10 min, `nbf` = now; `data/jwt/JwtGenerator.kt` adds `typ` and
    /// `alg`, `JwtSigner.kt` signs ES256 as raw r‖s).
    fn device_jwt(&self, kid: &str, sub: &str, nbf: i64, exp: i64) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let header = json!({"cty": "twilio-pba;v=1", "kid": kid, "typ": "JWT", "alg": "ES256"});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(json!({"sub": sub, "exp": exp, "nbf": nbf})
                .to_string()
                .as_bytes())
        );
        let sig = self
            .pair(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

fn factors_path(vs: &str) -> String {
    format!("/v2/Services/{vs}/Entities/{IDENTITY}/Factors")
}

fn challenges_path(vs: &str) -> String {
    format!("/v2/Services/{vs}/Entities/{IDENTITY}/Challenges")
}

async fn access_token(a: &Client, vs: &str, identity: &str) -> String {
    let t = a
        .post_form(
            &format!("/v2/Services/{vs}/AccessTokens"),
            &[("Identity", identity), ("FactorType", "push")],
        )
        .await
        .expect(201);
    str_of(&t["token"])
}

/// The form the Android SDK sends to create a factor (`FactorAPIClient.kt` `createFactorBody`).
fn enrol_form(key: &Key) -> Vec<(&'static str, String)> {
    vec![
        ("FriendlyName", "Pixel".into()),
        ("FactorType", "push".into()),
        ("Binding.PublicKey", key.public_key()),
        ("Binding.Alg", "ES256".into()),
        ("Config.SdkVersion", "0.12.0".into()),
        ("Config.AppId", "com.example.bank".into()),
        ("Config.NotificationPlatform", "none".into()),
    ]
}

async fn enrol(c: &Client, vs: &str, key: &Key) -> Reply {
    let form = enrol_form(key);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    c.post_form(&factors_path(vs), &form).await
}

/// Enrols (with the account's credentials) and verifies a push factor of `key`.
async fn verified_factor(a: &Client, vs: &str, key: &Key) -> String {
    let yf = str_of(&enrol(a, vs, key).await.expect(201)["sid"]);
    let f = a
        .post_form(
            &format!("{}/{yf}", factors_path(vs)),
            &[("AuthPayload", &key.sign(&yf))],
        )
        .await
        .expect(200);
    assert_eq!(f["status"], "verified");
    yf
}

async fn push_challenge(a: &Client, vs: &str, yf: &str) -> Value {
    a.post_form(
        &challenges_path(vs),
        &[
            ("FactorSid", yf),
            ("Details.Message", "Log in to Bank?"),
            ("Details.Fields", r#"{"label": "IP", "value": "10.0.0.1"}"#),
            ("Details.Fields", r#"{"label":"Browser","value":"Firefox"}"#),
            ("HiddenDetails", r#"{"session": "s-1"}"#),
        ],
    )
    .await
    .expect(201)
}

/// What the SDK does to answer: fetch, read the signature fields, sign them with `status`.
async fn signed_answer(a: &Client, path: &str, key: &Key, status: &str) -> String {
    let fetched = a.get(path).await;
    let body = fetched.expect(200);
    let fields = fetched
        .headers
        .get("Twilio-Verify-Signature-Fields")
        .expect("a pending push challenge names its signature fields")
        .to_str()
        .unwrap()
        .to_owned();
    let mut payload = Map::new();
    for f in fields.split(',') {
        assert!(body.get(f).is_some(), "{f} is a field of the challenge");
        payload.insert(f.into(), body[f].clone());
    }
    payload.insert("status".into(), json!(status));
    key.jwt(&Value::Object(payload))
}

#[tokio::test]
async fn a_push_factor_enrolled_with_an_access_token_is_verified_and_approves_a_challenge() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let key = Key::new();

    // The SDK enrols with Basic token:<access token>.
    let phone = server.basic("token", &access_token(&a, &vs, IDENTITY).await);
    let f = enrol(&phone, &vs, &key).await.expect(201);
    assert_valid(
        &verify_response(FACTORS, "post", "201"),
        &f,
        "a push factor",
    );
    let yf = assert_sid(&f["sid"], "YF");
    assert_eq!(f["factor_type"], "push");
    assert_eq!(f["status"], "unverified");
    assert_eq!(f["identity"], IDENTITY);
    assert_eq!(
        f["binding"],
        json!({"public_key": key.public_key(), "alg": "ES256"})
    );
    assert_eq!(f["config"]["sdk_version"], "0.12.0");
    assert_eq!(f["config"]["app_id"], "com.example.bank");
    assert_eq!(f["config"]["notification_platform"], "none");
    assert_sid(&f["config"]["credential_sid"], "CR");
    let factor_path = format!("{}/{yf}", factors_path(&vs));
    let fetched = a.get(&factor_path).await.expect(200);
    assert_valid(
        &verify_response(FACTOR, "get", "200"),
        &fetched,
        "a push factor",
    );
    assert!(fetched.get("binding").is_none());

    // An unverified factor cannot be challenged.
    a.post_form(
        &challenges_path(&vs),
        &[("FactorSid", &yf), ("Details.Message", "Hi")],
    )
    .await
    .expect_error(403, 60318);

    // Another key's signature, or this key's signature of something else, does not verify it.
    let other = Key::new();
    for wrong in [other.sign(&yf), key.sign("YF-something-else")] {
        let still = a
            .post_form(&factor_path, &[("AuthPayload", &wrong)])
            .await
            .expect(200);
        assert_eq!(still["status"], "unverified");
    }
    let verified = a
        .post_form(&factor_path, &[("AuthPayload", &key.sign(&yf))])
        .await
        .expect(200);
    assert_valid(
        &verify_response(FACTOR, "post", "200"),
        &verified,
        "verified",
    );
    assert_eq!(verified["status"], "verified");

    // The application creates a challenge; it stays pending until the device answers.
    let c = push_challenge(&a, &vs, &yf).await;
    assert_valid(
        &verify_response(CHALLENGES, "post", "201"),
        &c,
        "a push challenge",
    );
    let yc = assert_sid(&c["sid"], "YC");
    assert_eq!(c["status"], "pending");
    assert_eq!(c["factor_type"], "push");
    assert_eq!(
        c["details"],
        json!({"message": "Log in to Bank?", "fields": [
            {"label": "IP", "value": "10.0.0.1"},
            {"label": "Browser", "value": "Firefox"},
        ]})
    );
    assert_eq!(c["hidden_details"], json!({"session": "s-1"}));
    let path = format!("{}/{yc}", challenges_path(&vs));
    let fetched = a.get(&path).await;
    assert_valid(
        &verify_response(CHALLENGE, "get", "200"),
        &fetched.expect(200),
        "a fetched push challenge",
    );

    // A JWT from another key, or over fields that differ, or with no final status, is refused.
    let by_other = signed_answer(&a, &path, &other, "approved").await;
    a.post_form(&path, &[("AuthPayload", &by_other)])
        .await
        .expect_error(400, 60200);
    let mut tampered = Map::new();
    tampered.insert("sid".into(), json!(yc));
    tampered.insert("status".into(), json!("approved"));
    a.post_form(
        &path,
        &[("AuthPayload", &key.jwt(&Value::Object(tampered)))],
    )
    .await
    .expect_error(400, 60200);
    let pending = signed_answer(&a, &path, &key, "pending").await;
    a.post_form(&path, &[("AuthPayload", &pending)])
        .await
        .expect_error(400, 60200);
    assert_eq!(a.get(&path).await.expect(200)["status"], "pending");

    // The device's own answer approves it.
    let answer = signed_answer(&a, &path, &key, "approved").await;
    let approved = a
        .post_form(&path, &[("AuthPayload", &answer)])
        .await
        .expect(200);
    assert_valid(
        &verify_response(CHALLENGE, "post", "200"),
        &approved,
        "approved",
    );
    assert_eq!(approved["status"], "approved");
    assert_date(&approved["date_responded"]);
    let after = a.get(&path).await;
    assert_eq!(after.expect(200)["status"], "approved");
    assert!(
        after
            .headers
            .get("Twilio-Verify-Signature-Fields")
            .is_none(),
        "only a pending challenge asks for a signature"
    );
}

#[tokio::test]
async fn an_access_token_enrols_only_its_own_identity_and_service_within_its_ttl() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let other_vs = str_of(&create_service(&a, "Other").await["sid"]);
    let key = Key::new();
    let token = access_token(&a, &vs, IDENTITY).await;

    // Another identity's token, another service's token, a forged token, and a TOTP factor.
    let theirs = access_token(&a, &vs, "someone-else-0001").await;
    enrol(&server.basic("token", &theirs), &vs, &key)
        .await
        .expect_error(401, 20003);
    let elsewhere = access_token(&a, &other_vs, IDENTITY).await;
    enrol(&server.basic("token", &elsewhere), &vs, &key)
        .await
        .expect_error(401, 20003);
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    enrol(&server.basic("token", &forged), &vs, &key)
        .await
        .expect_error(401, 20003);
    enrol(&server.basic("token", "not-a-jwt"), &vs, &key)
        .await
        .expect_error(401, 20003);
    server
        .basic("token", &token)
        .post_form(
            &factors_path(&vs),
            &[("FriendlyName", "x"), ("FactorType", "totp")],
        )
        .await
        .expect_error(401, 20003);
    // Nor does a token give access to anything else.
    server
        .basic("token", &token)
        .get(&factors_path(&vs))
        .await
        .expect_error(401, 20003);

    // The default TTL is 60 s of the account's clock: at 59 s it enrols, at 60 s it does not.
    advance_clock(&a, 59).await;
    enrol(&server.basic("token", &token), &vs, &key)
        .await
        .expect(201);
    advance_clock(&a, 1).await;
    enrol(&server.basic("token", &token), &vs, &key)
        .await
        .expect_error(401, 20003);

    // Bad bindings are the caller's error.
    let mut form = enrol_form(&key);
    form[2].1 = "bm90IGEga2V5".into();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    a.post_form(&factors_path(&vs), &form)
        .await
        .expect_error(400, 60200);
    a.post_form(
        &factors_path(&vs),
        &[("FriendlyName", "x"), ("FactorType", "push")],
    )
    .await
    .expect_error(400, 60200);
}

#[tokio::test]
async fn a_push_challenge_can_be_denied_and_expires_unanswered() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let key = Key::new();
    let yf = verified_factor(&a, &vs, &key).await;

    let denied_path = format!(
        "{}/{}",
        challenges_path(&vs),
        str_of(&push_challenge(&a, &vs, &yf).await["sid"])
    );
    let answer = signed_answer(&a, &denied_path, &key, "denied").await;
    let denied = a
        .post_form(&denied_path, &[("AuthPayload", &answer)])
        .await
        .expect(200);
    assert_eq!(denied["status"], "denied");
    assert_date(&denied["date_responded"]);

    // A challenge needs its message; an unanswered one expires after its expiration date.
    a.post_form(&challenges_path(&vs), &[("FactorSid", &yf)])
        .await
        .expect_error(400, 60200);
    let c = push_challenge(&a, &vs, &yf).await;
    let path = format!("{}/{}", challenges_path(&vs), str_of(&c["sid"]));
    let answer = signed_answer(&a, &path, &key, "approved").await;
    advance_clock(&a, 300).await;
    let expired = a.get(&path).await;
    assert_eq!(expired.expect(200)["status"], "expired");
    assert!(
        expired
            .headers
            .get("Twilio-Verify-Signature-Fields")
            .is_none()
    );
    a.post_form(&path, &[("AuthPayload", &answer)])
        .await
        .expect_error(403, 60323);
}

#[tokio::test]
async fn a_pending_push_challenge_can_be_notified() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let key = Key::new();
    let yf = verified_factor(&a, &vs, &key).await;
    let c = push_challenge(&a, &vs, &yf).await;
    let yc = str_of(&c["sid"]);
    let path = format!("{}/{yc}/Notifications", challenges_path(&vs));

    let n = a.post_form(&path, &[("Ttl", "150")]).await.expect(201);
    assert_valid(
        &verify_response(NOTIFICATIONS, "post", "201"),
        &n,
        "a notification",
    );
    assert_sid(&n["sid"], "NT");
    assert_eq!(n["challenge_sid"], yc);
    assert_eq!(n["entity_sid"], c["entity_sid"]);
    assert_eq!(n["identity"], IDENTITY);
    assert_eq!(n["priority"], "high");
    assert_eq!(n["ttl"], 150);
    assert_date(&n["date_created"]);
    assert_eq!(a.post_form(&path, &[]).await.expect(201)["ttl"], 300);
    a.post_form(&path, &[("Ttl", "301")])
        .await
        .expect_error(400, 60200);

    // Once answered, there is nothing to notify.
    let challenge_path = format!("{}/{yc}", challenges_path(&vs));
    let answer = signed_answer(&a, &challenge_path, &key, "approved").await;
    a.post_form(&challenge_path, &[("AuthPayload", &answer)])
        .await
        .expect(200);
    a.post_form(&path, &[]).await.expect_error(400, 60200);
    a.post_form(
        &format!(
            "{}/{}/Notifications",
            challenges_path(&vs),
            unknown_sid("YC")
        ),
        &[],
    )
    .await
    .expect_error(404, 20404);
}

#[tokio::test]
async fn a_simulated_device_enrols_verifies_and_answers_like_the_sdk() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);

    let device = a.post_form("/emulator/v1/Devices", &[]).await.expect(201);
    let id = str_of(&device["id"]);
    assert_eq!(device["alg"], "ES256");
    let public_key = str_of(&device["public_key"]);
    assert_eq!(
        a.get(&format!("/emulator/v1/Devices/{id}"))
            .await
            .expect(200)["public_key"],
        public_key
    );
    server
        .b()
        .get(&format!("/emulator/v1/Devices/{id}"))
        .await
        .expect_error(404, 20404);

    // Enrol with the device's public key, as an app would with an access token.
    let phone = server.basic("token", &access_token(&a, &vs, IDENTITY).await);
    let f = phone
        .post_form(
            &factors_path(&vs),
            &[
                ("FriendlyName", "Simulated"),
                ("FactorType", "push"),
                ("Binding.PublicKey", &public_key),
                ("Binding.Alg", "ES256"),
                ("Config.SdkVersion", "0.12.0"),
                ("Config.AppId", "com.example.bank"),
                ("Config.NotificationPlatform", "none"),
            ],
        )
        .await
        .expect(201);
    let yf = str_of(&f["sid"]);

    // Its signature of the factor SID (`Sign`) is the SDK's AuthPayload; `Verify` sends it.
    let signature = a
        .post_form(
            &format!("/emulator/v1/Devices/{id}/Sign"),
            &[("Message", &yf)],
        )
        .await
        .expect(200);
    assert!(!str_of(&signature["signature"]).is_empty());
    let verify = format!("/emulator/v1/Devices/{id}/Factors/{yf}/Verify");
    let verified = a
        .post_form(&verify, &[("ServiceSid", &vs), ("Identity", IDENTITY)])
        .await
        .expect(200);
    assert_eq!(verified["status"], "verified");
    // Another device cannot verify (or answer for) a factor bound to a different key.
    let other = str_of(&a.post_form("/emulator/v1/Devices", &[]).await.expect(201)["id"]);
    a.post_form(
        &format!("/emulator/v1/Devices/{other}/Factors/{yf}/Verify"),
        &[("ServiceSid", &vs), ("Identity", IDENTITY)],
    )
    .await
    .expect_error(400, 60200);

    // The device lists its pending challenges, approves one and denies another.
    let first = str_of(&push_challenge(&a, &vs, &yf).await["sid"]);
    let second = str_of(&push_challenge(&a, &vs, &yf).await["sid"]);
    let listed = a
        .get(&format!("/emulator/v1/Devices/{id}/Challenges"))
        .await
        .expect(200);
    let sids: Vec<String> = listed["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| str_of(&c["sid"]))
        .collect();
    assert_eq!(sids, vec![first.clone(), second.clone()]);
    let approved = a
        .post_form(
            &format!("/emulator/v1/Devices/{id}/Challenges/{first}"),
            &[("Status", "approved")],
        )
        .await
        .expect(200);
    assert_eq!(approved["status"], "approved");
    let denied = a
        .post_form(
            &format!("/emulator/v1/Devices/{id}/Challenges/{second}"),
            &[("Status", "denied")],
        )
        .await
        .expect(200);
    assert_eq!(denied["status"], "denied");
    assert_eq!(
        a.get(&format!("{}/{first}", challenges_path(&vs)))
            .await
            .expect(200)["status"],
        "approved"
    );
    let none_left = a
        .get(&format!("/emulator/v1/Devices/{id}/Challenges"))
        .await
        .expect(200);
    assert_eq!(none_left["challenges"], json!([]));
    a.post_form(
        &format!("/emulator/v1/Devices/{other}/Challenges/{first}"),
        &[("Status", "approved")],
    )
    .await
    .expect_error(404, 20404);
    a.post_form(
        &format!("/emulator/v1/Devices/{id}/Challenges/{first}"),
        &[("Status", "pending")],
    )
    .await
    .expect_error(400, 60200);
}

#[tokio::test]
async fn the_device_signs_its_own_calls_on_its_factor_and_nothing_else() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let key = Key::new();
    let enroller = server.basic("token", &access_token(&a, &vs, IDENTITY).await);
    let f = enrol(&enroller, &vs, &key).await.expect(201);
    let yf = str_of(&f["sid"]);
    let ac = str_of(&f["account_sid"]);
    let kid = str_of(&f["config"]["credential_sid"]);
    let factor_path = format!("{}/{yf}", factors_path(&vs));
    let now = clock_now(&a).await;
    let device = |k: &Key, kid: &str, sub: &str, nbf: i64, exp: i64| {
        server.basic("token", &k.device_jwt(kid, sub, nbf, exp))
    };
    let me = device(&key, &kid, &ac, now, now + 600);

    // The device verifies its factor, lists and fetches its challenge and answers it.
    let verified = me
        .post_form(&factor_path, &[("AuthPayload", &key.sign(&yf))])
        .await
        .expect(200);
    assert_eq!(verified["status"], "verified");
    assert_eq!(me.get(&factor_path).await.expect(200)["sid"], yf);
    let c = push_challenge(&a, &vs, &yf).await;
    let path = format!("{}/{}", challenges_path(&vs), str_of(&c["sid"]));
    let listed = me
        .get(&format!(
            "{}?FactorSid={yf}&Status=pending",
            challenges_path(&vs)
        ))
        .await
        .expect(200);
    assert_eq!(listed["challenges"][0]["sid"], c["sid"]);
    let answer = signed_answer(&me, &path, &key, "approved").await;
    let approved = me
        .post_form(&path, &[("AuthPayload", &answer)])
        .await
        .expect(200);
    assert_eq!(approved["status"], "approved");

    // Another factor of the same entity, with its own key and challenge.
    let key2 = Key::new();
    let yf2 = verified_factor(&a, &vs, &key2).await;
    let kid2 = format!("CR{}", &yf2[2..]);
    let c2 = push_challenge(&a, &vs, &yf2).await;
    let path2 = format!("{}/{}", challenges_path(&vs), str_of(&c2["sid"]));
    let theirs = device(&key2, &kid2, &ac, now, now + 600);
    theirs.get(&factor_path).await.expect_error(401, 20003);
    theirs.get(&path).await.expect_error(401, 20003);
    theirs
        .post_form(&path, &[("AuthPayload", &answer)])
        .await
        .expect_error(401, 20003);
    // This factor's device on the other factor, its challenge, or all challenges.
    me.get(&format!("{}/{yf2}", factors_path(&vs)))
        .await
        .expect_error(401, 20003);
    me.get(&path2).await.expect_error(401, 20003);
    me.get(&challenges_path(&vs)).await.expect_error(401, 20003);
    me.get(&format!("{}?FactorSid={yf2}", challenges_path(&vs)))
        .await
        .expect_error(401, 20003);
    // Deleting another factor, creating challenges, or another entity's resources are not the
    // device's.
    me.delete(&format!("{}/{yf2}", factors_path(&vs)))
        .await
        .expect_error(401, 20003);
    theirs.delete(&factor_path).await.expect_error(401, 20003);
    me.post_form(
        &challenges_path(&vs),
        &[("FactorSid", &yf), ("Details.Message", "Hi")],
    )
    .await
    .expect_error(401, 20003);
    let elsewhere = format!("/v2/Services/{vs}/Entities/someone-else-0001/Challenges");
    me.get(&format!("{elsewhere}?FactorSid={yf}"))
        .await
        .expect_error(401, 20003);
    // The wrong key, another account, a lifetime beyond the SDK's 10 minutes, a token not yet valid.
    for wrong in [
        device(&key2, &kid, &ac, now, now + 600),
        device(
            &key,
            &kid,
            "AC00000000000000000000000000000000",
            now,
            now + 600,
        ),
        device(&key, &kid, &ac, now, now + 601),
        device(&key, &kid, &ac, now + 120, now + 700),
    ] {
        wrong.get(&factor_path).await.expect_error(401, 20003);
    }
    // The account's own credentials still do everything.
    a.get(&path2).await.expect(200);

    // Expiry is on the account's (control plane's) clock: valid until exp, not after it. A
    // token made now (its times in whole seconds) keeps a second of margin for the requests.
    let now = clock_now(&a).await;
    let me = device(&key, &kid, &ac, now, now + 600);
    advance_clock(&a, 598).await;
    me.get(&factor_path).await.expect(200);
    advance_clock(&a, 2).await;
    me.get(&factor_path).await.expect_error(401, 20003);
    me.get(&path).await.expect_error(401, 20003);

    // The device deletes its own factor, as the SDK's deleteFactor does (with a fresh token).
    let now = clock_now(&a).await;
    let fresh = device(&key, &kid, &ac, now, now + 600);
    assert_eq!(fresh.delete(&factor_path).await.status, 204);
    a.get(&factor_path).await.expect_error(404, 20404);
    a.get(&format!("{}/{yf2}", factors_path(&vs)))
        .await
        .expect(200);
}
