DROP TABLE auth_events;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
