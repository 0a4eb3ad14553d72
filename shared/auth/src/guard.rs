//! Trusting tokens on every service: public keys (from `/login`'s JWKS, a file, or
//! `login`'s own folder), a deny-list of revoked sessions, the extractors handlers
//! take ([`Authenticated`], [`Verified`], [`Admin`], [`Submission`]) and the CSRF rule.
//!
//! The deny-list is filled two ways: `session.revoked` events over the bus (within
//! milliseconds) and a catch-up from the database at start and every
//! `FLOTILLA_REVOCATION_CATCHUP_SECS` (the truth, for when the bus is down). A session
//! stays denied until every token issued for it has expired.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpRequest, web};
use anyhow::Context;
use chrono::{TimeDelta, Utc};
use flotilla_bus::{EventPublisher, EventSubscriber};
use flotilla_db::Pool;
use flotilla_kit::body::{BodyFormat, read_body};
use flotilla_kit::{Config, ConfigError, Env, Error};
use jsonwebtoken::DecodingKey;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::keys::KeyRing;
use crate::tokens::{self, Claims, TokenError, TokenSettings};

/// The topic of revocation events; the payload is `{"sids":[…]}`.
pub const SESSION_REVOKED: &str = "session.revoked";
/// The header (or form field `csrf_token`) that carries the form token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Where a service gets the public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `FLOTILLA_JWKS_URL` (default login's own address on this host).
    Jwks(String),
    /// `FLOTILLA_JWKS_FILE`: a JWKS file (`flotilla-login keys jwks > file`), for
    /// services that cannot reach login.
    File(PathBuf),
    /// login itself: its key folder, handed over with [`Auth::set_keys`].
    Local,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub tokens: TokenSettings,
    pub keys: KeySource,
    /// `FLOTILLA_REVOCATION_CATCHUP_SECS` (default 5).
    pub catch_up: Duration,
    /// `FLOTILLA_BUS_EVENTS_IN` / `_OUT`: the worker's forwarder.
    pub events_in: String,
    pub events_out: String,
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
                "an http:// URL of login's /login/.well-known/jwks.json",
                |v| v.starts_with("http://").then(|| v.to_owned()),
            )?),
        };
        Ok(Self {
            tokens: TokenSettings::from_env(env, &kit.public_url)?,
            keys,
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

type KeyMap = HashMap<String, Arc<DecodingKey>>;

/// Revoked sessions: id → unix time until which their tokens are refused.
#[derive(Default)]
pub struct DenyList {
    entries: Mutex<HashMap<String, i64>>,
}

impl DenyList {
    pub fn deny(&self, sid: &str, until: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            let slot = entries.entry(sid.to_owned()).or_insert(until);
            *slot = (*slot).max(until);
        }
    }

    pub fn is_denied(&self, sid: &str) -> bool {
        self.entries
            .lock()
            .map(|entries| entries.contains_key(sid))
            .unwrap_or(true)
    }

    /// Forgets the sessions whose tokens have all expired.
    fn prune(&self, now: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, until| *until >= now);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Tokens seen and verified already, by SHA-256: a client sends the same token for
/// its whole life, and hashing it costs a few µs where an EdDSA check costs ~45.
/// `exp` and `nbf` are checked again on every hit and the deny-list always; the whole
/// cache is dropped when the keys change (a key withdrawn takes its tokens with it).
#[derive(Default)]
struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Claims>>,
}

/// At most this many tokens are remembered.
const VERIFIED_TOKENS: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, digest: &[u8; 32], now: i64, leeway: i64) -> Option<Claims> {
        let entries = self.entries.lock().ok()?;
        let claims = entries.get(digest)?;
        (claims.exp + leeway > now && claims.nbf - leeway <= now).then(|| claims.clone())
    }

    fn insert(&self, digest: [u8; 32], claims: &Claims, now: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= VERIFIED_TOKENS {
                entries.retain(|_, c| c.exp > now);
                if entries.len() >= VERIFIED_TOKENS {
                    entries.clear();
                }
            }
            entries.insert(digest, claims.clone());
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

struct Inner {
    config: AuthConfig,
    keys: RwLock<KeyMap>,
    verified: VerifiedTokens,
    denied: Arc<DenyList>,
    /// Asks the background thread to fetch the keys again (answered when done).
    refetch: mpsc::Sender<oneshot::Sender<()>>,
    caught_up: Arc<AtomicBool>,
    publisher: EventPublisher,
    _subscriber: EventSubscriber,
}

/// The token checker of one service; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

/// How the token came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    Cookie,
}

