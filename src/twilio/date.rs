//! Twilio's date format: `YYYY-MM-DDTHH:MM:SSZ`, UTC, whole seconds. Times are kept as
//! milliseconds since the Unix epoch everywhere else.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Formats epoch milliseconds as Twilio does.
pub fn format(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` into epoch milliseconds.
pub fn parse(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
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

    proptest! {
        #[test]
        fn parse_inverts_format_to_the_second(ms in 0i64..4_102_444_800_000) {
            prop_assert_eq!(parse(&format(ms)), Some(ms - ms.rem_euclid(1000)));
        }
    }
}
