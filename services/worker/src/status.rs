//! `flotilla-worker status`: the database as `scripts/doctor` sees it, in `key=value`
//! lines, read through a connection that cannot write (nothing is created, migrated
//! or tuned, so it is safe against a live fleet and against a database it should not
//! touch):
//!
//! ```text
//! database=sqlite:///var/lib/flotilla/flotilla.db   the URL, its password hidden
//! backend=sqlite                                    or postgres
//! migrations_known=9                                embedded in this binary
//! migrations_applied=9                              recorded in the database
//! schema=current                                    or behind / newer / ahead
//! schema_pending=2026-…                             (behind) what `migrate` would apply
//! schema_unknown=2026-…                             (newer: compatibly, ahead: not)
//!                                                   what a newer release applied
//! jobs_due=0 jobs_scheduled=0 jobs_running=0        the queue (one per line)
//! jobs_dead=0 jobs_dead_24h=0                       dead jobs, and those of the last day
//! jobs_oldest_due_secs=none                         how long the oldest due job has waited
//! pages_last_build=2026-12-02T10:00:00Z             the last full build (page_builds)
//! pages_last_build_age_secs=42                      or `none` for both
//! pages_last_build_host=edge
//! ```
//!
//! The queue and the page builds are read only when this binary can read the schema
//! (current, or newer but compatible): their tables may be other than it expects
//! otherwise. Reads `DATABASE_URL`,
//! `FLOTILLA_DATA_DIR` and `FLOTILLA_DB_*` as the services do.

use std::fmt::Write as _;

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_db::{AnyConnection, DatabaseUrl, PageBuild, SchemaStatus};
use flotilla_kit::Env;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(extra) = args.first() {
        anyhow::bail!("usage: flotilla-worker status (got {extra:?})");
    }
    let env = Env::from_process();
    let data_dir = flotilla_kit::config::data_dir(&env)?;
    let database = flotilla_kit::config::database(&env, &data_dir)?;
    let mut conn = flotilla_db::open_read_only(&database)?;
    let now = flotilla_jobs::now();
    let status = flotilla_db::read_snapshot(&mut conn, |conn| Status::read(conn, now))?;
    print!("{}", status.lines(&database.url));
    Ok(())
}

/// What `status` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub known: usize,
    pub applied: usize,
    pub schema: SchemaStatus,
    /// Read when the schema is current.
    pub backlog: Option<flotilla_jobs::inspect::Backlog>,
    pub last_build: Option<PageBuild>,
    pub now: NaiveDateTime,
}

impl Status {
    pub fn read(conn: &mut AnyConnection, now: NaiveDateTime) -> anyhow::Result<Status> {
        let (known, applied) = flotilla_db::migration_versions(conn)?;
        let schema = flotilla_db::schema_status(conn)?;
        let (backlog, last_build) = if readable(&schema) {
            (
                Some(flotilla_jobs::inspect::backlog(
                    conn,
                    now,
                    now - TimeDelta::days(1),
                )?),
                PageBuild::last(conn)?,
            )
        } else {
            (None, None)
        };
        Ok(Status {
            known: known.len(),
            applied: applied.len(),
            schema,
            backlog,
            last_build,
            now,
        })
    }

    pub fn lines(&self, url: &DatabaseUrl) -> String {
        let mut out = String::new();
        let mut put = |key: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "{key}={value}");
        };
        put("database", &url.redacted());
        put("backend", &url.backend());
        put("migrations_known", &self.known);
        put("migrations_applied", &self.applied);
        match &self.schema {
            SchemaStatus::Current => put("schema", &"current"),
            SchemaStatus::Behind { pending } => {
                put("schema", &"behind");
                put("schema_pending", &pending.join(","));
            }
            SchemaStatus::Newer { unknown } => {
                put("schema", &"newer");
                put("schema_unknown", &unknown.join(","));
            }
            SchemaStatus::Ahead { unknown } => {
                put("schema", &"ahead");
                put("schema_unknown", &unknown.join(","));
            }
        }
        let secs = |at: NaiveDateTime| (self.now - at).num_seconds().max(0);
        if let Some(b) = &self.backlog {
            put("jobs_due", &b.due);
            put("jobs_scheduled", &b.scheduled);
            put("jobs_running", &b.running);
            put("jobs_dead", &b.dead);
            put("jobs_dead_24h", &b.dead_since);
            match b.oldest_due {
                Some(at) => put("jobs_oldest_due_secs", &secs(at)),
                None => put("jobs_oldest_due_secs", &"none"),
            }
        }
        if readable(&self.schema) {
            match &self.last_build {
                Some(build) => {
                    put(
                        "pages_last_build",
                        &build.finished_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    );
                    put("pages_last_build_age_secs", &secs(build.finished_at));
                    put("pages_last_build_host", &build.host);
                }
                None => {
                    put("pages_last_build", &"none");
                    put("pages_last_build_age_secs", &"none");
                }
            }
        }
        out
    }
}

/// Whether this binary reads the schema's tables as they are.
fn readable(schema: &SchemaStatus) -> bool {
    matches!(schema, SchemaStatus::Current | SchemaStatus::Newer { .. })
}
