-- The admin console's audit log: every admin action and every promotion from the
-- command line, with who, whom, what, when, from which address and the request id.
-- Append-only: the triggers below refuse UPDATE, DELETE and TRUNCATE, whoever asks.
-- No foreign keys: an entry outlives the accounts it names (their ids and addresses
-- as they were).
CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    created_at  TIMESTAMP NOT NULL,
    -- The admin's account id; NULL for the command line.
    actor_id    TEXT,
    -- The admin's address then, or "command line (<unix user>)".
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_id   TEXT,
    -- The account's address then.
    target      TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    -- What else the action needs said (a job's id, the role given), never a secret.
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id);
CREATE INDEX audit_log_target_idx ON audit_log (target_id, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, id);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- When the owner of a session last proved who they are in it: the sign-in, or a
-- password confirmation since (the admin console asks for one within 15 minutes
-- before a change). Sessions of the previous release count from their sign-in.
ALTER TABLE sessions ADD COLUMN authenticated_at TIMESTAMP;
UPDATE sessions SET authenticated_at = created_at;

-- The static site's full builds, newest last: the admin console shows the last one
-- (the page generator has no port to ask).
CREATE TABLE page_builds (
    id          BIGSERIAL PRIMARY KEY,
    host        TEXT NOT NULL,
    version     TEXT NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    pages       BIGINT NOT NULL
);
