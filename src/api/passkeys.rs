//! Verify Passkeys: `POST /v2/Services/{ServiceSid}/Passkeys/Factors` (a new, unverified
//! `passkeys` factor with its WebAuthn `publicKey` creation options) and
//! `POST …/Passkeys/VerifyFactor` (the `navigator.credentials.create()` answer, checked by
//! `crate::core::webauthn`: the factor waiting for the challenge in its clientDataJSON becomes
//! `verified` and keeps the credential's id, P-256 key and counter). Bodies are JSON.
//!
//! Refusals: a malformed credential or one that fails a check is 400 / 60200 naming what
//! failed (Twilio documents no specific code for these); no factor waiting for the challenge:
//! 404 / 20404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::entities;
use super::{BaseUrl, service_node};
use crate::core::mfa::{
    self, CHALLENGE_TTL_MS, Challenge, ChallengeStatus, Entity, Factor, FactorStatus,
};
use crate::core::totp::Config;
use crate::core::webauthn::{self, Expect, PasskeyState, Refused};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::JsonBody;
use crate::twilio::{ApiError, sid};

use super::Path;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service}/Passkeys/Factors", post(create))
        .route("/v2/Services/{service}/Passkeys/VerifyFactor", post(verify))
        .route(
            "/v2/Services/{service}/Passkeys/Challenges",
            post(challenge),
        )
        .route(
            "/v2/Services/{service}/Passkeys/ApproveChallenge",
            post(approve),
        )
}

/// WebAuthn timeout of the creation options, in milliseconds.
const TIMEOUT_MS: u64 = 600_000;

fn text<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(name)),
    }
}

fn required<'a>(m: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    match text(m, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::missing(name)),
    }
}

fn one_of(
    v: Option<&str>,
    name: &str,
    allowed: &[&str],
    default: &str,
) -> Result<String, ApiError> {
    match v {
        None => Ok(default.to_owned()),
        Some(s) if allowed.contains(&s) => Ok(s.to_owned()),
        Some(_) => Err(ApiError::invalid(name)),
    }
}

pub fn state_of(f: &Factor) -> Option<PasskeyState> {
    f.passkey.as_deref().and_then(PasskeyState::from_json)
}

/// The factor's `config` as Twilio shows it.
pub fn config(st: &PasskeyState) -> Value {
    json!({
        "relying_party": { "id": st.rp_id, "name": st.rp_name, "origins": st.origins },
        "authenticator_attachment": st.authenticator_attachment,
        "discoverable_credentials": st.discoverable_credentials,
        "user_verification": st.user_verification,
    })
}

fn render(base: &str, f: &Factor) -> Value {
    let mut v = super::factors::render(base, f);
    v["config"] = state_of(f).map(|st| config(&st)).unwrap_or(Value::Null);
    v
}

/// Twilio's 60371: the relying party (request `config.relying_party`, else the service's
/// `Passkeys.RelyingParty.*`) is missing or malformed (an id with a scheme or port, origins not
/// a non-empty list of strings).
fn rp_invalid() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        60371,
        "Relying party invalid or not provided",
    )
}

