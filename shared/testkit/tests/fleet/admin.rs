//! The admin console through nginx: what every admin test shares (an admin from the
//! command line, requests with its token), and who gets in.

use reqwest::blocking::Response;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::login::{sign_in, verified_account};
use super::*;

/// `flotilla-admin promote|demote EMAIL`, as a sysadmin runs it: its exit status and
/// what it printed.
pub(super) fn role_command(fleet: &Fleet, command: &str, email: &str) -> (bool, String) {
    let output = fleet.run("flotilla-admin", &[command, email]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// A verified account made admin from the command line, signed in: its access token.
pub(super) fn admin_account(fleet: &Fleet, email: &str) -> String {
    verified_account(fleet, email);
    let (promoted, printed) = role_command(fleet, "promote", email);
    assert!(promoted, "promote failed: {printed}");
    sign_in(fleet, email).0
}

/// A request to the console with a bearer token, its status and JSON body.
pub(super) fn admin_call(
    fleet: &Fleet,
    method: Method,
    path: &str,
    access: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let response = admin_send(fleet, method, path, access, body);
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// [`admin_call`], the response itself.
pub(super) fn admin_send(
    fleet: &Fleet,
    method: Method,
    path: &str,
    access: &str,
    body: Option<Value>,
) -> Response {
    let mut request = fleet.request(method, path).bearer_auth(access);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().unwrap()
}

on_both_databases! {
    fn the_first_admin_comes_from_the_command_line(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "root@example.org");
        let (promoted, printed) = role_command(&fleet, "promote", "Root@Example.org");
        assert!(promoted, "{printed}");
        assert!(printed.contains("is now an admin"), "{printed}");
        let (again, printed) = role_command(&fleet, "promote", "root@example.org");
        assert!(again && printed.contains("already"), "{printed}");
        let (unknown, printed) = role_command(&fleet, "promote", "nobody@example.org");
        assert!(!unknown && printed.contains("no open account"), "{printed}");

        // The last admin cannot be demoted, from the command line either.
        let (demoted, printed) = role_command(&fleet, "demote", "root@example.org");
        assert!(!demoted && printed.contains("last admin"), "{printed}");

        // Audited with the actor "command line (<unix user>)", and nothing else.
        let rows = fleet.db.strings(
            "SELECT actor || '|' || action || '|' || target AS v FROM audit_log ORDER BY id",
        );
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].starts_with("command line ("), "{rows:?}");
        assert!(rows[0].ends_with("|account.promoted|root@example.org"), "{rows:?}");
    }
}
