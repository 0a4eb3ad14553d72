//! [`Auth`], the token checker of one service: it holds the public keys, the cache of
//! tokens already verified, the deny-list and the bus sockets, and runs the thread that
//! keeps the keys (`key_refresh`) and the deny-list (`revocation`) current. Cookies, the
//! CSRF rule and the extractors build on it in their own modules.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use flotilla_bus::{EventPublisher, EventSubscriber};
use flotilla_db::Pool;
use jsonwebtoken::DecodingKey;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::access_token::{self, Claims, TokenError, TokenSettings};
use crate::key_refresh::{self, FetchClock, KeyMap, Refetch};
use crate::keys::KeyRing;
use crate::revocation;
use crate::token_cache::VerifiedTokens;
use crate::{AuthConfig, DenyList};

/// The longest a token check waits for the deny-list's first catch-up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

struct Inner {
    config: AuthConfig,
    keys: RwLock<KeyMap>,
    verified: VerifiedTokens,
    denied: Arc<DenyList>,
    /// Asks the background thread to fetch the keys again (answered when done).
    refetch: mpsc::Sender<Refetch>,
    /// When the background thread last fetched the keys.
    fetched: FetchClock,
    caught_up: AtomicBool,
    /// Wakes the requests that wait for the first catch-up.
    caught_up_signal: Notify,
    publisher: EventPublisher,
    _subscriber: EventSubscriber,
}

/// The token checker of one service; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl Auth {
    /// [`Auth::start`] for a service: on its database, and its `/ready` waits until the
    /// keys are loaded and the revocations caught up.
    pub fn start_for(config: AuthConfig, state: &flotilla_kit::State) -> anyhow::Result<Self> {
        let auth = Self::start(config, state.pool.clone())?;
        let checker = auth.clone();
        state.add_ready_check(Arc::new(move || checker.readiness()));
        Ok(auth)
    }

    /// Starts the background thread (keys, catch-up) and the bus sockets.
    pub fn start(config: AuthConfig, pool: Pool) -> anyhow::Result<Self> {
        let denied = Arc::new(DenyList::default());
        let subscriber = revocation::subscribe(&config, denied.clone())?;
        let (refetch, requests) = mpsc::channel(64);
        let auth = Self {
            inner: Arc::new(Inner {
                keys: RwLock::new(KeyMap::new()),
                verified: VerifiedTokens::default(),
                denied,
                refetch,
                fetched: FetchClock::default(),
                caught_up: AtomicBool::new(false),
                caught_up_signal: Notify::new(),
                publisher: EventPublisher::start(&config.events_in)?,
                _subscriber: subscriber,
                config,
            }),
        };
        start_background(auth.clone(), pool, requests)?;
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
                access_token::decoding_key(&k.public_x()).map(|d| (k.kid.clone(), Arc::new(d)))
            })
            .collect();
        self.replace_keys(keys);
    }

    /// Replaces the known public keys, forgetting the verified tokens if they changed.
    pub(crate) fn replace_keys(&self, keys: KeyMap) {
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

    pub(crate) fn has_keys(&self) -> bool {
        self.inner
            .keys
            .read()
            .map(|k| !k.is_empty())
            .unwrap_or(false)
    }

    pub(crate) fn fetched(&self) -> &FetchClock {
        &self.inner.fetched
    }

    pub(crate) fn deny_list(&self) -> &DenyList {
        &self.inner.denied
    }

    /// The deny-list has read the database once.
    pub(crate) fn mark_caught_up(&self) {
        self.inner.caught_up.store(true, Ordering::Release);
        self.inner.caught_up_signal.notify_waiters();
    }

    /// Waits (up to `CATCH_UP_WAIT`) for the deny-list's first catch-up from the
    /// database: an instance that has just started takes requests as soon as it
    /// listens, and until then knows only the revocations the bus brought since.
    async fn caught_up(&self) {
        let signal = self.inner.caught_up_signal.notified();
        if self.inner.caught_up.load(Ordering::Acquire) {
            return;
        }
        if tokio::time::timeout(CATCH_UP_WAIT, signal).await.is_err() {
            log::warn!(
                "checking a token before the revocation list caught up from the database \
                 (waited {CATCH_UP_WAIT:?}): only the revocations heard on the bus count"
            );
        }
    }

    /// Ready once keys are known and the deny-list has caught up from the database.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.has_keys() {
            return Err("no token verification keys yet".into());
        }
        if !self.inner.caught_up.load(Ordering::Acquire) {
            return Err("the revocation list has not caught up yet".into());
        }
        Ok(())
    }

    /// Checks a token: signature by a known key (refetching the keys once for an
    /// unknown `kid`, unless they were fetched in the last 2 s: then it is refused at
    /// once), claims, and the session not revoked. Before the deny-list's first
    /// catch-up from the database it waits for it (see `caught_up`).
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if !self.inner.caught_up.load(Ordering::Acquire) {
            self.caught_up().await;
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Utc::now().timestamp();
        let leeway = self.settings().leeway_secs as i64;
        if let Some(claims) = self.inner.verified.get(&digest, now, leeway) {
            if self.inner.denied.is_denied(&claims.sid) {
                return Err(TokenError::Revoked);
            }
            return Ok(claims);
        }
        let kid = access_token::key_id(token)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None if self.inner.fetched.is_recent(std::time::Instant::now()) => {
                return Err(TokenError::UnknownKey(kid));
            }
            None => {
                self.refetch_keys().await;
                self.key(&kid).ok_or(TokenError::UnknownKey(kid))?
            }
        };
        let claims = access_token::verify(self.settings(), token, &key)?;
        self.inner.verified.insert(digest, &claims, now);
        if self.inner.denied.is_denied(&claims.sid) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    async fn refetch_keys(&self) {
        let (done, wait) = oneshot::channel();
        if self
            .inner
            .refetch
            .try_send((std::time::Instant::now(), done))
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        }
    }

    /// Publishes an event to the other services (best effort; see `flotilla_bus`).
    pub fn publish(&self, event: &flotilla_bus::Event) {
        self.inner.publisher.send(event);
    }
}

/// The thread that keeps the keys and the deny-list current, on its own runtime.
fn start_background(
    auth: Auth,
    pool: Pool,
    requests: mpsc::Receiver<Refetch>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the auth thread's runtime")?;
    std::thread::Builder::new()
        .name("flotilla-auth".into())
        .spawn(move || {
            runtime.block_on(async move {
                let keys = key_refresh::keys_loop(auth.clone(), requests);
                let revocations = revocation::catch_up_loop(auth, pool);
                tokio::join!(keys, revocations);
            })
        })
        .context("cannot start the auth thread")?;
    Ok(())
}
