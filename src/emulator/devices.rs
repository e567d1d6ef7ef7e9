//! Simulated Verify Push devices (`/emulator/v1/Devices`): a P-256 key pair made and kept by
//! the server, so a test can play the phone without a Verify Push SDK. A device signs as the
//! SDK does (twilio/twilio-verify-android): the factor SID as base64 DER ECDSA-SHA256
//! (`data/KeyStoreAdapter.kt` `signAndEncode`) to verify a factor, and an ES256 JWT over the
//! fields named by `Twilio-Verify-Signature-Fields` plus `status`
//! (`domain/challenge/PushChallengeProcessor.kt` `generateSignature`, `data/jwt/JwtGenerator.kt`)
//! to approve or deny a challenge; those answers go through the same engine calls as a real
//! device's requests.
//!
//! Devices live in memory only (private keys never leave the process and are gone on restart;
//! each server of a scaled-out deployment has its own), scoped to the account that made them.
//! `Reset` leaves them alone.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
};
use serde_json::{Map, Value, json};

use crate::api::challenges::{SIGNATURE_FIELDS_HEADER, render as render_challenge, render_fetched};
use crate::api::factors::render as render_factor;
use crate::api::{BaseUrl, Path, printable};
use crate::core::mfa::ChallengeStatus;
use crate::core::push;
use crate::engine::mfa::FactorUpdate;
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::FormBody;
use crate::twilio::{ApiError, date, sid};

/// A simulated device's id prefix (our choice; not a Twilio SID).
pub const DEVICE: &str = "DV";

/// One simulated device.
struct Device {
    account: String,
    pkcs8: Vec<u8>,
    public_key: String,
    date_created: i64,
    /// The factors it verified: (service SID, identity, factor SID).
    factors: Vec<(String, String, String)>,
}

/// Every simulated device of this process, by id.
#[derive(Default)]
pub struct Devices(Mutex<HashMap<String, Device>>);

impl Devices {
    fn with<T>(&self, account: &str, id: &str, f: impl FnOnce(&mut Device) -> T) -> Option<T> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.get_mut(id).filter(|d| d.account == account).map(f)
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/emulator/v1/Devices", get(list).post(create))
        .route("/emulator/v1/Devices/{id}", get(fetch))
        .route("/emulator/v1/Devices/{id}/Sign", post(sign_message))
        .route(
            "/emulator/v1/Devices/{id}/Factors/{factor}/Verify",
            post(verify_factor),
        )
        .route("/emulator/v1/Devices/{id}/Challenges", get(challenges))
        .route(
            "/emulator/v1/Devices/{id}/Challenges/{challenge}",
            post(answer),
        )
}

fn render(id: &str, d: &Device) -> Value {
    let mut body = json!({
        "id": id,
        "account_sid": d.account,
        "public_key": d.public_key,
        "alg": push::ALG,
        "date_created": date::format(d.date_created),
    });
    // The push factors it verified, once there are any.
    if !d.factors.is_empty() {
        body["factor_sids"] = json!(d.factors.iter().map(|(_, _, f)| f).collect::<Vec<_>>());
    }
    body
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("/emulator/v1/Devices/{}", printable(id)))
}

/// The device's base64 DER ECDSA-SHA256 signature of `message` (an `AuthPayload` for a factor).
fn sign_der(pkcs8: &[u8], message: &[u8]) -> Result<String, ApiError> {
    let rng = SystemRandom::new();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
        .map_err(ApiError::internal)?;
    let sig = kp.sign(&rng, message).map_err(ApiError::internal)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
}

/// The device's ES256 compact JWS of `payload`, as `JwtGenerator.kt` builds it.
fn sign_jwt(pkcs8: &[u8], payload: &Value) -> Result<String, ApiError> {
    let rng = SystemRandom::new();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
        .map_err(ApiError::internal)?;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = json!({ "typ": "JWT", "alg": push::ALG });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let sig = kp
        .sign(&rng, input.as_bytes())
        .map_err(ApiError::internal)?;
    Ok(format!("{input}.{}", b64(sig.as_ref())))
}

/// The caller's devices (oldest first), each with the factors it verified: what the dashboard
/// needs to offer approve and deny on a factor's pending challenges.
async fn list(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let all = state.0.devices.0.lock().unwrap_or_else(|p| p.into_inner());
    let mut mine: Vec<(&String, &Device)> = all
        .iter()
        .filter(|(_, d)| d.account == caller.account)
        .collect();
    mine.sort_by(|a, b| a.0.cmp(b.0));
    Json(json!({ "devices": mine.into_iter().map(|(id, d)| render(id, d)).collect::<Vec<_>>() }))
}

async fn create(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(ApiError::internal)?;
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(ApiError::internal)?;
    let id = sid::generate(DEVICE);
    let device = Device {
        account: caller.account.clone(),
        pkcs8: pkcs8.as_ref().to_vec(),
        public_key: push::spki_base64(kp.public_key().as_ref()),
        date_created: state.now(&caller.account),
        factors: Vec::new(),
    };
    let body = render(&id, &device);
    state
        .0
        .devices
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, device);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .0
        .devices
        .with(&caller.account, &id, |d| Json(render(&id, d)))
        .ok_or_else(|| not_found(&id))
}

