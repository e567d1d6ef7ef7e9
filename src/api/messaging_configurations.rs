//! `/v2/Services/{ServiceSid}/MessagingConfigurations`: which Messaging Service a service sends
//! through per country (`all` for every country without one of its own). Create, list, fetch,
//! update (`MessagingServiceSid`), delete. Stored and echoed; verilimit sends nothing, so they
//! change no decision.

use std::collections::BTreeMap;

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{BaseUrl, Path, printable, service_node};
use crate::state::AppState;
use crate::store::records::MessagingConfiguration;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, Params, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, country, date, sid};

/// The prefix of the opaque keys this list is paged by (configurations have no SID).
const KEY: &str = "MC";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/Services/{service}/MessagingConfigurations",
            get(list).post(create),
        )
        .route(
            "/v2/Services/{service}/MessagingConfigurations/{country}",
            get(fetch).post(update).delete(remove),
        )
}

fn render(base: &str, m: &MessagingConfiguration) -> Value {
    json!({
        "account_sid": m.account_sid,
        "service_sid": m.service_sid,
        "country": m.country,
        "messaging_service_sid": m.messaging_service_sid,
        "date_created": date::format(m.date_created),
        "date_updated": date::format(m.date_updated),
        "url": format!(
            "{base}/v2/Services/{}/MessagingConfigurations/{}",
            m.service_sid, m.country
        ),
    })
}

/// `Country`: an ISO 3166-1 alpha-2 code (stored upper-case) or `all`.
fn country_param(v: &str) -> Option<String> {
    if v.eq_ignore_ascii_case("all") {
        Some("all".to_owned())
    } else if country::is_code(v) {
        Some(v.to_ascii_uppercase())
    } else {
        None
    }
}

/// `MessagingServiceSid`, required: an `MG` SID.
fn messaging_service(p: &Params) -> Result<String, ApiError> {
    let v = p.required("MessagingServiceSid")?;
    if sid::is_valid(v, "MG") {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid("MessagingServiceSid"))
    }
}

/// A key ordered as the country is, shaped like a SID so that `PageToken`s work as elsewhere.
fn key(country: &str) -> String {
    let mut bytes = [0u8; 16];
    for (b, c) in bytes.iter_mut().zip(country.bytes()) {
        *b = c;
    }
    format!("{KEY}{:032x}", u128::from_be_bytes(bytes))
}

fn not_found(service: &str, country: &str) -> ApiError {
    ApiError::not_found(format!(
        "/Services/{service}/MessagingConfigurations/{}",
        printable(country)
    ))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let country = country_param(p.required("Country")?).ok_or_else(|| {
        ApiError::invalid_because("Country", "must be an ISO 3166-1 alpha-2 code or all")
    })?;
    let messaging_service_sid = messaging_service(&p)?;
    let now = state.now(&caller.account);
    let saved = state
        .create_configuration(MessagingConfiguration {
            account_sid: caller.account.clone(),
            service_sid: node.record.sid.clone(),
            country,
            messaging_service_sid,
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
    let req = PageRequest::from_query(&query(&uri), KEY)?;
    let all: BTreeMap<String, MessagingConfiguration> = state
        .configurations(&node.record.sid)
        .await?
        .into_iter()
        .map(|m| (key(&m.country), m))
        .collect();
    let page = paging::from_btree(&all, &req, |_| true, |m| render(&base, m));
    Ok(Json(paging::envelope(
        "messaging_configurations",
        &format!("{base}/v2/Services/{service}/MessagingConfigurations"),
        &[],
        &req,
        page,
    )))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, country)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let found = match country_param(&country) {
        Some(c) => state.configuration(&node.record.sid, &c).await?,
        None => None,
    };
    found
        .map(|m| Json(render(&base, &m)))
        .ok_or_else(|| not_found(&service, &country))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, country)): Path<(String, String)>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let c = country_param(&country).ok_or_else(|| not_found(&service, &country))?;
    let messaging_service_sid = messaging_service(&p)?;
    let now = state.now(&caller.account);
    let saved = state
        .update_configuration(&node.record.sid, &c, &messaging_service_sid, now)
        .await?;
    Ok(Json(render(&base, &saved)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, country)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let c = country_param(&country).ok_or_else(|| not_found(&service, &country))?;
    state.delete_configuration(&node.record.sid, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_ordered_as_countries_are() {
        let mut countries = ["US", "all", "AE", "GB", "CA", "ZW"];
        let mut keys: Vec<String> = countries.iter().map(|c| key(c)).collect();
        countries.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, countries.iter().map(|c| key(c)).collect::<Vec<_>>());
        assert!(keys.iter().all(|k| sid::is_valid(k, KEY)));
    }
}
