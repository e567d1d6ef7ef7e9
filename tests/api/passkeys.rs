//! Verify Passkeys end to end through the real server, with this test playing a software
//! authenticator (`ring` P-256 key; authenticatorData, a hand-encoded CBOR attestationObject of
//! format `none` with a COSE EC2 key, and clientDataJSON built here, not by the server's code).

use base64::Engine as _;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::harness::{Client, Reply, ServerOptions, TestServer};
use crate::helpers::*;
use crate::openapi_schema::{assert_valid, verify_response};

const IDENTITY: &str = "ff483d1ff591898a9942916050d2ca3f";
const RP: &str = "example.com";
const ORIGIN: &str = "https://example.com";
const CREATE: &str = "/v2/Services/{ServiceSid}/Passkeys/Factors";
const VERIFY: &str = "/v2/Services/{ServiceSid}/Passkeys/VerifyFactor";
const CHALLENGES: &str = "/v2/Services/{ServiceSid}/Passkeys/Challenges";
const APPROVE: &str = "/v2/Services/{ServiceSid}/Passkeys/ApproveChallenge";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// CBOR head of a major type and length (lengths below 256 are all this test needs).
fn head(major: u8, n: usize) -> Vec<u8> {
    if n < 24 {
        vec![(major << 5) | n as u8]
    } else {
        assert!(n < 256);
        vec![(major << 5) | 24, n as u8]
    }
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len());
    v.extend_from_slice(b);
    v
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = head(3, s.len());
    v.extend_from_slice(s.as_bytes());
    v
}

struct Authenticator {
    key: EcdsaKeyPair,
    id: Vec<u8>,
}

impl Authenticator {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self {
            key,
            id: (0..20u8).collect(),
        }
    }

    fn client_data(kind: &str, challenge: &str, origin: &str) -> String {
        b64(
            json!({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false})
                .to_string()
                .as_bytes(),
        )
    }

    fn auth_data(rp: &str, flags: u8, count: u32) -> Vec<u8> {
        let mut ad = digest::digest(&digest::SHA256, rp.as_bytes())
            .as_ref()
            .to_vec();
        ad.push(flags);
        ad.extend(count.to_be_bytes());
        ad
    }

    /// The `navigator.credentials.create()` answer, as JSON.
    fn register(&self, rp: &str, challenge: &str, origin: &str) -> Value {
        let mut ad = Self::auth_data(rp, 0x01 | 0x40, 0);
        ad.extend([0u8; 16]); // AAGUID
        ad.extend((self.id.len() as u16).to_be_bytes());
        ad.extend(&self.id);
        let p = self.key.public_key().as_ref();
        // COSE key {1: 2, 3: -7, -1: 1, -2: x, -3: y}
        let mut cose = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        cose.extend(cbor_bytes(&p[1..33]));
        cose.push(0x22);
        cose.extend(cbor_bytes(&p[33..]));
        ad.extend(cose);
        let mut att = vec![0xa3];
        att.extend(cbor_text("fmt"));
        att.extend(cbor_text("none"));
        att.extend(cbor_text("attStmt"));
        att.push(0xa0);
        att.extend(cbor_text("authData"));
        att.extend(cbor_bytes(&ad));
        json!({
            "id": b64(&self.id),
            "rawId": b64(&self.id),
            "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {
                "clientDataJSON": Self::client_data("webauthn.create", challenge, origin),
                "attestationObject": b64(&att),
                "transports": ["internal"],
            }
        })
    }
}

impl Authenticator {
    /// The `navigator.credentials.get()` answer, as JSON: ES256 (DER) over
    /// authenticatorData || SHA-256(clientDataJSON).
    fn assert(&self, rp: &str, challenge: &str, origin: &str, count: u32) -> Value {
        let cd = Self::client_data("webauthn.get", challenge, origin);
        let ad = Self::auth_data(rp, 0x01 | 0x04, count);
        let cd_raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&cd)
            .unwrap();
        let mut msg = ad.clone();
        msg.extend(digest::digest(&digest::SHA256, &cd_raw).as_ref());
        let sig = self.key.sign(&SystemRandom::new(), &msg).unwrap();
        json!({
            "id": b64(&self.id),
            "rawId": b64(&self.id),
            "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {
                "clientDataJSON": cd,
                "authenticatorData": b64(&ad),
                "signature": b64(sig.as_ref()),
                "userHandle": null,
            }
        })
    }
}

async fn post_json(c: &Client, path: &str, body: &Value) -> Reply {
    c.send(
        c.request(reqwest::Method::POST, path)
            .header("Content-Type", "application/json")
            .body(body.to_string()),
    )
    .await
}

fn create_body() -> Value {
    json!({
        "friendly_name": "Laptop",
        "identity": IDENTITY,
        "config": {
            "relying_party": {"id": RP, "name": "Example", "origins": [ORIGIN]},
            "authenticator_attachment": "platform",
            "discoverable_credentials": "preferred",
            "user_verification": "preferred"
        }
    })
}

