//! Building a service apart from running it: `Application::build` opens the database,
//! checks the schema and binds the listener (port 0 in tests); `run_until_stopped`
//! serves until SIGTERM or SIGINT, then drains.
//!
//! Draining (actix-web 4.18 does the first three; we add the fourth): the listening
//! socket is closed at once, so a proxy's next connect is refused and it tries another
//! instance; idle keep-alive connections are closed; each request in flight finishes
//! (its answer says `Connection: close`) within `FLOTILLA_SHUTDOWN_TIMEOUT_SECS`, after
//! which the rest are cut; and `/ready` answers 503 meanwhile.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, bail};
use flotilla_db::{Pool, SchemaStatus};
use tokio::sync::watch;

use crate::admission::QueueDelay;
use crate::api::{Api, AppData};
use crate::config::Config;
use crate::error::{self, Error};
use crate::metrics::{self, Metrics};
use crate::middleware::{InFlight, observe};

/// A task that runs beside the HTTP server (the worker's loop). It gets the shared
/// state and a receiver that turns `true` when the service is stopping; it should then
/// finish what it holds and return. An `Err` stops the whole service.
pub type Background = fn(
    web::Data<State>,
    watch::Receiver<bool>,
) -> Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

/// Adds a service's own state (app data) for its routes; called once per HTTP worker
/// thread. Routes themselves are the service's [`Api`].
pub type Provide = Arc<dyn Fn(&mut AppData) + Send + Sync>;

/// Makes a service's state once at start-up, reading its own configuration. An `Err`
/// stops the service before it listens.
pub type Setup = fn(&web::Data<State>) -> anyhow::Result<Provide>;

/// What makes one service different from another.
pub struct Service {
    /// Short name: the path prefix (`/signup`) and the `FLOTILLA_SIGNUP_LISTEN` variable.
    pub name: &'static str,
    pub default_port: u16,
    /// The service's routes and their descriptions, added to the kit's own.
    pub api: fn(Api) -> Api,
    pub setup: Setup,
    pub background: Option<Background>,
    /// Commands beyond `serve` and `migrate` (login's `keys`).
    pub commands: &'static [Command],
}

/// A service's own command: `flotilla-<service> <name> [args…]`.
pub struct Command {
    pub name: &'static str,
    /// One line for `help`, starting with the arguments (`generate|list|prune`).
    pub summary: &'static str,
    pub run: fn(&[String]) -> anyhow::Result<()>,
}

/// The `setup` of a service with no state beyond the kit's.
pub fn no_state(_: &web::Data<State>) -> anyhow::Result<Provide> {
    Ok(Arc::new(|_| {}))
}

impl Service {
    pub fn binary(&self) -> String {
        format!("flotilla-{}", self.name)
    }

    /// Every route of the service, the kit's first, with its description.
    pub fn api(&self) -> Api {
        let kit = Api::new(self.name)
            .kit_route::<__path_health, _, _>(health)
            .kit_route::<__path_ready, _, _>(ready)
            .kit_route::<__path_metrics_text, _, _>(metrics_text)
            .kit_route::<__path_openapi_json, _, _>(openapi_json);
        (self.api)(kit)
    }
}

/// Shared by every request of a service.
pub struct State {
    pub service: &'static Service,
    pub config: Config,
    pub pool: Pool,
    pub metrics: Metrics,
    pub in_flight: InFlight,
    /// The queue in front of the middleware, by the proxy's stamps (`None`: off).
    pub queue_delay: Option<QueueDelay>,
    /// Whether the database is reachable, as the requests found it.
    pub database: crate::database::Health,
    pub started: Instant,
    ready_checks: std::sync::RwLock<Vec<ReadyCheck>>,
    draining: AtomicBool,
}

/// A condition `/ready` also requires (keys loaded, …): `Err` says what is missing.
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl State {
    /// Makes `/ready` answer 503 while `check` fails.
    pub fn add_ready_check(&self, check: ReadyCheck) {
        if let Ok(mut checks) = self.ready_checks.write() {
            checks.push(check);
        }
    }

    /// The service is stopping: `/ready` answers 503 from now on. Called when the stop
    /// signal arrives, before the server stops listening.
    fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn readiness(&self) -> Result<(), String> {
        let checks = self
            .ready_checks
            .read()
            .map(|c| c.clone())
            .unwrap_or_default();
        checks.iter().try_for_each(|check| check())
    }
}

