//! `scripts/doctor` on this machine's own fleet: a testkit fleet (the real binaries
//! behind the real nginx, on free ports), described to doctor through the environment
//! as `make run`'s is. Healthy, every line is `ok`; with an instance stopped, the
//! database gone, a bad key file or a full disk, doctor names that failure and exits 1.
//!
//! A full disk is simulated by its threshold (`FLOTILLA_DOCTOR_MIN_FREE_MB` above the
//! free space): filling a real file system needs a mount (root, or a namespace the
//! running fleet is not in), and the check compares the same `df` figures either way.

use std::path::PathBuf;
use std::process::Command;

use flotilla_testkit::{Fleet, SERVICES, bin_dir, on_both_databases, workspace_root};

/// What doctor is told about a fleet: the fleet's own variables, and where each
/// service listens, nginx's port and configuration, and the binaries. Taken while
/// every service runs (a stopped one has no address to ask the fleet for).
struct Doctor {
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Doctor {
    fn of(fleet: &Fleet) -> Doctor {
        let mut env: Vec<(String, String)> = fleet
            .command("flotilla-worker")
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        for (name, _) in SERVICES {
            env.push((
                format!("FLOTILLA_{}_LISTEN", name.to_uppercase()),
                fleet.service_addr(name).to_string(),
            ));
        }
        let port = fleet.origin().rsplit(':').next().unwrap().to_owned();
        env.push(("FLOTILLA_HTTP_PORT".into(), port));
        env.push((
            "FLOTILLA_DOCTOR_NGINX_CONF".into(),
            fleet.dir().join("nginx/nginx.conf").display().to_string(),
        ));
        env.push(("FLOTILLA_BIN_DIR".into(), bin_dir().display().to_string()));
        Doctor {
            env,
            dir: fleet.dir().to_owned(),
        }
    }

    /// Runs `scripts/doctor` with `extra` variables: its exit status and its lines.
    fn run(&self, extra: &[(&str, &str)]) -> (i32, String) {
        let output = Command::new(workspace_root().join("scripts/doctor"))
            .current_dir(&self.dir)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.trim().is_empty(),
            "doctor wrote to stderr:\n{stderr}\n{stdout}"
        );
        (output.status.code().unwrap_or(-1), stdout)
    }
}

/// The verdict lines whose check starts with `what`.
fn lines<'a>(out: &'a str, verdict: &str, what: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.starts_with(&format!("{verdict} ")))
        .filter(|l| l[verdict.len()..].trim_start().starts_with(what))
        .collect()
}

fn failures(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("FAIL ")).collect()
}

/// Every check a one-host fleet has, in doctor's order.
const CHECKS: &[&str] = &[
    "disk:",
    "nginx: the configuration test passes",
    "nginx: answers",
    "through nginx /signup:",
    "through nginx /login:",
    "through nginx /profile:",
    "through nginx /admin:",
    "certificate: FLOTILLA_PUBLIC_URL is http, nothing to expire",
    "instance signup",
    "instance login",
    "instance profile",
    "instance admin",
    "instance worker",
    "database:",
    "schema: current",
    "queue:",
    "dead jobs: none in the last 24 h",
    "pages:",
    "site: the last full build here was",
    "bus: the hub answers",
    "keys: 1 signing key(s)",
    "jwks: the same keys",
];

