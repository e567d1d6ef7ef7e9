//! `/v1/Subscriptions`: create (`Description`, `SinkSid`, `Types`), list (filter `SinkSid`),
//! fetch, update (`Description`), delete; and `/v1/Subscriptions/{Sid}/SubscribedEvents[/{Type}]`:
//! the types a subscription delivers, each at one schema version.
//!
//! `Types` is a list parameter: the SDKs send one `Types` field per element, each a JSON object
//! (twilio-python `serialize.map(types, lambda e: serialize.object(e))`, twilio-node
//! `serialize.map(params["types"], (e) => serialize.object(e))`), e.g.
//! `Types={"type": "com.twilio.accountsecurity.verify.verification.approved", "schema_version": 3}`.
//! A bare type name is accepted too; a missing `schema_version` means the latest.

use std::collections::BTreeMap;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::offset_envelope;
use super::sinks::{DESCRIPTION_MAX, description, sink_or_404};
use crate::api::{BaseUrl, Path, printable};
use crate::event_streams::types::{event_type, schema_of};
use crate::event_streams::{SINK_PREFIX, SUBSCRIPTION_PREFIX, SubscribedType, SubscriptionRecord};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/Subscriptions", get(list).post(create))
        .route(
            "/v1/Subscriptions/{sid}",
            get(fetch).post(update).delete(remove),
        )
        .route(
            "/v1/Subscriptions/{sid}/SubscribedEvents",
            get(list_types).post(create_type),
        )
        .route(
            "/v1/Subscriptions/{sid}/SubscribedEvents/{type}",
            get(fetch_type).post(update_type).delete(remove_type),
        )
}

pub fn render(base: &str, s: &SubscriptionRecord) -> Value {
    let url = format!("{base}/v1/Subscriptions/{}", s.sid);
    json!({
        "account_sid": s.account_sid,
        "sid": s.sid,
        "date_created": date::format(s.date_created),
        "date_updated": date::format(s.date_updated),
        "description": s.description,
        "sink_sid": s.sink_sid,
        "url": url,
        "links": { "subscribed_events": format!("{url}/SubscribedEvents") },
    })
}

fn render_type(base: &str, t: &SubscribedType) -> Value {
    json!({
        "account_sid": t.account_sid,
        "type": t.event_type,
        "schema_version": t.schema_version,
        "subscription_sid": t.subscription_sid,
        "url": format!(
            "{base}/v1/Subscriptions/{}/SubscribedEvents/{}",
            t.subscription_sid, t.event_type
        ),
    })
}

async fn subscription_or_404(
    state: &AppState,
    account: &str,
    sid: &str,
) -> Result<SubscriptionRecord, ApiError> {
    let not_found = || ApiError::not_found(format!("/Subscriptions/{}", printable(sid)));
    if !sid::is_valid(sid, SUBSCRIPTION_PREFIX) {
        return Err(not_found());
    }
    state
        .subscription(account, sid)
        .await?
        .ok_or_else(not_found)
}

/// A known event type and a schema version of its schema (the latest when not given).
fn subscribed(
    param: &str,
    name: &str,
    version: Option<i64>,
    subscription: &str,
    account: &str,
) -> Result<SubscribedType, ApiError> {
    let t = event_type(name).ok_or_else(|| {
        ApiError::invalid_because(param, format!("unknown event type {}", printable(name)))
    })?;
    let schema = schema_of(t);
    let schema_version = match version {
        None => schema.latest().0,
        Some(v) if schema.has_version(v) => v,
        Some(_) => {
            return Err(ApiError::invalid_because(
                param,
                format!("no such schema version of {}", t.name),
            ));
        }
    };
    Ok(SubscribedType {
        subscription_sid: subscription.to_owned(),
        account_sid: account.to_owned(),
        event_type: t.name.to_owned(),
        schema_version,
    })
}

