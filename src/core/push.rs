//! Verify Push, decided purely: a push factor's binding (a device's P-256 public key), verifying
//! it with the device's signature of the factor SID, which fields of a challenge the device must
//! sign, and what a device's answer (an ES256 JWT) does to a challenge.
//!
//! The protocol is the one the Verify Push SDKs speak (twilio/twilio-verify-android):
//! - `domain/factor/PushFactory.kt`: a factor is created with `Binding.PublicKey` (base64 of the
//!   key's X.509 SubjectPublicKeyInfo DER), `Binding.Alg=ES256`, `Config.SdkVersion`,
//!   `Config.AppId`, `Config.NotificationPlatform` (`fcm` or `none`; iOS: `apn`) and
//!   `Config.NotificationToken`; it is verified with `AuthPayload` = base64 of the DER
//!   ECDSA-SHA256 signature of the factor SID (`data/KeyStoreAdapter.kt` `signAndEncode`).
//! - `api/ChallengeAPIClient.kt` reads the `Twilio-Verify-Signature-Fields` header of a fetched
//!   challenge (comma-separated names of fields of the challenge's JSON,
//!   `domain/challenge/ChallengeMapper.kt`); `domain/challenge/PushChallengeProcessor.kt` builds a
//!   JSON object of those fields' values as fetched plus `status` (`approved` or `denied`), and
//!   `data/jwt/JwtGenerator.kt` + `JwtSigner.kt` sign it as a compact JWS (`{"typ":"JWT",
//!   "alg":"ES256"}`, base64url without padding, the signature as raw r‖s), sent as `AuthPayload`.
//!
//! Signatures are checked with `ring` (no I/O, no randomness: verification is deterministic).

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde_json::{Map, Value, json};

use super::mfa::{Challenge, ChallengeStatus};
use crate::twilio::date;

/// The DER prefix of every P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, a 66-byte
/// BIT STRING), followed by the 65-byte uncompressed point.
pub const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The only `Binding.Alg` Twilio supports.
pub const ALG: &str = "ES256";

/// The fields of a push challenge's JSON a device signs (`Twilio-Verify-Signature-Fields`, in
/// this order). Our choice: every field that identifies the challenge or is shown to the user,
/// and none that changes while it is pending (`status`, `date_updated`), since the SDK signs
/// the values as it fetched them.
pub const SIGNATURE_FIELDS: [&str; 10] = [
    "sid",
    "account_sid",
    "service_sid",
    "entity_sid",
    "identity",
    "factor_sid",
    "date_created",
    "expiration_date",
    "details",
    "hidden_details",
];

/// The notification platforms of `Config.NotificationPlatform`.
pub const PLATFORMS: [&str; 3] = ["apn", "fcm", "none"];

/// A push factor's binding and configuration, as created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushBinding {
    /// Base64 (standard, padded) SubjectPublicKeyInfo DER of a P-256 key.
    pub public_key: String,
    pub sdk_version: Option<String>,
    pub app_id: Option<String>,
    pub notification_platform: String,
    pub notification_token: Option<String>,
}

impl PushBinding {
    /// The uncompressed point of the key (what `ring` verifies with).
    fn point(&self) -> Option<Vec<u8>> {
        public_key_point(&self.public_key)
    }

    /// The stored form (a JSON object).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// The 65-byte uncompressed point of a base64 P-256 SubjectPublicKeyInfo, if it is one.
pub fn public_key_point(b64: &str) -> Option<Vec<u8>> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == 65 && point[0] == 0x04).then(|| point.to_vec())
}

/// The base64 SubjectPublicKeyInfo of an uncompressed P-256 point.
pub fn spki_base64(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// Whether `auth_payload` (base64 DER ECDSA-SHA256) is the device's signature of `factor_sid`.
pub fn verifies_factor(b: &PushBinding, factor_sid: &str, auth_payload: &str) -> bool {
    let Some(point) = b.point() else {
        return false;
    };
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(auth_payload.trim()) else {
        return false;
    };
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(factor_sid.as_bytes(), &sig)
        .is_ok()
}

/// `details` as rendered: the message and its fields (`[]` when none).
pub fn details(c: &Challenge) -> Value {
    match &c.message {
        None => Value::Null,
        Some(m) => {
            let fields = c
                .fields
                .as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .unwrap_or_else(|| json!([]));
            json!({ "message": m, "fields": fields })
        }
    }
}

/// The values of the signature fields, exactly as a challenge's JSON shows them.
pub fn signed_fields(c: &Challenge) -> Map<String, Value> {
    let hidden = c
        .hidden_details
        .as_deref()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("sid".into(), json!(c.sid));
    m.insert("account_sid".into(), json!(c.account_sid));
    m.insert("service_sid".into(), json!(c.service_sid));
    m.insert("entity_sid".into(), json!(c.entity_sid));
    m.insert("identity".into(), json!(c.identity));
    m.insert("factor_sid".into(), json!(c.factor_sid));
    m.insert("date_created".into(), json!(date::format(c.date_created)));
    m.insert(
        "expiration_date".into(),
        json!(date::format(c.expiration_ms)),
    );
    m.insert("details".into(), details(c));
    m.insert("hidden_details".into(), hidden);
    m
}

/// Why a device's answer is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadAnswer {
    /// Not a compact JWS with an `ES256` header.
    Malformed,
    /// The signature is not the factor's key's.
    Signature,
    /// A signature field is missing or differs from the challenge.
    Fields,
    /// `status` is not `approved` or `denied`.
    Status,
}

