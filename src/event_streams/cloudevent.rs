//! Events in Event Streams format, and how Twilio signs what it sends to a webhook sink.
//!
//! Format (Twilio, "Verification Stream", https://www.twilio.com/docs/verify/verification, and
//! the examples of https://www.twilio.com/docs/events/event-types/verify/verification-status):
//! a webhook sink receives a JSON **array** of CloudEvents 1.0 objects with `specversion`,
//! `type`, `source` (`/v1/Accounts/AC…/Services/VA…/Verifications/VE…`), `id`, `dataschema`
//! (`https://events-schemas.twilio.com/AccountSecurity.VerifyEventStreamEvent/<version>`),
//! `datacontenttype` and `time`; `data` holds the fields of the schema
//! `AccountSecurity.VerifyEventStreamEvent`: `account_sid`, `service_sid`, `verification_sid`,
//! `friendly_name`, `custom_code_enabled`, `custom_friendly_name`, `created_at`, `verified_at`,
//! `to`, `verification_status` (upper case), `country`, `code_length`, `send_code_attempts`
//! (`count`, `attempts`: `time`, `channel`, `attempt_sid`, `delivery_status`), `check_attempts`
//! (`count`) and `expired_at`. Times are ISO 8601 with milliseconds. The code is never part
//! of an event. `country` is left out (verilimit does not look numbers up); `delivery_status`
//! is always `SENT`, as Twilio now sends to new subscribers (changelog 2026-04-01: "will no
//! longer provide updated message delivery status").
//!
//! Signature (Twilio, "Webhooks security": JSON bodies): the body's SHA-256, in lower-case hex,
//! is appended to the URL as the query parameter `bodySHA256`; the request goes to that URL and
//! `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the account's auth token, of that
//! full URL (no body parameters are appended: the body is covered by its hash).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Digest;

use super::types::{SCHEMA_HOST, TEST_EVENT, TEST_SCHEMA, VERIFY_SCHEMA};
use crate::catalog::ServiceRecord;
use crate::core::{Status, Verification};
use crate::events::Kind;

/// The five verification status events, in Event Streams' names.
pub fn verify_type(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        // A re-send is a successful Start New Verification call too: Twilio's pending event
        // "fires after a successful Start New Verification API call", so each one emits it.
        Kind::Started | Kind::Resent => "com.twilio.accountsecurity.verify.verification.pending",
        Kind::Approved => "com.twilio.accountsecurity.verify.verification.approved",
        Kind::Canceled => "com.twilio.accountsecurity.verify.verification.canceled",
        Kind::Expired => "com.twilio.accountsecurity.verify.verification.expired",
        Kind::MaxAttemptsReached => {
            "com.twilio.accountsecurity.verify.verification.max-attempts-reached"
        }
        Kind::Refused | Kind::CheckFailed => return None,
    })
}

/// ISO 8601 with milliseconds, as in Twilio's examples (`2025-01-01T00:00:00.000Z`).
pub fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A fresh event id: 64 hex digits, the shape of Twilio's own.
pub fn event_id() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// One verification status event (`kind` already mapped to `event_type`) at `at_ms`.
pub fn verification_event(
    event_type: &str,
    schema_version: i64,
    service: &ServiceRecord,
    v: &Verification,
    at_ms: i64,
) -> Value {
    let status = match event_type.rsplit('.').next() {
        Some("max-attempts-reached") => "MAX_ATTEMPTS_REACHED".to_owned(),
        Some(s) => s.to_ascii_uppercase(),
        None => String::new(),
    };
    let attempts: Vec<Value> = v
        .attempts
        .iter()
        .map(|a| {
            json!({
                "time": iso_ms(a.at_ms),
                "channel": a.channel.to_ascii_uppercase(),
                "attempt_sid": a.sid,
                "delivery_status": "SENT",
            })
        })
        .collect();
    // Failed checks, and the check that approved it (an approval by status update counts too:
    // verilimit does not tell the two apart).
    let checks = v.checks_failed + u32::from(v.status == Status::Approved);
    let mut data = json!({
        "account_sid": v.account_sid,
        "service_sid": v.service_sid,
        "verification_sid": v.sid,
        "friendly_name": service.friendly_name,
        "custom_code_enabled": service.custom_code_enabled,
        "custom_friendly_name": service.friendly_name,
        "created_at": iso_ms(v.date_created),
        "to": v.to,
        "verification_status": status,
        "code_length": service.code_length,
        "send_code_attempts": { "count": attempts.len(), "attempts": attempts },
        "check_attempts": { "count": checks },
        "expired_at": iso_ms(v.expires_ms),
    });
    if v.status == Status::Approved {
        data["verified_at"] = Value::from(iso_ms(v.date_updated));
    }
    json!({
        "specversion": "1.0",
        "type": event_type,
        "source": format!(
            "/v1/Accounts/{}/Services/{}/Verifications/{}",
            v.account_sid, v.service_sid, v.sid
        ),
        "id": event_id(),
        "dataschema": format!("{SCHEMA_HOST}/{VERIFY_SCHEMA}/{schema_version}"),
        "datacontenttype": "application/json",
        "time": iso_ms(at_ms),
        "data": data,
    })
}

