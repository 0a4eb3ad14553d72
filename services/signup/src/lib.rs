//! flotilla-signup: account creation and email verification, in HTML forms and JSON.
//!
//! | route | |
//! |---|---|
//! | `GET /signup` | the form |
//! | `POST /signup` | JSON `{"email","password","username"?}` → 202, or a form post → 303 |
//! | `GET /signup/check-email` | "check your email" |
//! | `GET /signup/verify?token=…` | consumes a verification link |
//! | `GET`/`POST /signup/resend` | a new link for an unverified address (202 always) |
//!
//! A signup with an address that already has an account answers exactly like a new
//! one, and the address's owner is told by email instead. One transaction writes the
//! user, the token (its hash only) and the email job; the worker is woken after commit.

mod domain;
mod handlers;
mod pages;
mod store;

use std::sync::Arc;

use chrono::TimeDelta;
use flotilla_auth::{HashParams, HashPool, PasswordPolicy};
use flotilla_bus::WakeSender;
use flotilla_kit::actix_web::web;
use flotilla_kit::{ConfigError, Env, Routes, Service, State};

pub use domain::{EmailAddress, NewAccount, SignupInput, Username};

pub static SERVICE: Service = Service {
    name: "signup",
    default_port: 7101,
    setup,
    background: None,
};

/// What signup reads beyond the kit's configuration.
#[derive(Debug, Clone)]
pub struct SignupConfig {
    /// `FLOTILLA_PUBLIC_URL` (default `http://127.0.0.1:8080`): the origin in links.
    pub public_url: String,
    /// `FLOTILLA_PASSWORD_MIN_CHARS` (12) and `FLOTILLA_PASSWORD_MAX_CHARS` (128).
    pub policy: PasswordPolicy,
    /// `FLOTILLA_VERIFY_TOKEN_HOURS` (default 48): how long a verification link works.
    pub token_ttl: TimeDelta,
    /// At most one new link per address per this interval (one minute).
    pub resend_interval: TimeDelta,
    /// `FLOTILLA_ARGON2_MEMORY_KIB` (19456), `FLOTILLA_ARGON2_ITERATIONS` (2),
    /// `FLOTILLA_ARGON2_PARALLELISM` (1): OWASP's Argon2id settings.
    pub hash: HashParams,
    /// `FLOTILLA_HASH_WORKERS` (default: the cores) hashes at once, and
    /// `FLOTILLA_HASH_QUEUE` (default 16 per worker) waiting; beyond, 503.
    pub hash_workers: usize,
    pub hash_queue: usize,
    /// `FLOTILLA_BUS_WAKE`: where the worker takes wake-ups.
    pub wake: String,
}

impl SignupConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let public_url = env.parse(
            "FLOTILLA_PUBLIC_URL",
            "http://127.0.0.1:8080".to_owned(),
            "an origin such as https://accounts.example.org",
            |v| {
                let v = v.trim_end_matches('/');
                (v.starts_with("http://") || v.starts_with("https://")).then(|| v.to_owned())
            },
        )?;
        let min_chars = env.number("FLOTILLA_PASSWORD_MIN_CHARS", 12, 8..=128)?;
        let max_chars = env.number("FLOTILLA_PASSWORD_MAX_CHARS", 128, min_chars.max(16)..=1024)?;
        let hash_workers = env.number(
            "FLOTILLA_HASH_WORKERS",
            flotilla_auth::default_workers(),
            1..=256,
        )?;
        Ok(Self {
            public_url,
            policy: PasswordPolicy {
                min_chars,
                max_chars,
            },
            token_ttl: TimeDelta::hours(env.number(
                "FLOTILLA_VERIFY_TOKEN_HOURS",
                48,
                1..=24 * 30,
            )?),
            resend_interval: TimeDelta::minutes(1),
            hash: HashParams {
                memory_kib: env.number("FLOTILLA_ARGON2_MEMORY_KIB", 19_456, 8..=4_194_304)?,
                iterations: env.number("FLOTILLA_ARGON2_ITERATIONS", 2, 1..=100)?,
                parallelism: env.number("FLOTILLA_ARGON2_PARALLELISM", 1, 1..=64)?,
            },
            hash_workers,
            hash_queue: env.number("FLOTILLA_HASH_QUEUE", hash_workers * 16, 0..=100_000)?,
            wake: env.parse(
                "FLOTILLA_BUS_WAKE",
                "tcp://127.0.0.1:7110".to_owned(),
                "a ZeroMQ TCP endpoint such as tcp://127.0.0.1:7110",
                flotilla_bus::parse_endpoint,
            )?,
        })
    }
}

/// Signup's state, beside the kit's.
pub struct Signup {
    pub config: SignupConfig,
    pub hashes: HashPool,
    pub wake: WakeSender,
}

fn setup(_: &web::Data<State>) -> anyhow::Result<Routes> {
    let config = SignupConfig::from_env(&Env::from_process())
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let signup = web::Data::new(Signup {
        hashes: HashPool::new(config.hash, config.hash_workers, config.hash_queue),
        wake: WakeSender::start(&config.wake)?,
        config,
    });
    Ok(Arc::new(move |cfg| {
        cfg.app_data(signup.clone())
            .service(
                web::resource("")
                    .route(web::get().to(handlers::form))
                    .route(web::post().to(handlers::create)),
            )
            .route("/check-email", web::get().to(handlers::check_email))
            .route("/verify", web::get().to(handlers::verify))
            .service(
                web::resource("/resend")
                    .route(web::get().to(handlers::resend_form))
                    .route(web::post().to(handlers::resend)),
            );
    }))
}
