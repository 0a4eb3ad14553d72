//! Schema-driven fuzzing: schemathesis (a tool not written here, from PyPI; installed by
//! `scripts/ensure-schemathesis.sh`) reads each service's OpenAPI document and sends it
//! what the document allows and what it does not, through nginx (the worker, which nginx
//! does not serve, directly), signed in: a user's token for every service, an admin's
//! for the console; each twice, as an API client (JSON) and as a browser (pages). No
//! answer may be a 5xx, and each must have a status and a content type the operation
//! declares, a body that matches the declared schema, and the declared headers. Where
//! the document links operations (admin's lists to their pages and actions), the links
//! are followed too (the stateful phase).
//!
//! Bounded for `make test`: `FLOTILLA_FUZZ_EXAMPLES` cases per operation and phase
//! (default 25); `make fuzz` sets many more. The seed is `FLOTILLA_FUZZ_SEED`, else a
//! random one, printed so that a failure can be replayed. `FLOTILLA_FUZZ_CHECKS` replaces
//! the checks (`all`: every check schemathesis has, to explore).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use flotilla_testkit::{in_ci, workspace_root};
use serde_json::Value;

use super::admin::role_command;
use super::login::verified_account_with;
use super::*;

/// Admin last: its actions on real accounts may disable or delete the user the others
/// sign in as (never the admin itself: see fuzz_hooks.py).
const SERVICES: [&str; 5] = ["signup", "login", "profile", "worker", "admin"];
const HOOKS: &str = "shared/testkit/tests/fleet/fuzz_hooks.py";
const USER: &str = "fuzz-user@example.org";
const ADMIN: &str = "fuzz-admin@example.org";
/// In no example of any document: the examples phase posts those as they are, and with
/// the accounts' own password a password change or closing the account would succeed
/// and end the run's sign-ins.
const PASSWORD: &str = "fuzz-only secret 7c1e9a42";
/// Each service is fuzzed twice: as an API client (JSON) and as a browser (pages).
const CLIENTS: [(&str, &str); 2] = [
    ("api", "application/json"),
    ("browser", "text/html,application/xhtml+xml,*/*;q=0.8"),
];
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// The `schemathesis` program, installed when missing; `None` (the test skips) when it
/// cannot be, outside CI.
fn schemathesis() -> Option<PathBuf> {
    let script = workspace_root().join("scripts/ensure-schemathesis.sh");
    let output = Command::new(&script).output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let path = PathBuf::from(printed.trim());
    if output.status.success() && path.is_file() {
        return Some(path);
    }
    let why = format!(
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!in_ci(), "schemathesis could not be installed in CI: {why}");
    eprintln!("skipped: schemathesis could not be installed: {why}");
    None
}

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
        Err(_) => default,
    }
}

/// What one service's run tried, from schemathesis' JSON report of it.
#[derive(Debug)]
struct Tried {
    operations: u64,
    cases: u64,
    failures: u64,
    errors: u64,
}

/// `None` when schemathesis wrote none (it stopped before it ran).
fn tried(report: &Path) -> Option<Tried> {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).ok()?).ok()?;
    let count = |items: &Value| {
        items.as_array().map_or(0, |items| {
            items.iter().filter_map(|i| i["count"].as_u64()).sum()
        })
    };
    Some(Tried {
        operations: report["operations"]["tested"].as_u64().unwrap_or(0),
        cases: report["test_cases"]["generated"].as_u64().unwrap_or(0),
        failures: count(&report["failures"]),
        errors: count(&report["errors"]),
    })
}

/// One schemathesis run against one service's document.
struct Pass<'a> {
    schemathesis: &'a Path,
    fleet: &'a Fleet,
    checks: &'a str,
    examples: u64,
    seed: u64,
    admin_id: &'a str,
}

impl Pass<'_> {
    /// Runs it; what it tried, and its output when anything failed.
    fn run(&self, service: &str, client: &str, accept: &str) -> (Tried, Option<String>) {
        let fleet = self.fleet;
        // The worker is not behind nginx.
        let base = if service == "worker" {
            fleet.direct_url("worker", "")
        } else {
            fleet.origin()
        };
        let email = if service == "admin" { ADMIN } else { USER };
        let name = format!("fuzz-{service}-{client}");
        let report = fleet.dir().join(format!("{name}.json"));
        let output = Command::new(self.schemathesis)
            .current_dir(fleet.dir())
            .arg("run")
            .arg(format!("{base}/{service}/openapi.json"))
            .args(["--url", &base])
            .args(["--checks", self.checks])
            .args(["--max-examples", &self.examples.to_string()])
            .args(["--seed", &self.seed.to_string()])
            .args(["--header", &format!("Accept: {accept}")])
            .args(["--workers", "1"])
            .args(["--request-timeout", "30"])
            .args(["--generation-database", "none"])
            .args(["--report", "json"])
            .arg("--report-json-path")
            .arg(&report)
            .arg("--no-color")
            .env("SCHEMATHESIS_HOOKS", workspace_root().join(HOOKS))
            .env("FLOTILLA_FUZZ_ORIGIN", fleet.origin())
            .env("FLOTILLA_FUZZ_EMAIL", email)
            .env("FLOTILLA_FUZZ_PASSWORD", PASSWORD)
            .env("FLOTILLA_FUZZ_PROTECT", self.admin_id)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // Beside the report (FLOTILLA_KEEP_TEST_DIRS keeps both): warnings, links followed.
        std::fs::write(fleet.dir().join(format!("{name}.txt")), &printed).unwrap();
        let tried = tried(&report).unwrap_or(Tried {
            operations: 0,
            cases: 0,
            failures: 0,
            errors: 1,
        });
        let failed = !output.status.success() || tried.failures > 0 || tried.errors > 0;
        (tried, failed.then_some(printed))
    }
}

