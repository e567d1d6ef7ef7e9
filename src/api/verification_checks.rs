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
use super::verifications::{recipient, with_pending};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::FormBody;
use crate::twilio::{ApiError, date, sid};
use crate::verification::{Status, Verification};

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
    let path = format!("/Services/{service}/VerificationCheck");
    let not_found = move || ApiError::not_found(&path);
    let limit = state.settings.check_attempts_limit;
    let (v, ()) = with_pending(
        &state,
        &caller.account,
        &service,
        &key,
        not_found,
        |v, now| {
            if let Some(to) = to.filter(|_| verification_sid.is_some()) {
                if to != v.to {
                    return Err(ApiError::invalid_because(
                        "To",
                        "does not match the verification",
                    ));
                }
            }
            if limit > 0 && v.checks_failed >= limit {
                v.finish(Status::MaxAttemptsReached, now);
                return Err(ApiError::too_many(60202, "Max check attempts reached"));
            }
            if code == v.code {
                v.finish(Status::Approved, now);
            } else {
                v.checks_failed += 1;
                v.date_updated = now.max(v.date_updated);
                v.version += 1;
            }
            Ok(())
        },
    )
    .await?;
    Ok(Json(render(&v)))
}
