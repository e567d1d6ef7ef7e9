-- Twilio Event Streams (events.twilio.com/v1): an account's sinks (where events go) and
-- subscriptions (which event types, at which schema version, go to which sink). Times are epoch
-- milliseconds on the owning account's clock. Nothing here is cached by the server: every
-- instance sharing the database reads these rows, so a sink made on one is used by all.

CREATE TABLE event_sinks (
    sid                TEXT PRIMARY KEY,
    account_sid        TEXT NOT NULL,
    description        TEXT NOT NULL,
    sink_type          TEXT NOT NULL,
    sink_configuration TEXT NOT NULL, -- JSON object, as given
    status             TEXT NOT NULL,
    date_created       INTEGER NOT NULL,
    date_updated       INTEGER NOT NULL
);
CREATE INDEX event_sinks_by_account ON event_sinks (account_sid, sid);

CREATE TABLE event_subscriptions (
    sid          TEXT PRIMARY KEY,
    account_sid  TEXT NOT NULL,
    sink_sid     TEXT NOT NULL REFERENCES event_sinks (sid) ON DELETE CASCADE,
    description  TEXT NOT NULL,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL
);
CREATE INDEX event_subscriptions_by_account ON event_subscriptions (account_sid, sid);
CREATE INDEX event_subscriptions_by_sink ON event_subscriptions (sink_sid);

CREATE TABLE event_subscribed_types (
    subscription_sid TEXT NOT NULL REFERENCES event_subscriptions (sid) ON DELETE CASCADE,
    account_sid      TEXT NOT NULL,
    type             TEXT NOT NULL,
    schema_version   INTEGER NOT NULL,
    PRIMARY KEY (subscription_sid, type)
);
CREATE INDEX event_subscribed_types_by_type ON event_subscribed_types (account_sid, type);
