DROP TABLE page_builds;
ALTER TABLE sessions DROP COLUMN authenticated_at;
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
