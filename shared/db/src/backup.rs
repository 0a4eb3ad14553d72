//! A copy of the database taken while the fleet runs, and that copy loaded into a
//! fresh installation: what `flotilla-worker backup-db` and `restore-db` do for
//! `scripts/backup` and `scripts/restore`.
//!
//! - SQLite: `VACUUM INTO` a new file. It is one read transaction, so the services'
//!   writers carry on meanwhile (WAL) and the copy is one consistent state. Restored by
//!   putting the file (mode 0600) where `DATABASE_URL` points, once no process has the
//!   database open.
//! - PostgreSQL: `pg_dump --format=custom` of the snapshot of a repeatable-read
//!   transaction that also reads the schema version and the number of accounts, so
//!   that what the backup says it holds is what it holds. Restored with `pg_restore`
//!   in one transaction into an empty database (or a migrated one without accounts,
//!   emptied first) while no other session is connected. `pg_dump` and `pg_restore`
//!   come from a given folder or the PATH (Debian: postgresql-client); the password
//!   reaches them in `PGPASSWORD`, never on their command line, which every user of
//!   the host can read.
//!
//! A restore is refused, before anything changes, when the database holds an account:
//! it is for a fresh installation, never a merge.

use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::{AnyConnection, Backend, DatabaseUrl, PoolConfig, read_snapshot};

/// What a backup holds, or what a restore loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub backend: Backend,
    /// The newest migration applied (`None`: never migrated).
    pub schema: Option<String>,
    /// Rows of `users`, closed accounts awaiting their purge included.
    pub accounts: i64,
}

/// Where `pg_dump` and `pg_restore` are: a folder, or the PATH.
#[derive(Debug, Clone, Default)]
pub struct PgTools {
    pub dir: Option<PathBuf>,
}

impl PgTools {
    fn command(&self, name: &str) -> Command {
        match &self.dir {
            Some(dir) => Command::new(dir.join(name)),
            None => Command::new(name),
        }
    }

