//! Calls a Verify Push device signs itself, decided purely.
//!
//! After enrolment the Verify Push SDK authenticates its own calls (verifying its factor,
//! fetching, listing and answering its challenges) with HTTP Basic `token:<JWT>`
//! (twilio/twilio-verify-android `networking/AuthenticationProvider.kt`,
//! `data/jwt/JwtGenerator.kt`, `data/jwt/JwtSigner.kt`):
//! - header `{"cty":"twilio-pba;v=1","kid":<factor config.credential_sid>,"typ":"JWT",
//!   "alg":"ES256"}`;
//! - payload `{"sub":<account SID>,"exp":now+600,"nbf":now}` (epoch seconds; no `iss`);
//! - base64url without padding, signed with the factor's P-256 key, the signature raw r‖s.
//!
//! verilimit derives a push factor's `credential_sid` from its SID (`CR` + the SID's 32 hex
//! digits), so `kid` names exactly one factor. A token is accepted when its `kid` is that
//! factor's, `sub` the factor's account, the signature verifies with the factor's stored public
//! key, and the account's clock is within `[nbf - 60 s, exp)` with `exp - nbf` at most the SDK's
//! 10 minutes.

use base64::Engine as _;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde_json::Value;

use super::mfa::Factor;
use super::push::{self, ALG};

/// The `cty` of the SDK's JWTs.
pub const CONTENT_TYPE: &str = "twilio-pba;v=1";
/// The longest lifetime (`exp - nbf`, seconds) accepted: the SDK's `jwtValidFor` (10 minutes).
pub const MAX_LIFETIME_S: i64 = 600;
/// Clock skew (seconds) tolerated before `nbf`.
pub const SKEW_S: i64 = 60;
/// The prefix of a push factor's `config.credential_sid`.
pub const CREDENTIAL: &str = "CR";

/// A device's JWT, parsed but not yet checked.
#[derive(Debug, Clone)]
pub struct DeviceToken {
    pub kid: String,
    pub sub: String,
    pub exp: i64,
    pub nbf: i64,
    signed: String,
    signature: Vec<u8>,
}

/// Why a device token is refused (all are 401 / 20003 to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotTheFactor,
    Account,
    Signature,
    Time,
}

/// The `credential_sid` of a factor (its SID with the `CR` prefix).
pub fn credential_sid(factor_sid: &str) -> String {
    format!("{CREDENTIAL}{}", factor_sid.get(2..).unwrap_or_default())
}

/// Parses `jwt` as the SDK builds it: three base64url parts, header `alg` ES256, `cty`
/// `twilio-pba;v=1`, a `kid`; payload `sub`, `exp` and `nbf` (integers).
pub fn parse(jwt: &str) -> Option<DeviceToken> {
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .ok()
    };
    let mut parts = jwt.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header: Value = serde_json::from_slice(&b64(h)?).ok()?;
    if header["alg"] != ALG || header["cty"] != CONTENT_TYPE {
        return None;
    }
    let payload: Value = serde_json::from_slice(&b64(p)?).ok()?;
    Some(DeviceToken {
        kid: header["kid"].as_str()?.to_owned(),
        sub: payload["sub"].as_str()?.to_owned(),
        exp: payload["exp"].as_i64()?,
        nbf: payload["nbf"].as_i64()?,
        signed: format!("{h}.{p}"),
        signature: b64(s)?,
    })
}

