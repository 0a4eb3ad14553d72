//! `GET /admin/fleet`: every service instance's `/health` and `/ready`, asked in
//! parallel over plain http (hyper alone: no TLS stack started in an idle console),
//! each within `FLOTILLA_ADMIN_FLEET_TIMEOUT_MS`, so a stopped service shows as down
//! and the page still answers; and the page generator's last build (it listens on no
//! port: `flotilla-pages build` records each full build in `page_builds`).
//!
//! The instances come from `FLOTILLA_ADMIN_FLEET`: `service=url[,url…]` separated by
//! spaces, e.g. `signup=http://127.0.0.1:7101 login=http://10.0.0.2:7102,http://10.0.0.3:7102`.
//! When it is set it is the whole list; unset, each service at its default port on
//! 127.0.0.1.

use flotilla_kit::html::SignedIn;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use flotilla_db::{PageBuild, PageUpdate};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::html::{page_or_json, render};
use flotilla_kit::tokio;
use flotilla_kit::work::read;
use flotilla_kit::{ConfigError, Env, Error, State};
use http_body_util::BodyExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Admin;
use crate::docs;
use crate::operator::Operator;

/// The services that answer HTTP, with their default ports.
pub const SERVICES: [(&str, u16); 5] = [
    ("signup", 7101),
    ("login", 7102),
    ("profile", 7103),
    ("admin", 7104),
    ("worker", 7105),
];

/// A larger answer from `/health` or `/ready` is refused (they send a few dozen bytes).
const MAX_BODY_BYTES: usize = 16 * 1024;

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub service: &'static str,
    /// `http://host:port`, without a trailing slash.
    pub url: String,
}

/// `FLOTILLA_ADMIN_FLEET` and `FLOTILLA_ADMIN_FLEET_TIMEOUT_MS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    pub instances: Vec<Instance>,
    /// How long one instance may take to answer both questions (default 1000 ms).
    pub timeout: Duration,
}

impl FleetConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let timeout = Duration::from_millis(env.number(
            "FLOTILLA_ADMIN_FLEET_TIMEOUT_MS",
            1000,
            50..=30_000,
        )?);
        let instances = match env.raw("FLOTILLA_ADMIN_FLEET") {
            None => SERVICES
                .iter()
                .map(|(service, port)| Instance {
                    service,
                    url: format!("http://127.0.0.1:{port}"),
                })
                .collect(),
            Some(value) => parse_fleet(&value).map_err(|problem| ConfigError {
                variable: "FLOTILLA_ADMIN_FLEET".into(),
                value: value.clone(),
                expected: format!(
                    "service=http://host:port[,http://host:port…] separated by spaces, \
                     services among signup, login, profile, admin, worker ({problem})"
                ),
            })?,
        };
        Ok(Self { instances, timeout })
    }
}

/// `signup=http://a:7101 login=http://b:7102,http://c:7102`; the problem if not.
fn parse_fleet(value: &str) -> Result<Vec<Instance>, String> {
    let mut instances: Vec<Instance> = Vec::new();
    for entry in value.split_whitespace() {
        let (name, urls) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?} has no '='"))?;
        let service = SERVICES
            .iter()
            .map(|(s, _)| *s)
            .find(|s| *s == name)
            .ok_or_else(|| format!("{name:?} is not a service with an HTTP port"))?;
        for url in urls.split(',') {
            let url = base_url(url).ok_or_else(|| {
                format!("{url:?} is not an http URL with a host and nothing after the port")
            })?;
            let instance = Instance { service, url };
            if instances.contains(&instance) {
                return Err(format!("{name}={} is listed twice", instance.url));
            }
            instances.push(instance);
        }
    }
    if instances.is_empty() {
        return Err("no service is listed".into());
    }
    Ok(instances)
}

/// `http://host[:port]` (a trailing `/` allowed), as `http://host:port`.
fn base_url(text: &str) -> Option<String> {
    let uri: hyper::Uri = text.parse().ok()?;
    let plain_http = uri.scheme_str() == Some("http");
    let bare = matches!(uri.path(), "" | "/") && uri.query().is_none();
    let authority = uri.authority()?;
    let credentials = authority.as_str().contains('@');
    (plain_http && bare && !credentials && !authority.host().is_empty()).then(|| {
        format!(
            "http://{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        )
    })
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Empty<hyper::body::Bytes>,
>;

/// Asks the fleet how it is.
#[derive(Clone)]
pub struct FleetCheck {
    config: FleetConfig,
    client: Client,
}

/// How an instance answered: `up` (alive and ready), `not_ready` (alive, but its
/// database or keys are not usable), `down` (no answer, or a failed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Alive and ready.
    Up,
    /// Alive, but its database or keys are not usable.
    NotReady,
    /// No answer, or a failed one.
    Down,
}

impl InstanceState {
    /// For the page: the class suffix (`state-up`) and the words.
    pub fn class(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::NotReady => "not-ready",
            Self::Down => "down",
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::NotReady => "not ready",
            Self::Down => "down",
        }
    }
}

