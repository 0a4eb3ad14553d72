//! flotilla-worker: the background side of the fleet. It hosts the ZeroMQ hub (the
//! wake-up PULL socket and the event forwarder, XSUB → XPUB) and runs the job loop:
//! a pass on every wake-up and every `FLOTILLA_WORKER_POLL_MS`, so a lost wake-up only
//! delays work. Its HTTP side (`/worker/health`, `/ready`, `/metrics`) is internal;
//! nginx does not route to it.
//!
//! A pass claims due jobs in batches (with a lease), runs each and records the result;
//! on SIGTERM the worker finishes the job in hand and releases the rest of its batch.
//! Each pass also enqueues the recurring tasks whose time slot has come (idempotent
//! per slot across workers): today the hourly clean-up of spent tokens and old jobs.

pub mod backup;
pub mod mail;
pub mod status;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use flotilla_bus::{BusConfig, WakeReceiver};
use flotilla_contracts::PurgeUser;
use flotilla_jobs::{Claimed, Failure, Job, JobKind, NewJob, Outcome};
use flotilla_kit::actix_web::web;
use flotilla_kit::tokio::sync::watch;
use flotilla_kit::work;
use flotilla_kit::{Command, ConfigError, Env, Service, State};

pub static SERVICE: Service = Service {
    name: "worker",
    default_port: 7105,
    api: std::convert::identity,
    setup: flotilla_kit::no_state,
    background: Some(background),
    commands: &[
        Command {
            name: "backup-db",
            summary: "PATH: a consistent copy of the database while the fleet runs \
                      (SQLite: VACUUM INTO; PostgreSQL: pg_dump --format=custom)",
            run: backup::backup_db,
        },
        Command {
            name: "restore-db",
            summary: "PATH: load a backup-db copy into a database without accounts \
                      (the fleet stopped)",
            run: backup::restore_db,
        },
        Command {
            name: "status",
            summary: "the database as scripts/doctor sees it: schema, queue, last page \
                      build (key=value lines; read-only)",
            run: status::run,
        },
    ],
};

/// What the worker reads beyond the kit's configuration.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `FLOTILLA_BUS_WAKE`, `FLOTILLA_BUS_EVENTS_IN`, `FLOTILLA_BUS_EVENTS_OUT`.
    pub bus: BusConfig,
    /// `FLOTILLA_WORKER_POLL_MS` (default 2000): the pass interval without wake-ups.
    pub poll: Duration,
    /// `FLOTILLA_WORKER_BATCH` (default 32): jobs claimed at once.
    pub batch: i64,
    /// `FLOTILLA_WORKER_LEASE_SECS` (default 300): how long a claim holds; a job whose
    /// worker died is run again after it.
    pub lease: Duration,
    pub mail: mail::MailConfig,
    /// `FLOTILLA_AUTH_EVENTS_DAYS` (default 90): how long sign-in history is kept.
    pub auth_events_days: i64,
}

impl WorkerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            bus: flotilla_kit::config::bus(env)?,
            poll: Duration::from_millis(env.number(
                "FLOTILLA_WORKER_POLL_MS",
                2000,
                10..=3_600_000,
            )?),
            batch: env.number("FLOTILLA_WORKER_BATCH", 32, 1..=10_000)?,
            lease: Duration::from_secs(env.number(
                "FLOTILLA_WORKER_LEASE_SECS",
                300,
                1..=86_400,
            )?),
            mail: mail::MailConfig::from_env(env, &flotilla_kit::config::data_dir(env)?)?,
            auth_events_days: env.number("FLOTILLA_AUTH_EVENTS_DAYS", 90, 1..=36_500)?,
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
const JOBS: &str = "flotilla_worker_jobs_total";
const JOBS_HELP: &str = "Jobs run, by outcome (done, retry, dead, released).";

/// This worker's name in job leases: host, process and a random part.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!(
        "{host}:{}:{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

async fn run(state: web::Data<State>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let config = WorkerConfig::from_env(&Env::from_process())?;
    let mut wake = WakeReceiver::bind(&config.bus.wake).await?;
    let forwarder = flotilla_bus::run_forwarder(&config.bus.events_in, &config.bus.events_out);
    let mut forwarder = std::pin::pin!(forwarder);
    let id = worker_id();
    log::info!(
        "worker {id}: wake-ups on {}, events {} -> {}, polling every {:?}",
        config.bus.wake,
        config.bus.events_in,
        config.bus.events_out,
        config.poll
    );
    // The hour whose recurring tasks this worker has enqueued already.
    let mut scheduled: Option<String> = None;
    let mut poll = flotilla_kit::tokio::time::interval(config.poll);
    poll.set_missed_tick_behavior(flotilla_kit::tokio::time::MissedTickBehavior::Delay);
    loop {
        let cause = flotilla_kit::tokio::select! {
            _ = stop.changed() => break,
            ended = &mut forwarder => {
                return Err(ended.err().unwrap_or_else(|| anyhow::anyhow!("event forwarder stopped")));
            }
            woken = wake.recv() => {
                let topic = woken?;
                log::debug!("worker: woken by {topic:?}");
                "wake"
            }
            _ = poll.tick() => "poll",
        };
        state.metrics.count(PASSES, PASSES_HELP, cause);
        if let Err(e) = pass(&state, &config, &id, &stop, &mut scheduled).await {
            // The database may be down: the next pass tries again.
            log::error!("worker: pass failed: {e:#}");
        }
    }
    log::info!("worker: stopped taking work");
    Ok(())
}

