//! The database goes away under load and comes back: PostgreSQL stopped and started
//! again, a SQLite file held locked by another process and let go. Every service
//! answers `503` with `Retry-After` within a second meanwhile (never a 500, never a
//! hang), `/ready` says why, the fleet resumes within five seconds without a restart,
//! and no write answered `2xx` is lost.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use flotilla_testkit::{PgCluster, postgres_tests_on, wait_until};
use reqwest::blocking::RequestBuilder;
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::admin::admin_account;
use super::login::{PASSWORD, sign_in, verified_account};
use super::*;

/// What the load drivers send, round and round: each needs the database, and each
/// is answered 2xx while the database is well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Probe {
    /// `POST /signup` of a new address (a write).
    Signup,
    /// `POST /login` with the right password (reads the account, writes a session).
    Login,
    /// `GET /profile/me` (a read).
    ProfileRead,
    /// `PATCH /profile/me` with the driver's next number as its name (a write).
    ProfileEdit,
    /// `GET /admin/users` (a read).
    AdminList,
    /// The worker's own `/worker/ready`, straight to it (it is not behind nginx).
    WorkerReady,
}

const PROBES: [Probe; 6] = [
    Probe::Signup,
    Probe::Login,
    Probe::ProfileRead,
    Probe::ProfileEdit,
    Probe::AdminList,
    Probe::WorkerReady,
];

impl Probe {
    fn writes(self) -> bool {
        matches!(self, Probe::Signup | Probe::Login | Probe::ProfileEdit)
    }
}

#[derive(Debug, Clone)]
struct Answer {
    probe: Probe,
    driver: usize,
    sent: Instant,
    took: Duration,
    status: StatusCode,
    retry_after: bool,
    code: String,
    /// The address signed up, or the name set, when the write was answered 2xx.
    written: Option<String>,
}

/// One load driver's account and counter.
struct Driver {
    client: reqwest::blocking::Client,
    origin: String,
    worker_ready: String,
    n: usize,
    email: String,
    access: String,
    admin: String,
    counter: usize,
}

impl Driver {
    fn send(&mut self, probe: Probe) -> Answer {
        self.counter += 1;
        let written = match probe {
            Probe::Signup => Some(format!("load{}-{}@example.org", self.n, self.counter)),
            Probe::ProfileEdit => Some(format!("name {}", self.counter)),
            _ => None,
        };
        let at = |method, path: &str| {
            self.client
                .request(method, format!("{}{path}", self.origin))
        };
        let request: RequestBuilder =
            match probe {
                Probe::Signup => at(Method::POST, "/signup")
                    .json(&json!({"email": written, "password": PASSWORD})),
                Probe::Login => at(Method::POST, "/login")
                    .json(&json!({"email": self.email, "password": PASSWORD})),
                Probe::ProfileRead => at(Method::GET, "/profile/me").bearer_auth(&self.access),
                Probe::ProfileEdit => at(Method::PATCH, "/profile/me")
                    .bearer_auth(&self.access)
                    .json(&json!({"display_name": written})),
                Probe::AdminList => at(Method::GET, "/admin/users").bearer_auth(&self.admin),
                Probe::WorkerReady => self.client.get(&self.worker_ready),
            };
        let sent = Instant::now();
        let response = request.timeout(Duration::from_secs(30)).send().unwrap();
        let took = sent.elapsed();
        let status = response.status();
        let retry_after = response.headers().contains_key(RETRY_AFTER);
        let body: Value = response.json().unwrap_or(Value::Null);
        Answer {
            probe,
            driver: self.n,
            sent,
            took,
            status,
            retry_after,
            code: body["error"].as_str().unwrap_or_default().to_owned(),
            written: written.filter(|_| status.is_success()),
        }
    }
}

/// A fleet with cheap hashes, its admin, and one signed-in account per driver.
struct Scene {
    fleet: Fleet,
    admin: String,
    accounts: Vec<(String, String)>,
}

const DRIVERS: usize = 4;

fn scene(db: TestDb) -> Scene {
    // Hashes of a millisecond (in a debug build), so that a signup's time is the
    // database's.
    let fleet = Fleet::builder(db)
        .env("FLOTILLA_ARGON2_MEMORY_KIB", "64")
        .env("FLOTILLA_ARGON2_ITERATIONS", "1")
        .start();
    let admin = admin_account(&fleet, "root@example.org");
    let accounts = (0..DRIVERS)
        .map(|n| {
            let email = format!("driver{n}@example.org");
            verified_account(&fleet, &email);
            let access = sign_in(&fleet, &email).0;
            (email, access)
        })
        .collect();
    Scene {
        fleet,
        admin,
        accounts,
    }
}

/// What happened around one fault.
struct Run {
    answers: Vec<Answer>,
    /// When the fault was in place, when its lifting began, and when it was lifted.
    fault_from: Instant,
    lifting: Instant,
    fault_to: Instant,
    /// Each service's `/ready` answer during the fault: (status, code, message).
    ready: BTreeMap<&'static str, (StatusCode, String, String)>,
}

