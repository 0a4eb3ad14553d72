//! flotilla-signup: account creation and email verification, in HTML forms and JSON.
//!
//! | route | |
//! |---|---|
//! | `GET /signup` | the form |
//! | `POST /signup` | JSON `{"email","password","username"?}` → 202, or a form post → 303 |
//! | `GET /signup/check-email` | "check your email" |
//! | `GET /signup/verify?token=…` | a verification link: a page whose button posts the token |
//! | `POST /signup/verify` | `{"token"}` (or the page's form) uses the link |
//! | `GET`/`POST /signup/resend` | a new link for an unverified address (202 always) |
//!
//! A signup with an address that already has an account answers exactly like a new
//! one, and the address's owner is told by email instead. One transaction writes the
//! user, the token (its hash only) and the email job; the worker is woken after commit.

mod domain;
mod errors;
mod handlers;
mod pages;
#[cfg(test)]
mod proptests;
mod store;

use std::sync::Arc;

use chrono::TimeDelta;
use flotilla_auth::{HashPool, PasswordSettings};
use flotilla_bus::WakeSender;
use flotilla_kit::actix_web::web;
use flotilla_kit::{Api, ConfigError, Env, Provide, Service, State};

pub use domain::{EmailAddress, NewAccount, SignupInput, Username};

pub static SERVICE: Service = Service {
    name: "signup",
    default_port: 7101,
    api,
    setup,
    background: None,
    commands: &[],
};

/// What signup reads beyond the kit's configuration.
#[derive(Debug, Clone)]
pub struct SignupConfig {
    /// The origin in links (the kit's `FLOTILLA_PUBLIC_URL`).
    pub public_url: String,
    /// The password policy and hashing (shared with login and profile).
    pub passwords: PasswordSettings,
    /// `FLOTILLA_VERIFY_TOKEN_HOURS` (default 48): how long a verification link works.
    pub token_ttl: TimeDelta,
    /// At most one new link per address per this interval (one minute).
    pub resend_interval: TimeDelta,
    /// `FLOTILLA_BUS_WAKE`: where the worker takes wake-ups (and the bus secret).
    pub wake: flotilla_bus::BusEndpoint,
}

impl SignupConfig {
    pub fn from_env(env: &Env, public_url: &str) -> Result<Self, ConfigError> {
        let public_url = public_url.to_owned();
        Ok(Self {
            public_url,
            passwords: PasswordSettings::from_env(env)?,
            token_ttl: flotilla_auth::verify_link_ttl(env)?,
            resend_interval: TimeDelta::minutes(1),
            wake: flotilla_kit::config::bus(env)?.wake,
        })
    }
}

/// Signup's state, beside the kit's.
pub struct Signup {
    pub config: SignupConfig,
    pub hashes: HashPool,
    pub wake: WakeSender,
}

/// Signup's routes, each described by its handler's attribute.
fn api(api: Api) -> Api {
    use handlers::*;
    api.route::<__path_form, _, _>(form)
        .route::<__path_create, _, _>(create)
        .route::<__path_check_email, _, _>(check_email)
        .route::<__path_verify_page, _, _>(verify_page)
        .route::<__path_verify, _, _>(verify)
        .route::<__path_resend_form, _, _>(resend_form)
        .route::<__path_resend, _, _>(resend)
}

fn setup(state: &web::Data<State>) -> anyhow::Result<Provide> {
    let config = SignupConfig::from_env(&Env::from_process(), &state.config.public_url)?;
    let signup = web::Data::new(Signup {
        hashes: config.passwords.pool(),
        wake: WakeSender::start(&config.wake)?,
        config,
    });
    Ok(Arc::new(move |data| {
        data.app_data(signup.clone());
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_described_once_and_the_document_holds_together() {
        assert_eq!(super::SERVICE.api().problems(), Vec::<String>::new());
    }
}
