-- Indexes that each fit exactly one lookup, so that no plan can mistake one for the other:
-- a recipient's newest pending verification (what every start and check reads, `ORDER BY
-- date_created DESC LIMIT 1`) in that order, and an account's pending verifications by expiry
-- (what the expiry sweep claims). With `status` as the leading column of the sweep's index, a
-- plan made while the table was nearly empty (each connection keeps its plans) could read a
-- recipient's pending verification through it instead: every pending verification, for every
-- start, as the table grew.
CREATE INDEX verifications_pending_by_recipient_newest
    ON verifications (service_sid, recipient, date_created) WHERE status = 'pending';
CREATE INDEX verifications_pending_by_expiry
    ON verifications (account_sid, expires_ms) WHERE status = 'pending';
DROP INDEX verifications_pending_by_recipient;
DROP INDEX verifications_by_status;
