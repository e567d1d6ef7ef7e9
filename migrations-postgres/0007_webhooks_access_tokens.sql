-- A service's Webhooks (Verify Push/TOTP events) and its Access Tokens (Verify Push enrolment).

CREATE TABLE webhooks (
    sid            TEXT PRIMARY KEY,
    service_sid    TEXT NOT NULL REFERENCES services (sid) ON DELETE CASCADE,
    account_sid    TEXT NOT NULL,
    friendly_name  TEXT NOT NULL,
    event_types    TEXT NOT NULL, -- JSON array of event type names
    status         TEXT NOT NULL,
    version        TEXT NOT NULL,
    webhook_url    TEXT NOT NULL,
    webhook_method TEXT NOT NULL,
    date_created   BIGINT NOT NULL,
    date_updated   BIGINT NOT NULL
);
CREATE INDEX webhooks_by_service ON webhooks (service_sid, sid);

CREATE TABLE access_tokens (
    sid                  TEXT PRIMARY KEY,
    service_sid          TEXT NOT NULL REFERENCES services (sid) ON DELETE CASCADE,
    account_sid          TEXT NOT NULL,
    entity_identity      TEXT NOT NULL,
    factor_type          TEXT NOT NULL,
    factor_friendly_name TEXT,
    token                TEXT NOT NULL,
    ttl                  BIGINT NOT NULL,
    date_created         BIGINT NOT NULL
);
