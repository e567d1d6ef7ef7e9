//! `/v2/Services`: create, list, fetch, update, delete.

use super::Path;
use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{BaseUrl, param, service_node};
use crate::catalog::values::{CodeLength, FriendlyName, Parameter};
use crate::catalog::{ServiceRecord, ServiceSettings};
use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::{FormBody, Params, query};
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services", get(list).post(create))
        .route("/v2/Services/{sid}", get(fetch).post(update).delete(remove))
}

pub fn render(base: &str, s: &ServiceRecord) -> Value {
    let url = format!("{base}/v2/Services/{}", s.sid);
    let st = &s.settings;
    json!({
        "sid": s.sid,
        "account_sid": s.account_sid,
        "friendly_name": s.friendly_name,
        "code_length": s.code_length,
        "lookup_enabled": st.lookup_enabled,
        "psd2_enabled": st.psd2_enabled,
        "skip_sms_to_landlines": st.skip_sms_to_landlines,
        "dtmf_input_required": st.dtmf_input_required,
        "tts_name": st.tts_name,
        "do_not_share_warning_enabled": st.do_not_share_warning_enabled,
        "custom_code_enabled": s.custom_code_enabled,
        "push": st.push,
        "totp": st.totp,
        "default_template_sid": st.default_template_sid,
        "whatsapp": st.whatsapp,
        "passkeys": st.passkeys,
        "verify_event_subscription_enabled": st.verify_event_subscription_enabled,
        "date_created": date::format(s.date_created),
        "date_updated": date::format(s.date_updated),
        "url": url,
        "links": {
            "verification_checks": format!("{url}/VerificationCheck"),
            "verifications": format!("{url}/Verifications"),
            "rate_limits": format!("{url}/RateLimits"),
            "messaging_configurations": format!("{url}/MessagingConfigurations"),
            "entities": format!("{url}/Entities"),
            "webhooks": format!("{url}/Webhooks"),
            "access_tokens": format!("{url}/AccessTokens"),
        }
    })
}

/// A SID-valued parameter with the spec's pattern.
fn sid_param(p: &Params, name: &str, prefix: &str) -> Result<Option<String>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) if sid::is_valid(v, prefix) => Ok(Some(v.to_owned())),
        Some(_) => Err(ApiError::invalid(name)),
    }
}

/// Applies every parameter of the spec's CreateService/UpdateService that was sent.
fn apply(p: &Params, s: &mut ServiceRecord) -> Result<(), ApiError> {
    if let Some(name) = param::<FriendlyName>(p)? {
        s.friendly_name = name.into();
    }
    if let Some(n) = param::<CodeLength>(p)? {
        s.code_length = n.get();
    }
    if let Some(b) = p.bool("CustomCodeEnabled")? {
        s.custom_code_enabled = b;
    }
    let st = &mut s.settings;
    for (name, field) in [
        ("LookupEnabled", &mut st.lookup_enabled),
        ("SkipSmsToLandlines", &mut st.skip_sms_to_landlines),
        ("DtmfInputRequired", &mut st.dtmf_input_required),
        ("Psd2Enabled", &mut st.psd2_enabled),
        (
            "DoNotShareWarningEnabled",
            &mut st.do_not_share_warning_enabled,
        ),
        (
            "VerifyEventSubscriptionEnabled",
            &mut st.verify_event_subscription_enabled,
        ),
        ("Push.IncludeDate", &mut st.push.include_date),
    ] {
        if let Some(b) = p.bool(name)? {
            *field = b;
        }
    }
    let text = |name: &str, field: &mut Option<String>| -> Result<(), ApiError> {
        if let Some(v) = p.text(name, 255)? {
            *field = Some(v);
        }
        Ok(())
    };
    text("TtsName", &mut st.tts_name)?;
    text("Totp.Issuer", &mut st.totp.issuer)?;
    text("Whatsapp.From", &mut st.whatsapp.from)?;
    text(
        "Passkeys.RelyingParty.Id",
        &mut st.passkeys.relying_party.id,
    )?;
    text(
        "Passkeys.RelyingParty.Name",
        &mut st.passkeys.relying_party.name,
    )?;
    text(
        "Passkeys.AuthenticatorAttachment",
        &mut st.passkeys.authenticator_attachment,
    )?;
    text(
        "Passkeys.DiscoverableCredentials",
        &mut st.passkeys.discoverable_credentials,
    )?;
    text(
        "Passkeys.UserVerification",
        &mut st.passkeys.user_verification,
    )?;
    if let Some(origins) = p.text("Passkeys.RelyingParty.Origins", 2048)? {
        st.passkeys.relying_party.origins = Some(
            origins
                .split(',')
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        );
    }
    // Ranges from Twilio's documentation of the TOTP settings.
    if let Some(n) = p.int("Totp.TimeStep", 20, 60)? {
        st.totp.time_step = Some(n);
    }
    if let Some(n) = p.int("Totp.CodeLength", 3, 8)? {
        st.totp.code_length = Some(n);
    }
    if let Some(n) = p.int("Totp.Skew", 0, 2)? {
        st.totp.skew = Some(n);
    }
    for (name, prefix, field) in [
        (
            "Push.ApnCredentialSid",
            "CR",
            &mut st.push.apn_credential_sid,
        ),
        (
            "Push.FcmCredentialSid",
            "CR",
            &mut st.push.fcm_credential_sid,
        ),
        ("DefaultTemplateSid", "HJ", &mut st.default_template_sid),
        (
            "Whatsapp.MsgServiceSid",
            "MG",
            &mut st.whatsapp.msg_service_sid,
        ),
    ] {
        if let Some(v) = sid_param(p, name, prefix)? {
            *field = Some(v);
        }
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    p.required(FriendlyName::NAME)?;
    let now = state.now(&caller.account);
    let mut record = ServiceRecord {
        sid: sid::generate(sid::SERVICE),
        account_sid: caller.account.clone(),
        friendly_name: String::new(),
        code_length: 6,
        custom_code_enabled: false,
        settings: ServiceSettings::default(),
        date_created: now,
        date_updated: now,
    };
    apply(&p, &mut record)?;
    let saved = state.create_service(record).await?;
    Ok((StatusCode::CREATED, Json(render(&base, &saved))).into_response())
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let req = PageRequest::from_query(&query(&uri), sid::SERVICE)?;
    let catalog = state.catalog.read();
    let empty = Default::default();
    let services = catalog.services(&caller.account).unwrap_or(&empty);
    let page = paging::from_btree(services, &req, |_| true, |n| render(&base, &n.record));
    drop(catalog);
    Ok(Json(paging::envelope(
        "services",
        &format!("{base}/v2/Services"),
        &[],
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
    let node = service_node(&state, &caller.account, &sid)?;
    Ok(Json(render(&base, &node.record)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(sid): Path<String>,
    FormBody(p): FormBody,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &sid)?;
    let mut record = node.record.clone();
    apply(&p, &mut record)?;
    record.date_updated = state.now(&caller.account).max(record.date_created);
    let saved = state.update_service(record).await?;
    Ok(Json(render(&base, &saved)))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    service_node(&state, &caller.account, &sid)?;
    state.delete_service(&caller.account, &sid).await?;
    Ok(StatusCode::NO_CONTENT)
}