    /// Runs a libpq program against `config`'s database with the password in its
    /// environment; its own messages go to standard error as they come.
    fn run(&self, name: &str, config: &PoolConfig, args: Vec<OsString>) -> anyhow::Result<()> {
        let target = config
            .url
            .libpq_target(config.timeout)
            .map_err(|e| anyhow!("DATABASE_URL: {e}"))?;
        let mut command = self.command(name);
        command
            .args(args)
            .arg("--no-password")
            .arg(format!("--dbname={}", target.url));
        if let Some(password) = &target.password {
            command.env("PGPASSWORD", password);
        }
        let where_ = match &self.dir {
            Some(dir) => format!("in {}", dir.display()),
            None => "on the PATH".to_owned(),
        };
        let status = command.status().map_err(|e| match e.kind() {
            ErrorKind::NotFound => anyhow!(
                "{name} is not {where_}: install PostgreSQL's client programs on this host \
                 (`apt-get install postgresql-client`), of the server's major version or \
                 newer, or name their folder in FLOTILLA_PG_BIN_DIR"
            ),
            _ => anyhow!("cannot run {name} {where_}: {e}"),
        })?;
        if !status.success() {
            bail!(
                "{name} failed ({status}) on {}: its message is above",
                config.url.redacted()
            );
        }
        Ok(())
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The tables of the database (SQLite) or of its current schema (PostgreSQL).
fn tables(conn: &mut AnyConnection) -> anyhow::Result<Vec<String>> {
    let sql = match conn {
        AnyConnection::Sqlite(_) => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name"
        }
        AnyConnection::Postgresql(_) => {
            "SELECT tablename::text AS name FROM pg_tables \
             WHERE schemaname = current_schema() ORDER BY tablename"
        }
    };
    let rows: Vec<Name> = diesel::sql_query(sql)
        .load(conn)
        .context("cannot read the database's catalogue")?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The schema version and the number of accounts.
fn summary(conn: &mut AnyConnection, backend: Backend) -> anyhow::Result<Summary> {
    let accounts = if tables(conn)?.iter().any(|t| t == "users") {
        diesel::sql_query("SELECT COUNT(*) AS n FROM users")
            .get_result::<Count>(conn)
            .context("cannot count the accounts")?
            .n
    } else {
        0
    };
    Ok(Summary {
        backend,
        schema: crate::newest_applied(conn)?,
        accounts,
    })
}

/// Creates `path` empty with mode 0600; refuses one that exists.
fn create_private(path: &Path) -> anyhow::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// Writes a consistent copy of the database to `dest` (a new file, mode 0600), while
/// the services keep running: SQLite through `VACUUM INTO`, PostgreSQL through
/// `pg_dump --format=custom`. On failure nothing is left at `dest`.
pub fn backup(config: &PoolConfig, dest: &Path, pg: &PgTools) -> anyhow::Result<Summary> {
    create_private(dest)?;
    let result = match config.url.backend() {
        Backend::Sqlite => backup_sqlite(config, dest),
        Backend::Postgres => backup_postgres(config, dest, pg),
    };
    if result.is_err() {
        let _ = fs::remove_file(dest);
    }
    result
}

fn sqlite_file(url: &DatabaseUrl) -> anyhow::Result<&Path> {
    url.sqlite_path()
        .ok_or_else(|| anyhow!("DATABASE_URL names an in-memory database: nothing to copy"))
}

fn backup_sqlite(config: &PoolConfig, dest: &Path) -> anyhow::Result<Summary> {
    let source = sqlite_file(&config.url)?;
    if !source.is_file() {
        bail!(
            "there is no database at {} (DATABASE_URL, or FLOTILLA_DATA_DIR's flotilla.db)",
            source.display()
        );
    }
    let dest_text = dest
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8: SQLite cannot be given it", dest.display()))?;
    let mut conn = crate::open(config)?;
    // One read transaction: writers go on meanwhile; the copy is compacted.
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(dest_text)
        .execute(&mut conn)
        .with_context(|| format!("cannot copy the database into {}", dest.display()))?;
    drop(conn);
    let mut copy = AnyConnection::Sqlite(
        diesel::SqliteConnection::establish(dest_text)
            .with_context(|| format!("cannot open the copy {}", dest.display()))?,
    );
    summary(&mut copy, Backend::Sqlite)
}

fn backup_postgres(config: &PoolConfig, dest: &Path, pg: &PgTools) -> anyhow::Result<Summary> {
    let mut conn = crate::open(config)?;
    read_snapshot(&mut conn, |conn| -> anyhow::Result<Summary> {
        let snapshot = diesel::sql_query("SELECT pg_export_snapshot() AS name")
            .get_result::<Name>(conn)
            .context("cannot export a snapshot for pg_dump")?
            .name;
        let summary = summary(conn, Backend::Postgres)?;
        let mut file = OsString::from("--file=");
        file.push(dest);
        pg.run(
            "pg_dump",
            config,
            vec![
                "--format=custom".into(),
                format!("--snapshot={snapshot}").into(),
                file,
            ],
        )?;
        Ok(summary)
    })
}

/// What kind of copy a file is, from its first bytes.
fn backend_of_copy(path: &Path) -> anyhow::Result<Backend> {
    let mut head = [0u8; 16];
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let read = file
        .read(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if head[..read].starts_with(b"SQLite format 3\0") {
        Ok(Backend::Sqlite)
    } else if head[..read].starts_with(b"PGDMP") {
        Ok(Backend::Postgres)
    } else {
        bail!(
            "{} is neither a SQLite database nor a pg_dump archive",
            path.display()
        )
    }
}

/// Refuses a database that holds an account, or (PostgreSQL) tables of something else.
fn refuse_unless_fresh(conn: &mut AnyConnection, url: &DatabaseUrl) -> anyhow::Result<Vec<String>> {
    let tables = tables(conn)?;
    let accounts = summary(conn, url.backend())?.accounts;
    if accounts > 0 {
        let fresh = match url.sqlite_path() {
            Some(path) => format!(
                "stop the fleet, move {} (and its -wal and -shm files) aside",
                path.display()
            ),
            None => "stop the fleet, create an empty database (`createdb --owner=flotilla \
                     NAME`) and point DATABASE_URL at it, or drop and create this one again"
                .to_owned(),
        };
        bail!(
            "{} already holds {accounts} account(s): a backup is restored into a fresh \
             installation only, never merged into one in use. To start fresh, {fresh}, \
             then restore again",
            url.redacted()
        );
    }
    if !tables.is_empty() && !tables.iter().any(|t| t == "__diesel_schema_migrations") {
        let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        bail!(
            "{} holds tables that are not flotilla's ({}{}): restore into an empty database",
            url.redacted(),
            shown.join(", "),
            if tables.len() > 5 { ", …" } else { "" }
        );
    }
    Ok(tables)
}

/// Loads a copy made by [`backup`] into `config`'s database, which must hold no
/// account and be in use by no other process (stop the fleet first): SQLite by putting
/// the file in place (mode 0600), PostgreSQL with `pg_restore` in one transaction.
/// Returns what the restored database holds.
pub fn restore(config: &PoolConfig, source: &Path, pg: &PgTools) -> anyhow::Result<Summary> {
    let kind = backend_of_copy(source)?;
    if kind != config.url.backend() {
        bail!(
            "the backup holds a {kind} database but DATABASE_URL ({}) is {}: a backup is \
             restored to the backend it was taken from",
            config.url.redacted(),
            config.url.backend()
        );
    }
    match kind {
        Backend::Sqlite => restore_sqlite(config, source),
        Backend::Postgres => restore_postgres(config, source, pg),
    }
}

fn restore_sqlite(config: &PoolConfig, source: &Path) -> anyhow::Result<Summary> {
    let target = sqlite_file(&config.url)?;
    let target_text = target
        .to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", target.display()))?;
    if target.exists() {
        let mut conn = AnyConnection::Sqlite(
            diesel::SqliteConnection::establish(target_text)
                .with_context(|| format!("cannot open the database {}", target.display()))?,
        );
        refuse_unless_fresh(&mut conn, &config.url)?;
        // A process that has the file open (a service) would go on with the file it
        // opened, and lose whatever it writes: an exclusive lock tells whether any has.
        if let AnyConnection::Sqlite(inner) = &mut conn {
            inner
                .batch_execute(
                    "PRAGMA busy_timeout = 200; PRAGMA locking_mode = EXCLUSIVE; \
                     BEGIN EXCLUSIVE; COMMIT;",
                )
                .map_err(|e| {
                    anyhow!(
                        "{} is open in another process ({e}): stop the services that use it \
                         first (`systemctl stop flotilla.target`)",
                        target.display()
                    )
                })?;
        }
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("{} names no file", target.display()))?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(".restoring");
    let temp = dir.join(temp_name);
    // A crashed restore's leftover.
    match fs::remove_file(&temp) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", temp.display()));
        }
        _ => {}
    }
    let outcome = (|| -> anyhow::Result<Summary> {
        let mut out = create_private(&temp)?;
        let mut input =
            fs::File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
        std::io::copy(&mut input, &mut out)
            .and_then(|_| out.flush())
            .and_then(|()| out.sync_all())
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let temp_text = temp
            .to_str()
            .ok_or_else(|| anyhow!("{} is not UTF-8", temp.display()))?;
        let mut copy = AnyConnection::Sqlite(diesel::SqliteConnection::establish(temp_text)?);
        let check = diesel::sql_query("PRAGMA quick_check")
            .load::<QuickCheck>(&mut copy)
            .context("cannot check the backup's database")?;
        if check.iter().map(|r| r.quick_check.as_str()).ne(["ok"]) {
            bail!("the backup's database is damaged (SQLite's quick_check failed)");
        }
        let summary = summary(&mut copy, Backend::Sqlite)?;
        if summary.schema.is_none() {
            bail!("the backup's database has no flotilla schema");
        }
        Ok(summary)
    })();
    let summary = match outcome {
        Ok(summary) => summary,
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    };
    // The old file's journal goes with it (it held no account, and nothing has it open).
    for suffix in ["-wal", "-shm"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        match fs::remove_file(PathBuf::from(&side)) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", side.display()));
            }
            _ => {}
        }
    }
    fs::rename(&temp, target)
        .with_context(|| format!("cannot move {} to {}", temp.display(), target.display()))?;
    if let Ok(folder) = fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(summary)
}

