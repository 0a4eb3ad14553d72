//! The ZeroMQ fast path. The database is the truth; these sockets only make things
//! happen sooner, so every send here is best-effort and bounded in time.
//!
//! - **Wake-ups**: writers PUSH a short message after committing a job; the worker
//!   PULLs (`FLOTILLA_BUS_WAKE`, default `tcp://127.0.0.1:7110`) and also polls, so a
//!   lost wake-up only delays a job.
//! - **Events**: publishers connect to the worker's XSUB socket
//!   (`FLOTILLA_BUS_EVENTS_IN`, default 7111); subscribers to its XPUB socket
//!   (`FLOTILLA_BUS_EVENTS_OUT`, default 7112). The worker forwards between them
//!   ([`Forwarder`]); services use [`EventPublisher`] and [`EventSubscriber`], which
//!   reconnect by themselves, so the worker may start after them or restart at any time.
//! - **Seals**: every wake-up and event carries the time and an HMAC-SHA256 made with the
//!   fleet's shared secret ([`seal`]); the worker's receiver and forwarder and every
//!   subscriber drop and count what fails, so only holders of the secret can speak.

mod seal;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
pub use flotilla_contracts::{Event, EventTopic};
pub use seal::{BusSecret, Kind, MAX_AGE, MIN_SECRET_BYTES, Reason, decode_hex, rejections};
use zeromq::prelude::*;
use zeromq::{
    PullSocket, PushSocket, SocketEvent, SubSocket, XPubSocket, XSubSocket, ZmqError, ZmqMessage,
};

/// The three addresses of the bus, each with the fleet's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    pub wake: BusEndpoint,
    pub events_in: BusEndpoint,
    pub events_out: BusEndpoint,
}

impl BusConfig {
    pub const DEFAULT_WAKE: &str = "tcp://127.0.0.1:7110";
    pub const DEFAULT_EVENTS_IN: &str = "tcp://127.0.0.1:7111";
    pub const DEFAULT_EVENTS_OUT: &str = "tcp://127.0.0.1:7112";

    /// Whether every endpoint is on this host (then a secret made on the spot, shared
    /// through the data folder, is enough).
    pub fn is_loopback(&self) -> bool {
        [&self.wake, &self.events_in, &self.events_out]
            .iter()
            .all(|e| e.is_loopback())
    }
}

/// One ZeroMQ TCP endpoint of the bus and the secret its messages are sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEndpoint {
    pub address: String,
    pub secret: BusSecret,
}

impl BusEndpoint {
    pub fn new(address: &str, secret: &BusSecret) -> Self {
        Self {
            address: address.to_owned(),
            secret: secret.clone(),
        }
    }

    /// Whether the endpoint's host is a loopback address (or `localhost`).
    pub fn is_loopback(&self) -> bool {
        match self.address.parse::<zeromq::Endpoint>() {
            Ok(zeromq::Endpoint::Tcp(zeromq::Host::Ipv4(ip), _)) => ip.is_loopback(),
            Ok(zeromq::Endpoint::Tcp(zeromq::Host::Ipv6(ip), _)) => ip.is_loopback(),
            Ok(zeromq::Endpoint::Tcp(zeromq::Host::Domain(name), _)) => name == "localhost",
            _ => false,
        }
    }
}

impl std::fmt::Display for BusEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

/// Checks that `value` is a ZeroMQ TCP endpoint such as `tcp://127.0.0.1:7110`.
pub fn parse_endpoint(value: &str) -> Option<String> {
    let endpoint: zeromq::Endpoint = value.parse().ok()?;
    matches!(endpoint, zeromq::Endpoint::Tcp(..)).then(|| value.to_owned())
}

/// The frames of `message` as byte slices.
fn frames(message: &ZmqMessage) -> Vec<&[u8]> {
    message.iter().map(|frame| frame.as_ref()).collect()
}

/// Checks a received message's seal (its last frame) for `expected` frames before it.
fn open(secret: &BusSecret, kind: Kind, message: &ZmqMessage, expected: usize) -> bool {
    let all = frames(message);
    if all.len() != expected + 1 {
        return secret.open(kind, &all, None);
    }
    let (body, seal) = all.split_at(expected);
    secret.open(kind, body, seal.first().copied())
}

/// A message of `frames` (one or more) followed by their seal.
fn sealed(secret: &BusSecret, kind: Kind, frames: &[&[u8]]) -> ZmqMessage {
    let seal = secret.seal(kind, frames);
    let (first, rest) = frames
        .split_first()
        .map_or((&b""[..], &[][..]), |(f, r)| (*f, r));
    let mut message = ZmqMessage::from(first.to_vec());
    for frame in rest {
        message.push_back(frame.to_vec().into());
    }
    message.push_back(seal.into());
    message
}

/// The worker's end of the wake-up path.
pub struct WakeReceiver {
    socket: PullSocket,
    secret: BusSecret,
    pub endpoint: String,
}

