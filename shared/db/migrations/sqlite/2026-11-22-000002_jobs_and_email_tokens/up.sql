-- Single-use tokens sent by email (verification, later reset and change of address).
-- Only the SHA-256 of a token is stored.
CREATE TABLE email_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    email      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose, created_at);
CREATE INDEX email_tokens_expires_idx ON email_tokens (expires_at);

-- The job queue (transactional outbox): rows written in the same transaction as the
-- change that causes them, claimed by workers with a lease.
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    run_after       TIMESTAMP NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    locked_until    TIMESTAMP,
    locked_by       TEXT,
    last_error      TEXT,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    done_at         TIMESTAMP,
    dead_at         TIMESTAMP
);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key);
CREATE INDEX jobs_due_idx ON jobs (run_after) WHERE done_at IS NULL AND dead_at IS NULL;
