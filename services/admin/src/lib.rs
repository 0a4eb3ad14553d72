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
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::SERVICE;

    /// Every `$ref` in `value`, wherever it is.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => refs(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_described_once_and_every_reference_resolves() {
        let api = SERVICE.api();
        let text = serde_json::to_string(&api.document()).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();

        // One operation per route, at its method and path.
        let routes = api.operations();
        let mut described = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    [
                        "get", "post", "put", "patch", "delete", "head", "options", "trace"
                    ]
                    .contains(&method.as_str()),
                    "{path}: {method}"
                );
                described.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> = routes
            .iter()
            .map(|(method, path)| (method.to_string(), path.clone()))
            .collect();
        assert_eq!(served.len(), routes.len(), "a route is served twice");
        assert_eq!(described, served);

        // Operation ids are unique; the console's own routes are tagged and need a session.
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "{id} twice");
                if operation["tags"][0] == "admin" {
                    let security = operation["security"].as_array().unwrap();
                    assert_eq!(security.len(), 2, "{method} {path}");
                    assert!(
                        operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
                        "{method} {path}"
                    );
                }
            }
        }
        assert_eq!(
            doc["paths"].as_object().unwrap().len(),
            9 + 4,
            "the console's nine paths and the kit's four"
        );

        // Every reference names a schema of the document.
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target} is no schema of the document"));
            assert!(schemas.contains_key(name), "{target} does not resolve");
        }

        // The action is one of a fixed set, named as the route takes it.
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