#[derive(serde::Deserialize)]
struct RevokedEvent {
    sids: Vec<String>,
}

impl Auth {
    /// Starts the background thread (keys, catch-up) and the bus sockets.
    pub fn start(config: AuthConfig, pool: Pool) -> anyhow::Result<Self> {
        let denied = Arc::new(DenyList::default());
        let hold = config.tokens.ttl_secs + config.tokens.leeway_secs as i64;
        let from_events = denied.clone();
        let subscriber = EventSubscriber::start(
            &config.events_out,
            &[SESSION_REVOKED],
            move |_topic: &str, payload: &[u8]| match serde_json::from_slice::<RevokedEvent>(
                payload,
            ) {
                Ok(event) => {
                    let until = Utc::now().timestamp() + hold;
                    for sid in &event.sids {
                        from_events.deny(sid, until);
                    }
                }
                Err(e) => log::warn!("ignored a malformed {SESSION_REVOKED} event: {e}"),
            },
        )?;
        let (refetch, requests) = mpsc::channel(64);
        let auth = Self {
            inner: Arc::new(Inner {
                keys: RwLock::new(KeyMap::new()),
                verified: VerifiedTokens::default(),
                denied,
                refetch,
                caught_up: Arc::new(AtomicBool::new(false)),
                publisher: EventPublisher::start(&config.events_in)?,
                _subscriber: subscriber,
                config,
            }),
        };
        background::start(auth.clone(), pool, requests)?;
        Ok(auth)
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.inner.config.tokens
    }

    /// Replaces the known public keys (login, after reading its folder).
    pub fn set_keys(&self, ring: &KeyRing) {
        let keys = ring
            .keys()
            .iter()
            .filter_map(|k| {
                tokens::decoding_key(&k.public_x()).map(|d| (k.kid.clone(), Arc::new(d)))
            })
            .collect();
        self.replace_keys(keys);
    }

    fn replace_keys(&self, keys: KeyMap) {
        if let Ok(mut current) = self.inner.keys.write() {
            let same = current.len() == keys.len() && keys.keys().all(|k| current.contains_key(k));
            *current = keys;
            if !same {
                self.inner.verified.clear();
            }
        }
    }

    fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.inner.keys.read().ok()?.get(kid).cloned()
    }

    /// Ready once keys are known and the deny-list has caught up from the database.
    pub fn readiness(&self) -> Result<(), String> {
        let keys = self.inner.keys.read().map(|k| k.len()).unwrap_or(0);
        if keys == 0 {
            return Err("no token verification keys yet".into());
        }
        if !self.inner.caught_up.load(Ordering::Acquire) {
            return Err("the revocation list has not caught up yet".into());
        }
        Ok(())
    }

    /// Checks a token: signature by a known key (refetching the keys once for an
    /// unknown `kid`), claims, and the session not revoked.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Utc::now().timestamp();
        let leeway = self.settings().leeway_secs as i64;
        if let Some(claims) = self.inner.verified.get(&digest, now, leeway) {
            if self.inner.denied.is_denied(&claims.sid) {
                return Err(TokenError::Revoked);
            }
            return Ok(claims);
        }
        let kid = tokens::key_id(token)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refetch_keys().await;
                self.key(&kid).ok_or(TokenError::UnknownKey(kid))?
            }
        };
        let claims = tokens::verify(self.settings(), token, &key)?;
        self.inner.verified.insert(digest, &claims, now);
        if self.inner.denied.is_denied(&claims.sid) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    async fn refetch_keys(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.refetch.try_send(done).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        }
    }

    /// Denies the sessions here at once and tells the other services.
    pub fn announce_revoked(&self, sids: &[String]) {
        if sids.is_empty() {
            return;
        }
        let until = Utc::now().timestamp() + self.hold_secs();
        for sid in sids {
            self.inner.denied.deny(sid, until);
        }
        let payload = serde_json::json!({ "sids": sids }).to_string();
        self.inner
            .publisher
            .publish(SESSION_REVOKED, payload.as_bytes());
    }

    /// Publishes an event to the other services (best effort; see `flotilla_bus`).
    pub fn publish(&self, topic: &str, payload: &serde_json::Value) {
        self.inner
            .publisher
            .publish(topic, payload.to_string().as_bytes());
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.inner.denied.is_denied(sid)
    }

    fn hold_secs(&self) -> i64 {
        self.settings().ttl_secs + self.settings().leeway_secs as i64
    }

    pub fn access_cookie_name(&self) -> &'static str {
        if self.inner.config.secure_cookies {
            "__Host-flotilla_access"
        } else {
            "flotilla_access"
        }
    }

    pub fn refresh_cookie_name(&self) -> &'static str {
        // `__Host-` needs `Path=/`; the refresh cookie is scoped to /login.
        if self.inner.config.secure_cookies {
            "__Secure-flotilla_refresh"
        } else {
            "flotilla_refresh"
        }
    }

    /// The access token cookie: HttpOnly, SameSite=Lax, whole site, Secure on https.
    pub fn access_cookie(&self, token: &str) -> Cookie<'static> {
        self.cookie(
            self.access_cookie_name(),
            token,
            "/",
            self.settings().ttl_secs,
        )
    }

    /// The refresh token cookie, sent to /login only.
    pub fn refresh_cookie(&self, token: &str, max_age_secs: i64) -> Cookie<'static> {
        self.cookie(self.refresh_cookie_name(), token, "/login", max_age_secs)
    }

    /// Cookies that delete both.
    pub fn clearing_cookies(&self) -> [Cookie<'static>; 2] {
        [
            self.cookie(self.access_cookie_name(), "", "/", 0),
            self.cookie(self.refresh_cookie_name(), "", "/login", 0),
        ]
    }

    fn cookie(
        &self,
        name: &'static str,
        value: &str,
        path: &'static str,
        max_age: i64,
    ) -> Cookie<'static> {
        Cookie::build(name, value.to_owned())
            .path(path)
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.inner.config.secure_cookies)
            .max_age(actix_web::cookie::time::Duration::seconds(max_age))
            .finish()
    }

    /// The access token of a request: `Authorization: Bearer`, else the cookie.
    pub fn token_of(&self, req: &HttpRequest) -> Option<(String, Credential)> {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let value = value.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| (token.trim().to_owned(), Credential::Bearer));
        }
        req.cookie(self.access_cookie_name())
            .map(|c| (c.value().to_owned(), Credential::Cookie))
            .filter(|(t, _)| !t.is_empty())
    }

    /// The verified identity of a request, or the 401 that says why not.
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Authenticated, Error> {
        let Some((token, via)) = self.token_of(req) else {
            return Err(Error::Unauthorized {
                code: "not_authenticated",
                message: "Sign in first: send an access token as `Authorization: Bearer …` \
                          or the session cookie."
                    .into(),
            });
        };
        match self.verify(&token).await {
            Ok(claims) => Ok(Authenticated { claims, via }),
            Err(e) => Err(unauthorized(&e)),
        }
    }

    /// The CSRF rule for a change authenticated by cookie: it must come from this
    /// site (`Origin` / `Sec-Fetch-Site`) and carry the session's form token (form
    /// field `csrf_token` or header `X-CSRF-Token`). Bearer requests are exempt: a
    /// browser never adds that header by itself.
    pub fn check_csrf(
        &self,
        req: &HttpRequest,
        who: &Authenticated,
        submitted: Option<&str>,
    ) -> Result<(), Error> {
        if who.via == Credential::Bearer || is_safe(req) {
            return Ok(());
        }
        self.check_same_origin(req)?;
        let header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let sent = header.or(submitted).unwrap_or("");
        if sent.is_empty() || !constant_time_eq(sent.as_bytes(), who.claims.csrf.as_bytes()) {
            return Err(Error::Forbidden {
                code: "csrf_token_invalid",
                message: "The form token is missing or out of date: reload the page and try again."
                    .into(),
            });
        }
        Ok(())
    }

    /// Refuses a request a browser sent from another site. Requests that carry
    /// neither `Origin` nor `Sec-Fetch-Site` did not come from a browser's form or
    /// script, and `strict` says whether to refuse those too.
    pub fn check_same_origin_with(&self, req: &HttpRequest, strict: bool) -> Result<(), Error> {
        let headers = req.headers();
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let site_ok = site.is_none_or(|s| s == "same-origin" || s == "none");
        let origin_ok = origin.is_none_or(|o| self.is_own_origin(o, headers));
        let anything = site.is_some() || origin.is_some();
        if site_ok && origin_ok && (anything || !strict) {
            return Ok(());
        }
        Err(Error::Forbidden {
            code: "cross_origin_request",
            message: "This change must be made from this site's own pages.".into(),
        })
    }

    pub fn check_same_origin(&self, req: &HttpRequest) -> Result<(), Error> {
        self.check_same_origin_with(req, true)
    }

    fn is_own_origin(&self, origin: &str, headers: &HeaderMap) -> bool {
        if origin == self.inner.config.public_url {
            return true;
        }
        // The origin the proxy was reached at (its Host, with the port).
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(header::HOST))
            .and_then(|v| v.to_str().ok());
        let proto = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("http");
        host.is_some_and(|host| origin == format!("{proto}://{host}"))
    }
}

