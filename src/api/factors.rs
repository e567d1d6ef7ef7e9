//! `/v2/Services/{ServiceSid}/Entities/{Identity}/Factors`: create a TOTP factor (its entity
//! with it if the identity has none), list, fetch, update (`AuthPayload` verifies an unverified
//! factor; `FriendlyName`, `Config.*`, `Metadata`), delete (with its challenges).
//!
//! A new factor gets a random 160-bit secret unless `Binding.Secret` gives one; its settings are
//! the request's, else the service's `Totp.*`, else Twilio's defaults (sha1, 6 digits, 30 s, skew
//! 1). The `binding` (secret and `otpauth://` URI) is only ever shown in the answer to create.
//!
//! Push factors (`FactorType=push`) bind a device's P-256 public key (`Binding.PublicKey`,
//! `Binding.Alg=ES256`) and its `Config.*`; `AuthPayload` on update is the device's signature of
//! the factor SID (`crate::core::push`). The Verify Push SDK creates them with Basic
//! `token:<access token>` (twilio-verify-android `api/FactorAPIClient.kt`, `AUTHENTICATION_USER`):
//! create accepts that when the token is one this server issued for the service and identity of
//! the path and it is still within its TTL on the account's clock; otherwise 401 / 20003. After
//! enrolment the SDK signs fetch and update of its own factor (and its challenges) with Basic
//! `token:<ES256 JWT>` (`signer`, decided in `crate::core::push_auth`).
//! Passkeys factors are not served yet: 400 / 60200 naming `FactorType`.

use std::collections::BTreeMap;

use super::Path;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::entities::{self, path_identity};
use super::service_node;
use super::{BaseUrl, printable};
use crate::core::mfa::{Entity, Factor, FactorStatus};
use crate::core::push::{self, PushBinding};
use crate::core::push_auth;
use crate::core::totp::{self, Alg, Config};
use crate::engine::mfa::FactorUpdate;
use crate::state::AppState;
use crate::twilio::auth::{Caller, basic_credentials};
use crate::twilio::form::{FormBody, Params, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/Services/{service}/Entities/{identity}/Factors",
            get(list).post(create),
        )
        .route(
            "/v2/Services/{service}/Entities/{identity}/Factors/{sid}",
            get(fetch).post(update).delete(remove),
        )
}

/// `config` of a push factor. `credential_sid` (the push credential Twilio would notify
/// through; the SDKs require the field and use it as `kid` of their own JWTs) is derived from
/// the factor SID: verilimit sends no notifications.
fn push_config(f: &Factor, b: &PushBinding) -> Value {
    json!({
        "sdk_version": b.sdk_version,
        "app_id": b.app_id,
        "notification_platform": b.notification_platform,
        "notification_token": b.notification_token,
        "credential_sid": crate::core::push_auth::credential_sid(&f.sid),
    })
}

pub fn render(base: &str, f: &Factor) -> Value {
    let config = match &f.push {
        _ if f.passkey.is_some() => super::passkeys::state_of(f)
            .map(|st| super::passkeys::config(&st))
            .unwrap_or(Value::Null),
        Some(b) => push_config(f, b),
        None => json!({
            "alg": f.config.alg.as_str(),
            "skew": f.config.skew,
            "code_length": f.config.code_length,
            "time_step": f.config.time_step,
        }),
    };
    json!({
        "sid": f.sid,
        "account_sid": f.account_sid,
        "service_sid": f.service_sid,
        "entity_sid": f.entity_sid,
        "identity": f.identity,
        "date_created": date::format(f.date_created),
        "date_updated": date::format(f.date_updated),
        "friendly_name": f.friendly_name,
        "status": f.status.as_str(),
        "factor_type": f.factor_type(),
        "config": config,
        "metadata": json_field(f.metadata.as_deref()),
        "url": format!(
            "{}/Factors/{}",
            entities::url(base, &f.service_sid, &f.identity),
            f.sid
        ),
    })
}

/// The answer to create: the factor with its `binding` (shown this once).
fn render_new(base: &str, f: &Factor, issuer: &str) -> Value {
    let mut v = render(base, f);
    v["binding"] = match &f.push {
        Some(b) => json!({ "public_key": b.public_key, "alg": push::ALG }),
        None => json!({ "secret": f.secret, "uri": otpauth_uri(f, issuer) }),
    };
    v["options"] = Value::Null;
    v
}

