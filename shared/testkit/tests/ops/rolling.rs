//! Restarts that lose no request: two instances of profile behind one nginx upstream,
//! a bounded wrk load through nginx (a signed-in `GET /profile/me`, which reads the
//! database), and the instances restarted one after the other as a deploy does
//! (SIGTERM, drained, started again, ready, then the next). Every request is answered
//! 2xx: nginx tries an idempotent request on the other instance when its first one
//! refuses the connection or closes it, and a stopping instance finishes what it has.
//!
//! A POST is not retried once nginx has sent it (nginx's rule for non-idempotent
//! methods): the same restarts under a load of profile edits are measured too, and
//! only what nginx promises for them is asserted (an answer for each, a 502 for one
//! that an instance dropped).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use flotilla_testkit::{Proc, Restart, link_param, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::*;

const PASSWORD: &str = "correct horse battery staple";
/// wrk's load: a few connections on loopback for a bounded time, long enough for two
/// restarts of a debug build.
const THREADS: u32 = 2;
const CONNECTIONS: u32 = 4;
const SECONDS: u32 = 14;

on_both_databases! {
    fn a_rolling_restart_loses_no_idempotent_request(db: TestDb) {
        let wrk = flotilla_testkit::wrk();
        let mut fleet = Fleet::builder(db).instances("profile", 2).start();
        let access = signed_in(&fleet, "ada@example.org");

        let run = rolling_restart(&mut fleet, &wrk, &access, Load::Get);
        run.report("GET /profile/me");
        assert!(run.requests > 0, "no request was answered: {run:?}");
        assert_eq!(
            run.non_2xx(),
            0,
            "answers other than 2xx during the rolling restart: {:?}\n{}",
            run.statuses,
            fleet.all_logs()
        );
        assert_eq!(
            run.socket_errors(),
            0,
            "socket errors during the rolling restart: {run:?}\n{}",
            fleet.all_logs()
        );
    }

    fn a_rolling_restart_under_posts_answers_every_one(db: TestDb) {
        let wrk = flotilla_testkit::wrk();
        let mut fleet = Fleet::builder(db).instances("profile", 2).start();
        let access = signed_in(&fleet, "ada@example.org");

        let run = rolling_restart(&mut fleet, &wrk, &access, Load::Post);
        run.report("POST /profile/me");
        // What nginx promises for a request it does not retry: an answer all the same
        // (502 when the instance dropped it after nginx had sent it), never a socket
        // error for the client; and the edits took effect.
        assert!(run.requests > 0, "no request was answered: {run:?}");
        assert_eq!(run.socket_errors(), 0, "socket errors: {run:?}");
        let unexpected: Vec<_> = run
            .statuses
            .keys()
            .filter(|s| !(200..300).contains(*s) && **s != 502)
            .collect();
        assert!(
            unexpected.is_empty(),
            "answers other than 2xx and nginx's 502: {:?}\n{}",
            run.statuses,
            fleet.all_logs()
        );
        let (status, me) = profile_me(&fleet, &access);
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["display_name"], "Ada Lovelace", "{me}");
    }
}

#[derive(Debug, Clone, Copy)]
enum Load {
    /// `GET /profile/me`: idempotent, retried by nginx on the other instance.
    Get,
    /// `POST /profile/me` (an edit): not retried once sent.
    Post,
}

impl Load {
    fn method(self) -> &'static str {
        match self {
            Load::Get => "GET",
            Load::Post => "POST",
        }
    }
}

/// What wrk counted, and how the restarts went.
#[derive(Debug)]
struct Run {
    requests: u64,
    seconds: f64,
    /// wrk's latency: 99th percentile and most (a request wrk counts as a timeout, over
    /// 2 s, is not in them).
    p99: Duration,
    max: Duration,
    /// Socket errors by kind: connect, read, write, timeout.
    errors: BTreeMap<&'static str, u64>,
    statuses: BTreeMap<u16, u64>,
    restarts: Vec<Restart>,
    /// Requests each instance answered on the load's route after its restart.
    after_restart: Vec<u64>,
    /// nginx's error lines about an instance, by what happened: the attempts it moved
    /// to the other instance (or, for a POST already sent, answered 502).
    upstream_errors: BTreeMap<&'static str, usize>,
}

