//! flotilla-login: the only place that mints tokens.
//!
//! | route | |
//! |---|---|
//! | `GET /login` | the form (or, with a live refresh cookie, straight on to `next`) |
//! | `POST /login` | JSON `{"email","password"}` → 200 with tokens and cookies (or, with a second factor, `second_factor_required` and a `second_step_token`); a form → 303 |
//! | `GET`/`POST /login/second-step` | an account with a second factor: the code after the password (`{"code"}`, and `second_step_token` for an API client) |
//! | `POST /login/second-step/passkey` | a challenge for the passkeys of the account at its second step |
//! | `POST /login/confirm/passkey` | a challenge for the signed-in person's passkeys (confirmations) |
//! | `POST /login/passkey/options` | a challenge for signing in with a passkey, without a password |
//! | `POST /login/passkey` | `{"passkey","passkey_challenge"}`: signs in with a passkey alone |
//! | `GET /login/session` | the session of an access token (401 once it ended) |
//! | `POST /login/refresh` | rotates the refresh token (cookie or `{"refresh_token"}`) |
//! | `POST /login/logout` | ends this session (204) |
//! | `POST /login/logout-all` | ends every session of the user (204) |
//! | `GET`/`POST /login/confirm` | the signed-in person's password again (sudo mode): 303 to `next`, or 204 |
//! | `GET`/`POST /login/forgot` | asks for a reset link (202, the same whether or not the address exists) |
//! | `GET`/`POST /login/reset` | sets a new password with a reset link's token |
//! | `GET /login/.well-known/jwks.json` | the public keys |
//! | `GET /login/auth` | nginx's `auth_request` for the site's other apps: 204 with the person in headers, 401, 403 (`gate`; never routed from outside) |
//! | `GET /login/auth/refused` | the answer to a refused one: to the sign-in page, or the 401/403 JSON |
//!
//! Access tokens are EdDSA JWTs (15 minutes); refresh tokens are 256-bit randoms stored
//! hashed with their session and used once each. Failed sign-ins slow down per
//! address typed, exponentially, and apart from it per known device (a signed device
//! cookie set at each sign-in, `flotilla_auth::device`); nginx limits each client
//! address as well.

mod answers;
mod domain;
mod errors;
mod gate;
mod handlers;
mod keys_command;
mod pages;
mod passkey;
#[cfg(test)]
mod proptests;
mod second_step;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::{TimeDelta, Utc};
use flotilla_auth::keys::KeyRing;
use flotilla_auth::throttle::{InFlight, ThrottleSettings};
use flotilla_auth::{Auth, AuthConfig, HashPool, PasswordChecks, PasswordSettings, SecondFactors};
use flotilla_bus::WakeSender;
use flotilla_kit::actix_web::web;
use flotilla_kit::{Api, Command, ConfigError, Env, Provide, Service, State};

pub static SERVICE: Service = Service {
    name: "login",
    default_port: 7102,
    api,
    setup,
    background: None,
    commands: &[Command {
        name: "keys",
        summary: "generate|list|prune|jwks: manage the token signing keys (FLOTILLA_KEYS_DIR)",
        run: keys_command::run,
    }],
};

/// What login reads beyond the kit's configuration.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub public_url: String,
    pub passwords: PasswordSettings,
    /// `FLOTILLA_KEYS_DIR` (default `<data dir>/keys`): the signing keys.
    pub keys_dir: PathBuf,
    /// `FLOTILLA_KEYS_GENERATE` (default true): make a key when the folder has none.
    pub generate_keys: bool,
    /// `FLOTILLA_KEYS_RELOAD_SECS` (30): how often the key folder is read again, so
    /// that a key added by `keys generate` is published, and later signs, without a
    /// restart.
    pub keys_reload: std::time::Duration,
    /// `FLOTILLA_KEYS_PUBLISH_SECS` ([`keys_publish`]): how long a new key is published
    /// before it signs.
    pub keys_publish: TimeDelta,
    /// `FLOTILLA_SESSION_IDLE_DAYS` (30): a session unused this long ends.
    pub session_idle: TimeDelta,
    /// `FLOTILLA_SESSION_MAX_DAYS` (90): a session ends this long after sign-in.
    pub session_max: TimeDelta,
    /// `FLOTILLA_RESET_TOKEN_MINUTES` (60): how long a reset link works.
    pub reset_ttl: TimeDelta,
    /// `FLOTILLA_LOGIN_MAX_FAILURES`, `_FAILURE_WINDOW_SECS`, `_MAX_DELAY_SECS`.
    pub throttle: ThrottleSettings,
    /// `FLOTILLA_LOGIN_NEW_DEVICE_EMAIL` (default false): mail the account's owner when
    /// it is signed in to from a browser it has not signed in from before.
    pub new_device_email: bool,
    /// `FLOTILLA_BUS_WAKE`: where the worker takes wake-ups (and the bus secret).
    pub wake: flotilla_bus::BusEndpoint,
}

