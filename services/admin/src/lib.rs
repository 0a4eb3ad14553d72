//! flotilla-admin: the operator's room, for accounts with the `admin` role. HTML pages
//! for people and JSON for scripts on the same routes, as the other services do.
//!
//! | route | |
//! |---|---|
//! | `GET /admin` | overview: accounts, sign-ins per day (an SVG chart), jobs, the fleet |
//! | `GET /admin/users?q=&status=&role=&after=&limit=` | search, keyset-paginated |
//! | `GET /admin/users/{id}` | one account: fields, sessions, auth events, jobs, audit |
//! | `POST /admin/users/{id}/{action}` | disable, enable, promote, demote, revoke-sessions, force-password-reset, resend-verification, delete |
//! | `GET /admin/audit?actor=&target=&action=&before=` | the audit log (`format=jsonl`: export) |
//! | `GET /admin/jobs?state=&kind=` | jobs by state and kind, dead ones with their error |
//! | `POST /admin/jobs/{id}/retry` | a dead job queued again |
//! | `GET /admin/fleet` | every service's health and readiness |
//!
//! Every route needs a signed-in admin ([`operator::Operator`]); every change also a
//! sign-in or password confirmation within `FLOTILLA_ADMIN_REAUTH_SECS`, and adds an
//! entry to the append-only audit log in the transaction that makes it.
//!
//! Commands: `flotilla-admin promote EMAIL` and `demote EMAIL` (the first admin).

mod cli;
mod errors;
pub mod operator;
mod users;

use std::sync::Arc;

use actix_web::web;
use chrono::TimeDelta;
use flotilla_auth::{Auth, AuthConfig};
use flotilla_bus::WakeSender;
use flotilla_kit::{Command, ConfigError, Env, Routes, Service, State};

pub static SERVICE: Service = Service {
    name: "admin",
    default_port: 7104,
    setup,
    background: None,
    commands: &[
        Command {
            name: "promote",
            summary: "EMAIL  give an account the admin role (audited)",
            run: cli::promote,
        },
        Command {
            name: "demote",
            summary: "EMAIL   take the admin role back (audited; never the last admin)",
            run: cli::demote,
        },
    ],
};

/// What admin reads beyond the kit's configuration.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub public_url: String,
    /// `FLOTILLA_ADMIN_REAUTH_SECS` (900): how long a sign-in or a password
    /// confirmation allows changes.
    pub reauth_window: TimeDelta,
    /// `FLOTILLA_BUS_WAKE`: where the worker takes wake-ups (mails, purges).
    pub wake: flotilla_bus::BusEndpoint,
}

impl AdminConfig {
    pub fn from_env(env: &Env, kit: &flotilla_kit::Config) -> Result<Self, ConfigError> {
        Ok(Self {
            public_url: kit.public_url.clone(),
            reauth_window: TimeDelta::seconds(env.number(
                "FLOTILLA_ADMIN_REAUTH_SECS",
                900,
                60..=24 * 3600,
            )?),
            wake: flotilla_kit::config::bus(env)?.wake,
        })
    }
}

/// Admin's state, beside the kit's.
pub struct Admin {
    pub config: AdminConfig,
    pub auth: Auth,
    pub wake: WakeSender,
}

fn setup(state: &web::Data<State>) -> anyhow::Result<Routes> {
    let env = Env::from_process();
    let config = AdminConfig::from_env(&env, &state.config)?;
    let auth = Auth::start(
        AuthConfig::from_env(&env, &state.config, false)?,
        state.pool.clone(),
    )?;
    let checker = auth.clone();
    state.add_ready_check(Arc::new(move || checker.readiness()));
    let admin = web::Data::new(Admin {
        wake: WakeSender::start(&config.wake)?,
        auth: auth.clone(),
        config,
    });
    let auth = web::Data::new(auth);
    Ok(Arc::new(move |cfg| {
        cfg.app_data(admin.clone())
            .app_data(auth.clone())
            .configure(users::routes);
    }))
}
