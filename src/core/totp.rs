//! RFC 6238 time-based one-time passwords (TOTP, over RFC 4226's HOTP), decided purely: the
//! code of a secret at a time step, and which time step a submitted code belongs to.
//!
//! Time is handed in (the account's clock, epoch milliseconds); nothing here reads a clock.
//! Replay protection is part of the decision: a code is only accepted for a time step later
//! than the last one this factor accepted, so no code (no time step) is ever accepted twice.

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

/// The HMAC hash of a TOTP factor (`Config.Alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Sha1,
    Sha256,
    Sha512,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Sha1 => "sha1",
            Alg::Sha256 => "sha256",
            Alg::Sha512 => "sha512",
        }
    }

    /// The name in an `otpauth://` URI (Google Authenticator's key URI format).
    pub fn uri_name(self) -> &'static str {
        match self {
            Alg::Sha1 => "SHA1",
            Alg::Sha256 => "SHA256",
            Alg::Sha512 => "SHA512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sha1" => Some(Alg::Sha1),
            "sha256" => Some(Alg::Sha256),
            "sha512" => Some(Alg::Sha512),
            _ => None,
        }
    }
}

/// A TOTP factor's settings (`config` of a factor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub alg: Alg,
    /// Digits of a code, 3–8.
    pub code_length: u32,
    /// Seconds per code, 20–60.
    pub time_step: u32,
    /// Time steps before and after the current one also accepted, 0–2.
    pub skew: u32,
}

impl Default for Config {
    /// Twilio's documented defaults: SHA-1, 6 digits, 30 seconds, one step of skew.
    fn default() -> Self {
        Self {
            alg: Alg::Sha1,
            code_length: 6,
            time_step: 30,
            skew: 1,
        }
    }
}

/// Valid ranges, from Twilio's documentation of `Config.*` (and `Totp.*` on a service).
pub const CODE_LENGTH: std::ops::RangeInclusive<i64> = 3..=8;
pub const TIME_STEP: std::ops::RangeInclusive<i64> = 20..=60;
pub const SKEW: std::ops::RangeInclusive<i64> = 0..=2;

fn mac(alg: Alg, key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    macro_rules! run {
        ($hash:ty) => {{
            let mut m = Hmac::<$hash>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        Alg::Sha1 => run!(sha1::Sha1),
        Alg::Sha256 => run!(sha2::Sha256),
        Alg::Sha512 => run!(sha2::Sha512),
    }
}

/// RFC 4226 HOTP: the `digits`-digit code of `key` at `counter`, zero-padded.
pub fn hotp(alg: Alg, key: &[u8], counter: u64, digits: u32) -> String {
    let h = mac(alg, key, &counter.to_be_bytes());
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    let modulus = 10u64.pow(digits);
    format!(
        "{:0width$}",
        u64::from(binary) % modulus,
        width = digits as usize
    )
}

/// The time step (RFC 6238's `T`, with `T0` = 0) that `now_ms` falls in.
pub fn step_at(now_ms: i64, time_step: u32) -> i64 {
    now_ms.div_euclid(1000 * i64::from(time_step))
}

/// The code of `key` at `now_ms`.
pub fn code_at(key: &[u8], config: &Config, now_ms: i64) -> String {
    let step = step_at(now_ms, config.time_step).max(0) as u64;
    hotp(config.alg, key, step, config.code_length)
}

/// Which time step `code` belongs to, if it is accepted at `now_ms`: one of the steps within
/// `skew` of the current one, and starting later than `last_used_s` (the start, in epoch
/// seconds, of the step this factor last accepted). Returns that step's start in epoch seconds,
/// to be stored as the factor's new `last_used_s`. Every candidate is compared in constant time.
pub fn accept(
    key: &[u8],
    config: &Config,
    code: &str,
    now_ms: i64,
    last_used_s: Option<i64>,
) -> Option<i64> {
    if code.len() != config.code_length as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now_ms, config.time_step);
    let skew = i64::from(config.skew);
    let mut accepted = None;
    for step in (current - skew)..=(current + skew) {
        if step < 0 {
            continue;
        }
        let start_s = step * i64::from(config.time_step);
        let fresh = last_used_s.is_none_or(|last| start_s > last);
        let expected = hotp(config.alg, key, step as u64, config.code_length);
        let equal: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if equal && fresh && accepted.is_none() {
            accepted = Some(start_s);
        }
    }
    accepted
}

/// Decodes a base32 secret (RFC 4648, case-insensitive, padding optional); `None` if it is not
/// base32.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let normal = normalize_secret(secret);
    if normal.is_empty() {
        return None;
    }
    data_encoding::BASE32_NOPAD.decode(normal.as_bytes()).ok()
}

/// A secret as it is kept and shown: upper case, without padding.
pub fn normalize_secret(secret: &str) -> String {
    secret.trim_end_matches('=').to_ascii_uppercase()
}

