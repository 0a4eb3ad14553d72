//! The binaries themselves: start-up checks, the command line, signals.

use std::process::Command;
use std::time::Duration;

use flotilla_testkit::{Proc, TempDir, binary};

use super::*;

/// A service command on `db`, isolated from the caller's environment.
fn command(name: &str, db: &TestDb, dir: &TempDir) -> Command {
    let mut command = Command::new(binary(name));
    command
        .current_dir(dir.path())
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("FLOTILLA_DATA_DIR", dir.path().join("var"))
        .env("FLOTILLA_LOG_STYLE", "never")
        .env("FLOTILLA_HTTP_WORKERS", "1")
        .env("FLOTILLA_AUTO_MIGRATE", "false");
    for service in ["SIGNUP", "LOGIN", "PROFILE", "ADMIN", "WORKER"] {
        command.env(format!("FLOTILLA_{service}_LISTEN"), "127.0.0.1:0");
    }
    for socket in ["WAKE", "EVENTS_IN", "EVENTS_OUT"] {
        let port = flotilla_testkit::free_port();
        command.env(
            format!("FLOTILLA_BUS_{socket}"),
            format!("tcp://127.0.0.1:{port}"),
        );
    }
    command
}

fn stderr_of(command: &mut Command) -> (Option<i32>, String) {
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

on_both_databases! {
    fn a_service_refuses_a_schema_older_than_itself_and_says_how_to_fix_it(db: TestDb) {
        let dir = TempDir::new("bin");
        let (code, err) = stderr_of(&mut command("flotilla-profile", &db, &dir));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("older than this binary"), "{err}");
        assert!(err.contains("run `flotilla-profile migrate`"), "{err}");

        // Any binary can migrate; twice is harmless.
        for _ in 0..2 {
            let (code, err) = stderr_of(command("flotilla-pages", &db, &dir).arg("migrate"));
            assert_eq!(code, Some(0), "{err}");
        }
        let mut profile = Proc::spawn("profile", command("flotilla-profile", &db, &dir));
        profile.wait_listening(Duration::from_secs(20));
    }

    fn a_service_serves_on_a_schema_a_newer_release_expanded_not_one_it_contracted(db: TestDb) {
        let dir = TempDir::new("bin");
        let (code, err) = stderr_of(command("flotilla-signup", &db, &dir).arg("migrate"));
        assert_eq!(code, Some(0), "{err}");
        next_release_expands(&db);
        let mut signup = Proc::spawn("signup", command("flotilla-signup", &db, &dir));
        let addr = signup.wait_listening(Duration::from_secs(20));
        let body = ready_answer(&format!("http://{addr}/signup/ready"));
        assert_eq!(body["schema"], "newer, compatible");
        assert!(signup.logs().contains("29991231000000"), "{}", signup.logs());
        signup.signal(libc::SIGTERM);
        signup.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
        // The older release's migrate leaves the newer schema alone.
        let (code, err) = stderr_of(command("flotilla-signup", &db, &dir).arg("migrate"));
        assert_eq!(code, Some(0), "{err}");

        // The release after: a contract migration says binaries must know it.
        db.execute("INSERT INTO schema_compat (id, oldest_reader) VALUES (1, '29991231000000')");
        let (code, err) = stderr_of(&mut command("flotilla-signup", &db, &dir));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("newer than this binary"), "{err}");
        assert!(err.contains("29991231000000"), "{err}");
        let (code, err) = stderr_of(command("flotilla-signup", &db, &dir).arg("migrate"));
        assert_eq!(code, Some(1), "migrate refuses too: {err}");
    }

    fn auto_migrate_brings_a_fresh_database_up_at_start(db: TestDb) {
        let dir = TempDir::new("bin");
        let mut cmd = command("flotilla-login", &db, &dir);
        cmd.env("FLOTILLA_AUTO_MIGRATE", "true");
        let mut login = Proc::spawn("login", cmd);
        login.wait_listening(Duration::from_secs(20));
        assert!(login.logs().contains("applied migrations 20261122000001"), "{}", login.logs());
    }

    fn sigterm_stops_a_service_cleanly(db: TestDb) {
        let dir = TempDir::new("bin");
        let (code, err) = stderr_of(command("flotilla-worker", &db, &dir).arg("migrate"));
        assert_eq!(code, Some(0), "{err}");
        for name in ["signup", "worker"] {
            let mut proc = Proc::spawn(name, command(&format!("flotilla-{name}"), &db, &dir));
            let addr = proc.wait_listening(Duration::from_secs(20));
            let health = reqwest::blocking::get(format!("http://{addr}/{name}/health")).unwrap();
            assert_eq!(health.status(), reqwest::StatusCode::OK);
            proc.signal(libc::SIGTERM);
            let status = proc.wait_exit(Duration::from_secs(10)).expect("exits after SIGTERM");
            assert!(status.success(), "{name}: {status}\n{}", proc.logs());
            assert!(proc.logs().contains(&format!("flotilla-{name} stopped")), "{}", proc.logs());
        }
    }
}

