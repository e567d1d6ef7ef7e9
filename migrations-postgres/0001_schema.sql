-- verilimit's schema on PostgreSQL (the same as on SQLite, with PostgreSQL's types). Times are epoch milliseconds on the owning account's clock.

CREATE TABLE accounts (
    sid             TEXT PRIMARY KEY,
    clock_offset_ms BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE services (
    sid                 TEXT PRIMARY KEY,
    account_sid         TEXT NOT NULL,
    friendly_name       TEXT NOT NULL,
    code_length         BIGINT NOT NULL,
    custom_code_enabled BOOLEAN NOT NULL,
    settings            TEXT NOT NULL, -- JSON: every other attribute of the service
    date_created        BIGINT NOT NULL,
    date_updated        BIGINT NOT NULL
);
CREATE INDEX services_by_account ON services (account_sid, sid);

CREATE TABLE rate_limits (
    id           BIGSERIAL PRIMARY KEY,
    sid          TEXT NOT NULL UNIQUE,
    service_sid  TEXT NOT NULL REFERENCES services (sid) ON DELETE CASCADE,
    account_sid  TEXT NOT NULL,
    unique_name  TEXT NOT NULL,
    description  TEXT,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL,
    UNIQUE (service_sid, unique_name)
);

CREATE TABLE buckets (
    sid           TEXT PRIMARY KEY,
    rate_limit_id BIGINT NOT NULL REFERENCES rate_limits (id) ON DELETE CASCADE,
    max           BIGINT NOT NULL,
    "interval"    BIGINT NOT NULL,
    live_since_ms BIGINT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL,
    UNIQUE (rate_limit_id, "interval")
);
CREATE INDEX buckets_by_rate_limit ON buckets (rate_limit_id);

-- One row per admitted verification start and rate limit: the shared log of its buckets.
CREATE TABLE admissions (
    rate_limit_id BIGINT NOT NULL REFERENCES rate_limits (id) ON DELETE CASCADE,
    value         TEXT NOT NULL,
    at_ms         BIGINT NOT NULL
);
CREATE INDEX admissions_by_time ON admissions (rate_limit_id, at_ms);

CREATE TABLE verifications (
    sid           TEXT PRIMARY KEY,
    service_sid   TEXT NOT NULL REFERENCES services (sid) ON DELETE CASCADE,
    account_sid   TEXT NOT NULL,
    recipient     TEXT NOT NULL,
    channel       TEXT NOT NULL,
    status        TEXT NOT NULL,
    code          TEXT NOT NULL,
    amount        TEXT,
    payee         TEXT,
    checks_failed BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL,
    version       BIGINT NOT NULL
);
CREATE INDEX verifications_by_status ON verifications (status, expires_ms);
CREATE INDEX verifications_by_account ON verifications (account_sid, date_created);

-- Every code "sent": the send attempts of verifications, and the control plane's outbox.
CREATE TABLE send_attempts (
    sid              TEXT PRIMARY KEY,
    verification_sid TEXT NOT NULL REFERENCES verifications (sid) ON DELETE CASCADE,
    service_sid      TEXT NOT NULL,
    account_sid      TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    channel          TEXT NOT NULL,
    code             TEXT NOT NULL,
    at_ms            BIGINT NOT NULL
);
CREATE INDEX send_attempts_by_verification ON send_attempts (verification_sid, at_ms);
CREATE INDEX send_attempts_by_account ON send_attempts (account_sid, sid);
CREATE INDEX send_attempts_by_recipient ON send_attempts (service_sid, recipient, at_ms);

-- Bumped by every configuration change, so every instance knows when to reload its cache.
CREATE TABLE config_version (
    id      INT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 0);

CREATE INDEX verifications_pending_by_recipient ON verifications (service_sid, recipient) WHERE status = 'pending';
CREATE INDEX admissions_by_value ON admissions (rate_limit_id, value, at_ms);