impl WakeReceiver {
    pub async fn bind(endpoint: &BusEndpoint) -> anyhow::Result<Self> {
        let mut socket = PullSocket::new();
        let bound = socket
            .bind(&endpoint.address)
            .await
            .with_context(|| format!("cannot bind the wake-up socket on {endpoint}"))?;
        Ok(Self {
            socket,
            secret: endpoint.secret.clone(),
            endpoint: bound.to_string(),
        })
    }

    /// The next genuine wake-up's topic (e.g. the job kind); one without a good seal is
    /// dropped and counted.
    pub async fn recv(&mut self) -> anyhow::Result<String> {
        loop {
            let message = self
                .socket
                .recv()
                .await
                .map_err(|e| anyhow!("wake-up socket: {e}"))?;
            if open(&self.secret, Kind::Wake, &message, 1) {
                return Ok(message
                    .get(0)
                    .map(|frame| String::from_utf8_lossy(frame).into_owned())
                    .unwrap_or_default());
            }
        }
    }
}

/// A writer's end of the wake-up path.
pub struct Waker {
    socket: PushSocket,
    secret: BusSecret,
}

impl Waker {
    /// Connects to the worker; fails only if the worker is not there *now*, and the
    /// caller may simply carry on without wake-ups.
    pub async fn connect(endpoint: &BusEndpoint) -> anyhow::Result<Self> {
        let mut socket = PushSocket::new();
        tokio::time::timeout(Duration::from_secs(1), socket.connect(&endpoint.address))
            .await
            .map_err(|_| anyhow!("timed out connecting to {endpoint}"))?
            .with_context(|| format!("cannot connect to {endpoint}"))?;
        Ok(Self {
            socket,
            secret: endpoint.secret.clone(),
        })
    }

    /// Sends a wake-up, giving up after a short while (a PUSH with no peer waits).
    pub async fn wake(&mut self, topic: &str) -> bool {
        let message = sealed(&self.secret, Kind::Wake, &[topic.as_bytes()]);
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
    pub fn start(endpoint: &BusEndpoint) -> anyhow::Result<Self> {
        let (queue, mut pending) = tokio::sync::mpsc::channel::<String>(1024);
        let endpoint = endpoint.clone();
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

/// How long a connection attempt may take before it is abandoned and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause between two failed connection attempts: short, because the forwarder is
/// usually on the same machine and a worker restart takes a few seconds at most.
const RETRY: Duration = Duration::from_millis(500);
/// How long one send may take; past that the event is dropped (best-effort).
const SEND_TIMEOUT: Duration = Duration::from_millis(100);
/// How often the forwarder tells its subscribers that it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a subscriber waits without hearing from the forwarder before it assumes the
/// connection is dead and makes a new one.
const SILENCE: Duration = Duration::from_secs(3);
/// The forwarder's own topic. Subscribers always subscribe to it and never pass it on.
const HEARTBEAT_TOPIC: &str = "flotilla.bus.heartbeat";

/// Connects `socket`, giving up after [`CONNECT_TIMEOUT`]. On failure the socket may be
/// half set up; callers drop it and start again with a new one.
async fn connect_within<S: Socket>(socket: &mut S, endpoint: &str) -> anyhow::Result<()> {
    tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(endpoint))
        .await
        .map_err(|_| anyhow!("timed out connecting to {endpoint}"))?
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// The event forwarder hosted by the worker: XSUB for publishers, XPUB for subscribers.
///
/// Subscriptions stop here. The input subscribes to everything once, so publishers
/// never wait for a subscriber's subscription to travel up to them (they get the
/// forwarder's as soon as they connect) and their subscription lists do not grow with
/// every subscriber that comes and goes; the output filters for each subscriber.
///
/// `zeromq::proxy` is not used: it stops at the first error of any single peer (a
/// publisher that dies with a connection reset, a malformed frame), which would take
/// the whole worker down. Here such a peer is only dropped by its socket, sends are
/// bounded in time, and a heartbeat lets subscribers notice a forwarder that vanished
/// without closing their connection (a crashed host; the XPUB of zeromq 0.7 also keeps
/// its connections open when it is dropped inside a runtime that keeps running).
pub struct Forwarder {
    input: XSubSocket,
    output: XPubSocket,
    secret: BusSecret,
    /// The bound input (XSUB) endpoint, with the real port when 0 was asked for.
    pub events_in: String,
    /// The bound output (XPUB) endpoint, with the real port when 0 was asked for.
    pub events_out: String,
}

impl Forwarder {
    /// Binds both sockets; events are sealed with `events_in`'s secret.
    pub async fn bind(events_in: &BusEndpoint, events_out: &BusEndpoint) -> anyhow::Result<Self> {
        let mut input = XSubSocket::new();
        let bound_in = input
            .bind(&events_in.address)
            .await
            .with_context(|| format!("cannot bind the event input (XSUB) on {events_in}"))?;
        input
            .subscribe("")
            .await
            .context("cannot subscribe the event input to every topic")?;
        let mut output = XPubSocket::new();
        let bound_out = output
            .bind(&events_out.address)
            .await
            .with_context(|| format!("cannot bind the event output (XPUB) on {events_out}"))?;
        Ok(Self {
            input,
            output,
            secret: events_in.secret.clone(),
            events_in: bound_in.to_string(),
            events_out: bound_out.to_string(),
        })
    }

    /// Forwards until a socket fails as a whole; a failing peer is not an error. An
    /// event without a good seal goes no further (and is counted).
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            mut input,
            mut output,
            secret,
            ..
        } = self;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = input.recv() => match event {
                    Ok(event) => {
                        if open(&secret, Kind::Event, &event, 2) {
                            send_downstream(&mut output, event).await;
                        }
                    }
                    Err(ZmqError::NoMessage) => bail!("the event input (XSUB) closed"),
                    Err(e) => log::debug!("dropped an event publisher's connection: {e}"),
                },
                // The XPUB records subscriptions as it receives them, so it must be read;
                // they are not passed upstream, where everything is subscribed already.
                request = output.recv() => match request {
                    Ok(_) => {}
                    Err(ZmqError::NoMessage) => bail!("the event output (XPUB) closed"),
                    Err(e) => log::debug!("dropped an event subscriber's connection: {e}"),
                },
                _ = heartbeat.tick() => {
                    send_downstream(&mut output, ZmqMessage::from(HEARTBEAT_TOPIC)).await;
                    // Upstream, the only messages an XSUB can send are (un)subscriptions:
                    // one of each is the publishers' heartbeat, and leaves nothing behind.
                    let beat = async {
                        input.subscribe(HEARTBEAT_TOPIC).await?;
                        input.unsubscribe(HEARTBEAT_TOPIC).await
                    };
                    match tokio::time::timeout(SEND_TIMEOUT, beat).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log::debug!("no heartbeat to the publishers: {e}"),
                        Err(_) => log::debug!("no heartbeat to every publisher: one is too slow"),
                    }
                }
            }
        }
    }
}