/// The `publicKey` creation options of an unverified factor.
fn creation_options(f: &Factor, st: &PasskeyState) -> Value {
    let mut selection = json!({
        "residentKey": st.discoverable_credentials,
        "requireResidentKey": st.discoverable_credentials == "required",
        "userVerification": st.user_verification,
    });
    if st.authenticator_attachment != "any" {
        selection["authenticatorAttachment"] = json!(st.authenticator_attachment);
    }
    json!({
        "publicKey": {
            "rp": { "id": st.rp_id, "name": st.rp_name },
            "user": { "id": st.user_id, "name": f.identity, "displayName": f.friendly_name },
            "challenge": st.challenge,
            "pubKeyCredParams": [ { "type": "public-key", "alg": -7 } ],
            "timeout": TIMEOUT_MS,
            "excludeCredentials": [],
            "authenticatorSelection": selection,
            "attestation": "none",
        }
    })
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let friendly_name = required(&body, "friendly_name")?.to_owned();
    let identity = entities::identity(required(&body, "identity")?)?;
    let empty = Map::new();
    let cfg = match body.get("config") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::invalid("config")),
    };
    let rp = match cfg.get("relying_party") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(rp_invalid()),
    };
    let settings = &node.record.settings.passkeys;
    let rp_id = text(rp, "id")?
        .map(str::to_owned)
        .or_else(|| settings.relying_party.id.clone())
        .filter(|s| !s.is_empty())
        .filter(|id| !id.contains("://") && !id.contains(':') && !id.contains('/'))
        .ok_or_else(rp_invalid)?;
    let rp_name = text(rp, "name")?
        .map(str::to_owned)
        .or_else(|| settings.relying_party.name.clone())
        .unwrap_or_else(|| rp_id.clone());
    let origins = match rp.get("origins") {
        None | Some(Value::Null) => settings
            .relying_party
            .origins
            .clone()
            .unwrap_or_else(|| vec![format!("https://{rp_id}")]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|o| o.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .filter(|o: &Vec<String>| !o.is_empty())
            .ok_or_else(rp_invalid)?,
        Some(_) => return Err(rp_invalid()),
    };
    let levels = ["required", "preferred", "discouraged"];
    let attachment =
        text(cfg, "authenticator_attachment")?.or(settings.authenticator_attachment.as_deref());
    let discoverable =
        text(cfg, "discoverable_credentials")?.or(settings.discoverable_credentials.as_deref());
    let verification = text(cfg, "user_verification")?.or(settings.user_verification.as_deref());
    let missing: Vec<&str> = [
        ("authenticator_attachment", attachment),
        ("discoverable_credentials", discoverable),
        ("user_verification", verification),
    ]
    .iter()
    .filter(|(_, v)| v.is_none())
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            60393,
            format!(
                "Authenticator criteria are missing from the request: {}",
                missing.join(", ")
            ),
        ));
    }
    let st = PasskeyState {
        rp_id,
        rp_name,
        origins,
        user_id: webauthn::b64url(&rand::random::<[u8; 16]>()),
        authenticator_attachment: one_of(
            attachment,
            "config.authenticator_attachment",
            &["platform", "cross-platform", "any"],
            "any",
        )?,
        discoverable_credentials: one_of(
            discoverable,
            "config.discoverable_credentials",
            &levels,
            "preferred",
        )?,
        user_verification: one_of(
            verification,
            "config.user_verification",
            &levels,
            "preferred",
        )?,
        challenge: Some(webauthn::b64url(&rand::random::<[u8; 32]>())),
        credential: None,
    };
    let now = state.now(&caller.account);
    let entity = Entity {
        sid: sid::generate(sid::ENTITY),
        service_sid: node.record.sid.clone(),
        account_sid: caller.account.clone(),
        identity: identity.clone(),
        date_created: now,
        date_updated: now,
    };
    let factor = Factor {
        sid: sid::generate(sid::FACTOR),
        entity_sid: String::new(),
        service_sid: node.record.sid.clone(),
        account_sid: caller.account.clone(),
        identity,
        friendly_name,
        status: FactorStatus::Unverified,
        secret: String::new(),
        config: Config::default(),
        last_used_s: None,
        metadata: None,
        date_created: now,
        date_updated: now,
        push: None,
        passkey: Some(st.to_json()),
    };
    let saved = state.create_factor(entity, factor).await?;
    let mut v = render(&base, &saved);
    v["binding"] = Value::Null;
    v["options"] = creation_options(&saved, &st);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// The parts of a `PublicKeyCredential` JSON body every ceremony needs.
pub struct CredentialBody {
    pub id: String,
    pub client_data: String,
    /// The challenge its clientDataJSON names.
    pub challenge: String,
    pub response: Map<String, Value>,
}

