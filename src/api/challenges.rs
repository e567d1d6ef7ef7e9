//! `/v2/Services/{ServiceSid}/Entities/{Identity}/Challenges`: create (`FactorSid`, and for TOTP
//! the code in `AuthPayload`), list (filters `FactorSid`, `Status`, `Order`), fetch, update
//! (`AuthPayload`, `Metadata`).
//!
//! A TOTP challenge is decided when it carries a code: `approved` if the code is accepted at the
//! account's clock, else it stays `pending` (Twilio answers a wrong code with the challenge, not
//! an error) and may be answered again until its expiration date (5 minutes by default, at most
//! 60). Challenges of an unverified factor: 403 / 60318; answering an expired one: 403 / 60323.
//!
//! A push challenge (`Details.Message` required, `Details.Fields`, `HiddenDetails`) stays
//! `pending` until the device answers it: fetching it answers the `Twilio-Verify-Signature-Fields`
//! header (the fields the device signs, `crate::core::push::SIGNATURE_FIELDS`), and an update's
//! `AuthPayload` is the device's ES256 JWT over them plus `status` (approved or denied).
//! `POST …/Challenges/{Sid}/Notifications` answers a notification of a pending push challenge
//! (`Ttl` 0–300, default 300); verilimit delivers nothing.

use std::collections::BTreeMap;

use super::Path;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::BaseUrl;
use super::entities::{self, path_identity};
use super::factors::{Signer, json_field, json_object_param, signer};
use super::printable;
use crate::core::mfa::{CHALLENGE_MAX_TTL_MS, CHALLENGE_TTL_MS, Challenge, ChallengeStatus};
use crate::core::push;
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, Params, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/Services/{service}/Entities/{identity}/Challenges",
            get(list).post(create),
        )
        .route(
            "/v2/Services/{service}/Entities/{identity}/Challenges/{sid}",
            get(fetch).post(update),
        )
        .route(
            "/v2/Services/{service}/Entities/{identity}/Challenges/{sid}/Notifications",
            post(notify),
        )
}

/// The Notification SID prefix.
pub const NOTIFICATION: &str = "NT";

/// The header that names the fields a device signs when it answers a push challenge.
pub const SIGNATURE_FIELDS_HEADER: &str = "twilio-verify-signature-fields";

pub fn render(base: &str, c: &Challenge, now: i64) -> Value {
    let url = format!(
        "{}/Challenges/{}",
        entities::url(base, &c.service_sid, &c.identity),
        c.sid
    );
    json!({
        "sid": c.sid,
        "account_sid": c.account_sid,
        "service_sid": c.service_sid,
        "entity_sid": c.entity_sid,
        "identity": c.identity,
        "factor_sid": c.factor_sid,
        "date_created": date::format(c.date_created),
        "date_updated": date::format(c.date_updated),
        "date_responded": c.date_responded.map(date::format),
        "expiration_date": date::format(c.expiration_ms),
        "status": c.status_at(now).as_str(),
        "responded_reason": "none",
        "details": push::details(c),
        "hidden_details": json_field(c.hidden_details.as_deref()),
        "metadata": json_field(c.metadata.as_deref()),
        "factor_type": c.factor_type,
        "url": url,
        "links": { "notifications": format!("{url}/Notifications") },
    })
}

/// `AuthPayload` for a TOTP factor: 3 to 8 characters (Twilio's documented bounds).
fn auth_payload(p: &Params) -> Result<Option<String>, ApiError> {
    match p.get("AuthPayload") {
        None => Ok(None),
        Some(code) if (3..=8).contains(&code.chars().count()) => Ok(Some(code.to_owned())),
        Some(_) => Err(ApiError::invalid_because(
            "AuthPayload",
            "a TOTP code is 3 to 8 characters",
        )),
    }
}

/// `Details.Fields`: each value a JSON object with a `label` (up to 36 characters) and a `value`
/// (up to 128), at most 20 (the spec's bounds); kept as a compact JSON array.
fn details_fields(p: &Params) -> Result<Option<String>, ApiError> {
    let given: Vec<&str> = p.all("Details.Fields").collect();
    if given.is_empty() {
        return Ok(None);
    }
    let bad = || {
        ApiError::invalid_because(
            "Details.Fields",
            "each must be a JSON object with a label (up to 36 characters) and a value (up to 128)",
        )
    };
    if given.len() > 20 {
        return Err(ApiError::invalid_because(
            "Details.Fields",
            "at most 20 fields",
        ));
    }
    let mut fields = Vec::new();
    for text in given {
        let v: Value = serde_json::from_str(text).map_err(|_| bad())?;
        let (Some(label), Some(value)) = (v["label"].as_str(), v["value"].as_str()) else {
            return Err(bad());
        };
        if label.chars().count() > 36 || value.chars().count() > 128 {
            return Err(bad());
        }
        fields.push(json!({ "label": label, "value": value }));
    }
    Ok(Some(Value::Array(fields).to_string()))
}

