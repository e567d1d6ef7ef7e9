//! The event types this server can emit, and their schemas: Verify's five verification status
//! events (names and timings from Twilio's "Verification Stream" page,
//! https://www.twilio.com/docs/verify/verification) and Event Streams' own test event.
//!
//! Dates are fixed (our choice): Twilio does not publish when each type was created.

/// Event Streams' test event, sent by `POST /v1/Sinks/{Sid}/Test`.
pub const TEST_EVENT: &str = "com.twilio.eventstreams.test-event";

/// The schema of every Verify verification status event.
pub const VERIFY_SCHEMA: &str = "AccountSecurity.VerifyEventStreamEvent";
/// The schema of the test event (our choice of name: Twilio does not document it).
pub const TEST_SCHEMA: &str = "EventStreams.TestSink";

/// Where `dataschema` URLs point, as in Twilio's examples.
pub const SCHEMA_HOST: &str = "https://events-schemas.twilio.com";

/// 2024-01-01T00:00:00Z: the date every type here shows as created and updated.
pub const TYPES_DATE_MS: i64 = 1_704_067_200_000;

#[derive(Debug)]
pub struct EventType {
    pub name: &'static str,
    pub schema_id: &'static str,
    pub description: &'static str,
    pub documentation_url: &'static str,
}

const VERIFY_DOCS: &str = "https://www.twilio.com/docs/verify/verification";

/// Every type, ordered by name (lists are).
pub const TYPES: [EventType; 6] = [
    EventType {
        name: "com.twilio.accountsecurity.verify.verification.approved",
        schema_id: VERIFY_SCHEMA,
        description: "Verification approved: a check or a status update approved it",
        documentation_url: VERIFY_DOCS,
    },
    EventType {
        name: "com.twilio.accountsecurity.verify.verification.canceled",
        schema_id: VERIFY_SCHEMA,
        description: "Verification canceled by a status update",
        documentation_url: VERIFY_DOCS,
    },
    EventType {
        name: "com.twilio.accountsecurity.verify.verification.expired",
        schema_id: VERIFY_SCHEMA,
        description: "Verification expired",
        documentation_url: VERIFY_DOCS,
    },
    EventType {
        name: "com.twilio.accountsecurity.verify.verification.max-attempts-reached",
        schema_id: VERIFY_SCHEMA,
        description: "Verification failed: too many check attempts",
        documentation_url: VERIFY_DOCS,
    },
    EventType {
        name: "com.twilio.accountsecurity.verify.verification.pending",
        schema_id: VERIFY_SCHEMA,
        description: "Verification pending: a start sent a code",
        documentation_url: VERIFY_DOCS,
    },
    EventType {
        name: TEST_EVENT,
        schema_id: TEST_SCHEMA,
        description: "Test event sent to a sink by the Sink Test resource",
        documentation_url: "https://www.twilio.com/docs/events/event-streams/sink-resource/test",
    },
];

pub fn event_type(name: &str) -> Option<&'static EventType> {
    TYPES.iter().find(|t| t.name == name)
}

#[derive(Debug)]
pub struct Schema {
    pub id: &'static str,
    /// Its versions, oldest first, with the date each was created.
    pub versions: &'static [(i64, i64)],
}

impl Schema {
    pub fn latest(&self) -> (i64, i64) {
        *self.versions.last().expect("a schema has a version")
    }

    pub fn has_version(&self, v: i64) -> bool {
        self.versions.iter().any(|(n, _)| *n == v)
    }
}

/// Verify's schema is at version 3 (Twilio changelog, 2026-04-01: "Verification Event Stream V3
/// released with new Tags parameter"); the dates are ours.
pub const SCHEMAS: [Schema; 2] = [
    Schema {
        id: VERIFY_SCHEMA,
        versions: &[(1, TYPES_DATE_MS), (2, TYPES_DATE_MS), (3, TYPES_DATE_MS)],
    },
    Schema {
        id: TEST_SCHEMA,
        versions: &[(1, TYPES_DATE_MS)],
    },
];

pub fn schema(id: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().find(|s| s.id == id)
}

/// The schema of a type.
pub fn schema_of(t: &EventType) -> &'static Schema {
    schema(t.schema_id).expect("every type's schema is listed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_sorted_and_every_schema_exists() {
        assert!(TYPES.windows(2).all(|w| w[0].name < w[1].name));
        for t in &TYPES {
            assert!(schema(t.schema_id).is_some(), "{}", t.name);
        }
    }
}