impl Run {
    fn non_2xx(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    fn socket_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    fn report(&self, what: &str) {
        eprintln!(
            "rolling restart under {what} (wrk -t{THREADS} -c{CONNECTIONS} -d{SECONDS}s through \
             nginx, 2 instances): {} requests in {:.1} s = {:.0} req/s, p99 {:?}, max {:?}; \
             statuses {:?}; non-2xx {}; socket errors {} {:?}",
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds,
            self.p99,
            self.max,
            self.statuses,
            self.non_2xx(),
            self.socket_errors(),
            self.errors,
        );
        eprintln!(
            "  nginx's failed attempts at an instance: {:?}",
            self.upstream_errors
        );
        for (index, (restart, after)) in self.restarts.iter().zip(&self.after_restart).enumerate() {
            eprintln!(
                "  instance {index}: drained and exited {:?} after SIGTERM, ready {:?} after \
                 it; {after} requests answered since",
                restart.stopped_after, restart.ready_after
            );
        }
    }
}

/// Runs wrk through nginx and, once the load reaches both instances, restarts
/// instance 0, then (once ready) instance 1, while the load goes on.
fn rolling_restart(fleet: &mut Fleet, wrk: &Path, access: &str, load: Load) -> Run {
    let route = "/profile/me";
    let mut command = Command::new(wrk);
    command
        .args([
            format!("-t{THREADS}"),
            format!("-c{CONNECTIONS}"),
            format!("-d{SECONDS}s"),
        ])
        .arg("-s")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ops/rolling.lua"))
        .args(["-H", &format!("Authorization: Bearer {access}")])
        .args(["-H", "Content-Type: application/json"])
        .arg(fleet.url(route))
        .args(["--", load.method()]);
    if let Load::Post = load {
        command.arg(json!({"display_name": "Ada Lovelace"}).to_string());
    }
    let mut wrk = Proc::spawn("wrk", command);

    // The load reaches both instances before anything restarts.
    let before: Vec<u64> = (0..2).map(|i| answered(fleet, i, load)).collect();
    let flowing = wait_until(Duration::from_secs(10), || {
        (0..2).all(|i| answered(fleet, i, load) >= before[i] + 20)
    });
    assert!(
        flowing,
        "the load does not reach both instances:\n{}",
        fleet.all_logs()
    );

    let mut restarts = Vec::new();
    for index in 0..2 {
        restarts.push(fleet.restart_instance("profile", index));
        eprintln!("profile[{index}] restarted: {:?}", restarts[index]);
    }
    // The load went on after both restarts, else the test proved nothing.
    assert!(
        wrk.try_exit().is_none(),
        "wrk ended before both instances were restarted: raise SECONDS"
    );
    let exit = wrk.wait_exit(Duration::from_secs(u64::from(SECONDS) + 30));
    let output = wrk.logs();
    assert!(exit.is_some_and(|e| e.success()), "wrk: {exit:?}\n{output}");
    let mut run = parse(&output);
    run.restarts = restarts;
    // New processes: every request their metrics count came after their restart.
    run.after_restart = (0..2).map(|i| answered(fleet, i, load)).collect();
    run.upstream_errors = upstream_errors(&fleet.nginx().logs());
    // Else the restarts fell between requests and the test proved nothing.
    assert!(
        run.upstream_errors.values().sum::<usize>() > 0,
        "the load never met a stopping instance: {run:?}"
    );
    run
}

/// The `flotilla-wrk …` line of rolling.lua.
fn parse(output: &str) -> Run {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("flotilla-wrk "))
        .unwrap_or_else(|| panic!("no summary from rolling.lua in wrk's output:\n{output}"));
    let fields: BTreeMap<&str, u64> = line
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k, v.parse().unwrap())
        })
        .collect();
    let statuses = fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("status_")?.parse().ok()?, *v)))
        .collect();
    let errors = ["connect", "read", "write", "timeout"]
        .map(|kind| (kind, fields[kind]))
        .into();
    Run {
        requests: fields["requests"],
        seconds: fields["duration_us"] as f64 / 1e6,
        p99: Duration::from_micros(fields["p99_us"]),
        max: Duration::from_micros(fields["max_us"]),
        errors,
        statuses,
        restarts: Vec::new(),
        after_restart: Vec::new(),
        upstream_errors: BTreeMap::new(),
    }
}

/// Counts nginx's error lines about upstream connections, by kind.
fn upstream_errors(log: &str) -> BTreeMap<&'static str, usize> {
    let kinds = [
        ("refused", "(111: Connection refused)"),
        ("reset", "(104: Connection reset by peer)"),
        ("closed", "upstream prematurely closed connection"),
        ("timed out", "upstream timed out"),
        ("no live upstreams", "no live upstreams"),
    ];
    let mut counts = BTreeMap::new();
    for line in log.lines() {
        if let Some((kind, _)) = kinds.iter().find(|(_, text)| line.contains(text)) {
            *counts.entry(*kind).or_insert(0) += 1;
        }
    }
    counts
}

