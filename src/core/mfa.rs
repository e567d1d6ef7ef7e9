//! Entities, Factors and Challenges (Verify TOTP now, Verify Push later), decided purely: what
//! verifying a factor or responding to a challenge does, given the factor and challenge it
//! touches and `now` (the account's clock). The engine loads that state, runs these functions
//! inside one serialized write, and persists what they return.

use super::push::{self, PushBinding};
use super::totp::{self, Config};

/// An Entity: one end user of a service, named by the application's `Identity`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub identity: String,
    pub date_created: i64,
    pub date_updated: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorStatus {
    Unverified,
    Verified,
}

impl FactorStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorStatus::Unverified => "unverified",
            FactorStatus::Verified => "verified",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unverified" => Some(FactorStatus::Unverified),
            "verified" => Some(FactorStatus::Verified),
            _ => None,
        }
    }
}

/// A factor of an entity: TOTP (a shared secret and its settings) or Push (`push`: a device's
/// public key; then `secret` is empty and `config` unused).
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    pub sid: String,
    pub entity_sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub identity: String,
    pub friendly_name: String,
    pub status: FactorStatus,
    /// The shared secret, base32 (upper case, no padding).
    pub secret: String,
    pub config: Config,
    /// Start (epoch seconds) of the last time step whose code this factor accepted: no code of
    /// that step or an earlier one is accepted again.
    pub last_used_s: Option<i64>,
    /// `Metadata`: a JSON object of strings, as sent.
    pub metadata: Option<String>,
    pub date_created: i64,
    pub date_updated: i64,
    /// A push factor's binding; `None` for TOTP.
    pub push: Option<PushBinding>,
    /// A passkeys factor's state (`crate::core::webauthn::PasskeyState` as JSON); `None`
    /// otherwise.
    pub passkey: Option<String>,
}

impl Factor {
    pub fn factor_type(&self) -> &'static str {
        if self.passkey.is_some() {
            "passkeys"
        } else if self.push.is_some() {
            "push"
        } else {
            "totp"
        }
    }

    /// Whether `code` is accepted now; if so, the step start it uses up.
    fn accept(&self, code: &str, now: i64) -> Option<i64> {
        let key = totp::decode_secret(&self.secret)?;
        totp::accept(&key, &self.config, code, now, self.last_used_s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeStatus {
    Pending,
    Expired,
    Approved,
    Denied,
}

impl ChallengeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeStatus::Pending => "pending",
            ChallengeStatus::Expired => "expired",
            ChallengeStatus::Approved => "approved",
            ChallengeStatus::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ChallengeStatus::Pending),
            "expired" => Some(ChallengeStatus::Expired),
            "approved" => Some(ChallengeStatus::Approved),
            "denied" => Some(ChallengeStatus::Denied),
            _ => None,
        }
    }
}

/// A challenge: one verification attempt of an entity with one of its factors.
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    pub sid: String,
    pub factor_sid: String,
    pub entity_sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub identity: String,
    pub factor_type: String,
    pub status: ChallengeStatus,
    /// `Details.Message`, if sent.
    pub message: Option<String>,
    /// `Details.Fields`: a JSON array of `{"label", "value"}` objects, as sent (push).
    pub fields: Option<String>,
    /// `HiddenDetails`: a JSON object of strings, as sent.
    pub hidden_details: Option<String>,
    /// `Metadata` (update): a JSON object of strings, as sent.
    pub metadata: Option<String>,
    pub expiration_ms: i64,
    pub date_responded: Option<i64>,
    pub date_created: i64,
    pub date_updated: i64,
    /// A passkeys challenge's WebAuthn assertion challenge (base64url); `None` otherwise.
    pub passkey: Option<String>,
}

impl Challenge {
    /// The status as of `now`: a pending challenge past its expiration date is expired.
    pub fn status_at(&self, now: i64) -> ChallengeStatus {
        match self.status {
            ChallengeStatus::Pending if now >= self.expiration_ms => ChallengeStatus::Expired,
            s => s,
        }
    }
}

/// Default lifetime of a challenge, and the longest one `ExpirationDate` may ask for.
pub const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;
pub const CHALLENGE_MAX_TTL_MS: i64 = 60 * 60 * 1000;

