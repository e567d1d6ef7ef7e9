//! Twilio's date format: `YYYY-MM-DDTHH:MM:SSZ`, UTC, whole seconds. Times are kept as
//! milliseconds since the Unix epoch everywhere else.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Twilio's date format, as chrono writes and reads it.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// The last millisecond of year 9999: past it the year no longer has four digits.
const MAX_FOUR_DIGIT_MS: i64 = 253_402_300_799_999;

/// Formats epoch milliseconds as Twilio does. Every response with a date calls this, so the
/// common range (years 1970–9999) is written digit by digit rather than through a format
/// string; anything else goes through chrono.
pub fn format(ms: i64) -> String {
    if !(0..=MAX_FOUR_DIGIT_MS).contains(&ms) {
        return DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .format(FORMAT)
            .to_string();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = [0u8; 20];
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out[19] = b'Z';
    out.iter().map(|&b| char::from(b)).collect()
}

/// (year, month, day) of a day counted from 1970-01-01 (not negative): the proleptic
/// Gregorian calendar in 400-year eras, as in Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into epoch milliseconds.
pub fn parse(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s, FORMAT)
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_whole_seconds_in_utc() {
        assert_eq!(format(1_438_286_400_999), "2015-07-30T20:00:00Z");
        assert_eq!(parse("2015-07-30T20:00:00Z"), Some(1_438_286_400_000));
        assert_eq!(parse("2015-07-30T20:00:00+00:00"), None);
        assert_eq!(parse("2015-07-30T20:00:00.5Z"), None);
    }

    fn by_chrono(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .format(FORMAT)
            .to_string()
    }

    #[test]
    fn formats_the_edges_of_the_fast_range_as_chrono_does() {
        for ms in [
            0,
            999,
            86_399_999,
            86_400_000,
            951_782_400_000,   // 2000-02-29
            4_107_542_399_999, // 2100-02-28T23:59:59.999
            4_107_542_400_000, // 2100-03-01
            MAX_FOUR_DIGIT_MS,
            MAX_FOUR_DIGIT_MS + 1,
            -1,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(format(ms), by_chrono(ms), "{ms}");
        }
    }

    proptest! {
        #[test]
        fn formats_as_chrono_does(ms in any::<i64>()) {
            prop_assert_eq!(format(ms), by_chrono(ms));
        }

        #[test]
        fn formats_the_common_range_as_chrono_does(ms in 0i64..=MAX_FOUR_DIGIT_MS) {
            prop_assert_eq!(format(ms), by_chrono(ms));
        }

        #[test]
        fn parse_inverts_format_to_the_second(ms in 0i64..4_102_444_800_000) {
            prop_assert_eq!(parse(&format(ms)), Some(ms - ms.rem_euclid(1000)));
        }
    }
}