impl LoginConfig {
    pub fn from_env(env: &Env, kit: &flotilla_kit::Config) -> Result<Self, ConfigError> {
        let config = Self {
            public_url: kit.public_url.clone(),
            passwords: PasswordSettings::from_env(env)?,
            keys_dir: env.path("FLOTILLA_KEYS_DIR", kit.data_dir.join("keys"))?,
            generate_keys: env.flag("FLOTILLA_KEYS_GENERATE", true)?,
            keys_reload: std::time::Duration::from_secs(env.number(
                "FLOTILLA_KEYS_RELOAD_SECS",
                30,
                1..=3600,
            )?),
            keys_publish: keys_publish(env)?,
            session_idle: TimeDelta::days(env.number(
                "FLOTILLA_SESSION_IDLE_DAYS",
                30,
                1..=3650,
            )?),
            session_max: TimeDelta::days(env.number("FLOTILLA_SESSION_MAX_DAYS", 90, 1..=3650)?),
            reset_ttl: flotilla_auth::reset_link_ttl(env)?,
            throttle: ThrottleSettings::from_env(env)?,
            new_device_email: env.flag("FLOTILLA_LOGIN_NEW_DEVICE_EMAIL", false)?,
            wake: flotilla_kit::config::bus(env)?.wake,
        };
        if let Some(warning) = config.publish_warning() {
            log::warn!("{warning}");
        }
        Ok(config)
    }

    /// A warning when a new key may sign before every service has its public key: it
    /// is published within `FLOTILLA_KEYS_RELOAD_SECS` of its making, and each service
    /// fetches the keys every [`flotilla_auth::KEY_REFRESH`] (or at once for a token
    /// naming a key it does not know, which costs that request a fetch). 0 says "sign at
    /// once" on purpose, and is not warned about.
    fn publish_warning(&self) -> Option<String> {
        let needed = self.keys_reload + flotilla_auth::KEY_REFRESH;
        let publish = self.keys_publish.to_std().ok()?;
        (!publish.is_zero() && publish < needed).then(|| {
            format!(
                "FLOTILLA_KEYS_PUBLISH_SECS={} is shorter than FLOTILLA_KEYS_RELOAD_SECS plus the services' key refresh ({} s): a new key may sign tokens before some services know it, and each of them fetches the keys again on its first such token",
                publish.as_secs(),
                needed.as_secs()
            )
        })
    }
}

/// `FLOTILLA_KEYS_PUBLISH_SECS` (360, from 0 to 86400): a new key signs once it is
/// this old ([`KeyRing::signing_at`]). It counts from the key's making, and login
/// publishes the key within `FLOTILLA_KEYS_RELOAD_SECS` of that, so the default leaves
/// every service's periodic JWKS fetch (300 s) time to run once the key is published.
/// 0: a new key signs from login's next read of the folder. Read by login and by
/// `keys list|generate|prune`.
pub(crate) fn keys_publish(env: &Env) -> Result<TimeDelta, ConfigError> {
    Ok(TimeDelta::seconds(env.number(
        "FLOTILLA_KEYS_PUBLISH_SECS",
        360,
        0..=86_400,
    )?))
}

/// Login's state, beside the kit's.
pub struct Login {
    pub config: LoginConfig,
    pub hashes: HashPool,
    pub wake: WakeSender,
    pub auth: Auth,
    /// The signing keys, read again now and then so a new key takes over signing.
    pub keys: RwLock<KeyRing>,
    /// Sign-ins being checked now, per address typed (see [`flotilla_auth::throttle`]).
    pub attempts: InFlight,
    /// Passwords confirmed at `/login/confirm`, throttled per account with profile's
    /// password checks.
    pub checks: PasswordChecks,
    /// Codes of second factors (`FLOTILLA_FACTOR_KEY`), at the second step and at
    /// `/login/confirm`.
    pub factors: SecondFactors,
}

impl Login {
    /// Reads the key folder again: a new key is published from now on, and signs once
    /// it is old enough.
    fn reload_keys(&self) {
        match KeyRing::load(&self.config.keys_dir) {
            Ok(ring) if !ring.keys().is_empty() => {
                self.auth.set_keys(&ring);
                if let Ok(mut keys) = self.keys.write() {
                    *keys = ring;
                }
            }
            Ok(_) => log::warn!(
                "{} has no key any more; keeping the keys in memory",
                self.config.keys_dir.display()
            ),
            Err(e) => log::warn!("keeping the keys in memory: {e:#}"),
        }
    }

    /// The id of the key that signs now.
    fn signing_kid(&self) -> Option<String> {
        let ring = self.keys.read().ok()?;
        let key = ring.signing_at(Utc::now().naive_utc(), self.config.keys_publish)?;
        Some(key.kid.clone())
    }
}

