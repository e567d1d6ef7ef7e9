//! Verify's factor and challenge events as a Service Webhook (`/v2/Services/{Sid}/Webhooks`)
//! receives them, and how Twilio signs that request.
//!
//! Format (Twilio, "Verify Push Webhooks", <https://www.twilio.com/docs/verify/api/webhooks>,
//! section "2. Receive, parse, and verify a webhook"): an HTTP `POST` of an
//! `application/x-www-form-urlencoded` body whose parameters are `uuid` ("Unique identifier for
//! the webhook"), `type` (the event type), `account_sid`, `service_sid`, `entity_identity`,
//! `factor_sid`, `factor_type`, `factor_friendly_name`, and for challenge events `challenge_sid`,
//! `challenge_details` and `challenge_hidden_details` (JSON strings; hidden details are left out
//! when the challenge has none). The page says the fields differ per webhook `version` ("v1 is
//! legacy"); the stored copy we could read stops before that table, so the split below is our
//! reading of it: `v2` adds `factor_metadata` and, for challenge events, `challenge_metadata`
//! and `status` (the challenge's). Fields without a value are left out, never sent empty.
//! `uuid` is a random RFC 4122 version 4 UUID, one per event (the same for every webhook the
//! event goes to, and for every retry). No secret, code or binding is ever part of a payload.
//!
//! Signature (Twilio, "Webhooks security", <https://www.twilio.com/docs/usage/security>):
//! `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the account's auth token, of the
//! full URL followed by every POST parameter's name and value, sorted by name.

use base64::Engine as _;
use hmac::{Hmac, Mac};

use crate::core::mfa::{Challenge, ChallengeStatus, Factor};
use crate::store::records::Webhook;

pub const FACTOR_CREATED: &str = "factor.created";
pub const FACTOR_VERIFIED: &str = "factor.verified";
pub const FACTOR_DELETED: &str = "factor.deleted";
pub const CHALLENGE_APPROVED: &str = "challenge.approved";
pub const CHALLENGE_DENIED: &str = "challenge.denied";

/// One factor or challenge event, with everything its payload needs (taken when it happened:
/// a deleted factor is gone by the time the event is sent).
#[derive(Debug, Clone, PartialEq)]
pub struct FactorEvent {
    pub event_type: &'static str,
    pub uuid: String,
    pub account_sid: String,
    pub service_sid: String,
    pub entity_identity: String,
    pub factor_sid: String,
    pub factor_type: String,
    pub factor_friendly_name: String,
    pub factor_metadata: Option<String>,
    pub challenge: Option<ChallengeFields>,
}

/// What a challenge event adds.
#[derive(Debug, Clone, PartialEq)]
pub struct ChallengeFields {
    pub sid: String,
    /// `challenge_details`: the JSON of the challenge's `details`.
    pub details: Option<String>,
    pub hidden_details: Option<String>,
    pub metadata: Option<String>,
    pub status: String,
}

impl FactorEvent {
    /// A `factor.*` event of `f`.
    pub fn factor(event_type: &'static str, f: &Factor) -> Self {
        Self {
            event_type,
            uuid: uuid_v4(),
            account_sid: f.account_sid.clone(),
            service_sid: f.service_sid.clone(),
            entity_identity: f.identity.clone(),
            factor_sid: f.sid.clone(),
            factor_type: f.factor_type().to_owned(),
            factor_friendly_name: f.friendly_name.clone(),
            factor_metadata: f.metadata.clone(),
            challenge: None,
        }
    }

    /// The event of a challenge `c` of factor `f` that now has `c.status`, if that status has
    /// one (`challenge.approved`, `challenge.denied`) and `before` (its status until now,
    /// `None` for a new challenge) was another.
    pub fn challenge(before: Option<ChallengeStatus>, c: &Challenge, f: &Factor) -> Option<Self> {
        let event_type = match c.status {
            ChallengeStatus::Approved => CHALLENGE_APPROVED,
            ChallengeStatus::Denied => CHALLENGE_DENIED,
            ChallengeStatus::Pending | ChallengeStatus::Expired => return None,
        };
        if before == Some(c.status) {
            return None;
        }
        // The same `details` the API shows (push challenges carry their `Details.Fields`).
        let details = c
            .message
            .as_ref()
            .map(|_| crate::core::push::details(c).to_string());
        Some(Self {
            factor_type: c.factor_type.clone(),
            challenge: Some(ChallengeFields {
                sid: c.sid.clone(),
                details,
                hidden_details: c.hidden_details.clone(),
                metadata: c.metadata.clone(),
                status: c.status.as_str().to_owned(),
            }),
            ..Self::factor(event_type, f)
        })
    }

    /// The POST parameters a webhook of `version` (`v1` or `v2`) receives.
    pub fn params(&self, version: &str) -> Vec<(&'static str, String)> {
        let v2 = version != "v1";
        let mut p = vec![
            ("uuid", self.uuid.clone()),
            ("type", self.event_type.to_owned()),
            ("account_sid", self.account_sid.clone()),
            ("service_sid", self.service_sid.clone()),
            ("entity_identity", self.entity_identity.clone()),
            ("factor_sid", self.factor_sid.clone()),
            ("factor_type", self.factor_type.clone()),
            ("factor_friendly_name", self.factor_friendly_name.clone()),
        ];
        let mut optional = |name, value: &Option<String>| {
            if let Some(v) = value {
                p.push((name, v.clone()));
            }
        };
        if v2 {
            optional("factor_metadata", &self.factor_metadata);
        }
        if let Some(c) = &self.challenge {
            p.push(("challenge_sid", c.sid.clone()));
            let mut optional = |name, value: &Option<String>| {
                if let Some(v) = value {
                    p.push((name, v.clone()));
                }
            };
            optional("challenge_details", &c.details);
            optional("challenge_hidden_details", &c.hidden_details);
            if v2 {
                optional("challenge_metadata", &c.metadata);
                p.push(("status", c.status.clone()));
            }
        }
        p
    }
}

