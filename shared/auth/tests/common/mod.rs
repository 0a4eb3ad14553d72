//! What the auth crate's integration tests share: a started [`Auth`] over a fresh SQLite
//! database in a folder of its own, with free bus endpoints, and the claims of a token.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use flotilla_auth::access_token::Claims;
use flotilla_auth::{Auth, AuthConfig, KeySource, TokenSettings};
use flotilla_db::{DatabaseUrl, PoolConfig};

/// A started [`Auth`] taking its keys from `keys`, its settings, and its folder
/// (remove it when done).
pub fn start_auth(name: &str, keys: KeySource) -> (Auth, TokenSettings, PathBuf) {
    start_auth_after(name, keys, |_| {})
}

/// [`start_auth`], with `prepare` given the pool of the migrated database before
/// [`Auth`] starts on it.
pub fn start_auth_after(
    name: &str,
    keys: KeySource,
    prepare: impl FnOnce(&flotilla_db::Pool),
) -> (Auth, TokenSettings, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "flotilla-{name}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let database = PoolConfig {
        url: DatabaseUrl::parse(&format!("sqlite://{}", dir.join("flotilla.db").display()))
            .unwrap(),
        max_size: 2,
        timeout: Duration::from_secs(3),
        busy_timeout: Duration::from_secs(3),
    };
    let mut conn = flotilla_db::open(&database).unwrap();
    flotilla_db::migrate(&mut conn, &database.url).unwrap();
    let pool = flotilla_db::connect(&database).unwrap();
    prepare(&pool);
    let settings = TokenSettings {
        issuer: "http://127.0.0.1:8080/login".into(),
        audience: "flotilla".into(),
        ttl_secs: 900,
        leeway_secs: 30,
    };
    let config = AuthConfig {
        tokens: settings.clone(),
        keys,
        jwks_ca: Vec::new(),
        catch_up: Duration::from_secs(60),
        events_in: free_endpoint(),
        events_out: free_endpoint(),
        public_url: "http://127.0.0.1:8080".into(),
        secure_cookies: false,
    };
    (Auth::start(config, pool).unwrap(), settings, dir)
}

/// The claims of a token for `user-1` in `sid`, valid now.
pub fn claims(settings: &TokenSettings, sid: &str, role: &str, verified: bool) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "user-1".into(),
        sid: sid.into(),
        role: role.into(),
        email_verified: verified,
        email: "ada@example.org".into(),
        preferred_username: None,
        name: None,
        amr: vec!["pwd".to_owned()],
        csrf: "form-token".into(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + settings.ttl_secs,
    }
}

fn free_endpoint() -> flotilla_bus::BusEndpoint {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = flotilla_bus::BusSecret::from_bytes(&[3; 32]).unwrap();
    flotilla_bus::BusEndpoint::new(&format!("tcp://127.0.0.1:{port}"), &secret)
}
