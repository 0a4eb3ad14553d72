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
use flotilla_kit::{ConfigError, Env, Routes, Service, State};

pub static SERVICE: Service = Service {
    name: "profile",
    default_port: 7103,
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

fn setup(state: &web::Data<State>) -> anyhow::Result<Routes> {
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
    Ok(Arc::new(move |cfg| {
        cfg.app_data(profile.clone())
            .app_data(auth.clone())
            .route("", web::get().to(handlers::page))
            .service(
                web::resource("/me")
                    .route(web::get().to(handlers::me))
                    .route(web::patch().to(handlers::update))
                    .route(web::post().to(handlers::update))
                    .route(web::delete().to(handlers::delete)),
            )
            .service(
                web::resource("/delete")
                    .route(web::get().to(handlers::close_page))
                    .route(web::post().to(handlers::delete)),
            )
            .route("/password", web::post().to(handlers::password))
            .route("/email", web::post().to(handlers::email))
            .service(
                web::resource("/email/confirm")
                    .route(web::get().to(handlers::confirm_email_page))
                    .route(web::post().to(handlers::confirm_email)),
            )
            .route("/sessions", web::get().to(handlers::sessions))
            .service(
                web::resource("/sessions/revoke-others")
                    .route(web::get().to(handlers::revoke_others_page))
                    .route(web::post().to(handlers::revoke_others)),
            )
            .route("/sessions/{id}", web::delete().to(handlers::revoke))
            .route("/sessions/{id}/revoke", web::post().to(handlers::revoke))
            .service(
                web::resource("/totp")
                    .route(web::get().to(factors::setup_page))
                    .route(web::post().to(factors::setup))
                    .route(web::delete().to(factors::remove)),
            )
            .service(
                web::resource("/totp/remove")
                    .route(web::get().to(factors::remove_page))
                    .route(web::post().to(factors::remove)),
            )
            .service(
                web::resource("/recovery-codes")
                    .route(web::get().to(factors::codes_page))
                    .route(web::post().to(factors::regenerate)),
            )
            .route("/factors", web::get().to(factors::list))
            .route(
                "/passkeys/options",
                web::post().to(factors::passkey_options),
            )
            .route("/passkeys", web::post().to(factors::add_passkey))
            .service(
                web::resource("/passkeys/{id}/remove")
                    .route(web::get().to(factors::remove_passkey_page))
                    .route(web::post().to(factors::remove_passkey)),
            )
            .route("/passkeys/{id}", web::delete().to(factors::remove_passkey))
            .route("/activity", web::get().to(handlers::activity))
            .route("/export", web::get().to(handlers::export));
    }))
}
