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

/// Every route of the console (`{id}`: an account's id), with its method.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin"),
    ("GET", "/admin/users"),
    ("GET", "/admin/users/{id}"),
    ("POST", "/admin/users/{id}/disable"),
    ("POST", "/admin/users/{id}/enable"),
    ("POST", "/admin/users/{id}/promote"),
    ("POST", "/admin/users/{id}/demote"),
    ("POST", "/admin/users/{id}/revoke-sessions"),
    ("POST", "/admin/users/{id}/force-password-reset"),
    ("POST", "/admin/users/{id}/resend-verification"),
    ("POST", "/admin/users/{id}/delete"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/jobs"),
    ("POST", "/admin/jobs/1/retry"),
    ("GET", "/admin/fleet"),
];

on_both_databases! {
    fn every_route_keeps_out_the_anonymous_and_the_plain_accounts(db: TestDb) {
        let fleet = Fleet::start(db);
        admin_account(&fleet, "root@example.org");
        verified_account(&fleet, "ada@example.org");
        let (plain, _) = sign_in(&fleet, "ada@example.org");
        let id = fleet.db.strings("SELECT id AS v FROM users WHERE email = 'ada@example.org'").remove(0);
        for (method, route) in ROUTES {
            let path = route.replace("{id}", &id);
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let anonymous = fleet.request(method.clone(), &path).send().unwrap();
            let status = anonymous.status();
            let body: Value = anonymous.json().unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["error"], "not_authenticated", "{method} {path}");
            if method == Method::GET {
                let browser = fleet.get_html(&path);
                assert_eq!(browser.status(), StatusCode::SEE_OTHER, "{path}");
                let next = serde_urlencoded::to_string([("next", path.as_str())]).unwrap();
                assert_eq!(browser.headers()["location"], format!("/login?{next}").as_str());
            }
            let (status, body) = admin_call(&fleet, method.clone(), &path, &plain, None);
            assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("admin_only")), "{method} {path}: {body}");
        }
        // Nothing was done: the promotion is the only entry, and ada is as she was.
        assert_eq!(fleet.db.strings("SELECT action AS v FROM audit_log"), ["account.promoted"]);
        let ada = fleet.db.strings("SELECT role || '|' || CASE WHEN disabled_at IS NULL THEN 'enabled' ELSE 'disabled' END AS v FROM users WHERE id = '{id}'".replace("{id}", &id).as_str());
        assert_eq!(ada, ["user|enabled"]);
    }
}
