//! `/v2/Services/{ServiceSid}/Verifications`: start (with Service Rate Limits), fetch, and update
//! (`Status` canceled or approved). A verification can be addressed by its `VE` SID or by its `To`.
//!
//! A start is checked, in order, against: the parameters, the send-attempts rule (60203), and
//! every bucket of every rate limit named in `RateLimits` (20429, all or nothing). Only then is
//! it recorded: a new verification or a re-send of the pending one, its send attempt, its
//! admissions — and answered 201 once they have committed.

use std::sync::Arc;

use super::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::{BaseUrl, printable, service_node};
use crate::catalog::{RateLimitNode, ServiceNode};
use crate::core::{StartRequest, Started, Status, Verification};
use crate::engine::Change;
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, Params};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service}/Verifications", post(create))
        .route(
            "/v2/Services/{service}/Verifications/{sid}",
            get(fetch).post(update),
        )
}

/// A verification as Twilio renders it (`verify.v2.service.verification`), borrowed from the
/// state: serialized straight to the response body.
#[derive(serde::Serialize)]
pub struct Rendered<'a> {
    sid: &'a str,
    service_sid: &'a str,
    account_sid: &'a str,
    to: &'a str,
    channel: &'a str,
    status: &'static str,
    valid: bool,
    lookup: EmptyObject,
    amount: Option<&'a str>,
    payee: Option<&'a str>,
    send_code_attempts: Vec<RenderedAttempt<'a>>,
    date_created: String,
    date_updated: String,
    sna: Option<()>,
    url: String,
}

#[derive(serde::Serialize)]
struct RenderedAttempt<'a> {
    time: String,
    channel: &'a str,
    attempt_sid: &'a str,
}

/// `{}`.
struct EmptyObject;

impl serde::Serialize for EmptyObject {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

pub fn render<'a>(base: &str, v: &'a Verification) -> Rendered<'a> {
    Rendered {
        sid: &v.sid,
        service_sid: &v.service_sid,
        account_sid: &v.account_sid,
        to: &v.to,
        channel: &v.channel,
        status: v.status.as_str(),
        valid: v.status == Status::Approved,
        lookup: EmptyObject,
        amount: v.amount.as_deref(),
        payee: v.payee.as_deref(),
        send_code_attempts: v
            .attempts
            .iter()
            .map(|a| RenderedAttempt {
                time: date::format(a.at_ms),
                channel: attempt_channel(&a.channel),
                attempt_sid: &a.sid,
            })
            .collect(),
        date_created: date::format(v.date_created),
        date_updated: date::format(v.date_updated),
        sna: None,
        url: format!(
            "{base}/v2/Services/{}/Verifications/{}",
            v.service_sid, v.sid
        ),
    }
}

/// Send attempts name the channel as the spec's examples do (`SMS`, `EMAIL`, `whatsapp`).
fn attempt_channel(c: &str) -> &str {
    match c {
        "sms" => "SMS",
        "email" => "EMAIL",
        "call" => "CALL",
        other => other,
    }
}

/// The channels of the spec's `verification_enum_channel`, and `auto` (sent as SMS).
fn channel(v: &str) -> Result<&'static str, ApiError> {
    Ok(match v {
        "sms" | "auto" => "sms",
        "call" => "call",
        "email" => "email",
        "whatsapp" => "whatsapp",
        "sna" => "sna",
        _ => {
            return Err(ApiError::invalid_because(
                "Channel",
                "must be one of sms, call, email, whatsapp, sna, auto",
            ));
        }
    })
}

/// `To`: an E.164 phone number, or an email address for the email channel.
pub fn recipient(to: &str, channel: &str) -> Result<(), ApiError> {
    let ok = if channel == "email" {
        is_email(to)
    } else {
        is_e164(to)
    };
    if ok {
        Ok(())
    } else if channel == "email" {
        Err(ApiError::invalid_because("To", "must be an email address"))
    } else {
        Err(ApiError::invalid_because(
            "To",
            "must be a phone number in E.164 format",
        ))
    }
}

fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    s.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '<' && c != '>' && c != '"')
}

/// The longest rate-limit value accepted.
pub const RATE_LIMIT_VALUE_MAX: usize = 256;

/// Parses `RateLimits`: a JSON object whose keys are the service's rate-limit unique names and
/// whose values are strings or numbers.
pub fn rate_limits(
    raw: &str,
    service: &ServiceNode,
) -> Result<Vec<(Arc<RateLimitNode>, String)>, ApiError> {
    let parsed: serde_json::Map<String, Value> = serde_json::from_str(raw).map_err(|_| {
        ApiError::invalid_because(
            "RateLimits",
            "must be a JSON object of rate limit unique names to values",
        )
    })?;
    let mut out = Vec::with_capacity(parsed.len());
    for (key, value) in parsed {
        let Some(rl) = service.rate_limit_by_name(&key) else {
            return Err(ApiError::invalid_because(
                "RateLimits",
                format!(
                    "no rate limit with unique name '{}' in this service",
                    printable(&key)
                ),
            ));
        };
        let value = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            _ => {
                return Err(ApiError::invalid_because(
                    "RateLimits",
                    format!("the value of '{key}' must be a string or a number"),
                ));
            }
        };
        if value.contains('\u{FFFD}') || value.chars().any(char::is_control) {
            return Err(ApiError::invalid_because(
                "RateLimits",
                format!(
                    "the value of '{}' must not contain control characters or invalid UTF-8",
                    printable(&key)
                ),
            ));
        }
        if value.chars().count() > RATE_LIMIT_VALUE_MAX {
            return Err(ApiError::invalid_because(
                "RateLimits",
                format!("the value of '{key}' is longer than {RATE_LIMIT_VALUE_MAX} characters"),
            ));
        }
        out.push((rl.clone(), value));
    }
    Ok(out)
}