/// One instance's answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstanceReport {
    /// The service: `signup`, `login`, `profile`, `admin` or `worker`.
    pub name: &'static str,
    /// `http://host:port`, as `FLOTILLA_ADMIN_FLEET` lists it.
    pub url: String,
    pub state: InstanceState,
    /// From `/health`'s JSON.
    pub version: Option<String>,
    /// `/health`'s round trip, connection included.
    pub latency_ms: Option<u64>,
    /// Why it is not up.
    pub reason: Option<String>,
}

/// The page generator's last full build (`flotilla-pages build`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PagesReport {
    pub host: String,
    pub version: String,
    pub started_at: String,
    pub finished_at: String,
    pub pages: i64,
    pub duration_ms: i64,
}

impl PagesReport {
    fn of(build: PageBuild) -> Self {
        Self {
            duration_ms: build.duration().num_milliseconds(),
            host: build.host,
            version: build.version,
            started_at: crate::utc(build.started_at),
            finished_at: crate::utc(build.finished_at),
            pages: build.pages,
        }
    }
}

/// The page generator's last incremental update (`flotilla-pages watch`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PagesUpdateReport {
    pub host: String,
    pub version: String,
    pub at: String,
    pub duration_ms: i64,
    /// The accounts it looked at.
    pub changed: i64,
}

impl PagesUpdateReport {
    fn of(update: PageUpdate) -> Self {
        Self {
            host: update.host,
            version: update.version,
            at: crate::utc(update.at),
            duration_ms: update.duration_ms,
            changed: update.changed,
        }
    }
}

/// The fleet page's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FleetReport {
    /// Every instance of `FLOTILLA_ADMIN_FLEET`, in its order.
    pub services: Vec<InstanceReport>,
    /// `null`: no build recorded yet.
    pub pages: Option<PagesReport>,
    /// `null`: no update recorded yet.
    pub pages_update: Option<PagesUpdateReport>,
}

impl FleetReport {
    /// How many instances are up, of how many.
    pub fn up(&self) -> (usize, usize) {
        let up = self
            .services
            .iter()
            .filter(|s| s.state == InstanceState::Up)
            .count();
        (up, self.services.len())
    }
}

/// An answer: its status, its body, how long it took.
struct Answer {
    status: u16,
    body: serde_json::Value,
    took: Duration,
}

impl FleetCheck {
    pub fn new(config: FleetConfig) -> Self {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                // Asked now and then: no connection is kept between two looks.
                .pool_max_idle_per_host(0)
                .build(connector);
        Self { config, client }
    }

    /// Every instance's state, in the configured order; takes at most the timeout
    /// (every instance is asked at once).
    pub async fn services(&self) -> Vec<InstanceReport> {
        let mut asked = tokio::task::JoinSet::new();
        for (i, instance) in self.config.instances.iter().cloned().enumerate() {
            let check = self.clone();
            asked.spawn(async move { (i, check.instance(instance).await) });
        }
        let mut reports: Vec<(usize, InstanceReport)> = Vec::new();
        while let Some(joined) = asked.join_next().await {
            match joined {
                Ok(report) => reports.push(report),
                Err(e) => log::error!("a fleet check failed: {e}"),
            }
        }
        reports.sort_by_key(|(i, _)| *i);
        reports.into_iter().map(|(_, r)| r).collect()
    }

    /// The fleet's state and the page generator's last build and update.
    pub async fn report(&self, state: &web::Data<State>) -> Result<FleetReport, Error> {
        let (services, last, update) = tokio::join!(
            self.services(),
            read(state, PageBuild::last),
            read(state, PageUpdate::last)
        );
        Ok(FleetReport {
            services,
            pages: last?.map(PagesReport::of),
            pages_update: update?.map(PagesUpdateReport::of),
        })
    }

    async fn instance(&self, instance: Instance) -> InstanceReport {
        let base = format!("{}/{}", instance.url, instance.service);
        let (health, ready) = tokio::join!(
            self.get(format!("{base}/health")),
            self.get(format!("{base}/ready"))
        );
        let mut report = InstanceReport {
            name: instance.service,
            url: instance.url,
            state: InstanceState::Down,
            version: None,
            latency_ms: None,
            reason: None,
        };
        let health = match health {
            Ok(answer) => answer,
            Err(e) => {
                report.reason = Some(e);
                return report;
            }
        };
        report.latency_ms = Some(u64::try_from(health.took.as_millis()).unwrap_or(u64::MAX));
        report.version = health.body["version"].as_str().map(str::to_owned);
        if health.status != 200 {
            report.reason = Some(format!("/health answered {}", health.status));
            return report;
        }
        report.state = InstanceState::NotReady;
        match ready {
            Err(e) => report.reason = Some(e),
            Ok(ready) if ready.status != 200 => {
                let message = ready.body["message"].as_str().map(str::to_owned);
                report.reason =
                    Some(message.unwrap_or_else(|| format!("/ready answered {}", ready.status)));
            }
            Ok(_) => report.state = InstanceState::Up,
        }
        report
    }

