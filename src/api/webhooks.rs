//! `/v2/Services/{ServiceSid}/Webhooks`: where a service's Verify Push and TOTP events
//! (`factor.created`, `factor.verified`, `factor.deleted`, `challenge.approved`,
//! `challenge.denied`, or `*` for all) are sent (`crate::event_streams::service_webhook`). Create,
//! list, fetch, update, delete.

use std::collections::BTreeMap;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{BaseUrl, Path, printable, service_node};
use crate::state::AppState;
use crate::store::records::Webhook;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, Params, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub const WEBHOOK: &str = "YW";

/// The event types a webhook may subscribe to (the spec's `EventTypes`).
pub const EVENT_TYPES: &[&str] = &[
    "*",
    "factor.deleted",
    "factor.created",
    "factor.verified",
    "challenge.approved",
    "challenge.denied",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service}/Webhooks", get(list).post(create))
        .route(
            "/v2/Services/{service}/Webhooks/{sid}",
            get(fetch).post(update).delete(remove),
        )
}

fn render(base: &str, w: &Webhook) -> Value {
    json!({
        "sid": w.sid,
        "service_sid": w.service_sid,
        "account_sid": w.account_sid,
        "friendly_name": w.friendly_name,
        "event_types": w.event_types,
        "status": w.status,
        "version": w.version,
        "webhook_url": w.webhook_url,
        "webhook_method": w.webhook_method,
        "date_created": date::format(w.date_created),
        "date_updated": date::format(w.date_updated),
        "url": format!("{base}/v2/Services/{}/Webhooks/{}", w.service_sid, w.sid),
    })
}

/// `EventTypes` (a repeated parameter), if given: known types only, each once.
fn event_types(p: &Params) -> Result<Option<Vec<String>>, ApiError> {
    let given: Vec<&str> = p.all("EventTypes").collect();
    if given.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<String> = Vec::new();
    for t in given {
        if !EVENT_TYPES.contains(&t) {
            return Err(ApiError::invalid_because(
                "EventTypes",
                format!("must be among {}", EVENT_TYPES.join(", ")),
            ));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(Some(out))
}

/// `WebhookUrl`: an absolute http(s) URL.
fn webhook_url(v: &str) -> Result<String, ApiError> {
    let ok = (v.starts_with("http://") || v.starts_with("https://"))
        && v.len() <= 2048
        && v.parse::<axum::http::Uri>()
            .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid_because(
            "WebhookUrl",
            "must be an absolute http or https URL",
        ))
    }
}

fn one_of(p: &Params, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
        Some(_) => Err(ApiError::invalid_because(
            name,
            format!("must be one of {}", allowed.join(", ")),
        )),
    }
}

const STATUSES: &[&str] = &["enabled", "disabled"];
const VERSIONS: &[&str] = &["v1", "v2"];

async fn find(
    state: &AppState,
    account: &str,
    service: &str,
    sid: &str,
) -> Result<Webhook, ApiError> {
    let node = service_node(state, account, service)?;
    let not_found =
        || ApiError::not_found(format!("/Services/{service}/Webhooks/{}", printable(sid)));
    if !sid::is_valid(sid, WEBHOOK) {
        return Err(not_found());
    }
    state
        .webhook(&node.record.sid, sid)
        .await?
        .ok_or_else(not_found)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    p.required("FriendlyName")?;
    let friendly_name = p.text("FriendlyName", 64)?.unwrap_or_default();
    let event_types = event_types(&p)?.ok_or_else(|| ApiError::missing("EventTypes"))?;
    let url = webhook_url(p.required("WebhookUrl")?)?;
    let now = state.now(&caller.account);
    let saved = state
        .create_webhook(Webhook {
            sid: sid::generate(WEBHOOK),
            service_sid: node.record.sid.clone(),
            account_sid: caller.account.clone(),
            friendly_name,
            event_types,
            status: one_of(&p, "Status", STATUSES)?.unwrap_or_else(|| "enabled".into()),
            version: one_of(&p, "Version", VERSIONS)?.unwrap_or_else(|| "v2".into()),
            webhook_url: url,
            webhook_method: "POST".into(),
            date_created: now,
            date_updated: now,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(render(&base, &saved))).into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let req = PageRequest::from_query(&query(&uri), WEBHOOK)?;
    let all: BTreeMap<String, Webhook> = state
        .webhooks(&node.record.sid)
        .await?
        .into_iter()
        .map(|w| (w.sid.clone(), w))
        .collect();
    let page = paging::from_btree(&all, &req, |_| true, |w| render(&base, w));
    Ok(Json(paging::envelope(
        "webhooks",
        &format!("{base}/v2/Services/{service}/Webhooks"),
        &[],
        &req,
        page,
    )))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, sid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let w = find(&state, &caller.account, &service, &sid).await?;
    Ok(Json(render(&base, &w)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, sid)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let mut w = find(&state, &caller.account, &service, &sid).await?;
    if let Some(name) = p.text("FriendlyName", 64)? {
        w.friendly_name = name;
    }
    if let Some(types) = event_types(&p)? {
        w.event_types = types;
    }
    if let Some(url) = p.get("WebhookUrl") {
        w.webhook_url = webhook_url(url)?;
    }
    if let Some(status) = one_of(&p, "Status", STATUSES)? {
        w.status = status;
    }
    if let Some(version) = one_of(&p, "Version", VERSIONS)? {
        w.version = version;
    }
    w.date_updated = state.now(&caller.account).max(w.date_created);
    let saved = state.update_webhook(w).await?;
    Ok(Json(render(&base, &saved)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, sid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let w = find(&state, &caller.account, &service, &sid).await?;
    state.delete_webhook(&w.service_sid, &w.sid).await?;
    // Events already queued for it on this instance are not sent either.
    state.event_streams.forget(&w.sid);
    Ok(StatusCode::NO_CONTENT)
}
