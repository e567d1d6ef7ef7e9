-- The same as on SQLite, with PostgreSQL's types.
-- Verify TOTP (and later Push): entities, their factors, and challenges. Times are epoch
-- milliseconds on the owning account's clock. Deleting a service deletes its entities; deleting
-- an entity deletes its factors; deleting a factor deletes its challenges.

CREATE TABLE entities (
    sid          TEXT PRIMARY KEY,
    service_sid  TEXT NOT NULL REFERENCES services (sid) ON DELETE CASCADE,
    account_sid  TEXT NOT NULL,
    identity     TEXT NOT NULL,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL,
    UNIQUE (service_sid, identity)
);
CREATE INDEX entities_by_account ON entities (account_sid);

CREATE TABLE factors (
    sid           TEXT PRIMARY KEY,
    entity_sid    TEXT NOT NULL REFERENCES entities (sid) ON DELETE CASCADE,
    service_sid   TEXT NOT NULL,
    account_sid   TEXT NOT NULL,
    identity      TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    factor_type   TEXT NOT NULL,
    status        TEXT NOT NULL,
    secret        TEXT NOT NULL,
    alg           TEXT NOT NULL,
    code_length   BIGINT NOT NULL,
    time_step     BIGINT NOT NULL,
    skew          BIGINT NOT NULL,
    last_used_s   BIGINT,          -- start of the last time step whose code was accepted
    metadata      TEXT,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);
CREATE INDEX factors_by_entity ON factors (entity_sid, sid);

CREATE TABLE challenges (
    sid            TEXT PRIMARY KEY,
    factor_sid     TEXT NOT NULL REFERENCES factors (sid) ON DELETE CASCADE,
    entity_sid     TEXT NOT NULL,
    service_sid    TEXT NOT NULL,
    account_sid    TEXT NOT NULL,
    identity       TEXT NOT NULL,
    factor_type    TEXT NOT NULL,
    status         TEXT NOT NULL,
    message        TEXT,
    hidden_details TEXT,
    metadata       TEXT,
    expiration_ms  BIGINT NOT NULL,
    date_responded BIGINT,
    date_created   BIGINT NOT NULL,
    date_updated   BIGINT NOT NULL
);
CREATE INDEX challenges_by_entity ON challenges (entity_sid, sid);
CREATE INDEX challenges_by_factor ON challenges (factor_sid);
