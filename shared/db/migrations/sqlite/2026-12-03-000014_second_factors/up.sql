-- Second factors (issue 17). Expand-only: a release before this one never reads them.

-- An account's authenticator app (TOTP, RFC 6238): at most one. The secret is sealed
-- with FLOTILLA_FACTOR_KEY (ChaCha20-Poly1305, the account's id as associated data),
-- base64; never stored in clear. last_step is the time step of the last code used:
-- a code is accepted only for a newer step, so none is accepted twice.
CREATE TABLE totp_factors (
    user_id      TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret       TEXT NOT NULL,
    last_step    BIGINT,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);

-- Single-use recovery codes, by HMAC-SHA256 under a key derived from FLOTILLA_FACTOR_KEY
-- (they are 50-bit randoms: no slow hash
-- is needed). Using one deletes its row; making new ones deletes the old.
CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- A sign-in between its password and its second factor: the browser holds the token
-- (a cookie, or the JSON answer's second_step_token), the table its hash. Used once;
-- it ends after a few minutes or a few wrong codes. login_key is where the password
-- step's attempt counted (the device or the address), so the second step's failures
-- count there too; password_check is a hash of the account's password hash then, so a
-- password changed meanwhile ends it.
CREATE TABLE second_steps (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    login_key      TEXT NOT NULL,
    password_check TEXT NOT NULL,
    failures       INTEGER NOT NULL DEFAULT 0,
    created_at     TIMESTAMP NOT NULL,
    expires_at     TIMESTAMP NOT NULL
);
CREATE INDEX second_steps_user_idx ON second_steps (user_id);
CREATE INDEX second_steps_expires_idx ON second_steps (expires_at);

-- Passkeys (WebAuthn), several per account, each named by its owner. credential is
-- webauthn-rs's Passkey as JSON: a public key, the credential's id, its counter and
-- flags, nothing secret. credential_id (base64url) is unique across accounts, as
-- WebAuthn requires of a relying party.
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    credential    TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    last_used_at  TIMESTAMP
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

-- A WebAuthn ceremony between its challenge and its answer: webauthn-rs's state as
-- JSON, by the hash of the token the browser holds. Taken once (deleted when used),
-- for its purpose only (register, second_step, sign_in, confirm) and, but for a
-- password-free sign-in, its account only; it ends after five minutes.
CREATE TABLE passkey_challenges (
    token_hash TEXT PRIMARY KEY NOT NULL,
    purpose    TEXT NOT NULL,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX passkey_challenges_expires_idx ON passkey_challenges (expires_at);
