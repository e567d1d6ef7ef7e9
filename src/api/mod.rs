//! The Twilio Verify v2 surface: one file per resource, each with its routes and its JSON.

pub mod access_tokens;
pub mod attempts;
pub mod buckets;
pub mod challenges;
pub mod entities;
pub mod event_streams;
pub mod factors;
pub mod forms;
pub mod messaging_configurations;
pub mod passkeys;
pub mod rate_limits;
pub mod safe_list;
pub mod services;
pub mod templates;
pub mod verification_checks;
pub mod verifications;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};

use crate::catalog::ServiceNode;
use crate::catalog::values::{Invalid, Parameter};
use crate::state::AppState;
use crate::store::StoreError;
use crate::twilio::form::Params;
use crate::twilio::{ApiError, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(services::routes())
        .merge(rate_limits::routes())
        .merge(buckets::routes())
        .merge(verifications::routes())
        .merge(verification_checks::routes())
        .merge(attempts::routes())
        .merge(safe_list::routes())
        .merge(templates::routes())
        .merge(forms::routes())
        .merge(messaging_configurations::routes())
        .merge(webhooks::routes())
        .merge(access_tokens::routes())
        .merge(event_streams::routes())
        .merge(entities::routes())
        .merge(factors::routes())
        .merge(challenges::routes())
        .merge(passkeys::routes())
}

/// Twilio's answer to a refused value: 60209 for a UniqueName, else 60200 naming the parameter
/// (with the reason, for text).
impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Text { param, problem } => ApiError::invalid_because(param, problem),
            Invalid::Blank { param } | Invalid::OutOfRange { param, .. } => {
                ApiError::invalid(param)
            }
            Invalid::UniqueName => ApiError::bad_request(60209, format!("Invalid UniqueName: {e}")),
        }
    }
}

/// The parameter `T::NAME`, if it was sent, as a `T`.
pub fn param<T: Parameter>(p: &Params) -> Result<Option<T>, ApiError> {
    Ok(p.get(T::NAME).map(T::try_from).transpose()?)
}

/// The required parameter `T::NAME` as a `T` (20001 when missing or empty).
pub fn required<T: Parameter>(p: &Params) -> Result<T, ApiError> {
    Ok(T::try_from(p.required(T::NAME)?)?)
}

/// The absolute base URL the client used (`http://host:port`, or `https://host` over the
/// `--tls` listener), or the configured public URL:
/// every `url`, `links` entry and paging URL starts with it, since the SDKs follow them verbatim.
pub struct BaseUrl(pub String);

impl FromRequestParts<AppState> for BaseUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(url) = &state.settings.public_url {
            return Ok(BaseUrl(url.clone()));
        }
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .filter(|h| is_host(h))
            .ok_or_else(|| ApiError::bad_request(20001, "Missing or invalid Host header"))?;
        let scheme = if parts.extensions.get::<crate::tls::ViaTls>().is_some() {
            "https"
        } else {
            "http"
        };
        Ok(BaseUrl(format!("{scheme}://{host}")))
    }
}

/// A host[:port] safe to put in a URL.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// Path parameters. Unlike axum's own extractor, a segment that cannot be decoded (invalid
/// UTF-8 after percent-decoding) is answered like any unknown resource: 404 / 20404 with
/// Twilio's error body.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Path(t)),
            Err(_) => Err(ApiError::not_found(printable(parts.uri.path()))),
        }
    }
}

/// The caller's service, or 404 (also for a malformed SID and for another account's service).
pub fn service_node(
    state: &AppState,
    account: &str,
    sid: &str,
) -> Result<Arc<ServiceNode>, ApiError> {
    if !sid::is_valid(sid, sid::SERVICE) {
        return Err(ApiError::not_found(format!("/Services/{}", printable(sid))));
    }
    state
        .catalog
        .read()
        .service(account, sid)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("/Services/{sid}")))
}

/// A path segment as it may be echoed in an error message.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// The HTTP edge of the store: each store failure as Twilio answers it.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(path) => ApiError::not_found(path),
            StoreError::TooManyRateLimits(max) => ApiError::bad_request(
                60207,
                format!(
                    "Max Rate Limits per Service reached: a service can have at most {max} rate limits"
                ),
            ),
            StoreError::DuplicateUniqueName => ApiError::bad_request(
                60208,
                "A Rate Limit with this UniqueName already exists in this Service",
            ),
            StoreError::TooManyBuckets(max) => ApiError::bad_request(
                60210,
                format!(
                    "Max Buckets per Rate Limit reached: a rate limit can have at most {max} buckets"
                ),
            ),
            StoreError::DuplicateInterval => ApiError::bad_request(
                60211,
                "A Bucket with this Interval already exists in this Rate Limit",
            ),
            // (our choice: Twilio does not document this error)
            StoreError::DuplicateCountry => ApiError::invalid_because(
                "Country",
                "this service already has a Messaging Configuration for this country",
            ),
            StoreError::Unavailable => ApiError::unavailable(),
            e @ (StoreError::Database(_) | StoreError::Encoding(_) | StoreError::NotCommitted) => {
                crate::metrics::db_error();
                ApiError::internal(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::values::{
        CodeLength, Description, FriendlyName, Interval, Max, UniqueName,
    };

    fn answer<T: Parameter>(body: &str) -> (u32, String) {
        match required::<T>(&Params::parse(body.as_bytes())) {
            Ok(_) => panic!("{body} accepted"),
            Err(e) => (e.code, e.message),
        }
    }

    #[test]
    fn refused_values_get_twilios_codes_and_messages() {
        let invalid = |m: &str| (60200, m.to_owned());
        assert_eq!(answer::<Max>("Max=0"), invalid("Invalid parameter: Max"));
        assert_eq!(answer::<Max>("Max=1.5"), invalid("Invalid parameter: Max"));
        assert_eq!(
            answer::<Interval>("Interval=86401"),
            invalid("Invalid parameter: Interval")
        );
        assert_eq!(
            answer::<CodeLength>("CodeLength=3"),
            invalid("Invalid parameter: CodeLength")
        );
        assert_eq!(
            answer::<FriendlyName>("FriendlyName=+"),
            invalid("Invalid parameter: FriendlyName")
        );
        assert_eq!(
            answer::<FriendlyName>(&format!("FriendlyName={}", "x".repeat(33))),
            invalid("Invalid parameter: FriendlyName: must be at most 32 characters")
        );
        assert_eq!(
            answer::<Description>("Description=a%07"),
            invalid(
                "Invalid parameter: Description: must not contain control characters or invalid UTF-8"
            )
        );
        assert_eq!(
            answer::<UniqueName>("UniqueName=bad+name"),
            (
                60209,
                "Invalid UniqueName: use 1 to 64 letters, digits, '.', '_' or '-'".to_owned()
            )
        );
        assert_eq!(answer::<UniqueName>("UniqueName=").0, 20001);
        assert_eq!(answer::<Max>("Interval=5").0, 20001);
    }
}