/// Whether `w` is sent an event of `event_type` of `account`: enabled, the account's own, and
/// subscribed to the type or to `*`.
pub fn wants(w: &Webhook, account: &str, event_type: &str) -> bool {
    w.status == "enabled"
        && w.account_sid == account
        && w.event_types.iter().any(|t| t == "*" || t == event_type)
}

/// The form body of `params`.
pub fn form_body(params: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(params).unwrap_or_default()
}

/// `X-Twilio-Signature` of a form POST of `params` to `url`.
pub fn form_signature(auth_token: &str, url: &str, params: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.cmp(&b.1)));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A random RFC 4122 version 4 UUID, lower-case hyphenated.
pub fn uuid_v4() -> String {
    let mut b = rand::random::<u128>().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twilio's own example ("Webhooks security"; twilio-python's validator computes the same).
    #[test]
    fn the_signature_is_twilios_for_form_posts() {
        let params: Vec<(&str, String)> = vec![
            ("To", "+18005551212".into()),
            ("CallSid", "CA1234567890ABCDE".into()),
            ("From", "+14158675309".into()),
            ("Digits", "1234".into()),
            ("Caller", "+14158675309".into()),
        ];
        assert_eq!(
            form_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }

    fn event() -> FactorEvent {
        FactorEvent {
            event_type: CHALLENGE_APPROVED,
            uuid: "u".into(),
            account_sid: "AC1".into(),
            service_sid: "VA1".into(),
            entity_identity: "user-0001".into(),
            factor_sid: "YF1".into(),
            factor_type: "totp".into(),
            factor_friendly_name: "phone".into(),
            factor_metadata: Some(r#"{"os":"x"}"#.into()),
            challenge: Some(ChallengeFields {
                sid: "YC1".into(),
                details: None,
                hidden_details: Some(r#"{"ip":"1"}"#.into()),
                metadata: None,
                status: "approved".into(),
            }),
        }
    }

    /// The generic challenge hook: only a change to approved or denied is an event (what the
    /// Push work calls for a denied push challenge).
    #[test]
    fn a_challenge_event_is_a_change_to_approved_or_denied() {
        let f = Factor {
            sid: "YF1".into(),
            entity_sid: "YE1".into(),
            service_sid: "VA1".into(),
            account_sid: "AC1".into(),
            identity: "user-0001".into(),
            friendly_name: "phone".into(),
            status: crate::core::mfa::FactorStatus::Verified,
            secret: "SECRET".into(),
            config: crate::core::totp::Config::default(),
            last_used_s: None,
            metadata: None,
            push: None,
            passkey: None,
            date_created: 0,
            date_updated: 0,
        };
        let c = |status| Challenge {
            sid: "YC1".into(),
            factor_sid: "YF1".into(),
            entity_sid: "YE1".into(),
            service_sid: "VA1".into(),
            account_sid: "AC1".into(),
            identity: "user-0001".into(),
            factor_type: "push".into(),
            status,
            message: Some("Log in?".into()),
            fields: None,
            hidden_details: None,
            metadata: None,
            expiration_ms: 0,
            date_responded: None,
            date_created: 0,
            date_updated: 0,
            passkey: None,
        };
        use ChallengeStatus::*;
        let denied = FactorEvent::challenge(Some(Pending), &c(Denied), &f).unwrap();
        assert_eq!(denied.event_type, CHALLENGE_DENIED);
        assert_eq!(denied.factor_type, "push");
        let p = denied.params("v2");
        assert!(p.contains(&("status", "denied".into())));
        assert!(p.contains(&(
            "challenge_details",
            r#"{"fields":[],"message":"Log in?"}"#.into()
        )));
        assert!(p.iter().all(|(_, v)| !v.contains("SECRET")));
        assert_eq!(
            FactorEvent::challenge(None, &c(Approved), &f).map(|e| e.event_type),
            Some(CHALLENGE_APPROVED)
        );
        assert_eq!(
            FactorEvent::challenge(Some(Approved), &c(Approved), &f),
            None
        );
        assert_eq!(FactorEvent::challenge(Some(Pending), &c(Pending), &f), None);
        assert_eq!(FactorEvent::challenge(Some(Pending), &c(Expired), &f), None);
    }

    #[test]
    fn v1_leaves_out_metadata_and_status_and_nothing_is_sent_empty() {
        let names = |v| -> Vec<&str> { event().params(v).iter().map(|p| p.0).collect() };
        assert_eq!(
            names("v1"),
            [
                "uuid",
                "type",
                "account_sid",
                "service_sid",
                "entity_identity",
                "factor_sid",
                "factor_type",
                "factor_friendly_name",
                "challenge_sid",
                "challenge_hidden_details"
            ]
        );
        let v2 = names("v2");
        assert!(v2.contains(&"factor_metadata") && v2.contains(&"status"));
        assert!(!v2.contains(&"challenge_metadata") && !v2.contains(&"challenge_details"));
    }
}
