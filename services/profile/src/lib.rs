//! flotilla-profile: everything a signed-in person can do about their own account, as
//! HTML pages (without JavaScript) and JSON on the same routes.
//!
//! | route | |
//! |---|---|
//! | `GET /profile` | the account page (anonymous browsers go to `/login?next=/profile`) |
//! | `GET /profile/me` | the account as JSON |
//! | `PATCH /profile/me` (form: `POST`) | username, display name, bio, public |
//! | `GET /profile/delete` | "Close your account": what it does, the form that does it |
//! | `DELETE /profile/me` (form: `POST /profile/delete`) | closes the account |
//! | `POST /profile/password` | a new password (and the second factor's `code`, when the account has one); every other session ends |
//! | `POST /profile/email` | a new address (the password, and the `code` with a second factor), confirmed by a link sent to it |
//! | `GET /profile/email/confirm?token=…` | the link: a page whose button posts the token |
//! | `POST /profile/email/confirm` | `{"token"}` (or the page's form) uses the link |
//! | `GET /profile/sessions` | live sessions |
//! | `DELETE /profile/sessions/{id}` (form: `POST …/revoke`) | ends one |
//! | `GET /profile/sessions/revoke-others` | the page that asks before ending them |
//! | `POST /profile/sessions/revoke-others` | ends all but this one |
//! | `GET /profile/factors` | the second factors: the authenticator app's dates, recovery codes left |
//! | `GET /profile/totp` | a new authenticator key: QR code and text (JSON: `secret`, `otpauth_url`, `pending`) |
//! | `POST /profile/totp` | `{"pending","code","password"}` turns it on: 201 with ten recovery codes, shown once |
//! | `GET /profile/totp/remove` | the page that asks before removing the app |
//! | `DELETE /profile/totp` (form: `POST /profile/totp/remove`) | `{"password","code"}` removes the app and its codes |
//! | `GET`/`POST /profile/recovery-codes` | `{"password","code"}`: ten new codes in place of the old (201) |
//! | `POST /profile/passkeys/options` | a registration challenge for a new passkey (for the page's script) |
//! | `POST /profile/passkeys` | `{"name","credential","credential_challenge","password"}` (and the second factor) adds it |
//! | `GET /profile/passkeys/{id}/remove` | the page that asks before removing one |
//! | `DELETE /profile/passkeys/{id}` (form: `POST …/remove`) | `{"password","code"}` (or a passkey) removes it |
//! | `GET /profile/activity` | recent sign-ins and changes |
//! | `GET /profile/export` | everything stored about the account, as a JSON download |
//!
//! Tokens are checked here with login's public keys only; a signed-out session is
//! refused within a second (bus) or the catch-up interval (database).

mod domain;
mod errors;
mod factors;
mod handlers;
mod pages;
#[cfg(test)]
mod proptests;
mod store;

use std::sync::Arc;

use actix_web::web;
use chrono::TimeDelta;
use flotilla_auth::throttle::ThrottleSettings;
use flotilla_auth::{Auth, AuthConfig, HashPool, PasswordChecks, PasswordSettings, SecondFactors};
use flotilla_bus::WakeSender;
use flotilla_kit::actix_web::http::Method;
use flotilla_kit::{Api, ConfigError, Env, Provide, Service, State};

pub static SERVICE: Service = Service {
    name: "profile",
    default_port: 7103,
    api,
    setup,
    background: None,
    commands: &[],
};

/// What profile reads beyond the kit's configuration.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub public_url: String,
    pub passwords: PasswordSettings,
    /// `FLOTILLA_EMAIL_CHANGE_TOKEN_HOURS` (24): how long a new address's link works.
    pub email_change_ttl: TimeDelta,
    /// `FLOTILLA_BUS_WAKE`: where the worker takes wake-ups (and the bus secret).
    pub wake: flotilla_bus::BusEndpoint,
    /// Wrong current passwords allowed before checks are delayed (the sign-in
    /// throttle's `FLOTILLA_LOGIN_*` settings).
    pub throttle: ThrottleSettings,
}