async fn sign_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let pkcs8 = state
        .0
        .devices
        .with(&caller.account, &id, |d| d.pkcs8.clone())
        .ok_or_else(|| not_found(&id))?;
    let message = p.required("Message")?.to_owned();
    Ok(Json(
        json!({ "signature": sign_der(&pkcs8, message.as_bytes())? }),
    ))
}

/// Verifies a push factor bound to this device's key, as the SDK does (`AuthPayload` = the
/// signature of the factor SID); the device then answers that factor's challenges.
async fn verify_factor(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((id, factor)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let (pkcs8, public_key) = state
        .0
        .devices
        .with(&caller.account, &id, |d| {
            (d.pkcs8.clone(), d.public_key.clone())
        })
        .ok_or_else(|| not_found(&id))?;
    let service = p.required("ServiceSid")?.to_owned();
    let identity = p.required("Identity")?.to_owned();
    crate::api::entities::path_identity(&state, &caller.account, &service, &identity)?;
    if !sid::is_valid(&factor, sid::FACTOR) {
        return Err(ApiError::not_found(format!(
            "/Services/{service}/Entities/{identity}/Factors/{}",
            printable(&factor)
        )));
    }
    let before = state.factor(&service, &identity, &factor).await?;
    if before.push.as_ref().map(|b| &b.public_key) != Some(&public_key) {
        return Err(ApiError::invalid_because(
            "FactorSid",
            "not a push factor bound to this device's public key",
        ));
    }
    let update = FactorUpdate {
        auth_payload: Some(sign_der(&pkcs8, factor.as_bytes())?),
        ..FactorUpdate::default()
    };
    let f = state
        .update_factor(&caller.account, &service, &identity, &factor, update)
        .await?;
    let entry = (service, identity, factor);
    state.0.devices.with(&caller.account, &id, |d| {
        if !d.factors.contains(&entry) {
            d.factors.push(entry);
        }
    });
    Ok(Json(render_factor(&base, &f)))
}

/// The factors a device answers for.
fn factors_of(
    state: &AppState,
    account: &str,
    id: &str,
) -> Result<Vec<(String, String, String)>, ApiError> {
    state
        .0
        .devices
        .with(account, id, |d| d.factors.clone())
        .ok_or_else(|| not_found(id))
}

/// The pending challenges of the device's factors, oldest first.
async fn challenges(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let now = state.now(&caller.account);
    let mut pending = Vec::new();
    for (service, identity, factor) in factors_of(&state, &caller.account, &id)? {
        // A factor (or entity, or service) deleted since is simply no longer answered for.
        let Ok(all) = state.challenges(&service, &identity).await else {
            continue;
        };
        pending
            .extend(all.into_iter().filter(|c| {
                c.factor_sid == factor && c.status_at(now) == ChallengeStatus::Pending
            }));
    }
    pending.sort_by(|a, b| (a.date_created, &a.sid).cmp(&(b.date_created, &b.sid)));
    let rendered: Vec<Value> = pending
        .iter()
        .map(|c| render_challenge(&base, c, now))
        .collect();
    Ok(Json(json!({ "challenges": rendered })))
}

/// Approves or denies a challenge of one of the device's factors exactly as the SDK does: reads
/// the challenge and its `Twilio-Verify-Signature-Fields`, signs those fields' values plus
/// `status` as an ES256 JWT, and sends it as `AuthPayload`.
async fn answer(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((id, challenge)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let pkcs8 = state
        .0
        .devices
        .with(&caller.account, &id, |d| d.pkcs8.clone())
        .ok_or_else(|| not_found(&id))?;
    let status = match p.required("Status")? {
        s @ ("approved" | "denied") => s.to_owned(),
        _ => {
            return Err(ApiError::invalid_because(
                "Status",
                "must be approved or denied",
            ));
        }
    };
    let mut found = None;
    for (service, identity, factor) in factors_of(&state, &caller.account, &id)? {
        if let Ok(c) = state.challenge(&service, &identity, &challenge).await
            && c.factor_sid == factor
        {
            found = Some((service, identity, c));
            break;
        }
    }
    let Some((service, identity, c)) = found else {
        return Err(ApiError::not_found(format!(
            "/emulator/v1/Devices/{}/Challenges/{}",
            printable(&id),
            printable(&challenge)
        )));
    };
    let now = state.now(&caller.account);
    let fetched = render_fetched(&base, &c, now);
    let Some(fields) = fetched
        .headers()
        .get(SIGNATURE_FIELDS_HEADER)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
    else {
        // Not pending (answered or expired): the SDK refuses to answer it too.
        return Err(if c.status_at(now) == ChallengeStatus::Expired {
            ApiError::new(StatusCode::FORBIDDEN, 60323, "Challenge expired")
        } else {
            ApiError::invalid_because(
                "ChallengeSid",
                format!("the challenge is {} already", c.status_at(now).as_str()),
            )
        });
    };
    let body = render_challenge(&base, &c, now);
    let mut payload = Map::new();
    for f in fields.split(',') {
        payload.insert(f.to_owned(), body.get(f).cloned().unwrap_or(Value::Null));
    }
    payload.insert("status".into(), Value::String(status));
    let jwt = sign_jwt(&pkcs8, &Value::Object(payload))?;
    let answered = state
        .update_challenge(&caller.account, &service, &identity, &challenge, jwt, None)
        .await?;
    Ok(Json(render_challenge(&base, &answered, now)))
}
