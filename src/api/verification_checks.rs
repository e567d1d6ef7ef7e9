//! `/v2/Services/{ServiceSid}/VerificationCheck`: check a code against the pending verification
//! of a `To` or a `VerificationSid`.
//!
//! Right code: `approved`, `valid: true`, and the verification ends. Wrong code: 200 with
//! `pending`, `valid: false`. Once the allowed wrong checks are used, the next check answers
//! 429 / 60202 and ends the verification (`max_attempts_reached`); after that, 404.

use super::Path;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::service_node;
use super::verifications::recipient;
use crate::core::{Status, Verification};
use crate::engine::Change;
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::FormBody;
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v2/Services/{service}/VerificationCheck", post(create))
}

pub fn render(v: &Verification) -> Value {
    json!({
        "sid": v.sid,
        "service_sid": v.service_sid,
        "account_sid": v.account_sid,
        "to": v.to,
        "channel": v.channel,
        "status": v.status.as_str(),
        "valid": v.status == Status::Approved,
        "amount": v.amount,
        "payee": v.payee,
        "date_created": date::format(v.date_created),
        "date_updated": date::format(v.date_updated),
        "sna_attempts_error_codes": [],
    })
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(service): Path<String>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    service_node(&state, &caller.account, &service)?;
    let to = p.get("To").filter(|s| !s.is_empty());
    let verification_sid = p.get("VerificationSid").filter(|s| !s.is_empty());
    let key = match (to, verification_sid) {
        (_, Some(v)) => {
            if !sid::is_valid(v, sid::VERIFICATION) {
                return Err(ApiError::invalid("VerificationSid"));
            }
            v.to_owned()
        }
        (Some(to), None) => {
            let channel = if to.contains('@') { "email" } else { "sms" };
            recipient(to, channel)?;
            to.to_owned()
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                60221,
                "No target verification specified: provide To or VerificationSid",
            ));
        }
    };
    let code = p.required("Code")?.to_owned();
    p.text("Amount", 255)?;
    p.text("Payee", 255)?;
    let to = to.filter(|_| verification_sid.is_some()).map(str::to_owned);
    let v = state
        .change(&caller.account, &service, &key, Change::Check { code, to })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("/Services/{service}/VerificationCheck")))?;
    Ok(Json(render(&v)))
}
