use std::collections::BTreeSet;
use std::fs::File;

use anyhow::{Context, anyhow};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{AnyConnection, DatabaseUrl};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Any number, as long as every flotilla binary uses the same one.
const PG_MIGRATION_LOCK: i64 = 0x666c_6f74_696c_6c61; // "flotilla"

/// How the database's schema compares with the one this binary was built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    Current,
    /// Migrations this binary has that the database lacks: run `migrate`.
    Behind {
        pending: Vec<String>,
    },
    /// Migrations the database has that this binary does not know, which only added
    /// to the schema: a newer release migrated it during a rolling deploy, and this
    /// binary keeps working on it (docs/operations.md, "Upgrades").
    Newer {
        unknown: Vec<String>,
    },
    /// Migrations the database has that this binary does not know, among them one
    /// that removed or changed what this binary reads (a contract migration raised
    /// `schema_compat.oldest_reader` past this binary's newest migration): deploy the
    /// newer version here too.
    Ahead {
        unknown: Vec<String>,
    },
}

fn known_versions(conn: &AnyConnection) -> anyhow::Result<BTreeSet<String>> {
    let names: Vec<String> = match conn {
        AnyConnection::Sqlite(_) => {
            diesel::migration::MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE)
                .map_err(|e| anyhow!("embedded SQLite migrations: {e}"))?
                .iter()
                .map(|m| m.name().version().to_string())
                .collect()
        }
        AnyConnection::Postgresql(_) => {
            diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES)
                .map_err(|e| anyhow!("embedded PostgreSQL migrations: {e}"))?
                .iter()
                .map(|m| m.name().version().to_string())
                .collect()
        }
    };
    Ok(names.into_iter().collect())
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

/// The versions recorded in the database, read without creating anything (so that a
/// read-only check never takes a write lock).
fn applied_versions(conn: &mut AnyConnection) -> anyhow::Result<BTreeSet<String>> {
    let exists_sql = match conn {
        AnyConnection::Sqlite(_) => {
            "SELECT name AS version FROM sqlite_master \
             WHERE type = 'table' AND name = '__diesel_schema_migrations'"
        }
        AnyConnection::Postgresql(_) => {
            "SELECT table_name::text AS version FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '__diesel_schema_migrations'"
        }
    };
    let exists: Vec<Version> = diesel::sql_query(exists_sql)
        .load(conn)
        .context("cannot read the database's catalogue")?;
    if exists.is_empty() {
        return Ok(BTreeSet::new());
    }
    let rows: Vec<Version> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load(conn)
        .context("cannot read the applied migrations")?;
    Ok(rows.into_iter().map(|r| r.version).collect())
}

/// The migrations this binary knows and those the database records, by version;
/// read without writing.
pub fn migration_versions(
    conn: &mut AnyConnection,
) -> anyhow::Result<(BTreeSet<String>, BTreeSet<String>)> {
    Ok((known_versions(conn)?, applied_versions(conn)?))
}

/// The newest migration applied to the database (its version, e.g. `20261202000009`),
/// or `None` for a database never migrated: the schema version a backup records.
pub fn newest_applied(conn: &mut AnyConnection) -> anyhow::Result<Option<String>> {
    Ok(applied_versions(conn)?.pop_last())
}

pub fn schema_status(conn: &mut AnyConnection) -> anyhow::Result<SchemaStatus> {
    let (known, applied) = migration_versions(conn)?;
    let unknown: Vec<String> = applied.difference(&known).cloned().collect();
    let pending: Vec<String> = known.difference(&applied).cloned().collect();
    if !unknown.is_empty() {
        // Newer and missing some of ours at once: not a database a release made.
        if !pending.is_empty() {
            return Ok(SchemaStatus::Ahead { unknown });
        }
        let newest_known = known.last().cloned().unwrap_or_default();
        return Ok(match oldest_reader(conn)? {
            Some(floor) if floor > newest_known => SchemaStatus::Ahead { unknown },
            _ => SchemaStatus::Newer { unknown },
        });
    }
    if !pending.is_empty() {
        return Ok(SchemaStatus::Behind { pending });
    }
    Ok(SchemaStatus::Current)
}

/// The newest migration a binary must know to work on this database: raised by a
/// contract migration (one that drops or changes what older binaries read), absent
/// while every migration only added.
fn oldest_reader(conn: &mut AnyConnection) -> anyhow::Result<Option<String>> {
    #[derive(QueryableByName)]
    struct Floor {
        #[diesel(sql_type = Text)]
        oldest_reader: String,
    }
    let rows: Vec<Floor> =
        diesel::sql_query("SELECT oldest_reader FROM schema_compat WHERE id = 1")
            .load(conn)
            .context("cannot read schema_compat")?;
    Ok(rows.into_iter().next().map(|r| r.oldest_reader))
}

/// Applies the pending migrations and returns their versions. Holds a lock meanwhile
/// (a lock file beside the SQLite database, an advisory lock on PostgreSQL), so two
/// processes started at once never migrate together: the second waits, then finds
/// nothing left to do.
pub fn migrate(conn: &mut AnyConnection, url: &DatabaseUrl) -> anyhow::Result<Vec<String>> {
    match schema_status(conn)? {
        SchemaStatus::Ahead { unknown } => {
            return Err(anyhow!(
                "the database has migrations this binary does not know ({}): \
                 it was migrated by a newer flotilla; deploy that version instead",
                unknown.join(", ")
            ));
        }
        // A newer release migrated it, compatibly: nothing for this one to do.
        SchemaStatus::Newer { .. } => return Ok(Vec::new()),
        SchemaStatus::Current | SchemaStatus::Behind { .. } => {}
    }
    let applied = match conn {
        AnyConnection::Sqlite(inner) => {
            let _lock = match url.lock_path() {
                Some(path) => {
                    let file = File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    file.lock()
                        .with_context(|| format!("cannot lock {}", path.display()))?;
                    Some(file)
                }
                None => None,
            };
            inner
                .run_pending_migrations(SQLITE)
                .map_err(|e| anyhow!("SQLite migration failed: {e}"))?
                .iter()
                .map(ToString::to_string)
                .collect()
        }
        AnyConnection::Postgresql(inner) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
                .execute(inner)
                .context("cannot take the migration lock")?;
            let result = inner
                .run_pending_migrations(POSTGRES)
                .map(|done| done.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| anyhow!("PostgreSQL migration failed: {e}"));
            diesel::sql_query(format!("SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
                .execute(inner)
                .context("cannot release the migration lock")?;
            result?
        }
    };
    Ok(applied)
}

/// Applies the next `count` pending migrations (tests of what a migration does to the
/// rows an earlier schema held).
#[cfg(test)]
pub(crate) fn migrate_next(conn: &mut AnyConnection, count: usize) {
    for _ in 0..count {
        let done = match conn {
            AnyConnection::Sqlite(inner) => inner.run_next_migration(SQLITE).map(|_| ()),
            AnyConnection::Postgresql(inner) => inner.run_next_migration(POSTGRES).map(|_| ()),
        };
        if let Err(e) = done {
            panic!("migration failed: {e}");
        }
    }
}