    /// `GET url` within the timeout: its status and JSON body (`null` if it sent none),
    /// or what went wrong, in words.
    async fn get(&self, url: String) -> Result<Answer, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| format!("{url} is not a URL"))?;
        let started = Instant::now();
        let timeout = self.config.timeout;
        let fetch =
            async {
                let response = self.client.get(uri).await.map_err(|e| {
                    match std::error::Error::source(&e) {
                        Some(cause) => format!("no answer: {cause}"),
                        None => format!("no answer: {e}"),
                    }
                })?;
                let status = response.status().as_u16();
                let body = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES)
                    .collect()
                    .await
                    .map_err(|e| format!("unreadable answer: {e}"))?
                    .to_bytes();
                Ok(Answer {
                    status,
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    took: started.elapsed(),
                })
            };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
    }
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage<'a> {
    title: &'a str,
    viewer: SignedIn<'a>,
    fleet: &'a FleetReport,
}

/// Every service's health and readiness, each instance asked at once (within
/// `FLOTILLA_ADMIN_FLEET_TIMEOUT_MS`), and the page generator's last build and update.
#[utoipa::path(get, path = "/admin/fleet", tag = "admin", operation_id = "fleet",
    responses(
        (status = 200, description = "The fleet (a stopped service is `down`): JSON for an \
            API client, the page for a browser.", content(
            (FleetReport = "application/json"),
            (String = "text/html"),
        )),
        (status = 303, description = docs::PAGE_SEE_OTHER, headers(("Location" = String))),
        (status = 401, description = docs::PAGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::PAGE_FORBIDDEN, body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn show(
    operator: Operator,
    req: HttpRequest,
    state: web::Data<State>,
    admin: web::Data<Admin>,
) -> Result<HttpResponse, Error> {
    let fleet = admin.fleet.report(&state).await?;
    Ok(page_or_json(&req, &fleet, || {
        render(&FleetPage {
            title: "Fleet",
            viewer: operator.viewer(),
            fleet: &fleet,
        })
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<FleetConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FleetConfig::from_env(&Env::from_fn(move |k| vars.get(k).cloned()))
    }

    #[test]
    fn the_default_fleet_is_every_service_on_its_port() {
        let fleet = config(&[]).unwrap();
        assert_eq!(fleet.timeout, Duration::from_secs(1));
        let urls: Vec<String> = fleet
            .instances
            .iter()
            .map(|i| format!("{}={}", i.service, i.url))
            .collect();
        assert_eq!(
            urls,
            [
                "signup=http://127.0.0.1:7101",
                "login=http://127.0.0.1:7102",
                "profile=http://127.0.0.1:7103",
                "admin=http://127.0.0.1:7104",
                "worker=http://127.0.0.1:7105"
            ]
        );
    }

    #[test]
    fn several_instances_and_bad_values() {
        let fleet = config(&[(
            "FLOTILLA_ADMIN_FLEET",
            " signup=http://127.0.0.1:7101/  login=http://10.0.0.2:7102,http://db-2 ",
        )])
        .unwrap();
        let urls: Vec<&str> = fleet.instances.iter().map(|i| i.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:7101",
                "http://10.0.0.2:7102",
                "http://db-2:80"
            ]
        );
        for (bad, says) in [
            ("signup", "has no '='"),
            ("pages=http://a:1", "not a service"),
            ("signup=https://a:7101", "not an http URL"),
            ("signup=http://a:7101/signup", "not an http URL"),
            ("signup=http://u:p@a:7101", "not an http URL"),
            ("signup=", "not an http URL"),
            ("signup=http://a:1 signup=http://a:1", "listed twice"),
        ] {
            let err = config(&[("FLOTILLA_ADMIN_FLEET", bad)]).unwrap_err();
            assert_eq!(err.variable, "FLOTILLA_ADMIN_FLEET");
            assert!(err.expected.contains(says), "{bad}: {err}");
        }
        let err = config(&[("FLOTILLA_ADMIN_FLEET_TIMEOUT_MS", "0")]).unwrap_err();
        assert_eq!(err.variable, "FLOTILLA_ADMIN_FLEET_TIMEOUT_MS");
    }
}
