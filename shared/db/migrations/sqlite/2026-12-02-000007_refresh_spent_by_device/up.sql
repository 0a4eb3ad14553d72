-- The device (a hash of its device cookie's nonce) that spent each refresh token: a
-- spent token presented again within seconds is a race of that device's own tabs only
-- when the same device presents it; a copy of the token carries no device cookie.
ALTER TABLE refresh_tokens ADD COLUMN spent_by_device TEXT;
