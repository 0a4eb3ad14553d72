-- The static site reads the public profiles in username order, a chunk at a time
-- (flotilla-pages): this index holds exactly them, in that order, so each chunk is a
-- range of it rather than a scan of every open account and a sort.
CREATE INDEX users_public_username_idx ON users (username)
    WHERE is_public = 1 AND username IS NOT NULL AND email_verified_at IS NOT NULL
      AND disabled_at IS NULL AND deleted_at IS NULL;