/// `CustomCode`: 4–10 letters or digits, and only where the service allows custom codes.
fn custom_code(p: &Params, service: &ServiceNode) -> Result<Option<String>, ApiError> {
    let Some(code) = p.get("CustomCode") else {
        return Ok(None);
    };
    if !service.record.custom_code_enabled {
        return Err(ApiError::invalid_because(
            "CustomCode",
            "custom codes are not enabled for this service (CustomCodeEnabled)",
        ));
    }
    if !(4..=10).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid_because(
            "CustomCode",
            "must be 4 to 10 letters or digits",
        ));
    }
    Ok(Some(code.to_owned()))
}

/// `TemplateSid`: a template of `GET /v2/Templates` (60200 otherwise), on a channel it supports
/// (60440, "Unsupported verification content type", as Twilio's error page describes it).
fn template(p: &Params, channel: &str) -> Result<(), ApiError> {
    let Some(v) = p.get("TemplateSid") else {
        return Ok(());
    };
    let t = super::templates::find(v)
        .filter(|_| sid::is_valid(v, super::templates::TEMPLATE))
        .ok_or_else(|| {
            ApiError::invalid_because("TemplateSid", "no such template (GET /v2/Templates)")
        })?;
    if !super::templates::supports(t, channel) {
        return Err(ApiError::bad_request(
            60440,
            format!(
                "Unsupported verification content type: template {} does not support the {channel} channel",
                t.sid
            ),
        ));
    }
    Ok(())
}

/// The optional parameters that are only validated, not used.
fn check_optional(p: &Params) -> Result<(), ApiError> {
    for name in [
        "CustomFriendlyName",
        "CustomMessage",
        "SendDigits",
        "Locale",
        "AppHash",
        "TemplateCustomSubstitutions",
        "DeviceIp",
        "Tags",
    ] {
        p.text(name, 4096)?;
    }
    p.bool("EnableSnaClientToken")?;
    if let Some(v) = p.get("RiskCheck") {
        if v != "enable" && v != "disable" {
            return Err(ApiError::invalid("RiskCheck"));
        }
    }

    if let Some(v) = p.get("ChannelConfiguration") {
        if serde_json::from_str::<serde_json::Map<String, Value>>(v).is_err() {
            return Err(ApiError::invalid_because(
                "ChannelConfiguration",
                "must be a JSON object",
            ));
        }
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let to = p.required("To")?.to_owned();
    let channel = channel(p.required("Channel")?)?;
    recipient(&to, channel)?;
    let request = StartRequest {
        service_sid: node.record.sid.clone(),
        account_sid: caller.account.clone(),
        to,
        channel: channel.to_owned(),
        custom_code: custom_code(&p, &node)?,
        amount: p.text("Amount", 255)?,
        payee: p.text("Payee", 255)?,
    };
    check_optional(&p)?;
    template(&p, channel)?;
    let limited = match p.get("RateLimits") {
        Some(raw) => rate_limits(raw, &node)?,
        None => Vec::new(),
    };
    match state
        .start(request, node.record.code_length, limited)
        .await?
    {
        Started::Admitted(a) => {
            Ok((StatusCode::CREATED, Json(render(&base, &a.verification))).into_response())
        }
        Started::TooManySends => Err(ApiError::too_many(60203, "Max send attempts reached")),
        Started::Refused(r) => {
            let seconds = (r.retry_after_ms.saturating_add(999) / 1000).max(1);
            Err(ApiError::too_many(20429, "Too many requests")
                .with_header("retry-after", seconds.to_string())
                .with_header("twilio-reached-rate-limit", r.unique_name))
        }
    }
}

pub fn not_found_at(service: &str, key: &str) -> ApiError {
    ApiError::not_found(format!(
        "/Services/{service}/Verifications/{}",
        printable(key)
    ))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    service_node(&state, &caller.account, &service)?;
    let v = state
        .fetch(&caller.account, &service, &key)
        .await?
        .ok_or_else(|| not_found_at(&service, &key))?;
    Ok(Json(render(&base, &v)).into_response())
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, key)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    service_node(&state, &caller.account, &service)?;
    let status = match p.required("Status")? {
        "canceled" => Status::Canceled,
        "approved" => Status::Approved,
        _ => {
            return Err(ApiError::invalid_because(
                "Status",
                "must be canceled or approved",
            ));
        }
    };
    let v = state
        .change(&caller.account, &service, &key, Change::Update(status))
        .await?
        .ok_or_else(|| not_found_at(&service, &key))?;
    Ok(Json(render(&base, &v)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_e164_or_email() {
        assert!(recipient("+15017122661", "sms").is_ok());
        assert!(recipient("15017122661", "sms").is_err());
        assert!(recipient("+1501712266a", "sms").is_err());
        assert!(recipient("+0123456789", "sms").is_err());
        assert!(recipient("user@example.com", "email").is_ok());
        assert!(recipient("user@example", "email").is_err());
        assert!(recipient("+15017122661", "email").is_err());
    }
}
