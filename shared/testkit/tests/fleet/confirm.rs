//! "Confirm it's you" (`/login/confirm`, the admin console's sudo mode) through nginx:
//! the session's proof of identity moved forward in the database, wrong passwords
//! refused and throttled with profile's password checks, `next` kept on this site,
//! anonymous browsers sent to sign in, the CSRF rule for cookies, nginx's budget.

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, RETRY_AFTER};
use serde_json::{Value, json};

use super::login::{
    PASSWORD, cookie_value, decode_part, set_cookies, sign_in, timestamp, verified_account,
};
use super::*;

const LONG_AGO: &str = "2000-01-01 00:00:00";

/// The session of an access token.
fn session_of(access: &str) -> String {
    decode_part(access, 1)["sid"].as_str().unwrap().to_owned()
}

/// When the session last proved who it is (`sessions.authenticated_at`).
fn authenticated_at(fleet: &Fleet, sid: &str) -> chrono::NaiveDateTime {
    let rows = fleet.db.strings(&format!(
        "SELECT CAST(authenticated_at AS TEXT) AS v FROM sessions WHERE id = '{sid}'"
    ));
    timestamp(&rows[0])
}

/// Moves the session's proof of identity back to 2000, as if signed in long ago.
fn age(fleet: &Fleet, sid: &str) {
    let sql = format!("UPDATE sessions SET authenticated_at = '{LONG_AGO}' WHERE id = '{sid}'");
    assert_eq!(fleet.db.execute(&sql), 1);
}

fn long_ago() -> chrono::NaiveDateTime {
    timestamp(LONG_AGO)
}

fn confirm_json(fleet: &Fleet, access: &str, password: &str) -> Response {
    fleet
        .request(Method::POST, "/login/confirm")
        .bearer_auth(access)
        .json(&json!({"password": password}))
        .send()
        .unwrap()
}

/// A browser's form post to the confirmation.
fn confirm_form(fleet: &Fleet, access: &str, form: &[(&str, &str)]) -> Response {
    super::admin_actions::form_post(fleet, access, "/login/confirm", form)
}

fn events(fleet: &Fleet, kind: &str) -> Vec<String> {
    fleet.db.strings(&format!(
        "SELECT COALESCE(session_id, '-') AS v FROM auth_events WHERE kind = '{kind}' ORDER BY id"
    ))
}