/// Requests instance `index` of profile has answered on the load's route since it
/// started, from its own `/metrics`.
fn answered(fleet: &Fleet, index: usize, load: Load) -> u64 {
    let url = format!(
        "http://{}/profile/metrics",
        fleet.instance_addr("profile", index)
    );
    let Ok(text) = fleet.client().get(url).send().and_then(|r| r.text()) else {
        return 0;
    };
    let series = format!("method=\"{}\",route=\"/profile/me\"", load.method());
    text.lines()
        .filter(|l| l.starts_with("flotilla_http_requests_total{") && l.contains(&series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Signs up `email`, follows the verification link and signs in: an access token.
fn signed_in(fleet: &Fleet, email: &str) -> String {
    let signup = fleet
        .request(reqwest::Method::POST, "/signup")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(signup.status(), StatusCode::ACCEPTED);
    let mails = fleet.wait_for_mails(email, 1);
    let token = link_param(&mails[0], "token").unwrap();
    let verified = fleet
        .request(reqwest::Method::POST, "/signup/verify")
        .json(&json!({"token": token}))
        .send()
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    let login = fleet
        .request(reqwest::Method::POST, "/login")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let body: Value = login.json().unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    // Both instances know the token before the load starts.
    for index in 0..2 {
        let direct = format!(
            "http://{}/profile/me",
            fleet.instance_addr("profile", index)
        );
        let me = fleet
            .client()
            .get(direct)
            .bearer_auth(&access)
            .send()
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK, "profile[{index}]");
    }
    access
}

fn profile_me(fleet: &Fleet, access: &str) -> (StatusCode, Value) {
    let response = fleet
        .request(reqwest::Method::GET, "/profile/me")
        .bearer_auth(access)
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// What a stopping instance does, seen from outside (nginx's side): on SIGTERM it
/// stops listening at once (a connect is refused, so nginx tries the next instance)
/// and closes its idle keep-alive connections at once, while a request in flight
/// finishes, answered with `Connection: close`; a `/ready` in flight answers 503
/// `draining`; and the process exits successfully as soon as nothing is in flight.
/// PostgreSQL only: a lock the test holds on the migrations table keeps `/ready` in
/// flight (SQLite's readers do not wait for a writer).
#[test]
fn sigterm_stops_listening_and_closes_idle_connections_at_once_and_finishes_the_rest() {
    use flotilla_db::diesel::{Connection as _, PgConnection, connection::SimpleConnection as _};
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    let Some(db) = TestDb::postgres() else { return };
    let mut fleet = Fleet::start(db);
    let addr = fleet.service_addr("profile");

    // An idle keep-alive connection, as nginx keeps them: one request answered on it.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET /profile/health HTTP/1.1\r\nHost: flotilla\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"status\":\"ok\"") {
        let n = idle.read(&mut chunk).unwrap();
        assert!(n > 0, "health closed the connection: {answer:?}");
        answer.extend_from_slice(&chunk[..n]);
    }

    // A /ready held in flight: it waits for the migrations table.
    let mut holder = PgConnection::establish(fleet.db.url()).unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE __diesel_schema_migrations IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let client = fleet.client().clone();
    let ready_url = format!("http://{addr}/profile/ready");
    let held = std::thread::spawn(move || {
        let response = client.get(ready_url).send().unwrap();
        let connection = response.headers().get("connection").cloned();
        (
            response.status(),
            connection,
            response.json::<Value>().unwrap(),
        )
    });
    let waiting = wait_until(Duration::from_secs(10), || {
        fleet
            .db
            .strings("SELECT count(*)::text AS v FROM pg_locks WHERE NOT granted")[0]
            != "0"
    });
    assert!(waiting, "/ready does not wait for the lock");

    let began = std::time::Instant::now();
    fleet.service("profile").signal(libc::SIGTERM);
    let draining = wait_until(Duration::from_secs(5), || {
        fleet
            .service("profile")
            .logs()
            .contains("SIGTERM: draining")
    });
    assert!(draining, "{}", fleet.service("profile").logs());
    let refused = wait_until(Duration::from_secs(1), || TcpStream::connect(addr).is_err());
    assert!(refused, "still accepting connections after SIGTERM");
    let closed = match idle.read(&mut chunk) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the idle keep-alive connection is still open");
    assert!(
        !held.is_finished(),
        "the request in flight did not wait for the lock"
    );
    eprintln!(
        "SIGTERM: refusing connections and idle connection closed within {:?}",
        began.elapsed()
    );

    holder.batch_execute("COMMIT").unwrap();
    let (status, connection, body) = held.join().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "draining", "{body}");
    assert_eq!(
        connection.as_ref().and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let exited = fleet.stop_instance("profile", 0, libc::SIGTERM);
    assert!(exited.success(), "{exited}");
    // Well before FLOTILLA_SHUTDOWN_TIMEOUT_SECS (10 s): nothing was left in flight.
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    eprintln!("SIGTERM: exited {:?} after it", began.elapsed());
}
