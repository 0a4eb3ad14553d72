-- The admin console's user search (GET /admin/users) at a million accounts: every
-- page is one index range scan.
-- Newest first, keyset on (created_at, id).
CREATE INDEX users_created_idx ON users (created_at, id);
-- The rare filters, each with the very terms the query writes as SQL text (SQLite uses
-- a partial index only when the query's WHERE contains them literally).
CREATE INDEX users_admins_created_idx ON users (created_at, id) WHERE role = 'admin';
CREATE INDEX users_disabled_created_idx ON users (created_at, id)
    WHERE disabled_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX users_closed_created_idx ON users (created_at, id) WHERE deleted_at IS NOT NULL;
CREATE INDEX users_unverified_created_idx ON users (created_at, id)
    WHERE email_verified_at IS NULL AND deleted_at IS NULL;
-- Prefix searches use the unique indexes on lower(email) and lower(username) (binary
-- collation: a range of them is a prefix).
-- A prefix with a rare filter: the filter's accounts in prefix order, so that one
-- letter and `status=disabled` reads a page of them, not all of them and a sort.
CREATE INDEX users_admins_email_idx ON users (lower(email))
    WHERE role = 'admin';
CREATE INDEX users_admins_username_idx ON users (lower(username))
    WHERE role = 'admin';
CREATE INDEX users_disabled_email_idx ON users (lower(email))
    WHERE disabled_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX users_disabled_username_idx ON users (lower(username))
    WHERE disabled_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX users_closed_email_idx ON users (lower(email))
    WHERE deleted_at IS NOT NULL;
CREATE INDEX users_closed_username_idx ON users (lower(username))
    WHERE deleted_at IS NOT NULL;
-- Each row's last sign-in: one probe.
CREATE INDEX auth_events_user_kind_idx ON auth_events (user_id, kind, created_at);

-- The overview's figures (GET /admin): new accounts in the last 7 days, and sign-ins
-- and failed sign-ins per day. Its other counts read the partial indexes above.
CREATE INDEX users_open_created_idx ON users (created_at) WHERE deleted_at IS NULL;
CREATE INDEX auth_events_kind_created_idx ON auth_events (kind, created_at);