/// The body of a `/ready` once it answers 200 (a service just started is catching up).
pub(super) fn ready_answer(url: &str) -> serde_json::Value {
    let mut last = String::new();
    let ready = flotilla_testkit::wait_until(Duration::from_secs(20), || {
        match reqwest::blocking::get(url) {
            Ok(r) if r.status() == reqwest::StatusCode::OK => true,
            Ok(r) => {
                last = r.text().unwrap_or_default();
                false
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    assert!(ready, "{url} never answered 200: {last}");
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

/// What the next release's migration may do to a database the release under test
/// serves on during a rolling deploy: expand only (docs/operations.md, "Upgrades") — a new
/// table, a new nullable column and a new column with a default, and its version.
pub(super) fn next_release_expands(db: &TestDb) {
    db.execute("CREATE TABLE next_release_notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)");
    db.execute("ALTER TABLE users ADD COLUMN next_release_nickname TEXT");
    db.execute("ALTER TABLE sessions ADD COLUMN next_release_flags INTEGER NOT NULL DEFAULT 0");
    db.execute("CREATE INDEX next_release_users_nickname ON users (next_release_nickname)");
    db.execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')");
}

#[test]
fn a_bad_variable_stops_the_service_and_is_named() {
    let db = TestDb::sqlite();
    let dir = TempDir::new("bin");
    let (code, err) =
        stderr_of(command("flotilla-signup", &db, &dir).env("FLOTILLA_MAX_IN_FLIGHT", "lots"));
    assert_eq!(code, Some(78), "EX_CONFIG: {err}");
    assert!(
        err.contains("FLOTILLA_MAX_IN_FLIGHT=\"lots\" is not valid"),
        "{err}"
    );

    let (code, err) =
        stderr_of(command("flotilla-login", &db, &dir).env("DATABASE_URL", "mysql://nope"));
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("DATABASE_URL"), "{err}");

    // A variable only one service reads is a configuration error too (systemd does not
    // restart 78), whichever service and whether read at start or by its background task.
    for (binary, variable) in [
        ("flotilla-signup", "FLOTILLA_VERIFY_TOKEN_HOURS"),
        ("flotilla-login", "FLOTILLA_LOGIN_MAX_FAILURES"),
        ("flotilla-profile", "FLOTILLA_EMAIL_CHANGE_TOKEN_HOURS"),
        ("flotilla-worker", "FLOTILLA_WORKER_BATCH"),
    ] {
        let (code, err) = stderr_of(
            command(binary, &db, &dir)
                .env("FLOTILLA_AUTO_MIGRATE", "true")
                .env(variable, "lots"),
        );
        assert_eq!(code, Some(78), "{binary}: {err}");
        assert!(
            err.contains(&format!("{variable}=\"lots\" is not valid")),
            "{binary}: {err}"
        );
    }
}

#[test]
fn an_unreachable_database_is_reported_at_once() {
    let dir = TempDir::new("bin");
    let db = TestDb::sqlite();
    let port = flotilla_testkit::free_port();
    let started = std::time::Instant::now();
    let (code, err) = stderr_of(command("flotilla-signup", &db, &dir).env(
        "DATABASE_URL",
        format!("postgres://flotilla:secret@127.0.0.1:{port}/flotilla"),
    ));
    assert_eq!(code, Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("cannot open the database postgres://flotilla:***@127.0.0.1"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("secret"), "no password in logs: {err}");
}

#[test]
fn the_command_line_explains_itself() {
    let db = TestDb::sqlite();
    let dir = TempDir::new("bin");
    let output = command("flotilla-admin", &db, &dir)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("FLOTILLA_ADMIN_LISTEN (default 127.0.0.1:7104)"),
        "{help}"
    );
    let (code, err) = stderr_of(command("flotilla-admin", &db, &dir).arg("frobnicate"));
    assert_eq!(code, Some(64));
    assert!(err.contains("unknown command \"frobnicate\""), "{err}");
    let (code, err) = stderr_of(command("flotilla-pages", &db, &dir).arg("frobnicate"));
    assert_eq!(code, Some(64), "{err}");
}
