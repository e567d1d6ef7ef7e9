//! Twilio Event Streams v1 (`events.twilio.com/v1`) on the same listener as Verify: event types
//! and schemas (`types`), sinks (`sinks`), subscriptions and their subscribed events
//! (`subscriptions`). Same auth, error body, paging envelope and dates as Verify; another
//! account's resource is 404 / 20404.

pub mod sinks;
pub mod subscriptions;
pub mod types;

use axum::Router;
use serde_json::{Value, json};

use crate::state::AppState;
use crate::twilio::ApiError;
use crate::twilio::form::Params;
use crate::twilio::paging::PageRequest;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(types::routes())
        .merge(sinks::routes())
        .merge(subscriptions::routes())
}

/// A list envelope for lists keyed by something other than a SID (event types, schema
/// versions, a subscription's types): pages by `Page` and `PageSize` only (a `PageToken` is
/// refused, 21481; the URLs given never carry one). `items` is the whole list, in order.
pub fn offset_envelope(
    key: &str,
    list_url: &str,
    filters: &[(&str, &str)],
    q: &Params,
    items: Vec<Value>,
) -> Result<Value, ApiError> {
    // Any prefix: tokens of this list are never valid SIDs of it.
    let req = PageRequest::from_query(q, "--")?;
    let offset = (req.page as usize).saturating_mul(req.size);
    let has_next = items.len() > offset.saturating_add(req.size);
    let page: Vec<Value> = items.into_iter().skip(offset).take(req.size).collect();
    let url = |page_no: u64| {
        let mut pairs: Vec<(String, String)> = filters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.push(("PageSize".into(), req.size.to_string()));
        pairs.push(("Page".into(), page_no.to_string()));
        let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{list_url}?{qs}")
    };
    Ok(json!({
        key: page,
        "meta": {
            "page": req.page,
            "page_size": req.size,
            "first_page_url": url(0),
            "previous_page_url": (req.page > 0).then(|| url(req.page - 1)),
            "next_page_url": has_next.then(|| url(req.page + 1)),
            "key": key,
            "url": url(req.page),
        }
    }))
}
