-- The certificate authority of --tls: made at first start and kept here, so restarts (and every
-- instance sharing the database) present the same CA. One row. key_pem is the CA's private key
-- (PKCS#8 PEM): it can issue certificates this database's users trust for the Twilio hostnames.

CREATE TABLE tls_authority (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    cert_pem     TEXT NOT NULL,
    key_pem      TEXT NOT NULL,
    date_created BIGINT NOT NULL
);
