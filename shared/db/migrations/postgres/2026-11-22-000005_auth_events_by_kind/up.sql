-- The sign-in throttle counts one kind of event for one address typed within a
-- window: an index range, not a scan of every attempt on that address.
DROP INDEX auth_events_key_idx;
CREATE INDEX auth_events_key_kind_idx ON auth_events (login_key, kind, created_at);
