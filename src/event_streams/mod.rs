//! Twilio Event Streams (`events.twilio.com/v1`): the records of sinks and subscriptions, the
//! catalog of event types this server can emit (`types`), the Event Streams format of a Verify
//! event and its signature (`cloudevent`), and the asynchronous webhook delivery (`delivery`),
//! which also carries Verify's factor and challenge events to Service Webhooks
//! (`service_webhook`: their form format and signature).
//!
//! Only webhook sinks receive events; kinesis, segment and email sinks are accepted and stored
//! (so code that configures them runs) but nothing is sent to them.

pub mod cloudevent;
pub mod delivery;
pub mod service_webhook;
pub mod types;

pub use delivery::Delivery;

/// The sink types the spec names (`sink_enum_sink_type`).
pub const SINK_TYPES: [&str; 4] = ["kinesis", "webhook", "segment", "email"];

/// SID prefixes of Event Streams resources (from the spec's patterns).
pub const SINK_PREFIX: &str = "DG";
pub const SUBSCRIPTION_PREFIX: &str = "DF";

#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub sid: String,
    pub account_sid: String,
    pub description: String,
    pub sink_type: String,
    /// The JSON object given as `SinkConfiguration`.
    pub sink_configuration: serde_json::Value,
    pub status: String,
    pub date_created: i64,
    pub date_updated: i64,
}

impl SinkRecord {
    /// A webhook sink's `destination`, if this is one.
    pub fn webhook_destination(&self) -> Option<&str> {
        (self.sink_type == "webhook")
            .then(|| self.sink_configuration.get("destination")?.as_str())
            .flatten()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub sid: String,
    pub account_sid: String,
    pub sink_sid: String,
    pub description: String,
    pub date_created: i64,
    pub date_updated: i64,
}

/// One event type a subscription delivers, at one schema version.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribedType {
    pub subscription_sid: String,
    pub account_sid: String,
    pub event_type: String,
    pub schema_version: i64,
}
