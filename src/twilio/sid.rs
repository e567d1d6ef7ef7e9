//! Twilio SIDs: a two-letter prefix and 32 lowercase hex digits.
//!
//! Generated SIDs are time-ordered (48 bits of milliseconds and a 16-bit sequence, then 64 random
//! bits) so that lists, which are ordered by SID, come back in creation order and keyset paging by
//! SID never skips or repeats a record.

use std::sync::atomic::{AtomicU64, Ordering};

pub const ACCOUNT: &str = "AC";
pub const SERVICE: &str = "VA";
pub const RATE_LIMIT: &str = "RK";
pub const BUCKET: &str = "BL";
pub const VERIFICATION: &str = "VE";
pub const ATTEMPT: &str = "VL";
pub const API_KEY: &str = "SK";
pub const ENTITY: &str = "YE";
pub const FACTOR: &str = "YF";
pub const CHALLENGE: &str = "YC";

static LAST: AtomicU64 = AtomicU64::new(0);

/// A new SID with the given prefix.
pub fn generate(prefix: &str) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let floor = (now_ms & 0xffff_ffff_ffff) << 16;
    let ordered = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(floor.max(last + 1))
        })
        .map(|last| floor.max(last + 1))
        .unwrap_or(floor);
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    push_hex(&mut out, ordered);
    push_hex(&mut out, rand::random::<u64>());
    out
}

/// Appends `n` as 16 lowercase hex digits (what `{:016x}` writes, without the formatter).
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[((n >> (shift * 4)) & 0xf) as usize]));
    }
}

/// Whether `s` is a well-formed SID with this prefix (hex digits of either case, as the spec's
/// patterns allow).
pub fn is_valid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_sids_are_well_formed_and_increasing() {
        let mut last = generate(SERVICE);
        assert!(is_valid(&last, SERVICE));
        for _ in 0..10_000 {
            let next = generate(SERVICE);
            assert!(is_valid(&next, SERVICE), "{next}");
            assert!(next[2..18] > last[2..18], "{next} after {last}");
            assert_eq!(next, next.to_lowercase()[..].replacen("va", "VA", 1));
            last = next;
        }
    }

    proptest! {
        #[test]
        fn hex_digits_are_what_the_formatter_writes(n in any::<u64>()) {
            let mut out = String::new();
            push_hex(&mut out, n);
            prop_assert_eq!(out, format!("{n:016x}"));
        }

        #[test]
        fn validation_accepts_only_prefix_and_32_hex(s in "\\PC{0,40}") {
            let ok = is_valid(&s, SERVICE);
            let expected = s.len() == 34 && s.starts_with("VA")
                && s.chars().skip(2).all(|c| c.is_ascii_hexdigit());
            prop_assert_eq!(ok, expected);
        }
    }
}