/// `ExpirationDate`: after now, at most 60 minutes after it. Twilio's date format, or any
/// RFC 3339 time (twilio-node sends milliseconds).
fn expiration(p: &Params, now: i64) -> Result<i64, ApiError> {
    let Some(text) = p.get("ExpirationDate") else {
        return Ok(now + CHALLENGE_TTL_MS);
    };
    let at = date::parse(text).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_millis())
    });
    match at {
        Some(at) if at > now && at <= now + CHALLENGE_MAX_TTL_MS => Ok(at),
        _ => Err(ApiError::invalid_because(
            "ExpirationDate",
            "must be a date-time after now and at most 60 minutes after it",
        )),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, identity)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    let factor_sid = p.required("FactorSid")?;
    if !sid::is_valid(factor_sid, sid::FACTOR) {
        return Err(ApiError::invalid("FactorSid"));
    }
    let code = auth_payload(&p)?;
    let now = state.now(&caller.account);
    let fresh = Challenge {
        sid: sid::generate(sid::CHALLENGE),
        factor_sid: factor_sid.to_owned(),
        entity_sid: String::new(),
        service_sid: service.clone(),
        account_sid: caller.account.clone(),
        identity,
        factor_type: "totp".to_owned(),
        status: ChallengeStatus::Pending,
        message: p.text("Details.Message", 256)?,
        fields: details_fields(&p)?,
        hidden_details: json_object_param(&p, "HiddenDetails")?,
        metadata: None,
        expiration_ms: expiration(&p, now)?,
        date_responded: None,
        date_created: now,
        date_updated: now,
        passkey: None,
    };
    let saved = state.create_challenge(fresh, code).await?;
    let now = state.now(&caller.account);
    Ok((StatusCode::CREATED, Json(render(&base, &saved, now))).into_response())
}

/// Order of a challenge list: by creation (SID), ascending unless `Order=desc`. For `desc` the
/// list is keyed by the SID with every hex digit complemented, which is itself a `YC` SID, so
/// the SID-keyed paging (and its page tokens) works unchanged.
fn desc_key(sid: &str) -> String {
    let (prefix, hex) = sid.split_at(2);
    let flipped: String = hex
        .chars()
        .map(|c| {
            let d = c.to_digit(16).unwrap_or(0);
            char::from_digit(15 - d, 16).unwrap_or('0')
        })
        .collect();
    format!("{prefix}{flipped}")
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    BaseUrl(base): BaseUrl,
    Path((service, identity)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    // A device lists only its own factor's challenges (the SDK always sends `FactorSid`).
    let who = signer(&state, &headers, &service, &identity).await?;
    who.may_act_on(&service, &identity, q.get("FactorSid"))?;
    let caller = Caller {
        account: who.account().to_owned(),
    };
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    let req = PageRequest::from_query(&q, sid::CHALLENGE)?;
    let factor = q.get("FactorSid");
    if factor.is_some_and(|f| !sid::is_valid(f, sid::FACTOR)) {
        return Err(ApiError::invalid("FactorSid"));
    }
    let status = match q.get("Status") {
        None => None,
        Some(s) => Some(ChallengeStatus::parse(s).ok_or_else(|| ApiError::invalid("Status"))?),
    };
    let desc = match q.get("Order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(ApiError::invalid("Order")),
    };
    let challenges = state.challenges(&service, &identity).await?;
    let now = state.now(&caller.account);
    let by_key: BTreeMap<String, Challenge> = challenges
        .into_iter()
        .map(|c| {
            (
                if desc {
                    desc_key(&c.sid)
                } else {
                    c.sid.clone()
                },
                c,
            )
        })
        .collect();
    let keep = |c: &Challenge| {
        factor.is_none_or(|f| c.factor_sid == f) && status.is_none_or(|s| c.status_at(now) == s)
    };
    let page = paging::from_btree(&by_key, &req, keep, |c| render(&base, c, now));
    let mut filters = Vec::new();
    if let Some(f) = factor {
        filters.push(("FactorSid", f));
    }
    if let Some(s) = status {
        filters.push(("Status", s.as_str()));
    }
    if desc {
        filters.push(("Order", "desc"));
    }
    Ok(Json(paging::envelope(
        "challenges",
        &format!("{}/Challenges", entities::url(&base, &service, &identity)),
        &filters,
        &req,
        page,
    )))
}

/// The challenge a path names: 404 for a malformed SID.
fn challenge_sid(service: &str, identity: &str, sid: &str) -> Result<(), ApiError> {
    if sid::is_valid(sid, sid::CHALLENGE) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "/Services/{service}/Entities/{identity}/Challenges/{}",
            printable(sid)
        )))
    }
}

