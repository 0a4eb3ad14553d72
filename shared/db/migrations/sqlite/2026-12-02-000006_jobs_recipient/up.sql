-- The address a mail job goes to, as a column: the purge of a closed account finds its
-- failed mails by it, and nothing has to match inside the JSON payload. Jobs of the
-- first release carry it in their payload: copied over once here.
ALTER TABLE jobs ADD COLUMN recipient TEXT;
UPDATE jobs SET recipient = json_extract(payload, '$.to')
    WHERE kind = 'email'
      AND CASE WHEN json_valid(payload) THEN json_type(payload, '$.to') = 'text' ELSE 0 END;
CREATE INDEX jobs_recipient_idx ON jobs (recipient) WHERE recipient IS NOT NULL;
