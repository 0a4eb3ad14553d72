//! Profile self-service through nginx: the page, edits, password and address changes,
//! sessions, activity, export and closing the account.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_testkit::{link_param, wait_until};
use reqwest::header::{CONTENT_DISPOSITION, COOKIE, LOCATION, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::admin_overview::dead_job;
use super::links::post_token;
use super::login::{
    PASSWORD, bus_is_up, decode_part, link_lifetimes, login, me, refresh, sign_in, slow_catch_up,
    verified_account,
};
use super::*;
use flotilla_contracts::{Mail, Message};

fn call(
    fleet: &Fleet,
    method: Method,
    path: &str,
    access: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = fleet.request(method, path).bearer_auth(access);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// How long until login (another service than profile) refuses `access`.
fn login_refuses_within(fleet: &Fleet, access: &str, since: Instant, limit: Duration) -> Duration {
    let refused = wait_until(limit, || {
        call(fleet, Method::GET, "/login/session", access, None).0 == StatusCode::UNAUTHORIZED
    });
    let took = since.elapsed();
    assert!(
        refused,
        "login still accepts the token after {took:?}:\n{}",
        fleet.all_logs()
    );
    took
}

on_both_databases! {
    fn the_page_and_profile_edits(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        verified_account(&fleet, "grace@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let (grace, _) = sign_in(&fleet, "grace@example.org");

        // Anonymous browsers are sent to sign in.
        let anonymous = fleet.get_html("/profile");
        assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
        assert_eq!(anonymous.headers()[LOCATION], "/login?next=/profile");
        assert_eq!(call(&fleet, Method::GET, "/profile/me", "", None).0, StatusCode::UNAUTHORIZED);

        // Events reach a subscriber of the bus.
        let events: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = events.clone();
        let subscriber = flotilla_bus::EventSubscriber::start(&fleet.bus_endpoint("FLOTILLA_BUS_EVENTS_OUT"), &["user."], move |topic: &str, payload: &[u8]| {
            seen.lock().unwrap().push(format!("{topic} {}", String::from_utf8_lossy(payload)));
        }).unwrap();
        assert!(wait_until(Duration::from_secs(10), || subscriber.is_connected()));

        let before = fleet.db.strings("SELECT CAST(updated_at AS TEXT) AS v FROM users WHERE email = 'ada@example.org'");
        let id = me(&fleet, &access).1["id"].as_str().unwrap().to_owned();
        let published = wait_until(Duration::from_secs(10), || {
            let (status, body) = call(&fleet, Method::PATCH, "/profile/me", &access, Some(json!({"display_name": "Ada <script>alert(1)</script> ✨", "public": true})));
            assert_eq!(status, StatusCode::OK, "{body}");
            events.lock().unwrap().iter().any(|e| e.starts_with("user.updated") && e.contains(&id))
        });
        assert!(published, "no user.updated event: {:?}", events.lock().unwrap());
        let (_, body) = me(&fleet, &access);
        assert_eq!(body["display_name"], "Ada <script>alert(1)</script> ✨", "stored as typed");
        assert_eq!(body["public"], true);
        assert!(body["bio"].is_null(), "untouched");
        let after = fleet.db.strings("SELECT CAST(updated_at AS TEXT) AS v FROM users WHERE email = 'ada@example.org'");
        assert_ne!(before, after, "updated_at moves for the page generator");

        // Every bad or unknown field is named, and nothing changes.
        let (status, body) = call(&fleet, Method::PATCH, "/profile/me", &access, Some(json!({
            "username": "No Spaces", "display_name": "x".repeat(65), "bio": "b".repeat(2001), "public": "yes", "role": "admin",
        })));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        for field in ["username", "display_name", "bio", "public", "role"] {
            assert!(body["fields"][field].is_string(), "{field}: {body}");
        }
        assert_eq!(me(&fleet, &access).1["role"], "user");
        let (status, _) = call(&fleet, Method::PATCH, "/profile/me", &access, Some(json!(["not", "an", "object"])));
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // Usernames are unique whatever their case.
        let (status, body) = call(&fleet, Method::PATCH, "/profile/me", &grace, Some(json!({"username": "grace"})));
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = call(&fleet, Method::PATCH, "/profile/me", &access, Some(json!({"username": "grace"})));
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("username_taken")));
        let (status, body) = call(&fleet, Method::PATCH, "/profile/me", &access, Some(json!({"username": "ada-l", "bio": "Line one\nLine two"})));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["username"], "ada-l");

        // The page, with a cookie: everything typed is escaped.
        let cookie = format!("flotilla_access={access}");
        let page = fleet.request(Method::GET, "/profile").header(COOKIE, &cookie).header("accept", "text/html").send().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().unwrap();
        assert!(html.contains("Ada &lt;script&gt;alert(1)&lt;/script&gt; ✨"), "{html}");
        assert!(!html.contains("<script>"));
        for section in ["id=\"profile\"", "id=\"password\"", "id=\"email\"", "id=\"sessions\"", "id=\"activity\"", "/profile/export", "id=\"delete\""] {
            assert!(html.contains(section), "{section}");
        }

        // The form, with the form token and this site's origin.
        let csrf = decode_part(&access, 1)["csrf"].as_str().unwrap().to_owned();
        let form = [("csrf_token", csrf.as_str()), ("username", "ada-l"), ("display_name", "Ada"), ("bio", "")];
        let saved = fleet.request(Method::POST, "/profile/me").header(COOKIE, &cookie).header(ORIGIN, fleet.origin()).form(&form).send().unwrap();
        assert_eq!(saved.status(), StatusCode::SEE_OTHER);
        assert_eq!(saved.headers()[LOCATION], "/profile?done=saved");
        let (_, body) = me(&fleet, &access);
        assert_eq!((body["display_name"].as_str(), body["public"].as_bool(), body["bio"].as_str()), (Some("Ada"), Some(false), None));
        let forged = fleet.request(Method::POST, "/profile/me").header(COOKIE, &cookie).header(ORIGIN, fleet.origin()).form(&[("display_name", "Mallory")]).send().unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no form token");
        let cross = fleet.request(Method::POST, "/profile/me").header(COOKIE, &cookie).header(ORIGIN, "https://evil.example").form(&form).send().unwrap();
        assert_eq!(cross.status(), StatusCode::FORBIDDEN, "another site");
        assert_eq!(me(&fleet, &access).1["display_name"], "Ada");
        // A script sends the form token in the X-CSRF-Token header instead.
        let patch = |token: &str, name: &str| {
            fleet.request(Method::PATCH, "/profile/me").header(COOKIE, &cookie).header(ORIGIN, fleet.origin())
                .header("x-csrf-token", token).json(&json!({"display_name": name})).send().unwrap()
        };
        let response = patch(&csrf, "Ada Lovelace");
        assert_eq!(response.status(), StatusCode::OK, "{}", response.text().unwrap());
        assert_eq!(me(&fleet, &access).1["display_name"], "Ada Lovelace");
        let response = patch("not-the-form-token", "Mallory");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.json::<Value>().unwrap()["error"], "csrf_token_invalid");
        assert_eq!(me(&fleet, &access).1["display_name"], "Ada Lovelace", "nothing changed");
        let bad_form = fleet.request(Method::POST, "/profile/me").header(COOKIE, &cookie).header(ORIGIN, fleet.origin()).header("accept", "text/html")
            .form(&[("csrf_token", csrf.as_str()), ("display_name", &"y".repeat(80))]).send().unwrap();
        assert_eq!(bad_form.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad_form.text().unwrap().contains("at most 64 characters"));
    }

    fn wrong_current_passwords_are_throttled_and_recorded(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let change = |current: &str| call(&fleet, Method::POST, "/profile/password", &access, Some(json!({"current_password": current, "new_password": "a brand new passphrase"})));
        for n in 0..5 {
            let (status, body) = change(&format!("wrong guess {n}"));
            assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_password")), "{n}");
        }
        // Five more failures on record (as if guessed earlier): a wait long enough
        // that the checks below cannot outlast it on a slow machine. Every route that
        // checks the password draws on the same budget, and even the right password
        // waits.
        fleet.db.execute("INSERT INTO auth_events (kind, user_id, login_key, session_id, client_addr, user_agent, created_at) \
            SELECT kind, user_id, login_key, session_id, client_addr, user_agent, created_at FROM auth_events WHERE kind = 'password.check_failed'");
        let response = fleet.request(Method::DELETE, "/profile/me").bearer_auth(&access).json(&json!({"password": PASSWORD})).send().unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((30..=64).contains(&retry), "Retry-After {retry} after ten failures");
        assert_eq!(response.json::<Value>().unwrap()["error"], "too_many_attempts");
        assert_eq!(change(PASSWORD).0, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(me(&fleet, &access).0, StatusCode::OK, "nothing was closed");
        let (_, activity) = call(&fleet, Method::GET, "/profile/activity", &access, None);
        let failed = activity["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "password.check_failed").count();
        assert_eq!(failed, 10, "{activity}");
        // No permanent lock: once the failures are older than the window, it works.
        fleet.db.execute("UPDATE auth_events SET created_at = '2000-01-01 00:00:00' WHERE kind = 'password.check_failed'");
        assert_eq!(change(PASSWORD).0, StatusCode::NO_CONTENT);
    }

    fn concurrent_username_claims_one_wins(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        verified_account(&fleet, "grace@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        let (grace, _) = sign_in(&fleet, "grace@example.org");
        for round in 0..8 {
            let name = format!("claimed-{round}");
            let (client, url) = (fleet.client().clone(), fleet.url("/profile/me"));
            let claim = |token: &str| {
                client.patch(&url).bearer_auth(token).json(&json!({"username": name})).send().unwrap().status()
            };
            let outcomes: Vec<StatusCode> = std::thread::scope(|scope| {
                let a = scope.spawn(|| claim(&ada));
                let g = scope.spawn(|| claim(&grace));
                vec![a.join().unwrap(), g.join().unwrap()]
            });
            let mut sorted = outcomes.clone();
            sorted.sort();
            assert_eq!(sorted, vec![StatusCode::OK, StatusCode::CONFLICT], "round {round}: {outcomes:?}");
            let owners = fleet.db.strings(&format!("SELECT email AS v FROM users WHERE username = '{name}'"));
            assert_eq!(owners.len(), 1);
        }
    }

    fn password_change_sessions_and_activity(db: TestDb) {
        let fleet = slow_catch_up(db);
        verified_account(&fleet, "ada@example.org");
        bus_is_up(&fleet, "ada@example.org");
        let (current, _) = sign_in(&fleet, "ada@example.org");
        let (phone, phone_refresh) = sign_in(&fleet, "ada@example.org");
        let (laptop, _) = sign_in(&fleet, "ada@example.org");

        // Sessions: this one is marked; the device is summarised.
        let (status, body) = call(&fleet, Method::GET, "/profile/sessions", &current, None);
        assert_eq!(status, StatusCode::OK);
        let sessions = body["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 3, "{body}");
        let current_sid = decode_part(&current, 1)["sid"].as_str().unwrap().to_owned();
        for s in sessions {
            assert_eq!(s["current"], s["id"] == current_sid.as_str());
            assert_eq!(s["client_addr"], "127.0.0.1");
            assert!(s["user_agent"].is_string() && s["created_at"].is_string() && s["last_used_at"].is_string());
        }

        // One session ended from here: refused by login within a second.
        let phone_sid = decode_part(&phone, 1)["sid"].as_str().unwrap().to_owned();
        let at = Instant::now();
        let (status, _) = call(&fleet, Method::DELETE, &format!("/profile/sessions/{phone_sid}"), &current, None);
        assert_eq!(status, StatusCode::NO_CONTENT);
        let took = login_refuses_within(&fleet, &phone, at, Duration::from_secs(1));
        eprintln!("a session ended at profile was refused by login after {took:?}");
        assert_eq!(refresh(&fleet, &phone_refresh).0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&fleet, Method::DELETE, &format!("/profile/sessions/{phone_sid}"), &current, None).0, StatusCode::NOT_FOUND, "already ended");
        // Someone else's session is not found.
        verified_account(&fleet, "grace@example.org");
        let (grace, _) = sign_in(&fleet, "grace@example.org");
        let grace_sid = decode_part(&grace, 1)["sid"].as_str().unwrap().to_owned();
        assert_eq!(call(&fleet, Method::DELETE, &format!("/profile/sessions/{grace_sid}"), &current, None).0, StatusCode::NOT_FOUND);
        assert_eq!(me(&fleet, &grace).0, StatusCode::OK);

        // Password: the current one is required, the new one follows the rules.
        let change = |current_password: &str, new_password: &str| call(&fleet, Method::POST, "/profile/password", &current, Some(json!({"current_password": current_password, "new_password": new_password})));
        let (status, body) = change("not the password", "a brand new passphrase 2026");
        assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_password")));
        let (status, body) = change(PASSWORD, "short");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["fields"]["new_password"].is_string());
        let at = Instant::now();
        let (status, _) = change(PASSWORD, "a brand new passphrase 2026");
        assert_eq!(status, StatusCode::NO_CONTENT);
        login_refuses_within(&fleet, &laptop, at, Duration::from_secs(1));
        assert_eq!(me(&fleet, &current).0, StatusCode::OK, "this session stays");
        assert_eq!(login(&fleet, "ada@example.org", PASSWORD).0, StatusCode::UNAUTHORIZED);
        let mails = fleet.wait_for_mails("ada@example.org", 2);
        assert!(mails.iter().any(|m| m.contains("Subject: Your password was changed")));

        // Revoke-others.
        let (status, body) = login(&fleet, "ada@example.org", "a brand new passphrase 2026");
        assert_eq!(status, StatusCode::OK);
        let other = body["access_token"].as_str().unwrap().to_owned();
        let at = Instant::now();
        assert_eq!(call(&fleet, Method::POST, "/profile/sessions/revoke-others", &current, None).0, StatusCode::NO_CONTENT);
        login_refuses_within(&fleet, &other, at, Duration::from_secs(1));
        let (_, body) = call(&fleet, Method::GET, "/profile/sessions", &current, None);
        assert_eq!(body["sessions"].as_array().unwrap().len(), 1);

        // Activity: where and how.
        login(&fleet, "ada@example.org", "a wrong password here");
        let (status, body) = call(&fleet, Method::GET, "/profile/activity", &current, None);
        assert_eq!(status, StatusCode::OK);
        let kinds: Vec<&str> = body["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
        for kind in ["login.success", "login.failure", "password.changed", "session.revoked", "session.revoked_others"] {
            assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
        }
        let first = &body["events"][0];
        assert_eq!(first["client_addr"], "127.0.0.1");
        assert!(first["at"].is_string() && first["user_agent"].is_string());
    }

    fn email_change_both_ways(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        verified_account(&fleet, "grace@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let ask = |new_email: &str, password: &str| call(&fleet, Method::POST, "/profile/email", &access, Some(json!({"new_email": new_email, "password": password})));

        let (status, body) = ask("not-an-address", PASSWORD);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["fields"]["new_email"].is_string());
        assert_eq!(ask("lovelace@example.org", "wrong password").0, StatusCode::FORBIDDEN);
        assert_eq!(ask("ADA@example.org", PASSWORD).0, StatusCode::UNPROCESSABLE_ENTITY, "already yours");

        // An address another account has: the same answer, and its owner is told.
        let a_minute_ago = "UPDATE auth_events SET created_at = '2000-01-01 00:00:00' WHERE kind = 'email.change_requested'";
        let taken = ask("grace@example.org", PASSWORD);
        assert_eq!(taken.0, StatusCode::ACCEPTED);
        // Once a minute, whether the address was free or taken.
        let (status, body) = ask("lovelace@example.org", PASSWORD);
        assert_eq!((status, body["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_requests")), "{body}");
        fleet.db.execute(a_minute_ago);
        let typo = ask("lovelace@exmaple.org", PASSWORD);
        assert_eq!(taken, typo);
        let (status, _) = ask("grace@example.org", PASSWORD);
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let grace_mails = fleet.wait_for_mails("grace@example.org", 2);
        assert!(grace_mails.iter().any(|m| m.contains("Subject: Someone tried to use your email address")));
        assert!(grace_mails.iter().all(|m| !m.contains("/profile/email/confirm")), "no link to an address that is taken");
        // A corrected request voids the mistyped one's link.
        let typo_link = link_param(&fleet.wait_for_mails("lovelace@exmaple.org", 1)[0], "token").unwrap();
        fleet.db.execute(a_minute_ago);
        assert_eq!(ask("lovelace@example.org", PASSWORD), taken);

        // The old address is told each time; the new one gets the link; nothing
        // changes yet.
        let old = fleet.wait_for_mails("ada@example.org", 4);
        let notices = old.iter().filter(|m| m.contains("Subject: A change of your email address was asked for")).count();
        assert_eq!(notices, 3, "one notice per request");
        assert!(old.iter().any(|m| m.contains("g***e@example.org")), "the new address is masked");
        let link = fleet.wait_for_mails("lovelace@example.org", 1);
        let token = link_param(&link[0], "token").unwrap();
        assert!(link_lifetimes(&fleet, "change_email").iter().all(|t| *t == chrono::TimeDelta::hours(24)), "valid 24 hours");
        assert_eq!(post_token(&fleet, "/profile/email/confirm", &typo_link).status(), StatusCode::BAD_REQUEST, "voided");
        assert_eq!(me(&fleet, &access).1["email"], "ada@example.org");
        assert_eq!(login(&fleet, "lovelace@example.org", PASSWORD).0, StatusCode::UNAUTHORIZED);

        // A reset link sent to the old address before the change…
        // (Asks for one, and returns its token once mailed.)
        let reset_link = |email: &str| {
            let resets = || -> Vec<String> {
                fleet.mails_to(email).iter().filter(|m| m.contains("Subject: Reset your password")).map(|m| link_param(m, "token").unwrap()).collect()
            };
            let before = resets().len();
            // A minute after any earlier one (one a minute per account).
            fleet.db.execute("UPDATE email_tokens SET created_at = '2000-01-01 00:00:00' WHERE purpose = 'password_reset'");
            let asked = fleet.request(Method::POST, "/login/forgot").json(&json!({"email": email})).send().unwrap();
            assert_eq!(asked.status(), StatusCode::ACCEPTED);
            assert!(wait_until(Duration::from_secs(15), || resets().len() > before), "no reset mail:\n{}", fleet.all_logs());
            resets().pop().unwrap()
        };
        let old_reset = reset_link("ada@example.org");
        assert_eq!(fleet.get(&format!("/login/reset?token={old_reset}")).status(), StatusCode::OK);
        let reset = |token: &str| {
            let response = fleet.request(Method::POST, "/login/reset").json(&json!({"token": token, "password": "a reset passphrase 2026"})).send().unwrap();
            (response.status(), response.json::<Value>().unwrap()["error"].as_str().map(str::to_owned))
        };

        let confirmed = post_token(&fleet, "/profile/email/confirm", &token);
        assert_eq!(confirmed.status(), StatusCode::OK);
        // …stops working once it is confirmed (voided, not only sent elsewhere).
        assert_eq!(reset(&old_reset), (StatusCode::BAD_REQUEST, Some("token_invalid".to_owned())));
        let pending = fleet.db.strings("SELECT email AS v FROM email_tokens WHERE purpose = 'password_reset' AND used_at IS NULL");
        assert!(pending.is_empty(), "{pending:?}");
        assert_eq!(me(&fleet, &access).1["email"], "lovelace@example.org");
        assert_eq!(me(&fleet, &access).1["email_verified"], true);
        assert_eq!(login(&fleet, "lovelace@example.org", PASSWORD).0, StatusCode::OK);
        assert_eq!(login(&fleet, "ada@example.org", PASSWORD).0, StatusCode::UNAUTHORIZED);
        let again = post_token(&fleet, "/profile/email/confirm", &token);
        assert_eq!(again.status(), StatusCode::BAD_REQUEST, "single use");
        assert_eq!(post_token(&fleet, "/profile/email/confirm", "nonsense").status(), StatusCode::BAD_REQUEST);

        // A pending change does not survive a change of password (whoever asked for
        // it may have known the old one).
        fleet.db.execute(a_minute_ago);
        let (status, _) = call(&fleet, Method::POST, "/profile/email", &access, Some(json!({"new_email": "thief@example.org", "password": PASSWORD})));
        assert_eq!(status, StatusCode::ACCEPTED);
        let link = fleet.wait_for_mails("thief@example.org", 1);
        let token = link_param(&link[0], "token").unwrap();
        // Nor a reset link pending then.
        let pending_reset = reset_link("lovelace@example.org");
        assert_eq!(fleet.get(&format!("/login/reset?token={pending_reset}")).status(), StatusCode::OK);
        let (status, _) = call(&fleet, Method::POST, "/profile/password", &access, Some(json!({"current_password": PASSWORD, "new_password": "a brand new passphrase 2026"})));
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(post_token(&fleet, "/profile/email/confirm", &token).status(), StatusCode::BAD_REQUEST);
        assert_eq!(reset(&pending_reset), (StatusCode::BAD_REQUEST, Some("token_invalid".to_owned())));
        assert_eq!(login(&fleet, "lovelace@example.org", "a brand new passphrase 2026").0, StatusCode::OK);
        assert_eq!(me(&fleet, &access).1["email"], "lovelace@example.org");
    }

    fn export_and_closing_the_account_leave_nothing_behind(db: TestDb) {
        let fleet = slow_catch_up(db);
        verified_account(&fleet, "ada@example.org");
        bus_is_up(&fleet, "ada@example.org");
        let (access, refresh_token) = sign_in(&fleet, "ada@example.org");
        let (other, _) = sign_in(&fleet, "ada@example.org");
        call(&fleet, Method::PATCH, "/profile/me", &access, Some(json!({"username": "ada", "display_name": "Ada", "bio": "Analyst", "public": true})));
        login(&fleet, "ada@example.org", "a wrong password here");
        // Attempts at the address held back by the throttle are recorded under the
        // address alone (no account named): the purge must find them by it.
        let throttled = wait_until(Duration::from_secs(10), || {
            login(&fleet, "ada@example.org", "a wrong password here").0 == StatusCode::TOO_MANY_REQUESTS
        });
        assert!(throttled);
        let anonymous = fleet.db.strings("SELECT kind AS v FROM auth_events WHERE user_id IS NULL");
        assert!(anonymous.contains(&"login.throttled".to_owned()), "{anonymous:?}");

        let response = fleet.request(Method::GET, "/profile/export").bearer_auth(&access).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()[CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
        let text = response.text().unwrap();
        let export: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(export["account"]["email"], "ada@example.org");
        assert_eq!(export["account"]["bio"], "Analyst");
        assert!(export["sessions"].as_array().unwrap().len() >= 2);
        assert!(export["activity"].as_array().unwrap().len() >= 3);
        assert!(!text.contains("$argon2"), "no password hash");
        assert!(!text.contains(&refresh_token), "no refresh token");
        let secrets = fleet.db.strings(
            "SELECT token_hash AS v FROM refresh_tokens UNION ALL SELECT token_hash AS v FROM email_tokens UNION ALL SELECT csrf_token AS v FROM sessions",
        );
        assert!(!secrets.is_empty());
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a stored secret in the export");
        }
        assert!(!text.contains("password_hash") && !text.contains("csrf"));

        // A mail to the person that failed for good keeps its address until purged.
        let id = me(&fleet, &access).1["id"].as_str().unwrap().to_owned();
        for (to, message, key) in [
            ("ada@example.org", Message::EmailChangeNotice { new_email: "a***@example.org".into(), client_addr: None, forgot_link: "x".into() }, format!("email_change_notice:{id}:1")),
            ("ada@example.org", Message::PasswordReset { link: "x".into(), valid_minutes: 60, client_addr: None }, "password_reset:0123".into()),
            ("bada@example.org", Message::PasswordReset { link: "x".into(), valid_minutes: 60, client_addr: None }, "password_reset:4567".into()),
        ] {
            dead_job(&fleet.db, Mail { to: to.into(), message }.into(), &key);
        }

        // Closing needs the password.
        assert_eq!(call(&fleet, Method::DELETE, "/profile/me", &access, Some(json!({"password": "wrong"}))).0, StatusCode::FORBIDDEN);
        assert_eq!(call(&fleet, Method::DELETE, "/profile/me", &access, Some(json!({}))).0, StatusCode::UNPROCESSABLE_ENTITY);
        let at = Instant::now();
        assert_eq!(call(&fleet, Method::DELETE, "/profile/me", &access, Some(json!({"password": PASSWORD}))).0, StatusCode::NO_CONTENT);
        login_refuses_within(&fleet, &other, at, Duration::from_secs(1));
        assert_eq!(me(&fleet, &access).0, StatusCode::UNAUTHORIZED);
        let mails = fleet.wait_for_mails("ada@example.org", 2);
        assert!(mails.iter().any(|m| m.contains("Subject: Your account is closed")));

        // The ended sessions stay, revoked, for as long as their access tokens could live,
        // so that a service that missed the event still denies them from its catch-up;
        // the purge waits that long (here: made due at once).
        assert!(fleet.db.strings("SELECT id AS v FROM sessions WHERE revoked_at IS NULL").is_empty());
        assert!(fleet.db.strings("SELECT id AS v FROM sessions").len() >= 2, "kept until the hold ends");
        let waits = fleet.db.strings(&format!(
            "SELECT id AS v FROM jobs WHERE kind = 'purge_user' AND done_at IS NULL AND run_after > '{}'",
            (chrono::Utc::now().naive_utc() + chrono::TimeDelta::minutes(15)).format("%Y-%m-%d %H:%M:%S")
        ));
        assert_eq!(waits.len(), 1, "the purge waits for the tokens' life and the leeway");
        assert_eq!(fleet.db.execute("UPDATE jobs SET run_after = '2000-01-01 00:00:00' WHERE kind = 'purge_user'"), 1);

        // The job purges the rest; then nothing about the person is left.
        let purged = wait_until(Duration::from_secs(15), || {
            fleet.db.strings("SELECT id AS v FROM users").is_empty()
                && fleet.db.strings("SELECT kind AS v FROM jobs WHERE done_at IS NULL AND dead_at IS NULL").is_empty()
        });
        assert!(purged, "{}", fleet.all_logs());
        for (table, sql) in [
            ("users", "SELECT email || COALESCE(username, '') || COALESCE(display_name, '') || COALESCE(bio, '') AS v FROM users"),
            ("sessions", "SELECT id AS v FROM sessions"),
            ("refresh_tokens", "SELECT token_hash AS v FROM refresh_tokens"),
            ("auth_events", "SELECT kind AS v FROM auth_events"),
            ("email_tokens", "SELECT email AS v FROM email_tokens"),
        ] {
            let rows = fleet.db.strings(sql);
            assert!(rows.is_empty(), "{table} still holds {rows:?}");
        }
        let others = fleet.db.strings("SELECT idempotency_key AS v FROM jobs WHERE dead_at IS NOT NULL");
        assert_eq!(others, vec!["password_reset:4567"], "only another address's dead mail is left");
        let payloads = fleet.db.strings("SELECT payload AS v FROM jobs WHERE idempotency_key <> 'password_reset:4567'");
        assert!(payloads.iter().all(|p| !p.contains("ada@example.org") && !p.contains("Analyst")), "{payloads:?}");
        // The address signs nobody in any more, and is free for a new account.
        assert_eq!(login(&fleet, "ada@example.org", PASSWORD).0, StatusCode::UNAUTHORIZED);
let again = fleet.request(Method::POST, "/signup").json(&json!({"email": "ada@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(again.status(), StatusCode::ACCEPTED);
        let mails = fleet.wait_for_mails("ada@example.org", 3);
        assert!(mails[2].contains("Subject: Confirm your email address"), "a new account, not a notice: {}", mails[2]);
    }
}
