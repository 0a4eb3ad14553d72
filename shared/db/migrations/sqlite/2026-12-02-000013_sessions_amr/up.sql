-- How each session's owner proved who they are, as the access token's `amr` claim
-- says it (RFC 8176 names, space-separated): `pwd` for a password today; a second
-- factor adds its own. Kept on the session because every refresh mints a new token
-- from it. Existing sessions were all opened with a password.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