pub fn credential_body(body: &Map<String, Value>) -> Result<CredentialBody, ApiError> {
    let response = match body.get("response") {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => return Err(ApiError::missing("response")),
        Some(_) => return Err(ApiError::invalid("response")),
    };
    if let Some(t) = text(body, "type")?
        && t != "public-key"
    {
        return Err(ApiError::invalid("type"));
    }
    let id = text(body, "id")?
        .or(text(body, "rawId")?)
        .unwrap_or_default()
        .to_owned();
    let client_data = required(&response, "clientDataJSON")
        .map_err(|_| ApiError::missing("response.clientDataJSON"))?
        .to_owned();
    let challenge = webauthn::unb64(&client_data)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| {
            v.get("challenge")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            ApiError::invalid_because(
                "response.clientDataJSON",
                "not base64url of a JSON object with a challenge",
            )
        })?;
    Ok(CredentialBody {
        id,
        client_data,
        challenge,
        response,
    })
}

pub fn refused(r: Refused) -> ApiError {
    ApiError::invalid_because("response", why(r))
}

fn why(r: Refused) -> &'static str {
    match r {
        Refused::Malformed => "the credential is malformed",
        Refused::WrongType => "clientDataJSON type is not the ceremony's",
        Refused::WrongChallenge => "the challenge is not the one issued",
        Refused::WrongOrigin => "the origin is not one of the relying party's",
        Refused::WrongRpId => "rpIdHash is not the relying party id's",
        Refused::NotPresent => "user presence (or required verification) is not flagged",
        Refused::Unsupported => {
            "only attestation none or packed self-attestation of an ES256 P-256 key is supported"
        }
        Refused::UnknownCredential => "the credential is not the factor's",
        Refused::BadSignature => "the signature does not verify",
        Refused::Counter => "the signature counter did not increase",
    }
}

async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let cred = credential_body(&body)?;
    let attestation = required(&cred.response, "attestationObject")
        .map_err(|_| ApiError::missing("response.attestationObject"))?
        .to_owned();
    let now = state.now(&caller.account);
    let client_data = cred.client_data.clone();
    let f = state
        .verify_passkey_factor(&node.record.sid, &cred.challenge, move |before| {
            let mut st = state_of(before).ok_or_else(|| ApiError::invalid("response"))?;
            let challenge = st.challenge.clone().unwrap_or_default();
            let expect = Expect {
                challenge: &challenge,
                rp_id: &st.rp_id,
                origins: &st.origins,
                user_verification: st.uv_required(),
            };
            let credential = webauthn::verify_registration(&client_data, &attestation, &expect)
                .map_err(refused)?;
            st.credential = Some(credential);
            st.challenge = None;
            let mut f = before.clone();
            f.passkey = Some(st.to_json());
            f.status = FactorStatus::Verified;
            f.date_updated = now.max(f.date_created);
            Ok(f)
        })
        .await?;
    Ok(Json(render(&base, &f)))
}

/// A passkeys challenge as Twilio shows it: the generic challenge plus `options.publicKey`
/// (WebAuthn request options) while it is pending.
fn render_challenge(base: &str, c: &Challenge, f: Option<&Factor>, now: i64) -> Value {
    let mut v = super::challenges::render(base, c, now);
    let st = f.and_then(state_of);
    v["options"] = match (&c.passkey, st) {
        (Some(ch), Some(st)) if c.status_at(now) == ChallengeStatus::Pending => json!({
            "publicKey": {
                "challenge": ch,
                "timeout": TIMEOUT_MS,
                "rpId": st.rp_id,
                "allowCredentials": st.credential.iter().map(|cr| json!({
                    "type": "public-key",
                    "id": cr.id,
                    "transports": ["usb", "nfc", "ble", "internal", "hybrid"],
                })).collect::<Vec<_>>(),
                "userVerification": st.user_verification,
            }
        }),
        _ => json!({}),
    };
    v
}