/// The test event of `POST /v1/Sinks/{Sid}/Test` (its `data` shape is our choice: Twilio
/// documents only that a test event is published).
pub fn test_event(account: &str, sink_sid: &str, at_ms: i64) -> Value {
    json!({
        "specversion": "1.0",
        "type": TEST_EVENT,
        "source": format!("/v1/Accounts/{account}/Sinks/{sink_sid}/Test"),
        "id": event_id(),
        "dataschema": format!("{SCHEMA_HOST}/{TEST_SCHEMA}/1"),
        "datacontenttype": "application/json",
        "time": iso_ms(at_ms),
        "data": { "sink_sid": sink_sid, "test_id": event_id() },
    })
}

/// A destination without its user info, and the `Authorization: Basic` value made of that user
/// info (Twilio, Webhook Quickstart: "specify a username and password in the user info component
/// of the destination URL ... Event Streams adds the Authorization header to every request").
/// The signature covers the URL without the user info: the URL the sink can see (our choice).
pub fn split_credentials(destination: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = destination.split_once("://") else {
        return (destination.to_owned(), None);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (destination.to_owned(), None);
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        decode(user),
        decode(password)
    ));
    (
        format!("{scheme}://{host}{tail}"),
        Some(format!("Basic {basic}")),
    )
}

/// `destination` with `bodySHA256=<hex SHA-256 of body>` appended to its query.
pub fn signed_url(destination: &str, body: &[u8]) -> String {
    let hash: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (base, fragment) = match destination.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (destination, None),
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut url = format!("{base}{sep}bodySHA256={hash}");
    if let Some(f) = fragment {
        url.push('#');
        url.push_str(f);
    }
    url
}

/// `X-Twilio-Signature` of a JSON-bodied request to `url` (already carrying `bodySHA256`).
pub fn signature(auth_token: &str, url: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_hash_is_appended_as_a_query_parameter() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
        assert_eq!(
            signed_url("https://example.com/hook", body),
            format!("https://example.com/hook?bodySHA256={hash}")
        );
        assert_eq!(
            signed_url("https://example.com/hook?a=1", body),
            format!("https://example.com/hook?a=1&bodySHA256={hash}")
        );
    }

    #[test]
    fn signature_is_base64_hmac_sha1_of_the_url() {
        // RFC 2202 test case 2 (HMAC-SHA1, key "Jefe").
        assert_eq!(
            signature("Jefe", "what do ya want for nothing?"),
            base64::engine::general_purpose::STANDARD
                .encode(hex_bytes("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"))
        );
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn user_info_becomes_basic_auth() {
        assert_eq!(
            split_credentials("http://u%40x:p%3Aw@example.com:8080/hook?a=1"),
            (
                "http://example.com:8080/hook?a=1".to_owned(),
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("u@x:p:w")
                ))
            )
        );
        assert_eq!(
            split_credentials("http://example.com/a@b"),
            ("http://example.com/a@b".to_owned(), None)
        );
    }

    #[test]
    fn times_have_milliseconds() {
        assert_eq!(iso_ms(1_438_286_400_123), "2015-07-30T20:00:00.123Z");
    }
}
