//! Upgrades: a rolling deploy migrates first, then restarts the instances one at a
//! time, so the previous release serves on the schema the next one migrated — and a
//! rollback starts it again there. Migrations therefore expand only, and contract in
//! a later release (docs/operations.md, "Upgrades"). Here this release plays the previous one,
//! on a database that the next release's kind of migration expanded.

use reqwest::StatusCode;

use super::binaries::{next_release_expands, ready_answer};
use super::login::{me, sign_in, verified_account};
use super::*;

on_both_databases! {
    fn the_journey_works_on_a_schema_the_next_release_expanded(db: TestDb) {
        let mut fleet = Fleet::start(db);
        next_release_expands(fleet.db());
        // Started again on it, as after a rollback that follows the migration.
        for name in ["signup", "login", "profile", "admin", "worker"] {
            fleet.stop_service(name, libc::SIGTERM);
            fleet.start_service(name);
            let body = ready_answer(&fleet.direct_url(name, &format!("/{name}/ready")));
            assert_eq!(body["schema"], "newer, compatible", "{name}");
        }
        let built = fleet.run("flotilla-pages", &["build"]);
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

        verified_account(&fleet, "upgrade@example.com");
        let (access, _) = sign_in(&fleet, "upgrade@example.com");
        let (status, body) = me(&fleet, &access);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["email"], "upgrade@example.com");
        // Rows this release writes get the next release's defaults.
        let flags = fleet
            .db()
            .strings("SELECT CAST(next_release_flags AS TEXT) AS v FROM sessions");
        assert!(!flags.is_empty() && flags.iter().all(|f| f == "0"), "{flags:?}");
    }
}
