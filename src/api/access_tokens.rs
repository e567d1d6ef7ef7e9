//! `/v2/Services/{ServiceSid}/AccessTokens`: tokens with which an app enrols a push factor (the
//! Verify Push SDK presents one as Basic `token:<access token>`). Create (`Identity`,
//! `FactorType=push`, `FactorFriendlyName`, `Ttl` 60–300 s, default 60) and fetch.
//!
//! The token is a JSON web token (HS256, signed with the account's auth token) naming the
//! service, the entity and the factor type, valid `Ttl` seconds on the account's clock; verilimit
//! keeps every token it issued, so it can tell its own, live ones apart.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{BaseUrl, Path, printable, service_node};
use crate::state::AppState;
use crate::store::records::AccessToken;
use crate::twilio::auth::Caller;
use crate::twilio::form::FormBody;
use crate::twilio::{ApiError, date, sid};

pub const ACCESS_TOKEN: &str = "YK";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/Services/{service}/AccessTokens", post(create))
        .route("/v2/Services/{service}/AccessTokens/{sid}", get(fetch))
}

fn render(base: &str, t: &AccessToken) -> Value {
    json!({
        "sid": t.sid,
        "account_sid": t.account_sid,
        "service_sid": t.service_sid,
        "entity_identity": t.entity_identity,
        "factor_type": t.factor_type,
        "factor_friendly_name": t.factor_friendly_name,
        "token": t.token,
        "url": format!("{base}/v2/Services/{}/AccessTokens/{}", t.service_sid, t.sid),
        "ttl": t.ttl,
        "date_created": date::format(t.date_created),
    })
}

/// A compact JWS: `header.payload.signature`, base64url without padding, HMAC-SHA256.
pub fn sign_jwt(key: &[u8], header: &Value, payload: &Value) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        input.as_bytes(),
    );
    format!("{input}.{}", b64(tag.as_ref()))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path(service): Path<String>,
    FormBody(p): FormBody,
) -> Result<Response, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    p.required("Identity")?;
    let identity = p.text("Identity", 256)?.unwrap_or_default();
    if p.required("FactorType")? != "push" {
        return Err(ApiError::invalid_because("FactorType", "must be push"));
    }
    let friendly_name = p.text("FactorFriendlyName", 64)?;
    let ttl = p.int("Ttl", 60, 300)?.unwrap_or(60);
    let now = state.now(&caller.account);
    let token_sid = sid::generate(ACCESS_TOKEN);
    let key = state
        .0
        .credentials
        .token(&caller.account)
        .unwrap_or_default();
    let token = sign_jwt(
        key.as_bytes(),
        &json!({ "alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1" }),
        &json!({
            "jti": token_sid,
            "sub": caller.account,
            "iat": now / 1000,
            "exp": now / 1000 + ttl,
            "grants": { "verify": {
                "service_sid": node.record.sid,
                "identity": identity,
                "factor": "push",
            }},
        }),
    );
    let saved = state
        .create_access_token(AccessToken {
            sid: token_sid,
            service_sid: node.record.sid.clone(),
            account_sid: caller.account.clone(),
            entity_identity: identity,
            factor_type: "push".into(),
            factor_friendly_name: friendly_name,
            token,
            ttl,
            date_created: now,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(render(&base, &saved))).into_response())
}

async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base): BaseUrl,
    Path((service, token)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let node = service_node(&state, &caller.account, &service)?;
    let not_found = || {
        ApiError::not_found(format!(
            "/Services/{service}/AccessTokens/{}",
            printable(&token)
        ))
    };
    if !sid::is_valid(&token, ACCESS_TOKEN) {
        return Err(not_found());
    }
    let t = state
        .access_token(&node.record.sid, &token)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(render(&base, &t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hs256_jws_that_verify_with_the_key() {
        let t = sign_jwt(b"secret", &json!({"alg": "HS256"}), &json!({"jti": "YK1"}));
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let input = format!("{}.{}", parts[0], parts[1]);
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        assert!(ring::hmac::verify(&key, input.as_bytes(), &tag).is_ok());
        let other = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"other");
        assert!(ring::hmac::verify(&other, input.as_bytes(), &tag).is_err());
    }
}