pub struct Application {
    server: Server,
    addr: SocketAddr,
    state: web::Data<State>,
}

impl Application {
    pub fn build(service: &'static Service, config: Config) -> anyhow::Result<Self> {
        let pool = flotilla_db::connect(&config.database)?;
        prepare_schema(service, &config, &pool)?;
        let listener = TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(State {
            service,
            in_flight: InFlight::new(config.max_in_flight),
            queue_delay: config.queue_target.map(QueueDelay::new),
            database: Default::default(),
            metrics: Metrics::default(),
            started: Instant::now(),
            ready_checks: Default::default(),
            draining: AtomicBool::new(false),
            pool,
            config: config.clone(),
        });
        let provide = (service.setup)(&state)?;
        let api = Arc::new(service.api());
        let document = web::Data::new(Document {
            api: Arc::clone(&api),
            json: std::sync::OnceLock::new(),
        });
        let app_state = state.clone();
        let max_body = config.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(error::json_error),
                )
                .app_data(
                    web::FormConfig::default()
                        .limit(max_body)
                        .error_handler(error::form_error),
                )
                .app_data(web::QueryConfig::default().error_handler(error::query_error))
                .app_data(web::PathConfig::default().error_handler(error::path_error))
                .wrap(from_fn(observe))
                .app_data(document.clone())
                .service(web::scope(&format!("/{}", service.name)).configure(|cfg| {
                    provide(&mut AppData::new(cfg));
                    api.configure(cfg);
                }))
                .default_service(web::to(not_found))
        })
        .workers(config.workers)
        // Longer than nginx's upstream keepalive_timeout, so nginx always closes first
        // and never sends a request down a connection we are closing (but when we
        // stop: nginx then tries an idempotent request on another instance).
        .keep_alive(Duration::from_secs(75))
        .shutdown_timeout(config.shutdown_timeout.as_secs())
        .shutdown_signal(stop_signal(state.clone()))
        .listen(listener)?
        .run();
        Ok(Self {
            server,
            addr,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops the server from elsewhere (`stop(true)` drains like SIGTERM does).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn state(&self) -> web::Data<State> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT (or the background task fails), then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let service = self.state.service;
        log::info!(
            "{} {} listening on http://{} (database: {})",
            service.binary(),
            env!("CARGO_PKG_VERSION"),
            self.addr,
            self.state.config.database.url.redacted()
        );
        // Ends with the server's runtime.
        actix_web::rt::spawn(give_back_when_quiet(self.state.clone()));
        let Some(background) = service.background else {
            self.server.await?;
            log::info!("{} stopped", service.binary());
            return Ok(());
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let handle = self.server.handle();
        let task = actix_web::rt::spawn(background(self.state.clone(), stop_rx));
        let mut task = std::pin::pin!(task);
        let mut server = std::pin::pin!(self.server);
        let outcome = tokio::select! {
            served = &mut server => {
                let _ = stop_tx.send(true);
                served.map_err(anyhow::Error::from).and(flatten(task.await))
            }
            ended = &mut task => {
                // Both at once: the stop completes only while the server is polled.
                let _ = tokio::join!(handle.stop(true), &mut server);
                match flatten(ended) {
                    Ok(()) => Err(anyhow::anyhow!("the background task stopped unexpectedly")),
                    Err(e) => Err(e),
                }
            }
        };
        log::info!("{} stopped", service.binary());
        outcome
    }
}

/// How often the memory is looked after, and how long without a request is quiet.
const QUIET: Duration = Duration::from_secs(5);
/// For how many quiet ticks after the last request the free memory is given back: a
/// minute, which sees the blocking threads end (10 s) and the database pool close its
/// idle connections (15 s idle, checked every 30 s), each freeing memory of its own.
const GIVE_BACK_TICKS: u32 = 12;

/// Once requests stop, gives the allocator's free memory back (see `crate::memory`)
/// every [`QUIET`] for a minute, so that the process returns near its idle size after
/// a flood; not during one, when the memory is about to be used again.
async fn give_back_when_quiet(state: web::Data<State>) {
    let mut seen = state.in_flight.admitted();
    // Nothing to give back before the first request.
    let mut quiet_ticks = GIVE_BACK_TICKS;
    let mut ticks = tokio::time::interval(QUIET);
    loop {
        ticks.tick().await;
        let admitted = state.in_flight.admitted();
        if admitted != seen || state.in_flight.current() > 0 {
            quiet_ticks = 0;
        } else if quiet_ticks < GIVE_BACK_TICKS {
            quiet_ticks += 1;
            crate::memory::give_back_free_memory();
        }
        seen = admitted;
    }
}

/// Resolves on SIGTERM or SIGINT (both drain: the server then stops gracefully) after
/// marking the service as draining.
async fn stop_signal(state: web::Data<State>) {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = signal(SignalKind::terminate())
        .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
    let (mut term, mut int) = match signals {
        Ok(signals) => signals,
        Err(e) => {
            log::error!(
                "cannot handle SIGTERM and SIGINT ({e}): they stop this service without draining"
            );
            return std::future::pending().await;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    state.drain();
    log::info!(
        "{name}: draining (not listening any more; the requests in flight have {} s to finish)",
        state.config.shutdown_timeout.as_secs()
    );
}

fn flatten(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.map_err(|e| anyhow::anyhow!("the background task panicked: {e}"))?
}

/// Refuses a schema older or newer than this binary, or migrates when allowed.
fn prepare_schema(service: &Service, config: &Config, pool: &Pool) -> anyhow::Result<()> {
    let mut conn = pool.get().context("cannot get a database connection")?;
    match flotilla_db::schema_status(&mut conn)? {
        SchemaStatus::Current => Ok(()),
        SchemaStatus::Newer { unknown } => {
            log::info!(
                "the database schema is newer than this binary (migrations {}), and \
                 compatible: serving on it",
                unknown.join(", ")
            );
            Ok(())
        }
        SchemaStatus::Behind { .. } if config.auto_migrate => {
            let applied = flotilla_db::migrate(&mut conn, &config.database.url)?;
            if !applied.is_empty() {
                log::info!("applied migrations {}", applied.join(", "));
            }
            Ok(())
        }
        SchemaStatus::Behind { pending } => bail!(
            "the database schema is older than this binary (pending migrations: {}); \
             run `{} migrate` (or `make migrate`), or set FLOTILLA_AUTO_MIGRATE=true",
            pending.join(", "),
            service.binary()
        ),
        SchemaStatus::Ahead { unknown } => bail!(
            "the database schema is newer than this binary (unknown migrations: {}): \
             it was migrated by a newer flotilla; deploy that version of {}",
            unknown.join(", "),
            service.binary()
        ),
    }
}

/// The service's OpenAPI document, made and serialised on the first request for it
/// (see [`crate::api::Description`]): from the same list the routes were registered from.
struct Document {
    api: Arc<Api>,
    json: std::sync::OnceLock<String>,
}

/// What `/health` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: String,
    service: String,
    version: String,
}

/// What `/ready` answers when ready.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Ready {
    /// Always `ready`.
    status: String,
    /// `sqlite` or `postgres`.
    database: String,
    /// `current`, or `newer, compatible` (migrated by a newer release, expand-only).
    schema: String,
}

/// Whether the process runs (no dependency is asked).
#[utoipa::path(get, path = "/health", tag = "kit",
    responses((status = 200, description = "The process runs.", body = Health)))]