on_both_databases! {
    fn confirming_moves_the_sessions_proof_of_identity_forward(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let sid = session_of(&access);
        age(&fleet, &sid);

        // A wrong password: 403, recorded, nothing moved.
        let wrong = confirm_json(&fleet, &access, "not the password at all");
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        assert_eq!(wrong.json::<Value>().unwrap()["error"], "wrong_password");
        assert_eq!(authenticated_at(&fleet, &sid), long_ago());
        assert_eq!(events(&fleet, "password.check_failed"), vec![sid.clone()]);
        assert!(events(&fleet, "password.confirmed").is_empty());
        // No password, or an unknown field: 422 naming it, nothing moved.
        let missing = confirm_json(&fleet, &access, "");
        assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(missing.json::<Value>().unwrap()["fields"]["password"].is_string());
        let extra = fleet.request(Method::POST, "/login/confirm").bearer_auth(&access)
            .json(&json!({"password": PASSWORD, "role": "admin"})).send().unwrap();
        assert_eq!(extra.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(authenticated_at(&fleet, &sid), long_ago());

        // The right one, as JSON with the bearer token: 204, and the proof is now.
        let before = chrono::Utc::now().naive_utc() - chrono::TimeDelta::seconds(5);
        let confirmed = confirm_json(&fleet, &access, PASSWORD);
        assert_eq!(confirmed.status(), StatusCode::NO_CONTENT);
        let moved = authenticated_at(&fleet, &sid);
        assert!(moved >= before && moved <= before + chrono::TimeDelta::seconds(65), "{moved}");
        assert_eq!(events(&fleet, "password.confirmed"), vec![sid.clone()]);
        // Only this session's: another session of the account keeps its own.
        let (other, _) = sign_in(&fleet, "ada@example.org");
        let other_sid = session_of(&other);
        age(&fleet, &other_sid);
        assert_eq!(confirm_json(&fleet, &access, PASSWORD).status(), StatusCode::NO_CONTENT);
        assert_eq!(authenticated_at(&fleet, &other_sid), long_ago());

        // A browser: the page, then the form, on to `next`.
        age(&fleet, &sid);
        let cookie = format!("flotilla_access={access}");
        let page = fleet.request(Method::GET, "/login/confirm?next=%2Fadmin%2Fusers%3Fq%3Dada")
            .header(COOKIE, &cookie).header("accept", "text/html").send().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().unwrap();
        let csrf = decode_part(&access, 1)["csrf"].as_str().unwrap().to_owned();
        assert!(html.contains("<strong>ada@example.org</strong>"), "{html}");
        assert!(html.contains("autocomplete=\"current-password\""), "{html}");
        assert!(html.contains("name=\"next\" value=\"/admin/users?q=ada\""), "{html}");
        assert!(html.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")), "{html}");
        assert_eq!(html.matches("type=\"password\"").count(), 1, "{html}");

        let form = [("csrf_token", csrf.as_str()), ("password", PASSWORD), ("next", "/admin/users?q=ada")];
        let done = confirm_form(&fleet, &access, &form);
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        assert_eq!(done.headers()[LOCATION], "/admin/users?q=ada");
        assert!(authenticated_at(&fleet, &sid) > long_ago());

        // `next` off this site is ignored: /profile instead.
        for off_site in ["//evil.example/x", "https://evil.example/", "/\\evil.example"] {
            let form = [("csrf_token", csrf.as_str()), ("password", PASSWORD), ("next", off_site)];
            let done = confirm_form(&fleet, &access, &form);
            assert_eq!(done.status(), StatusCode::SEE_OTHER, "{off_site}");
            assert_eq!(done.headers()[LOCATION], "/profile", "{off_site}");
        }
        let page = fleet.request(Method::GET, "/login/confirm?next=%2F%2Fevil.example")
            .header(COOKIE, &cookie).header("accept", "text/html").send().unwrap();
        assert!(!page.text().unwrap().contains("evil.example"));

        // The wrong password in the form: the form again, with the message, 403.
        age(&fleet, &sid);
        let form = [("csrf_token", csrf.as_str()), ("password", "still not it, sorry"), ("next", "/admin")];
        let again = confirm_form(&fleet, &access, &form);
        assert_eq!(again.status(), StatusCode::FORBIDDEN);
        let html = again.text().unwrap();
        assert!(html.contains("The password is not right."), "{html}");
        assert!(html.contains("<strong>ada@example.org</strong>") && html.contains("name=\"next\" value=\"/admin\""), "{html}");
        assert!(!html.contains("still not it"), "the password typed is never shown again");
        assert_eq!(authenticated_at(&fleet, &sid), long_ago());

        // CSRF: a cookie post needs the form token and this site's origin.
        let no_token = confirm_form(&fleet, &access, &[("password", PASSWORD)]);
        assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
        let forged = confirm_form(&fleet, &access, &[("csrf_token", "forged"), ("password", PASSWORD)]);
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let cross = fleet.request(Method::POST, "/login/confirm").header(COOKIE, &cookie)
            .header(ORIGIN, "https://evil.example").form(&[("csrf_token", csrf.as_str()), ("password", PASSWORD)])
            .send().unwrap();
        assert_eq!(cross.status(), StatusCode::FORBIDDEN);
        assert_eq!(authenticated_at(&fleet, &sid), long_ago(), "no refused post moved it");
        // A script with the cookie sends the token as a header.
        let script = fleet.request(Method::POST, "/login/confirm").header(COOKIE, &cookie)
            .header(ORIGIN, fleet.origin()).header("x-csrf-token", &csrf)
            .json(&json!({"password": PASSWORD})).send().unwrap();
        assert_eq!(script.status(), StatusCode::NO_CONTENT);
        assert!(authenticated_at(&fleet, &sid) > long_ago());

        // A session that ended confirms nothing.
        assert_eq!(fleet.request(Method::POST, "/login/logout").bearer_auth(&other).send().unwrap().status(), StatusCode::NO_CONTENT);
        let ended = confirm_json(&fleet, &other, PASSWORD);
        assert_eq!(ended.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(authenticated_at(&fleet, &other_sid), long_ago());
    }

    fn anonymous_browsers_sign_in_first_and_come_back(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");

        let page = fleet.get_html("/login/confirm?next=%2Fadmin%2Fusers%3Fq%3Da%26status%3Ddisabled");
        assert_eq!(page.status(), StatusCode::SEE_OTHER);
        let location = page.headers()[LOCATION].to_str().unwrap().to_owned();
        assert_eq!(
            location,
            "/login?next=%2Flogin%2Fconfirm%3Fnext%3D%252Fadmin%252Fusers%253Fq%253Da%2526status%253Ddisabled"
        );
        let bare = fleet.get_html("/login/confirm");
        assert_eq!(bare.headers()[LOCATION], "/login?next=%2Flogin%2Fconfirm");
        // An API client is told instead; an anonymous post is refused.
        let api = fleet.get("/login/confirm");
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
        let post = fleet.request(Method::POST, "/login/confirm").json(&json!({"password": PASSWORD})).send().unwrap();
        assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
        let form = fleet.request(Method::POST, "/login/confirm").header(ORIGIN, fleet.origin())
            .header("accept", "text/html").form(&[("password", PASSWORD)]).send().unwrap();
        assert_eq!(form.status(), StatusCode::UNAUTHORIZED);

        // Signing in there lands on the confirmation, `next` intact.
        let signed_in = fleet.request(Method::POST, "/login").header(ORIGIN, fleet.origin())
            .form(&[("email", "ada@example.org"), ("password", PASSWORD), ("next", "/login/confirm?next=%2Fadmin")])
            .send().unwrap();
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        assert_eq!(signed_in.headers()[LOCATION], "/login/confirm?next=%2Fadmin");
        // And a browser with a live refresh cookie is sent on without the password.
        let refresh = cookie_value(&set_cookies(&signed_in), "flotilla_refresh").unwrap();
        let renewed = fleet.request(Method::GET, &location).header(COOKIE, format!("flotilla_refresh={refresh}"))
            .header("accept", "text/html").send().unwrap();
        assert_eq!(renewed.status(), StatusCode::SEE_OTHER);
        assert_eq!(renewed.headers()[LOCATION], "/login/confirm?next=%2Fadmin%2Fusers%3Fq%3Da%26status%3Ddisabled");
    }

    fn the_confirmation_shares_the_throttle_of_profiles_password_checks(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let sid = session_of(&access);
        age(&fleet, &sid);

        // Two wrong at profile, three at the confirmation: the five free failures
        // (FLOTILLA_LOGIN_MAX_FAILURES) are spent, wherever they were.
        for _ in 0..2 {
            let changed = fleet.request(Method::POST, "/profile/password").bearer_auth(&access)
                .json(&json!({"current_password": "a wrong guess here", "new_password": "another long passphrase 42"}))
                .send().unwrap();
            assert_eq!(changed.status(), StatusCode::FORBIDDEN);
        }
        for _ in 0..3 {
            let wrong = confirm_json(&fleet, &access, "a wrong guess here");
            assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        }
        // Now even the right password waits: 429 with Retry-After, nothing moved.
        let throttled = confirm_json(&fleet, &access, PASSWORD);
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = throttled.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&wait), "{wait}");
        assert_eq!(throttled.json::<Value>().unwrap()["error"], "too_many_attempts");
        assert_eq!(authenticated_at(&fleet, &sid), long_ago());
        assert!(events(&fleet, "password.confirmed").is_empty());
        assert_eq!(events(&fleet, "password.check_failed").len(), 5, "the throttled one checked no hash");
        // And profile waits on the same count.
        let profile = fleet.request(Method::POST, "/profile/password").bearer_auth(&access)
            .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase 42"}))
            .send().unwrap();
        assert_eq!(profile.status(), StatusCode::TOO_MANY_REQUESTS);

        // Once the failures are out of the window, the right password confirms.
        fleet.db.execute(&format!("UPDATE auth_events SET created_at = '{LONG_AGO}' WHERE kind = 'password.check_failed'"));
        assert_eq!(confirm_json(&fleet, &access, PASSWORD).status(), StatusCode::NO_CONTENT);
        assert!(authenticated_at(&fleet, &sid) > long_ago());
    }

    fn nginx_counts_confirmations_in_the_sign_in_budget(db: TestDb) {
        let fleet = Fleet::builder(db)
            .env("FLOTILLA_PROXY_AUTH_RATE", "1r/m")
            .env("FLOTILLA_PROXY_AUTH_BURST", "6")
            .start();
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        // The right password each time: only nginx can refuse.
        let mut passed = 0;
        let refused = (0..10).find_map(|_| {
            let response = confirm_json(&fleet, &access, PASSWORD);
            if response.status() == StatusCode::NO_CONTENT {
                passed += 1;
                return None;
            }
            Some(response)
        });
        let refused = refused.expect("nginx never limited POST /login/confirm");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key(RETRY_AFTER));
        assert_eq!(refused.json::<Value>().unwrap()["error"], "rate_limited");
        // The signup and the sign-in drew on the same budget as the confirmations.
        assert!((1..=6).contains(&passed), "{passed}");
    }
}
