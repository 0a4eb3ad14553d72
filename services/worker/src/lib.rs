//! flotilla-worker: the background side of the fleet. It hosts the ZeroMQ hub (the
//! wake-up PULL socket and the event forwarder, XSUB → XPUB) and runs the job loop:
//! a pass on every wake-up and every `FLOTILLA_WORKER_POLL_MS`, so a lost wake-up only
//! delays work. Its HTTP side (`/worker/health`, `/ready`, `/metrics`) is internal;
//! nginx does not route to it.
//!
//! The job queue that a pass drains arrives with the signup issue; until then a pass
//! has nothing to claim and only counts itself in `flotilla_worker_passes_total`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use flotilla_bus::{BusConfig, WakeReceiver};
use flotilla_kit::actix_web::web;
use flotilla_kit::tokio::sync::watch;
use flotilla_kit::{ConfigError, Env, Service, State};

pub static SERVICE: Service = Service {
    name: "worker",
    default_port: 7105,
    routes,
    background: Some(background),
};

/// Internal routes only: the kit's health, ready and metrics.
pub fn routes(_cfg: &mut web::ServiceConfig) {}

/// What the worker reads beyond the kit's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// `FLOTILLA_BUS_WAKE`, `FLOTILLA_BUS_EVENTS_IN`, `FLOTILLA_BUS_EVENTS_OUT`.
    pub bus: BusConfig,
    /// `FLOTILLA_WORKER_POLL_MS` (default 2000): the pass interval without wake-ups.
    pub poll: Duration,
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = BusConfig::default();
        let endpoint = |name: &str, default: String| {
            env.parse(
                name,
                default,
                "a ZeroMQ TCP endpoint such as tcp://127.0.0.1:7110",
                flotilla_bus::parse_endpoint,
            )
        };
        Ok(Self {
            bus: BusConfig {
                wake: endpoint("FLOTILLA_BUS_WAKE", defaults.wake)?,
                events_in: endpoint("FLOTILLA_BUS_EVENTS_IN", defaults.events_in)?,
                events_out: endpoint("FLOTILLA_BUS_EVENTS_OUT", defaults.events_out)?,
            },
            poll: Duration::from_millis(env.number(
                "FLOTILLA_WORKER_POLL_MS",
                2000,
                10..=3_600_000,
            )?),
        })
    }
}

fn background(
    state: web::Data<State>,
    stop: watch::Receiver<bool>,
) -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>> {
    Box::pin(run(state, stop))
}

const PASSES: &str = "flotilla_worker_passes_total";
const PASSES_HELP: &str = "Passes of the job loop, by what started them.";

async fn run(state: web::Data<State>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let config = WorkerConfig::from_env(&Env::from_process())
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let mut wake = WakeReceiver::bind(&config.bus.wake).await?;
    let forwarder = flotilla_bus::run_forwarder(&config.bus.events_in, &config.bus.events_out);
    let mut forwarder = std::pin::pin!(forwarder);
    log::info!(
        "worker: wake-ups on {}, events {} -> {}, polling every {:?}",
        config.bus.wake,
        config.bus.events_in,
        config.bus.events_out,
        config.poll
    );
    let mut poll = flotilla_kit::tokio::time::interval(config.poll);
    poll.set_missed_tick_behavior(flotilla_kit::tokio::time::MissedTickBehavior::Delay);
    loop {
        flotilla_kit::tokio::select! {
            _ = stop.changed() => break,
            ended = &mut forwarder => {
                return Err(ended.err().unwrap_or_else(|| anyhow::anyhow!("event forwarder stopped")));
            }
            woken = wake.recv() => {
                let topic = woken?;
                log::debug!("worker: woken by {topic:?}");
                pass(&state, "wake");
            }
            _ = poll.tick() => pass(&state, "poll"),
        }
    }
    log::info!("worker: stopped taking work");
    Ok(())
}

/// One pass of the job loop.
fn pass(state: &State, cause: &'static str) {
    state.metrics.count(PASSES, PASSES_HELP, cause);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn bus_endpoints_are_checked_at_start_up() {
        let vars = HashMap::from([("FLOTILLA_BUS_WAKE", "127.0.0.1:7110")]);
        let err = WorkerConfig::from_env(&Env::from_fn(|k| vars.get(k).map(|v| v.to_string())))
            .unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_BUS_WAKE");
        let defaults = WorkerConfig::from_env(&Env::from_fn(|_| None)).unwrap();
        assert_eq!(defaults.bus, BusConfig::default());
        assert_eq!(defaults.poll, Duration::from_secs(2));
    }
}
