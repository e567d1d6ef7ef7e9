//! `/v2/Services/{ServiceSid}/RateLimits/{RateLimitSid}/Buckets`: create, list, fetch, update,
//! delete. A change is in force from the very next request.

use super::Path;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::rate_limits::rate_limit_node;
use super::{BaseUrl, param, printable};
use crate::catalog::BucketRecord;
use crate::catalog::values::{Interval, Max, Parameter};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/Services/{service}/RateLimits/{rate_limit}/Buckets",
            get(list).post(create),
        )
        .route(
            "/v2/Services/{service}/RateLimits/{rate_limit}/Buckets/{sid}",
            get(fetch).post(update).delete(remove),
        )
}

/// A bucket as Twilio renders it (`verify.v2.service.rate_limit.bucket`); the fields in the
/// order the JSON has always had (alphabetical).
#[derive(Serialize)]
pub struct Rendered<'a> {
    account_sid: &'a str,
    date_created: String,
    date_updated: String,
    interval: u32,
    max: u32,
    rate_limit_sid: &'a str,
    service_sid: &'a str,
    sid: &'a str,
    url: String,
}

pub fn render<'a>(base: &str, b: &'a BucketRecord) -> Rendered<'a> {
    Rendered {
        account_sid: &b.account_sid,
        date_created: date::format(b.date_created),
        date_updated: date::format(b.date_updated),
        interval: b.interval,
        max: b.max,
        rate_limit_sid: &b.rate_limit_sid,
        service_sid: &b.service_sid,
        sid: &b.sid,
        url: format!(
            "{base}/v2/Services/{}/RateLimits/{}/Buckets/{}",
            b.service_sid, b.rate_limit_sid, b.sid
        ),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, rate_limit)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let rl = rate_limit_node(&state, &caller.account, &service, &rate_limit)?;
    // Both must be present before either is judged.
    let (max, interval) = (p.required(Max::NAME)?, p.required(Interval::NAME)?);
    let (max, interval) = (Max::try_from(max)?, Interval::try_from(interval)?);
    let now = state.now(&caller.account);
    let record = BucketRecord {
        sid: sid::generate(sid::BUCKET),
        rate_limit_sid: rl.record.sid.clone(),
        service_sid: rl.record.service_sid.clone(),
        account_sid: caller.account.clone(),
        max: max.get(),
        interval: interval.get(),
        live_since_ms: now,
        date_created: now,
        date_updated: now,
    };
    let saved = state.create_bucket(record, rl.record.id).await?;
    Ok((StatusCode::CREATED, Json(render(&base, &saved))).into_response())
}

fn bucket(
    state: &AppState,
    account: &str,
    service: &str,
    rate_limit: &str,
    sid: &str,
) -> Result<BucketRecord, ApiError> {
    let rl = rate_limit_node(state, account, service, rate_limit)?;
    rl.buckets.get(sid).cloned().ok_or_else(|| {
        ApiError::not_found(format!(
            "/Services/{service}/RateLimits/{rate_limit}/Buckets/{}",
            printable(sid)
        ))
    })
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, rate_limit)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let rl = rate_limit_node(&state, &caller.account, &service, &rate_limit)?;
    let req = PageRequest::from_query(&query(&uri), sid::BUCKET)?;
    let page = paging::from_btree(
        &rl.buckets,
        &req,
        |_| true,
        |b| serde_json::to_value(render(&base, b)).unwrap_or(Value::Null),
    );
    Ok(Json(paging::envelope(
        "buckets",
        &format!("{base}/v2/Services/{service}/RateLimits/{rate_limit}/Buckets"),
        &[],
        &req,
        page,
    )))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, rate_limit, sid)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let b = bucket(&state, &caller.account, &service, &rate_limit, &sid)?;
    Ok(Json(render(&base, &b)).into_response())
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, rate_limit, sid)): Path<(String, String, String)>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let mut b = bucket(&state, &caller.account, &service, &rate_limit, &sid)?;
    let now = state.now(&caller.account);
    if let Some(max) = param::<Max>(&p)? {
        b.max = max.get();
    }
    if let Some(interval) = param::<Interval>(&p)?.map(Interval::get) {
        if interval != b.interval {
            // Admissions that already left the old window stay out of the new one.
            b.live_since_ms = b.rule().live_since_after_interval_change(now);
            b.interval = interval;
        }
    }
    b.date_updated = now.max(b.date_created);
    let saved = state.update_bucket(b).await?;
    Ok(Json(render(&base, &saved)).into_response())
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, rate_limit, sid)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let b = bucket(&state, &caller.account, &service, &rate_limit, &sid)?;
    state.delete_bucket(&b).await?;
    Ok(StatusCode::NO_CONTENT)
}