/// Sends to the matching subscribers. The XPUB waits for each subscriber's connection,
/// so a stuck subscriber could hold up everyone: after [`SEND_TIMEOUT`] the message is
/// given up (for the subscribers not yet served).
async fn send_downstream(output: &mut XPubSocket, message: ZmqMessage) {
    match tokio::time::timeout(SEND_TIMEOUT, output.send(message)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug!("an event was not forwarded: {e}"),
        Err(_) => log::debug!("an event was not forwarded to every subscriber: one is too slow"),
    }
}

/// Binds the event forwarder's two sockets and forwards until a socket fails.
pub async fn run_forwarder(
    events_in: &BusEndpoint,
    events_out: &BusEndpoint,
) -> anyhow::Result<()> {
    Forwarder::bind(events_in, events_out).await?.run().await
}

/// Publishes events from synchronous code or any thread: a background thread owns the
/// publishing socket (zeromq sockets belong to the runtime that made them) and sends
/// what `publish` queues. Never blocks the caller.
///
/// The socket is an XPUB, which publishes exactly like a PUB (the forwarder's XSUB
/// accepts both): zeromq 0.7's PUB pre-allocates a 100,000-slot send queue, 4 MB
/// resident in every service, and the XPUB does not.
///
/// Best-effort by design: an event is dropped when the queue is full, while the
/// forwarder is away, and in the moment after each (re)connection before the
/// forwarder's subscription has reached this socket (nothing is sent that nobody
/// subscribed to). Consumers catch up from the database. The thread connects lazily,
/// retries every [`RETRY`], and reconnects when the forwarder closes the connection or
/// its heartbeat (an upstream subscribe/unsubscribe every [`HEARTBEAT`]) stops for
/// [`SILENCE`]; it ends when the last clone is dropped.
#[derive(Clone)]
pub struct EventPublisher {
    queue: tokio::sync::mpsc::Sender<ZmqMessage>,
    secret: BusSecret,
}

impl EventPublisher {
    pub fn start(events_in: &BusEndpoint) -> anyhow::Result<Self> {
        let endpoint = parse_endpoint(&events_in.address)
            .with_context(|| format!("not a ZeroMQ TCP endpoint: {:?}", events_in.address))?;
        let (queue, pending) = tokio::sync::mpsc::channel::<ZmqMessage>(1024);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the event publisher's runtime")?;
        std::thread::Builder::new()
            .name("flotilla-events-pub".into())
            .spawn(move || runtime.block_on(publish_queued(endpoint, pending)))
            .context("cannot start the event publisher's thread")?;
        Ok(Self {
            queue,
            secret: events_in.secret.clone(),
        })
    }

    /// Queues an event (its topic, then its payload in the current version).
    pub fn send(&self, event: &Event) {
        self.publish(event.topic().as_str(), &event.encode());
    }