fn setup(state: &web::Data<State>) -> anyhow::Result<Provide> {
    let env = Env::from_process();
    let config = LoginConfig::from_env(&env, &state.config)?;
    let auth_config = AuthConfig::from_env(&env, &state.config, true)?;
    let ring = if config.generate_keys {
        let (ring, created) = KeyRing::load_or_create(&config.keys_dir)?;
        if created {
            log::info!(
                "made a first signing key in {} (for production keys, run `flotilla-login keys generate`)",
                config.keys_dir.display()
            );
        }
        ring
    } else {
        KeyRing::load(&config.keys_dir)?
    };
    if ring.keys().is_empty() {
        anyhow::bail!(
            "no signing key in {}: run `flotilla-login keys generate` (FLOTILLA_KEYS_GENERATE=false)",
            config.keys_dir.display()
        );
    }
    let auth = Auth::start_for(auth_config, state)?;
    auth.set_keys(&ring);
    let hashes = config.passwords.pool();
    let login = web::Data::new(Login {
        checks: PasswordChecks::new(hashes.clone(), config.throttle),
        factors: SecondFactors::from_env(&env, &config.public_url, config.throttle)?,
        hashes,
        wake: WakeSender::start(&config.wake)?,
        auth: auth.clone(),
        keys: RwLock::new(ring),
        attempts: InFlight::new(config.throttle.max_failures),
        config,
    });
    let reloader = login.clone();
    let every = login.config.keys_reload;
    let mut signing = login.signing_kid();
    log::info!("signing with key {}", signing.as_deref().unwrap_or("none"));
    std::thread::Builder::new()
        .name("flotilla-keys".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                reloader.reload_keys();
                // The signing key changes with the time as well as with the folder:
                // looked at here, the change is logged within a reload interval.
                let now = reloader.signing_kid();
                if now != signing {
                    log::info!(
                        "signing with key {} instead of {}",
                        now.as_deref().unwrap_or("none"),
                        signing.as_deref().unwrap_or("none")
                    );
                    signing = now;
                }
            }
        })?;
    let auth = web::Data::new(auth);
    Ok(Arc::new(move |data| {
        data.app_data(login.clone()).app_data(auth.clone());
    }))
}

/// Login's routes, each described by its handler's attribute.
fn api(api: Api) -> Api {
    use gate::{__path_check, __path_refused};
    use handlers::*;
    use passkey::{
        __path_confirm_challenge, __path_second_step_challenge, __path_sign_in,
        __path_sign_in_challenge,
    };
    use second_step::{__path_finish, __path_form as __path_second_step_form};
    api.route::<__path_form, _, _>(form)
        .route::<__path_login, _, _>(login)
        .route::<__path_second_step_form, _, _>(second_step::form)
        .route::<__path_finish, _, _>(second_step::finish)
        .route::<__path_second_step_challenge, _, _>(passkey::second_step_challenge)
        .route::<__path_confirm_challenge, _, _>(passkey::confirm_challenge)
        .route::<__path_sign_in_challenge, _, _>(passkey::sign_in_challenge)
        .route::<__path_sign_in, _, _>(passkey::sign_in)
        .route::<__path_session, _, _>(session)
        .route::<__path_refresh, _, _>(refresh)
        .route::<__path_logout, _, _>(logout)
        .route::<__path_logout_all, _, _>(logout_all)
        .route::<__path_confirm_form, _, _>(confirm_form)
        .route::<__path_confirm, _, _>(confirm)
        .route::<__path_forgot_form, _, _>(forgot_form)
        .route::<__path_forgot, _, _>(forgot)
        .route::<__path_reset_form, _, _>(reset_form)
        .route::<__path_reset, _, _>(reset)
        .route::<__path_jwks, _, _>(jwks)
        .route::<__path_check, _, _>(gate::check)
        .route::<__path_refused, _, _>(gate::refused)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> LoginConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = Env::from_fn(|k| map.get(k).cloned());
        let kit = flotilla_kit::Config::from_env(&env, "login", 7102).unwrap();
        LoginConfig::from_env(&env, &kit).unwrap()
    }

    #[test]
    fn a_key_that_may_sign_before_the_services_know_it_is_warned_about() {
        assert_eq!(config(&[]).publish_warning(), None, "the default");
        assert_eq!(
            config(&[("FLOTILLA_KEYS_PUBLISH_SECS", "0")]).publish_warning(),
            None,
            "at once, on purpose"
        );
        let warned = config(&[("FLOTILLA_KEYS_PUBLISH_SECS", "120")]).publish_warning();
        assert!(
            warned.is_some_and(|w| w.contains("=120 is shorter") && w.contains("(330 s)")),
            "reload 30 s + refresh 300 s"
        );
        let slow_reload = config(&[
            ("FLOTILLA_KEYS_PUBLISH_SECS", "360"),
            ("FLOTILLA_KEYS_RELOAD_SECS", "120"),
        ]);
        assert!(slow_reload.publish_warning().is_some());
    }

    #[test]
    fn every_route_is_described_once_and_the_document_holds_together() {
        assert_eq!(SERVICE.api().problems(), Vec::<String>::new());
    }
}
