//! `/v2/Attempts`, `/v2/Attempts/{Sid}` and `/v2/Attempts/Summary`: every code "sent" (one
//! attempt per start or re-send; the `VL` SID of `send_code_attempts[].attempt_sid` and of the
//! outbox), with its conversion status. Attempts are kept as long as their verification
//! (`--retention-days`, as Twilio keeps attempts 30 days) and belong to the caller's account.
//!
//! Shape: Twilio's spec (`verify.v2.verification_attempt`,
//! `verify.v2.verification_attempts_summary`) and the examples of Twilio's generated clients
//! (`channel_data` with `verification_sid`, `to`, `status`, `message_status`, `country`,
//! `code_length`, …; `price` with `value` and `currency`).

use axum::extract::{OriginalUri, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{BaseUrl, Path, printable};
use crate::engine::records::AttemptStatus;
use crate::state::AppState;
use crate::store::records::{AttemptFilter, AttemptRow};
use crate::twilio::auth::Caller;
use crate::twilio::form::{Params, check_text, query};
use crate::twilio::paging::{self, Page, PageRequest};
use crate::twilio::{ApiError, country, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Attempts", get(list))
        .route("/v2/Attempts/Summary", get(summary))
        .route("/v2/Attempts/{sid}", get(fetch))
}

pub fn render(base: &str, a: &AttemptRow, now: i64) -> Value {
    let status = AttemptStatus::of(a, now);
    let converted = status == AttemptStatus::Confirmed;
    let mut channel_data = json!({
        "verification_sid": a.verification_sid,
        "to": a.to,
        "status": status.as_str(),
        "error_code": null,
        "country": country::of_number(&a.to),
        "code_length": a.code_length,
        "locale": null,
        "mcc": null,
        "mnc": null,
        "carrier": null,
    });
    // verilimit "delivers" every code at once.
    let delivery = if a.channel == "call" {
        ("call_status", "completed")
    } else {
        ("message_status", "delivered")
    };
    channel_data[delivery.0] = json!(delivery.1);
    json!({
        "sid": a.sid,
        "account_sid": a.account_sid,
        "service_sid": a.service_sid,
        "verification_sid": a.verification_sid,
        "date_created": date::format(a.at_ms),
        "date_updated": date::format(if converted {
            a.verification_updated.max(a.at_ms)
        } else {
            a.at_ms
        }),
        "conversion_status": if converted { "converted" } else { "unconverted" },
        "channel": a.channel,
        // Nothing is sent, so nothing is charged.
        "price": { "value": "0.0000", "currency": "usd" },
        "channel_data": channel_data,
        "url": format!("{base}/v2/Attempts/{}", a.sid),
    })
}

/// A SID-valued filter with the spec's pattern.
fn sid_filter(q: &Params, name: &str, prefix: &str) -> Result<Option<String>, ApiError> {
    match q.get(name) {
        None | Some("") => Ok(None),
        Some(v) if sid::is_valid(v, prefix) => Ok(Some(v.to_owned())),
        Some(_) => Err(ApiError::invalid(name)),
    }
}

/// A date filter (`YYYY-MM-DDTHH:MM:SSZ`), in ms.
fn date_filter(q: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match q.get(name) {
        None | Some("") => Ok(None),
        Some(v) => date::parse(v).map(Some).ok_or_else(|| {
            ApiError::invalid_because(name, "must be a date like 2026-12-01T00:00:00Z")
        }),
    }
}

/// The channels of `verification_attempt_enum_channels`.
fn channel_filter(q: &Params) -> Result<Option<String>, ApiError> {
    match q.get("Channel") {
        None | Some("") => Ok(None),
        Some(v) => {
            let v = v.to_ascii_lowercase();
            if ["sms", "call", "email", "whatsapp", "rbm"].contains(&v.as_str()) {
                Ok(Some(v))
            } else {
                Err(ApiError::invalid_because(
                    "Channel",
                    "must be one of sms, call, email, whatsapp, rbm",
                ))
            }
        }
    }
}

fn country_filter(q: &Params) -> Result<Option<String>, ApiError> {
    match q.get("Country") {
        None | Some("") => Ok(None),
        Some(v) if country::is_code(v) => Ok(Some(v.to_ascii_uppercase())),
        Some(_) => Err(ApiError::invalid_because(
            "Country",
            "must be an ISO 3166-1 alpha-2 code",
        )),
    }
}

/// The filters both endpoints share; `DateCreatedBefore` counts the whole second it names.
fn common_filter(q: &Params) -> Result<AttemptFilter, ApiError> {
    Ok(AttemptFilter {
        service_sid: sid_filter(q, "VerifyServiceSid", sid::SERVICE)?,
        channel: channel_filter(q)?,
        created_from: date_filter(q, "DateCreatedAfter")?,
        created_until: date_filter(q, "DateCreatedBefore")?.map(|t| t + 1000),
        ..AttemptFilter::default()
    })
}

/// A free-text filter: at most 320 characters, no control characters (60200 otherwise).
fn text_filter<'a>(q: &'a Params, name: &str) -> Result<Option<&'a str>, ApiError> {
    match q.get(name) {
        None | Some("") => Ok(None),
        Some(v) => {
            check_text(name, v, 320)?;
            Ok(Some(v))
        }
    }
}

