DROP TABLE page_builds;
ALTER TABLE sessions DROP COLUMN authenticated_at;
DROP TABLE audit_log;