async fn challenge(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    // Without an identity Twilio would let a discoverable credential name the user; verilimit
    // needs the identity to pick the factor.
    let identity = entities::identity(required(&body, "identity")?)?;
    let factor = match text(&body, "factor_sid")? {
        Some(yf) if sid::is_valid(yf, sid::FACTOR) => {
            state.factor(&node.record.sid, &identity, yf).await?
        }
        Some(_) => return Err(ApiError::invalid("factor_sid")),
        None => state
            .factors(&node.record.sid, &identity)
            .await?
            .into_iter()
            .filter(|f| f.passkey.is_some())
            .min_by_key(|f| (f.status != FactorStatus::Verified, f.date_created))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "/Services/{}/Entities/{identity}/Factors (passkeys)",
                    node.record.sid
                ))
            })?,
    };
    if factor.passkey.is_none() {
        return Err(ApiError::invalid_because(
            "factor_sid",
            "not a passkeys factor",
        ));
    }
    let now = state.now(&caller.account);
    let fresh = Challenge {
        sid: sid::generate(sid::CHALLENGE),
        factor_sid: factor.sid.clone(),
        entity_sid: String::new(),
        service_sid: node.record.sid.clone(),
        account_sid: caller.account.clone(),
        identity,
        factor_type: "passkeys".to_owned(),
        status: ChallengeStatus::Pending,
        message: None,
        fields: None,
        hidden_details: None,
        metadata: None,
        expiration_ms: now + CHALLENGE_TTL_MS,
        date_responded: None,
        date_created: now,
        date_updated: now,
        passkey: Some(webauthn::b64url(&rand::random::<[u8; 32]>())),
    };
    let saved = state.create_challenge(fresh, None).await?;
    let now = state.now(&caller.account);
    Ok((
        StatusCode::CREATED,
        Json(render_challenge(&base, &saved, Some(&factor), now)),
    )
        .into_response())
}

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let cred = credential_body(&body)?;
    let field = |name: &str| {
        required(&cred.response, name)
            .map(str::to_owned)
            .map_err(|_| ApiError::missing(&format!("response.{name}")))
    };
    let auth_data = field("authenticatorData")?;
    let signature = field("signature")?;
    let now = state.now(&caller.account);
    let (client_data, id) = (cred.client_data.clone(), cred.id.clone());
    let c = state
        .approve_passkey_challenge(&node.record.sid, &cred.challenge, move |c, f| {
            match c.status_at(now) {
                ChallengeStatus::Pending => {}
                ChallengeStatus::Expired => return Err(mfa::Refused::Expired),
                _ => {
                    return Err(mfa::Refused::Invalid(
                        "response",
                        "the challenge was answered already",
                    ));
                }
            }
            let st =
                state_of(f).ok_or(mfa::Refused::Invalid("response", "not a passkeys factor"))?;
            let Some(stored) = st.credential.clone() else {
                return Err(mfa::Refused::FactorUnverified);
            };
            let expect = Expect {
                challenge: c.passkey.as_deref().unwrap_or_default(),
                rp_id: &st.rp_id,
                origins: &st.origins,
                user_verification: st.uv_required(),
            };
            let count = webauthn::verify_assertion(
                &stored,
                &id,
                &client_data,
                &auth_data,
                &signature,
                &expect,
            )
            .map_err(|r| mfa::Refused::Invalid("response", why(r)))?;
            let mut st = st;
            st.credential = Some(webauthn::Credential {
                sign_count: count,
                ..stored
            });
            let mut f = f.clone();
            f.passkey = Some(st.to_json());
            let mut c = c.clone();
            c.status = ChallengeStatus::Approved;
            c.date_responded = Some(now);
            c.date_updated = now;
            Ok((c, f))
        })
        .await?;
    let f = state
        .factor(&node.record.sid, &c.identity, &c.factor_sid)
        .await
        .ok();
    Ok(Json(render_challenge(
        &base,
        &c,
        f.as_ref(),
        state.now(&caller.account),
    )))
}
