//! `/v2/SafeList/Numbers`: add a number to the account's Safe List, fetch it, remove it.
//!
//! Twilio documents that a safe-listed number is exempt from Fraud Guard and Geo Permissions only
//! (<https://www.twilio.com/docs/verify/api/safelist>). verilimit emulates neither, so the Safe
//! List changes no decision here: Service Rate Limits and the send-attempts rule still apply.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{BaseUrl, Path, printable};
use crate::state::AppState;
use crate::store::records::SafeListEntry;
use crate::twilio::auth::Caller;
use crate::twilio::form::FormBody;
use crate::twilio::{ApiError, sid};

/// The SID prefix of Safe List entries (the spec's `verify.v2.safelist` examples).
pub const SAFE_LIST: &str = "GN";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/SafeList/Numbers", post(create))
        .route("/v2/SafeList/Numbers/{number}", get(fetch).delete(remove))
}

fn render(base: &str, e: &SafeListEntry) -> Value {
    json!({
        "sid": e.sid,
        "phone_number": e.phone_number,
        "url": format!("{base}/v2/SafeList/Numbers/{}", e.phone_number),
    })
}

/// An E.164 number: `+`, then 7 to 15 digits not starting with 0.
fn phone_number(s: &str) -> Option<&str> {
    let digits = s.strip_prefix('+')?;
    ((7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0'))
    .then_some(s)
}

fn not_found(number: &str) -> ApiError {
    ApiError::not_found(format!("/SafeList/Numbers/{}", printable(number)))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let number = phone_number(p.required("PhoneNumber")?).ok_or_else(|| {
        ApiError::invalid_because("PhoneNumber", "must be a phone number in E.164 format")
    })?;
    let entry = SafeListEntry {
        sid: sid::generate(SAFE_LIST),
        account_sid: caller.account.clone(),
        phone_number: number.to_owned(),
        date_created: state.now(&caller.account),
    };
    let kept = state.add_safe_number(entry).await?;
    Ok((StatusCode::CREATED, Json(render(&base, &kept))).into_response())
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(number): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let entry = match phone_number(&number) {
        Some(n) => state.safe_number(&caller.account, n).await?,
        None => None,
    };
    entry
        .map(|e| Json(render(&base, &e)))
        .ok_or_else(|| not_found(&number))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    if phone_number(&number).is_none() {
        return Err(not_found(&number));
    }
    state.remove_safe_number(&caller.account, &number).await?;
    Ok(StatusCode::NO_CONTENT)
}
