//! Operations: the real scripts and binaries as a sysadmin runs them (release, deploy
//! over ssh, doctor, backup and restore, restarts), against the real fleet on SQLite
//! and PostgreSQL. Each test has its own database, data folder and free ports; a
//! component the machine lacks fails the test in CI and skips it, with the reason,
//! elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use flotilla_testkit::{Fleet, TestDb, on_both_databases};

mod backup;
mod doctor;
mod multihost;
mod release;
mod rolling;
mod units;