/// What an `AuthPayload` on a factor update does: an unverified factor becomes verified when the
/// code is accepted (and that time step is used up); a wrong code leaves it unverified (Twilio
/// answers 200, not an error). A verified factor is not changed by a code.
///
/// A push factor's `AuthPayload` is the device's signature of the factor SID: the right one
/// verifies it, any other leaves it unverified in the same way.
pub fn verify_factor(f: &Factor, code: &str, now: i64) -> Factor {
    let mut after = f.clone();
    if let Some(b) = &f.push {
        if f.status == FactorStatus::Unverified && push::verifies_factor(b, &f.sid, code) {
            after.status = FactorStatus::Verified;
        }
        return after;
    }
    if f.status == FactorStatus::Unverified
        && let Some(used) = f.accept(code, now)
    {
        after.status = FactorStatus::Verified;
        after.last_used_s = Some(used);
    }
    after
}

/// Why a challenge cannot be created or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The factor has not been verified (403 / 60318).
    FactorUnverified,
    /// The challenge expired before it was answered (403 / 60323).
    Expired,
    /// A parameter is not acceptable for this factor (400 / 60200): its name and why.
    Invalid(&'static str, &'static str),
}

/// What responding to a challenge with a code does: the challenge, and the factor if it
/// changed (a used-up time step).
#[derive(Debug, Clone, PartialEq)]
pub struct Responded {
    pub challenge: Challenge,
    pub factor: Option<Factor>,
}

/// Responds to `c` (of factor `f`) with `code`: approved if the code is accepted; a wrong,
/// replayed or out-of-window code leaves it pending (to be answered again before it expires).
/// An approved or denied challenge is answered as it is.
pub fn respond(c: &Challenge, f: &Factor, code: &str, now: i64) -> Result<Responded, Refused> {
    if f.status != FactorStatus::Verified {
        return Err(Refused::FactorUnverified);
    }
    match c.status_at(now) {
        ChallengeStatus::Pending => {}
        ChallengeStatus::Expired => return Err(Refused::Expired),
        ChallengeStatus::Approved | ChallengeStatus::Denied => {
            return Ok(Responded {
                challenge: c.clone(),
                factor: None,
            });
        }
    }
    let mut challenge = c.clone();
    challenge.date_updated = now.max(c.date_created);
    if let Some(b) = &f.push {
        let status = push::answer(b, c, code)
            .map_err(|bad| Refused::Invalid("AuthPayload", bad.reason()))?;
        challenge.status = status;
        challenge.date_responded = Some(now);
        return Ok(Responded {
            challenge,
            factor: None,
        });
    }
    if !(3..=8).contains(&code.chars().count()) {
        return Err(Refused::Invalid(
            "AuthPayload",
            "a TOTP code is 3 to 8 characters",
        ));
    }
    let factor = f.accept(code, now).map(|used| {
        challenge.status = ChallengeStatus::Approved;
        challenge.date_responded = Some(now);
        let mut f = f.clone();
        f.last_used_s = Some(used);
        f
    });
    Ok(Responded { challenge, factor })
}

