//! No targeted lockout: a browser that signed in to an account before (its signed
//! device cookie) is throttled on its own failures only, whatever anyone else tries at
//! the address; the refresh grace belongs to the device that spent the token; renewing
//! a session sets no device cookie (only a password sign-in does); nginx
//! limits profile's password routes per client, IPv6 clients per /64.

use reqwest::blocking::Response;
use reqwest::header::{COOKIE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use flotilla_testkit::wait_until;

use super::login::{PASSWORD, cookie_value, decode_part, me, set_cookies, verified_account};
use super::*;

const WRONG: &str = "not the password at all";
const DEVICE: &str = "flotilla_device";

/// A sign-in through nginx, with a device cookie when given.
fn attempt(fleet: &Fleet, email: &str, password: &str, device: Option<&str>) -> Response {
    let mut request = fleet
        .request(Method::POST, "/login")
        .json(&json!({"email": email, "password": password}));
    if let Some(device) = device {
        request = request.header(COOKIE, format!("{DEVICE}={device}"));
    }
    request.send().unwrap()
}

fn status_of(fleet: &Fleet, email: &str, password: &str, device: Option<&str>) -> StatusCode {
    attempt(fleet, email, password, device).status()
}

/// Signs in with the right password and returns the device cookie the answer set.
fn known_device(fleet: &Fleet, email: &str, device: Option<&str>) -> String {
    let response = attempt(fleet, email, PASSWORD, device);
    assert_eq!(response.status(), StatusCode::OK, "{}", fleet.all_logs());
    cookie_value(&set_cookies(&response), DEVICE).expect("a device cookie")
}

/// Fails at `email` without a device cookie until the address's shared count answers 429.
fn lock_the_address(fleet: &Fleet, email: &str) {
    for _ in 0..5 {
        assert_eq!(
            status_of(fleet, email, WRONG, None),
            StatusCode::UNAUTHORIZED
        );
    }
    let refused = attempt(fleet, email, PASSWORD, None);
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert_eq!(
        refused.json::<Value>().unwrap()["error"],
        "too_many_attempts"
    );
}

/// The value with one character of its signature changed.
fn tampered(device: &str) -> String {
    let mut chars: Vec<char> = device.chars().collect();
    let at = chars.len() - 3;
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

on_both_databases! {
    fn an_attackers_failures_never_lock_out_a_known_device(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        verified_account(&fleet, "bob@example.org");

        // The owner signed in from this browser before: a signed device cookie, for
        // /login only, kept a year.
        let response = attempt(&fleet, "ada@example.org", PASSWORD, None);
        assert_eq!(response.status(), StatusCode::OK);
        let cookies = set_cookies(&response);
        let header = cookies.iter().find(|c| c.starts_with("flotilla_device=")).unwrap();
        for part in ["HttpOnly", "SameSite=Lax", "Path=/login", "Max-Age=31536000"] {
            assert!(header.contains(part), "{header}");
        }
        assert!(!header.contains("Secure"), "plain http in the tests: {header}");
        let ada_device = cookie_value(&cookies, DEVICE).unwrap();
        let ada_id = me(&fleet, response.json::<Value>().unwrap()["access_token"].as_str().unwrap()).1["id"].as_str().unwrap().to_owned();
        assert!(ada_device.starts_with(&format!("{ada_id}.")), "the entry names the account");

        // An attacker without it drives the address into 429 and keeps failing; the
        // owner's right password from the known browser is checked and works, again
        // and again, during the attack.
        lock_the_address(&fleet, "ada@example.org");
        for round in 0..3 {
            // Whenever the wait has passed, the attacker's next guess is checked (and
            // fails), and the one after it waits again: the address is at 429 now.
            let attacker: Vec<StatusCode> = (0..3)
                .map(|_| status_of(&fleet, "ada@example.org", WRONG, None))
                .take_while(|s| *s != StatusCode::TOO_MANY_REQUESTS)
                .collect();
            assert!(attacker.len() < 3 && attacker.iter().all(|s| *s == StatusCode::UNAUTHORIZED), "round {round}: {attacker:?}");
            let owner = attempt(&fleet, "ada@example.org", PASSWORD, Some(&ada_device));
            assert_eq!(owner.status(), StatusCode::OK, "round {round}: {:?}", owner.text());
        }
        // The same through the browser's form: a 303, the same device's entry signed
        // again (its nonce kept), and signing out leaves the device cookie alone.
        let form = [("email", "ada@example.org"), ("password", PASSWORD)];
        let response = fleet.request(Method::POST, "/login").header("origin", fleet.origin()).header(COOKIE, format!("{DEVICE}={ada_device}")).form(&form).send().unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookies = set_cookies(&response);
        let renewed = cookie_value(&cookies, DEVICE).unwrap();
        assert_eq!(renewed.split('.').take(2).collect::<Vec<_>>(), ada_device.split('.').take(2).collect::<Vec<_>>());
        let access = cookie_value(&cookies, "flotilla_access").unwrap();
        let signed_out = fleet.request(Method::POST, "/login/logout").bearer_auth(&access).send().unwrap();
        assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
        assert!(set_cookies(&signed_out).iter().all(|c| !c.starts_with(DEVICE)), "{:?}", set_cookies(&signed_out));
        // Where each attempt was counted: a known device apart; without a valid entry
        // for Ada (a forged or altered cookie, another account's, garbage) at the
        // address, like the attacker's.
        let address_key = flotilla_auth::token_hash("ada@example.org");
        let counted_at = |device: Option<&str>| {
            let status = status_of(&fleet, "ada@example.org", WRONG, device);
            assert!(matches!(status, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS), "{status}");
            fleet.db.strings("SELECT login_key AS v FROM auth_events ORDER BY id DESC LIMIT 1").remove(0)
        };
        assert_ne!(counted_at(Some(&ada_device)), address_key, "the known device counts apart");
        let other_account = ada_device.replacen(&ada_id, "00000000-0000-4000-8000-000000000000", 1);
        let bob_device = known_device(&fleet, "bob@example.org", None);
        for device in [None, Some(tampered(&ada_device)), Some(other_account), Some("garbage".to_owned()), Some(bob_device)] {
            assert_eq!(counted_at(device.as_deref()), address_key, "{device:?}");
        }
        // The owner's successes were counted apart too, so they never reset the
        // attacker's count: the only success at the address is the one before the attack.
        let successes = fleet.db.strings(&format!("SELECT id AS v FROM auth_events WHERE kind = 'login.success' AND login_key = '{address_key}'"));
        assert_eq!(successes.len(), 1, "{successes:?}");

        // One browser, two accounts: signing in to Bob from Ada's browser keeps Ada's
        // entry (same device, same count), so both work while both addresses are attacked.
        let shared_browser = known_device(&fleet, "bob@example.org", Some(&ada_device));
        assert_eq!(shared_browser.split('~').count(), 2, "{shared_browser}");
        lock_the_address(&fleet, "bob@example.org");
        assert_eq!(status_of(&fleet, "ada@example.org", PASSWORD, Some(&shared_browser)), StatusCode::OK);
        assert_eq!(status_of(&fleet, "bob@example.org", PASSWORD, Some(&shared_browser)), StatusCode::OK);

        // Every refusal of the attacker is recorded under the address, the owner's
        // sign-ins under the device, never with a password.
        let throttled = fleet.db.strings("SELECT COALESCE(user_id, '-') AS v FROM auth_events WHERE kind = 'login.throttled'");
        assert!(throttled.len() >= 6, "{throttled:?}");
        assert!(throttled.iter().all(|u| u == "-"), "the shared count's refusals name no account: {throttled:?}");
        assert!(!fleet.all_logs().contains(PASSWORD));
    }

    fn a_known_device_that_fails_is_delayed_on_its_own(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let laptop = known_device(&fleet, "ada@example.org", None);
        let phone = known_device(&fleet, "ada@example.org", None);
        assert_ne!(laptop, phone, "each browser has a device of its own");

        // The laptop fails too often: it waits, with Retry-After, like any count.
        for _ in 0..5 {
            assert_eq!(status_of(&fleet, "ada@example.org", WRONG, Some(&laptop)), StatusCode::UNAUTHORIZED);
        }
        let refused = attempt(&fleet, "ada@example.org", PASSWORD, Some(&laptop));
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = refused.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
        assert_eq!(refused.json::<Value>().unwrap()["error"], "too_many_attempts");

        // The phone is not delayed, and neither is the address's shared count: the
        // laptop's failures were its own.
        assert_eq!(status_of(&fleet, "ada@example.org", PASSWORD, Some(&phone)), StatusCode::OK);
        assert_eq!(status_of(&fleet, "ada@example.org", PASSWORD, None), StatusCode::OK);
        // The laptop's refusal is in the account's history.
        let throttled = fleet.db.strings("SELECT COALESCE(user_id, '-') AS v FROM auth_events WHERE kind = 'login.throttled'");
        assert_eq!(throttled.len(), 1, "{throttled:?}");
        assert_ne!(throttled[0], "-");

        // No permanent lock: once the wait has passed, the laptop gets in.
        let through = wait_until(std::time::Duration::from_secs(10), || status_of(&fleet, "ada@example.org", PASSWORD, Some(&laptop)) == StatusCode::OK);
        assert!(through, "{}", fleet.all_logs());
    }

    fn the_refresh_grace_belongs_to_the_device_that_spent_the_token(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let response = attempt(&fleet, "ada@example.org", PASSWORD, None);
        let device = cookie_value(&set_cookies(&response), DEVICE).unwrap();
        let body: Value = response.json().unwrap();
        let first = body["refresh_token"].as_str().unwrap().to_owned();
        let sid = decode_part(body["access_token"].as_str().unwrap(), 1)["sid"].as_str().unwrap().to_owned();
        let refresh = |token: &str, device: Option<&str>| {
            let mut request = fleet.request(Method::POST, "/login/refresh").json(&json!({"refresh_token": token}));
            if let Some(device) = device {
                request = request.header(COOKIE, format!("{DEVICE}={device}"));
            }
            let response = request.send().unwrap();
            let status = response.status();
            let cookies = set_cookies(&response);
            (status, cookies, response.json::<Value>().unwrap_or(Value::Null))
        };

        let (status, _, renewed) = refresh(&first, Some(&device));
        assert_eq!(status, StatusCode::OK, "{renewed}");
        let second = renewed["refresh_token"].as_str().unwrap().to_owned();
        let access = renewed["access_token"].as_str().unwrap().to_owned();

        // The same device again within seconds (a second tab): 409, cookies untouched,
        // the session goes on.
        let (status, cookies, body) = refresh(&first, Some(&device));
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("refresh_conflict")), "{body}");
        assert!(cookies.is_empty(), "{cookies:?}");
        assert_eq!(me(&fleet, &access).0, StatusCode::OK);

        // Another device of the same account is not the one that spent it: theft.
        let other_device = known_device(&fleet, "ada@example.org", None);
        let (status, _, body) = refresh(&first, Some(&other_device));
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("refresh_token_reused")), "{body}");
        let reason = fleet.db.strings(&format!("SELECT revoked_reason AS v FROM sessions WHERE id = '{sid}'"));
        assert_eq!(reason, vec!["refresh_token_reused"]);
        assert_eq!(refresh(&second, Some(&device)).2["error"], "token_invalid", "the session ended");

        // A copied refresh token carries no device cookie: within the seconds, from
        // the same address and browser, it ends the session.
        let response = attempt(&fleet, "ada@example.org", PASSWORD, Some(&device));
        let body: Value = response.json().unwrap();
        let token = body["refresh_token"].as_str().unwrap().to_owned();
        let sid = decode_part(body["access_token"].as_str().unwrap(), 1)["sid"].as_str().unwrap().to_owned();
        let (status, _, renewed) = refresh(&token, Some(&device));
        assert_eq!(status, StatusCode::OK, "{renewed}");
        let access = renewed["access_token"].as_str().unwrap().to_owned();
        let (status, cookies, body) = refresh(&token, None);
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("refresh_token_reused")), "{body}");
        assert!(cookies.iter().any(|c| c.starts_with("flotilla_refresh=;") || c.starts_with("flotilla_refresh=\"\"")), "{cookies:?}");
        let reason = fleet.db.strings(&format!("SELECT revoked_reason AS v FROM sessions WHERE id = '{sid}'"));
        assert_eq!(reason, vec!["refresh_token_reused"]);
        let refused = wait_until(std::time::Duration::from_secs(5), || me(&fleet, &access).0 == StatusCode::UNAUTHORIZED);
        assert!(refused, "{}", fleet.all_logs());
    }

    fn renewing_a_session_sets_no_device_cookie(db: TestDb) {
        // A stolen refresh token must not buy a known-device cookie, whose attempts
        // escape the address's count: only a password sign-in sets one.
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let response = attempt(&fleet, "ada@example.org", PASSWORD, None);
        assert!(cookie_value(&set_cookies(&response), DEVICE).is_some());
        let body: Value = response.json().unwrap();
        let mut token = body["refresh_token"].as_str().unwrap().to_owned();
        let renewals = [
            // JSON, the token in the body.
            (Method::POST, "/login/refresh", false),
            // A script of this site, with the refresh cookie.
            (Method::POST, "/login/refresh", true),
            // A browser sent to the sign-in page: silent renewal.
            (Method::GET, "/login?next=/profile", true),
        ];
        for (method, path, by_cookie) in renewals {
            let mut request = fleet.request(method.clone(), path);
            request = if by_cookie {
                request
                    .header(COOKIE, format!("flotilla_refresh={token}"))
                    .header("origin", fleet.origin())
                    .header("sec-fetch-site", "same-origin")
            } else {
                request.json(&json!({"refresh_token": token}))
            };
            let renewed = request.send().unwrap();
            assert!(renewed.status().is_success() || renewed.status().is_redirection(), "{method} {path}: {}", renewed.status());
            let cookies = set_cookies(&renewed);
            token = cookie_value(&cookies, "flotilla_refresh").unwrap_or_else(|| panic!("{method} {path} renewed: {cookies:?}"));
            assert!(cookie_value(&cookies, DEVICE).is_none(), "{method} {path}: {cookies:?}");
        }
    }

    fn behind_https_the_device_cookie_is_secure_and_prefixed(db: TestDb) {
        let fleet = Fleet::builder(db).env("FLOTILLA_PUBLIC_URL", "https://accounts.example.org").start();
        verified_account(&fleet, "ada@example.org");
        let response = attempt(&fleet, "ada@example.org", PASSWORD, None);
        let cookies = set_cookies(&response);
        let header = cookies.iter().find(|c| c.starts_with("__Secure-flotilla_device=")).unwrap_or_else(|| panic!("{cookies:?}"));
        for part in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/login"] {
            assert!(header.contains(part), "{header}");
        }
        let device = cookie_value(&cookies, "__Secure-flotilla_device").unwrap();
        lock_the_address(&fleet, "ada@example.org");
        let owner = fleet.request(Method::POST, "/login").header(COOKIE, format!("__Secure-flotilla_device={device}")).json(&json!({"email": "ada@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(owner.status(), StatusCode::OK);
    }

    fn nginx_limits_password_routes_per_client_and_ipv6_per_64(db: TestDb) {
        // One attempt a minute after a burst of 2: the 4th from one client is refused.
        let fleet = Fleet::builder(db)
            .env("FLOTILLA_PROXY_AUTH_RATE", "1r/m")
            .env("FLOTILLA_PROXY_AUTH_BURST", "2")
            .env("FLOTILLA_PROXY_REAL_IP_FROM", "127.0.0.1")
            .start();
        let send = |method: Method, path: &str, client: &str| {
            let response = fleet.request(method, path).header("X-Forwarded-For", client).json(&json!({})).send().unwrap();
            let status = response.status();
            let retry = response.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
            (status, retry, response.json::<Value>().unwrap_or(Value::Null))
        };
        let limited = |answer: &(StatusCode, Option<String>, Value)| {
            answer.0 == StatusCode::TOO_MANY_REQUESTS && answer.2["error"] == "rate_limited"
        };

        // Each route that checks a password, from a client of its own.
        let routes = [
            (Method::POST, "/profile/password"),
            (Method::POST, "/profile/email"),
            (Method::DELETE, "/profile/me"),
            (Method::POST, "/profile/delete"),
        ];
        for (n, (method, path)) in routes.into_iter().enumerate() {
            let client = format!("198.51.100.{n}");
            for i in 0..3 {
                let answer = send(method.clone(), path, &client);
                assert!(!limited(&answer), "{method} {path} #{i}: {answer:?}");
                assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "the service answered: {answer:?}");
            }
            let answer = send(method.clone(), path, &client);
            assert!(limited(&answer), "{method} {path}: {answer:?}");
            assert_eq!(answer.1.as_deref(), Some("60"), "Retry-After");
            // Reading is never limited, nor a change without a password.
            for (method, path) in [(Method::GET, "/profile"), (Method::GET, "/profile/me"), (Method::PATCH, "/profile/me")] {
                let answer = send(method.clone(), path, &client);
                assert!(!limited(&answer), "{method} {path}: {answer:?}");
            }
        }
        // The budget is per client and shared by the routes: another address is free,
        // and POST /login from the first client is refused too.
        assert!(limited(&send(Method::POST, "/login", "198.51.100.0")));
        assert!(!limited(&send(Method::POST, "/login", "198.51.100.77")));

        // IPv6: one /64 is one client, whatever the text form of its addresses.
        for (i, client) in ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:0db8:0001:0002:0:0:0:7"].into_iter().enumerate() {
            assert!(!limited(&send(Method::POST, "/login", client)), "#{i} {client}");
        }
        assert!(limited(&send(Method::POST, "/profile/password", "2001:db8:1:2:abcd::42")), "the same /64");
        // Another /64, even next door, has its own budget; a compressed prefix works too.
        assert!(!limited(&send(Method::POST, "/login", "2001:db8:1:3::1")));
        for client in ["2001:db8::1", "2001:db8:0:0:1::2", "2001:db8::abcd:0:0:3"] {
            assert!(!limited(&send(Method::POST, "/login", client)), "{client}");
        }
        assert!(limited(&send(Method::POST, "/login", "2001:db8:0:0:ffff::9")), "2001:db8:0:0::/64 spent");
        // IPv4 is counted per address, and an IPv4-mapped IPv6 address as its IPv4.
        for client in ["203.0.113.9", "::ffff:203.0.113.9", "203.0.113.9"] {
            assert!(!limited(&send(Method::POST, "/login", client)), "{client}");
        }
        assert!(limited(&send(Method::POST, "/login", "::ffff:203.0.113.9")));
        assert!(!limited(&send(Method::POST, "/login", "203.0.113.10")));
    }
}
