//! A service's keys from login's JWKS over HTTP: a token naming an unknown `kid` is
//! refused at once, without a fetch, while the keys were fetched in the last 2 s, and
//! accepted after a later fetch brings its key; a token checked during the first fetch
//! waits for that fetch alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_auth::access_token;
use flotilla_auth::keys::SigningKey;
use flotilla_auth::{KeySource, TokenError, TokenSettings};

mod common;

/// A JWKS served over plain HTTP from a string the test may change; counts requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(body: String) -> Self {
        Self::start_slow(body, Duration::ZERO)
    }

    /// Answers each request `delay` after reading it.
    fn start_slow(body: String, delay: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let requests = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (body.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buffer = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(delay);
                let body = served.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self {
            url,
            body,
            requests,
        }
    }

    fn serve(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

fn token(settings: &TokenSettings, key: &SigningKey) -> String {
    access_token::sign(key, &common::claims(settings, "session-1", "user", true)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_kid_is_refused_at_once_while_the_keys_are_fresh() {
    let (known, rotated) = (SigningKey::generate(), SigningKey::generate());
    let server = JwksServer::start(jwks(&[&known]));
    let (auth, settings, dir) =
        common::start_auth("key-refresh", KeySource::Jwks(server.url.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while auth.readiness().is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(auth.readiness(), Ok(()));
    assert!(auth.verify(&token(&settings, &known)).await.is_ok());

    // The first unknown kid may fetch (if the last fetch is 2 s old); the next one,
    // right after, is refused without a fetch and without waiting.
    let unknown = token(&settings, &rotated);
    assert!(matches!(
        auth.verify(&unknown).await,
        Err(TokenError::UnknownKey(_))
    ));
    let fetched = server.requests();
    for _ in 0..3 {
        let started = Instant::now();
        assert!(matches!(
            auth.verify(&unknown).await,
            Err(TokenError::UnknownKey(_))
        ));
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        server.requests(),
        fetched,
        "no fetch within 2 s of the last"
    );

    // Once the JWKS has the new key, a request after the 2 s fetches it and passes.
    server.serve(jwks(&[&known, &rotated]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut accepted = false;
    while !accepted && Instant::now() < deadline {
        accepted = auth.verify(&unknown).await.is_ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "the rotated key was never fetched");
    assert!(server.requests() > fetched);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restarted instance takes requests at once, while its first fetch of the keys may
/// still be under way: a token checked then waits for that fetch, and is accepted when
/// it ends, instead of waiting 2 s more for another fetch.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_checked_during_the_first_fetch_waits_for_that_fetch_alone() {
    let key = SigningKey::generate();
    let server = JwksServer::start_slow(jwks(&[&key]), Duration::from_millis(500));
    let (auth, settings, dir) =
        common::start_auth("key-first-fetch", KeySource::Jwks(server.url.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.requests() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.requests(), 1, "the first fetch did not begin");
    assert!(
        auth.readiness().is_err(),
        "keys before the first fetch ended"
    );

    let started = Instant::now();
    let verified = auth.verify(&token(&settings, &key)).await;
    let took = started.elapsed();
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(server.requests(), 1, "a second fetch");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