/// A new challenge of `f`: refused for an unverified factor; answered at once when the request
/// carries a code (TOTP). A push challenge needs `Details.Message` and is answered by the device
/// later, never at creation; `Details.Fields` are for push challenges only.
pub fn create_challenge(
    fresh: Challenge,
    f: &Factor,
    code: Option<&str>,
    now: i64,
) -> Result<Responded, Refused> {
    if f.status != FactorStatus::Verified {
        return Err(Refused::FactorUnverified);
    }
    if f.push.is_some() {
        if fresh.message.is_none() {
            return Err(Refused::Invalid(
                "Details.Message",
                "required for a push challenge",
            ));
        }
        if code.is_some() {
            return Err(Refused::Invalid(
                "AuthPayload",
                "only a TOTP challenge is answered at creation",
            ));
        }
    } else if fresh.fields.is_some() {
        return Err(Refused::Invalid(
            "Details.Fields",
            "only used with push factors",
        ));
    }
    match code {
        None => Ok(Responded {
            challenge: fresh,
            factor: None,
        }),
        Some(code) => respond(&fresh, f, code, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_015_000;

    fn factor(status: FactorStatus) -> Factor {
        Factor {
            sid: "YF".into(),
            entity_sid: "YE".into(),
            service_sid: "VA".into(),
            account_sid: "AC".into(),
            identity: "user-0001".into(),
            friendly_name: "phone".into(),
            status,
            secret: totp::encode_secret(b"12345678901234567890"),
            config: Config::default(),
            last_used_s: None,
            metadata: None,
            date_created: NOW,
            date_updated: NOW,
            push: None,
            passkey: None,
        }
    }

    fn challenge() -> Challenge {
        Challenge {
            sid: "YC".into(),
            factor_sid: "YF".into(),
            entity_sid: "YE".into(),
            service_sid: "VA".into(),
            account_sid: "AC".into(),
            identity: "user-0001".into(),
            factor_type: "totp".into(),
            status: ChallengeStatus::Pending,
            message: None,
            fields: None,
            hidden_details: None,
            metadata: None,
            expiration_ms: NOW + CHALLENGE_TTL_MS,
            date_responded: None,
            date_created: NOW,
            date_updated: NOW,
            passkey: None,
        }
    }

    fn code(at: i64) -> String {
        totp::code_at(b"12345678901234567890", &Config::default(), at)
    }

    #[test]
    fn a_right_code_verifies_a_factor_and_uses_up_its_step() {
        let f = verify_factor(&factor(FactorStatus::Unverified), &code(NOW), NOW);
        assert_eq!(f.status, FactorStatus::Verified);
        assert_eq!(f.last_used_s, Some(NOW / 1000 - (NOW / 1000) % 30));
        // The same code cannot then approve a challenge.
        let r = create_challenge(challenge(), &f, Some(&code(NOW)), NOW).unwrap();
        assert_eq!(r.challenge.status, ChallengeStatus::Pending);
        assert_eq!(r.factor, None);
    }

    #[test]
    fn a_wrong_code_leaves_the_factor_unverified() {
        let before = factor(FactorStatus::Unverified);
        let wrong = if code(NOW) == "000000" {
            "111111"
        } else {
            "000000"
        };
        assert_eq!(verify_factor(&before, wrong, NOW), before);
    }

    #[test]
    fn challenges_of_unverified_factors_are_refused() {
        let f = factor(FactorStatus::Unverified);
        assert_eq!(
            create_challenge(challenge(), &f, Some(&code(NOW)), NOW),
            Err(Refused::FactorUnverified)
        );
    }

    #[test]
    fn a_challenge_is_approved_once_and_expires_when_unanswered() {
        let f = factor(FactorStatus::Verified);
        let r = create_challenge(challenge(), &f, Some(&code(NOW)), NOW).unwrap();
        assert_eq!(r.challenge.status, ChallengeStatus::Approved);
        assert_eq!(r.challenge.date_responded, Some(NOW));
        let used = r.factor.unwrap();
        // Next step's code approves a second challenge; answering the first again changes nothing.
        let next = NOW + 30_000;
        let again = respond(&r.challenge, &used, &code(next), next).unwrap();
        assert_eq!(again.challenge, r.challenge);
        let late = NOW + CHALLENGE_TTL_MS;
        assert_eq!(challenge().status_at(late), ChallengeStatus::Expired);
        assert_eq!(
            respond(&challenge(), &used, &code(late), late),
            Err(Refused::Expired)
        );
    }

    #[test]
    fn push_challenges_need_a_message_take_no_code_and_expire() {
        let mut f = factor(FactorStatus::Unverified);
        f.push = Some(PushBinding {
            public_key: String::new(),
            sdk_version: None,
            app_id: None,
            notification_platform: "none".into(),
            notification_token: None,
        });
        assert_eq!(f.factor_type(), "push");
        assert_eq!(
            create_challenge(challenge(), &f, None, NOW),
            Err(Refused::FactorUnverified)
        );
        f.status = FactorStatus::Verified;
        assert!(matches!(
            create_challenge(challenge(), &f, None, NOW),
            Err(Refused::Invalid("Details.Message", _))
        ));
        let mut c = challenge();
        c.message = Some("Log in?".into());
        assert!(matches!(
            create_challenge(c.clone(), &f, Some("x"), NOW),
            Err(Refused::Invalid("AuthPayload", _))
        ));
        let fresh = create_challenge(c.clone(), &f, None, NOW)
            .unwrap()
            .challenge;
        assert_eq!(fresh.status, ChallengeStatus::Pending);
        // Not a JWT of the factor's key: refused, and nothing changes.
        assert!(matches!(
            respond(&fresh, &f, "not.a.jwt", NOW),
            Err(Refused::Invalid("AuthPayload", _))
        ));
        assert_eq!(
            respond(&fresh, &f, "not.a.jwt", NOW + CHALLENGE_TTL_MS),
            Err(Refused::Expired)
        );
        // Detail fields belong to push challenges only.
        let mut totp_c = c;
        totp_c.fields = Some("[]".into());
        assert!(matches!(
            create_challenge(totp_c, &factor(FactorStatus::Verified), None, NOW),
            Err(Refused::Invalid("Details.Fields", _))
        ));
    }
}
