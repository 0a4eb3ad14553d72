//! `flotilla-worker backup-db PATH` and `flotilla-worker restore-db PATH`: the
//! database's part of `scripts/backup` and `scripts/restore`, which add the signing
//! keys, the bus secret, the archive and its checksums. On the worker because a stock
//! server has no sqlite3 program, and every host of a release has this binary.
//!
//! Each prints what it wrote or loaded as `key=value` lines on standard output
//! (`backend`, `database` with any password hidden, `schema`, `accounts`), for the
//! scripts' manifest and messages. They read `DATABASE_URL` (or `FLOTILLA_DATA_DIR`'s
//! default database), the pool's timeouts, and `FLOTILLA_PG_BIN_DIR` (PostgreSQL: the
//! folder of `pg_dump` and `pg_restore`; unset, the PATH's).

use std::path::{Path, PathBuf};

use anyhow::bail;
use flotilla_db::PoolConfig;
use flotilla_db::backup::{PgTools, Summary};
use flotilla_kit::Env;

pub fn backup_db(args: &[String]) -> anyhow::Result<()> {
    let [path] = args else {
        bail!("usage: flotilla-worker backup-db PATH (a file that does not exist yet)");
    };
    let (database, pg) = configuration()?;
    let summary = flotilla_db::backup::backup(&database, Path::new(path), &pg)?;
    print!("{}", report(&database, &summary));
    Ok(())
}

pub fn restore_db(args: &[String]) -> anyhow::Result<()> {
    let [path] = args else {
        bail!("usage: flotilla-worker restore-db PATH (a copy written by backup-db)");
    };
    let (database, pg) = configuration()?;
    let summary = flotilla_db::backup::restore(&database, Path::new(path), &pg)?;
    print!("{}", report(&database, &summary));
    Ok(())
}

fn configuration() -> anyhow::Result<(PoolConfig, PgTools)> {
    let env = Env::from_process();
    let data_dir = flotilla_kit::config::data_dir(&env)?;
    let database = flotilla_kit::config::database(&env, &data_dir)?;
    let pg = PgTools {
        dir: env.raw("FLOTILLA_PG_BIN_DIR").map(PathBuf::from),
    };
    Ok((database, pg))
}

fn report(database: &PoolConfig, summary: &Summary) -> String {
    format!(
        "backend={}\ndatabase={}\nschema={}\naccounts={}\n",
        summary.backend,
        database.url.redacted(),
        summary.schema.as_deref().unwrap_or("none"),
        summary.accounts
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_hides_the_password() {
        let database = PoolConfig {
            url: flotilla_db::DatabaseUrl::parse("postgres://app:s3cret@db/flotilla").unwrap(),
            max_size: 1,
            timeout: std::time::Duration::from_secs(1),
            busy_timeout: std::time::Duration::from_secs(1),
        };
        let summary = Summary {
            backend: flotilla_db::Backend::Postgres,
            schema: Some("20261202000009".into()),
            accounts: 3,
        };
        assert_eq!(
            report(&database, &summary),
            "backend=postgres\ndatabase=postgres://app:***@db/flotilla\n\
             schema=20261202000009\naccounts=3\n"
        );
    }
}
