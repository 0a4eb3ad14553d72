-- The address a mail job goes to, as a column: the purge of a closed account finds its
-- failed mails by it, and nothing has to match inside the JSON payload. Jobs of the
-- first release carry it in their payload: copied over once here (a done job's
-- payload is '{}', which has none).
ALTER TABLE jobs ADD COLUMN recipient TEXT;
UPDATE jobs SET recipient = payload::jsonb ->> 'to'
    WHERE kind = 'email'
      AND CASE WHEN payload LIKE '{%' THEN jsonb_typeof(payload::jsonb -> 'to') = 'string' ELSE false END;
CREATE INDEX jobs_recipient_idx ON jobs (recipient) WHERE recipient IS NOT NULL;
