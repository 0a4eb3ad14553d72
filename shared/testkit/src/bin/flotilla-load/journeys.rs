//! People using the fleet, at a fixed rate: each journey either brings a new person
//! (sign up, the link of the mail the fleet writes to the mail folder, verify), or a
//! returning one (a person whose earlier journey ended); then signs in, reads the
//! profile, edits it, refreshes the session, reads the profile with the new token, and
//! one time in three signs out. Every answer but the expected one is an error, by route
//! and status (0: no answer within the deadline); the journey stops at the first.
//! Journeys start at `i / rate` whatever became of the earlier ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, Uri};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::{Header, Http};
use crate::stats::Latencies;

const PASSWORD: &str = "a soak journey's password";
/// How long a journey waits for its verification mail.
const MAIL_WAIT: Duration = Duration::from_secs(30);
/// How long the last journeys have to finish once the time is up.
const DRAIN: Duration = Duration::from_secs(60);

pub struct Settings {
    pub origin: String,
    pub mail_dir: PathBuf,
    /// Journeys started per second.
    pub rate: f64,
    pub seconds: f64,
    /// The share of journeys made by a returning person (when one is free).
    pub returning: f64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Route {
    Signup,
    Verify,
    Login,
    Read,
    Edit,
    Refresh,
    Logout,
    /// The verification mail (its wait, and its absence).
    Mail,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::Signup => "POST /signup",
            Route::Verify => "POST /signup/verify",
            Route::Login => "POST /login",
            Route::Read => "GET /profile/me",
            Route::Edit => "PATCH /profile/me",
            Route::Refresh => "POST /login/refresh",
            Route::Logout => "POST /login/logout",
            Route::Mail => "(verification mail)",
        }
    }
}

/// What the journeys saw, shared by all of them.
#[derive(Default)]
struct Record {
    latencies: BTreeMap<Route, Latencies>,
    errors: BTreeMap<(Route, u16), usize>,
    first_errors: Vec<String>,
    started: usize,
    new_people: usize,
    completed: usize,
    /// People free for a returning journey.
    returning: Vec<String>,
}

type Shared = Arc<Mutex<Record>>;

fn with<T>(record: &Shared, f: impl FnOnce(&mut Record) -> T) -> Option<T> {
    record.lock().ok().map(|mut r| f(&mut r))
}

/// The tokens of the verification mails, by address, read from the mail folder.
type Mailbox = Arc<Mutex<HashMap<String, String>>>;

struct Journey {
    http: Http,
    origin: String,
    record: Shared,
    mailbox: Mailbox,
}

/// A journey stopped at an unexpected answer (already recorded).
struct Stopped;

impl Journey {
    fn uri(&self, path: &str) -> Result<Uri, Stopped> {
        format!("{}{path}", self.origin)
            .parse()
            .map_err(|_| Stopped)
    }

