//! Configuration comes from the environment only: `FLOTILLA_*` variables and
//! `DATABASE_URL`, each with a default that makes a fresh checkout work. Every variable
//! is read here (or in the binary that alone uses it) and listed in docs/configuration.md
//! (the docs test checks both ways). A bad value stops the process at start-up with a
//! message naming the variable.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use flotilla_db::{DatabaseUrl, PoolConfig};

/// A variable that is set but unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Reads variables from a source: the process environment, or a map in tests.
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl Env<'static> {
    pub fn from_process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }
}

impl<'a> Env<'a> {
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }

    /// The raw value; an empty value counts as unset.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// Parses the variable with `parse`, or returns `default` when it is unset.
    pub fn parse<T>(
        &self,
        name: &str,
        default: T,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.raw(name) {
            None => Ok(default),
            Some(value) => parse(value.trim()).ok_or_else(|| ConfigError {
                variable: name.to_owned(),
                value,
                expected: expected.to_owned(),
            }),
        }
    }

    /// A whole number within `range`.
    pub fn number<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        self.parse(name, default, &expected, |v| {
            v.parse().ok().filter(|n| range.contains(n))
        })
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.parse(name, default, "true or false", |v| {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" => Some(false),
                _ => None,
            }
        })
    }

    pub fn socket_addr(&self, name: &str, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
        self.parse(
            name,
            default,
            "an address and port such as 127.0.0.1:7101 or [::1]:7101",
            |v| v.parse().ok(),
        )
    }

    pub fn path(&self, name: &str, default: PathBuf) -> Result<PathBuf, ConfigError> {
        Ok(self.raw(name).map(PathBuf::from).unwrap_or(default))
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or_else(|| default.to_owned())
    }
}

/// An address or a network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:1.2.3.4` is 1.2.3.4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl FromStr for Network {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().map_err(|_| ())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(())?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

/// The proxies whose `X-Forwarded-For` and `X-Request-Id` are believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    pub fn new(networks: Vec<Network>) -> Self {
        Self(networks)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// `FLOTILLA_DATA_DIR` (default `var`): where runtime data lives.
pub fn data_dir(env: &Env) -> Result<PathBuf, ConfigError> {
    env.path("FLOTILLA_DATA_DIR", PathBuf::from("var"))
}

/// `DATABASE_URL` (default `sqlite://<data dir>/flotilla.db`) and the pool settings.
pub fn database(env: &Env, data_dir: &std::path::Path) -> Result<PoolConfig, ConfigError> {
    let default_url = format!("sqlite://{}", data_dir.join("flotilla.db").display());
    let url = env.parse(
        "DATABASE_URL",
        None,
        "sqlite://path/to/file.db or postgres://user:password@host:port/database",
        |v| DatabaseUrl::parse(v).ok().map(Some),
    )?;
    let url = match url {
        Some(url) => url,
        None => DatabaseUrl::parse(&default_url).map_err(|expected| ConfigError {
            variable: "FLOTILLA_DATA_DIR".into(),
            value: data_dir.display().to_string(),
            expected,
        })?,
    };
    Ok(PoolConfig {
        url,
        max_size: env.number("FLOTILLA_DB_POOL_SIZE", 8, 1..=1000)?,
        timeout: Duration::from_millis(env.number(
            "FLOTILLA_DB_TIMEOUT_MS",
            3000,
            100..=600_000,
        )?),
        busy_timeout: Duration::from_millis(env.number(
            "FLOTILLA_DB_BUSY_TIMEOUT_MS",
            800,
            0..=600_000,
        )?),
    })
}

