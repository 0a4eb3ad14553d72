//! End-to-end: the real binaries behind the real nginx, over HTTP, on SQLite and on
//! PostgreSQL. Each test gets its own database and its own fleet on free ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use flotilla_testkit::{Fleet, TestDb, on_both_databases};

mod admin;
mod admin_actions;
mod admin_audit;
mod admin_overview;
mod admin_users;
mod apps;
mod binaries;
mod browser;
mod confirm;
mod db_faults;
mod enumeration;
mod faults;
mod fuzz;
mod internal;
mod links;
mod lockout;
mod login;
mod make_run;
mod openapi;
mod pages;
mod passkeys;
mod profile;
mod proxy;
mod second_factor;
mod signup;
mod upgrade;
mod worker;
