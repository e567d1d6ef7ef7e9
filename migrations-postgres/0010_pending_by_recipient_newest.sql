-- Indexes that each fit exactly one lookup, so that no plan can take one for the other: a
-- recipient's newest pending verification (what every start and check reads, `ORDER BY
-- date_created DESC LIMIT 1`) in that order, and an account's pending verifications by expiry
-- (what the expiry sweep claims). Each predicate names a column only its own lookup constrains
-- (`recipient = …`, `expires_ms <= …` imply `IS NOT NULL`), so the other lookup cannot use it:
-- a plan made while the table was nearly empty (each connection keeps its plans) would
-- otherwise read a recipient's pending verification through the sweep's index, or through the
-- old one on (status, expires_ms) — every pending verification, for every start, as the table
-- grew.
CREATE INDEX verifications_pending_by_recipient_newest
    ON verifications (service_sid, recipient, date_created)
    WHERE status = 'pending' AND recipient IS NOT NULL;
CREATE INDEX verifications_pending_by_expiry
    ON verifications (account_sid, expires_ms)
    WHERE status = 'pending' AND expires_ms IS NOT NULL;
DROP INDEX verifications_pending_by_recipient;
DROP INDEX verifications_by_status;
