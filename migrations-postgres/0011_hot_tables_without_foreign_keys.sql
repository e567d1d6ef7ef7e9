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
-- trigger's DELETE takes its own snapshot (READ COMMITTED, PostgreSQL's default and what every
-- transaction here runs at), so it also removes what a batch committed while the deletion
-- waited for its lock.
ALTER TABLE verifications DROP CONSTRAINT IF EXISTS verifications_service_sid_fkey;
ALTER TABLE send_attempts DROP CONSTRAINT IF EXISTS send_attempts_verification_sid_fkey;
ALTER TABLE admissions DROP CONSTRAINT IF EXISTS admissions_rate_limit_id_fkey;

-- verilimit_delete_children(child table, its column naming the parent, the parent's key).
CREATE FUNCTION verilimit_delete_children() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I WHERE %I IN (SELECT %I FROM gone)', TG_ARGV[0], TG_ARGV[1], TG_ARGV[2]);
    RETURN NULL;
END $$;
CREATE TRIGGER services_deleted AFTER DELETE ON services REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION verilimit_delete_children('verifications', 'service_sid', 'sid');
CREATE TRIGGER verifications_deleted AFTER DELETE ON verifications REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION verilimit_delete_children('send_attempts', 'verification_sid', 'sid');
CREATE TRIGGER rate_limits_deleted AFTER DELETE ON rate_limits REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION verilimit_delete_children('admissions', 'rate_limit_id', 'id');