async fn health(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "service": state.service.name,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Ready when the database answers and takes writes, the schema is the binary's, and
/// the service is not stopping; else 503 saying which.
#[utoipa::path(get, path = "/ready", tag = "kit",
    responses(
        (status = 200, description = "Ready for requests.", body = Ready),
        (status = 503, description = "Not ready, and why: `database_unavailable`, \
            `database_locked`, `schema_mismatch`, `draining`, `not_ready`.",
            body = crate::api::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait."))),
    ))]
async fn ready(state: web::Data<State>) -> Result<HttpResponse, Error> {
    let status = crate::work::blocking(&state, |conn| {
        let status = flotilla_db::schema_status(conn)?;
        flotilla_db::check_writable(conn)?;
        Ok::<_, Error>(status)
    })
    .await
    .map_err(|e| unready_database(&state, e))?;
    // After the database: a stop may have begun while it answered.
    if state.is_draining() {
        return Err(Error::Unavailable {
            code: "draining",
            message: "Stopping: finishing the requests in flight.".into(),
            retry_after_secs: 1,
        });
    }
    let compatible = match status {
        SchemaStatus::Current => Some("current"),
        SchemaStatus::Newer { .. } => Some("newer, compatible"),
        SchemaStatus::Behind { .. } | SchemaStatus::Ahead { .. } => None,
    };
    if let (Some(_), Err(missing)) = (compatible, state.readiness()) {
        return Err(Error::Unavailable {
            code: "not_ready",
            message: format!("Not ready yet: {missing}."),
            retry_after_secs: 1,
        });
    }
    match status {
        SchemaStatus::Current | SchemaStatus::Newer { .. } => {
            Ok(HttpResponse::Ok().json(serde_json::json!({
                "status": "ready",
                "database": state.config.database.url.backend().to_string(),
                "schema": compatible,
            })))
        }
        SchemaStatus::Behind { .. } | SchemaStatus::Ahead { .. } => Err(Error::Unavailable {
            code: "schema_mismatch",
            message: format!(
                "The database schema does not match this binary: run `{} migrate`.",
                state.service.binary()
            ),
            retry_after_secs: 5,
        }),
    }
}