/// Everything but unreserved characters is escaped in the URI's label and issuer.
const URI_TEXT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Google Authenticator's key URI, as Twilio builds it: the issuer and the factor's friendly
/// name as label, then secret, issuer, algorithm, digits and period.
pub fn otpauth_uri(f: &Factor, issuer: &str) -> String {
    let issuer = utf8_percent_encode(issuer, URI_TEXT).to_string();
    format!(
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm={}&digits={}&period={}",
        utf8_percent_encode(&f.friendly_name, URI_TEXT),
        f.secret,
        f.config.alg.uri_name(),
        f.config.code_length,
        f.config.time_step,
    )
}

/// A stored JSON text as JSON (`null` if none).
pub fn json_field(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// A parameter holding a JSON object of string values (`Metadata`, `HiddenDetails`), at most
/// 1024 characters: kept as compact JSON text.
pub fn json_object_param(p: &Params, name: &str) -> Result<Option<String>, ApiError> {
    let Some(text) = p.text(name, 1024)? else {
        return Ok(None);
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) if o.values().all(Value::is_string) => {
            Ok(Some(Value::Object(o).to_string()))
        }
        _ => Err(ApiError::invalid_because(
            name,
            "must be a JSON object with string values",
        )),
    }
}

/// `Config.*`: each valid setting sent.
fn config_params(p: &Params) -> Result<FactorUpdate, ApiError> {
    let alg = match p.get("Config.Alg") {
        None => None,
        Some(a) => Some(Alg::parse(a).ok_or_else(|| ApiError::invalid("Config.Alg"))?),
    };
    let int = |name: &str, range: std::ops::RangeInclusive<i64>| {
        p.int(name, *range.start(), *range.end())
            .map(|n| n.map(|n| n as u32))
    };
    Ok(FactorUpdate {
        alg,
        code_length: int("Config.CodeLength", totp::CODE_LENGTH)?,
        time_step: int("Config.TimeStep", totp::TIME_STEP)?,
        skew: int("Config.Skew", totp::SKEW)?,
        ..FactorUpdate::default()
    })
}

/// `FriendlyName`: up to 64 characters.
fn friendly_name(p: &Params) -> Result<Option<String>, ApiError> {
    match p.text("FriendlyName", 64)? {
        Some(n) if n.trim().is_empty() => Err(ApiError::invalid("FriendlyName")),
        n => Ok(n),
    }
}

/// The factor a path names: 404 for a malformed SID.
fn factor_sid(service: &str, identity: &str, sid: &str) -> Result<(), ApiError> {
    if sid::is_valid(sid, sid::FACTOR) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "/Services/{service}/Entities/{identity}/Factors/{}",
            printable(sid)
        )))
    }
}

/// The account a factor creation acts for: the usual Basic credentials, or (push only) Basic
/// `token:<access token>` naming a live access token of this service and identity.
async fn enroller(
    state: &AppState,
    headers: &HeaderMap,
    service: &str,
    identity: &str,
    factor_type: Option<&str>,
) -> Result<String, ApiError> {
    let (user, password) = basic_credentials(headers)?;
    if user != "token" {
        return state
            .0
            .credentials
            .authenticate(&user, &password)
            .ok_or_else(ApiError::unauthorized);
    }
    if factor_type != Some("push") {
        tracing::debug!("auth refused: an access token only creates push factors");
        return Err(ApiError::unauthorized());
    }
    // The token's `jti` is its YK SID; the stored token must be exactly the one presented.
    let jti = password
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|p| p["jti"].as_str().map(str::to_owned));
    let Some(jti) = jti.filter(|j| sid::is_valid(j, super::access_tokens::ACCESS_TOKEN)) else {
        tracing::debug!("auth refused: not an access token");
        return Err(ApiError::unauthorized());
    };
    let Some(t) = state.access_token(service, &jti).await? else {
        tracing::debug!("auth refused: unknown access token");
        return Err(ApiError::unauthorized());
    };
    let live = state.now(&t.account_sid) < t.date_created + t.ttl * 1000;
    let same = subtle::ConstantTimeEq::ct_eq(t.token.as_bytes(), password.as_bytes()).into();
    if !(same && live && t.entity_identity == identity && t.factor_type == "push") {
        tracing::debug!(
            same,
            live,
            "auth refused: access token not valid for this factor"
        );
        return Err(ApiError::unauthorized());
    }
    Ok(t.account_sid)
}

/// Who calls an operation a push device may sign itself: an account (the usual Basic
/// credentials) or the device of one push factor (Basic `token:<ES256 JWT>`,
/// `crate::core::push_auth`).
pub enum Signer {
    Account(String),
    Device(Box<Factor>),
}

impl Signer {
    /// The account the call acts for (a device's is its factor's).
    pub fn account(&self) -> &str {
        match self {
            Signer::Account(a) => a,
            Signer::Device(f) => &f.account_sid,
        }
    }