    /// One request; its latency recorded, or its status as an error when not `want`.
    async fn call(
        &self,
        route: Route,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value, Stopped> {
        let mut headers: Vec<Header> = Vec::new();
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Stopped)?;
            headers.push((AUTHORIZATION, value));
        }
        let started = Instant::now();
        let answer = self
            .http
            .send(method, self.uri(path)?, &headers, body.as_ref())
            .await;
        let took = started.elapsed();
        let (status, detail) = match answer {
            Ok(a) if a.status == want => {
                with(&self.record, |r| {
                    r.latencies.entry(route).or_default().push(took)
                });
                return Ok(a.json());
            }
            Ok(a) => (a.status, String::from_utf8_lossy(&a.body).into_owned()),
            Err(e) => (0, format!("{e:#}")),
        };
        self.error(route, status, detail);
        Err(Stopped)
    }

    fn error(&self, route: Route, status: u16, detail: String) {
        with(&self.record, |r| {
            *r.errors.entry((route, status)).or_default() += 1;
            if r.first_errors.len() < 10 {
                let detail: String = detail.chars().take(200).collect();
                r.first_errors
                    .push(format!("{} answered {status}: {detail}", route.label()));
            }
        });
    }

    /// A new person: signs up and follows the mailed link. Their address.
    async fn arrive(&self, email: String) -> Result<String, Stopped> {
        let credentials = json!({"email": email, "password": PASSWORD});
        self.call(
            Route::Signup,
            Method::POST,
            "/signup",
            None,
            Some(credentials),
            202,
        )
        .await?;
        let waited = Instant::now();
        let token = loop {
            let found = self.mailbox.lock().ok().and_then(|mut m| m.remove(&email));
            if let Some(token) = found {
                break token;
            }
            if waited.elapsed() > MAIL_WAIT {
                self.error(Route::Mail, 0, format!("no mail to {email}"));
                return Err(Stopped);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        with(&self.record, |r| {
            r.latencies
                .entry(Route::Mail)
                .or_default()
                .push(waited.elapsed())
        });
        let verify = json!({"token": token});
        self.call(
            Route::Verify,
            Method::POST,
            "/signup/verify",
            None,
            Some(verify),
            200,
        )
        .await?;
        Ok(email)
    }

    /// Signs in, reads, edits, refreshes, reads again; signs out one time in three.
    async fn visit(&self, email: &str, n: usize) -> Result<(), Stopped> {
        let credentials = json!({"email": email, "password": PASSWORD});
        let session = self
            .call(
                Route::Login,
                Method::POST,
                "/login",
                None,
                Some(credentials),
                200,
            )
            .await?;
        let (access, refresh) = tokens(&session).ok_or_else(|| {
            self.error(Route::Login, 200, format!("no tokens in {session}"));
            Stopped
        })?;
        self.call(
            Route::Read,
            Method::GET,
            "/profile/me",
            Some(&access),
            None,
            200,
        )
        .await?;
        let edit = json!({"display_name": format!("Soak {n}")});
        self.call(
            Route::Edit,
            Method::PATCH,
            "/profile/me",
            Some(&access),
            Some(edit),
            200,
        )
        .await?;
        let renewed = json!({"refresh_token": refresh});
        let renewed = self
            .call(
                Route::Refresh,
                Method::POST,
                "/login/refresh",
                None,
                Some(renewed),
                200,
            )
            .await?;
        let (access, _) = tokens(&renewed).ok_or_else(|| {
            self.error(Route::Refresh, 200, format!("no tokens in {renewed}"));
            Stopped
        })?;
        self.call(
            Route::Read,
            Method::GET,
            "/profile/me",
            Some(&access),
            None,
            200,
        )
        .await?;
        if n.is_multiple_of(3) {
            self.call(
                Route::Logout,
                Method::POST,
                "/login/logout",
                Some(&access),
                None,
                204,
            )
            .await?;
        }
        Ok(())
    }
}

fn tokens(body: &Value) -> Option<(String, String)> {
    Some((
        body["access_token"].as_str()?.to_owned(),
        body["refresh_token"].as_str()?.to_owned(),
    ))
}

/// Reads the mail folder every 50 ms (made with the first mail): each new `*.eml`
/// once, its address and token.
async fn watch_mail(dir: PathBuf, mailbox: Mailbox) {
    let mut seen = HashSet::new();
    loop {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let is_mail = name
                    .to_str()
                    .is_some_and(|n| n.ends_with(".eml") && !n.starts_with('.'));
                if !is_mail || seen.contains(&name) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                seen.insert(name);
                let to = text
                    .lines()
                    .find_map(|l| l.strip_prefix("To: "))
                    .map(|a| a.trim().to_owned());
                if let (Some(to), Some(token)) = (to, flotilla_testkit::link_param(&text, "token"))
                    && let Ok(mut m) = mailbox.lock()
                {
                    m.insert(to, token);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the journeys, prints the table and the totals; true when nothing failed.
pub async fn run(http: Http, settings: Settings) -> anyhow::Result<bool> {
    if !(settings.rate > 0.0 && settings.seconds > 0.0) {
        return Err(anyhow!("journeys: --rate and --seconds must be above 0"));
    }
    let record: Shared = Arc::default();
    let mailbox: Mailbox = Arc::default();
    let watcher = tokio::spawn(watch_mail(settings.mail_dir.clone(), Arc::clone(&mailbox)));
    let run_tag = format!("{:08x}", rand::random::<u32>());
    let start = Instant::now();
    let count = (settings.rate * settings.seconds).round() as usize;
    let mut journeys = Vec::with_capacity(count);
    for n in 0..count {
        tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / settings.rate)).await;
        let returning = rand::random::<f64>() < settings.returning;
        let person = with(&record, |r| {
            r.started += 1;
            let free = r.returning.len();
            if returning && free > 0 {
                Some(r.returning.swap_remove(rand::random_range(0..free)))
            } else {
                r.new_people += 1;
                None
            }
        })
        .flatten();
        let journey = Journey {
            http: http.clone(),
            origin: settings.origin.clone(),
            record: Arc::clone(&record),
            mailbox: Arc::clone(&mailbox),
        };
        let email = format!("soak-{run_tag}-{n}@example.org");
        journeys.push(tokio::spawn(async move {
            let email = match person {
                Some(email) => email,
                None => journey.arrive(email).await?,
            };
            journey.visit(&email, n).await?;
            with(&journey.record, |r| {
                r.completed += 1;
                r.returning.push(email);
            });
            Ok::<_, Stopped>(())
        }));
        let every = (settings.rate * 60.0).round().max(1.0) as usize;
        if n > 0 && n.is_multiple_of(every) {
            let finished = with(&record, |r| (r.completed, r.errors.values().sum::<usize>()));
            let (completed, errors) = finished.unwrap_or_default();
            eprintln!(
                "flotilla-load: {:.0} s: {n} journeys begun, {completed} finished, {errors} errors",
                start.elapsed().as_secs_f64()
            );
        }
    }
    let drain = Instant::now() + DRAIN;
    for journey in journeys {
        // One still going at the deadline is counted as unfinished.
        let _ = tokio::time::timeout_at(drain, journey).await;
    }
    watcher.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let Some(ok) = with(&record, |r| print_report(r, elapsed)) else {
        return Err(anyhow!("the journeys' record is poisoned"));
    };
    Ok(ok)
}

fn print_report(r: &mut Record, elapsed: f64) -> bool {
    println!(
        "{:<24} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "route", "answers", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let mut routes: Vec<Route> = r.latencies.keys().copied().collect();
    routes.extend(r.errors.keys().map(|(route, _)| *route));
    routes.sort();
    routes.dedup();
    for route in routes {
        let errors: usize = r
            .errors
            .iter()
            .filter(|((e, _), _)| *e == route)
            .map(|(_, n)| n)
            .sum();
        let l = r.latencies.entry(route).or_default();
        l.sort();
        println!(
            "{:<24} {:>8} {:>9} {:>9} {:>9} {:>7}",
            route.label(),
            l.len(),
            l.ms(50.0),
            l.ms(99.0),
            l.ms(100.0),
            errors
        );
    }
    for ((route, status), n) in &r.errors {
        println!("error: {} answered {status} ×{n}", route.label());
    }
    for line in &r.first_errors {
        eprintln!("flotilla-load: {line}");
    }
    let errors: usize = r.errors.values().sum();
    // Each journey that stopped recorded one error.
    let unfinished = r.started.saturating_sub(r.completed + errors);
    println!(
        "journeys={} new_people={} completed={} errors={errors} unfinished={unfinished} \
         seconds={elapsed:.0} rate={:.2}",
        r.started,
        r.new_people,
        r.completed,
        r.started as f64 / elapsed
    );
    errors == 0 && unfinished == 0
}