/// `FLOTILLA_BUS_WAKE`, `FLOTILLA_BUS_EVENTS_IN` and `FLOTILLA_BUS_EVENTS_OUT`
/// (defaults: the worker's ports 7110-7112 on loopback), each a ZeroMQ TCP endpoint,
/// and the secret every message is sealed with: `FLOTILLA_BUS_SECRET` (64 hex digits
/// or more, the same on every host), or, when it is unset and every endpoint is on
/// loopback, the file `bus.secret` in the data folder, made by the first process that
/// needs it. Endpoints off this host without the variable are refused.
pub fn bus(env: &Env) -> Result<flotilla_bus::BusConfig, ConfigError> {
    use flotilla_bus::{BusConfig, BusEndpoint, BusSecret};
    let endpoint = |name: &str, default: &str| {
        env.parse(
            name,
            default.to_owned(),
            "a ZeroMQ TCP endpoint such as tcp://127.0.0.1:7110",
            flotilla_bus::parse_endpoint,
        )
    };
    let wake = endpoint("FLOTILLA_BUS_WAKE", BusConfig::DEFAULT_WAKE)?;
    let events_in = endpoint("FLOTILLA_BUS_EVENTS_IN", BusConfig::DEFAULT_EVENTS_IN)?;
    let events_out = endpoint("FLOTILLA_BUS_EVENTS_OUT", BusConfig::DEFAULT_EVENTS_OUT)?;
    let secret_error = |value: String, expected: String| ConfigError {
        variable: "FLOTILLA_BUS_SECRET".into(),
        value,
        expected,
    };
    let hex_digits = "64 or more hex digits (`openssl rand -hex 32`), the same on every host";
    let secret = match env.raw("FLOTILLA_BUS_SECRET") {
        Some(value) => BusSecret::from_hex(&value)
            .ok_or_else(|| secret_error("(hidden)".into(), hex_digits.into()))?,
        None => {
            // Checked on a provisional secret: whether the endpoints stay on this host.
            let local = BusSecret::from_bytes(&[0; flotilla_bus::MIN_SECRET_BYTES])
                .map(|probe| {
                    BusConfig {
                        wake: BusEndpoint::new(&wake, &probe),
                        events_in: BusEndpoint::new(&events_in, &probe),
                        events_out: BusEndpoint::new(&events_out, &probe),
                    }
                    .is_loopback()
                })
                .unwrap_or(false);
            if !local {
                return Err(secret_error(
                    String::new(),
                    format!("{hex_digits}: the bus endpoints are not all on loopback"),
                ));
            }
            secret_file(env)?
        }
    };
    Ok(BusConfig {
        wake: BusEndpoint::new(&wake, &secret),
        events_in: BusEndpoint::new(&events_in, &secret),
        events_out: BusEndpoint::new(&events_out, &secret),
    })
}

/// The bus secret of a single host without `FLOTILLA_BUS_SECRET`: `bus.secret` (mode
/// 0600) in the data folder, shared by every process that uses that folder.
fn secret_file(env: &Env) -> Result<flotilla_bus::BusSecret, ConfigError> {
    let (path, text) = host_secret(env, "FLOTILLA_BUS_SECRET", "bus.secret")?;
    flotilla_bus::BusSecret::from_hex(&text).ok_or_else(|| ConfigError {
        variable: "FLOTILLA_BUS_SECRET".into(),
        value: String::new(),
        expected: format!(
            "to be set, or {} to hold 64 or more hex digits (remove it to have a new one made)",
            path.display()
        ),
    })
}

/// `FLOTILLA_FACTOR_KEY`: the key second factors' secrets are sealed with at rest, as
/// 64 hex digits (`openssl rand -hex 32`), the same on every host that runs login,
/// profile or admin. Unset, the file `factor.key` (mode 0600) in the data folder,
/// made by the first process that needs it: a single host's. `flotilla-auth` checks
/// the digits.
pub fn factor_key_hex(env: &Env) -> Result<String, ConfigError> {
    match env.raw("FLOTILLA_FACTOR_KEY") {
        Some(value) => Ok(value),
        None => Ok(host_secret(env, "FLOTILLA_FACTOR_KEY", "factor.key")?.1),
    }
}

/// A secret of this host kept in the data folder as `file` (0600): read, or made of 32
/// random bytes in hex by the first process that needs it. Its path and text.
fn host_secret(
    env: &Env,
    variable: &str,
    file: &str,
) -> Result<(std::path::PathBuf, String), ConfigError> {
    let data_dir = data_dir(env)?;
    crate::files::ensure_dir(&data_dir, crate::files::Access::Traverse).map_err(|problem| {
        ConfigError {
            variable: "FLOTILLA_DATA_DIR".into(),
            value: data_dir.display().to_string(),
            expected: format!("a folder only its owner may read or write: {problem}"),
        }
    })?;
    let path = data_dir.join(file);
    let text = crate::files::read_or_create_secret(&path, || {
        rand::random::<[u8; 32]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    })
    .map_err(|problem| ConfigError {
        variable: variable.into(),
        value: String::new(),
        expected: format!("to be set, or a usable {}: {problem}", path.display()),
    })?;
    Ok((path, text))
}

