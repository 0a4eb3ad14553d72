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
        // Read only where it serves: login and a JWKS file need no CA.
        let jwks_ca = match env.raw("FLOTILLA_JWKS_CA_FILE") {
            _ if !matches!(keys, KeySource::Jwks(_)) => Vec::new(),
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

/// `FLOTILLA_RESET_TOKEN_MINUTES` (60, 5 to 1,440): how long a password reset link
/// works. Login sends them; admin's forced reset too.
pub fn reset_link_ttl(env: &Env) -> Result<chrono::TimeDelta, ConfigError> {
    Ok(chrono::TimeDelta::minutes(env.number(
        "FLOTILLA_RESET_TOKEN_MINUTES",
        60,
        5..=24 * 60,
    )?))
}

/// `FLOTILLA_VERIFY_TOKEN_HOURS` (48, 1 to 720): how long an address confirmation
/// link works. Signup sends them; admin's resend too.
pub fn verify_link_ttl(env: &Env) -> Result<chrono::TimeDelta, ConfigError> {
    Ok(chrono::TimeDelta::hours(env.number(
        "FLOTILLA_VERIFY_TOKEN_HOURS",
        48,
        1..=24 * 30,
    )?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)], local_keys: bool) -> Result<AuthConfig, ConfigError> {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("FLOTILLA_BUS_SECRET".into(), "ab".repeat(32));
        let env = Env::from_fn(|k| map.get(k).cloned());
        let kit = Config::from_env(&env, "profile", 7103)?;
        AuthConfig::from_env(&env, &kit, local_keys)
    }

    #[test]
    fn the_jwks_url_may_be_https_and_its_ca_file_is_checked() {
        let url = "https://login.internal/login/.well-known/jwks.json";
        let config = load(&[("FLOTILLA_JWKS_URL", url)], false).unwrap();
        assert_eq!(config.keys, KeySource::Jwks(url.into()));
        assert!(config.jwks_ca.is_empty());
        let err = load(&[("FLOTILLA_JWKS_URL", "ftp://login/jwks.json")], false).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_JWKS_URL");

        let missing = [("FLOTILLA_JWKS_CA_FILE", "/nonexistent/ca.pem")];
        let err = load(&missing, false).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_JWKS_CA_FILE");
        assert!(err.to_string().contains("readable PEM file"), "{err}");
        let not_pem = std::env::temp_dir().join(format!("flotilla-ca-{}.pem", std::process::id()));
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let err = load(
            &[("FLOTILLA_JWKS_CA_FILE", not_pem.to_str().unwrap())],
            false,
        );
        assert_eq!(err.unwrap_err().variable, "FLOTILLA_JWKS_CA_FILE");
        std::fs::remove_file(&not_pem).unwrap();
        // Login verifies with its own keys: the CA of the host's env file is not its.
        assert!(load(&missing, true).is_ok());
    }
}
