//! Verify Passkeys: the pure WebAuthn checks. A registration (`navigator.credentials.create()`
//! answer: clientDataJSON and a CBOR attestationObject of format `none`, or `packed`
//! self-attestation, whose statement is not checked) yields the credential's id, its P-256
//! public key (65-byte uncompressed point) and signature counter; an assertion
//! (`navigator.credentials.get()` answer) is checked against the stored key: ES256 (ASN.1 DER)
//! over authenticatorData ‖ SHA-256(clientDataJSON), rpIdHash, the UP flag (and UV if asked),
//! the challenge, the origin, and a counter that must increase when either side is non-zero.
//!
//! `cbor` decodes only what attestation objects and COSE keys use: unsigned and negative
//! integers, byte and text strings, arrays, maps, simple values (false, true, null); no
//! indefinite lengths, no tags, no floats.

use base64::Engine as _;
use ring::{digest, signature};
use serde_json::Value;

pub mod cbor {
    /// A decoded CBOR item.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Item {
        Int(i128),
        Bytes(Vec<u8>),
        Text(String),
        Array(Vec<Item>),
        Map(Vec<(Item, Item)>),
        Bool(bool),
        Null,
    }

    impl Item {
        /// The value of `key` in a map.
        pub fn get(&self, key: &Item) -> Option<&Item> {
            match self {
                Item::Map(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn text_key(&self, key: &str) -> Option<&Item> {
            self.get(&Item::Text(key.to_owned()))
        }
        pub fn int_key(&self, key: i128) -> Option<&Item> {
            self.get(&Item::Int(key))
        }
        pub fn as_bytes(&self) -> Option<&[u8]> {
            match self {
                Item::Bytes(b) => Some(b),
                _ => None,
            }
        }
        pub fn as_int(&self) -> Option<i128> {
            match self {
                Item::Int(n) => Some(*n),
                _ => None,
            }
        }
        pub fn as_text(&self) -> Option<&str> {
            match self {
                Item::Text(s) => Some(s),
                _ => None,
            }
        }
    }

    const MAX_DEPTH: usize = 16;

    /// Decodes one item at the start of `input`; the item and the number of bytes it took.
    pub fn decode(input: &[u8]) -> Option<(Item, usize)> {
        let mut pos = 0;
        let item = item(input, &mut pos, 0)?;
        Some((item, pos))
    }

    /// Decodes exactly one item filling `input`.
    pub fn decode_all(input: &[u8]) -> Option<Item> {
        match decode(input)? {
            (item, n) if n == input.len() => Some(item),
            _ => None,
        }
    }

    fn take<'a>(input: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
        let end = pos.checked_add(n)?;
        let s = input.get(*pos..end)?;
        *pos = end;
        Some(s)
    }

    fn arg(input: &[u8], pos: &mut usize, info: u8) -> Option<u64> {
        Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(take(input, pos, 1)?[0]),
            25 => u64::from(u16::from_be_bytes(take(input, pos, 2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(take(input, pos, 4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(take(input, pos, 8)?.try_into().ok()?),
            _ => return None,
        })
    }

    fn item(input: &[u8], pos: &mut usize, depth: usize) -> Option<Item> {
        if depth > MAX_DEPTH {
            return None;
        }
        let head = take(input, pos, 1)?[0];
        let (major, info) = (head >> 5, head & 0x1f);
        if major == 7 {
            return match info {
                20 => Some(Item::Bool(false)),
                21 => Some(Item::Bool(true)),
                22 => Some(Item::Null),
                _ => None,
            };
        }
        let n = arg(input, pos, info)?;
        match major {
            0 => Some(Item::Int(i128::from(n))),
            1 => Some(Item::Int(-1 - i128::from(n))),
            2 => Some(Item::Bytes(
                take(input, pos, usize::try_from(n).ok()?)?.to_vec(),
            )),
            3 => {
                let b = take(input, pos, usize::try_from(n).ok()?)?;
                Some(Item::Text(String::from_utf8(b.to_vec()).ok()?))
            }
            4 => {
                // Each element takes at least one byte: a length beyond the input is refused
                // before allocating.
                if n > (input.len() - *pos) as u64 {
                    return None;
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(item(input, pos, depth + 1)?);
                }
                Some(Item::Array(v))
            }
            5 => {
                if n > (input.len() - *pos) as u64 {
                    return None;
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let k = item(input, pos, depth + 1)?;
                    let val = item(input, pos, depth + 1)?;
                    v.push((k, val));
                }
                Some(Item::Map(v))
            }
            _ => None,
        }
    }

    /// Encodes an item (for tests and for building fixtures).
    pub fn encode(item: &Item) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, item);
        out
    }

    fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            out.push(m | n as u8);
        } else if n <= 0xff {
            out.extend([m | 24, n as u8]);
        } else if n <= 0xffff {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        } else {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }

    fn put(out: &mut Vec<u8>, item: &Item) {
        match item {
            Item::Int(n) if *n >= 0 => head(out, 0, *n as u64),
            Item::Int(n) => head(out, 1, (-1 - *n) as u64),
            Item::Bytes(b) => {
                head(out, 2, b.len() as u64);
                out.extend(b);
            }
            Item::Text(s) => {
                head(out, 3, s.len() as u64);
                out.extend(s.as_bytes());
            }
            Item::Array(v) => {
                head(out, 4, v.len() as u64);
                v.iter().for_each(|i| put(out, i));
            }
            Item::Map(v) => {
                head(out, 5, v.len() as u64);
                for (k, val) in v {
                    put(out, k);
                    put(out, val);
                }
            }
            Item::Bool(false) => out.push(0xf4),
            Item::Bool(true) => out.push(0xf5),
            Item::Null => out.push(0xf6),
        }
    }
}

use cbor::Item;

/// A passkeys factor's state, stored as JSON in `Factor::passkey`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PasskeyState {
    pub rp_id: String,
    pub rp_name: String,
    pub origins: Vec<String>,
    /// base64url of the WebAuthn user id (user handle).
    pub user_id: String,
    pub authenticator_attachment: String,
    pub discoverable_credentials: String,
    pub user_verification: String,
    /// The registration challenge (base64url) while the factor is unverified.
    pub challenge: Option<String>,
    pub credential: Option<Credential>,
}

