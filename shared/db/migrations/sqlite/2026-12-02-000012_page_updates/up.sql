-- The static site's last incremental update on each host that writes it
-- (flotilla-pages watch), for the admin console's fleet page, which cannot read the
-- status file on that host: one row per host, replaced at each update.
CREATE TABLE page_updates (
    host        TEXT PRIMARY KEY NOT NULL,
    version     TEXT NOT NULL,
    at          TIMESTAMP NOT NULL,
    duration_ms BIGINT NOT NULL,
    changed     BIGINT NOT NULL
);
