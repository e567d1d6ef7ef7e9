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