/// One element of `Types`: `{"type": …, "schema_version": …}`, or a bare type name.
fn parse_type(raw: &str, subscription: &str, account: &str) -> Result<SubscribedType, ApiError> {
    let bad =
        || ApiError::invalid_because("Types", "each must be {\"type\": …, \"schema_version\": …}");
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(o)) => {
            let name = o.get("type").and_then(Value::as_str).ok_or_else(bad)?;
            let version = match o.get("schema_version") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or_else(bad)?),
            };
            subscribed("Types", name, version, subscription, account)
        }
        Ok(Value::String(name)) => subscribed("Types", &name, None, subscription, account),
        Ok(_) => Err(bad()),
        Err(_) => subscribed("Types", raw.trim(), None, subscription, account),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let description = description(&p)?;
    let sink_sid = p.required("SinkSid")?;
    if !sid::is_valid(sink_sid, SINK_PREFIX) {
        return Err(ApiError::invalid("SinkSid"));
    }
    let sink = sink_or_404(&state, &caller.account, sink_sid).await?;
    let sid = sid::generate(SUBSCRIPTION_PREFIX);
    let mut types: BTreeMap<String, SubscribedType> = BTreeMap::new();
    for raw in p.all("Types") {
        let t = parse_type(raw, &sid, &caller.account)?;
        types.insert(t.event_type.clone(), t);
    }
    if types.is_empty() {
        return Err(ApiError::missing("Types"));
    }
    let now = state.now(&caller.account);
    let record = SubscriptionRecord {
        sid,
        account_sid: caller.account.clone(),
        sink_sid: sink.sid,
        description,
        date_created: now,
        date_updated: now,
    };
    let saved = state
        .create_subscription(record, types.into_values().collect())
        .await?;
    Ok((StatusCode::CREATED, Json(render(&base, &saved))).into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    let req = PageRequest::from_query(&q, SUBSCRIPTION_PREFIX)?;
    let sink = q.get("SinkSid");
    if sink.is_some_and(|s| !sid::is_valid(s, SINK_PREFIX)) {
        return Err(ApiError::invalid("SinkSid"));
    }
    let filters: Vec<(&str, &str)> = sink.map(|s| ("SinkSid", s)).into_iter().collect();
    let subscriptions: BTreeMap<String, SubscriptionRecord> = state
        .subscriptions(&caller.account, sink)
        .await?
        .into_iter()
        .map(|s| (s.sid.clone(), s))
        .collect();
    let page = paging::from_btree(&subscriptions, &req, |_| true, |s| render(&base, s));
    Ok(Json(paging::envelope(
        "subscriptions",
        &format!("{base}/v1/Subscriptions"),
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
    let s = subscription_or_404(&state, &caller.account, &sid).await?;
    Ok(Json(render(&base, &s)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(sid): Path<String>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let mut s = subscription_or_404(&state, &caller.account, &sid).await?;
    if let Some(d) = p.text("Description", DESCRIPTION_MAX)? {
        s.description = d;
    }
    s.date_updated = state.now(&caller.account).max(s.date_created);
    let saved = state.update_subscription(s).await?;
    Ok(Json(render(&base, &saved)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let s = subscription_or_404(&state, &caller.account, &sid).await?;
    state.delete_subscription(&caller.account, &s.sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_types(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(sid): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let s = subscription_or_404(&state, &caller.account, &sid).await?;
    let items = state
        .subscribed_types(&s.sid)
        .await?
        .iter()
        .map(|t| render_type(&base, t))
        .collect();
    Ok(Json(offset_envelope(
        "types",
        &format!("{base}/v1/Subscriptions/{}/SubscribedEvents", s.sid),
        &[],
        &query(&uri),
        items,
    )?))
}

/// Subscribes to one more type: 201; if it was subscribed already, its schema version is
/// replaced: 200 (the spec lists both answers).
async fn create_type(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(sid): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let s = subscription_or_404(&state, &caller.account, &sid).await?;
    let name = p.required("Type")?;
    let version = p.int("SchemaVersion", 1, i64::from(i32::MAX))?;
    let t = subscribed("Type", name, version, &s.sid, &caller.account)?;
    let existed = state.put_subscribed_type(t.clone()).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(render_type(&base, &t))).into_response())
}

async fn type_or_404(
    state: &AppState,
    account: &str,
    sid: &str,
    name: &str,
) -> Result<SubscribedType, ApiError> {
    let s = subscription_or_404(state, account, sid).await?;
    state
        .subscribed_types(&s.sid)
        .await?
        .into_iter()
        .find(|t| t.event_type == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "/Subscriptions/{}/SubscribedEvents/{}",
                s.sid,
                printable(name)
            ))
        })
}

async fn fetch_type(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((sid, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let t = type_or_404(&state, &caller.account, &sid, &name).await?;
    Ok(Json(render_type(&base, &t)))
}

async fn update_type(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((sid, name)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let current = type_or_404(&state, &caller.account, &sid, &name).await?;
    let version = p.int("SchemaVersion", 1, i64::from(i32::MAX))?;
    let t = subscribed(
        "SchemaVersion",
        &current.event_type,
        Some(version.unwrap_or(current.schema_version)),
        &current.subscription_sid,
        &caller.account,
    )?;
    state.put_subscribed_type(t.clone()).await?;
    Ok(Json(render_type(&base, &t)))
}

async fn remove_type(
    State(state): State<AppState>,
    caller: Caller,
    Path((sid, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let t = type_or_404(&state, &caller.account, &sid, &name).await?;
    state
        .delete_subscribed_type(&t.subscription_sid, &t.event_type)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
