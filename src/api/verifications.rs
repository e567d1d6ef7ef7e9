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
use serde_json::{Value, json};

use super::{BaseUrl, printable, service_node};
use crate::catalog::{RateLimitNode, ServiceNode};
use crate::events::{Event, Kind};
use crate::limiter::{Check, Decision};
use crate::state::AppState;
use crate::store::pg::Started;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, Params};
use crate::twilio::{ApiError, date, sid};
use crate::verification::{Start, Status, Verification};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service}/Verifications", post(create))
        .route(
            "/v2/Services/{service}/Verifications/{sid}",
            get(fetch).post(update),
        )
}

pub fn render(base: &str, v: &Verification) -> Value {
    json!({
        "sid": v.sid,
        "service_sid": v.service_sid,
        "account_sid": v.account_sid,
        "to": v.to,
        "channel": v.channel,
        "status": v.status.as_str(),
        "valid": v.status == Status::Approved,
        "lookup": {},
        "amount": v.amount,
        "payee": v.payee,
        "send_code_attempts": v.attempts.iter().map(|a| json!({
            "time": date::format(a.at_ms),
            "channel": attempt_channel(&a.channel),
            "attempt_sid": a.sid,
        })).collect::<Vec<_>>(),
        "date_created": date::format(v.date_created),
        "date_updated": date::format(v.date_updated),
        "sna": null,
        "url": format!("{base}/v2/Services/{}/Verifications/{}", v.service_sid, v.sid),
    })
}