fn is_safe(req: &HttpRequest) -> bool {
    req.method().is_safe()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 401 for a refused token.
pub fn unauthorized(e: &TokenError) -> Error {
    let message = match e {
        TokenError::Expired => "The access token has expired: get a new one from /login/refresh.",
        TokenError::Revoked => "This session has been signed out: sign in again.",
        _ => "The access token is not valid: sign in again.",
    };
    Error::Unauthorized {
        code: e.code(),
        message: message.into(),
    }
}

fn auth_of(req: &HttpRequest) -> Result<Auth, Error> {
    req.app_data::<web::Data<Auth>>()
        .map(|a| a.get_ref().clone())
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the auth extractor needs web::Data<Auth>")))
}

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, Error>>>>;

/// A request with a valid access token of a live session. A change authenticated by
/// cookie must also pass the CSRF rule, with the token in `X-CSRF-Token` (use
/// [`Submission`] to accept it as a form field).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Claims,
    pub via: Credential,
}

impl Authenticated {
    pub fn user_id(&self) -> &str {
        &self.claims.sub
    }

    pub fn session_id(&self) -> &str {
        &self.claims.sid
    }
}

impl FromRequest for Authenticated {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let auth = auth_of(&req)?;
            let who = auth.authenticate(&req).await?;
            auth.check_csrf(&req, &who, None)?;
            Ok(who)
        })
    }
}

/// [`Authenticated`] with a confirmed email address (403 otherwise).
#[derive(Debug, Clone)]
pub struct Verified(pub Authenticated);

impl FromRequest for Verified {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let who = Authenticated::from_request(req, payload);
        Box::pin(async move {
            let who = who.await?;
            if !who.claims.email_verified {
                return Err(Error::Forbidden {
                    code: "email_not_verified",
                    message: "Confirm your email address first; a new link is at /signup/resend."
                        .into(),
                });
            }
            Ok(Verified(who))
        })
    }
}

/// [`Authenticated`] with the admin role (403 for anyone else).
#[derive(Debug, Clone)]
pub struct Admin(pub Authenticated);

impl FromRequest for Admin {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let who = Authenticated::from_request(req, payload);
        Box::pin(async move {
            let who = who.await?;
            if who.claims.role != "admin" {
                return Err(Error::Forbidden {
                    code: "admin_only",
                    message: "Only administrators may do this.".into(),
                });
            }
            Ok(Admin(who))
        })
    }
}

/// A body that may carry the form token.
pub trait CarriesCsrf {
    fn csrf_token(&self) -> Option<&str>;
}

/// An authenticated change with its body (JSON or form), the CSRF rule applied with
/// the form field `csrf_token` or the header. An empty body reads as `{}`.
pub struct Submission<T> {
    pub who: Authenticated,
    pub format: BodyFormat,
    pub input: T,
}

