//! `/v2/Services/{ServiceSid}/Entities`: create (`Identity`), list, fetch and delete (deleting
//! an entity deletes its factors and their challenges). An entity is also created by the first
//! factor created under its identity.

use std::collections::BTreeMap;

use super::Path;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{BaseUrl, printable, service_node};
use crate::core::mfa::Entity;
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service}/Entities", get(list).post(create))
        .route(
            "/v2/Services/{service}/Entities/{identity}",
            get(fetch).delete(remove),
        )
}

/// The URL of an entity (an identity needs no escaping: it is letters, digits and dashes).
pub fn url(base: &str, service: &str, identity: &str) -> String {
    format!("{base}/v2/Services/{service}/Entities/{identity}")
}

pub fn render(base: &str, e: &Entity) -> Value {
    let url = url(base, &e.service_sid, &e.identity);
    json!({
        "sid": e.sid,
        "identity": e.identity,
        "account_sid": e.account_sid,
        "service_sid": e.service_sid,
        "date_created": date::format(e.date_created),
        "date_updated": date::format(e.date_updated),
        "url": url,
        "links": {
            "factors": format!("{url}/Factors"),
            "new_factors": format!("{url}/Factors"),
            "challenges": format!("{url}/Challenges"),
        },
    })
}

/// Whether `s` is an identity as Twilio documents it: 8 to 64 characters, dash-separated
/// letters and digits.
pub fn is_identity(s: &str) -> bool {
    (8..=64).contains(&s.len())
        && s.split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// An identity sent as a parameter or path segment of a create: 60200 unless valid.
pub fn identity(value: &str) -> Result<String, ApiError> {
    if is_identity(value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid_because(
            "Identity",
            "use 8 to 64 letters and digits, optionally separated by single dashes",
        ))
    }
}

/// The caller's service, and the identity a path names (404 for one that cannot exist).
pub fn path_identity(
    state: &AppState,
    account: &str,
    service: &str,
    identity: &str,
) -> Result<String, ApiError> {
    let node = service_node(state, account, service)?;
    if !is_identity(identity) {
        return Err(ApiError::not_found(format!(
            "/Services/{}/Entities/{}",
            node.record.sid,
            printable(identity)
        )));
    }
    Ok(identity.to_owned())
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let identity = identity(p.required("Identity")?)?;
    let now = state.now(&caller.account);
    let entity = Entity {
        sid: sid::generate(sid::ENTITY),
        service_sid: node.record.sid.clone(),
        account_sid: caller.account.clone(),
        identity,
        date_created: now,
        date_updated: now,
    };
    let saved = state.create_entity(entity).await?;
    Ok((StatusCode::CREATED, Json(render(&base, &saved))).into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    service_node(&state, &caller.account, &service)?;
    let req = PageRequest::from_query(&query(&uri), sid::ENTITY)?;
    let entities = state.entities(&service).await?;
    let by_sid: BTreeMap<String, Entity> =
        entities.into_iter().map(|e| (e.sid.clone(), e)).collect();
    let page = paging::from_btree(&by_sid, &req, |_| true, |e| render(&base, e));
    Ok(Json(paging::envelope(
        "entities",
        &format!("{base}/v2/Services/{service}/Entities"),
        &[],
        &req,
        page,
    )))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, identity)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    let entity = state.entity(&service, &identity).await?;
    Ok(Json(render(&base, &entity)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((service, identity)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let identity = path_identity(&state, &caller.account, &service, &identity)?;
    state.delete_entity(&service, &identity).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::is_identity;

    #[test]
    fn identities_are_dash_separated_alphanumerics_of_8_to_64() {
        for ok in ["ff483d1ff591898a9942916050d2ca3f", "user-0001", "a1b2c3d4"] {
            assert!(is_identity(ok), "{ok}");
        }
        for bad in [
            "short",
            "user--0001",
            "-user0001",
            "user0001-",
            "user 0001",
            "üser0001x",
        ] {
            assert!(!is_identity(bad), "{bad}");
        }
        assert!(!is_identity(&"a".repeat(65)));
    }
}