/// Schedules what is due (once per hour and worker, not on every pass), then claims
/// and runs jobs until none is due or the worker is stopping.
async fn pass(
    state: &web::Data<State>,
    config: &WorkerConfig,
    id: &str,
    stop: &watch::Receiver<bool>,
    scheduled: &mut Option<String>,
) -> anyhow::Result<()> {
    let hour = flotilla_jobs::now().format("%Y-%m-%dT%H").to_string();
    if scheduled.as_deref() != Some(hour.as_str()) {
        let slot = hour.clone();
        work::background(&state.pool, move |conn| schedule(conn, &slot)).await?;
        *scheduled = Some(hour);
    }
    loop {
        let (worker, lease, batch) = (id.to_owned(), config.lease, config.batch);
        let jobs = work::background(&state.pool, move |conn| {
            Ok(flotilla_jobs::claim(conn, &worker, lease, batch)?)
        })
        .await?;
        if jobs.is_empty() {
            return Ok(());
        }
        let claimed = jobs.len() as i64;
        let released = run_batch(state, config, id, stop, jobs).await?;
        // A short batch drained the queue: whatever is enqueued now comes with its own
        // wake-up (or the next poll), so no empty claim is needed to find that out.
        if released > 0 || claimed < config.batch {
            return Ok(());
        }
    }
}

/// Runs a claimed batch; returns how many jobs it gave back unstarted (the worker is
/// stopping). Jobs without an effect outside the database are completed together at
/// the end (a crash before that runs them again, which they allow); a job with an
/// outside effect (an email) is completed as soon as it is done.
async fn run_batch(
    state: &web::Data<State>,
    config: &WorkerConfig,
    id: &str,
    stop: &watch::Receiver<bool>,
    jobs: Vec<Claimed>,
) -> anyhow::Result<usize> {
    let mut finished: Vec<i64> = Vec::new();
    let mut unstarted: Vec<Claimed> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if *stop.borrow() {
            unstarted = jobs[i..].to_vec();
            break;
        }
        let result = run_job(state, config, job).await;
        if result.is_ok() && job.kind != JobKind::Email.as_str() {
            finished.push(job.id);
            continue;
        }
        let outcome = record_outcome(state, id, job, result).await?;
        state.metrics.count(JOBS, JOBS_HELP, outcome);
    }
    let (done, released) = (finished.len(), unstarted.len());
    if done + released > 0 {
        let worker = id.to_owned();
        work::background(&state.pool, move |conn| {
            flotilla_jobs::complete_many(conn, &finished, &worker)?;
            for job in &unstarted {
                flotilla_jobs::release(conn, job, &worker)?;
            }
            Ok(())
        })
        .await?;
    }
    for _ in 0..done {
        state.metrics.count(JOBS, JOBS_HELP, "done");
    }
    for _ in 0..released {
        state.metrics.count(JOBS, JOBS_HELP, "released");
    }
    Ok(released)
}

/// Records one job's result at once: done, to retry, or dead.
async fn record_outcome(
    state: &web::Data<State>,
    id: &str,
    job: &Claimed,
    result: Result<(), Failure>,
) -> anyhow::Result<&'static str> {
    let (job, worker) = (job.clone(), id.to_owned());
    work::background(&state.pool, move |conn| {
        Ok(match result {
            Ok(()) => {
                flotilla_jobs::complete(conn, &job, &worker)?;
                "done"
            }
            Err(failure) => {
                log::warn!(
                    "job {} ({}) attempt {} failed: {failure:?}",
                    job.id,
                    job.kind,
                    job.attempts
                );
                match flotilla_jobs::fail(conn, &job, &worker, &failure)? {
                    Outcome::RetryAt(_) => "retry",
                    Outcome::Dead => "dead",
                }
            }
        })
    })
    .await
}

