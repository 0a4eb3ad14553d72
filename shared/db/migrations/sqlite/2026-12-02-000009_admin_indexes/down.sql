DROP INDEX auth_events_kind_created_idx;
DROP INDEX users_open_created_idx;
DROP INDEX auth_events_user_kind_idx;
DROP INDEX users_unverified_created_idx;
DROP INDEX users_closed_created_idx;
DROP INDEX users_disabled_created_idx;
DROP INDEX users_admins_created_idx;
DROP INDEX users_created_idx;