/// A challenge's answer to fetch: with the `Twilio-Verify-Signature-Fields` header while a push
/// challenge is pending (twilio-verify-android `api/ChallengeAPIClient.kt` reads it there and
/// `domain/challenge/ChallengeMapper.kt` splits it at commas).
pub fn render_fetched(base: &str, c: &Challenge, now: i64) -> Response {
    let mut response = Json(render(base, c, now)).into_response();
    if c.factor_type == "push" && c.status_at(now) == ChallengeStatus::Pending {
        response.headers_mut().insert(
            SIGNATURE_FIELDS_HEADER,
            HeaderValue::from_static(SIGNATURE_FIELDS_VALUE),
        );
    }
    response
}

/// `push::SIGNATURE_FIELDS`, comma-separated (checked by a unit test).
const SIGNATURE_FIELDS_VALUE: &str = "sid,account_sid,service_sid,entity_sid,identity,factor_sid,date_created,expiration_date,details,hidden_details";

async fn fetch(
    State(state): State<AppState>,
    headers: HeaderMap,
    BaseUrl(base): BaseUrl,
    Path((service, identity, sid)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let who = signer(&state, &headers, &service, &identity).await?;
    let identity = path_identity(&state, who.account(), &service, &identity)?;
    challenge_sid(&service, &identity, &sid)?;
    let challenge = state.challenge(&service, &identity, &sid).await?;
    who.may_act_on(&service, &identity, Some(&challenge.factor_sid))?;
    let now = state.now(who.account());
    Ok(render_fetched(&base, &challenge, now))
}

async fn notify(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, identity, sid)): Path<(String, String, String)>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    challenge_sid(&service, &identity, &sid)?;
    let ttl = p.int("Ttl", 0, 300)?.unwrap_or(300);
    let c = state.challenge(&service, &identity, &sid).await?;
    let now = state.now(&caller.account);
    if c.factor_type != "push" {
        return Err(ApiError::invalid_because(
            "ChallengeSid",
            "only push challenges are notified",
        ));
    }
    if c.status_at(now) != ChallengeStatus::Pending {
        return Err(ApiError::invalid_because(
            "ChallengeSid",
            "only a pending challenge is notified",
        ));
    }
    let body = json!({
        "sid": sid::generate(NOTIFICATION),
        "account_sid": c.account_sid,
        "service_sid": c.service_sid,
        "entity_sid": c.entity_sid,
        "identity": c.identity,
        "challenge_sid": c.sid,
        "priority": "high",
        "ttl": ttl,
        "date_created": date::format(now),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    BaseUrl(base): BaseUrl,
    Path((service, identity, sid)): Path<(String, String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let who = signer(&state, &headers, &service, &identity).await?;
    let caller = Caller {
        account: who.account().to_owned(),
    };
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    challenge_sid(&service, &identity, &sid)?;
    if let Signer::Device(_) = who {
        let c = state.challenge(&service, &identity, &sid).await?;
        who.may_act_on(&service, &identity, Some(&c.factor_sid))?;
    }
    // A TOTP code (3 to 8 characters, checked against the factor) or a push device's JWT.
    let code = p.required("AuthPayload")?.to_owned();
    if code.len() > 8192 {
        return Err(ApiError::invalid("AuthPayload"));
    }
    let metadata = json_object_param(&p, "Metadata")?;
    let challenge = state
        .update_challenge(&caller.account, &service, &identity, &sid, code, metadata)
        .await?;
    let now = state.now(&caller.account);
    Ok(Json(render(&base, &challenge, now)))
}

#[cfg(test)]
mod tests {
    use super::desc_key;

    #[test]
    fn the_signature_fields_header_names_the_cores_fields() {
        assert_eq!(
            super::SIGNATURE_FIELDS_VALUE,
            crate::core::push::SIGNATURE_FIELDS.join(",")
        );
    }

    #[test]
    fn descending_keys_reverse_the_order_and_stay_sids() {
        let a = "YC0000000000000000000000000000000a";
        let b = "YC0000000000000000000000000000000b";
        assert!(desc_key(a) > desc_key(b));
        assert!(crate::twilio::sid::is_valid(&desc_key(a), "YC"));
        assert_eq!(desc_key(&desc_key(a)), a);
    }
}