impl BadAnswer {
    pub fn reason(self) -> &'static str {
        match self {
            BadAnswer::Malformed => "not an ES256 JWT",
            BadAnswer::Signature => "the signature is not the factor's",
            BadAnswer::Fields => "the signed fields do not match the challenge",
            BadAnswer::Status => "the signed status must be approved or denied",
        }
    }
}

/// The status a device's answer to `c` asks for, if the JWT is signed by `b`'s key over the
/// challenge's signature fields.
pub fn answer(b: &PushBinding, c: &Challenge, jwt: &str) -> Result<ChallengeStatus, BadAnswer> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
    };
    let mut parts = jwt.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadAnswer::Malformed);
    };
    let header: Value = b64(h)
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(BadAnswer::Malformed)?;
    if header["alg"] != ALG {
        return Err(BadAnswer::Malformed);
    }
    let sig = b64(s).ok_or(BadAnswer::Malformed)?;
    let point = b.point().ok_or(BadAnswer::Signature)?;
    let signed = &jwt.trim()[..h.len() + 1 + p.len()];
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| BadAnswer::Signature)?;
    let payload: Map<String, Value> = b64(p)
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(BadAnswer::Malformed)?;
    let expected = signed_fields(c);
    if SIGNATURE_FIELDS
        .iter()
        .any(|f| payload.get(*f) != expected.get(*f))
    {
        return Err(BadAnswer::Fields);
    }
    match payload.get("status").and_then(Value::as_str) {
        Some("approved") => Ok(ChallengeStatus::Approved),
        Some("denied") => Ok(ChallengeStatus::Denied),
        _ => Err(BadAnswer::Status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING};
    use ring::signature::{EcdsaKeyPair, KeyPair};

    fn key() -> (Vec<u8>, PushBinding) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let b = PushBinding {
            public_key: spki_base64(kp.public_key().as_ref()),
            sdk_version: None,
            app_id: None,
            notification_platform: "none".into(),
            notification_token: None,
        };
        (pkcs8.as_ref().to_vec(), b)
    }

    fn jwt(pkcs8: &[u8], payload: &Value) -> String {
        let rng = SystemRandom::new();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).unwrap();
        let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!(
            "{}.{}",
            e(&json!({"typ": "JWT", "alg": "ES256"})),
            e(payload)
        );
        let sig = kp.sign(&rng, input.as_bytes()).unwrap();
        format!(
            "{input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
        )
    }

    fn challenge() -> Challenge {
        Challenge {
            sid: "YC1".into(),
            factor_sid: "YF1".into(),
            entity_sid: "YE1".into(),
            service_sid: "VA1".into(),
            account_sid: "AC1".into(),
            identity: "user-0001".into(),
            factor_type: "push".into(),
            status: ChallengeStatus::Pending,
            message: Some("Login?".into()),
            fields: Some(r#"[{"label":"IP","value":"127.0.0.1"}]"#.into()),
            hidden_details: None,
            metadata: None,
            expiration_ms: 1_700_000_300_000,
            date_responded: None,
            date_created: 1_700_000_000_000,
            date_updated: 1_700_000_000_000,
            passkey: None,
        }
    }

    #[test]
    fn the_spki_prefix_round_trips_and_rejects_other_keys() {
        let (_, b) = key();
        let point = public_key_point(&b.public_key).unwrap();
        assert_eq!(spki_base64(&point), b.public_key);
        assert_eq!(public_key_point("AAAA"), None);
    }

    #[test]
    fn a_factor_is_verified_only_by_its_keys_signature_of_its_sid() {
        let (pkcs8, b) = key();
        let rng = SystemRandom::new();
        let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng).unwrap();
        let sig = base64::engine::general_purpose::STANDARD
            .encode(kp.sign(&rng, b"YF1").unwrap().as_ref());
        assert!(verifies_factor(&b, "YF1", &sig));
        assert!(!verifies_factor(&b, "YF2", &sig));
        let (_, other) = key();
        assert!(!verifies_factor(&other, "YF1", &sig));
        assert!(!verifies_factor(&b, "YF1", "not base64"));
    }

    #[test]
    fn an_answer_needs_the_key_the_fields_and_a_final_status() {
        let (pkcs8, b) = key();
        let c = challenge();
        let mut payload = Value::Object(signed_fields(&c));
        payload["status"] = json!("approved");
        assert_eq!(
            answer(&b, &c, &jwt(&pkcs8, &payload)),
            Ok(ChallengeStatus::Approved)
        );
        payload["status"] = json!("denied");
        assert_eq!(
            answer(&b, &c, &jwt(&pkcs8, &payload)),
            Ok(ChallengeStatus::Denied)
        );
        let (other, _) = key();
        assert_eq!(
            answer(&b, &c, &jwt(&other, &payload)),
            Err(BadAnswer::Signature)
        );
        payload["status"] = json!("pending");
        assert_eq!(
            answer(&b, &c, &jwt(&pkcs8, &payload)),
            Err(BadAnswer::Status)
        );
        payload["status"] = json!("approved");
        payload["details"]["message"] = json!("Something else");
        assert_eq!(
            answer(&b, &c, &jwt(&pkcs8, &payload)),
            Err(BadAnswer::Fields)
        );
        assert_eq!(answer(&b, &c, "a.b"), Err(BadAnswer::Malformed));
    }
}
