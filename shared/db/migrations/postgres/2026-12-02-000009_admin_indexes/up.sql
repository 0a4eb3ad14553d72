-- The admin console's user search (GET /admin/users) at a million accounts: every
-- page is one index range scan.
-- Newest first, keyset on (created_at, id).
CREATE INDEX users_created_idx ON users (created_at, id);
-- The rare filters.
CREATE INDEX users_admins_created_idx ON users (created_at, id) WHERE role = 'admin';
CREATE INDEX users_disabled_created_idx ON users (created_at, id)
    WHERE disabled_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX users_closed_created_idx ON users (created_at, id) WHERE deleted_at IS NOT NULL;
CREATE INDEX users_unverified_created_idx ON users (created_at, id)
    WHERE email_verified_at IS NULL AND deleted_at IS NULL;
-- Prefix searches compare and order in code-point order (COLLATE "C"): under the
-- database's own collation (en_US.UTF-8, say) a range of lower(email) is not a prefix.
CREATE INDEX users_email_prefix_idx ON users ((lower(email) COLLATE "C"));
CREATE INDEX users_username_prefix_idx ON users ((lower(username) COLLATE "C"));
-- A prefix with a rare filter: the filter's accounts in prefix order, so that one
-- letter and `status=disabled` reads a page of them, not all of them and a sort.
CREATE INDEX users_admins_email_idx ON users ((lower(email) COLLATE "C"))
    WHERE role = 'admin';
CREATE INDEX users_admins_username_idx ON users ((lower(username) COLLATE "C"))
    WHERE role = 'admin';
CREATE INDEX users_disabled_email_idx ON users ((lower(email) COLLATE "C"))
    WHERE disabled_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX users_disabled_username_idx ON users ((lower(username) COLLATE "C"))
    WHERE disabled_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX users_closed_email_idx ON users ((lower(email) COLLATE "C"))
    WHERE deleted_at IS NOT NULL;
CREATE INDEX users_closed_username_idx ON users ((lower(username) COLLATE "C"))
    WHERE deleted_at IS NOT NULL;
-- Each row's last sign-in: one probe.
CREATE INDEX auth_events_user_kind_idx ON auth_events (user_id, kind, created_at);

-- The overview's figures (GET /admin): new accounts in the last 7 days, and sign-ins
-- and failed sign-ins per day. Its other counts read the partial indexes above.
CREATE INDEX users_open_created_idx ON users (created_at) WHERE deleted_at IS NULL;
CREATE INDEX auth_events_kind_created_idx ON auth_events (kind, created_at);
