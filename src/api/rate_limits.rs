//! `/v2/Services/{ServiceSid}/RateLimits`: create, list, fetch, update (Description only), delete.

use std::sync::Arc;

use super::Path;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{BaseUrl, param, printable, required, service_node};
use crate::catalog::values::{Description, UniqueName};
use crate::catalog::{RateLimitNode, RateLimitRecord};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service}/RateLimits", get(list).post(create))
        .route(
            "/v2/Services/{service}/RateLimits/{sid}",
            get(fetch).post(update).delete(remove),
        )
}

pub fn render(base: &str, r: &RateLimitRecord) -> Value {
    let url = format!("{base}/v2/Services/{}/RateLimits/{}", r.service_sid, r.sid);
    json!({
        "sid": r.sid,
        "service_sid": r.service_sid,
        "account_sid": r.account_sid,
        "unique_name": r.unique_name,
        "description": r.description,
        "date_created": date::format(r.date_created),
        "date_updated": date::format(r.date_updated),
        "url": url,
        "links": { "buckets": format!("{url}/Buckets") },
    })
}

/// The caller's rate limit, or 404.
pub fn rate_limit_node(
    state: &AppState,
    account: &str,
    service: &str,
    sid: &str,
) -> Result<Arc<RateLimitNode>, ApiError> {
    let node = service_node(state, account, service)?;
    let not_found =
        || ApiError::not_found(format!("/Services/{service}/RateLimits/{}", printable(sid)));
    if !sid::is_valid(sid, sid::RATE_LIMIT) {
        return Err(not_found());
    }
    node.rate_limits.get(sid).cloned().ok_or_else(not_found)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let name = required::<UniqueName>(&p)?;
    let description = param::<Description>(&p)?;
    let now = state.now(&caller.account);
    let record = RateLimitRecord {
        id: 0,
        sid: sid::generate(sid::RATE_LIMIT),
        service_sid: node.record.sid.clone(),
        account_sid: caller.account.clone(),
        unique_name: name.into(),
        description: description.map(String::from),
        date_created: now,
        date_updated: now,
    };
    let saved = state.create_rate_limit(record).await?;
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
    let req = PageRequest::from_query(&query(&uri), sid::RATE_LIMIT)?;
    let page = paging::from_btree(
        &node.rate_limits,
        &req,
        |_| true,
        |r| render(&base, &r.record),
    );
    Ok(Json(paging::envelope(
        "rate_limits",
        &format!("{base}/v2/Services/{service}/RateLimits"),
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
    let rl = rate_limit_node(&state, &caller.account, &service, &sid)?;
    Ok(Json(render(&base, &rl.record)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, sid)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let rl = rate_limit_node(&state, &caller.account, &service, &sid)?;
    let mut record = rl.record.clone();
    if let Some(d) = param::<Description>(&p)? {
        record.description = Some(d.into());
    }
    record.date_updated = state.now(&caller.account).max(record.date_created);
    let saved = state.update_rate_limit(record).await?;
    Ok(Json(render(&base, &saved)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, sid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let rl = rate_limit_node(&state, &caller.account, &service, &sid)?;
    state.delete_rate_limit(&rl.record).await?;
    Ok(StatusCode::NO_CONTENT)
}