impl PasskeyState {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
    pub fn uv_required(&self) -> bool {
        self.user_verification == "required"
    }
}

/// The registration challenge an unverified passkeys factor waits for (an indexed column).
pub fn pending_challenge(f: &super::mfa::Factor) -> Option<String> {
    if f.status != super::mfa::FactorStatus::Unverified {
        return None;
    }
    f.passkey
        .as_deref()
        .and_then(PasskeyState::from_json)
        .and_then(|s| s.challenge)
}

/// Why a registration or an assertion is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not base64url, not JSON, not CBOR, or missing a part.
    Malformed,
    /// clientDataJSON `type` is not the ceremony's.
    WrongType,
    WrongChallenge,
    WrongOrigin,
    /// rpIdHash is not SHA-256 of the relying party id.
    WrongRpId,
    /// User presence (or verification, when required) not flagged.
    NotPresent,
    /// Not an attestation format accepted here, or not an ES256 P-256 key.
    Unsupported,
    /// The credential is not the factor's.
    UnknownCredential,
    BadSignature,
    /// The signature counter did not increase.
    Counter,
}

/// What the relying party expects of a ceremony.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub challenge: &'a str,
    pub rp_id: &'a str,
    pub origins: &'a [String],
    pub user_verification: bool,
}

/// A registered credential.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Credential {
    /// base64url (no padding) of the credential id.
    pub id: String,
    /// The uncompressed P-256 point (65 bytes).
    pub public_key: Vec<u8>,
    pub sign_count: u32,
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding (some clients send standard base64 too).
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    let t = s.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .ok()
}

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