/// What every HTTP service reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    /// `FLOTILLA_<SERVICE>_LISTEN`: where the service binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `FLOTILLA_DATA_DIR` (default `var`): runtime data in development.
    pub data_dir: PathBuf,
    /// `DATABASE_URL` and the `FLOTILLA_DB_*` pool settings.
    pub database: PoolConfig,
    /// `FLOTILLA_AUTO_MIGRATE` (default true): apply pending migrations at start-up
    /// instead of refusing to run. Set it to false in production, where `migrate` runs
    /// once per deploy.
    pub auto_migrate: bool,
    /// `FLOTILLA_TRUSTED_PROXIES` (default loopback).
    pub trusted_proxies: TrustedProxies,
    /// `FLOTILLA_MAX_BODY_BYTES` (default 64 KiB).
    pub max_body_bytes: usize,
    /// `FLOTILLA_MAX_IN_FLIGHT` (default 32 per HTTP worker): requests handled at
    /// once; beyond, 503 `overloaded` with `Retry-After`. Requests in flight are those
    /// past the middleware: waiting for the database, a hashing thread or a lock.
    /// Each worker keeps its cores busy with a few; more only wait, and a request
    /// that waited its whole timeout is worse than one refused at once.
    pub max_in_flight: usize,
    /// `FLOTILLA_QUEUE_TARGET_MS` (default 10; 0 turns it off): a request that waited
    /// in front of the service longer than this, by the trusted proxy's
    /// `X-Request-Start`, is refused with 503 `overloaded` while the queue stands (has
    /// not been empty for ten times this long); while it does not, one that waited
    /// over ten times this long. See [`crate::admission`].
    pub queue_target: Option<Duration>,
    /// `FLOTILLA_HTTP_WORKERS` (default: the number of cores).
    pub workers: usize,
    /// `FLOTILLA_SHUTDOWN_TIMEOUT_SECS` (default 10): how long SIGTERM waits for
    /// requests in flight.
    pub shutdown_timeout: Duration,
    /// `FLOTILLA_PUBLIC_URL` (default `http://127.0.0.1:8080`): the origin browsers
    /// use, for links in emails, the tokens' issuer, cookies and same-origin checks.
    pub public_url: String,
}

impl Config {
    /// Whether browsers reach the fleet over TLS (cookies are then `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

impl Config {
    pub fn from_env(env: &Env, service: &str, default_port: u16) -> Result<Self, ConfigError> {
        let listen_var = format!("FLOTILLA_{}_LISTEN", service.to_ascii_uppercase());
        let listen = env.socket_addr(
            &listen_var,
            SocketAddr::from(([127, 0, 0, 1], default_port)),
        )?;
        let data_dir = data_dir(env)?;
        let database = database(env, &data_dir)?;
        let trusted_proxies = env.parse(
            "FLOTILLA_TRUSTED_PROXIES",
            TrustedProxies(vec![
                Network { addr: IpAddr::from([127, 0, 0, 1]), prefix: 32 },
                Network { addr: IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]), prefix: 128 },
            ]),
            "a comma-separated list of addresses or networks, e.g. 127.0.0.1,10.0.0.0/8 (or 'none')",
            |v| {
                if v.eq_ignore_ascii_case("none") {
                    return Some(TrustedProxies(Vec::new()));
                }
                v.split(',')
                    .map(|n| n.trim().parse().ok())
                    .collect::<Option<Vec<Network>>>()
                    .map(TrustedProxies)
            },
        )?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let workers = env.number("FLOTILLA_HTTP_WORKERS", cores, 1..=256)?;
        let queue_target_ms: u64 = env.number("FLOTILLA_QUEUE_TARGET_MS", 10, 0..=60_000)?;
        Ok(Self {
            listen,
            data_dir,
            database,
            auto_migrate: env.flag("FLOTILLA_AUTO_MIGRATE", true)?,
            trusted_proxies,
            max_body_bytes: env.number(
                "FLOTILLA_MAX_BODY_BYTES",
                64 * 1024,
                1024..=64 * 1024 * 1024,
            )?,
            max_in_flight: env.number("FLOTILLA_MAX_IN_FLIGHT", 32 * workers, 1..=1_000_000)?,
            queue_target: (queue_target_ms > 0).then(|| Duration::from_millis(queue_target_ms)),
            workers,
            shutdown_timeout: Duration::from_secs(env.number(
                "FLOTILLA_SHUTDOWN_TIMEOUT_SECS",
                10,
                0..=3600,
            )?),
            public_url: public_url(env)?,
        })
    }
}

