DROP INDEX jobs_recipient_idx;
ALTER TABLE jobs DROP COLUMN recipient;
