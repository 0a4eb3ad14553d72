//! The console's overview, jobs and fleet pages through nginx: counts that match the
//! database, the sign-in chart, a dead job retried and done, the fleet naming a
//! stopped service, the page generator's last build, and who gets in.

use std::time::{Duration, Instant};

use flotilla_contracts::{Job, Mail, Message};
use flotilla_testkit::wait_until;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::admin::{admin_account, admin_call, admin_send};
use super::login::{login, sign_in, verified_account};
use super::*;

/// Adds `job` as a producer would, then parks it as dead; returns its id.
pub(super) fn dead_job(db: &TestDb, job: Job, key: &str) -> String {
    let url = flotilla_db::DatabaseUrl::parse(db.url()).unwrap();
    let mut conn = flotilla_db::connect(&flotilla_db::PoolConfig {
        url,
        max_size: 1,
        timeout: Duration::from_secs(5),
        busy_timeout: Duration::from_secs(5),
    })
    .unwrap()
    .get()
    .unwrap();
    let mut new = flotilla_jobs::NewJob::new(job, key);
    new.run_after += chrono::TimeDelta::days(365);
    assert!(flotilla_jobs::enqueue(&mut conn, &new).unwrap());
    db.execute(&format!(
        "UPDATE jobs SET attempts = 8, dead_at = created_at, last_error = 'mailbox full' \
         WHERE idempotency_key = '{key}'"
    ));
    db.strings(&format!(
        "SELECT CAST(id AS TEXT) AS v FROM jobs WHERE idempotency_key = '{key}'"
    ))
    .remove(0)
}

fn count(fleet: &Fleet, sql: &str) -> i64 {
    fleet
        .db
        .strings(&format!("SELECT CAST(({sql}) AS TEXT) AS v"))[0]
        .parse()
        .unwrap()
}

const ROUTES: [(&str, &str); 5] = [
    ("GET", "/admin"),
    ("GET", "/admin/jobs"),
    ("GET", "/admin/jobs?state=dead&kind=email"),
    ("GET", "/admin/fleet"),
    ("POST", "/admin/jobs/1/retry"),
];