/// Send attempts name the channel as the spec's examples do (`SMS`, `EMAIL`, `whatsapp`).
fn attempt_channel(c: &str) -> String {
    match c {
        "sms" | "email" | "call" => c.to_ascii_uppercase(),
        other => other.to_owned(),
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
    if let Some(v) = p.get("TemplateSid") {
        if !sid::is_valid(v, "HJ") {
            return Err(ApiError::invalid("TemplateSid"));
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
    let start = Start {
        service_sid: node.record.sid.clone(),
        account_sid: caller.account.clone(),
        to: to.clone(),
        channel: channel.to_owned(),
        code_length: node.record.code_length,
        custom_code: custom_code(&p, &node)?,
        amount: p.text("Amount", 255)?,
        payee: p.text("Payee", 255)?,
        code_ttl_ms: state.settings.code_ttl_ms,
    };
    check_optional(&p)?;
    let limited = match p.get("RateLimits") {
        Some(raw) => rate_limits(raw, &node)?,
        None => Vec::new(),
    };
    let account = caller.account;
    let refused = |rate_limit: Option<&str>, error_code: u32| {
        if let Some(name) = rate_limit {
            crate::metrics::decision(&node.record.sid, name, false);
        }
        state.events.record(
            &account,
            Event {
                kind: Kind::Refused,
                service_sid: node.record.sid.clone(),
                verification_sid: None,
                to: to.clone(),
                rate_limit: rate_limit.map(str::to_owned),
                error_code: Some(error_code),
                at_ms: state.now(&account),
            },
        );
    };
    let outcome = match state.store.postgres() {
        Some(pg) => {
            let s = &state.settings;
            pg.start(
                start,
                &limited,
                state.now(&account),
                s.send_attempts_limit,
                s.send_window_ms,
            )
            .await?
        }
        None => start_in_memory(&state, start, &limited).await?,
    };
    let (snapshot, is_new, expired) = match outcome {
        Started::Admitted {
            verification,
            is_new,
            expired,
        } => (verification, is_new, expired),
        Started::TooManySends => {
            refused(None, 60203);
            return Err(ApiError::too_many(60203, "Max send attempts reached"));
        }
        Started::Refused {
            retry_after_ms,
            unique_name,
        } => {
            refused(Some(&unique_name), 20429);
            let seconds = (retry_after_ms.saturating_add(999) / 1000).max(1);
            return Err(ApiError::too_many(20429, "Too many requests")
                .with_header("retry-after", seconds.to_string())
                .with_header("twilio-reached-rate-limit", unique_name));
        }
    };
    for (rl, _) in &limited {
        crate::metrics::decision(&node.record.sid, &rl.record.unique_name, true);
    }
    if let Some(old) = &expired {
        state.events.record(&account, Event::of(old, Kind::Expired));
    }
    let kind = if is_new { Kind::Started } else { Kind::Resent };
    state.events.record(&account, Event::of(&snapshot, kind));
    Ok((StatusCode::CREATED, Json(render(&base, &snapshot))).into_response())
}

/// A start on SQLite: decided and recorded in memory under the recipient's lock (so concurrent
/// starts to one recipient see each other; the limiter takes its own locks inside), then stored
/// by the writer; the admissions are taken back if storing fails.
async fn start_in_memory(
    state: &AppState,
    start: Start,
    limited: &[(Arc<RateLimitNode>, String)],
) -> Result<Started, ApiError> {
    let settings = &state.settings;
    let (snapshot, attempt, expired, reservation, is_new) = {
        let now = state.now(&start.account_sid);
        let mut locked = state.recipients.lock(&start.service_sid, &start.to);
        let r = locked.get_or_insert(&start.account_sid);
        if settings.send_attempts_limit > 0
            && r.recent_sends(now, settings.send_window_ms) >= settings.send_attempts_limit as usize
        {
            return Ok(Started::TooManySends);
        }
        let checks: Vec<Check> = limited
            .iter()
            .map(|(rl, value)| Check {
                rate_limit_id: rl.record.id,
                unique_name: &rl.record.unique_name,
                value,
                rules: &rl.rules,
            })
            .collect();
        let reservation = match state.limiter.admit(&checks, now) {
            Decision::Admitted(res) => res,
            Decision::Refused {
                retry_after_ms,
                unique_name,
            } => {
                return Ok(Started::Refused {
                    retry_after_ms,
                    unique_name,
                });
            }
        };
        let expired = r.take_expired(now);
        r.sends.push_back(now);
        let (snapshot, attempt, is_new) = start.apply(&mut r.pending, now);
        if let Some(old) = &expired {
            locked.unindex(&old.sid);
        }
        if is_new {
            locked.index(&snapshot.sid);
        }
        (snapshot, attempt, expired, reservation, is_new)
    };
    let mut items = Vec::new();
    if let Some(old) = &expired {
        items.push((old.clone(), None, Vec::new()));
    }
    items.push((snapshot.clone(), Some(attempt), reservation.entries.clone()));
    let sqlite = state
        .store
        .sqlite()
        .ok_or_else(|| ApiError::internal("no SQLite store"))?;
    if let Err(e) = sqlite.save_verifications(items).await {
        state.limiter.undo(reservation);
        return Err(e);
    }
    Ok(Started::Admitted {
        verification: Box::new(snapshot),
        is_new,
        expired: expired.map(Box::new),
    })
}

/// Finds the (service, recipient) a path segment names: a `VE` SID or the `To` itself.
pub fn locate(state: &AppState, service: &str, key: &str) -> Option<String> {
    if key.starts_with(sid::VERIFICATION) && sid::is_valid(key, sid::VERIFICATION) {
        let (s, to) = state.recipients.find_sid(key)?;
        (s == service).then_some(to)
    } else {
        Some(key.to_owned())
    }
}

/// Records the events a change of a verification means.
fn record_change(state: &AppState, account: &str, before: &Verification, after: &Verification) {
    if after.status != before.status {
        let kind = match after.status {
            Status::Approved => Kind::Approved,
            Status::Canceled => Kind::Canceled,
            Status::MaxAttemptsReached => Kind::MaxAttemptsReached,
            _ => return,
        };
        let mut e = Event::of(after, kind);
        if kind == Kind::MaxAttemptsReached {
            e.error_code = Some(60202);
        }
        state.events.record(account, e);
    } else if after.checks_failed > before.checks_failed {
        state
            .events
            .record(account, Event::of(after, Kind::CheckFailed));
    }
}

/// Applies `change` to the live pending verification the path names (404 if none), stores the
/// result and returns it. `change` may end the verification.
pub async fn with_pending<T: Send + 'static>(
    state: &AppState,
    account: &str,
    service: &str,
    key: &str,
    not_found: impl Fn() -> ApiError,
    change: impl FnOnce(&mut Verification, i64) -> Result<T, ApiError>,
) -> Result<(Verification, T), ApiError> {
    let now = state.now(account);
    if let Some(pg) = state.store.postgres() {
        return match pg.with_pending(service, key, now, change).await? {
            Ok((before, after, out)) => {
                record_change(state, account, &before, &after);
                Ok((after, out?))
            }
            Err(expired) => {
                if let Some(old) = expired {
                    state.events.record(account, Event::of(&old, Kind::Expired));
                }
                Err(not_found())
            }
        };
    }
    let to = locate(state, service, key).ok_or_else(&not_found)?;
    // Decide under the recipient's lock; store after releasing it.
    let decided = {
        let mut locked = state.recipients.lock(service, &to);
        match locked.get() {
            None => Err(None),
            Some(r) => {
                let expired = r.take_expired(now);
                if let Some(old) = &expired {
                    state.events.record(account, Event::of(old, Kind::Expired));
                }
                match r.pending.as_mut() {
                    Some(v) if !key.starts_with(sid::VERIFICATION) || v.sid == key => {
                        let before = v.clone();
                        let out = change(v, now);
                        record_change(state, account, &before, v);
                        let snapshot = v.clone();
                        if snapshot.status != Status::Pending {
                            r.pending = None;
                            locked.unindex(&snapshot.sid);
                        }
                        Ok((snapshot, expired, out))
                    }
                    _ => {
                        if let Some(old) = &expired {
                            locked.unindex(&old.sid);
                        }
                        Err(expired)
                    }
                }
            }
        }
    };
    let sqlite = state
        .store
        .sqlite()
        .ok_or_else(|| ApiError::internal("no SQLite store"))?;
    let (snapshot, expired, out) = match decided {
        Ok(d) => d,
        Err(expired) => {
            if let Some(old) = expired {
                sqlite
                    .save_verifications(vec![(old, None, Vec::new())])
                    .await?;
            }
            return Err(not_found());
        }
    };
    let mut items: Vec<_> = expired.into_iter().map(|v| (v, None, Vec::new())).collect();
    items.push((snapshot.clone(), None, Vec::new()));
    sqlite.save_verifications(items).await?;
    Ok((snapshot, out?))
}

fn not_found_at(service: &str, key: &str) -> impl Fn() -> ApiError {
    let path = format!("/Services/{service}/Verifications/{}", printable(key));
    move || ApiError::not_found(&path)
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    service_node(&state, &caller.account, &service)?;
    let not_found = not_found_at(&service, &key);
    let now = state.now(&caller.account);
    let found = match state.store.postgres() {
        Some(pg) => pg.fetch(&service, &key, now).await?,
        None => {
            let to = locate(&state, &service, &key).ok_or_else(&not_found)?;
            let mut locked = state.recipients.lock(&service, &to);
            locked
                .get()
                .and_then(|r| r.pending.as_ref())
                .filter(|v| v.is_live(now) && (!key.starts_with(sid::VERIFICATION) || v.sid == key))
                .cloned()
        }
    };
    let v = found.ok_or_else(&not_found)?;
    Ok(Json(render(&base, &v)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, key)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
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
    let not_found = not_found_at(&service, &key);
    let (v, ()) = with_pending(
        &state,
        &caller.account,
        &service,
        &key,
        not_found,
        |v, now| {
            v.finish(status, now);
            Ok(())
        },
    )
    .await?;
    Ok(Json(render(&base, &v)))
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