fn check_client_data(raw: &[u8], kind: &str, e: &Expect) -> Result<(), Refused> {
    let v: Value = serde_json::from_slice(raw).map_err(|_| Refused::Malformed)?;
    if v.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(Refused::WrongType);
    }
    let ch = v
        .get("challenge")
        .and_then(Value::as_str)
        .ok_or(Refused::Malformed)?;
    // Compare the decoded bytes: padding or alphabet differences do not matter.
    if unb64(ch).is_none() || unb64(ch) != unb64(e.challenge) {
        return Err(Refused::WrongChallenge);
    }
    let origin = v
        .get("origin")
        .and_then(Value::as_str)
        .ok_or(Refused::Malformed)?;
    if !e
        .origins
        .iter()
        .any(|o| o.trim_end_matches('/') == origin.trim_end_matches('/'))
    {
        return Err(Refused::WrongOrigin);
    }
    Ok(())
}

fn check_auth_data_head(ad: &[u8], e: &Expect) -> Result<(u8, u32), Refused> {
    if ad.len() < 37 {
        return Err(Refused::Malformed);
    }
    if ad[..32] != *digest::digest(&digest::SHA256, e.rp_id.as_bytes()).as_ref() {
        return Err(Refused::WrongRpId);
    }
    let flags = ad[32];
    if flags & FLAG_UP == 0 || (e.user_verification && flags & FLAG_UV == 0) {
        return Err(Refused::NotPresent);
    }
    let count = u32::from_be_bytes([ad[33], ad[34], ad[35], ad[36]]);
    Ok((flags, count))
}

/// The uncompressed point of a COSE EC2 P-256 ES256 key.
fn cose_p256(key: &Item) -> Result<Vec<u8>, Refused> {
    let kty = key.int_key(1).and_then(Item::as_int);
    let alg = key.int_key(3).and_then(Item::as_int);
    let crv = key.int_key(-1).and_then(Item::as_int);
    if kty != Some(2) || alg != Some(-7) || crv != Some(1) {
        return Err(Refused::Unsupported);
    }
    let x = key
        .int_key(-2)
        .and_then(Item::as_bytes)
        .ok_or(Refused::Malformed)?;
    let y = key
        .int_key(-3)
        .and_then(Item::as_bytes)
        .ok_or(Refused::Malformed)?;
    if x.len() != 32 || y.len() != 32 {
        return Err(Refused::Malformed);
    }
    let mut p = vec![4u8];
    p.extend(x);
    p.extend(y);
    Ok(p)
}

/// Checks a registration (`response.clientDataJSON` and `response.attestationObject`, both
/// base64url) and returns the new credential.
pub fn verify_registration(
    client_data_b64: &str,
    attestation_b64: &str,
    e: &Expect,
) -> Result<Credential, Refused> {
    let client_data = unb64(client_data_b64).ok_or(Refused::Malformed)?;
    check_client_data(&client_data, "webauthn.create", e)?;
    let att = unb64(attestation_b64).ok_or(Refused::Malformed)?;
    let obj = cbor::decode_all(&att).ok_or(Refused::Malformed)?;
    let fmt = obj
        .text_key("fmt")
        .and_then(Item::as_text)
        .ok_or(Refused::Malformed)?;
    let ad = obj
        .text_key("authData")
        .and_then(Item::as_bytes)
        .ok_or(Refused::Malformed)?;
    let (flags, sign_count) = check_auth_data_head(ad, e)?;
    if flags & FLAG_AT == 0 || ad.len() < 55 {
        return Err(Refused::Malformed);
    }
    let id_len = usize::from(u16::from_be_bytes([ad[53], ad[54]]));
    let id = ad.get(55..55 + id_len).ok_or(Refused::Malformed)?;
    let (key, _) = cbor::decode(&ad[55 + id_len..]).ok_or(Refused::Malformed)?;
    let public_key = cose_p256(&key)?;
    let stmt = obj.text_key("attStmt");
    match fmt {
        "none" => {}
        // Self attestation: the credential's own key signs authData ‖ SHA-256(clientDataJSON).
        "packed" if stmt.and_then(|s| s.text_key("x5c")).is_none() => {
            let sig = stmt
                .and_then(|s| s.text_key("sig"))
                .and_then(Item::as_bytes)
                .ok_or(Refused::Malformed)?;
            verify_sig(&public_key, ad, &client_data, sig)?;
        }
        _ => return Err(Refused::Unsupported),
    }
    Ok(Credential {
        id: b64url(id),
        public_key,
        sign_count,
    })
}

