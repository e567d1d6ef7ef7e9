//! `/v1/Sinks`: create, list (filters `InUse`, `Status`), fetch, update (`Description`),
//! delete; `/v1/Sinks/{Sid}/Test` sends the test event; `/v1/Sinks/{Sid}/Validate` always
//! answers `valid`.
//!
//! Every sink is `active` from creation, as Twilio's current Sink Test page describes (no test
//! and validate round needed). Only `webhook` sinks receive events.

use std::collections::BTreeMap;

use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::{BaseUrl, Path, printable};
use crate::event_streams::{SINK_PREFIX, SINK_TYPES, SinkRecord, cloudevent};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, Params, parse_bool, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

/// Longest `Description` accepted (our choice; Twilio publishes none).
pub const DESCRIPTION_MAX: usize = 255;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/Sinks", get(list).post(create))
        .route("/v1/Sinks/{sid}", get(fetch).post(update).delete(remove))
        .route("/v1/Sinks/{sid}/Test", post(test))
        .route("/v1/Sinks/{sid}/Validate", post(validate))
}

pub fn render(base: &str, s: &SinkRecord) -> Value {
    let url = format!("{base}/v1/Sinks/{}", s.sid);
    json!({
        "date_created": date::format(s.date_created),
        "date_updated": date::format(s.date_updated),
        "description": s.description,
        "sid": s.sid,
        "sink_configuration": s.sink_configuration,
        "sink_type": s.sink_type,
        "status": s.status,
        "url": url,
        "links": {
            "sink_test": format!("{url}/Test"),
            "sink_validate": format!("{url}/Validate"),
        },
    })
}

/// The caller's sink, or 404 (also for a malformed SID and for another account's sink).
pub async fn sink_or_404(
    state: &AppState,
    account: &str,
    sid: &str,
) -> Result<SinkRecord, ApiError> {
    let not_found = || ApiError::not_found(format!("/Sinks/{}", printable(sid)));
    if !sid::is_valid(sid, SINK_PREFIX) {
        return Err(not_found());
    }
    state.sink(account, sid).await?.ok_or_else(not_found)
}

/// A required, non-empty description of at most [`DESCRIPTION_MAX`] characters.
pub fn description(p: &Params) -> Result<String, ApiError> {
    p.required("Description")?;
    Ok(p.text("Description", DESCRIPTION_MAX)?.unwrap_or_default())
}

/// `SinkConfiguration`: a JSON object; for a webhook, with an absolute http(s) `destination`,
/// `method` POST or GET when given, and a boolean `batch_events` when given.
fn configuration(p: &Params, sink_type: &str) -> Result<Value, ApiError> {
    let raw = p.required("SinkConfiguration")?;
    let bad = |why: &str| ApiError::invalid_because("SinkConfiguration", why);
    let config: Value = serde_json::from_str(raw).map_err(|_| bad("must be a JSON object"))?;
    if !config.is_object() {
        return Err(bad("must be a JSON object"));
    }
    if sink_type == "webhook" {
        let destination = config
            .get("destination")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a webhook needs a destination"))?;
        let uri: Uri = destination
            .parse()
            .map_err(|_| bad("destination must be an absolute http or https URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(bad("destination must be an absolute http or https URL"));
        }
        if let Some(method) = config.get("method")
            && !matches!(
                method.as_str().map(str::to_ascii_uppercase).as_deref(),
                Some("POST" | "GET")
            )
        {
            return Err(bad("method must be POST or GET"));
        }
        if let Some(batch) = config.get("batch_events")
            && !batch.is_boolean()
        {
            return Err(bad("batch_events must be true or false"));
        }
    }
    Ok(config)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let description = description(&p)?;
    let sink_type = p.required("SinkType")?.to_owned();
    if !SINK_TYPES.contains(&sink_type.as_str()) {
        return Err(ApiError::invalid_because(
            "SinkType",
            "must be one of kinesis, webhook, segment, email",
        ));
    }
    let sink_configuration = configuration(&p, &sink_type)?;
    let now = state.now(&caller.account);
    let record = SinkRecord {
        sid: sid::generate(SINK_PREFIX),
        account_sid: caller.account.clone(),
        description,
        sink_type,
        sink_configuration,
        status: "active".to_owned(),
        date_created: now,
        date_updated: now,
    };
    let saved = state.create_sink(record).await?;
    Ok((StatusCode::CREATED, Json(render(&base, &saved))).into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    let req = PageRequest::from_query(&q, SINK_PREFIX)?;
    let in_use = match q.get("InUse") {
        None => None,
        Some(v) => Some(parse_bool(v).ok_or_else(|| ApiError::invalid("InUse"))?),
    };
    let status = q.get("Status");
    let mut filters: Vec<(&str, &str)> = Vec::new();
    if let Some(v) = q.get("InUse") {
        filters.push(("InUse", v));
    }
    if let Some(s) = status {
        filters.push(("Status", s));
    }
    let sinks: BTreeMap<String, (SinkRecord, bool)> = state
        .sinks(&caller.account)
        .await?
        .into_iter()
        .map(|(s, used)| (s.sid.clone(), (s, used)))
        .collect();
    let page = paging::from_btree(
        &sinks,
        &req,
        |(s, used)| in_use.is_none_or(|u| u == *used) && status.is_none_or(|st| st == s.status),
        |(s, _)| render(&base, s),
    );
    Ok(Json(paging::envelope(
        "sinks",
        &format!("{base}/v1/Sinks"),
        &filters,
        &req,
        page,
    )))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(sid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let sink = sink_or_404(&state, &caller.account, &sid).await?;
    Ok(Json(render(&base, &sink)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(sid): Path<String>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let mut sink = sink_or_404(&state, &caller.account, &sid).await?;
    sink.description = description(&p)?;
    sink.date_updated = state.now(&caller.account).max(sink.date_created);
    let saved = state.update_sink(sink).await?;
    Ok(Json(render(&base, &saved)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sink = sink_or_404(&state, &caller.account, &sid).await?;
    state.delete_sink(&caller.account, &sink.sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Publishes `com.twilio.eventstreams.test-event` to the sink (webhooks only) and answers
/// `{"result": "submitted"}` without waiting for the delivery.
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    let sink = sink_or_404(&state, &caller.account, &sid).await?;
    if let (Some(destination), Some(token)) = (
        sink.webhook_destination(),
        state.0.credentials.token(&caller.account),
    ) {
        let event = cloudevent::test_event(&caller.account, &sink.sid, state.now(&caller.account));
        state
            .event_streams
            .enqueue(&caller.account, &sink.sid, destination, token, &[event]);
    }
    Ok((StatusCode::CREATED, Json(json!({ "result": "submitted" }))).into_response())
}

/// Always valid: every sink is active already.
async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    sink_or_404(&state, &caller.account, &sid).await?;
    p.required("TestId")?;
    Ok((StatusCode::CREATED, Json(json!({ "result": "valid" }))).into_response())
}
