//! The public keys a service verifies with, and how they stay current: read from
//! login's JWKS (or a JWKS file) at start, every `KEY_REFRESH` for rotations, and on
//! demand when a token names an unknown `kid`. login hands over its own keys instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::DecodingKey;
use tokio::sync::{mpsc, oneshot};

use crate::access_token;
use crate::{Auth, KeySource};

/// Keys are fetched again at least this often (rotation), and at most once per
/// `MIN_REFETCH` on demand (an unknown `kid` must not turn into a flood).
pub const KEY_REFRESH: Duration = Duration::from_secs(300);
const MIN_REFETCH: Duration = Duration::from_secs(2);

/// When the keys were last fetched. A token naming an unknown `kid` within
/// `MIN_REFETCH` of a fetch is refused at once: the keys are as fresh as they may be,
/// so holding the request for another fetch would only hold it.
#[derive(Default)]
pub(crate) struct FetchClock {
    last: std::sync::Mutex<Option<Instant>>,
}

impl FetchClock {
    pub(crate) fn mark(&self) {
        self.mark_at(Instant::now());
    }

    fn mark_at(&self, at: Instant) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some(at);
        }
    }

    /// Whether the keys were fetched less than `MIN_REFETCH` before `now`.
    pub(crate) fn is_recent(&self, now: Instant) -> bool {
        self.last
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|at| now.saturating_duration_since(at) < MIN_REFETCH)
    }
}

/// The known public keys, by `kid`.
pub(crate) type KeyMap = HashMap<String, Arc<DecodingKey>>;

/// A request to fetch the keys again, made at the instant it carries; answered when a
/// fetch has ended since then.
pub(crate) type Refetch = (Instant, oneshot::Sender<()>);

/// Runs on the auth thread for the life of the service.
pub(crate) async fn keys_loop(auth: Auth, mut requests: mpsc::Receiver<Refetch>) {
    let source = auth.config().keys.clone();
    if source == KeySource::Local {
        // login hands its keys over itself; answer requests at once.
        while let Some((_, done)) = requests.recv().await {
            let _ = done.send(());
        }
        return;
    }
    let client = match &source {
        KeySource::Jwks(url) => match JwksClient::new(url, &auth.config().jwks_ca) {
            Some(client) => Some(client),
            None => return,
        },
        _ => None,
    };
    let mut last: Option<Instant> = None;
    let mut ended: Option<Instant> = None;
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let have_keys = auth.has_keys();
        if is_due(last, have_keys, !waiting.is_empty()) {
            last = Some(Instant::now());
            refresh(&auth, client.as_ref(), &source, have_keys).await;
            auth.fetched().mark();
            ended = Some(Instant::now());
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
                // Asked while a fetch was under way (a token checked as the service
                // starts): that fetch answers it, not another one 2 s later.
                Some((asked, done)) if ended.is_some_and(|ended| ended > asked) => {
                    let _ = done.send(());
                }
                Some((_, done)) => waiting.push(done),
                None => return,
            },
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// A connection to login's JWKS must be made within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole fetch must be done within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// A larger JWKS is refused (a few keys take a few hundred bytes).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How the JWKS is fetched: over http with hyper alone, over https with reqwest on
/// OpenSSL (native-tls), trusting only the authorities of `FLOTILLA_JWKS_CA_FILE` when
/// it is set, else the system's. OpenSSL is started only where it is used: it costs a
/// process about 5 MB, which a JWKS on the private network does not need.
enum JwksClient {
    Plain(PlainClient),
    Tls(reqwest::Client),
}

type PlainClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<hyper::body::Bytes>,
>;

impl JwksClient {
    fn new(url: &str, ca: &[reqwest::Certificate]) -> Option<Self> {
        if !url.starts_with("https://") {
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(connector);
            return Some(Self::Plain(client));
        }
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FETCH_TIMEOUT);
        let builder = if ca.is_empty() {
            builder
        } else {
            builder.tls_certs_only(ca.iter().cloned())
        };
        builder
            .build()
            .map(Self::Tls)
            .map_err(|e| log::error!("cannot make the JWKS client: {e}"))
            .ok()
    }

    /// The body of a successful `GET url`.
    async fn get(&self, url: &str) -> anyhow::Result<String> {
        match self {
            Self::Tls(client) => {
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
                    .with_context(|| format!("cannot read {url}"))
            }
            Self::Plain(client) => {
                let uri: hyper::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
                let fetch = async {
                    let response = client
                        .get(uri)
                        .await
                        .with_context(|| format!("cannot fetch {url}"))?;
                    if !response.status().is_success() {
                        anyhow::bail!("{url} answered {}", response.status());
                    }
                    let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES);
                    let bytes = http_body_util::BodyExt::collect(body)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot read {url}: {e}"))?
                        .to_bytes();
                    String::from_utf8(bytes.to_vec()).with_context(|| format!("{url} sent no text"))
                };
                tokio::time::timeout(FETCH_TIMEOUT, fetch)
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("cannot fetch {url}: no answer within {FETCH_TIMEOUT:?}")
                    })?
            }
        }
    }
}

/// Whether to fetch now: at once the first time, every `MIN_REFETCH` while no key is
/// known or someone asked, and every `KEY_REFRESH` otherwise.
fn is_due(last: Option<Instant>, have_keys: bool, asked: bool) -> bool {
    match last {
        None => true,
        Some(at) if !have_keys => at.elapsed() >= MIN_REFETCH,
        Some(at) => at.elapsed() >= KEY_REFRESH || (asked && at.elapsed() >= MIN_REFETCH),
    }
}

/// Fetches the keys and hands them to `auth`; on failure the known keys stay.
async fn refresh(auth: &Auth, client: Option<&JwksClient>, source: &KeySource, have_keys: bool) {
    match fetch(client, source).await {
        Ok(keys) => {
            log::debug!("loaded {} token verification key(s)", keys.len());
            auth.replace_keys(keys);
        }
        Err(e) if have_keys => log::warn!("keeping the known keys: {e:#}"),
        Err(e) => log::warn!("no token verification keys yet: {e:#}"),
    }
}

async fn fetch(client: Option<&JwksClient>, source: &KeySource) -> anyhow::Result<KeyMap> {
    let text = match (source, client) {
        (KeySource::Jwks(url), Some(client)) => client.get(url).await?,
        (KeySource::Jwks(url), None) => anyhow::bail!("no client to fetch {url} with"),
        (KeySource::File(path), _) => tokio::fs::read_to_string(path)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?,
        (KeySource::Local, _) => return Ok(KeyMap::new()),
    };
    parse_jwks(&text)
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
            let key = access_token::decoding_key(k.x.as_deref()?)?;
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
    fn a_fetch_is_recent_for_min_refetch() {
        let clock = FetchClock::default();
        let start = Instant::now();
        assert!(!clock.is_recent(start), "never fetched");
        clock.mark_at(start);
        assert!(clock.is_recent(start));
        assert!(clock.is_recent(start + MIN_REFETCH - Duration::from_millis(1)));
        assert!(!clock.is_recent(start + MIN_REFETCH));
    }

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
}