#[derive(QueryableByName)]
struct QuickCheck {
    #[diesel(sql_type = Text)]
    quick_check: String,
}

fn restore_postgres(config: &PoolConfig, source: &Path, pg: &PgTools) -> anyhow::Result<Summary> {
    let mut conn = crate::open(config)?;
    let tables = refuse_unless_fresh(&mut conn, &config.url)?;
    let others = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .get_result::<Count>(&mut conn)
    .context("cannot read pg_stat_activity")?
    .n;
    if others > 0 {
        bail!(
            "{others} other session(s) are connected to {}: stop the services that use it \
             first (`systemctl stop flotilla.target` on every host)",
            config.url.redacted()
        );
    }
    if !tables.is_empty() {
        empty_schema(&mut conn, &tables)?;
    }
    let mut file = OsString::new();
    file.push(source);
    pg.run(
        "pg_restore",
        config,
        vec![
            "--no-owner".into(),
            "--no-privileges".into(),
            "--single-transaction".into(),
            "--exit-on-error".into(),
            file,
        ],
    )?;
    summary(&mut conn, Backend::Postgres)
}

/// Drops what a migrated, account-less installation holds (its tables, and the
/// functions and sequences of its schema), so that `pg_restore` finds nothing in the way.
fn empty_schema(conn: &mut AnyConnection, tables: &[String]) -> anyhow::Result<()> {
    crate::write_transaction(conn, |conn| -> anyhow::Result<()> {
        let quoted: Vec<String> = tables.iter().map(|t| quote_ident(t)).collect();
        diesel::sql_query(format!("DROP TABLE {} CASCADE", quoted.join(", ")))
            .execute(conn)
            .context("cannot drop the fresh installation's tables")?;
        let functions: Vec<Name> = diesel::sql_query(
            "SELECT p.oid::regprocedure::text AS name FROM pg_proc p \
             WHERE p.pronamespace = current_schema()::regnamespace AND NOT EXISTS \
             (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
        )
        .load(conn)
        .context("cannot list the schema's functions")?;
        for function in functions {
            diesel::sql_query(format!("DROP FUNCTION {} CASCADE", function.name))
                .execute(conn)
                .with_context(|| format!("cannot drop the function {}", function.name))?;
        }
        let sequences: Vec<Name> = diesel::sql_query(
            "SELECT sequence_name::text AS name FROM information_schema.sequences \
             WHERE sequence_schema = current_schema()",
        )
        .load(conn)
        .context("cannot list the schema's sequences")?;
        for sequence in sequences {
            diesel::sql_query(format!("DROP SEQUENCE {}", quote_ident(&sequence.name)))
                .execute(conn)
                .with_context(|| format!("cannot drop the sequence {}", sequence.name))?;
        }
        Ok(())
    })
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