async fn new_factor(a: &Client, vs: &str) -> Value {
    post_json(
        a,
        &format!("/v2/Services/{vs}/Passkeys/Factors"),
        &create_body(),
    )
    .await
    .expect(201)
}

#[tokio::test]
async fn a_passkey_is_registered_and_verified_with_a_software_authenticator() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);

    let f = new_factor(&a, &vs).await;
    assert_valid(
        &verify_response(CREATE, "post", "201"),
        &f,
        "a new passkeys factor",
    );
    let yf = assert_sid(&f["sid"], "YF");
    assert_eq!(f["factor_type"], "passkeys");
    assert_eq!(f["status"], "unverified");
    assert_eq!(f["identity"], IDENTITY);
    let pk = &f["options"]["publicKey"];
    assert_eq!(pk["rp"], json!({"id": RP, "name": "Example"}));
    assert_eq!(
        pk["pubKeyCredParams"],
        json!([{"type": "public-key", "alg": -7}])
    );
    assert_eq!(pk["attestation"], "none");
    assert_eq!(
        pk["authenticatorSelection"]["authenticatorAttachment"],
        "platform"
    );
    assert_eq!(pk["user"]["name"], IDENTITY);
    let challenge = str_of(&pk["challenge"]);
    assert!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&challenge)
            .is_ok_and(|b| b.len() >= 16),
        "a random base64url challenge: {challenge}"
    );
    assert_eq!(f["config"]["relying_party"]["origins"], json!([ORIGIN]));

    let auth = Authenticator::new();
    let verified = post_json(
        &a,
        &format!("/v2/Services/{vs}/Passkeys/VerifyFactor"),
        &auth.register(RP, &challenge, ORIGIN),
    )
    .await
    .expect(200);
    assert_valid(
        &verify_response(VERIFY, "post", "200"),
        &verified,
        "a verified passkeys factor",
    );
    assert_eq!(verified["sid"], yf);
    assert_eq!(verified["status"], "verified");

    // The factor is one of the entity's factors.
    let list = a
        .get(&format!("/v2/Services/{vs}/Entities/{IDENTITY}/Factors"))
        .await
        .expect(200);
    let listed = list["factors"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["sid"], yf);
    assert_eq!(listed[0]["factor_type"], "passkeys");
    assert_eq!(listed[0]["status"], "verified");

    // The challenge is used up: the same registration again finds no factor waiting.
    post_json(
        &a,
        &format!("/v2/Services/{vs}/Passkeys/VerifyFactor"),
        &auth.register(RP, &challenge, ORIGIN),
    )
    .await
    .expect(404);
}

#[tokio::test]
async fn a_registration_is_refused_for_a_wrong_challenge_origin_or_rp_id() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let f = new_factor(&a, &vs).await;
    let challenge = str_of(&f["options"]["publicKey"]["challenge"]);
    let path = format!("/v2/Services/{vs}/Passkeys/VerifyFactor");
    let auth = Authenticator::new();

    let wrong_challenge = b64(&[9u8; 32]);
    let e = post_json(&a, &path, &auth.register(RP, &wrong_challenge, ORIGIN))
        .await
        .expect(404);
    assert_eq!(e["code"], 20404);
    let e = post_json(
        &a,
        &path,
        &auth.register(RP, &challenge, "https://evil.example"),
    )
    .await
    .expect(400);
    assert_eq!(e["code"], 60200);
    let e = post_json(
        &a,
        &path,
        &auth.register("evil.example", &challenge, ORIGIN),
    )
    .await
    .expect(400);
    assert_eq!(e["code"], 60200);
    // The factor is still waiting: a good registration still verifies it.
    let ok = post_json(&a, &path, &auth.register(RP, &challenge, ORIGIN))
        .await
        .expect(200);
    assert_eq!(ok["status"], "verified");
}

#[tokio::test]
async fn passkeys_bodies_are_json_and_bad_ones_are_twilio_errors() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let path = format!("/v2/Services/{vs}/Passkeys/Factors");

    let bad = a
        .send(
            a.request(reqwest::Method::POST, &path)
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await
        .expect(400);
    assert_eq!(bad["code"], 60200);
    // Twilio's documented codes: no relying party (60371), no authenticator criteria (60393).
    let no_rp = post_json(
        &a,
        &path,
        &json!({"friendly_name": "x", "identity": IDENTITY}),
    )
    .await
    .expect(400);
    assert_eq!(no_rp["code"], 60371);
    let no_criteria = post_json(
        &a,
        &path,
        &json!({"friendly_name": "x", "identity": IDENTITY,
                "config": {"relying_party": {"id": RP, "name": "Ex", "origins": [ORIGIN]}}}),
    )
    .await
    .expect(400);
    assert_eq!(no_criteria["code"], 60393);
    assert!(str_of(&no_criteria["message"]).contains("user_verification"));
    let missing = post_json(&a, &path, &json!({"friendly_name": "x"}))
        .await
        .expect(400);
    assert_eq!(missing["code"], 20001);
    let missing = post_json(
        &a,
        &format!("/v2/Services/{vs}/Passkeys/VerifyFactor"),
        &json!({"id": "AA"}),
    )
    .await
    .expect(400);
    assert_eq!(missing["code"], 20001);
    let garbage = post_json(
        &a,
        &format!("/v2/Services/{vs}/Passkeys/VerifyFactor"),
        &json!({"id": "AA", "response": {"clientDataJSON": "%%%", "attestationObject": "AA"}}),
    )
    .await
    .expect(400);
    assert_eq!(garbage["code"], 60200);
}

