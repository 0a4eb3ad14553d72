-- Refresh sessions: one per sign-in. Access tokens carry the session id (`sid`);
-- revoking a session is setting revoked_at, which every service catches up from.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Sent back in forms and X-CSRF-Token; the access token carries it too.
    csrf_token      TEXT NOT NULL,
    user_agent      TEXT NOT NULL,
    client_addr     TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    last_used_at    TIMESTAMP NOT NULL,
    -- The session ends at the earlier of the two: idle, or absolute.
    idle_expires_at TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    revoked_at      TIMESTAMP,
    revoked_reason  TEXT
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Refresh tokens, by SHA-256. A token is used once: refreshing marks it used and adds
-- the next; a used one presented again means it was stolen, and ends the session.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

-- What happened to accounts: sign-ins (and failures), sign-outs, password changes.
-- Never a password. login_key is the SHA-256 of the lower-cased address typed, so
-- attempts on addresses with no account are throttled exactly like the others.
CREATE TABLE auth_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id     TEXT REFERENCES users (id) ON DELETE CASCADE,
    login_key   TEXT,
    kind        TEXT NOT NULL,
    session_id  TEXT,
    client_addr TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE INDEX auth_events_key_idx ON auth_events (login_key, created_at);
CREATE INDEX auth_events_user_idx ON auth_events (user_id, created_at);
CREATE INDEX auth_events_created_idx ON auth_events (created_at);