/// `FLOTILLA_PUBLIC_URL` (default `http://127.0.0.1:8080`): the origin browsers use,
/// without a trailing `/`.
pub fn public_url(env: &Env) -> Result<String, ConfigError> {
    env.parse(
        "FLOTILLA_PUBLIC_URL",
        "http://127.0.0.1:8080".to_owned(),
        "an origin such as https://accounts.example.org (scheme, host, optional port)",
        |v| {
            let v = v.trim_end_matches('/');
            let rest = v
                .strip_prefix("https://")
                .or_else(|| v.strip_prefix("http://"))?;
            (!rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' '])).then(|| v.to_owned())
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map = env(vars);
        Config::from_env(&Env::from_fn(|k| map.get(k).cloned()), "signup", 7101)
    }

    #[test]
    fn defaults_work_on_a_fresh_checkout() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7101".parse().unwrap());
        assert_eq!(
            config.database.url.sqlite_path(),
            Some(std::path::Path::new("var/flotilla.db"))
        );
        assert!(config.auto_migrate);
        assert!(
            config
                .trusted_proxies
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(
            config
                .trusted_proxies
                .contains("::ffff:127.0.0.1".parse().unwrap())
        );
        assert!(!config.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(config.max_in_flight, 32 * config.workers);
        assert_eq!(config.queue_target, Some(Duration::from_millis(10)));
    }

    #[test]
    fn admission_control_is_set_by_its_variables() {
        let config = load(&[
            ("FLOTILLA_HTTP_WORKERS", "3"),
            ("FLOTILLA_QUEUE_TARGET_MS", "0"),
        ])
        .unwrap();
        assert_eq!(config.max_in_flight, 96);
        assert_eq!(config.queue_target, None);
        let config = load(&[
            ("FLOTILLA_MAX_IN_FLIGHT", "7"),
            ("FLOTILLA_QUEUE_TARGET_MS", "25"),
        ])
        .unwrap();
        assert_eq!(config.max_in_flight, 7);
        assert_eq!(config.queue_target, Some(Duration::from_millis(25)));
        let err = load(&[("FLOTILLA_QUEUE_TARGET_MS", "soon")]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_QUEUE_TARGET_MS");
    }

    #[test]
    fn data_dir_moves_the_default_database() {
        let config = load(&[("FLOTILLA_DATA_DIR", "/var/lib/flotilla")]).unwrap();
        assert_eq!(
            config.database.url.sqlite_path(),
            Some(std::path::Path::new("/var/lib/flotilla/flotilla.db"))
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = load(&[("FLOTILLA_MAX_IN_FLIGHT", "lots")]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_MAX_IN_FLIGHT");
        assert!(
            err.to_string().contains("a whole number from 1 to 1000000"),
            "{err}"
        );

        let err = load(&[("FLOTILLA_SIGNUP_LISTEN", "localhost")]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_SIGNUP_LISTEN");

        let err = load(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");

        let err = load(&[("FLOTILLA_TRUSTED_PROXIES", "10.0.0.0/33")]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_TRUSTED_PROXIES");

        let err = load(&[("FLOTILLA_AUTO_MIGRATE", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("true or false"));
    }

    #[test]
    fn networks_match_by_prefix() {
        let net: Network = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let none = load(&[("FLOTILLA_TRUSTED_PROXIES", "none")]).unwrap();
        assert!(!none.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
    }

    fn bus_with(vars: &[(&str, &str)]) -> Result<flotilla_bus::BusConfig, ConfigError> {
        let map = env(vars);
        bus(&Env::from_fn(|k| map.get(k).cloned()))
    }

    #[test]
    fn the_bus_secret_comes_from_its_variable() {
        let hex = "0123456789abcdef".repeat(4);
        let config = bus_with(&[
            ("FLOTILLA_BUS_SECRET", &hex),
            ("FLOTILLA_DATA_DIR", "/nonexistent"),
        ])
        .unwrap();
        assert_eq!(
            config.wake.secret,
            flotilla_bus::BusSecret::from_hex(&hex).unwrap()
        );
        assert_eq!(config.events_out.secret, config.wake.secret);
        let err = bus_with(&[("FLOTILLA_BUS_SECRET", "too-short")]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_BUS_SECRET");
        assert!(
            !err.to_string().contains("too-short"),
            "the value is not shown: {err}"
        );
        // Off this host, the secret must be set.
        let err = bus_with(&[("FLOTILLA_BUS_EVENTS_IN", "tcp://10.0.0.5:7111")]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_BUS_SECRET");
        assert!(err.to_string().contains("not all on loopback"), "{err}");
        let remote = bus_with(&[
            ("FLOTILLA_BUS_EVENTS_IN", "tcp://10.0.0.5:7111"),
            ("FLOTILLA_BUS_SECRET", &hex),
        ]);
        assert!(remote.is_ok());
    }

    #[test]
    fn without_the_variable_one_host_shares_a_secret_file() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!(
            "flotilla-bus-secret-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let data = root.join("var");
        let data_text = data.display().to_string();
        let first = bus_with(&[("FLOTILLA_DATA_DIR", &data_text)]).unwrap();
        let second = bus_with(&[("FLOTILLA_DATA_DIR", &data_text)]).unwrap();
        assert_eq!(first.wake.secret, second.wake.secret);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.join("bus.secret")), 0o600);
        assert_eq!(mode(&data), 0o711);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = bus_with(&[("FLOTILLA_DATA_DIR", &data_text)]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_DATA_DIR");
        assert!(
            err.to_string().contains(&format!("chmod 711 {data_text}")),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