/// Runs the drivers for a second, puts the fault in place (`begin`), keeps the load on
/// for three seconds, asks each service's `/ready`, lifts the fault (`end`) and keeps
/// the load on until every probe has been answered 2xx again (at most ten seconds).
fn under_load(scene: &Scene, begin: impl FnOnce(), end: impl FnOnce()) -> Run {
    let fleet = &scene.fleet;
    let answers = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let mut run = Run {
        answers: Vec::new(),
        fault_from: Instant::now(),
        lifting: Instant::now(),
        fault_to: Instant::now(),
        ready: BTreeMap::new(),
    };
    std::thread::scope(|threads| {
        for (n, (email, access)) in scene.accounts.iter().enumerate() {
            let (answers, stop) = (&answers, &stop);
            let mut driver = Driver {
                client: fleet.client().clone(),
                origin: fleet.origin(),
                worker_ready: fleet.direct_url("worker", "/worker/ready"),
                n,
                email: email.clone(),
                access: access.clone(),
                admin: scene.admin.clone(),
                counter: 0,
            };
            threads.spawn(move || {
                let mut round = n;
                while !stop.load(Ordering::Relaxed) {
                    let answer = driver.send(PROBES[round % PROBES.len()]);
                    answers.lock().unwrap().push(answer);
                    round += 1;
                }
            });
        }
        let waited = |since: Instant, d: Duration| {
            wait_until(d, || {
                answers
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|a| a.sent > since)
                    .count()
                    >= 4 * PROBES.len()
            })
        };
        assert!(waited(Instant::now(), Duration::from_secs(20)), "no load");
        begin();
        run.fault_from = Instant::now();
        // Three seconds of load against the fault, seen as answers sent after it began.
        assert!(wait_until(Duration::from_secs(20), || {
            run.fault_from.elapsed() >= Duration::from_secs(3)
                && waited(run.fault_from, Duration::ZERO)
        }));
        for service in ["signup", "login", "profile", "admin", "worker"] {
            let response = fleet
                .client()
                .get(fleet.direct_url(service, &format!("/{service}/ready")))
                .send()
                .unwrap();
            let status = response.status();
            let body: Value = response.json().unwrap_or(Value::Null);
            let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
            run.ready
                .insert(service, (status, field("error"), field("message")));
        }
        run.lifting = Instant::now();
        end();
        run.fault_to = Instant::now();
        let back = wait_until(Duration::from_secs(10), || {
            let answers = answers.lock().unwrap();
            PROBES.iter().all(|p| {
                answers
                    .iter()
                    .any(|a| a.probe == *p && a.sent > run.fault_to && a.status.is_success())
            })
        });
        stop.store(true, Ordering::Relaxed);
        assert!(back, "the fleet did not come back:\n{}", fleet.all_logs());
    });
    run.answers = answers.into_inner().unwrap();
    run
}