    /// Refuses (401 / 20003) a device acting on anything but its own factor or its challenges.
    pub fn may_act_on(
        &self,
        service: &str,
        identity: &str,
        factor_sid: Option<&str>,
    ) -> Result<(), ApiError> {
        match self {
            Signer::Account(_) => Ok(()),
            Signer::Device(f) if push_auth::may_act_on(f, service, identity, factor_sid) => Ok(()),
            Signer::Device(_) => {
                tracing::debug!("auth refused: a device acts only on its own factor");
                Err(ApiError::unauthorized())
            }
        }
    }
}

/// Authenticates a call a push device may sign: Basic account credentials, or `token:<JWT>`
/// whose `kid` names a push factor of this service and identity and which that factor's key
/// signed, within its lifetime on the account's clock.
pub async fn signer(
    state: &AppState,
    headers: &HeaderMap,
    service: &str,
    identity: &str,
) -> Result<Signer, ApiError> {
    let (user, password) = basic_credentials(headers)?;
    if user != "token" {
        return state
            .0
            .credentials
            .authenticate(&user, &password)
            .map(Signer::Account)
            .ok_or_else(ApiError::unauthorized);
    }
    let Some((token, factor)) = push_auth::parse(&password)
        .and_then(|t| push_auth::factor_sid(&t).map(|f| (t, f)))
        .filter(|_| entities::is_identity(identity))
    else {
        tracing::debug!("auth refused: not a device token");
        return Err(ApiError::unauthorized());
    };
    let f = match state.factor(service, identity, &factor).await {
        Ok(f) => f,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            tracing::debug!("auth refused: no such factor here");
            return Err(ApiError::unauthorized());
        }
        Err(e) => return Err(e),
    };
    if let Err(why) = push_auth::check(&token, &f, state.now(&f.account_sid)) {
        tracing::debug!(?why, "auth refused: device token");
        return Err(ApiError::unauthorized());
    }
    Ok(Signer::Device(Box::new(f)))
}

/// A push factor's `Binding.*` and `Config.*`.
fn push_binding(p: &Params) -> Result<PushBinding, ApiError> {
    let public_key = p.get("Binding.PublicKey").ok_or_else(|| {
        ApiError::invalid_because("Binding.PublicKey", "required for push factors")
    })?;
    if push::public_key_point(public_key).is_none() {
        return Err(ApiError::invalid_because(
            "Binding.PublicKey",
            "must be a base64 DER SubjectPublicKeyInfo of a P-256 key",
        ));
    }
    if p.get("Binding.Alg").is_some_and(|a| a != push::ALG) {
        return Err(ApiError::invalid_because("Binding.Alg", "must be ES256"));
    }
    let platform = p.get("Config.NotificationPlatform").unwrap_or("none");
    if !push::PLATFORMS.contains(&platform) {
        return Err(ApiError::invalid("Config.NotificationPlatform"));
    }
    let token = p.text("Config.NotificationToken", 255)?;
    if platform != "none" && token.is_none() {
        return Err(ApiError::invalid_because(
            "Config.NotificationToken",
            "required unless Config.NotificationPlatform is none",
        ));
    }
    Ok(PushBinding {
        public_key: public_key.trim().to_owned(),
        sdk_version: p.text("Config.SdkVersion", 64)?,
        app_id: p.text("Config.AppId", 100)?,
        notification_platform: platform.to_owned(),
        notification_token: token,
    })
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    BaseUrl(base): BaseUrl,
    Path((service, identity)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let account = enroller(&state, &headers, &service, &identity, p.get("FactorType")).await?;
    let caller = Caller { account };
    let node = service_node(&state, &caller.account, &service)?;
    let identity = entities::identity(&identity)?;
    p.required("FriendlyName")?;
    let friendly_name = friendly_name(&p)?.unwrap_or_default();
    let push = match p.required("FactorType")? {
        "totp" => None,
        "push" => Some(push_binding(&p)?),
        kind @ "passkeys" => {
            return Err(ApiError::invalid_because(
                "FactorType",
                format!("{kind} factors are not served by verilimit yet (totp and push are)"),
            ));
        }
        _ => return Err(ApiError::invalid("FactorType")),
    };
    let secret = match p.get("Binding.Secret") {
        None if push.is_some() => String::new(),
        None => totp::encode_secret(&rand::random::<[u8; 20]>()),
        Some(s) if s.trim_end_matches('=').len() >= 16 && totp::decode_secret(s).is_some() => {
            totp::normalize_secret(s)
        }
        Some(_) => {
            return Err(ApiError::invalid_because(
                "Binding.Secret",
                "must be base32 of at least 16 characters",
            ));
        }
    };
    let asked = config_params(&p)?;
    let service_totp = &node.record.settings.totp;
    let defaults = Config::default();
    let setting = |v: Option<i64>, default: u32| v.map_or(default, |n| n as u32);
    let config = Config {
        alg: asked.alg.unwrap_or(defaults.alg),
        code_length: asked
            .code_length
            .unwrap_or(setting(service_totp.code_length, defaults.code_length)),
        time_step: asked
            .time_step
            .unwrap_or(setting(service_totp.time_step, defaults.time_step)),
        skew: asked
            .skew
            .unwrap_or(setting(service_totp.skew, defaults.skew)),
    };
    let metadata = json_object_param(&p, "Metadata")?;
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
        secret,
        config,
        last_used_s: None,
        metadata,
        date_created: now,
        date_updated: now,
        push,
        passkey: None,
    };
    let saved = state.create_factor(entity, factor).await?;
    let issuer = service_totp
        .issuer
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| node.record.friendly_name.clone());
    Ok((
        StatusCode::CREATED,
        Json(render_new(&base, &saved, &issuer)),
    )
        .into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, identity)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    let req = PageRequest::from_query(&query(&uri), sid::FACTOR)?;
    let factors = state.factors(&service, &identity).await?;
    let by_sid: BTreeMap<String, Factor> =
        factors.into_iter().map(|f| (f.sid.clone(), f)).collect();
    let page = paging::from_btree(&by_sid, &req, |_| true, |f| render(&base, f));
    Ok(Json(paging::envelope(
        "factors",
        &format!("{}/Factors", entities::url(&base, &service, &identity)),
        &[],
        &req,
        page,
    )))
}

