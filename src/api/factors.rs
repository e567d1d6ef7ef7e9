//! `/v2/Services/{ServiceSid}/Entities/{Identity}/Factors`: create a TOTP factor (its entity
//! with it if the identity has none), list, fetch, update (`AuthPayload` verifies an unverified
//! factor; `FriendlyName`, `Config.*`, `Metadata`), delete (with its challenges).
//!
//! A new factor gets a random 160-bit secret unless `Binding.Secret` gives one; its settings are
//! the request's, else the service's `Totp.*`, else Twilio's defaults (sha1, 6 digits, 30 s, skew
//! 1). The `binding` (secret and `otpauth://` URI) is only ever shown in the answer to create.
//! Push and Passkeys factors are not served yet: 400 / 60200 naming `FactorType`.

use std::collections::BTreeMap;

use super::Path;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::entities::{self, path_identity};
use super::service_node;
use super::{BaseUrl, printable};
use crate::core::mfa::{Entity, Factor, FactorStatus};
use crate::core::totp::{self, Alg, Config};
use crate::engine::mfa::FactorUpdate;
use crate::state::AppState;
use crate::twilio::auth::Caller;
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

pub fn render(base: &str, f: &Factor) -> Value {
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
        "config": {
            "alg": f.config.alg.as_str(),
            "skew": f.config.skew,
            "code_length": f.config.code_length,
            "time_step": f.config.time_step,
        },
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
    v["binding"] = json!({ "secret": f.secret, "uri": otpauth_uri(f, issuer) });
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

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, identity)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let identity = entities::identity(&identity)?;
    p.required("FriendlyName")?;
    let friendly_name = friendly_name(&p)?.unwrap_or_default();
    match p.required("FactorType")? {
        "totp" => {}
        kind @ ("push" | "passkeys") => {
            return Err(ApiError::invalid_because(
                "FactorType",
                format!("{kind} factors are not served by verilimit yet (totp is)"),
            ));
        }
        _ => return Err(ApiError::invalid("FactorType")),
    }
    let secret = match p.get("Binding.Secret") {
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
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, identity, sid)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    factor_sid(&service, &identity, &sid)?;
    let factor = state.factor(&service, &identity, &sid).await?;
    Ok(Json(render(&base, &factor)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, identity, sid)): Path<(String, String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    factor_sid(&service, &identity, &sid)?;
    let auth_payload = match p.get("AuthPayload") {
        None => None,
        Some(code) if (1..=64).contains(&code.len()) => Some(code.to_owned()),
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

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, identity, sid)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
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
        };
        // The example of Twilio's own API definition tests.
        assert_eq!(
            otpauth_uri(&f, "The Issuer"),
            "otpauth://totp/The%20Issuer:My%20Account?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=The%20Issuer&algorithm=SHA1&digits=4&period=40"
        );
    }
}