on_both_databases! {
    fn a_healthy_fleet_is_all_ok_and_a_full_disk_is_named(db: TestDb) {
        let db_url = db.url().to_owned();
        let fleet = Fleet::start(db);
        let doctor = Doctor::of(&fleet);
        let (status, out) = doctor.run(&[]);
        assert_eq!(status, 0, "{out}");
        let verdicts: Vec<&str> = out.lines().filter(|l| !l.starts_with("all ")).collect();
        let expected = CHECKS;
        assert_eq!(verdicts.len(), expected.len(), "{out}");
        for (line, what) in verdicts.iter().zip(expected) {
            assert!(line.starts_with(&format!("ok    {what}")), "expected ok {what:?}, got {line:?}\n{out}");
        }
        assert!(out.ends_with(&format!("all {} checks ok\n", expected.len())), "{out}");
        // Neither the database's password nor the bus secret is shown.
        if let Some(password) = db_url.split_once("://").and_then(|(_, r)| r.split_once('@')).and_then(|(u, _)| u.split_once(':')).map(|(_, p)| p) {
            assert!(!out.contains(password), "{out}");
        }
        let secret = std::fs::read_to_string(fleet.data_dir().join("bus.secret")).unwrap();
        assert!(!out.contains(secret.trim()), "{out}");

        // A full disk: more megabytes asked for than the file system has free.
        let (status, out) = doctor.run(&[("FLOTILLA_DOCTOR_MIN_FREE_MB", "999999999")]);
        assert_eq!(status, 1, "{out}");
        let failed = failures(&out);
        assert_eq!(failed.len(), 1, "{out}");
        assert!(failed[0].starts_with(&format!("FAIL  disk: {} has ", fleet.data_dir().display())), "{out}");
        assert!(failed[0].contains("under FLOTILLA_DOCTOR_MIN_FREE_MB=999999999 MB; hint: "), "{out}");
        assert!(out.ends_with(&format!("1 of {} checks FAILED\n", expected.len())), "{out}");
        // The site's status file gone (a site never built here): named.
        let status_file = fleet.data_dir().join("www.status.json");
        let kept = std::fs::read(&status_file).unwrap();
        std::fs::remove_file(&status_file).unwrap();
        let (status, out) = doctor.run(&[]);
        assert_eq!(status, 1, "{out}");
        let failed = failures(&out);
        assert_eq!(failed.len(), 1, "{out}");
        assert!(failed[0].starts_with("FAIL  site: no status file ("), "{out}");
        assert!(failed[0].contains("; hint: flotilla-pages build writes it"), "{out}");
        std::fs::write(&status_file, kept).unwrap();
        // A threshold that is not a number is refused, naming it.
        let output = Command::new(workspace_root().join("scripts/doctor"))
            .env_clear()
            .envs(doctor.env.iter().map(|(k, v)| (k, v)))
            .env("FLOTILLA_DOCTOR_MIN_FREE_MB", "lots")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&output.stderr).contains("FLOTILLA_DOCTOR_MIN_FREE_MB='lots'"));
    }

    fn a_stopped_instance_is_named(db: TestDb) {
        let mut fleet = Fleet::start(db);
        let doctor = Doctor::of(&fleet);
        let profile = fleet.service_addr("profile");
        fleet.stop_service("profile", libc::SIGTERM);
        let (status, out) = doctor.run(&[]);
        assert_eq!(status, 1, "{out}");
        let failed = failures(&out);
        assert_eq!(failed.len(), 2, "{out}");
        assert!(
            failed[0].starts_with("FAIL  through nginx /profile: health 502, ready 502: nginx reaches no profile instance; hint: "),
            "{out}"
        );
        assert!(
            failed[1].starts_with(&format!("FAIL  instance profile ({profile}): no answer (connection refused); hint: ")),
            "{out}"
        );
        for other in ["signup", "login", "admin", "worker"] {
            assert_eq!(lines(&out, "ok", &format!("instance {other} ")).len(), 1, "{out}");
        }
    }

    fn a_bad_key_file_is_named(db: TestDb) {
        use std::os::unix::fs::PermissionsExt;
        let fleet = Fleet::start(db);
        let doctor = Doctor::of(&fleet);
        let bad = fleet.data_dir().join("keys/20991231T000000000Z-garbage.pem");
        std::fs::write(&bad, "not a key at all\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (status, out) = doctor.run(&[]);
        assert_eq!(status, 1, "{out}");
        let failed = failures(&out);
        assert_eq!(failed.len(), 1, "{out}");
        assert!(
            failed[0].starts_with(&format!("FAIL  keys: {} is not usable: not a PEM private key", bad.display())),
            "{out}"
        );
        assert!(failed[0].contains("; hint: remove or replace the file it names"), "{out}");
        // Login keeps signing with the keys it has: the JWKS is unchanged and agrees.
        assert_eq!(lines(&out, "ok", "jwks: the same keys").len(), 1, "{out}");
        std::fs::remove_file(&bad).unwrap();
        let (status, out) = doctor.run(&[]);
        assert_eq!(status, 0, "{out}");
    }

    fn an_unreachable_database_is_named(db: TestDb) {
        let fleet = Fleet::start(db);
        let doctor = Doctor::of(&fleet);
        let (status, out) = doctor.run(&[]);
        assert_eq!(status, 0, "{out}");
        let name = if fleet.db.is_postgres() {
            // The database dropped under the running fleet (its connections ended).
            let url = fleet.db.url();
            let name = url.rsplit('/').next().unwrap().to_owned();
            let admin = std::env::var("FLOTILLA_TEST_POSTGRES_URL").unwrap();
            let mut conn = <diesel::PgConnection as diesel::Connection>::establish(&admin).unwrap();
            diesel::RunQueryDsl::execute(
                diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")),
                &mut conn,
            )
            .unwrap();
            name
        } else {
            // The SQLite file moved away, and a folder in its place, so that no
            // process makes a new empty database there meanwhile.
            let path = fleet.db.url().trim_start_matches("sqlite://").to_owned();
            std::fs::rename(&path, format!("{path}.moved")).unwrap();
            std::fs::create_dir(&path).unwrap();
            path
        };
        let (status, out) = doctor.run(&[]);
        assert_eq!(status, 1, "{out}");
        let failed = lines(&out, "FAIL", "database:");
        assert_eq!(failed.len(), 1, "{out}");
        assert!(failed[0].contains(&name), "names the database: {out}");
        assert!(failed[0].contains("; hint: is the database server running"), "{out}");
        // Without a database, neither the schema nor the queue can be read.
        assert!(lines(&out, "ok", "schema:").is_empty(), "{out}");
        assert!(lines(&out, "ok", "queue:").is_empty(), "{out}");
    }

    fn worker_status_reads_without_writing(db: TestDb) {
        let is_postgres = db.is_postgres();
        let fleet = Fleet::start(db);
        let status = fleet.run("flotilla-worker", &["status"]);
        let out = String::from_utf8_lossy(&status.stdout);
        assert!(status.status.success(), "{out}{}", String::from_utf8_lossy(&status.stderr));
        for line in ["schema=current", "jobs_due=0", "jobs_dead=0", "jobs_dead_24h=0", "jobs_oldest_due_secs=none"] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
        assert!(out.lines().any(|l| l.starts_with("pages_last_build_age_secs=")), "{out}");
        if !is_postgres {
            // A database that is not there is not made.
            let missing = fleet.dir().join("none/flotilla.db");
            let status = fleet
                .command("flotilla-worker")
                .arg("status")
                .env("DATABASE_URL", format!("sqlite://{}", missing.display()))
                .output()
                .unwrap();
            assert_eq!(status.status.code(), Some(1));
            assert!(String::from_utf8_lossy(&status.stderr).contains("does not exist"));
            assert!(!missing.exists() && !missing.parent().unwrap().exists());
        }
    }
}

#[test]
fn a_bad_command_line_is_refused_with_the_usage() {
    let doctor = workspace_root().join("scripts/doctor");
    for args in [&["a", "b"][..], &["--help"], &["/no/such/placement.toml"]] {
        let output = Command::new(&doctor).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("usage: scripts/doctor [PLACEMENT]")
                || stderr.contains("no such placement file"),
            "{stderr}"
        );
    }
}
