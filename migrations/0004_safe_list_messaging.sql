-- The Safe List (per account) and Messaging Configurations (per service and country).

CREATE TABLE safe_list (
    account_sid  TEXT NOT NULL,
    phone_number TEXT NOT NULL,
    sid          TEXT NOT NULL UNIQUE,
    date_created INTEGER NOT NULL,
    PRIMARY KEY (account_sid, phone_number)
);

CREATE TABLE messaging_configurations (
    service_sid           TEXT NOT NULL REFERENCES services (sid) ON DELETE CASCADE,
    account_sid           TEXT NOT NULL,
    country               TEXT NOT NULL,
    messaging_service_sid TEXT NOT NULL,
    date_created          INTEGER NOT NULL,
    date_updated          INTEGER NOT NULL,
    PRIMARY KEY (service_sid, country)
);