/// A number as sent: a `+` left unencoded in a query string arrives as a space.
fn plus(v: &str) -> String {
    match v.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => v.to_owned(),
    }
}

/// The filters given, as they are kept in every page URL.
fn kept<'a>(q: &'a Params, names: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .filter_map(|n| q.get(n).filter(|v| !v.is_empty()).map(|v| (*n, v)))
        .collect()
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    let req = PageRequest::from_query(&q, sid::ATTEMPT)?;
    let mut filter = common_filter(&q)?;
    filter.verification_sid = sid_filter(&q, "VerificationSid", sid::VERIFICATION)?;
    filter.to = text_filter(&q, "ChannelData.To")?.map(plus);
    filter.converted = match q.get("Status") {
        None | Some("") => None,
        Some(v) if v.eq_ignore_ascii_case("converted") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("unconverted") => Some(false),
        Some(_) => {
            return Err(ApiError::invalid_because(
                "Status",
                "must be converted or unconverted",
            ));
        }
    };
    let country = country_filter(&q)?;
    let page = state
        .attempts(
            &caller.account,
            &filter,
            country.as_deref(),
            &req.cursor,
            req.size,
        )
        .await?;
    let now = state.now(&caller.account);
    let page = Page {
        first_sid: page.rows.first().map(|r| r.sid.clone()),
        last_sid: page.rows.last().map(|r| r.sid.clone()),
        items: page.rows.iter().map(|r| render(&base, r, now)).collect(),
        has_next: page.has_next,
        has_previous: page.has_previous,
    };
    let filters = kept(
        &q,
        &[
            "DateCreatedAfter",
            "DateCreatedBefore",
            "ChannelData.To",
            "Country",
            "Channel",
            "VerifyServiceSid",
            "VerificationSid",
            "Status",
        ],
    );
    Ok(Json(paging::envelope(
        "attempts",
        &format!("{base}/v2/Attempts"),
        &filters,
        &req,
        page,
    )))
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(attempt): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::not_found(format!("/Attempts/{}", printable(&attempt)));
    if !sid::is_valid(&attempt, sid::ATTEMPT) {
        return Err(not_found());
    }
    let row = state
        .attempt(&caller.account, &attempt)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(render(&base, &row, state.now(&caller.account))))
}

async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    let mut filter = common_filter(&q)?;
    filter.to_prefix = text_filter(&q, "DestinationPrefix")?
        .map(|v| format!("+{}", v.trim_start_matches(['+', ' '])))
        .filter(|v| v.len() > 1);
    let country = country_filter(&q)?;
    let s = state
        .attempts_summary(&caller.account, &filter, country.as_deref())
        .await?;
    Ok(Json(json!({
        "total_attempts": s.total,
        "total_converted": s.converted,
        "total_unconverted": s.total - s.converted,
        "conversion_rate_percentage": percentage(s.converted, s.total),
        "url": format!("{base}/v2/Attempts/Summary"),
    })))
}

/// `converted / total * 100` as Twilio writes it (`"81.818181818"`): at most 9 decimals, no
/// trailing zeros; `"0"` when there is nothing to count.
fn percentage(converted: u64, total: u64) -> String {
    if total == 0 {
        return "0".to_owned();
    }
    let p = format!("{:.9}", converted as f64 * 100.0 / total as f64);
    p.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::percentage;

    #[test]
    fn conversion_rates_are_written_as_twilio_writes_them() {
        assert_eq!(percentage(9, 11), "81.818181818");
        assert_eq!(percentage(1, 2), "50");
        assert_eq!(percentage(2, 3), "66.666666667");
        assert_eq!(percentage(0, 0), "0");
        assert_eq!(percentage(3, 3), "100");
    }
}