on_both_databases! {
    fn the_overview_counts_what_the_database_holds(db: TestDb) {
        let fleet = Fleet::start(db);
        let root = admin_account(&fleet, "root@example.org");
        verified_account(&fleet, "ada@example.org");
        verified_account(&fleet, "bob@example.org");
        let (bob, _) = sign_in(&fleet, "bob@example.org");
        assert_eq!(login(&fleet, "ada@example.org", "not the password").0, StatusCode::UNAUTHORIZED);
        fleet.db.execute("UPDATE users SET disabled_at = created_at WHERE email = 'ada@example.org'");
        // Not verified: signed up, no link followed.
        let signed_up = fleet.request(Method::POST, "/signup")
            .json(&serde_json::json!({"email": "eve@example.org", "password": super::login::PASSWORD}))
            .send().unwrap();
        assert_eq!(signed_up.status(), StatusCode::ACCEPTED);

        let (status, overview) = admin_call(&fleet, Method::GET, "/admin", &root, None);
        assert_eq!(status, StatusCode::OK, "{overview}");
        let accounts = &overview["accounts"];
        let open = "SELECT COUNT(*) FROM users WHERE deleted_at IS NULL";
        assert_eq!(accounts["total"], count(&fleet, open), "{overview}");
        assert_eq!(accounts["total"], 4);
        assert_eq!(accounts["verified"], count(&fleet, &format!("{open} AND email_verified_at IS NOT NULL")));
        assert_eq!(accounts["verified"], 3);
        assert_eq!(accounts["disabled"], 1);
        assert_eq!(accounts["new_7_days"], 4);
        assert_eq!(accounts["closed"], 0);
        let days = overview["sign_ins"].as_array().unwrap();
        assert_eq!(days.len(), 30);
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        assert_eq!(days[29]["day"], today.as_str());
        assert_eq!(days[29]["sign_ins"], count(&fleet, "SELECT COUNT(*) FROM auth_events WHERE kind = 'login.success'"));
        assert_eq!(days[29]["sign_ins"], 2, "root and bob");
        assert_eq!(days[29]["failed"], 1);
        assert!(days[..29].iter().all(|d| d["sign_ins"] == 0 && d["failed"] == 0), "{days:?}");
        let dead = count(&fleet, "SELECT COUNT(*) FROM jobs WHERE dead_at IS NOT NULL");
        assert_eq!(overview["jobs"]["dead"], dead);
        assert_eq!(overview["fleet"]["services"].as_array().unwrap().len(), 5);

        // The page: the chart drawn on the server, one group of bars per day, with
        // its text alternative; no inline style anywhere.
        let page = fleet.client().get(fleet.url("/admin")).bearer_auth(&root)
            .header("Accept", "text/html").send().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().unwrap();
        assert_eq!(page.matches("<svg").count(), 1, "{page}");
        assert_eq!(page.matches("</svg>").count(), 1);
        assert_eq!(page.matches("<g class=\"day\">").count(), 30, "{page}");
        assert_eq!(page.matches("<rect class=\"bar-ok\"").count(), 30);
        assert!(page.contains("<title id=\"chart-title\">"));
        assert!(page.contains(&format!("<title>{today}: 2 sign-ins, 1 failed</title>")), "{page}");
        assert!(page.contains("<desc id=\"chart-desc\">2 sign-ins and 1 failed sign-ins"), "{page}");
        assert!(!page.contains("style="), "the CSP allows no inline style");
        assert!(page.contains("class=\"stat\""));

        // Who gets in: nobody without a token, no one without the role.
        for (method, path) in ROUTES {
            let method: Method = method.parse().unwrap();
            let anonymous = fleet.request(method.clone(), path).send().unwrap();
            assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            let user = admin_send(&fleet, method.clone(), path, &bob, None);
            assert_eq!(user.status(), StatusCode::FORBIDDEN, "{method} {path}");
        }
        // Filters: a state or kind this release does not know is named in a 422.
        for (query, field) in [("state=zombie", "state"), ("kind=fax", "kind"), ("state=dead&kind=Email", "kind")] {
            let (status, body) = admin_call(&fleet, Method::GET, &format!("/admin/jobs?{query}"), &root, None);
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
            assert!(body["fields"][field].as_str().unwrap().starts_with("must be one of"), "{body}");
        }
    }

    fn a_dead_job_is_retried_and_done(db: TestDb) {
        let fleet = Fleet::start(db);
        let root = admin_account(&fleet, "root@example.org");
        let noop = dead_job(&fleet.db, Job::Noop, "test:noop");
        // A mail parked dead: its link's token was erased then.
        let reset = dead_job(&fleet.db, Job::Mail(Mail {
            to: "ada@example.org".into(),
            message: Message::PasswordReset {
                link: "http://x/login/reset?token=erased".into(),
                valid_minutes: 60,
                client_addr: None,
            },
        }), "test:reset");

        let (status, jobs) = admin_call(&fleet, Method::GET, "/admin/jobs", &root, None);
        assert_eq!(status, StatusCode::OK, "{jobs}");
        assert_eq!(jobs["state"], "dead");
        assert_eq!(jobs["counts"]["dead"], 2, "{jobs}");
        let listed: Vec<String> = jobs["jobs"].as_array().unwrap().iter().map(|j| j["id"].to_string()).collect();
        assert_eq!(listed, [reset.clone(), noop.clone()], "newest first");
        let shown = jobs.to_string();
        assert!(shown.contains("mailbox full"));
        assert!(!shown.contains("payload") && !shown.contains("login/reset"), "no payload: {shown}");
        let (_, mails) = admin_call(&fleet, Method::GET, "/admin/jobs?kind=email", &root, None);
        assert_eq!(mails["jobs"].as_array().unwrap().len(), 1);
        assert_eq!(mails["jobs"][0]["recipient"], "ada@example.org");

        // The mail whose link is gone stays dead: it would not work.
        let (status, body) = admin_call(&fleet, Method::POST, &format!("/admin/jobs/{reset}/retry"), &root, None);
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("link_erased")), "{body}");
        assert_eq!(admin_call(&fleet, Method::POST, "/admin/jobs/999999/retry", &root, None).0, StatusCode::NOT_FOUND);
        assert_eq!(admin_call(&fleet, Method::POST, "/admin/jobs/nope/retry", &root, None).0, StatusCode::NOT_FOUND);

        let (status, body) = admin_call(&fleet, Method::POST, &format!("/admin/jobs/{noop}/retry"), &root, None);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!((body["kind"].as_str(), body["state"].as_str()), (Some("noop"), Some("queued")));
        let done = wait_until(Duration::from_secs(10), || {
            !fleet.db.strings(&format!("SELECT CAST(id AS TEXT) AS v FROM jobs WHERE id = {noop} AND done_at IS NOT NULL")).is_empty()
        });
        assert!(done, "the worker did not run the retried job:\n{}", fleet.all_logs());
        let (status, body) = admin_call(&fleet, Method::POST, &format!("/admin/jobs/{noop}/retry"), &root, None);
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("not_dead")), "{body}");
        assert!(body["message"].as_str().unwrap().contains("done"), "{body}");

        // Audited once, for the retry that happened, with the job in its detail.
        let audited = fleet.db.strings("SELECT actor || '|' || action || '|' || detail AS v FROM audit_log WHERE action = 'job.retried'");
        assert_eq!(audited, [format!("root@example.org|job.retried|job {noop} (noop)")]);
        let (_, jobs) = admin_call(&fleet, Method::GET, "/admin/jobs?state=done&kind=noop", &root, None);
        assert!(jobs["jobs"].as_array().unwrap().iter().any(|j| j["id"].as_i64() == noop.parse().ok()), "{jobs}");
    }

    fn the_fleet_page_names_a_stopped_service(db: TestDb) {
        let mut fleet = Fleet::start(db);
        let root = admin_account(&fleet, "root@example.org");
        let built = fleet.run("flotilla-pages", &["build"]);
        assert!(built.status.success());

        let (status, report) = admin_call(&fleet, Method::GET, "/admin/fleet", &root, None);
        assert_eq!(status, StatusCode::OK, "{report}");
        let states = |report: &Value| -> Vec<String> {
            report["services"].as_array().unwrap().iter()
                .map(|s| format!("{}={}", s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
                .collect()
        };
        assert_eq!(states(&report), ["admin=up", "login=up", "profile=up", "signup=up", "worker=up"], "{report}");
        let profile = &report["services"][2];
        assert_eq!(profile["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(profile["url"].as_str().unwrap(), format!("http://{}", fleet.service_addr("profile")));
        assert!(profile["latency_ms"].as_u64().unwrap() < 1000);
        // The page generator: the build just run (the fleet's start ran one too).
        let pages = &report["pages"];
        assert_eq!(pages["version"], env!("CARGO_PKG_VERSION"), "{report}");
        assert_eq!(pages["pages"], 13, "the stylesheet and the icon (twice each), the script, 404 page, robots.txt, the API reference and its document; the home page, the empty directory, the sitemap and the feed");
        assert_eq!(count(&fleet, "SELECT COUNT(*) FROM page_builds"), 2);
        assert_eq!(report["pages_update"], Value::Null, "{report}");
        // The watcher's updates show too: root's profile made public.
        fleet.start_pages_watcher();
        let edited = fleet.request(Method::PATCH, "/profile/me").bearer_auth(&root)
            .json(&serde_json::json!({"username": "ops-lead", "public": true})).send().unwrap();
        assert_eq!(edited.status(), StatusCode::OK);
        let mut report = Value::Null;
        let updated = wait_until(Duration::from_secs(10), || {
            report = admin_call(&fleet, Method::GET, "/admin/fleet", &root, None).1;
            report["pages_update"]["changed"].as_i64().is_some_and(|n| n >= 1)
        });
        assert!(updated, "{report}\n{}", fleet.all_logs());
        assert_eq!(report["pages_update"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(report["pages_update"]["at"].as_str().unwrap().ends_with('Z'), "{report}");
        assert!(report["pages_update"]["duration_ms"].is_i64(), "{report}");

        fleet.stop_service("profile", libc::SIGTERM);
        let asked = Instant::now();
        let (status, report) = admin_call(&fleet, Method::GET, "/admin/fleet", &root, None);
        let took = asked.elapsed();
        assert_eq!(status, StatusCode::OK, "{report}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert_eq!(states(&report), ["admin=up", "login=up", "profile=down", "signup=up", "worker=up"], "{report}");
        assert!(report["services"][2]["reason"].as_str().unwrap().starts_with("no answer"), "{report}");
        // The overview answers too, and its page says so.
        let page = fleet.client().get(fleet.url("/admin/fleet")).bearer_auth(&root)
            .header("Accept", "text/html").send().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().unwrap();
        assert!(page.contains("4 of 5 up"), "{page}");
        assert!(page.contains("class=\"state-down\""), "{page}");
        assert!(page.contains("Last update by the watcher on"), "{page}");
        assert_eq!(admin_call(&fleet, Method::GET, "/admin", &root, None).0, StatusCode::OK);
    }
}
