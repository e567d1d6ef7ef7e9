//! Small shared steps and checks for the Twilio surface: the resource chain (from
//! `../common/fixtures.rs`), the SID and date formats, and the control-plane clock.

use serde_json::Value;

pub use crate::fixtures::{
    Chain, add_rate_limit, create_bucket, create_chain, create_rate_limit, create_service,
};
use crate::harness::{Client, Reply};

/// Asserts `sid` is `prefix` followed by 32 lowercase hex digits.
#[track_caller]
pub fn assert_sid(value: &Value, prefix: &str) -> String {
    let sid = value
        .as_str()
        .unwrap_or_else(|| panic!("SID is not a string: {value}"));
    assert_eq!(sid.len(), 34, "SID {sid:?} is not 34 characters long");
    assert!(
        sid.starts_with(prefix),
        "SID {sid:?} does not start with {prefix}"
    );
    assert!(
        sid[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "SID {sid:?} is not {prefix} + 32 lowercase hex digits"
    );
    sid.to_owned()
}

/// Whether `s` matches `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`.
pub fn is_twilio_date(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:ddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(c, &shape)| match shape {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// Asserts a Twilio date and returns it as seconds since the Unix epoch.
#[track_caller]
pub fn assert_date(value: &Value) -> i64 {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("date is not a string: {value}"));
    assert!(is_twilio_date(s), "date {s:?} is not YYYY-MM-DDTHH:MM:SSZ");
    epoch_seconds(s)
}

/// `YYYY-MM-DDTHH:MM:SSZ` → seconds since the Unix epoch (proleptic Gregorian calendar).
pub fn epoch_seconds(s: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| s[range].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3_600 + mm * 60 + ss
}

/// Asserts the `date_created`/`date_updated` pair of a fresh resource.
#[track_caller]
pub fn assert_fresh_dates(resource: &Value) {
    let created = assert_date(&resource["date_created"]);
    let updated = assert_date(&resource["date_updated"]);
    assert_eq!(
        created, updated,
        "a new resource has date_updated == date_created: {resource}"
    );
}

/// Moves the caller's clock forward with the control plane.
pub async fn advance_clock(client: &Client, seconds: u64) -> Value {
    client
        .post_form(
            "/emulator/v1/Clock",
            &[("AdvanceSeconds", &seconds.to_string())],
        )
        .await
        .expect(200)
}

/// The caller's current time (seconds since the epoch) from the control plane.
pub async fn clock_now(client: &Client) -> i64 {
    let clock = client.get("/emulator/v1/Clock").await.expect(200);
    assert_date(&clock["now"])
}

/// The chain most tests here need: service `Chain`, rate limit `end_user_ip`, one bucket of 5
/// per 60 s.
pub async fn one_of_each(client: &Client) -> Chain {
    create_chain(
        client,
        &[("FriendlyName", "Chain")],
        &[("end_user_ip", &[(5, 60)])],
    )
    .await
}

#[track_caller]
pub fn str_of(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

pub fn service_path(service_sid: &str) -> String {
    format!("/v2/Services/{service_sid}")
}

pub fn rate_limits_path(service_sid: &str) -> String {
    format!("/v2/Services/{service_sid}/RateLimits")
}

pub fn rate_limit_path(service_sid: &str, rate_limit_sid: &str) -> String {
    format!("/v2/Services/{service_sid}/RateLimits/{rate_limit_sid}")
}

pub fn buckets_path(service_sid: &str, rate_limit_sid: &str) -> String {
    format!("/v2/Services/{service_sid}/RateLimits/{rate_limit_sid}/Buckets")
}

pub fn bucket_path(service_sid: &str, rate_limit_sid: &str, bucket_sid: &str) -> String {
    format!("/v2/Services/{service_sid}/RateLimits/{rate_limit_sid}/Buckets/{bucket_sid}")
}

/// Asserts a 204 with an empty body.
#[track_caller]
pub fn assert_deleted(reply: &Reply) {
    assert_eq!(
        reply.status, 204,
        "{} {} answered {}: {}",
        reply.method, reply.url, reply.status, reply.body
    );
    assert!(
        reply.body.is_empty(),
        "a 204 has an empty body, got {:?}",
        reply.body
    );
}

/// Asserts a 404 / 20404 naming the path after `/v2`.
#[track_caller]
pub fn assert_not_found(reply: &Reply, path_after_v2: &str) {
    let message = reply.error_message(404, 20404);
    assert_eq!(
        message,
        format!("The requested resource {path_after_v2} was not found")
    );
}

/// A JSON object without the given keys, to compare everything else.
pub fn without(value: &Value, keys: &[&str]) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        for key in keys {
            object.remove(*key);
        }
    }
    value
}

/// Valid-looking SIDs that no server ever generated (all `0`).
pub fn unknown_sid(prefix: &str) -> String {
    format!("{prefix}{}", "0".repeat(32))
}
