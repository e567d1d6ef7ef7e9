//! `GET /v2/Forms/{FormType}`: the forms of a factor type (`form-push`, the only `FormType` of
//! the spec's `form_enum_form_types`), which describe what the Verify Push SDK sends to create
//! a factor, verify it, and create a challenge. The forms are JSON Schemas of those requests'
//! parameters (as the spec names them); `form_meta` says how a push factor's binding is written.

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use super::{BaseUrl, Path, printable};
use crate::state::AppState;
use crate::twilio::ApiError;
use crate::twilio::auth::Caller;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v2/Forms/{form_type}", get(fetch))
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn push_forms() -> Value {
    json!({
        "create_factor": {
            "type": "object",
            "required": ["FriendlyName", "FactorType", "Binding.Alg", "Binding.PublicKey",
                         "Config.AppId", "Config.NotificationPlatform", "Config.SdkVersion"],
            "properties": {
                "FriendlyName": text("The name of the factor, up to 64 characters"),
                "FactorType": { "type": "string", "enum": ["push"] },
                "Binding.Alg": { "type": "string", "enum": ["ES256"] },
                "Binding.PublicKey": text("The device's P-256 public key: base64 X.509 DER"),
                "Config.AppId": text("The app's ID (bundle ID or package name)"),
                "Config.NotificationPlatform": { "type": "string", "enum": ["apn", "fcm", "none"] },
                "Config.NotificationToken": text("The push notification token of the device"),
                "Config.SdkVersion": text("The Verify Push SDK's version"),
            },
        },
        "verify_factor": {
            "type": "object",
            "required": ["AuthPayload"],
            "properties": {
                "AuthPayload": text("A base64 DER ECDSA-SHA256 signature of the factor SID by the device key"),
            },
        },
        "create_challenge": {
            "type": "object",
            "required": ["FactorSid", "Details.Message"],
            "properties": {
                "FactorSid": text("The YF SID of the factor to challenge"),
                "ExpirationDate": { "type": "string", "format": "date-time" },
                "Details.Message": text("The message shown to the user, up to 1024 characters"),
                "Details.Fields": { "type": "array", "items": { "type": "object" } },
                "HiddenDetails": { "type": "object" },
            },
        },
    })
}

async fn fetch(
    _caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(form_type): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if form_type != "form-push" {
        return Err(ApiError::not_found(format!(
            "/Forms/{}",
            printable(&form_type)
        )));
    }
    Ok(Json(json!({
        "form_type": form_type,
        "forms": push_forms(),
        "form_meta": { "binding_separator": "|" },
        "url": format!("{base}/v2/Forms/{form_type}"),
    })))
}
