//! The test control plane under `/emulator/v1`: the codes "sent" (outbox), the account's clock,
//! reset, and live rate-limit usage. Same credentials as the Twilio surface; everything is scoped
//! to the caller's account. Simulated Verify Push devices: `devices`.

pub mod devices;

use crate::api::Path;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::{BaseUrl, printable, service_node};
use crate::core::window;
use crate::state::{AppState, real_now_ms};
use crate::store::OutboxFilter;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, query};
use crate::twilio::paging::{self, Page, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/emulator/v1/Outbox", get(outbox))
        .route("/emulator/v1/Clock", get(clock).post(set_clock))
        .route("/emulator/v1/Reset", post(reset))
        .route("/emulator/v1/Services/{service}/Usage", get(usage))
        .route("/emulator/v1/Export", get(export))
        .route("/emulator/v1/Events", get(events))
        .route("/emulator/v1/Maintenance", post(maintenance))
        .route("/emulator/v1/openapi.json", get(openapi))
        .merge(devices::routes())
}

/// The OpenAPI 3 document of verilimit's own surface (Twilio's surface is described by Twilio's
/// official spec, which the document points to).
async fn openapi(_caller: Caller) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

/// Runs one maintenance round now (normally every 5 s): expiry, pruning, retention.
async fn maintenance(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<StatusCode, ApiError> {
    state.maintain().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn export(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let seed = crate::seed::export(&state.catalog.read(), &caller.account);
    Json(serde_json::to_value(seed).unwrap_or_default())
}

async fn events(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let q = query(&uri);
    let limit = q
        .int("PageSize", 1, crate::events::PER_ACCOUNT as i64)?
        .unwrap_or(crate::events::PER_ACCOUNT as i64) as usize;
    match q.get("Format").unwrap_or("json") {
        "json" => {}
        "replay" => {
            // The starts, oldest first, one JSON line each: `verilimit replay` traffic.
            let mut body = String::new();
            let recent = state
                .events
                .recent(&caller.account, q.get("ServiceSid"), limit);
            for line in recent.iter().rev().filter_map(|e| e.replay_line()) {
                body.push_str(&line.to_string());
                body.push('\n');
            }
            return Ok((
                [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
                body,
            )
                .into_response());
        }
        _ => {
            return Err(ApiError::invalid_because(
                "Format",
                "must be json or replay",
            ));
        }
    }
    let events: Vec<Value> = state
        .events
        .recent(&caller.account, q.get("ServiceSid"), limit)
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["date_created"] = json!(date::format(e.at_ms));
            v
        })
        .collect();
    Ok(Json(json!({ "events": events })).into_response())
}

async fn outbox(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    let req = PageRequest::from_query(&q, sid::ATTEMPT)?;
    let filter = OutboxFilter {
        to: q.get("To").map(str::to_owned),
        service_sid: q.get("ServiceSid").map(str::to_owned),
        verification_sid: q.get("VerificationSid").map(str::to_owned),
    };
    let (messages, has_next, has_previous) = state
        .outbox(&caller.account, &filter, &req.cursor, req.size)
        .await?;
    let first_sid = messages.first().map(|m| m.sid.clone());
    let page = Page {
        last_sid: messages.last().map(|m| m.sid.clone()),
        first_sid,
        items: messages
            .into_iter()
            .map(|m| {
                let mut v = serde_json::to_value(&m).unwrap_or_default();
                v["date_created"] = json!(date::format(m.at_ms));
                v
            })
            .collect(),
        has_next,
        has_previous,
    };
    let filters: Vec<(&str, &str)> = [
        ("To", &filter.to),
        ("ServiceSid", &filter.service_sid),
        ("VerificationSid", &filter.verification_sid),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect();
    Ok(Json(paging::envelope(
        "messages",
        &format!("{base}/emulator/v1/Outbox"),
        &filters,
        &req,
        page,
    )))
}

fn clock_json(state: &AppState, account: &str) -> Value {
    let now = state.now(account);
    json!({
        "now": date::format(now),
        "now_ms": now,
        "offset_ms": state.clocks.offset(account),
    })
}

async fn clock(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    Json(clock_json(&state, &caller.account))
}

/// The furthest the clock may be moved (100 years), so times stay far from overflow.
const MAX_OFFSET_MS: i64 = 100 * 365 * 86_400_000;

async fn set_clock(
    State(state): State<AppState>,
    caller: Caller,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let account = caller.account.clone();
    let current = state.clocks.offset(&account);
    let offset = match (p.get("AdvanceSeconds"), p.get("Now")) {
        (Some(_), None) => {
            let secs = p
                .int("AdvanceSeconds", 0, MAX_OFFSET_MS / 1000)?
                .unwrap_or(0);
            current + secs * 1000
        }
        (None, Some(now)) => {
            let target = date::parse(now)
                .ok_or_else(|| ApiError::invalid_because("Now", "must be YYYY-MM-DDTHH:MM:SSZ"))?;
            let offset = target - real_now_ms();
            if offset < current {
                return Err(ApiError::invalid_because(
                    "Now",
                    "the clock only moves forward (use Reset to go back to real time)",
                ));
            }
            offset
        }
        _ => {
            return Err(ApiError::bad_request(
                20001,
                "Missing required parameter: send exactly one of AdvanceSeconds or Now",
            ));
        }
    };
    if offset > MAX_OFFSET_MS {
        return Err(ApiError::invalid_because(
            "AdvanceSeconds",
            "moves the clock too far",
        ));
    }
    state.set_clock_offset(&account, offset).await?;
    Ok(Json(clock_json(&state, &caller.account)))
}

async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    FormBody(p): FormBody,
) -> Result<StatusCode, ApiError> {
    let everything = match p.get("Scope").unwrap_or("all") {
        "all" => true,
        "counters" => false,
        _ => {
            return Err(ApiError::invalid_because(
                "Scope",
                "must be all or counters",
            ));
        }
    };
    state.reset(&caller.account, everything).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(service): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let q = query(&uri);
    let wanted = q.get("RateLimit");
    if let Some(w) = wanted {
        if !node.rate_limits.contains_key(w) && node.rate_limit_by_name(w).is_none() {
            return Err(ApiError::not_found(format!(
                "/Services/{service}/RateLimits/{}",
                printable(w)
            )));
        }
    }
    let value = q.get("Value");
    let mut now = state.now(&caller.account);
    let mut rows = Vec::new();
    for rl in node.rate_limits.values() {
        if wanted.is_some_and(|w| w != rl.record.sid && w != rl.record.unique_name) {
            continue;
        }
        let (logs, at) = state.usage(&caller.account, rl, value).await?;
        now = at;
        for entry in logs {
            for b in rl.buckets.values() {
                let rule = b.rule();
                let count = window::count(&entry.log, &rule, now);
                if count == 0 {
                    continue;
                }
                let lower = rule.lower_bound(now);
                let oldest = entry.log.iter().find(|&&t| t >= lower).copied();
                let retry_ms = window::wait_ms(&entry.log, &rule, now).unwrap_or(0);
                rows.push(json!({
                    "rate_limit_sid": rl.record.sid,
                    "unique_name": rl.record.unique_name,
                    "bucket_sid": b.sid,
                    "max": b.max,
                    "interval": b.interval,
                    "value": entry.value,
                    "count": count,
                    "remaining": (b.max as usize).saturating_sub(count),
                    "next_slot_at": oldest.map(|t| date::format(t + rule.interval_ms + 999)),
                    "retry_after": (retry_ms + 999) / 1000,
                }));
            }
        }
    }
    Ok(Json(json!({ "usage": rows, "now": date::format(now) })))
}
