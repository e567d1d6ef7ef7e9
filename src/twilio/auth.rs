//! HTTP Basic credentials → the account they act for.
//!
//! The username is either an Account SID (password: its auth token) or an API key SID `SK…`
//! (password: its secret), which maps to the account that owns it: the SDKs send only the key on
//! Verify calls. Secrets are compared in constant time. Why a request was refused is logged at
//! debug; the answer is always the same 401 / 20003.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::ApiError;

/// The accounts and API keys this server accepts.
#[derive(Default)]
pub struct Credentials {
    accounts: HashMap<String, String>,
    keys: HashMap<String, (String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("accounts", &self.accounts.keys().collect::<Vec<_>>())
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    pub fn add_account(&mut self, sid: &str, token: &str) {
        self.accounts.insert(sid.to_owned(), token.to_owned());
    }

    pub fn add_key(&mut self, sid: &str, secret: &str, account: &str) {
        self.keys
            .insert(sid.to_owned(), (secret.to_owned(), account.to_owned()));
    }

    /// The auth token of a configured account (it signs what Event Streams sends).
    pub fn token(&self, account: &str) -> Option<&str> {
        self.accounts.get(account).map(String::as_str)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }

    /// The account these Basic credentials act for, if they are right.
    pub fn authenticate(&self, user: &str, password: &str) -> Option<String> {
        let (expected, account) = if let Some(token) = self.accounts.get(user) {
            (token.as_str(), user)
        } else if let Some((secret, account)) = self.keys.get(user) {
            (secret.as_str(), account.as_str())
        } else {
            tracing::debug!("auth refused: unknown username");
            return None;
        };
        if secrets_equal(expected.as_bytes(), password.as_bytes()) {
            Some(account.to_owned())
        } else {
            tracing::debug!("auth refused: wrong secret");
            None
        }
    }
}

/// Constant time in the contents; only the lengths' equality shows.
fn secrets_equal(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        // Spend the same work as a real comparison, then refuse.
        let _ = expected.ct_eq(expected);
        return false;
    }
    expected.ct_eq(given).into()
}

/// Decodes an `Authorization: Basic …` header into (username, password).
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The (username, password) of a request's `Authorization: Basic …` header; 401 without one.
pub fn basic_credentials(headers: &axum::http::HeaderMap) -> Result<(String, String), ApiError> {
    let Some(header) = headers.get(header::AUTHORIZATION) else {
        tracing::debug!("auth refused: no Authorization header");
        return Err(ApiError::unauthorized());
    };
    header.to_str().ok().and_then(parse_basic).ok_or_else(|| {
        tracing::debug!("auth refused: malformed Authorization header");
        ApiError::unauthorized()
    })
}

/// The authenticated caller: the account every resource of the request belongs to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: String,
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Credentials>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let creds = Arc::<Credentials>::from_ref(state);
        let (user, password) = basic_credentials(&parts.headers)?;
        creds
            .authenticate(&user, &password)
            .map(|account| Caller { account })
            .ok_or_else(ApiError::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_keys_map_to_their_account() {
        let mut c = Credentials::default();
        c.add_account("ACa", "tok");
        c.add_key("SKk", "sec", "ACa");
        assert_eq!(c.authenticate("ACa", "tok").as_deref(), Some("ACa"));
        assert_eq!(c.authenticate("SKk", "sec").as_deref(), Some("ACa"));
        assert_eq!(c.authenticate("ACa", "tok2"), None);
        assert_eq!(c.authenticate("SKk", "tok"), None);
        assert_eq!(c.authenticate("ACb", "tok"), None);
    }

    #[test]
    fn parses_basic_headers() {
        assert_eq!(
            parse_basic("Basic QUNhOnRvazp3aXRoOmNvbG9ucw=="),
            Some(("ACa".into(), "tok:with:colons".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