impl Run {
    /// Every answer: no 5xx but 503, each 503 with `Retry-After`, none slower than the
    /// pool's wait (3 s) and a bit.
    fn check_every_answer(&self, fleet: &Fleet) {
        for a in &self.answers {
            assert!(
                a.status.is_success() || a.status == StatusCode::SERVICE_UNAVAILABLE,
                "{:?} answered {} ({}):\n{}",
                a.probe,
                a.status,
                a.code,
                fleet.all_logs()
            );
            if a.status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(a.retry_after, "{:?}: 503 without Retry-After", a.probe);
            }
            assert!(
                a.took < Duration::from_millis(3500),
                "{:?} took {:?}",
                a.probe,
                a.took
            );
        }
        let logs = fleet.all_logs();
        assert!(!logs.contains("panicked"), "a panic:\n{logs}");
    }

    /// The answers to requests sent while the fault was in place.
    fn during(&self) -> impl Iterator<Item = &Answer> {
        self.answers
            .iter()
            .filter(|a| a.sent >= self.fault_from && a.sent + a.took <= self.lifting)
    }

    /// How long after the fault was lifted each probe was first answered 2xx.
    fn resumed_after(&self) -> BTreeMap<Probe, Duration> {
        let mut first = BTreeMap::new();
        for a in self
            .answers
            .iter()
            .filter(|a| a.sent >= self.fault_to && a.status.is_success())
        {
            let at = (a.sent + a.took) - self.fault_to;
            first
                .entry(a.probe)
                .and_modify(|d: &mut Duration| *d = (*d).min(at))
                .or_insert(at);
        }
        first
    }

    /// Every write answered 2xx is in the database: each signed-up address, and for
    /// each driver a name at least as new as its last one answered 2xx.
    fn check_no_write_lost(&self, scene: &Scene) {
        let db = scene.fleet.db();
        let users: Vec<String> = db.strings("SELECT email AS v FROM users");
        let signed_up: Vec<&String> = self
            .answers
            .iter()
            .filter(|a| a.probe == Probe::Signup)
            .filter_map(|a| a.written.as_ref())
            .collect();
        assert!(!signed_up.is_empty());
        for address in &signed_up {
            assert!(
                users.contains(address),
                "{address} was answered 202 and is not stored"
            );
        }
        // Each driver's names are numbered by that driver alone, and edits of one
        // account come from its one driver: its stored number is at least its last 2xx.
        for (n, (email, _)) in scene.accounts.iter().enumerate() {
            let last_ok = self
                .answers
                .iter()
                .filter(|a| a.probe == Probe::ProfileEdit && a.driver == n)
                .filter_map(|a| {
                    a.written
                        .as_deref()?
                        .strip_prefix("name ")?
                        .parse::<usize>()
                        .ok()
                })
                .max();
            let stored = db.strings(&format!(
                "SELECT COALESCE(display_name, '') AS v FROM users WHERE email = '{email}'"
            ));
            let stored = stored
                .first()
                .and_then(|s| s.strip_prefix("name ")?.parse::<usize>().ok());
            assert!(
                stored >= last_ok,
                "{email}: stored name {stored:?}, last answered 2xx {last_ok:?}"
            );
        }
    }

    fn report(&self, what: &str) {
        let during: Vec<&Answer> = self.during().collect();
        let slowest = during.iter().map(|a| a.took).max().unwrap_or_default();
        let refused = during
            .iter()
            .filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)
            .count();
        eprintln!(
            "{what}: {} answers in all; during the fault {} answers, {refused} of them 503, \
             the slowest in {:.0} ms; resumed after {:?}",
            self.answers.len(),
            during.len(),
            slowest.as_secs_f64() * 1000.0,
            self.resumed_after()
                .iter()
                .map(|(p, d)| format!("{p:?} {:.0} ms", d.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_stopped_postgresql_is_answered_503_at_once_and_the_fleet_resumes_when_it_is_back() {
    if !postgres_tests_on() {
        return; // said why, and fails in CI
    }
    let cluster = PgCluster::start();
    let scene = scene(TestDb::postgres_in(cluster.admin_url()));
    let run = under_load(&scene, || cluster.halt(), || cluster.resume());
    run.report("PostgreSQL stopped");
    run.check_every_answer(&scene.fleet);
    let during: Vec<&Answer> = run.during().collect();
    assert!(
        during.len() >= PROBES.len(),
        "too little load during the outage"
    );
    for a in &during {
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?} during the outage, sent {:?} after it began, in {:?}",
            a.probe,
            a.sent - run.fault_from,
            a.took
        );
        assert_eq!(a.code, "database_unavailable", "{:?}", a.probe);
        assert!(
            a.took <= Duration::from_secs(1),
            "{:?} took {:?} during the outage",
            a.probe,
            a.took
        );
    }
    for (service, (status, code, message)) in &run.ready {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{service}/ready");
        assert_eq!(code, "database_unavailable", "{service}/ready");
        assert!(
            message.contains("unreachable"),
            "{service}/ready: {message}"
        );
    }
    for (probe, after) in run.resumed_after() {
        assert!(
            after <= Duration::from_secs(5),
            "{probe:?} resumed after {after:?}"
        );
    }
    run.check_no_write_lost(&scene);
}

#[test]
fn a_sqlite_file_locked_by_another_process_is_answered_503_within_a_second() {
    let scene = scene(TestDb::sqlite());
    let path = scene
        .fleet
        .db()
        .url()
        .trim_start_matches("sqlite://")
        .to_owned();
    let holder = Mutex::new(diesel::SqliteConnection::establish(&path).unwrap());
    let hold = |sql: &str| holder.lock().unwrap().batch_execute(sql).unwrap();
    let run = under_load(
        &scene,
        || hold("PRAGMA busy_timeout = 5000; BEGIN EXCLUSIVE"),
        || hold("ROLLBACK"),
    );
    run.report("SQLite locked");
    run.check_every_answer(&scene.fleet);
    let during: Vec<&Answer> = run.during().collect();
    for a in during.iter().filter(|a| a.probe.writes()) {
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?} while locked",
            a.probe
        );
        assert_eq!(a.code, "database_locked", "{:?}", a.probe);
        assert!(
            a.took <= Duration::from_secs(1),
            "{:?} took {:?} while locked",
            a.probe,
            a.took
        );
    }
    // Reads go on beside the lock (WAL).
    assert!(
        during
            .iter()
            .any(|a| a.probe == Probe::ProfileRead && a.status == StatusCode::OK)
    );
    for (service, (status, code, message)) in &run.ready {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{service}/ready");
        assert_eq!(code, "database_locked", "{service}/ready");
        assert!(message.contains("write lock"), "{service}/ready: {message}");
    }
    for (probe, after) in run.resumed_after() {
        assert!(
            after <= Duration::from_secs(5),
            "{probe:?} resumed after {after:?}"
        );
    }
    run.check_no_write_lost(&scene);
}
