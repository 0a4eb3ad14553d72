//! How a service trusts tokens: where its public keys come from, how often it catches
//! up on revocations, the bus endpoints and the site's own origin.

use std::path::PathBuf;
use std::time::Duration;

use flotilla_kit::{Config, ConfigError, Env};

use crate::access_token::TokenSettings;

/// Where a service gets the public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `FLOTILLA_JWKS_URL` (default login's own address on this host).
    Jwks(String),
    /// `FLOTILLA_JWKS_FILE`: a JWKS file (`flotilla-login keys jwks > file`), for
    /// services that cannot reach login.
    File(PathBuf),
    /// login itself: its key folder, handed over with [`crate::Auth::set_keys`].
    Local,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub tokens: TokenSettings,
    pub keys: KeySource,
    /// `FLOTILLA_JWKS_CA_FILE`: the certificate authorities (PEM) that alone are
    /// trusted for an https JWKS URL; none means the system's.
    pub jwks_ca: Vec<reqwest::Certificate>,
    /// `FLOTILLA_REVOCATION_CATCHUP_SECS` (default 5).
    pub catch_up: Duration,
    /// `FLOTILLA_BUS_EVENTS_IN` / `_OUT`: the worker's forwarder (and the bus secret).
    pub events_in: flotilla_bus::BusEndpoint,
    pub events_out: flotilla_bus::BusEndpoint,
    pub public_url: String,
    pub secure_cookies: bool,
}

impl AuthConfig {
    /// `local_keys`: this is login, which reads its own key folder.
    pub fn from_env(env: &Env, kit: &Config, local_keys: bool) -> Result<Self, ConfigError> {
        let bus = flotilla_kit::config::bus(env)?;
        // Login verifies with its own keys whatever the host's env file says: a JWKS
        // file there is for the other services, and is older than login's keys after
        // each rotation.
        let keys = match env.raw("FLOTILLA_JWKS_FILE") {
            _ if local_keys => KeySource::Local,
            Some(path) => KeySource::File(PathBuf::from(path)),
            None => KeySource::Jwks(env.parse(
                "FLOTILLA_JWKS_URL",
                "http://127.0.0.1:7102/login/.well-known/jwks.json".to_owned(),
                "an http:// or https:// URL of login's /login/.well-known/jwks.json",
                |v| {
                    let rest = v
                        .strip_prefix("https://")
                        .or_else(|| v.strip_prefix("http://"))?;
                    (!rest.is_empty()).then(|| v.to_owned())
                },
            )?),
        };
        let jwks_ca = match env.raw("FLOTILLA_JWKS_CA_FILE") {
            None => Vec::new(),
            Some(path) => read_ca_file(&path).map_err(|expected| ConfigError {
                variable: "FLOTILLA_JWKS_CA_FILE".into(),
                value: path,
                expected,
            })?,
        };
        Ok(Self {
            tokens: TokenSettings::from_env(env, &kit.public_url)?,
            keys,
            jwks_ca,
            catch_up: Duration::from_secs(env.number(
                "FLOTILLA_REVOCATION_CATCHUP_SECS",
                5,
                1..=3600,
            )?),
            events_in: bus.events_in,
            events_out: bus.events_out,
            public_url: kit.public_url.clone(),
            secure_cookies: kit.is_https(),
        })
    }
}

/// The certificates of a PEM file (one or more), or what is wrong with it.
fn read_ca_file(path: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("a readable PEM file ({e})"))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("a PEM file of certificates ({e})"))?;
    if certificates.is_empty() {
        return Err("a PEM file holding at least one certificate".into());
    }
    Ok(certificates)
}
