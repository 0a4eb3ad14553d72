//! The ZeroMQ fast path. The database is the truth; these sockets only make things
//! happen sooner, so every send here is best-effort and bounded in time.
//!
//! - **Wake-ups**: writers PUSH a short message after committing a job; the worker
//!   PULLs (`FLOTILLA_BUS_WAKE`, default `tcp://127.0.0.1:7110`) and also polls, so a
//!   lost wake-up only delays a job.
//! - **Events**: publishers connect to the worker's XSUB socket
//!   (`FLOTILLA_BUS_EVENTS_IN`, default 7111); subscribers to its XPUB socket
//!   (`FLOTILLA_BUS_EVENTS_OUT`, default 7112). The worker forwards between them.

use std::time::Duration;

use anyhow::{Context, anyhow};
use zeromq::prelude::*;
use zeromq::{Endpoint, PullSocket, PushSocket, XPubSocket, XSubSocket, ZmqMessage};

/// The three addresses of the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    pub wake: String,
    pub events_in: String,
    pub events_out: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            wake: "tcp://127.0.0.1:7110".into(),
            events_in: "tcp://127.0.0.1:7111".into(),
            events_out: "tcp://127.0.0.1:7112".into(),
        }
    }
}

/// Checks that `value` is a ZeroMQ TCP endpoint such as `tcp://127.0.0.1:7110`.
pub fn parse_endpoint(value: &str) -> Option<String> {
    let endpoint: Endpoint = value.parse().ok()?;
    matches!(endpoint, Endpoint::Tcp(..)).then(|| value.to_owned())
}

/// The worker's end of the wake-up path.
pub struct WakeReceiver {
    socket: PullSocket,
    pub endpoint: String,
}

impl WakeReceiver {
    pub async fn bind(endpoint: &str) -> anyhow::Result<Self> {
        let mut socket = PullSocket::new();
        let bound = socket
            .bind(endpoint)
            .await
            .with_context(|| format!("cannot bind the wake-up socket on {endpoint}"))?;
        Ok(Self {
            socket,
            endpoint: bound.to_string(),
        })
    }

    /// The next wake-up's topic (e.g. the job kind).
    pub async fn recv(&mut self) -> anyhow::Result<String> {
        let message = self
            .socket
            .recv()
            .await
            .map_err(|e| anyhow!("wake-up socket: {e}"))?;
        Ok(message
            .get(0)
            .map(|frame| String::from_utf8_lossy(frame).into_owned())
            .unwrap_or_default())
    }
}

/// A writer's end of the wake-up path.
pub struct Waker {
    socket: PushSocket,
}

impl Waker {
    /// Connects to the worker; fails only if the worker is not there *now*, and the
    /// caller may simply carry on without wake-ups.
    pub async fn connect(endpoint: &str) -> anyhow::Result<Self> {
        let mut socket = PushSocket::new();
        tokio::time::timeout(Duration::from_secs(1), socket.connect(endpoint))
            .await
            .map_err(|_| anyhow!("timed out connecting to {endpoint}"))?
            .with_context(|| format!("cannot connect to {endpoint}"))?;
        Ok(Self { socket })
    }

    /// Sends a wake-up, giving up after a short while (a PUSH with no peer waits).
    pub async fn wake(&mut self, topic: &str) -> bool {
        let message = ZmqMessage::from(topic.to_owned());
        matches!(
            tokio::time::timeout(Duration::from_millis(100), self.socket.send(message)).await,
            Ok(Ok(()))
        )
    }
}

/// Wake-ups from synchronous code or any thread: a background thread owns the PUSH
/// socket (zeromq sockets belong to the runtime that made them) and sends what
/// `wake` queues. Never blocks the caller; when the queue is full or the worker is
/// away, the wake-up is dropped and the worker's poll picks the job up.
#[derive(Clone)]
pub struct WakeSender {
    queue: tokio::sync::mpsc::Sender<String>,
}

impl WakeSender {
    pub fn start(endpoint: &str) -> anyhow::Result<Self> {
        let (queue, mut pending) = tokio::sync::mpsc::channel::<String>(1024);
        let endpoint = endpoint.to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the wake-up thread's runtime")?;
        std::thread::Builder::new()
            .name("flotilla-wake".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut waker: Option<Waker> = None;
                    while let Some(topic) = pending.recv().await {
                        if waker.is_none() {
                            match Waker::connect(&endpoint).await {
                                Ok(w) => waker = Some(w),
                                Err(e) => log::debug!("no wake-up sent: {e:#}"),
                            }
                        }
                        if let Some(w) = waker.as_mut()
                            && !w.wake(&topic).await
                        {
                            log::debug!("wake-up {topic:?} not delivered; the worker will poll");
                        }
                    }
                })
            })
            .context("cannot start the wake-up thread")?;
        Ok(Self { queue })
    }

    pub fn wake(&self, topic: &str) {
        let _ = self.queue.try_send(topic.to_owned());
    }
}

/// Binds the event forwarder's two sockets and forwards until an error.
pub async fn run_forwarder(events_in: &str, events_out: &str) -> anyhow::Result<()> {
    let mut frontend = XSubSocket::new();
    frontend
        .bind(events_in)
        .await
        .with_context(|| format!("cannot bind the event input (XSUB) on {events_in}"))?;
    let mut backend = XPubSocket::new();
    backend
        .bind(events_out)
        .await
        .with_context(|| format!("cannot bind the event output (XPUB) on {events_out}"))?;
    zeromq::proxy(frontend, backend, None)
        .await
        .map_err(|e| anyhow!("event forwarder stopped: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_endpoints_are_accepted() {
        assert!(parse_endpoint("tcp://127.0.0.1:7110").is_some());
        assert!(parse_endpoint("tcp://[::1]:7110").is_some());
        assert!(parse_endpoint("127.0.0.1:7110").is_none());
        assert!(parse_endpoint("tcp://127.0.0.1").is_none());
    }

    #[tokio::test]
    async fn a_wake_sender_delivers_from_plain_code() {
        let mut receiver = WakeReceiver::bind("tcp://127.0.0.1:0").await.unwrap();
        let sender = WakeSender::start(&receiver.endpoint).unwrap();
        sender.wake("email");
        let topic = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(topic, "email");
    }

    #[tokio::test]
    async fn a_wake_up_reaches_the_receiver() {
        let mut receiver = WakeReceiver::bind("tcp://127.0.0.1:0").await.unwrap();
        let mut waker = Waker::connect(&receiver.endpoint).await.unwrap();
        assert!(waker.wake("email").await);
        let topic = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(topic, "email");
    }
}
