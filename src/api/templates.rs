//! `GET /v2/Templates`: verilimit's fixed catalogue of verification templates, in Twilio's shape
//! (`verify.v2.verification_template`; SIDs `HJ…`). A start's `TemplateSid` must name one of
//! them, on a channel the template supports.
//!
//! Twilio's own catalogue (Verify Default and the pre-approved templates) differs per account
//! and is not published as data; these stand in for it with texts in the same style.

use axum::extract::{OriginalUri, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use crate::state::AppState;
use crate::twilio::auth::Caller;
use crate::twilio::form::query;
use crate::twilio::paging::{self, PageRequest};
use crate::twilio::{ApiError, date};

use super::BaseUrl;

pub const TEMPLATE: &str = "HJ";

/// One template of the catalogue.
pub struct Template {
    pub sid: &'static str,
    pub friendly_name: &'static str,
    /// As the spec lists them: `sms`, `voice`.
    pub channels: &'static [&'static str],
    /// (locale, text), the first being the default translation.
    pub translations: &'static [(&'static str, &'static str)],
}

pub const CATALOGUE: &[Template] = &[
    Template {
        sid: "HJ00000000000000000000000000000001",
        friendly_name: "Verify Default",
        channels: &["sms", "voice"],
        translations: &[
            (
                "en",
                "Your {{friendly_name}} verification code is: {{code}}",
            ),
            (
                "es",
                "Tu código de verificación de {{friendly_name}} es: {{code}}",
            ),
            (
                "fr",
                "Votre code de vérification {{friendly_name}} est : {{code}}",
            ),
            (
                "de",
                "Ihr {{friendly_name}} Verifizierungscode lautet: {{code}}",
            ),
            (
                "pt",
                "O seu código de verificação {{friendly_name}} é: {{code}}",
            ),
        ],
    },
    Template {
        sid: "HJ00000000000000000000000000000002",
        friendly_name: "Verification with do not share",
        channels: &["sms"],
        translations: &[(
            "en",
            "Your {{friendly_name}} verification code is: {{code}}. Do not share this code with anyone.",
        )],
    },
    Template {
        sid: "HJ00000000000000000000000000000003",
        friendly_name: "Verification with expiry",
        channels: &["sms", "voice"],
        translations: &[(
            "en",
            "{{code}} is your {{friendly_name}} verification code. It expires in 10 minutes.",
        )],
    },
    Template {
        sid: "HJ00000000000000000000000000000004",
        friendly_name: "Password reset",
        channels: &["sms"],
        translations: &[(
            "en",
            "Your {{friendly_name}} password reset code is: {{code}}",
        )],
    },
];

/// The catalogue's date (every template was made with the catalogue).
const CREATED_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub fn find(sid: &str) -> Option<&'static Template> {
    CATALOGUE.iter().find(|t| t.sid.eq_ignore_ascii_case(sid))
}

/// Whether the template can be used for a verification on this channel (`call` is voice).
pub fn supports(t: &Template, channel: &str) -> bool {
    let channel = if channel == "call" { "voice" } else { channel };
    t.channels.contains(&channel)
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/v2/Templates", get(list))
}

fn render(account: &str, t: &Template) -> Value {
    let translations: Map<String, Value> = t
        .translations
        .iter()
        .enumerate()
        .map(|(i, (locale, text))| {
            (
                (*locale).to_owned(),
                json!({
                    "is_default_translation": i == 0,
                    "status": "approved",
                    "locale": locale,
                    "text": text,
                    "date_created": date::format(CREATED_MS),
                    "date_updated": date::format(CREATED_MS),
                }),
            )
        })
        .collect();
    json!({
        "sid": t.sid,
        "account_sid": account,
        "friendly_name": t.friendly_name,
        "channels": t.channels,
        "translations": translations,
    })
}

async fn list(
    State(_state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let q = query(&uri);
    let req = PageRequest::from_query(&q, TEMPLATE)?;
    let name = q.get("FriendlyName").filter(|v| !v.is_empty());
    let all: BTreeMap<String, &Template> =
        CATALOGUE.iter().map(|t| (t.sid.to_owned(), t)).collect();
    let page = paging::from_btree(
        &all,
        &req,
        |t| name.is_none_or(|n| t.friendly_name.eq_ignore_ascii_case(n)),
        |t| render(&caller.account, t),
    );
    let filters: Vec<(&str, &str)> = name.map(|n| ("FriendlyName", n)).into_iter().collect();
    Ok(Json(paging::envelope(
        "templates",
        &format!("{base}/v2/Templates"),
        &filters,
        &req,
        page,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::sid;

    #[test]
    fn the_catalogue_is_well_formed() {
        for t in CATALOGUE {
            assert!(sid::is_valid(t.sid, TEMPLATE), "{}", t.sid);
            assert!(t.friendly_name.len() <= 32, "{}", t.friendly_name);
            assert!(!t.translations.is_empty());
        }
        assert!(find("hj00000000000000000000000000000001").is_some());
        assert!(supports(&CATALOGUE[0], "call"));
        assert!(!supports(&CATALOGUE[1], "email"));
    }
}