/// A verified passkeys factor of `auth` in service `vs`; its SID.
async fn verified(a: &Client, vs: &str, auth: &Authenticator) -> String {
    let f = new_factor(a, vs).await;
    let challenge = str_of(&f["options"]["publicKey"]["challenge"]);
    post_json(
        a,
        &format!("/v2/Services/{vs}/Passkeys/VerifyFactor"),
        &auth.register(RP, &challenge, ORIGIN),
    )
    .await
    .expect(200);
    str_of(&f["sid"])
}

async fn new_challenge(a: &Client, vs: &str) -> Value {
    post_json(
        a,
        &format!("/v2/Services/{vs}/Passkeys/Challenges"),
        &json!({"identity": IDENTITY}),
    )
    .await
    .expect(201)
}

#[tokio::test]
async fn a_passkey_challenge_is_approved_by_a_signed_assertion_and_refusals_leave_it_pending() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    let auth = Authenticator::new();
    let yf = verified(&a, &vs, &auth).await;

    let c = new_challenge(&a, &vs).await;
    assert_valid(
        &verify_response(CHALLENGES, "post", "201"),
        &c,
        "a passkeys challenge",
    );
    let yc = assert_sid(&c["sid"], "YC");
    assert_eq!(c["factor_sid"], yf);
    assert_eq!(c["factor_type"], "passkeys");
    assert_eq!(c["status"], "pending");
    let pk = &c["options"]["publicKey"];
    assert_eq!(pk["rpId"], RP);
    assert_eq!(pk["allowCredentials"][0]["id"], b64(&auth.id));
    assert_eq!(pk["allowCredentials"][0]["type"], "public-key");
    let challenge = str_of(&pk["challenge"]);
    let path = format!("/v2/Services/{vs}/Passkeys/ApproveChallenge");

    // Refusals: the challenge stays pending after each.
    let refused = [
        auth.assert(RP, &challenge, "https://evil.example", 1),
        auth.assert("evil.example", &challenge, ORIGIN, 1),
        {
            let mut bad = auth.assert(RP, &challenge, ORIGIN, 1);
            let other = auth.assert(RP, &challenge, ORIGIN, 2);
            bad["response"]["signature"] = other["response"]["signature"].clone();
            bad
        },
        Authenticator::new().assert(RP, &challenge, ORIGIN, 1),
    ];
    for body in &refused {
        let e = post_json(&a, &path, body).await.expect(400);
        assert_eq!(e["code"], 60200, "{e}");
    }
    let e = post_json(&a, &path, &auth.assert(RP, &b64(&[1u8; 32]), ORIGIN, 1))
        .await
        .expect(404);
    assert_eq!(e["code"], 20404);

    let approved = post_json(&a, &path, &auth.assert(RP, &challenge, ORIGIN, 1))
        .await
        .expect(200);
    assert_valid(
        &verify_response(APPROVE, "post", "200"),
        &approved,
        "an approved challenge",
    );
    assert_eq!(approved["sid"], yc);
    assert_eq!(approved["status"], "approved");
    assert!(approved["date_responded"].is_string());

    // Answered once only.
    post_json(&a, &path, &auth.assert(RP, &challenge, ORIGIN, 2))
        .await
        .expect(400);

    // The challenge is one of the entity's.
    let listed = a
        .get(&format!("/v2/Services/{vs}/Entities/{IDENTITY}/Challenges"))
        .await
        .expect(200);
    let listed = listed["challenges"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "approved");
    assert_eq!(listed[0]["factor_type"], "passkeys");

    // The signature counter must increase: a next challenge signed with counter 1 is refused,
    // with 2 approved.
    let c2 = new_challenge(&a, &vs).await;
    let ch2 = str_of(&c2["options"]["publicKey"]["challenge"]);
    let e = post_json(&a, &path, &auth.assert(RP, &ch2, ORIGIN, 1))
        .await
        .expect(400);
    assert_eq!(e["code"], 60200);
    assert!(str_of(&e["message"]).contains("counter"), "{e}");
    post_json(&a, &path, &auth.assert(RP, &ch2, ORIGIN, 2))
        .await
        .expect(200);
}

#[tokio::test]
async fn a_challenge_of_an_unverified_passkey_is_refused() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Bank").await["sid"]);
    new_factor(&a, &vs).await;
    let e = post_json(
        &a,
        &format!("/v2/Services/{vs}/Passkeys/Challenges"),
        &json!({"identity": IDENTITY}),
    )
    .await
    .expect(403);
    assert_eq!(e["code"], 60318);
}
