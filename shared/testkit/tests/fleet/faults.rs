//! Mail survives a stopped and a killed worker: delivered once each, none twice.

use std::time::Duration;

use flotilla_testkit::wait_until;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

on_both_databases! {
    fn every_queued_mail_is_delivered_once_across_a_killed_worker(db: TestDb) {
        let mut fleet = Fleet::builder(db)
            // Cheap hashes: this test is about the queue, not Argon2.
            .env("FLOTILLA_ARGON2_MEMORY_KIB", "64")
            .env("FLOTILLA_ARGON2_ITERATIONS", "1")
            .env("FLOTILLA_WORKER_BATCH", "5")
            .env("FLOTILLA_WORKER_LEASE_SECS", "2")
            .start();
        fleet.stop_service("worker", libc::SIGTERM);
        let addresses: Vec<String> = (0..100).map(|i| format!("user{i}@example.org")).collect();
        for address in &addresses {
            let response = fleet
                .request(reqwest::Method::POST, "/signup")
                .json(&json!({"email": address, "password": "correct horse battery staple"}))
                .send()
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        let pending = fleet.db.strings("SELECT CAST(COUNT(*) AS TEXT) AS v FROM jobs WHERE done_at IS NULL");
        assert_eq!(pending, vec!["100"], "all queued while the worker is away");

        fleet.start_service("worker");
        let delivered = |fleet: &Fleet| {
            std::fs::read_dir(fleet.data_dir().join("mail"))
                .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
                .unwrap_or(0)
        };
        assert!(wait_until(Duration::from_secs(30), || delivered(&fleet) >= 1), "{}", fleet.all_logs());
        fleet.stop_service("worker", libc::SIGKILL);
        let at_kill = delivered(&fleet);
        eprintln!("worker killed with {at_kill} of 100 mails delivered");
        fleet.start_service("worker");
        assert!(
            wait_until(Duration::from_secs(60), || delivered(&fleet) == 100),
            "{} of 100 delivered (killed at {at_kill}):\n{}",
            delivered(&fleet),
            fleet.all_logs()
        );
        for address in &addresses {
            assert_eq!(fleet.mails_to(address).len(), 1, "{address}");
        }
        assert!(wait_until(Duration::from_secs(30), || {
            fleet.db.strings("SELECT CAST(COUNT(*) AS TEXT) AS v FROM jobs WHERE kind = 'email' AND done_at IS NOT NULL") == vec!["100"]
        }));
        assert!(fleet.db.strings("SELECT kind AS v FROM jobs WHERE dead_at IS NOT NULL").is_empty());
    }
}
