-- The three tables every verification start writes (verifications, send_attempts, admissions)
-- lose their foreign keys. A foreign key checks each inserted row on its own (a query and a
-- KEY SHARE lock of the parent row, per row: five a start, the same few parent rows each time),
-- and that was the largest part of a batch's write. The batch that writes these rows now locks
-- each parent once (`FOR KEY SHARE` of its services and rate limits, in the writing statement)
-- and writes only the rows whose parent it locked: a concurrent deletion of the parent waits
-- for the batch, or the batch skips what it deleted — what the foreign keys guaranteed.
--
-- What `ON DELETE CASCADE` did is done by the statement-level triggers below: deleting a
-- service deletes its verifications, deleting verifications deletes their send attempts, and
-- deleting a rate limit (itself still cascaded from its service) deletes its admissions. Each
-- trigger's DELETE takes its own snapshot, so it also removes what a batch committed while the
-- deletion waited for its lock.
ALTER TABLE verifications DROP CONSTRAINT IF EXISTS verifications_service_sid_fkey;
ALTER TABLE send_attempts DROP CONSTRAINT IF EXISTS send_attempts_verification_sid_fkey;
ALTER TABLE admissions DROP CONSTRAINT IF EXISTS admissions_rate_limit_id_fkey;

CREATE FUNCTION verilimit_services_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM verifications WHERE service_sid IN (SELECT sid FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER services_deleted AFTER DELETE ON services
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION verilimit_services_deleted();

CREATE FUNCTION verilimit_verifications_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM send_attempts WHERE verification_sid IN (SELECT sid FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER verifications_deleted AFTER DELETE ON verifications
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION verilimit_verifications_deleted();

CREATE FUNCTION verilimit_rate_limits_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM admissions WHERE rate_limit_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER rate_limits_deleted AFTER DELETE ON rate_limits
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION verilimit_rate_limits_deleted();