on_both_databases! {
    fn every_operation_answers_as_its_document_says_under_fuzzing(db: TestDb) {
        let Some(schemathesis) = schemathesis() else { return };
        let examples = setting("FLOTILLA_FUZZ_EXAMPLES", 25);
        let seed = setting("FLOTILLA_FUZZ_SEED", rand::random_range(0..1u64 << 32));
        let checks = std::env::var("FLOTILLA_FUZZ_CHECKS").unwrap_or_else(|_| CHECKS.to_owned());
        let backend = db.backend_name();
        // nginx's per-client budget for sign-ins and signups is out of the way in every
        // fleet (FLOTILLA_PROXY_AUTH_RATE, FLOTILLA_PROXY_AUTH_BURST: Fleet::start).
        let fleet = Fleet::builder(db)
            // Cheap hashes: thousands of signups and sign-ins.
            .env("FLOTILLA_ARGON2_MEMORY_KIB", "64")
            .env("FLOTILLA_ARGON2_ITERATIONS", "1")
            // Wrong passwords by the thousand (confirmations, password changes) for
            // the signed-in accounts: never a delay that would fail their sign-ins.
            .env("FLOTILLA_LOGIN_MAX_FAILURES", "1000")
            .env("FLOTILLA_LOGIN_FAILURE_WINDOW_SECS", "10")
            .env("FLOTILLA_LOGIN_MAX_DELAY_SECS", "1")
            .start();
        verified_account_with(&fleet, USER, PASSWORD);
        verified_account_with(&fleet, ADMIN, PASSWORD);
        let (promoted, printed) = role_command(&fleet, "promote", ADMIN);
        assert!(promoted, "{printed}");
        let admin_id = fleet
            .db
            .strings(&format!("SELECT id AS v FROM users WHERE email = '{ADMIN}'"))
            .remove(0);
        eprintln!(
            "schemathesis on {backend}: {examples} examples per operation, seed {seed} \
             (FLOTILLA_FUZZ_EXAMPLES, FLOTILLA_FUZZ_SEED)"
        );
        let pass = Pass {
            schemathesis: &schemathesis,
            fleet: &fleet,
            checks: &checks,
            examples,
            seed,
            admin_id: &admin_id,
        };
        let began = Instant::now();
        let (mut operations, mut cases, mut failed) = (0, 0, Vec::new());
        for service in SERVICES {
            for (client, accept) in CLIENTS {
                let started = Instant::now();
                let (tried, failure) = pass.run(service, client, accept);
                eprintln!(
                    "schemathesis {service} as {client} on {backend}: {} operations, {} test \
                     cases, {} failures, {} errors, in {:.1} s",
                    tried.operations,
                    tried.cases,
                    tried.failures,
                    tried.errors,
                    started.elapsed().as_secs_f64()
                );
                if let Some(printed) = failure {
                    eprintln!("--- schemathesis {service} as {client}:\n{printed}");
                    failed.push(format!("{service} as {client}"));
                }
                assert!(tried.cases > 0, "schemathesis tried nothing on {service}");
                operations += tried.operations;
                cases += tried.cases;
            }
        }
        eprintln!(
            "schemathesis on {backend}: {} operations, each as {} clients, {cases} test cases \
             in all, in {:.1} s",
            operations / CLIENTS.len() as u64,
            CLIENTS.len(),
            began.elapsed().as_secs_f64()
        );
        // The console acted on real accounts (through links), never on the run's admin.
        let admin = fleet.db.strings(&format!(
            "SELECT role || '|' || CASE WHEN disabled_at IS NULL AND deleted_at IS NULL \
             THEN 'open' ELSE 'shut' END AS v FROM users WHERE id = '{admin_id}'"
        ));
        assert_eq!(admin, ["admin|open"], "the run's admin was changed");
        assert!(
            failed.is_empty(),
            "schemathesis found failures: {failed:?} (seed {seed}: FLOTILLA_FUZZ_SEED={seed} \
             replays them)"
        );
    }
}