impl ProfileConfig {
    pub fn from_env(env: &Env, kit: &flotilla_kit::Config) -> Result<Self, ConfigError> {
        Ok(Self {
            public_url: kit.public_url.clone(),
            passwords: PasswordSettings::from_env(env)?,
            email_change_ttl: TimeDelta::hours(env.number(
                "FLOTILLA_EMAIL_CHANGE_TOKEN_HOURS",
                store::default_email_change_ttl().num_hours(),
                1..=24 * 14,
            )?),
            wake: flotilla_kit::config::bus(env)?.wake,
            throttle: ThrottleSettings::from_env(env)?,
        })
    }
}

/// Profile's state, beside the kit's.
pub struct Profile {
    pub config: ProfileConfig,
    pub hashes: HashPool,
    pub wake: WakeSender,
    pub auth: Auth,
    /// The account's password asked again (throttled per account, as login's
    /// confirmation is).
    pub checks: PasswordChecks,
    /// The second factors (`FLOTILLA_FACTOR_KEY`): set up here, and their codes asked
    /// for before a sensitive change.
    pub factors: SecondFactors,
}

fn setup(state: &web::Data<State>) -> anyhow::Result<Provide> {
    let env = Env::from_process();
    let config = ProfileConfig::from_env(&env, &state.config)?;
    let auth = Auth::start_for(AuthConfig::from_env(&env, &state.config, false)?, state)?;
    let hashes = config.passwords.pool();
    let profile = web::Data::new(Profile {
        checks: PasswordChecks::new(hashes.clone(), config.throttle),
        factors: SecondFactors::from_env(&env, &config.public_url, config.throttle)?,
        hashes,
        wake: WakeSender::start(&config.wake)?,
        auth: auth.clone(),
        config,
    });
    let auth = web::Data::new(auth);
    Ok(Arc::new(move |data| {
        data.app_data(profile.clone()).app_data(auth.clone());
    }))
}

/// Routes not yet described by their handlers' attributes (issue 18, in progress).
fn api(api: Api) -> Api {
    api.undescribed(Method::GET, "", handlers::page)
        .undescribed(Method::GET, "/me", handlers::me)
        .undescribed(Method::PATCH, "/me", handlers::update)
        .undescribed(Method::POST, "/me", handlers::update)
        .undescribed(Method::DELETE, "/me", handlers::delete)
        .undescribed(Method::GET, "/delete", handlers::close_page)
        .undescribed(Method::POST, "/delete", handlers::delete)
        .undescribed(Method::POST, "/password", handlers::password)
        .undescribed(Method::POST, "/email", handlers::email)
        .undescribed(Method::GET, "/email/confirm", handlers::confirm_email_page)
        .undescribed(Method::POST, "/email/confirm", handlers::confirm_email)
        .undescribed(Method::GET, "/sessions", handlers::sessions)
        .undescribed(
            Method::GET,
            "/sessions/revoke-others",
            handlers::revoke_others_page,
        )
        .undescribed(
            Method::POST,
            "/sessions/revoke-others",
            handlers::revoke_others,
        )
        .undescribed(Method::DELETE, "/sessions/{id}", handlers::revoke)
        .undescribed(Method::POST, "/sessions/{id}/revoke", handlers::revoke)
        .undescribed(Method::GET, "/totp", factors::setup_page)
        .undescribed(Method::POST, "/totp", factors::setup)
        .undescribed(Method::DELETE, "/totp", factors::remove)
        .undescribed(Method::GET, "/totp/remove", factors::remove_page)
        .undescribed(Method::POST, "/totp/remove", factors::remove)
        .undescribed(Method::GET, "/recovery-codes", factors::codes_page)
        .undescribed(Method::POST, "/recovery-codes", factors::regenerate)
        .undescribed(Method::GET, "/factors", factors::list)
        .undescribed(Method::POST, "/passkeys/options", factors::passkey_options)
        .undescribed(Method::POST, "/passkeys", factors::add_passkey)
        .undescribed(
            Method::GET,
            "/passkeys/{id}/remove",
            factors::remove_passkey_page,
        )
        .undescribed(
            Method::POST,
            "/passkeys/{id}/remove",
            factors::remove_passkey,
        )
        .undescribed(Method::DELETE, "/passkeys/{id}", factors::remove_passkey)
        .undescribed(Method::GET, "/activity", handlers::activity)
        .undescribed(Method::GET, "/export", handlers::export)
}
