//! The values a service, rate limit or bucket may hold, each with its rule written once.
//!
//! Both producers of configuration build them the same way: the API from a form parameter
//! (`TryFrom<&str>`, integers in the form's plain decimal syntax), the seed file from its JSON
//! (`TryFrom<&str>` for text, `TryFrom<u32>` for numbers). A value that exists is valid; the
//! records above keep plain fields, filled from these. A refusal is an [`Invalid`]: the API
//! answers it with Twilio's code and message (`crate::api`), the seed file names the key and
//! shows the rule (its `Display`).

use std::fmt;

use crate::twilio::form::{TextProblem, parse_int, text_problem};

/// Why a value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Too long, or with control characters (Twilio 60200, with the reason).
    Text {
        param: &'static str,
        problem: TextProblem,
    },
    /// Empty or only whitespace (Twilio 60200).
    Blank { param: &'static str },
    /// Not an integer within `min..=max` (Twilio 60200).
    OutOfRange {
        param: &'static str,
        min: u32,
        max: u32,
    },
    /// Not 1 to [`UniqueName::MAX_LEN`] of `[A-Za-z0-9._-]` (Twilio 60209).
    UniqueName,
}

impl Invalid {
    /// The API parameter the value came in (`FriendlyName`, `Max`, …).
    pub fn param(&self) -> &'static str {
        match *self {
            Invalid::Text { param, .. }
            | Invalid::Blank { param }
            | Invalid::OutOfRange { param, .. } => param,
            Invalid::UniqueName => UniqueName::NAME,
        }
    }
}

/// The rule that was broken, as the seed file's errors show it after the key.
impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Text { problem, .. } => problem.fmt(f),
            Invalid::Blank { .. } => f.write_str("must not be blank"),
            Invalid::OutOfRange { min, max, .. } => {
                write!(f, "must be an integer from {min} to {max}")
            }
            Invalid::UniqueName => write!(
                f,
                "use 1 to {} letters, digits, '.', '_' or '-'",
                UniqueName::MAX_LEN
            ),
        }
    }
}

impl std::error::Error for Invalid {}

/// A value that arrives as one form parameter.
pub trait Parameter: Sized + for<'a> TryFrom<&'a str, Error = Invalid> {
    /// The parameter's name in Twilio's API.
    const NAME: &'static str;
}

fn text(param: &'static str, v: &str, max_chars: usize) -> Result<(), Invalid> {
    match text_problem(v, max_chars) {
        Some(problem) => Err(Invalid::Text { param, problem }),
        None => Ok(()),
    }
}

/// Text newtypes: the value as given, with its accessors.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $param:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Parameter for $name {
            const NAME: &'static str = $param;
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

text_value!(
    /// A service's name: 1 to 32 characters, not only whitespace, no control characters.
    FriendlyName,
    "FriendlyName"
);

impl FriendlyName {
    pub const MAX_CHARS: usize = 32;
}

impl TryFrom<&str> for FriendlyName {
    type Error = Invalid;

    fn try_from(v: &str) -> Result<Self, Invalid> {
        text(Self::NAME, v, Self::MAX_CHARS)?;
        if v.trim().is_empty() {
            return Err(Invalid::Blank { param: Self::NAME });
        }
        Ok(Self(v.to_owned()))
    }
}

text_value!(
    /// A rate limit's name: 1 to 64 of `[A-Za-z0-9._-]` (the length is our choice; Twilio
    /// publishes none).
    UniqueName,
    "UniqueName"
);

impl UniqueName {
    pub const MAX_LEN: usize = 64;
}

impl TryFrom<&str> for UniqueName {
    type Error = Invalid;

    fn try_from(v: &str) -> Result<Self, Invalid> {
        let ok = !v.is_empty()
            && v.len() <= Self::MAX_LEN
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Self(v.to_owned()))
        } else {
            Err(Invalid::UniqueName)
        }
    }
}

text_value!(
    /// A rate limit's description: up to 255 characters, no control characters.
    Description,
    "Description"
);

impl Description {
    pub const MAX_CHARS: usize = 255;
}

impl TryFrom<&str> for Description {
    type Error = Invalid;

    fn try_from(v: &str) -> Result<Self, Invalid> {
        text(Self::NAME, v, Self::MAX_CHARS)?;
        Ok(Self(v.to_owned()))
    }
}