/// A database fault as `/ready` tells it: what is wrong and since when.
fn unready_database(state: &State, error: Error) -> Error {
    let message = match (error.code(), state.database.outage()) {
        ("database_unavailable", Some((reason, since))) => format!(
            "Not ready: the database has been unreachable for {:.1} s ({reason}).",
            since.as_secs_f64()
        ),
        ("database_locked", _) => format!(
            "Not ready: another process holds the database's write lock (waited {} ms).",
            state.config.database.busy_timeout.as_millis()
        ),
        _ => return error,
    };
    Error::Unavailable {
        code: error.code(),
        message,
        retry_after_secs: 1,
    }
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "kit",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4.",
            content_type = "text/plain", body = String),
        (status = 403, description = "Through nginx, always: metrics are scraped from each \
            instance's own port, never through the public origin.",
            content_type = "text/html", body = String),
    ))]
async fn metrics_text(state: web::Data<State>) -> HttpResponse {
    let name = state.service.name;
    let mut out = String::with_capacity(4096);
    state.metrics.render(name, &mut out);
    let (connections, idle, max) = flotilla_db::pool_state(&state.pool);
    metrics::gauge(
        &mut out,
        "flotilla_http_requests_in_flight",
        "Requests being handled now.",
        name,
        state.in_flight.current(),
    );
    metrics::gauge(
        &mut out,
        "flotilla_db_pool_connections",
        "Open database connections.",
        name,
        connections,
    );
    metrics::gauge(
        &mut out,
        "flotilla_db_pool_idle_connections",
        "Idle database connections.",
        name,
        idle,
    );
    metrics::gauge(
        &mut out,
        "flotilla_db_pool_max_connections",
        "Most database connections the pool opens.",
        name,
        max,
    );
    if let Some(rss) = metrics::resident_memory_bytes() {
        metrics::gauge(
            &mut out,
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            name,
            rss,
        );
    }
    metrics::gauge(
        &mut out,
        "process_uptime_seconds",
        "Seconds since the service started.",
        name,
        state.started.elapsed().as_secs(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// This service's OpenAPI 3.1 document (`make openapi` merges the fleet's).
#[utoipa::path(get, path = "/openapi.json", tag = "kit",
    responses((status = 200, description = "The OpenAPI 3.1 document of this service.",
        body = Object)))]
async fn openapi_json(document: web::Data<Document>) -> Result<HttpResponse, Error> {
    let json = match document.json.get() {
        Some(json) => json.clone(),
        None => {
            let json = serde_json::to_string(&document.api.document())
                .map_err(|e| Error::Internal(anyhow::anyhow!("the OpenAPI document: {e}")))?;
            document.json.get_or_init(|| json).clone()
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(json))
}

async fn not_found() -> Result<HttpResponse, Error> {
    Err(Error::NotFound)
}