    /// Queues a message `[topic, payload, seal]`; subscribers filter on the topic's
    /// beginning.
    pub fn publish(&self, topic: &str, payload: &[u8]) {
        let message = sealed(&self.secret, Kind::Event, &[topic.as_bytes(), payload]);
        let _ = self.queue.try_send(message);
    }
}

/// The publisher thread: (re)connects and sends until every [`EventPublisher`] is gone.
async fn publish_queued(endpoint: String, mut pending: tokio::sync::mpsc::Receiver<ZmqMessage>) {
    loop {
        let mut socket = XPubSocket::new();
        let mut monitor = socket.monitor();
        if let Err(e) = connect_within(&mut socket, &endpoint).await {
            log::debug!("events not published for now: {e:#}");
            // Wait before the next attempt, dropping what is published meanwhile.
            let pause = tokio::time::sleep(RETRY);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    message = pending.recv() => if message.is_none() { return },
                }
            }
            continue;
        }
        log::info!("publishing events to {endpoint}");
        // The forwarder's subscription arrives on connection, then its heartbeat every
        // [`HEARTBEAT`]: silence means it is gone, even if nothing closed the connection.
        let mut silence = tokio::time::interval(HEARTBEAT);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = silence.tick() => {
                    if last_heard.elapsed() > SILENCE {
                        log::info!("no heartbeat from the event forwarder at {endpoint}; reconnecting");
                        break;
                    }
                }
                message = pending.recv() => {
                    let Some(message) = message else { return };
                    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            log::debug!("event not published: {e}; reconnecting");
                            break;
                        }
                        Err(_) => log::debug!("event not published: the send timed out"),
                    }
                }
                event = monitor.recv() => {
                    if matches!(event, Ok(SocketEvent::Disconnected(_)) | Err(_)) {
                        log::info!("lost the event forwarder at {endpoint}; reconnecting");
                        break;
                    }
                }
                // The XPUB takes in the forwarder's subscription as it is received.
                incoming = socket.recv() => match incoming {
                    Ok(_) => last_heard = tokio::time::Instant::now(),
                    Err(e) => {
                        log::debug!("lost the event forwarder at {endpoint} ({e}); reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

/// Receives events on a background thread (its own runtime) and calls `on_event(topic,
/// payload)` there for each one whose topic starts with one of the prefixes (`""`
/// means every event). The callback runs on that thread, one event at a time: it should
/// be quick and must not panic (release builds abort on panic).
///
/// Reconnects and resubscribes by itself, with a new socket each time: when the
/// forwarder closes the connection, and when it has been silent for [`SILENCE`] (it
/// sends a heartbeat every [`HEARTBEAT`]), which also covers a forwarder gone without
/// closing anything. The SUB socket's own reconnection in zeromq 0.7 is not relied on:
/// its back-off grows to 30 s and it never notices a silent death. The thread lives as
/// long as the process; dropping the handle only gives up the readiness flag.
pub struct EventSubscriber {
    connected: Arc<AtomicBool>,
}

impl EventSubscriber {
    /// Subscribes to the events whose topics begin with one of `prefixes`, decoded
    /// ([`Event::decode`]); one this release cannot read is logged and skipped.
    pub fn events<F>(
        events_out: &BusEndpoint,
        prefixes: &[&str],
        mut on_event: F,
    ) -> anyhow::Result<Self>
    where
        F: FnMut(Event) + Send + 'static,
    {
        Self::start(
            events_out,
            prefixes,
            move |topic, payload| match Event::decode(topic, payload) {
                Ok(event) => on_event(event),
                Err(e) => log::warn!("ignored a {topic} event this release cannot read: {e}"),
            },
        )
    }

    /// Calls `on_event(topic, payload)` for each event whose seal is good; one that
    /// fails is dropped and counted.
    pub fn start<F>(
        events_out: &BusEndpoint,
        prefixes: &[&str],
        on_event: F,
    ) -> anyhow::Result<Self>
    where
        F: FnMut(&str, &[u8]) + Send + 'static,
    {
        let endpoint = parse_endpoint(&events_out.address)
            .with_context(|| format!("not a ZeroMQ TCP endpoint: {:?}", events_out.address))?;
        let secret = events_out.secret.clone();
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the event subscriber's runtime")?;
        std::thread::Builder::new()
            .name("flotilla-events-sub".into())
            .spawn(move || {
                runtime.block_on(receive_events(endpoint, secret, prefixes, flag, on_event))
            })
            .context("cannot start the event subscriber's thread")?;
        Ok(Self { connected })
    }

    /// Whether the forwarder has been heard from on the current connection, which also
    /// shows it has this subscriber's subscriptions (sent together right after
    /// connecting): a readiness signal, not a promise that the next event arrives.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Connects a new SUB socket and subscribes it, the heartbeat last.
async fn subscribe_within(
    socket: &mut SubSocket,
    endpoint: &str,
    prefixes: &[String],
) -> anyhow::Result<()> {
    connect_within(socket, endpoint).await?;
    let topics = prefixes.iter().map(String::as_str).chain([HEARTBEAT_TOPIC]);
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        for topic in topics {
            socket
                .subscribe(topic)
                .await
                .with_context(|| format!("cannot subscribe to {topic:?} at {endpoint}"))?;
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow!("timed out subscribing at {endpoint}"))?
}

/// The subscriber thread: (re)connects and delivers events, for the life of the process.
async fn receive_events<F>(
    endpoint: String,
    secret: BusSecret,
    prefixes: Vec<String>,
    connected: Arc<AtomicBool>,
    mut on_event: F,
) where
    F: FnMut(&str, &[u8]),
{
    loop {
        let mut socket = SubSocket::new();
        let mut monitor = socket.monitor();
        if let Err(e) = subscribe_within(&mut socket, &endpoint, &prefixes).await {
            log::debug!("no events for now: {e:#}");
            drop(socket);
            tokio::time::sleep(RETRY).await;
            continue;
        }
        let mut deadline = tokio::time::Instant::now() + SILENCE;
        loop {
            tokio::select! {
                received = tokio::time::timeout_at(deadline, socket.recv()) => match received {
                    Ok(Ok(message)) => {
                        deadline = tokio::time::Instant::now() + SILENCE;
                        if !connected.swap(true, Ordering::Relaxed) {
                            log::info!("receiving events from {endpoint}");
                        }
                        let Some(topic) = message.get(0) else { continue };
                        if topic.as_ref() == HEARTBEAT_TOPIC.as_bytes() {
                            continue;
                        }
                        if !open(&secret, Kind::Event, &message, 2) {
                            continue;
                        }
                        let payload = message.get(1).map(|frame| frame.as_ref()).unwrap_or_default();
                        on_event(&String::from_utf8_lossy(topic), payload);
                    }
                    Ok(Err(e)) => {
                        log::debug!("event subscription failed: {e}");
                        break;
                    }
                    Err(_) => {
                        log::debug!("no heartbeat from {endpoint} for {SILENCE:?}");
                        break;
                    }
                },
                event = monitor.recv() => {
                    if matches!(event, Ok(SocketEvent::Disconnected(_)) | Err(_)) {
                        log::debug!("the connection to {endpoint} closed");
                        break;
                    }
                }
            }
        }
        if connected.swap(false, Ordering::Relaxed) {
            log::info!("lost the event forwarder at {endpoint}; reconnecting");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret every socket of these tests shares.
    fn test_secret() -> BusSecret {
        BusSecret::from_bytes(&[7; 32]).unwrap()
    }

    fn ep(address: &str) -> BusEndpoint {
        BusEndpoint::new(address, &test_secret())
    }

    #[test]
    fn only_tcp_endpoints_are_accepted() {
        assert!(parse_endpoint("tcp://127.0.0.1:7110").is_some());
        assert!(parse_endpoint("tcp://[::1]:7110").is_some());
        assert!(parse_endpoint("127.0.0.1:7110").is_none());
        assert!(parse_endpoint("tcp://127.0.0.1").is_none());
    }

    #[tokio::test]
    async fn a_wake_sender_delivers_from_plain_code() {
        let mut receiver = WakeReceiver::bind(&ep("tcp://127.0.0.1:0")).await.unwrap();
        let sender = WakeSender::start(&ep(&receiver.endpoint)).unwrap();
        sender.wake("email");
        let topic = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(topic, "email");
    }

    #[tokio::test]
    async fn a_wake_up_reaches_the_receiver() {
        let mut receiver = WakeReceiver::bind(&ep("tcp://127.0.0.1:0")).await.unwrap();
        let mut waker = Waker::connect(&ep(&receiver.endpoint)).await.unwrap();
        assert!(waker.wake("email").await);
        let topic = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(topic, "email");
    }

    type Event = (String, Vec<u8>);

    /// A subscriber whose events arrive on a channel the test can wait on.
    fn subscriber(
        events_out: &str,
        prefixes: &[&str],
    ) -> (EventSubscriber, tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let subscriber =
            EventSubscriber::start(&ep(events_out), prefixes, move |topic, payload| {
                let _ = sender.send((topic.to_owned(), payload.to_vec()));
            })
            .unwrap();
        (subscriber, receiver)
    }

    /// Publishes with `publish` until an event satisfying `wanted` arrives (PUB/SUB drops
    /// what is sent before the subscriptions have propagated), and returns every event
    /// received, the wanted one last.
    async fn publish_until(
        events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
        within: Duration,
        publish: impl Fn(),
        wanted: impl Fn(&Event) -> bool,
    ) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + within;
        let mut received = Vec::new();
        while tokio::time::Instant::now() < deadline {
            publish();
            while let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(50), events.recv()).await
            {
                let done = wanted(&event);
                received.push(event);
                if done {
                    return received;
                }
            }
        }
        panic!("no wanted event within {within:?}; received {received:?}");
    }

    async fn wait_until(within: Duration, condition: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        condition()
    }

    /// A TCP endpoint on which nothing listens (for now).
    fn unused_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", listener.local_addr().unwrap())
    }

    /// A forwarder on its own thread and runtime, as in the worker process; stopping it
    /// drops that runtime, which closes every connection like the end of the process.
    struct ForwarderThread {
        events_in: String,
        events_out: String,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl ForwarderThread {
        fn start(events_in: &str, events_out: &str) -> Self {
            let (bound, endpoints) = std::sync::mpsc::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (events_in, events_out) = (events_in.to_owned(), events_out.to_owned());
            let thread = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let forwarder = Forwarder::bind(&ep(&events_in), &ep(&events_out))
                        .await
                        .unwrap();
                    bound
                        .send((forwarder.events_in.clone(), forwarder.events_out.clone()))
                        .unwrap();
                    tokio::select! {
                        ended = forwarder.run() => panic!("the forwarder stopped: {ended:?}"),
                        _ = stopped => {}
                    }
                });
            });
            let (events_in, events_out) = endpoints.recv().unwrap();
            Self {
                events_in,
                events_out,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        fn stop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(thread) = self.thread.take()
                && let Err(panic) = thread.join()
                && !std::thread::panicking()
            {
                std::panic::resume_unwind(panic);
            }
        }
    }

    impl Drop for ForwarderThread {
        fn drop(&mut self) {
            self.stop();
        }
    }

    #[tokio::test]
    async fn typed_subscribers_read_first_release_events_and_skip_unreadable_ones() {
        let forwarder = ForwarderThread::start("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
        let (sender, mut typed) = tokio::sync::mpsc::unbounded_channel();
        let subscriber =
            EventSubscriber::events(&ep(&forwarder.events_out), &["user."], move |e| {
                let _ = sender.send(e);
            })
            .unwrap();
        assert!(wait_until(Duration::from_secs(5), || subscriber.is_connected()).await);
        let publisher = EventPublisher::start(&ep(&forwarder.events_in)).unwrap();
        let current = super::Event::UserUpdated { id: "u2".into() };
        let (mut old_seen, mut current_seen) = (false, false);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(old_seen && current_seen) && tokio::time::Instant::now() < deadline {
            // Unreadable, then as the first release wrote it, then as this one writes.
            publisher.publish("user.updated", b"u-42");
            publisher.publish("user.deleted", br#"{"id":"u1"}"#);
            publisher.send(&current);
            while let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(50), typed.recv()).await
            {
                match event {
                    super::Event::UserDeleted { id } if id == "u1" => old_seen = true,
                    e if e == current => current_seen = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(
            old_seen && current_seen,
            "old {old_seen}, current {current_seen}"
        );
    }

    #[tokio::test]
    async fn an_event_reaches_the_subscribers_of_its_topic_only() {
        let forwarder = ForwarderThread::start("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
        let (subscriber, mut events) = subscriber(&forwarder.events_out, &["user."]);
        assert!(wait_until(Duration::from_secs(5), || subscriber.is_connected()).await);
        let publisher = EventPublisher::start(&ep(&forwarder.events_in)).unwrap();

        // Each round publishes the unsubscribed topic first, on the same ordered path as
        // the subscribed one: had it passed the filter, it would have arrived first. The
        // forwarder's subscription may reach the publisher between the two sends of one
        // round, so three rounds must get through.
        let rounds = std::cell::Cell::new(0);
        let received = publish_until(
            &mut events,
            Duration::from_secs(10),
            || {
                publisher.publish("session.revoked", b"s-1");
                publisher.publish("user.updated", b"u-42");
            },
            |(topic, _)| {
                rounds.set(rounds.get() + usize::from(topic == "user.updated"));
                rounds.get() == 3
            },
        )
        .await;
        assert!(
            received
                .iter()
                .all(|(topic, payload)| topic == "user.updated" && payload == b"u-42"),
            "{received:?}"
        );
    }

    #[tokio::test]
    async fn a_subscriber_waiting_before_any_publisher_gets_events() {
        let forwarder = ForwarderThread::start("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
        let (subscriber, mut events) = subscriber(&forwarder.events_out, &[""]);
        assert!(wait_until(Duration::from_secs(5), || subscriber.is_connected()).await);

        let publisher = EventPublisher::start(&ep(&forwarder.events_in)).unwrap();
        let received = publish_until(
            &mut events,
            Duration::from_secs(10),
            || publisher.publish("user.deleted", b"7"),
            |_| true,
        )
        .await;
        // Subscribed to everything and heard heartbeats first, yet got only the event.
        assert_eq!(received, vec![("user.deleted".to_owned(), b"7".to_vec())]);
    }

    #[tokio::test]
    async fn publisher_and_subscriber_recover_when_the_forwarder_restarts() {
        let mut forwarder = ForwarderThread::start("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
        let (subscriber, mut events) = subscriber(&forwarder.events_out, &["user."]);
        let publisher = EventPublisher::start(&ep(&forwarder.events_in)).unwrap();
        publish_until(
            &mut events,
            Duration::from_secs(10),
            || publisher.publish("user.updated", b"before"),
            |_| true,
        )
        .await;

        forwarder.stop();
        assert!(wait_until(Duration::from_secs(5), || !subscriber.is_connected()).await);
        publisher.publish("user.updated", b"while away");

        let _forwarder = ForwarderThread::start(&forwarder.events_in, &forwarder.events_out);
        publish_until(
            &mut events,
            Duration::from_secs(10),
            || publisher.publish("user.updated", b"after"),
            |(_, payload)| payload == b"after",
        )
        .await;
        assert!(subscriber.is_connected());
    }

    #[tokio::test]
    async fn a_subscriber_leaves_a_forwarder_gone_silent() {
        // Dropping a forwarder inside a runtime that goes on keeps its subscribers'
        // connections open (zeromq 0.7's XPUB), as a crashed host would: only the
        // missing heartbeat tells the subscriber.
        let forwarder = Forwarder::bind(&ep("tcp://127.0.0.1:0"), &ep("tcp://127.0.0.1:0"))
            .await
            .unwrap();
        let (events_in, events_out) = (forwarder.events_in.clone(), forwarder.events_out.clone());
        let running = tokio::spawn(forwarder.run());
        let (subscriber, mut events) = subscriber(&events_out, &["user."]);
        let publisher = EventPublisher::start(&ep(&events_in)).unwrap();
        publish_until(
            &mut events,
            Duration::from_secs(10),
            || publisher.publish("user.updated", b"before"),
            |_| true,
        )
        .await;

        running.abort();
        assert!(running.await.unwrap_err().is_cancelled());
        let forwarder = Forwarder::bind(&ep(&events_in), &ep(&events_out))
            .await
            .unwrap();
        let _running = tokio::spawn(forwarder.run());
        publish_until(
            &mut events,
            SILENCE + Duration::from_secs(10),
            || publisher.publish("user.updated", b"after"),
            |(_, payload)| payload == b"after",
        )
        .await;
        assert!(subscriber.is_connected());
    }

    #[tokio::test]
    async fn publisher_and_subscriber_wait_for_a_forwarder_started_after_them() {
        let (events_in, events_out) = (unused_endpoint(), unused_endpoint());
        let (subscriber, mut events) = subscriber(&events_out, &["user."]);
        let publisher = EventPublisher::start(&ep(&events_in)).unwrap();

        // Far more than the queue holds: publishing neither blocks nor fails.
        let started = std::time::Instant::now();
        for n in 0..10_000 {
            publisher.publish("user.updated", format!("{n}").as_bytes());
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(!subscriber.is_connected());

        let _forwarder = ForwarderThread::start(&events_in, &events_out);
        publish_until(
            &mut events,
            Duration::from_secs(10),
            || publisher.publish("user.updated", b"late"),
            |(_, payload)| payload == b"late",
        )
        .await;
    }

    /// Connects to the forwarder's input as a PUB socket would (ZMTP 3.0, NULL security),
    /// sends a frame no codec accepts, and waits until the forwarder hangs up.
    fn misbehave_as_a_publisher(events_in: &str) {
        use std::io::{Read, Write};
        let address = events_in.trim_start_matches("tcp://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut greeting = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 0];
        greeting.extend_from_slice(b"NULL");
        greeting.resize(64, 0);
        stream.write_all(&greeting).unwrap();
        stream.read_exact(&mut [0; 64]).unwrap();
        let mut ready = vec![5];
        ready.extend_from_slice(b"READY");
        ready.push(11);
        ready.extend_from_slice(b"Socket-Type");
        ready.extend_from_slice(&3u32.to_be_bytes());
        ready.extend_from_slice(b"PUB");
        stream.write_all(&[0x04, ready.len() as u8]).unwrap();
        stream.write_all(&ready).unwrap();
        // A long frame of 2^64 - 1 bytes.
        stream
            .write_all(&[0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
            .unwrap();
        let mut buffer = [0; 256];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("the forwarder kept the misbehaving publisher: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn a_misbehaving_publisher_does_not_stop_the_forwarder() {
        let forwarder = ForwarderThread::start("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
        let (_subscriber, mut events) = subscriber(&forwarder.events_out, &["user."]);
        let publisher = EventPublisher::start(&ep(&forwarder.events_in)).unwrap();
        publish_until(
            &mut events,
            Duration::from_secs(10),
            || publisher.publish("user.updated", b"before"),
            |_| true,
        )
        .await;

        misbehave_as_a_publisher(&forwarder.events_in);
        publish_until(
            &mut events,
            Duration::from_secs(10),
            || publisher.publish("user.updated", b"after"),
            |(_, payload)| payload == b"after",
        )
        .await;
    }

    fn rejected(kind: Kind, reason: Reason) -> u64 {
        rejections()
            .into_iter()
            .find(|(k, r, _)| *k == kind && *r == reason)
            .map_or(0, |(_, _, n)| n)
    }

    #[tokio::test]
    async fn a_wake_up_without_the_secret_is_dropped_and_counted() {
        let mut receiver = WakeReceiver::bind(&ep("tcp://127.0.0.1:0")).await.unwrap();
        let (bad_mac, unsealed) = (
            rejected(Kind::Wake, Reason::BadMac),
            rejected(Kind::Wake, Reason::Unsealed),
        );
        let other = BusSecret::from_bytes(&[8; 32]).unwrap();
        let mut forger = Waker::connect(&BusEndpoint::new(&receiver.endpoint, &other))
            .await
            .unwrap();
        assert!(forger.wake("forged").await);
        let mut raw = PushSocket::new();
        raw.connect(&receiver.endpoint).await.unwrap();
        raw.send(ZmqMessage::from("unsealed")).await.unwrap();
        let mut waker = Waker::connect(&ep(&receiver.endpoint)).await.unwrap();
        assert!(waker.wake("email").await);
        let topic = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(topic, "email");
        assert!(rejected(Kind::Wake, Reason::BadMac) > bad_mac);
        assert!(rejected(Kind::Wake, Reason::Unsealed) > unsealed);
    }

    #[tokio::test]
    async fn the_forwarder_passes_on_sealed_events_only() {
        let forwarder = ForwarderThread::start("tcp://127.0.0.1:0", "tcp://127.0.0.1:0");
        let (subscriber, mut events) = subscriber(&forwarder.events_out, &["user."]);
        assert!(wait_until(Duration::from_secs(5), || subscriber.is_connected()).await);
        let other = BusSecret::from_bytes(&[8; 32]).unwrap();
        let forger =
            EventPublisher::start(&BusEndpoint::new(&forwarder.events_in, &other)).unwrap();
        let publisher = EventPublisher::start(&ep(&forwarder.events_in)).unwrap();
        let bad_mac = rejected(Kind::Event, Reason::BadMac);
        // Each round sends the forgery first on the same ordered path as the genuine
        // event; three genuine ones arrive and nothing else.
        let rounds = std::cell::Cell::new(0);
        let received = publish_until(
            &mut events,
            Duration::from_secs(10),
            || {
                forger.publish("user.deleted", b"forged");
                publisher.publish("user.updated", b"genuine");
            },
            |(topic, _)| {
                rounds.set(rounds.get() + usize::from(topic == "user.updated"));
                rounds.get() == 3
            },
        )
        .await;
        assert!(
            received.iter().all(|(_, payload)| payload == b"genuine"),
            "{received:?}"
        );
        assert!(rejected(Kind::Event, Reason::BadMac) > bad_mac);
    }

    #[tokio::test]
    async fn a_subscriber_drops_events_not_sealed_with_its_secret() {
        // A forwarder impersonated: whatever reaches the subscriber is checked again.
        let mut fake = XPubSocket::new();
        let bound = fake.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
        let (_subscriber, mut events) = subscriber(&bound, &["session."]);
        // Wait for the subscription, then send an unsealed event, a forged one and a
        // genuine one, in that order.
        tokio::time::timeout(Duration::from_secs(5), fake.recv())
            .await
            .unwrap()
            .unwrap();
        let unsealed = rejected(Kind::Event, Reason::Unsealed);
        let other = BusSecret::from_bytes(&[8; 32]).unwrap();
        let mut plain = ZmqMessage::from("session.revoked");
        plain.push_back(b"s-1".to_vec().into());
        let forged = sealed(&other, Kind::Event, &[b"session.revoked", b"s-2"]);
        let genuine = sealed(&test_secret(), Kind::Event, &[b"session.revoked", b"s-3"]);
        for message in [plain, forged, genuine] {
            fake.send(message).await.unwrap();
        }
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event, ("session.revoked".to_owned(), b"s-3".to_vec()));
        assert!(rejected(Kind::Event, Reason::Unsealed) > unsealed);
    }

    #[test]
    fn loopback_endpoints_are_told_apart() {
        let config = |wake: &str| BusConfig {
            wake: ep(wake),
            events_in: ep("tcp://127.0.0.1:7111"),
            events_out: ep("tcp://[::1]:7112"),
        };
        assert!(config("tcp://localhost:7110").is_loopback());
        assert!(!config("tcp://10.0.0.5:7110").is_loopback());
        assert!(!config("tcp://0.0.0.0:7110").is_loopback());
        assert!(!config("tcp://bus.internal:7110").is_loopback());
    }

    #[test]
    fn publisher_and_subscriber_need_tcp_endpoints() {
        assert!(EventPublisher::start(&ep("127.0.0.1:7111")).is_err());
        assert!(EventSubscriber::start(&ep("127.0.0.1:7112"), &["user."], |_, _| {}).is_err());
    }
}