fn verify_sig(point: &[u8], ad: &[u8], client_data: &[u8], sig: &[u8]) -> Result<(), Refused> {
    let mut msg = ad.to_vec();
    msg.extend(digest::digest(&digest::SHA256, client_data).as_ref());
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(&msg, sig)
        .map_err(|_| Refused::BadSignature)
}

/// Checks an assertion against a stored credential; the new signature counter.
pub fn verify_assertion(
    cred: &Credential,
    credential_id: &str,
    client_data_b64: &str,
    auth_data_b64: &str,
    signature_b64: &str,
    e: &Expect,
) -> Result<u32, Refused> {
    if unb64(credential_id).is_none() || unb64(credential_id) != unb64(&cred.id) {
        return Err(Refused::UnknownCredential);
    }
    let client_data = unb64(client_data_b64).ok_or(Refused::Malformed)?;
    let ad = unb64(auth_data_b64).ok_or(Refused::Malformed)?;
    let sig = unb64(signature_b64).ok_or(Refused::Malformed)?;
    check_client_data(&client_data, "webauthn.get", e)?;
    let (_, count) = check_auth_data_head(&ad, e)?;
    verify_sig(&cred.public_key, &ad, &client_data, &sig)?;
    if (count != 0 || cred.sign_count != 0) && count <= cred.sign_count {
        return Err(Refused::Counter);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::cbor::{self, Item};
    use super::*;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    const RP: &str = "example.com";
    const CH: &str = "c29tZS1jaGFsbGVuZ2U";

    fn origins() -> Vec<String> {
        vec!["https://example.com".into()]
    }

    struct Authenticator {
        key: EcdsaKeyPair,
        rng: SystemRandom,
        id: Vec<u8>,
    }

    impl Authenticator {
        fn new() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Self {
                key,
                rng,
                id: vec![7; 16],
            }
        }
        fn client_data(kind: &str, ch: &str, origin: &str) -> String {
            b64url(
                serde_json::json!({"type": kind, "challenge": ch, "origin": origin})
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
        fn register(&self, rp: &str, ch: &str, origin: &str) -> (String, String) {
            let mut ad = Self::auth_data(rp, FLAG_UP | FLAG_AT, 0);
            ad.extend([0u8; 16]);
            ad.extend((self.id.len() as u16).to_be_bytes());
            ad.extend(&self.id);
            let p = self.key.public_key().as_ref();
            let cose = Item::Map(vec![
                (Item::Int(1), Item::Int(2)),
                (Item::Int(3), Item::Int(-7)),
                (Item::Int(-1), Item::Int(1)),
                (Item::Int(-2), Item::Bytes(p[1..33].to_vec())),
                (Item::Int(-3), Item::Bytes(p[33..].to_vec())),
            ]);
            ad.extend(cbor::encode(&cose));
            let att = Item::Map(vec![
                (Item::Text("fmt".into()), Item::Text("none".into())),
                (Item::Text("attStmt".into()), Item::Map(vec![])),
                (Item::Text("authData".into()), Item::Bytes(ad)),
            ]);
            (
                Self::client_data("webauthn.create", ch, origin),
                b64url(&cbor::encode(&att)),
            )
        }
        fn assert(&self, rp: &str, ch: &str, origin: &str, count: u32) -> (String, String, String) {
            let cd = Self::client_data("webauthn.get", ch, origin);
            let ad = Self::auth_data(rp, FLAG_UP, count);
            let mut msg = ad.clone();
            msg.extend(digest::digest(&digest::SHA256, &unb64(&cd).unwrap()).as_ref());
            let sig = self.key.sign(&self.rng, &msg).unwrap();
            (cd, b64url(&ad), b64url(sig.as_ref()))
        }
    }

    fn expect(o: &[String]) -> Expect<'_> {
        Expect {
            challenge: CH,
            rp_id: RP,
            origins: o,
            user_verification: false,
        }
    }

    #[test]
    fn registers_and_asserts() {
        let a = Authenticator::new();
        let o = origins();
        let (cd, att) = a.register(RP, CH, "https://example.com");
        let cred = verify_registration(&cd, &att, &expect(&o)).unwrap();
        assert_eq!(cred.public_key, a.key.public_key().as_ref());
        assert_eq!(cred.id, b64url(&a.id));
        let (cd, ad, sig) = a.assert(RP, CH, "https://example.com", 5);
        assert_eq!(
            verify_assertion(&cred, &cred.id, &cd, &ad, &sig, &expect(&o)),
            Ok(5)
        );
        let later = Credential {
            sign_count: 5,
            ..cred.clone()
        };
        assert_eq!(
            verify_assertion(&later, &cred.id, &cd, &ad, &sig, &expect(&o)),
            Err(Refused::Counter)
        );
        // Bad signature: a signature over other data.
        let (_, _, other) = a.assert(RP, CH, "https://example.com", 6);
        assert_eq!(
            verify_assertion(&cred, &cred.id, &cd, &ad, &other, &expect(&o)),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify_assertion(&cred, "AAAA", &cd, &ad, &sig, &expect(&o)),
            Err(Refused::UnknownCredential)
        );
    }

    #[test]
    fn refusals() {
        let a = Authenticator::new();
        let o = origins();
        let (cd, att) = a.register(RP, "b3RoZXI", "https://example.com");
        assert_eq!(
            verify_registration(&cd, &att, &expect(&o)),
            Err(Refused::WrongChallenge)
        );
        let (cd, att) = a.register(RP, CH, "https://evil.com");
        assert_eq!(
            verify_registration(&cd, &att, &expect(&o)),
            Err(Refused::WrongOrigin)
        );
        let (cd, att) = a.register("evil.com", CH, "https://example.com");
        assert_eq!(
            verify_registration(&cd, &att, &expect(&o)),
            Err(Refused::WrongRpId)
        );
        let (_, att) = a.register(RP, CH, "https://example.com");
        let get = Authenticator::client_data("webauthn.get", CH, "https://example.com");
        assert_eq!(
            verify_registration(&get, &att, &expect(&o)),
            Err(Refused::WrongType)
        );
        let (cd, _) = a.register(RP, CH, "https://example.com");
        assert_eq!(
            verify_registration(&cd, "!!", &expect(&o)),
            Err(Refused::Malformed)
        );
        let uv = Expect {
            user_verification: true,
            ..expect(&o)
        };
        let (cd, att) = a.register(RP, CH, "https://example.com");
        assert_eq!(
            verify_registration(&cd, &att, &uv),
            Err(Refused::NotPresent)
        );
    }

    #[test]
    fn cbor_known_vectors() {
        // RFC 8949 appendix A.
        assert_eq!(cbor::decode_all(&[0x18, 0x64]), Some(Item::Int(100)));
        assert_eq!(cbor::decode_all(&[0x38, 0x63]), Some(Item::Int(-100)));
        assert_eq!(
            cbor::decode_all(&[0x43, 1, 2, 3]),
            Some(Item::Bytes(vec![1, 2, 3]))
        );
        assert_eq!(
            cbor::decode_all(&[0x62, 0x61, 0x62]),
            Some(Item::Text("ab".into()))
        );
        assert_eq!(
            cbor::decode_all(&[0xa1, 0x01, 0x82, 0x02, 0x03]),
            Some(Item::Map(vec![(
                Item::Int(1),
                Item::Array(vec![Item::Int(2), Item::Int(3)])
            )]))
        );
        assert_eq!(cbor::decode_all(&[0x9f, 0xff]), None); // indefinite length: refused
        assert_eq!(
            cbor::decode_all(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(cbor::decode_all(&[0x01, 0x02]), None); // trailing bytes
    }

    fn item() -> impl Strategy<Value = Item> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|n| Item::Int(i128::from(n))),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Item::Bytes),
            ".{0,20}".prop_map(Item::Text),
            any::<bool>().prop_map(Item::Bool),
            Just(Item::Null),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Item::Array),
                proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Item::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn cbor_round_trips(i in item()) {
            prop_assert_eq!(cbor::decode_all(&cbor::encode(&i)), Some(i));
        }

        #[test]
        fn cbor_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = cbor::decode(&bytes);
        }
    }
}