/// Integer newtypes within `MIN..=MAX`, from a form's plain decimal or from JSON.
macro_rules! bounded_integer {
    ($(#[$doc:meta])* $name:ident, $param:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            pub const MIN: u32 = $min;
            pub const MAX: u32 = $max;

            pub fn get(self) -> u32 {
                self.0
            }

            fn out_of_range() -> Invalid {
                Invalid::OutOfRange {
                    param: $param,
                    min: Self::MIN,
                    max: Self::MAX,
                }
            }
        }

        impl Parameter for $name {
            const NAME: &'static str = $param;
        }

        impl TryFrom<u32> for $name {
            type Error = Invalid;

            fn try_from(n: u32) -> Result<Self, Invalid> {
                if (Self::MIN..=Self::MAX).contains(&n) {
                    Ok(Self(n))
                } else {
                    Err(Self::out_of_range())
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Invalid;

            fn try_from(v: &str) -> Result<Self, Invalid> {
                let n = parse_int(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(Self::out_of_range)?;
                Self::try_from(n)
            }
        }

        impl From<$name> for u32 {
            fn from(v: $name) -> u32 {
                v.0
            }
        }
    };
}

bounded_integer!(
    /// The length of a service's codes: 4 to 10 digits.
    CodeLength,
    "CodeLength",
    4,
    10
);

bounded_integer!(
    /// A bucket's Max: at least 1 (the upper bound is our choice; Twilio publishes none).
    Max,
    "Max",
    1,
    1_000_000_000
);

bounded_integer!(
    /// A bucket's Interval in seconds: 1 to 86400 (our choice; Twilio publishes none).
    Interval,
    "Interval",
    1,
    86_400
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    fn no_control(s: &str) -> bool {
        !s.chars().any(|c| c.is_control() || c == '\u{FFFD}')
    }

    /// Strings near each rule's edges as well as arbitrary ones.
    fn texts() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9._-]{0,70}",
            "[ a-z\\t]{0,4}",
            "\\PC{0,40}",
            "\\PC{250,260}",
            any::<String>(),
        ]
    }

    fn integers() -> impl Strategy<Value = String> {
        prop_oneof![
            (-5i64..100_000).prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            (999_999_990u32..=1_000_000_010).prop_map(|n| n.to_string()),
            "[+-]?0*[0-9]{1,3}",
            "\\PC{0,6}",
        ]
    }

    /// Accepted ⇔ a plain decimal within `min..=max`; what is accepted keeps its number, and
    /// the number alone (from JSON or printed) gives the same value.
    fn check_bounded<T>(v: &str, min: u32, max: u32) -> Result<(), TestCaseError>
    where
        T: for<'a> TryFrom<&'a str, Error = Invalid> + TryFrom<u32, Error = Invalid>,
        T: Into<u32> + Copy + PartialEq + fmt::Debug,
    {
        let rule = parse_int(v).is_some_and(|n| (i64::from(min)..=i64::from(max)).contains(&n));
        match <T as TryFrom<&str>>::try_from(v) {
            Ok(t) => {
                prop_assert!(rule, "{:?} accepted", v);
                let n: u32 = t.into();
                prop_assert_eq!(Some(i64::from(n)), parse_int(v));
                prop_assert_eq!(<T as TryFrom<u32>>::try_from(n), Ok(t));
                prop_assert_eq!(
                    <T as TryFrom<&str>>::try_from(n.to_string().as_str()),
                    Ok(t)
                );
            }
            Err(e) => {
                prop_assert!(!rule, "{:?} refused: {}", v, e);
                prop_assert!(matches!(e, Invalid::OutOfRange { .. }), "{:?}", e);
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn unique_name_is_1_to_64_of_letters_digits_dot_dash_underscore(v in texts()) {
            let rule = (1..=64).contains(&v.len())
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            match UniqueName::try_from(v.as_str()) {
                Ok(n) => {
                    prop_assert!(rule);
                    prop_assert_eq!(n.as_str(), v.as_str());
                    prop_assert_eq!(String::from(n), v);
                }
                Err(e) => {
                    prop_assert!(!rule);
                    prop_assert_eq!(e, Invalid::UniqueName);
                }
            }
        }

        #[test]
        fn friendly_name_is_1_to_32_characters_not_blank(v in texts()) {
            let rule = v.chars().count() <= 32 && no_control(&v) && !v.trim().is_empty();
            match FriendlyName::try_from(v.as_str()) {
                Ok(n) => {
                    prop_assert!(rule);
                    prop_assert_eq!(String::from(n), v);
                }
                Err(e) => {
                    prop_assert!(!rule);
                    prop_assert_eq!(e.param(), "FriendlyName");
                }
            }
        }

        #[test]
        fn description_is_up_to_255_characters(v in texts()) {
            let rule = v.chars().count() <= 255 && no_control(&v);
            match Description::try_from(v.as_str()) {
                Ok(d) => {
                    prop_assert!(rule);
                    prop_assert_eq!(String::from(d), v);
                }
                Err(e) => {
                    prop_assert!(!rule);
                    let is_text = matches!(e, Invalid::Text { param: "Description", .. });
                    prop_assert!(is_text, "{:?}", e);
                }
            }
        }

        #[test]
        fn max_is_1_to_a_billion(v in integers()) {
            check_bounded::<Max>(&v, 1, 1_000_000_000)?;
        }

        #[test]
        fn interval_is_1_to_86400(v in integers()) {
            check_bounded::<Interval>(&v, 1, 86_400)?;
        }

        #[test]
        fn code_length_is_4_to_10(v in integers()) {
            check_bounded::<CodeLength>(&v, 4, 10)?;
        }

        #[test]
        fn numbers_from_json_follow_the_same_rule(n in any::<u32>()) {
            prop_assert_eq!(Max::try_from(n).is_ok(), (1..=1_000_000_000).contains(&n));
            prop_assert_eq!(Interval::try_from(n).is_ok(), (1..=86_400).contains(&n));
            prop_assert_eq!(CodeLength::try_from(n).is_ok(), (4..=10).contains(&n));
        }
    }

    #[test]
    fn errors_show_the_rule() {
        let e = FriendlyName::try_from(" ").unwrap_err();
        assert_eq!(e.to_string(), "must not be blank");
        let e = FriendlyName::try_from("x".repeat(33).as_str()).unwrap_err();
        assert_eq!(e.to_string(), "must be at most 32 characters");
        let e = Description::try_from("a\u{7}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "must not contain control characters or invalid UTF-8"
        );
        let e = Interval::try_from(0).unwrap_err();
        assert_eq!(e.to_string(), "must be an integer from 1 to 86400");
        assert_eq!(e.param(), "Interval");
        let e = UniqueName::try_from("has space").unwrap_err();
        assert_eq!(
            e.to_string(),
            "use 1 to 64 letters, digits, '.', '_' or '-'"
        );
    }
}