/// A secret's bytes as base32 without padding.
pub fn encode_secret(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6238, Appendix B: the seeds and the 8-digit codes at each test time.
    const SHA1_SEED: &[u8] = b"12345678901234567890";
    const SHA256_SEED: &[u8] = b"12345678901234567890123456789012";
    const SHA512_SEED: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";
    const VECTORS: &[(i64, &str, &str, &str)] = &[
        (59, "94287082", "46119246", "90693936"),
        (1_111_111_109, "07081804", "68084774", "25091201"),
        (1_111_111_111, "14050471", "67062674", "99943326"),
        (1_234_567_890, "89005924", "91819424", "93441116"),
        (2_000_000_000, "69279037", "90698825", "38618901"),
        (20_000_000_000, "65353130", "77737706", "47863826"),
    ];

    fn config(alg: Alg) -> Config {
        Config {
            alg,
            code_length: 8,
            time_step: 30,
            skew: 0,
        }
    }

    #[test]
    fn rfc_6238_appendix_b_test_vectors() {
        for (t, sha1, sha256, sha512) in VECTORS {
            let ms = t * 1000;
            assert_eq!(
                code_at(SHA1_SEED, &config(Alg::Sha1), ms),
                *sha1,
                "SHA1 at {t}"
            );
            assert_eq!(
                code_at(SHA256_SEED, &config(Alg::Sha256), ms),
                *sha256,
                "SHA256 at {t}"
            );
            assert_eq!(
                code_at(SHA512_SEED, &config(Alg::Sha512), ms),
                *sha512,
                "SHA512 at {t}"
            );
        }
    }

    #[test]
    fn rfc_4226_appendix_d_hotp_values() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(Alg::Sha1, SHA1_SEED, counter as u64, 6), *code);
        }
    }

    #[test]
    fn the_test_vectors_are_accepted_once_at_their_time_and_never_again() {
        for (t, sha1, _, _) in VECTORS {
            let c = config(Alg::Sha1);
            let used = accept(SHA1_SEED, &c, sha1, t * 1000, None).expect("accepted");
            assert_eq!(used, t - t % 30);
            assert_eq!(accept(SHA1_SEED, &c, sha1, t * 1000, Some(used)), None);
        }
    }

    #[test]
    fn codes_of_other_lengths_or_with_non_digits_are_refused() {
        let c = Config::default();
        let code = code_at(SHA1_SEED, &c, 59_000);
        assert!(accept(SHA1_SEED, &c, &code, 59_000, None).is_some());
        assert_eq!(
            accept(SHA1_SEED, &c, &format!("0{code}"), 59_000, None),
            None
        );
        assert_eq!(accept(SHA1_SEED, &c, &code[1..], 59_000, None), None);
        assert_eq!(accept(SHA1_SEED, &c, "12345a", 59_000, None), None);
    }

    #[test]
    fn base32_secrets_decode_in_either_case_with_or_without_padding() {
        assert_eq!(decode_secret("GEZDGNBVGY3TQOJQ").unwrap(), b"1234567890");
        assert_eq!(decode_secret("gezdgnbvgy3tqojq").unwrap(), b"1234567890");
        assert_eq!(decode_secret("GEZDGNBV").unwrap(), b"12345");
        assert_eq!(decode_secret("MZXW6==="), Some(b"foo".to_vec()));
        assert_eq!(decode_secret("not base32!"), None);
        assert_eq!(decode_secret(""), None);
        assert_eq!(encode_secret(b"1234567890"), "GEZDGNBVGY3TQOJQ");
    }

    proptest! {
        /// A code is accepted exactly within ±skew steps of its own, and only for a step later
        /// than the last one used.
        #[test]
        fn acceptance_window_and_replay(
            key in proptest::collection::vec(any::<u8>(), 10..40),
            alg in prop_oneof![Just(Alg::Sha1), Just(Alg::Sha256), Just(Alg::Sha512)],
            digits in 6u32..=8,
            time_step in 20u32..=60,
            skew in 0u32..=2,
            at_s in 1_000_000i64..4_000_000_000,
            shift in -4i64..=4,
            within in 0i64..1000,
        ) {
            let c = Config { alg, code_length: digits, time_step, skew };
            let step = at_s / i64::from(time_step);
            let code = hotp(alg, &key, step as u64, digits);
            // The server's time: `shift` steps away from the code's step.
            let now_ms = (step + shift) * i64::from(time_step) * 1000 + within;
            let got = accept(&key, &c, &code, now_ms, None);
            if shift.abs() <= i64::from(skew) {
                let used = got.expect("a code within the skew is accepted");
                // Another step of the window may share the code by chance; it is never older.
                prop_assert!(used <= step * i64::from(time_step));
                prop_assert_eq!(accept(&key, &c, &code, now_ms, Some(step * i64::from(time_step))), None);
            } else if let Some(used) = got {
                // Only by a chance collision with a step inside the window.
                prop_assert!((used / i64::from(time_step) - (step + shift)).abs() <= i64::from(skew));
            }
        }
    }
}
