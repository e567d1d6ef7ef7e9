//! The pure core: every decision verilimit makes about a verification, as functions of the
//! state a request touches and `now`. No I/O, no locks, no clock reads, no randomness (the
//! caller hands in fresh SIDs and codes), no async: both engines (`crate::engine`) run exactly
//! these functions and differ only in how they load that state and persist the changes.
//!
//! - `window`: sliding-window arithmetic over one admission log;
//! - `limits`: Service Rate Limits over every (rate limit, value) a start names (20429);
//! - `verification`: a verification's life: start (new, re-send, 60203, 20429), check (approve,
//!   fail, 60202), update (cancel, approve), expiry, and which verification a path names;
//! - `totp`: RFC 6238 codes and which time step a code uses up (replay protection);
//! - `mfa`: factors and challenges: verifying a factor, creating and answering a challenge;
//! - `push`: Verify Push: a device's key, its signature of a factor, the fields it signs and
//!   its ES256 answer to a challenge.

pub mod limits;
pub mod mfa;
pub mod push;
pub mod push_auth;
pub mod totp;
pub mod verification;
pub mod webauthn;
pub mod window;

pub use limits::{Admission, LimitCheck, Refusal};
pub use verification::{
    Admitted, Attempt, Checked, Fresh, Policy, Resolved, StartRequest, Started, Status,
    Verification,
};
pub use window::Rule;

#[cfg(test)]
mod model_tests;
