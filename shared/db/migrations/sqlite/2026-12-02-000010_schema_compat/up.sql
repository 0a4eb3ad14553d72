-- Rolling deploys run two releases at once: the previous release keeps serving on the
-- schema the next one migrated. So migrations expand only (new tables, new columns
-- that are nullable or have a default, new indexes), and the release after the one
-- that stopped using something removes it (contract). A contract migration sets
-- oldest_reader to the newest migration a binary must know to work without what it
-- removed; binaries that know less then refuse the database with a message instead
-- of failing on a missing column. No row: every binary since this migration works.
CREATE TABLE schema_compat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    oldest_reader TEXT NOT NULL
);