async fn fetch(
    State(state): State<AppState>,
    headers: HeaderMap,
    BaseUrl(base): BaseUrl,
    Path((service, identity, sid)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let who = signer(&state, &headers, &service, &identity).await?;
    who.may_act_on(&service, &identity, Some(&sid))?;
    let identity = path_identity(&state, who.account(), &service, &identity)?;
    factor_sid(&service, &identity, &sid)?;
    let factor = state.factor(&service, &identity, &sid).await?;
    Ok(Json(render(&base, &factor)))
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    BaseUrl(base): BaseUrl,
    Path((service, identity, sid)): Path<(String, String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let who = signer(&state, &headers, &service, &identity).await?;
    who.may_act_on(&service, &identity, Some(&sid))?;
    let caller = Caller {
        account: who.account().to_owned(),
    };
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    factor_sid(&service, &identity, &sid)?;
    let auth_payload = match p.get("AuthPayload") {
        None => None,
        // A TOTP code, or a push device's base64 DER signature (about 96 characters).
        Some(code) if (1..=256).contains(&code.len()) => Some(code.to_owned()),
        Some(_) => return Err(ApiError::invalid("AuthPayload")),
    };
    let update = FactorUpdate {
        friendly_name: friendly_name(&p)?,
        metadata: json_object_param(&p, "Metadata")?,
        auth_payload,
        ..config_params(&p)?
    };
    let factor = state
        .update_factor(&caller.account, &service, &identity, &sid, update)
        .await?;
    Ok(Json(render(&base, &factor)))
}

/// Deleting a factor: with the account's credentials, or signed by the factor's own device (the
/// Verify Push SDK's `deleteFactor` in `FactorAPIClient.kt` signs it like its other calls).
async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((service, identity, sid)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let who = signer(&state, &headers, &service, &identity).await?;
    who.may_act_on(&service, &identity, Some(&sid))?;
    let identity = path_identity(&state, who.account(), &service, &identity)?;
    factor_sid(&service, &identity, &sid)?;
    state.delete_factor(&service, &identity, &sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_uri_has_twilios_shape() {
        let f = Factor {
            sid: "YF".into(),
            entity_sid: "YE".into(),
            service_sid: "VA".into(),
            account_sid: "AC".into(),
            identity: "user-0001".into(),
            friendly_name: "My Account".into(),
            status: FactorStatus::Unverified,
            secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
            config: Config {
                alg: Alg::Sha1,
                code_length: 4,
                time_step: 40,
                skew: 1,
            },
            last_used_s: None,
            metadata: None,
            date_created: 0,
            date_updated: 0,
            push: None,
            passkey: None,
        };
        // The example of Twilio's own API definition tests.
        assert_eq!(
            otpauth_uri(&f, "The Issuer"),
            "otpauth://totp/The%20Issuer:My%20Account?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=The%20Issuer&algorithm=SHA1&digits=4&period=40"
        );
    }
}
