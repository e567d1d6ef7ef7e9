//! Twilio's wire dialect and nothing else: SIDs, the error body, form bodies, paging envelopes,
//! HTTP Basic credentials and the date format. Nothing here knows about rate limits.

pub mod auth;
pub mod country;
pub mod date;
pub mod error;
pub mod form;
pub mod paging;
pub mod sid;

pub use error::ApiError;
