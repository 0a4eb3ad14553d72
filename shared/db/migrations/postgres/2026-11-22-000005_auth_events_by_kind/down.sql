DROP INDEX auth_events_key_kind_idx;
CREATE INDEX auth_events_key_idx ON auth_events (login_key, created_at);