impl<T: DeserializeOwned + CarriesCsrf + 'static> FromRequest for Submission<T> {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let auth = auth_of(&req)?;
            let who = auth.authenticate(&req).await?;
            let body = body.await.map_err(|e| Error::BadRequest {
                code: "unreadable_body",
                message: format!("The request body could not be read: {e}."),
            })?;
            let (format, input): (BodyFormat, T) = if body.is_empty() {
                let input = serde_json::from_str("{}").map_err(Error::malformed_json)?;
                (BodyFormat::Json, input)
            } else {
                read_body(&req, &body)?
            };
            auth.check_csrf(&req, &who, input.csrf_token())?;
            Ok(Submission { who, format, input })
        })
    }
}

mod background {
    //! The thread that keeps the keys and the deny-list current.

    use super::*;

    /// Keys are fetched again at least this often (rotation), and at most once per
    /// `MIN_REFETCH` on demand (an unknown `kid` must not turn into a flood).
    const KEY_REFRESH: Duration = Duration::from_secs(300);
    const MIN_REFETCH: Duration = Duration::from_secs(2);
    /// Catch-up reads again what was revoked this long before its last pass, for
    /// transactions that committed late and clocks that differ a little.
    const OVERLAP: TimeDelta = TimeDelta::seconds(60);

    pub fn start(
        auth: Auth,
        pool: Pool,
        requests: mpsc::Receiver<oneshot::Sender<()>>,
    ) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the auth thread's runtime")?;
        std::thread::Builder::new()
            .name("flotilla-auth".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let keys = keys_loop(auth.clone(), requests);
                    let revocations = catch_up_loop(auth, pool);
                    tokio::join!(keys, revocations);
                })
            })
            .context("cannot start the auth thread")?;
        Ok(())
    }

    async fn keys_loop(auth: Auth, mut requests: mpsc::Receiver<oneshot::Sender<()>>) {
        let source = auth.inner.config.keys.clone();
        if source == KeySource::Local {
            // login hands its keys over itself; answer requests at once.
            while let Some(done) = requests.recv().await {
                let _ = done.send(());
            }
            return;
        }
        let client = match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(3))
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                log::error!("cannot make the JWKS client: {e}");
                return;
            }
        };
        let mut last: Option<Instant> = None;
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            let have_keys = auth
                .inner
                .keys
                .read()
                .map(|k| !k.is_empty())
                .unwrap_or(false);
            let due = match last {
                None => true,
                Some(at) if !have_keys => at.elapsed() >= MIN_REFETCH,
                Some(at) => {
                    at.elapsed() >= KEY_REFRESH
                        || (!waiting.is_empty() && at.elapsed() >= MIN_REFETCH)
                }
            };
            if due {
                last = Some(Instant::now());
                match fetch(&client, &source).await {
                    Ok(keys) => {
                        log::debug!("loaded {} token verification key(s)", keys.len());
                        auth.replace_keys(keys);
                    }
                    Err(e) if have_keys => log::warn!("keeping the known keys: {e:#}"),
                    Err(e) => log::warn!("no token verification keys yet: {e:#}"),
                }
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
            let pause = if waiting.is_empty() && have_keys {
                KEY_REFRESH
            } else {
                MIN_REFETCH
            };
            let pause = last.map_or(Duration::ZERO, |at| pause.saturating_sub(at.elapsed()));
            tokio::select! {
                request = requests.recv() => match request {
                    Some(done) => waiting.push(done),
                    None => return,
                },
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn fetch(client: &reqwest::Client, source: &KeySource) -> anyhow::Result<KeyMap> {
        let text = match source {
            KeySource::Jwks(url) => {
                let response = client
                    .get(url)
                    .send()
                    .await
                    .with_context(|| format!("cannot fetch {url}"))?;
                if !response.status().is_success() {
                    anyhow::bail!("{url} answered {}", response.status());
                }
                response
                    .text()
                    .await
                    .with_context(|| format!("cannot read {url}"))?
            }
            KeySource::File(path) => tokio::fs::read_to_string(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?,
            KeySource::Local => return Ok(KeyMap::new()),
        };
        parse_jwks(&text)
    }

    async fn catch_up_loop(auth: Auth, pool: Pool) {
        let hold = TimeDelta::seconds(auth.hold_secs());
        let mut since = Utc::now().naive_utc() - hold;
        let mut ticker = tokio::time::interval(auth.inner.config.catch_up);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let started = Utc::now().naive_utc();
            let pool = pool.clone();
            let read = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let mut conn = pool.get()?;
                Ok(flotilla_accounts::revoked_since(&mut conn, since)?)
            })
            .await;
            match read {
                Ok(Ok(rows)) => {
                    for (sid, at) in rows {
                        let until = (at + hold).and_utc().timestamp();
                        auth.inner.denied.deny(&sid, until);
                    }
                    auth.inner.denied.prune(Utc::now().timestamp());
                    auth.inner.caught_up.store(true, Ordering::Release);
                    since = started - OVERLAP;
                }
                Ok(Err(e)) => log::warn!("revocation catch-up failed: {e:#}"),
                Err(e) => log::warn!("revocation catch-up failed: {e}"),
            }
        }
    }
}