/// The factor SID a token's `kid` names, if it is a credential SID.
pub fn factor_sid(t: &DeviceToken) -> Option<String> {
    let rest = t.kid.strip_prefix(CREDENTIAL)?;
    (rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{}{rest}", crate::twilio::sid::FACTOR))
}

/// Whether `t` authenticates `f`'s device at `now_ms` (the account's clock).
pub fn check(t: &DeviceToken, f: &Factor, now_ms: i64) -> Result<(), Refusal> {
    let binding = f.push.as_ref().ok_or(Refusal::NotTheFactor)?;
    if t.kid != credential_sid(&f.sid) {
        return Err(Refusal::NotTheFactor);
    }
    if t.sub != f.account_sid {
        return Err(Refusal::Account);
    }
    let point = push::public_key_point(&binding.public_key).ok_or(Refusal::Signature)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(t.signed.as_bytes(), &t.signature)
        .map_err(|_| Refusal::Signature)?;
    let now = now_ms.div_euclid(1000);
    let lifetime = t.exp - t.nbf;
    if !(0..=MAX_LIFETIME_S).contains(&lifetime) || now < t.nbf - SKEW_S || now >= t.exp {
        return Err(Refusal::Time);
    }
    Ok(())
}

/// What a device may do: only calls on its own factor and that factor's challenges, in the
/// factor's own service and entity.
pub fn may_act_on(f: &Factor, service: &str, identity: &str, factor_sid: Option<&str>) -> bool {
    f.service_sid == service && f.identity == identity && factor_sid == Some(f.sid.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::push::{PushBinding, spki_base64};
    use crate::core::totp::Config;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    const SID: &str = "YF0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

    fn keypair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn factor(kp: &EcdsaKeyPair) -> Factor {
        Factor {
            sid: SID.into(),
            entity_sid: "YE0123456789abcdef0123456789abcdef".into(),
            service_sid: "VA0123456789abcdef0123456789abcdef".into(),
            account_sid: ACCOUNT.into(),
            identity: "user-0001".into(),
            friendly_name: "phone".into(),
            status: crate::core::mfa::FactorStatus::Verified,
            secret: String::new(),
            config: Config::default(),
            last_used_s: None,
            metadata: None,
            date_created: 0,
            date_updated: 0,
            push: Some(PushBinding {
                public_key: spki_base64(kp.public_key().as_ref()),
                sdk_version: None,
                app_id: None,
                notification_platform: "none".into(),
                notification_token: None,
            }),
            passkey: None,
        }
    }

    fn jwt(kp: &EcdsaKeyPair, kid: &str, sub: &str, nbf: i64, exp: i64) -> String {
        let e = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let h =
            e(&serde_json::json!({"cty": CONTENT_TYPE, "kid": kid, "typ": "JWT", "alg": "ES256"}));
        let p = e(&serde_json::json!({"sub": sub, "exp": exp, "nbf": nbf}));
        let msg = format!("{h}.{p}");
        let sig = kp.sign(&SystemRandom::new(), msg.as_bytes()).unwrap();
        format!(
            "{msg}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.as_ref())
        )
    }

    #[test]
    fn the_sdks_token_is_accepted_within_its_lifetime_only() {
        let kp = keypair();
        let f = factor(&kp);
        let t = parse(&jwt(&kp, &credential_sid(SID), ACCOUNT, 1000, 1600)).unwrap();
        assert_eq!(factor_sid(&t).as_deref(), Some(SID));
        assert_eq!(check(&t, &f, 1_000_000), Ok(()));
        assert_eq!(check(&t, &f, 1_599_999), Ok(()));
        assert_eq!(check(&t, &f, 940_000), Ok(()));
        assert_eq!(check(&t, &f, 1_600_000), Err(Refusal::Time));
        assert_eq!(check(&t, &f, 939_999), Err(Refusal::Time));
        let long = parse(&jwt(&kp, &credential_sid(SID), ACCOUNT, 1000, 1601)).unwrap();
        assert_eq!(check(&long, &f, 1_000_000), Err(Refusal::Time));
    }

    #[test]
    fn other_keys_factors_accounts_and_shapes_are_refused() {
        let kp = keypair();
        let f = factor(&kp);
        let other = keypair();
        let t = parse(&jwt(&other, &credential_sid(SID), ACCOUNT, 1000, 1600)).unwrap();
        assert_eq!(check(&t, &f, 1_000_000), Err(Refusal::Signature));
        let kid = credential_sid("YFffffffffffffffffffffffffffffffff");
        let t = parse(&jwt(&kp, &kid, ACCOUNT, 1000, 1600)).unwrap();
        assert_eq!(check(&t, &f, 1_000_000), Err(Refusal::NotTheFactor));
        let t = parse(&jwt(
            &kp,
            &credential_sid(SID),
            "ACffffffffffffffffffffffffffffffff",
            1000,
            1600,
        ))
        .unwrap();
        assert_eq!(check(&t, &f, 1_000_000), Err(Refusal::Account));
        // A tampered payload no longer matches the signature.
        let good = jwt(&kp, &credential_sid(SID), ACCOUNT, 1000, 1600);
        let parts: Vec<&str> = good.split('.').collect();
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::json!({"sub": ACCOUNT, "exp": 9999, "nbf": 9399}).to_string());
        let forged = parse(&format!("{}.{p}.{}", parts[0], parts[2])).unwrap();
        assert_eq!(check(&forged, &f, 9_500_000), Err(Refusal::Signature));
        assert!(parse("a.b").is_none());
        assert!(parse(&good.replacen('.', "x.", 1)).is_none());
        assert!(may_act_on(&f, &f.service_sid, "user-0001", Some(SID)));
        assert!(!may_act_on(&f, &f.service_sid, "user-0002", Some(SID)));
        assert!(!may_act_on(&f, &f.service_sid, "user-0001", None));
        assert!(!may_act_on(
            &f,
            &f.service_sid,
            "user-0001",
            Some("YFffffffffffffffffffffffffffffffff")
        ));
    }
}
