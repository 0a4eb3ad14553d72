-- An account closed by its owner: signed out, anonymised at once, and removed with
-- everything about it by a job (purge_user) soon after.
ALTER TABLE users ADD COLUMN deleted_at TIMESTAMP;
