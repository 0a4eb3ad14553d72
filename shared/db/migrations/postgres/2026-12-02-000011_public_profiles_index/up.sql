-- The static site reads the public profiles in username order, a chunk at a time
-- (flotilla-pages): this index holds exactly them, in that order, with what the lists
-- show (name, display name, joined, changed), so that each chunk of the lists is a
-- range of the index alone, not a scan of every open account and a sort.
CREATE INDEX users_public_username_idx ON users (username, display_name, created_at, updated_at)
    WHERE is_public = 1 AND username IS NOT NULL AND email_verified_at IS NOT NULL
      AND disabled_at IS NULL AND deleted_at IS NULL;
