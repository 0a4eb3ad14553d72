//! flotilla-admin: the operator's room, for accounts with the `admin` role. HTML pages
//! for people and JSON for scripts on the same routes, as the other services do.
//!
//! | route | |
//! |---|---|
//! | `GET /admin` | overview: accounts, sign-ins per day (an SVG chart), jobs, the fleet |
//! | `GET /admin/users?q=&status=&role=&after=&limit=` | search, keyset-paginated |
//! | `GET /admin/users/{id}` | one account: fields, second factors (never a secret), sessions, auth events, jobs, audit |
//! | `POST /admin/users/{id}/{action}` | disable, enable, promote, demote, revoke-sessions, force-password-reset, resend-verification, reset-factors, delete |
//! | `GET /admin/audit?actor=&target=&action=&before=&limit=` | the audit log, newest first (`format=jsonl`: the export) |
//! | `GET /admin/jobs?state=&kind=` | jobs by state and kind, dead ones with their error |
//! | `POST /admin/jobs/{id}/retry` | a dead job queued again |
//! | `GET /admin/fleet` | every service's health and readiness |
//!
//! Every route needs a signed-in admin ([`operator::Operator`]); every change also a
//! sign-in or password confirmation within `FLOTILLA_ADMIN_REAUTH_SECS` (with the
//! second factor's code when the admin's account has one), and adds an entry to the
//! append-only audit log in the transaction that makes it. With
//! `FLOTILLA_ADMIN_REQUIRE_MFA`, every route also needs an admin with a second factor
//! and a session confirmed with it.
//!
//! Commands: `flotilla-admin promote EMAIL` and `demote EMAIL` (the first admin), and
//! `reset-factors EMAIL` (an admin who lost their authenticator app while the console
//! requires one).

mod account;
mod actions;
mod audit;
mod cli;
mod docs;
mod errors;
pub mod fleet;
pub mod jobs;
pub mod operator;
pub mod overview;
mod users;

#[cfg(test)]
mod test_support;

use std::sync::Arc;

use actix_web::web;
use chrono::TimeDelta;
use flotilla_auth::{Auth, AuthConfig};
use flotilla_bus::WakeSender;
use flotilla_kit::{Api, Command, ConfigError, Env, Provide, Service, State};

pub static SERVICE: Service = Service {
    name: "admin",
    default_port: 7104,
    api,
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
        Command {
            name: "reset-factors",
            summary: "EMAIL  remove the authenticator app and recovery codes, end every session (audited)",
            run: cli::reset_factors,
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
    /// `FLOTILLA_ADMIN_FLEET` and `FLOTILLA_ADMIN_FLEET_TIMEOUT_MS`: the instances the
    /// fleet page asks.
    pub fleet: fleet::FleetConfig,
    /// `FLOTILLA_RESET_TOKEN_MINUTES` (60), as login reads it: how long the reset link
    /// of a forced password reset works.
    pub reset_ttl: TimeDelta,
    /// `FLOTILLA_VERIFY_TOKEN_HOURS` (48), as signup reads it: how long a confirmation
    /// link sent again from the console works.
    pub verify_ttl: TimeDelta,
    /// `FLOTILLA_ADMIN_REQUIRE_MFA` (false): whether the console is only for admins with
    /// a second factor, in a session confirmed with it. Off by default, so that turning
    /// it on is a decision taken once the admins have set one up (else they are shut
    /// out; `flotilla-admin reset-factors` and a new app let one back in).
    pub require_mfa: bool,
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
            fleet: fleet::FleetConfig::from_env(env)?,
            reset_ttl: flotilla_auth::reset_link_ttl(env)?,
            verify_ttl: flotilla_auth::verify_link_ttl(env)?,
            require_mfa: env.flag("FLOTILLA_ADMIN_REQUIRE_MFA", false)?,
        })
    }
}

/// Admin's state, beside the kit's.
pub struct Admin {
    pub config: AdminConfig,
    pub auth: Auth,
    pub wake: WakeSender,
    pub fleet: fleet::FleetCheck,
}

fn setup(state: &web::Data<State>) -> anyhow::Result<Provide> {
    let env = Env::from_process();
    let config = AdminConfig::from_env(&env, &state.config)?;
    let auth = Auth::start_for(AuthConfig::from_env(&env, &state.config, false)?, state)?;
    let admin = web::Data::new(Admin {
        wake: WakeSender::start(&config.wake)?,
        fleet: fleet::FleetCheck::new(config.fleet.clone()),
        auth: auth.clone(),
        config,
    });
    let auth = web::Data::new(auth);
    Ok(Arc::new(move |data| {
        data.app_data(admin.clone()).app_data(auth.clone());
    }))
}

/// The console's routes, each described by its handler's attribute.
fn api(api: Api) -> Api {
    api.route::<overview::__path_show, _, _>(overview::show)
        .route::<overview::__path_show_slash, _, _>(overview::show_slash)
        .route::<users::__path_list, _, _>(users::list)
        .route::<account::__path_show, _, _>(account::show)
        .route::<actions::__path_act, _, _>(actions::act)
        .route::<audit::__path_audit, _, _>(audit::audit)
        .route::<jobs::__path_list, _, _>(jobs::list)
        .route::<jobs::__path_retry, _, _>(jobs::retry)
        .route::<fleet::__path_show, _, _>(fleet::show)
}

/// A time as the console shows and answers it: `2026-12-02T10:05:00Z` (UTC).
pub fn utc(at: chrono::NaiveDateTime) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::SERVICE;

    #[test]
    fn every_route_is_described_once_and_the_document_holds_together() {
        assert_eq!(SERVICE.api().problems(), Vec::<String>::new());
    }

    #[test]
    fn the_action_is_one_of_a_fixed_set_named_as_the_route_takes_it() {
        let doc = serde_json::to_value(SERVICE.api().document()).unwrap();
        let act = &doc["paths"]["/admin/users/{id}/{action}"]["post"];
        let action = act["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "action")
            .unwrap();
        let names: Vec<&str> = super::actions::Action::ALL
            .iter()
            .map(|a| a.as_str())
            .collect();
        assert_eq!(action["in"], "path");
        assert_eq!(action["schema"]["enum"], serde_json::json!(names));
    }
}
