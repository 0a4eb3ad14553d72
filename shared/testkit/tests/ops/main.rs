//! Operations: the real scripts and binaries as a sysadmin runs them (release, deploy
//! over ssh, doctor, backup and restore, restarts), against the real fleet on SQLite
//! and PostgreSQL. Each test has its own database, data folder and free ports; a
//! component the machine lacks fails the test in CI and skips it, with the reason,
//! elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use flotilla_testkit::{Fleet, TestDb};

/// Declares each test twice, `name::sqlite` and `name::postgres`, each with a database
/// of its own. The PostgreSQL one needs the cluster `make test` starts.
macro_rules! on_both_databases {
    ($(fn $name:ident($db:ident: TestDb) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn run($db: TestDb) $body

                #[test]
                fn sqlite() {
                    run(TestDb::sqlite());
                }

                #[test]
                fn postgres() {
                    if let Some(db) = TestDb::postgres() {
                        run(db);
                    }
                }
            }
        )*
    };
}

mod backup;
mod multihost;
mod release;
mod rolling;
mod units;
