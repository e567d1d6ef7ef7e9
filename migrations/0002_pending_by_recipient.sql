-- A recipient's pending verification, found without scanning every pending one (PostgreSQL has
-- had this index from its first migration).
CREATE INDEX verifications_pending_by_recipient ON verifications (service_sid, recipient)
    WHERE status = 'pending';