/// Runs one job. A job this release cannot read is parked as dead with the reason
/// (reading it again would not help).
async fn run_job(
    state: &web::Data<State>,
    config: &WorkerConfig,
    claimed: &Claimed,
) -> Result<(), Failure> {
    let job = claimed
        .decode()
        .map_err(|e| Failure::Permanent(format!("cannot read the job: {e}")))?;
    match job {
        // Retried after it was parked as dead (its link's token erased then): sent now,
        // its link would not work. The owner asks for a new link instead.
        Job::Mail(_) if claimed.holds_erased_link() => Err(Failure::Permanent(
            "its link was erased when it failed for good; a new one must be asked for".into(),
        )),
        Job::Mail(mail) => {
            let (transport, key) = (config.mail.clone(), claimed.idempotency_key.clone());
            web::block(move || mail::send(&transport, &key, &mail))
                .await
                .map_err(|e| Failure::Temporary(format!("mail task: {e}")))?
        }
        Job::Cleanup => {
            let days = config.auth_events_days;
            in_database(state, move |conn| cleanup(conn, days)).await
        }
        Job::PurgeUser(target) => in_database(state, move |conn| purge_user(conn, &target)).await,
        // For tests and the queue benchmark.
        Job::Noop => Ok(()),
    }
}

/// Runs a job's database work on the blocking pool; any failure is worth a retry.
async fn in_database(
    state: &web::Data<State>,
    work: impl FnOnce(&mut flotilla_db::AnyConnection) -> anyhow::Result<()> + Send + 'static,
) -> Result<(), Failure> {
    work::background(&state.pool, work)
        .await
        .map_err(|e| Failure::Temporary(format!("{e:#}")))
}

/// Deletes a closed account and what is left about it ([`flotilla_accounts::purge_closed`]).
fn purge_user(conn: &mut flotilla_db::AnyConnection, target: &PurgeUser) -> anyhow::Result<()> {
    if flotilla_accounts::purge_closed(conn, target)? {
        log::info!("purged a closed account");
    }
    Ok(())
}

/// Enqueues the recurring tasks of an hour. The hour is in the job's idempotency key,
/// so however many workers do this, each hour's tasks run once.
fn schedule(conn: &mut flotilla_db::AnyConnection, hour: &str) -> anyhow::Result<()> {
    let mut job = NewJob::new(Job::Cleanup, format!("cleanup:{hour}"));
    job.max_attempts = 3;
    flotilla_jobs::enqueue(conn, &job)?;
    Ok(())
}

/// Deletes spent email tokens, ended sessions and old auth events
/// ([`flotilla_accounts::cleanup`], keeping `FLOTILLA_AUTH_EVENTS_DAYS` of events), jobs
/// done over a week ago and jobs dead for 30 days (kept that long for whoever looks
/// into the failure); erases the links of dead jobs an earlier release parked whole.
fn cleanup(conn: &mut flotilla_db::AnyConnection, events_days: i64) -> anyhow::Result<()> {
    let now = flotilla_jobs::now();
    let flotilla_accounts::Cleaned {
        tokens,
        sessions,
        events,
    } = flotilla_accounts::cleanup(conn, now, events_days)?;
    let jobs = flotilla_jobs::purge_done(conn, now - chrono::TimeDelta::days(7))?;
    let dead = flotilla_jobs::purge_dead(conn, now - chrono::TimeDelta::days(30))?;
    let erased = flotilla_jobs::erase_dead_secrets(conn)?;
    log::info!(
        "clean-up: deleted {tokens} spent tokens, {sessions} ended sessions, \
         {events} old auth events, {jobs} old jobs and {dead} old dead jobs; \
         erased the links of {erased} dead jobs"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn its_routes_the_kit_s_are_described_once() {
        assert_eq!(super::SERVICE.api().problems(), Vec::<String>::new());
    }

    use std::collections::HashMap;

    use super::*;

    #[test]
    fn bus_endpoints_are_checked_at_start_up() {
        let vars = HashMap::from([("FLOTILLA_BUS_WAKE", "127.0.0.1:7110")]);
        let err = WorkerConfig::from_env(&Env::from_fn(|k| vars.get(k).map(|v| v.to_string())))
            .unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_BUS_WAKE");
        let secret = "ab".repeat(32);
        let defaults = WorkerConfig::from_env(&Env::from_fn(|k| {
            (k == "FLOTILLA_BUS_SECRET").then(|| secret.clone())
        }))
        .unwrap();
        assert_eq!(defaults.bus.wake.address, BusConfig::DEFAULT_WAKE);
        assert_eq!(defaults.bus.events_in.address, BusConfig::DEFAULT_EVENTS_IN);
        assert_eq!(
            defaults.bus.events_out.address,
            BusConfig::DEFAULT_EVENTS_OUT
        );
        assert!(defaults.bus.is_loopback());
        assert_eq!(defaults.poll, Duration::from_secs(2));
    }
}