/// Reads a JWKS, keeping only Ed25519 keys with a `kid`.
pub fn parse_jwks(text: &str) -> anyhow::Result<KeyMap> {
    #[derive(serde::Deserialize)]
    struct Jwk {
        kty: Option<String>,
        crv: Option<String>,
        kid: Option<String>,
        x: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Jwks {
        keys: Vec<Jwk>,
    }
    let jwks: Jwks = serde_json::from_str(text).context("not a JWKS document")?;
    let keys: KeyMap = jwks
        .keys
        .into_iter()
        .filter(|k| k.kty.as_deref() == Some("OKP") && k.crv.as_deref() == Some("Ed25519"))
        .filter_map(|k| {
            let key = tokens::decoding_key(k.x.as_deref()?)?;
            Some((k.kid?, Arc::new(key)))
        })
        .collect();
    if keys.is_empty() {
        anyhow::bail!("the JWKS holds no Ed25519 key");
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    #[test]
    fn a_jwks_keeps_only_usable_ed25519_keys() {
        let key = SigningKey::generate();
        let jwks = serde_json::json!({"keys": [
            key.jwk(),
            {"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "short", "x": "AAAA"},
            {"kty": "OKP", "crv": "Ed25519", "x": key.public_x()},
        ]});
        let keys = parse_jwks(&jwks.to_string()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.contains_key(&key.kid));
        assert!(parse_jwks("{\"keys\": []}").is_err());
        assert!(parse_jwks("nonsense").is_err());
    }

    #[test]
    fn denied_sessions_are_forgotten_once_their_tokens_expired() {
        let list = DenyList::default();
        list.deny("a", 100);
        list.deny("b", 300);
        list.deny("a", 50);
        assert!(list.is_denied("a") && list.is_denied("b"));
        list.prune(200);
        assert!(!list.is_denied("a"));
        assert!(list.is_denied("b"));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn remembered_tokens_still_expire() {
        let cache = VerifiedTokens::default();
        let claims = |exp: i64| Claims {
            sub: "u".into(),
            sid: "s".into(),
            role: "user".into(),
            email_verified: true,
            csrf: "c".into(),
            iss: "i".into(),
            aud: "a".into(),
            iat: 0,
            nbf: 0,
            exp,
        };
        cache.insert([1; 32], &claims(100), 50);
        assert!(cache.get(&[1; 32], 90, 0).is_some());
        assert!(cache.get(&[1; 32], 100, 0).is_none(), "expired");
        assert!(cache.get(&[1; 32], 110, 30).is_some(), "within the leeway");
        assert!(cache.get(&[2; 32], 90, 0).is_none());
        for i in 0..VERIFIED_TOKENS as u32 + 5 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&i.to_le_bytes());
            cache.insert(digest, &claims(1_000), 50);
        }
        assert!(cache.entries.lock().unwrap().len() <= VERIFIED_TOKENS);
        cache.clear();
        assert!(cache.get(&[1; 32], 90, 0).is_none());
    }

    #[test]
    fn form_tokens_compare_in_constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
