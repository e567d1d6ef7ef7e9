//! The Twilio Verify v2 surface: one file per resource, each with its routes and its JSON.

pub mod buckets;
pub mod rate_limits;
pub mod services;
pub mod verification_checks;
pub mod verifications;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};

use crate::catalog::ServiceNode;
use crate::state::AppState;
use crate::twilio::{ApiError, sid};

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(services::routes())
        .merge(rate_limits::routes())
        .merge(buckets::routes())
        .merge(verifications::routes())
        .merge(verification_checks::routes())
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
