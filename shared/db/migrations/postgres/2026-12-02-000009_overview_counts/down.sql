DROP INDEX auth_events_kind_created_idx;
DROP INDEX users_open_created_idx;
DROP INDEX users_open_disabled_idx;
DROP INDEX users_open_unverified_idx;
DROP INDEX users_closed_idx;
