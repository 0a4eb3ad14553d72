//! Sign-in, tokens, sessions and password reset, through nginx; tokens checked by
//! another service (profile) with login's public keys only.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_auth::keys::{KeyRing, SigningKey};
use flotilla_testkit::{link_param, wait_until};
use reqwest::Method;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};

use super::links::post_token;
use super::*;

pub(super) const PASSWORD: &str = "correct horse battery staple";

/// Signs up `email` and follows the link of the verification mail.
pub(super) fn verified_account(fleet: &Fleet, email: &str) {
    verified_account_with(fleet, email, PASSWORD);
}

/// [`verified_account`] with a password of its own.
pub(super) fn verified_account_with(fleet: &Fleet, email: &str, password: &str) {
    let response = fleet
        .request(Method::POST, "/signup")
        .json(&json!({"email": email, "password": password}))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mails = fleet.wait_for_mails(email, 1);
    let token = link_param(&mails[0], "token").unwrap();
    let verified = post_token(fleet, "/signup/verify", &token);
    assert_eq!(verified.status(), StatusCode::OK);
}

pub(super) fn login(fleet: &Fleet, email: &str, password: &str) -> (StatusCode, Value) {
    let response = fleet
        .request(Method::POST, "/login")
        .json(&json!({"email": email, "password": password}))
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// A fresh session's (access token, refresh token).
pub(super) fn sign_in(fleet: &Fleet, email: &str) -> (String, String) {
    let (status, body) = login(fleet, email, PASSWORD);
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

pub(super) fn refresh(fleet: &Fleet, refresh_token: &str) -> (StatusCode, Value) {
    let response = fleet
        .request(Method::POST, "/login/refresh")
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// What another service (profile) says about a token.
pub(super) fn me(fleet: &Fleet, access: &str) -> (StatusCode, Value) {
    let response = fleet
        .request(Method::GET, "/profile/me")
        .bearer_auth(access)
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

pub(super) fn bearer_post(fleet: &Fleet, path: &str, access: &str) -> StatusCode {
    fleet
        .request(Method::POST, path)
        .bearer_auth(access)
        .send()
        .unwrap()
        .status()
}

/// How long until profile refuses `access`, polling; panics past `limit`.
pub(super) fn refused_within(
    fleet: &Fleet,
    access: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    let refused = wait_until(limit, || me(fleet, access).0 == StatusCode::UNAUTHORIZED);
    let took = since.elapsed();
    assert!(
        refused,
        "profile still accepts the token after {took:?}:\n{}",
        fleet.all_logs()
    );
    took
}

/// Waits until a sign-out reaches profile over the bus (its subscription is up), so
/// that the timings measured next are the bus's. Catch-up must be slow in the fleet.
pub(super) fn bus_is_up(fleet: &Fleet, email: &str) {
    let up = wait_until(Duration::from_secs(20), || {
        let (access, _) = sign_in(fleet, email);
        assert_eq!(
            bearer_post(fleet, "/login/logout", &access),
            StatusCode::NO_CONTENT
        );
        wait_until(Duration::from_secs(1), || {
            me(fleet, &access).0 == StatusCode::UNAUTHORIZED
        })
    });
    assert!(
        up,
        "revocations never arrived over the bus:\n{}",
        fleet.all_logs()
    );
}

pub(super) fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub(super) fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

pub(super) fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        let (pair, _) = c.split_once(';').unwrap_or((c, ""));
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| v.to_owned())
    })
}

/// The fleet's signing key, as a thief of the key folder would have it: its only key,
/// as the fleets that use this never add one.
pub(super) fn signing_key(fleet: &Fleet) -> SigningKey {
    let ring = KeyRing::load(&fleet.data_dir().join("keys")).unwrap();
    assert_eq!(ring.keys().len(), 1, "one key, which signs");
    let only = ring.newest().unwrap();
    let pem =
        std::fs::read_to_string(fleet.data_dir().join(format!("keys/{}.pem", only.kid))).unwrap();
    SigningKey::from_pem(&only.kid, &pem).unwrap()
}

pub(super) fn slow_catch_up(db: TestDb) -> Fleet {
    Fleet::builder(db)
        .env("FLOTILLA_REVOCATION_CATCHUP_SECS", "60")
        .start()
}

/// A stored timestamp, as either backend prints it as text.
pub(super) fn timestamp(text: &str) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(&text.replace('T', " "), "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `later - earlier` for the rows of `sql`, whose `v` is `earlier|later`.
pub(super) fn spans(fleet: &Fleet, sql: &str) -> Vec<chrono::TimeDelta> {
    fleet
        .db
        .strings(sql)
        .iter()
        .map(|row| {
            let (earlier, later) = row.split_once('|').unwrap();
            timestamp(later) - timestamp(earlier)
        })
        .collect()
}

/// How long the emailed links of `purpose` work (`expires_at - created_at`), each.
pub(super) fn link_lifetimes(fleet: &Fleet, purpose: &str) -> Vec<chrono::TimeDelta> {
    let sql = format!(
        "SELECT CAST(created_at AS TEXT) || '|' || CAST(expires_at AS TEXT) AS v \
         FROM email_tokens WHERE purpose = '{purpose}'"
    );
    let lifetimes = spans(fleet, &sql);
    assert!(!lifetimes.is_empty(), "no {purpose} link stored");
    lifetimes
}

on_both_databases! {
    fn login_refresh_rotation_and_reuse_detection(db: TestDb) {
        let fleet = slow_catch_up(db);
        verified_account(&fleet, "ada@example.org");
        bus_is_up(&fleet, "ada@example.org");

        let response = fleet
            .request(Method::POST, "/login")
            .json(&json!({"email": "ADA@example.org", "password": PASSWORD}))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookies = set_cookies(&response);
        let body: Value = response.json().unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let access = body["access_token"].as_str().unwrap().to_owned();
        let first_refresh = body["refresh_token"].as_str().unwrap().to_owned();
        assert!(URL_SAFE_NO_PAD.decode(&first_refresh).unwrap().len() >= 32, "256-bit refresh token");

        let header = decode_part(&access, 0);
        assert_eq!(header["alg"], "EdDSA");
        assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));
        let claims = decode_part(&access, 1);
        for claim in ["sub", "sid", "role", "email_verified", "iss", "aud", "iat", "exp", "nbf"] {
            assert!(!claims[claim].is_null(), "claim {claim} in {claims}");
        }
        assert_eq!(claims["role"], "user");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
        // How the person signed in (RFC 8176), kept with the session.
        assert_eq!(claims["amr"], json!(["pwd"]), "{claims}");
        let sid = claims["sid"].as_str().unwrap();
        assert_eq!(fleet.db.strings(&format!("SELECT amr AS v FROM sessions WHERE id = '{sid}'")), ["pwd"]);

        // Cookies: HttpOnly, SameSite=Lax; the refresh cookie only for /login.
        let access_cookie = cookies.iter().find(|c| c.starts_with("flotilla_access=")).unwrap();
        let refresh_cookie = cookies.iter().find(|c| c.starts_with("flotilla_refresh=")).unwrap();
        for c in [access_cookie, refresh_cookie] {
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
        }
        assert!(refresh_cookie.contains("Path=/login"), "{refresh_cookie}");
        assert!(access_cookie.contains("Path=/;") || access_cookie.ends_with("Path=/"), "{access_cookie}");

        // Another service trusts the token with the public keys alone.
        let (status, profile) = me(&fleet, &access);
        assert_eq!(status, StatusCode::OK, "{profile}");
        assert_eq!(profile["email"], "ada@example.org");
        assert_eq!(profile["id"], claims["sub"]);

        // The refresh token is stored hashed, one row per token.
        let stored = fleet.db.strings("SELECT token_hash AS v FROM refresh_tokens");
        assert!(stored.iter().all(|h| h.len() == 64 && *h != first_refresh));

        // Rotation: a new pair; the old refresh token is spent (by this browser: its
        // device cookie).
        let device = cookie_value(&cookies, "flotilla_device").unwrap();
        let spent = fleet.request(Method::POST, "/login/refresh").header(COOKIE, format!("flotilla_device={device}")).json(&json!({"refresh_token": first_refresh})).send().unwrap();
        let (status, renewed): (StatusCode, Value) = (spent.status(), spent.json().unwrap());
        assert_eq!(status, StatusCode::OK, "{renewed}");
        let second_refresh = renewed["refresh_token"].as_str().unwrap().to_owned();
        let second_access = renewed["access_token"].as_str().unwrap().to_owned();
        assert_ne!(second_refresh, first_refresh);
        assert_eq!(decode_part(&second_access, 1)["sid"], claims["sid"], "same session");
        assert_eq!(decode_part(&second_access, 1)["amr"], json!(["pwd"]), "the session's, again");
        assert_eq!(me(&fleet, &second_access).0, StatusCode::OK);

        // The same token again within seconds, from the same device, is a second tab
        // racing the first: 409, no cookie touched, and the session lives on.
        let raced = fleet.request(Method::POST, "/login/refresh").header(COOKIE, format!("flotilla_device={device}")).json(&json!({"refresh_token": first_refresh})).send().unwrap();
        assert_eq!(raced.status(), StatusCode::CONFLICT);
        assert!(set_cookies(&raced).is_empty(), "the winner's new cookies stay");
        let body: Value = raced.json().unwrap();
        assert_eq!(body["error"], "refresh_conflict", "{body}");
        assert!(body["fields"]["refresh_token"].is_string(), "{body}");
        assert_eq!(me(&fleet, &second_access).0, StatusCode::OK);

        // Theft detection: the spent token without that device's cookie, even within
        // seconds, ends the whole session.
        let reused_at = Instant::now();
        let stolen = fleet.request(Method::POST, "/login/refresh").header("user-agent", "curl/8.0").json(&json!({"refresh_token": first_refresh})).send().unwrap();
        assert_eq!(stolen.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(stolen.json::<Value>().unwrap()["error"], "refresh_token_reused");
        let (status, body) = refresh(&fleet, &second_refresh);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "the thief's newer token dies too");
        assert_eq!(body["error"], "token_invalid");
        let took = refused_within(&fleet, &second_access, reused_at, Duration::from_secs(1));
        eprintln!("reuse-revoked token refused by profile after {took:?}");
        let reason = fleet.db.strings(&format!(
            "SELECT revoked_reason AS v FROM sessions WHERE id = '{}'",
            claims["sid"].as_str().unwrap()
        ));
        assert_eq!(reason, vec!["refresh_token_reused"]);

        // And from the same client once the seconds have passed.
        let (_, later_refresh) = sign_in(&fleet, "ada@example.org");
        let (status, renewed) = refresh(&fleet, &later_refresh);
        assert_eq!(status, StatusCode::OK, "{renewed}");
        fleet.db.execute("UPDATE refresh_tokens SET used_at = '2000-01-01 00:00:00' WHERE used_at IS NOT NULL");
        let (status, body) = refresh(&fleet, &later_refresh);
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("refresh_token_reused")));
        let later_sid = decode_part(renewed["access_token"].as_str().unwrap(), 1)["sid"].as_str().unwrap().to_owned();
        let reason = fleet.db.strings(&format!("SELECT revoked_reason AS v FROM sessions WHERE id = '{later_sid}'"));
        assert_eq!(reason, vec!["refresh_token_reused"]);
    }

    fn logout_and_logout_all_reach_other_services_within_a_second(db: TestDb) {
        let fleet = slow_catch_up(db);
        verified_account(&fleet, "grace@example.org");
        bus_is_up(&fleet, "grace@example.org");

        let (access, refresh_token) = sign_in(&fleet, "grace@example.org");
        let (other_access, other_refresh) = sign_in(&fleet, "grace@example.org");
        assert_eq!(me(&fleet, &access).0, StatusCode::OK);
        let at = Instant::now();
        assert_eq!(bearer_post(&fleet, "/login/logout", &access), StatusCode::NO_CONTENT);
        let took = refused_within(&fleet, &access, at, Duration::from_secs(1));
        eprintln!("logged-out token refused by profile after {took:?}");
        let (status, body) = me(&fleet, &access);
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_revoked")));
        assert_eq!(refresh(&fleet, &refresh_token).0, StatusCode::UNAUTHORIZED);
        assert_eq!(me(&fleet, &other_access).0, StatusCode::OK, "the other session lives on");

        // Without any token: 401.
        assert_eq!(fleet.request(Method::POST, "/login/logout").send().unwrap().status(), StatusCode::UNAUTHORIZED);

        let (third_access, _) = sign_in(&fleet, "grace@example.org");
        let at = Instant::now();
        assert_eq!(bearer_post(&fleet, "/login/logout-all", &third_access), StatusCode::NO_CONTENT);
        refused_within(&fleet, &other_access, at, Duration::from_secs(1));
        refused_within(&fleet, &third_access, at, Duration::from_secs(1));
        assert_eq!(refresh(&fleet, &other_refresh).0, StatusCode::UNAUTHORIZED);
        let live = fleet.db.strings("SELECT id AS v FROM sessions WHERE revoked_at IS NULL");
        assert!(live.is_empty(), "{live:?}");
        let kinds = fleet.db.strings("SELECT kind AS v FROM auth_events WHERE kind LIKE 'logout%' ORDER BY id");
        assert!(kinds.contains(&"logout".to_owned()) && kinds.contains(&"logout_all".to_owned()), "{kinds:?}");
    }

    fn revocation_holds_with_the_bus_down_within_the_catch_up_interval(db: TestDb) {
        let mut fleet = Fleet::builder(db)
            .env("FLOTILLA_REVOCATION_CATCHUP_SECS", "2")
            .start();
        verified_account(&fleet, "hedy@example.org");
        fleet.stop_service("worker", libc::SIGTERM);
        let (access, _) = sign_in(&fleet, "hedy@example.org");
        assert_eq!(me(&fleet, &access).0, StatusCode::OK);
        let at = Instant::now();
        assert_eq!(bearer_post(&fleet, "/login/logout", &access), StatusCode::NO_CONTENT);
        // Two catch-up intervals at most (plus the request itself).
        let took = refused_within(&fleet, &access, at, Duration::from_millis(4500));
        eprintln!("with the bus down, refused after {took:?}");
    }

    fn wrong_password_unknown_address_unverified_and_disabled(db: TestDb) {
        let fleet = slow_catch_up(db);
        verified_account(&fleet, "ada@example.org");
        bus_is_up(&fleet, "ada@example.org");
        let (access, refresh_token) = sign_in(&fleet, "ada@example.org");
        let wrong = login(&fleet, "ada@example.org", "not the password at all");
        let unknown = login(&fleet, "nobody@example.org", PASSWORD);
        assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong, unknown, "the same answer whether or not the account exists");
        assert_eq!(wrong.1["error"], "invalid_credentials");

        // Each missing field is named.
        let (status, body) = login(&fleet, "", "");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["fields"]["email"], "is required");
        assert_eq!(body["fields"]["password"], "is required");
        let response = fleet.request(Method::POST, "/login").json(&json!({"email": "a@b.c", "password": "x", "admin": true})).send().unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused");
        assert_eq!(response.json::<Value>().unwrap()["fields"]["admin"], "is not a field of this request");

        // Unverified: only with the right password does one learn it.
        fleet.request(Method::POST, "/signup").json(&json!({"email": "new@example.org", "password": PASSWORD})).send().unwrap();
        let (status, body) = login(&fleet, "new@example.org", PASSWORD);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "email_not_verified");
        assert!(body["message"].as_str().unwrap().contains("/signup/resend"));
        assert_eq!(login(&fleet, "new@example.org", "wrong password here").0, StatusCode::UNAUTHORIZED);

        fleet.db.execute("UPDATE users SET disabled_at = created_at WHERE email = 'ada@example.org'");
        // A session open when the account was disabled: profile refuses the account
        // (not the session yet); its refresh is refused and the session ends
        // fleet-wide at once (over the bus: the catch-up is a minute away).
        let (status, body) = me(&fleet, &access);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_ne!(body["error"], "session_revoked", "{body}");
        let at = Instant::now();
        let (status, body) = refresh(&fleet, &refresh_token);
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("account_disabled")), "{body}");
        let ended = wait_until(Duration::from_secs(1), || me(&fleet, &access).1["error"] == "session_revoked");
        assert!(ended, "profile did not learn of the ended session within 1 s ({:?}):\n{}", at.elapsed(), fleet.all_logs());
        let sid = decode_part(&access, 1)["sid"].as_str().unwrap().to_owned();
        let reason = fleet.db.strings(&format!("SELECT revoked_reason AS v FROM sessions WHERE id = '{sid}'"));
        assert_eq!(reason, vec!["account_disabled"]);
        assert_eq!(refresh(&fleet, &refresh_token).1["error"], "token_invalid", "the session is over");
        let (status, body) = login(&fleet, "ada@example.org", PASSWORD);
        assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("account_disabled")));
        assert_eq!(login(&fleet, "ada@example.org", "wrong password here").0, StatusCode::UNAUTHORIZED);

        // Every attempt is recorded, the password never.
        let kinds = fleet.db.strings("SELECT kind AS v FROM auth_events ORDER BY id");
        for kind in ["login.failure", "login.refused_unverified", "login.refused_disabled"] {
            assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
        }
        let rows = fleet.db.strings(
            "SELECT kind || '|' || COALESCE(user_id, '') || '|' || COALESCE(login_key, '') || '|' || client_addr || '|' || user_agent AS v FROM auth_events",
        );
        assert!(rows.iter().all(|r| !r.contains(PASSWORD) && !r.contains("not the password")), "{rows:?}");
        assert!(rows.iter().all(|r| r.contains("|127.0.0.1|")), "{rows:?}");
        assert!(!fleet.all_logs().contains(PASSWORD), "no password in any log");
    }

    fn sessions_end_when_idle_for_30_days_or_after_90(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (idle_access, idle_refresh) = sign_in(&fleet, "ada@example.org");
        let (old_access, old_refresh) = sign_in(&fleet, "ada@example.org");
        let sid = |access: &str| decode_part(access, 1)["sid"].as_str().unwrap().to_owned();
        let (idle_sid, old_sid) = (sid(&idle_access), sid(&old_access));
        let lifetimes = |sid: &str| {
            let sql = |column: &str| format!("SELECT CAST(created_at AS TEXT) || '|' || CAST({column} AS TEXT) AS v FROM sessions WHERE id = '{sid}'");
            (spans(&fleet, &sql("idle_expires_at"))[0], spans(&fleet, &sql("expires_at"))[0])
        };
        assert_eq!(lifetimes(&idle_sid), (chrono::TimeDelta::days(30), chrono::TimeDelta::days(90)));

        // A refresh moves the idle limit on, not the end.
        let (status, body) = refresh(&fleet, &idle_refresh);
        assert_eq!(status, StatusCode::OK, "{body}");
        let idle_refresh = body["refresh_token"].as_str().unwrap().to_owned();
        let (idle, max) = lifetimes(&idle_sid);
        assert!(idle >= chrono::TimeDelta::days(30) && idle < max, "{idle} {max}");
        assert_eq!(max, chrono::TimeDelta::days(90));

        // Unused for 30 days: over, though within its 90.
        fleet.db.execute(&format!("UPDATE sessions SET idle_expires_at = '2000-01-01 00:00:00' WHERE id = '{idle_sid}'"));
        let (status, body) = refresh(&fleet, &idle_refresh);
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_expired")), "{body}");
        // Used every day, but 90 days old: over too.
        fleet.db.execute(&format!("UPDATE sessions SET expires_at = '2000-01-01 00:00:00' WHERE id = '{old_sid}'"));
        let (status, body) = refresh(&fleet, &old_refresh);
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_expired")), "{body}");
    }

    fn failures_are_throttled_per_address_with_retry_after_and_no_lockout(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        for _ in 0..5 {
            assert_eq!(login(&fleet, "ada@example.org", "wrong password here").0, StatusCode::UNAUTHORIZED);
        }
        let response = fleet.request(Method::POST, "/login").json(&json!({"email": "ada@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
        let retry: u64 = response.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"], "too_many_attempts");

        // An address without an account is throttled the same way (no enumeration).
        for _ in 0..5 {
            login(&fleet, "nobody@example.org", "wrong password here");
        }
        assert_eq!(login(&fleet, "nobody@example.org", PASSWORD).0, StatusCode::TOO_MANY_REQUESTS);

        // No permanent lock: once the delay has passed, the right password works.
        let at = Instant::now();
        let through = wait_until(Duration::from_secs(10), || login(&fleet, "ada@example.org", PASSWORD).0 == StatusCode::OK);
        assert!(through, "still refused after {:?}", at.elapsed());
        // A further failure after a success starts the count again.
        assert_eq!(login(&fleet, "ada@example.org", "wrong password here").0, StatusCode::UNAUTHORIZED);
        assert_eq!(login(&fleet, "ada@example.org", PASSWORD).0, StatusCode::OK);
    }

    fn parallel_guesses_get_no_more_than_the_free_attempts(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        // Sixteen guesses at once: all pass nginx together, and each is checked against
        // the failures recorded so far plus those still being checked.
        let url = fleet.url("/login");
        let start = std::sync::Barrier::new(16);
        let statuses: Vec<StatusCode> = std::thread::scope(|scope| {
            let guesses: Vec<_> = (0..16)
                .map(|n| {
                    let (url, start) = (&url, &start);
                    scope.spawn(move || {
                        let client = reqwest::blocking::Client::new();
                        let request = client.post(url).json(&json!({"email": "ada@example.org", "password": format!("guess number {n:02} here")}));
                        start.wait();
                        request.send().unwrap().status()
                    })
                })
                .collect();
            guesses.into_iter().map(|g| g.join().unwrap()).collect()
        });
        let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
        let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        assert_eq!(checked + refused, 16, "{statuses:?}");
        assert!((1..=5).contains(&checked), "{checked} guesses were checked: {statuses:?}");
        let failures = fleet.db.strings("SELECT kind AS v FROM auth_events WHERE kind = 'login.failure'");
        assert_eq!(failures.len(), checked);
    }

    fn a_sign_in_from_a_new_browser_is_mailed_when_configured(db: TestDb) {
        let fleet = Fleet::builder(db).env("FLOTILLA_LOGIN_NEW_DEVICE_EMAIL", "true").start();
        verified_account(&fleet, "ada@example.org");
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        let sign_in_with = |agent: &str, password: &str| {
            fleet.request(Method::POST, "/login").header("user-agent", agent)
                .json(&json!({"email": "ada@example.org", "password": password})).send().unwrap().status()
        };
        // The first sign-in is not news, nor a second from the same browser, nor a
        // wrong password from a new one.
        assert_eq!(sign_in_with(firefox, PASSWORD), StatusCode::OK);
        assert_eq!(sign_in_with(firefox, PASSWORD), StatusCode::OK);
        assert_eq!(sign_in_with(chrome, "not the password at all"), StatusCode::UNAUTHORIZED);
        assert_eq!(sign_in_with(chrome, PASSWORD), StatusCode::OK);
        let mails = fleet.wait_for_mails("ada@example.org", 2);
        let notice = &mails[1];
        assert!(notice.contains("Subject: New sign-in to your account"), "{notice}");
        assert!(notice.contains("Chrome on Windows"), "{notice}");
        assert!(notice.contains("/login/forgot"), "{notice}");
        // Known from now on; and an update of a known browser is not a new device.
        assert_eq!(sign_in_with(chrome, PASSWORD), StatusCode::OK);
        assert_eq!(sign_in_with(&firefox.replace("120.0", "121.0"), PASSWORD), StatusCode::OK);
        let queued = fleet.db.strings("SELECT idempotency_key AS v FROM jobs WHERE idempotency_key LIKE 'new_device_login:%'");
        assert_eq!(queued.len(), 1, "{queued:?}");
    }

    fn password_reset_is_single_use_expires_and_ends_every_session(db: TestDb) {
        let fleet = slow_catch_up(db);
        verified_account(&fleet, "ada@example.org");
        bus_is_up(&fleet, "ada@example.org");
        let (access, refresh_token) = sign_in(&fleet, "ada@example.org");

        let ask = |email: &str| {
            let response = fleet.request(Method::POST, "/login/forgot").json(&json!({"email": email})).send().unwrap();
            (response.status(), response.json::<Value>().unwrap())
        };
        let known = ask("Ada@Example.org");
        assert_eq!(known.0, StatusCode::ACCEPTED);
        assert_eq!(known, ask("nobody@example.org"), "the same answer for an unknown address");
        let (status, body) = ask("not an address");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["fields"]["email"].is_string());

        let mails = fleet.wait_for_mails("ada@example.org", 2);
        let reset_mail = mails.iter().find(|m| m.contains("Subject: Reset your password")).unwrap();
        let token = link_param(reset_mail, "token").unwrap();
        assert_eq!(link_lifetimes(&fleet, "password_reset"), vec![chrono::TimeDelta::hours(1)], "valid 1 hour");
        assert_eq!(fleet.get(&format!("/login/reset?token={token}")).status(), StatusCode::OK);
        assert_eq!(fleet.get_html(&format!("/login/reset?token={token}")).status(), StatusCode::OK);

        let reset = |token: &str, password: &str| {
            let response = fleet.request(Method::POST, "/login/reset").json(&json!({"token": token, "password": password})).send().unwrap();
            (response.status(), response.json::<Value>().unwrap_or(Value::Null))
        };
        // The signup rules apply.
        let (status, body) = reset(&token, "short");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["fields"]["password"].as_str().unwrap().contains("at least 12"));

        let new_password = "a brand new passphrase 2026";
        let at = Instant::now();
        let (status, body) = reset(&token, new_password);
        assert_eq!(status, StatusCode::OK, "{body}");
        refused_within(&fleet, &access, at, Duration::from_secs(1));
        assert_eq!(refresh(&fleet, &refresh_token).0, StatusCode::UNAUTHORIZED);
        let (status, body) = reset(&token, "yet another passphrase 99");
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("token_invalid")), "single use");
        assert_eq!(login(&fleet, "ada@example.org", PASSWORD).0, StatusCode::UNAUTHORIZED);
        assert_eq!(login(&fleet, "ada@example.org", new_password).0, StatusCode::OK);
        let mails = fleet.wait_for_mails("ada@example.org", 3);
        assert!(mails.iter().any(|m| m.contains("Subject: Your password was changed")), "a notice is sent");

        // An expired link.
        fleet.db.execute("DELETE FROM email_tokens WHERE purpose = 'password_reset'");
        assert_eq!(ask("ada@example.org").0, StatusCode::ACCEPTED);
        let mails = fleet.wait_for_mails("ada@example.org", 4);
        let token = link_param(mails.iter().rev().find(|m| m.contains("Subject: Reset your password")).unwrap(), "token").unwrap();
        fleet.db.execute("UPDATE email_tokens SET expires_at = created_at WHERE purpose = 'password_reset' AND used_at IS NULL");
        let (status, body) = reset(&token, "yet another passphrase 99");
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("token_expired")));
        assert_eq!(fleet.get(&format!("/login/reset?token={token}")).status(), StatusCode::BAD_REQUEST);

        // A reset voids the account's other links: an earlier reset link and a
        // change of address asked for by whoever knew the old password.
        let (status, body) = login(&fleet, "ada@example.org", new_password);
        assert_eq!(status, StatusCode::OK, "{body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let changed = fleet.request(Method::POST, "/profile/email").bearer_auth(&access).json(&json!({"new_email": "thief@example.org", "password": new_password})).send().unwrap();
        assert_eq!(changed.status(), StatusCode::ACCEPTED);
        let change_token = link_param(&fleet.wait_for_mails("thief@example.org", 1)[0], "token").unwrap();
        let resets = |fleet: &Fleet| -> Vec<String> {
            fleet.mails_to("ada@example.org").iter().filter(|m| m.contains("Subject: Reset your password")).map(|m| link_param(m, "token").unwrap()).collect()
        };
        let before = resets(&fleet).len();
        let a_minute_ago = "UPDATE email_tokens SET created_at = '2000-01-01 00:00:00' WHERE purpose = 'password_reset'";
        fleet.db.execute(a_minute_ago);
        assert_eq!(ask("ada@example.org").0, StatusCode::ACCEPTED);
        assert!(wait_until(Duration::from_secs(15), || resets(&fleet).len() == before + 1), "{}", fleet.all_logs());
        fleet.db.execute(a_minute_ago);
        assert_eq!(ask("ada@example.org").0, StatusCode::ACCEPTED);
        assert!(wait_until(Duration::from_secs(15), || resets(&fleet).len() == before + 2), "{}", fleet.all_logs());
        let (earlier, latest) = (resets(&fleet)[before].clone(), resets(&fleet)[before + 1].clone());
        for (path, token) in [("/login/reset", &earlier), ("/profile/email/confirm", &change_token)] {
            assert_eq!(fleet.get(&format!("{path}?token={token}")).status(), StatusCode::OK, "{path}: valid before the reset");
        }
        assert_eq!(reset(&latest, "the latest passphrase 2027").0, StatusCode::OK);
        let (status, body) = reset(&earlier, "an earlier link's passphrase");
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("token_invalid")), "the earlier reset link is void");
        let confirm = post_token(&fleet, "/profile/email/confirm", &change_token);
        assert_eq!(confirm.status(), StatusCode::BAD_REQUEST, "the change of address is void");
        let unused = fleet.db.strings("SELECT purpose AS v FROM email_tokens WHERE used_at IS NULL");
        assert!(unused.is_empty(), "{unused:?}");
        assert_eq!(login(&fleet, "ada@example.org", "the latest passphrase 2027").0, StatusCode::OK);
        assert_eq!(login(&fleet, "thief@example.org", "the latest passphrase 2027").0, StatusCode::UNAUTHORIZED);

        // A reset counts the address as confirmed (the link proved it): an account
        // whose verification link never was used may sign in after it.
        let signed_up = fleet.request(Method::POST, "/signup").json(&json!({"email": "new@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
        fleet.wait_for_mails("new@example.org", 1);
        assert_eq!(login(&fleet, "new@example.org", PASSWORD).1["error"], "email_not_verified");
        assert_eq!(ask("new@example.org").0, StatusCode::ACCEPTED);
        let mails = fleet.wait_for_mails("new@example.org", 2);
        let token = link_param(mails.iter().find(|m| m.contains("Subject: Reset your password")).unwrap(), "token").unwrap();
        assert_eq!(reset(&token, "a first passphrase of mine").0, StatusCode::OK);
        let (status, body) = login(&fleet, "new@example.org", "a first passphrase of mine");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(decode_part(body["access_token"].as_str().unwrap(), 1)["email_verified"], true);
        let verified = fleet.db.strings("SELECT email AS v FROM users WHERE email_verified_at IS NOT NULL AND email = 'new@example.org'");
        assert_eq!(verified, vec!["new@example.org"]);
    }

    fn a_service_can_trust_tokens_with_a_jwks_file_instead_of_the_url(db: TestDb) {
        let keys = flotilla_testkit::TempDir::new("jwks");
        let file = keys.path().join("jwks.json");
        // Login ignores the file (it has its own keys); profile reads only the file.
        let fleet = Fleet::builder(db).env("FLOTILLA_JWKS_FILE", file.to_str().unwrap()).start();
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        assert_eq!(me(&fleet, &access).0, StatusCode::UNAUTHORIZED, "no file yet: no key known");
        let jwks = fleet.run("flotilla-login", &["keys", "jwks"]);
        assert!(jwks.status.success(), "{}", String::from_utf8_lossy(&jwks.stderr));
        let text = String::from_utf8(jwks.stdout).unwrap();
        assert!(!text.contains("\"d\""), "never a private part: {text}");
        std::fs::write(&file, &text).unwrap();
        // An unknown kid makes the service read its source again (at most every 2 s).
        let trusted = wait_until(Duration::from_secs(10), || me(&fleet, &access).0 == StatusCode::OK);
        assert!(trusted, "{}", fleet.all_logs());
        let session = fleet.request(Method::GET, "/login/session").bearer_auth(&access).send().unwrap();
        assert_eq!(session.status(), StatusCode::OK, "login trusts its own keys");
    }

    fn behind_https_the_cookies_are_secure_and_prefixed(db: TestDb) {
        let fleet = Fleet::builder(db).env("FLOTILLA_PUBLIC_URL", "https://accounts.example.org").start();
        verified_account(&fleet, "ada@example.org");
        let response = fleet.request(Method::POST, "/login").json(&json!({"email": "ada@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookies = set_cookies(&response);
        let access = cookies.iter().find(|c| c.starts_with("__Host-flotilla_access=")).unwrap_or_else(|| panic!("{cookies:?}"));
        let refresh = cookies.iter().find(|c| c.starts_with("__Secure-flotilla_refresh=")).unwrap_or_else(|| panic!("{cookies:?}"));
        for c in [access, refresh] {
            assert!(c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
        }
        // __Host- demands Path=/ and no Domain.
        assert!(access.contains("Path=/") && !access.contains("Domain"), "{access}");
        assert!(refresh.contains("Path=/login"), "{refresh}");
        let token = access.split(';').next().unwrap();
        let me = fleet.request(Method::GET, "/profile/me").header("cookie", token).send().unwrap();
        assert_eq!(me.status(), StatusCode::OK, "another service reads the prefixed cookie");
        let body: Value = response.json().unwrap();
        let claims = decode_part(body["access_token"].as_str().unwrap(), 1);
        assert_eq!(claims["iss"], "https://accounts.example.org/login");
    }

    fn forged_tokens_are_refused_by_other_services(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let claims = decode_part(&access, 1);
        let key = signing_key(&fleet);
        let now = chrono_now();
        let sign = |key: &SigningKey, claims: &Value| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.kid = Some(key.kid.clone());
            jsonwebtoken::encode(&header, claims, &key.encoding_key()).unwrap()
        };
        // The control: a token made with the real key is accepted.
        assert_eq!(me(&fleet, &sign(&key, &claims)).0, StatusCode::OK);

        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()));
        let public = URL_SAFE_NO_PAD.decode(key.public_x()).unwrap();
        let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        hs_header.kid = Some(key.kid.clone());
        let hs256 = jsonwebtoken::encode(&hs_header, &claims, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
        let hs256_x = jsonwebtoken::encode(&hs_header, &claims, &jsonwebtoken::EncodingKey::from_secret(key.public_x().as_bytes())).unwrap();
        let parts: Vec<&str> = access.split('.').collect();
        let mut admin = claims.clone();
        admin["role"] = "admin".into();
        let altered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(admin.to_string()), parts[2]);
        let mut old = claims.clone();
        old["iat"] = (now - 3600).into();
        old["nbf"] = (now - 3600).into();
        old["exp"] = (now - 1800).into();
        let expired = sign(&key, &old);
        let stranger = sign(&SigningKey::generate(), &claims);
        let mut other_audience = claims.clone();
        other_audience["aud"] = "another-app".into();
        let wrong_audience = sign(&key, &other_audience);
        let mut later = claims.clone();
        later["nbf"] = (now + 3600).into();
        let not_yet = sign(&key, &later);
        for (name, token, code) in [
            ("alg none", none.as_str(), "token_invalid"),
            ("HS256 with the public key", hs256.as_str(), "token_invalid"),
            ("HS256 with the public x", hs256_x.as_str(), "token_invalid"),
            ("altered claim", altered.as_str(), "token_invalid"),
            ("expired", expired.as_str(), "token_expired"),
            ("unknown key", stranger.as_str(), "token_invalid"),
            ("another audience", wrong_audience.as_str(), "token_invalid"),
            ("not valid yet", not_yet.as_str(), "token_invalid"),
            ("garbage", "abc.def.ghi", "token_invalid"),
        ] {
            let (status, body) = me(&fleet, token);
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
            assert_eq!(body["error"], code, "{name}");
        }
        let response = fleet.request(Method::GET, "/profile/me").send().unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key("www-authenticate"));
    }

    fn browser_sign_in_cookies_csrf_and_silent_renewal(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let origin = fleet.origin();
        let form = [("email", "ada@example.org"), ("password", PASSWORD), ("next", "/profile/me")];
        // Another site's form cannot sign a browser in.
        let response = fleet.request(Method::POST, "/login").header(ORIGIN, "https://evil.example").form(&form).send().unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        let response = fleet.request(Method::POST, "/login").header(ORIGIN, &origin).form(&form).send().unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/profile/me");
        let cookies = set_cookies(&response);
        let access = cookie_value(&cookies, "flotilla_access").unwrap();
        let refresh_cookie = cookie_value(&cookies, "flotilla_refresh").unwrap();
        let unsafe_next = [("email", "ada@example.org"), ("password", PASSWORD), ("next", "//evil.example/x")];
        let response = fleet.request(Method::POST, "/login").header(ORIGIN, &origin).form(&unsafe_next).send().unwrap();
        assert_eq!(response.headers()[LOCATION], "/profile", "an off-site next is ignored");

        let with_cookie = |method: Method, path: &str| {
            fleet.request(method, path).header(COOKIE, format!("flotilla_access={access}; flotilla_refresh={refresh_cookie}"))
        };
        assert_eq!(with_cookie(Method::GET, "/profile/me").send().unwrap().status(), StatusCode::OK);

        // A cookie-authenticated change needs this site's origin and the form token.
        let csrf = decode_part(&access, 1)["csrf"].as_str().unwrap().to_owned();
        let no_origin = with_cookie(Method::POST, "/login/logout").form(&[("csrf_token", csrf.as_str())]).send().unwrap();
        assert_eq!(no_origin.status(), StatusCode::FORBIDDEN);
        let cross = with_cookie(Method::POST, "/login/logout").header(ORIGIN, "https://evil.example").form(&[("csrf_token", csrf.as_str())]).send().unwrap();
        assert_eq!(cross.status(), StatusCode::FORBIDDEN);
        let no_token = with_cookie(Method::POST, "/login/logout").header(ORIGIN, &origin).form(&[("csrf_token", "")]).send().unwrap();
        assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
        assert_eq!(no_token.json::<Value>().unwrap()["error"], "csrf_token_invalid");
        assert_eq!(with_cookie(Method::GET, "/profile/me").send().unwrap().status(), StatusCode::OK, "nothing was signed out");

        // The access cookie gone (expired), the refresh cookie renews the session.
        let renewed = fleet.request(Method::GET, "/login?next=/profile/me").header(COOKIE, format!("flotilla_refresh={refresh_cookie}")).send().unwrap();
        assert_eq!(renewed.status(), StatusCode::SEE_OTHER);
        assert_eq!(renewed.headers()[LOCATION], "/profile/me");
        let renewed_cookies = set_cookies(&renewed);
        let new_access = cookie_value(&renewed_cookies, "flotilla_access").unwrap();
        let new_refresh = cookie_value(&renewed_cookies, "flotilla_refresh").unwrap();
        assert_ne!(new_refresh, refresh_cookie, "rotated");
        let me_again = fleet.request(Method::GET, "/profile/me").header(COOKIE, format!("flotilla_access={new_access}")).send().unwrap();
        assert_eq!(me_again.status(), StatusCode::OK);

        // Signing out with the form: cookies cleared, then sent where it asks (a path of
        // this site; the sign-in page otherwise).
        let csrf = decode_part(&new_access, 1)["csrf"].as_str().unwrap().to_owned();
        let out = fleet.request(Method::POST, "/login/logout")
            .header(COOKIE, format!("flotilla_access={new_access}; flotilla_refresh={new_refresh}"))
            .header(ORIGIN, &origin)
            .header("accept", "text/html")
            .form(&[("csrf_token", csrf.as_str()), ("next", "/people/")])
            .send()
            .unwrap();
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        assert_eq!(out.headers()[LOCATION], "/people/");
        let cleared = set_cookies(&out);
        assert!(cleared.iter().all(|c| c.contains("Max-Age=0")), "{cleared:?}");
        // The spent refresh cookie no longer renews anything: the form is shown.
        let again = fleet.request(Method::GET, "/login").header(COOKIE, format!("flotilla_refresh={new_refresh}")).send().unwrap();
        assert_eq!(again.status(), StatusCode::OK);
    }

    fn the_refresh_cookie_renews_and_signs_out_only_from_this_site(db: TestDb) {
        // No form token to ask for (the access token may have expired): the strict
        // origin rule alone, Origin or Sec-Fetch-Site present and both, when sent, this
        // site's.
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, refresh_token) = sign_in(&fleet, "ada@example.org");
        let origin = fleet.origin();
        let elsewhere: [&[(&str, &str)]; 5] = [
            &[("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")],
            &[("origin", "https://evil.example")],
            &[("sec-fetch-site", "none")],
            &[("origin", origin.as_str()), ("sec-fetch-site", "same-site")],
            &[],
        ];
        let with_cookie = |path: &str, token: &str, headers: &[(&str, &str)]| {
            let mut request = fleet.request(Method::POST, path).header(COOKIE, format!("flotilla_refresh={token}"));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send().unwrap()
        };
        for path in ["/login/refresh", "/login/logout"] {
            for headers in elsewhere {
                let refused = with_cookie(path, &refresh_token, headers);
                assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path} {headers:?}");
                assert!(set_cookies(&refused).is_empty(), "{path} {headers:?}: no cookie touched");
                assert_eq!(refused.json::<Value>().unwrap()["error"], "cross_origin_request", "{path} {headers:?}");
            }
        }
        // Nothing changed: the session works and its refresh token is unspent.
        assert_eq!(me(&fleet, &access).0, StatusCode::OK);
        let this_site = [("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];
        let renewed = with_cookie("/login/refresh", &refresh_token, &this_site);
        assert_eq!(renewed.status(), StatusCode::OK);
        let token = cookie_value(&set_cookies(&renewed), "flotilla_refresh").unwrap();
        // An older browser: Origin alone.
        let renewed = with_cookie("/login/refresh", &token, &[("origin", origin.as_str())]);
        assert_eq!(renewed.status(), StatusCode::OK);
        let token = cookie_value(&set_cookies(&renewed), "flotilla_refresh").unwrap();
        let out = with_cookie("/login/logout", &token, &[("sec-fetch-site", "same-origin")]);
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        let ended = wait_until(Duration::from_secs(5), || me(&fleet, &access).0 == StatusCode::UNAUTHORIZED);
        assert!(ended, "signed out by the refresh cookie");
    }

    fn jwks_publishes_public_keys_and_a_new_key_takes_over_signing(db: TestDb) {
        // The folder is read every second, and a new key signs once it is 4 s old.
        let lead = chrono::TimeDelta::seconds(4);
        let fleet = Fleet::builder(db)
            .env("FLOTILLA_KEYS_RELOAD_SECS", "1")
            .env("FLOTILLA_KEYS_PUBLISH_SECS", &lead.num_seconds().to_string())
            .start();
        verified_account(&fleet, "ada@example.org");
        let jwks: Value = fleet.get("/login/.well-known/jwks.json").json().unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!((keys[0]["kty"].as_str(), keys[0]["crv"].as_str(), keys[0]["alg"].as_str()), (Some("OKP"), Some("Ed25519"), Some("EdDSA")));
        assert!(keys[0].get("d").is_none(), "no private part");
        let (old_access, _) = sign_in(&fleet, "ada@example.org");
        let old_kid = decode_part(&old_access, 0)["kid"].as_str().unwrap().to_owned();

        let generated = fleet.run("flotilla-login", &["keys", "generate"]);
        assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
        let new_kid = String::from_utf8(generated.stdout).unwrap().trim().to_owned();
        assert_ne!(new_kid, old_kid);
        let ring = KeyRing::load(&fleet.data_dir().join("keys")).unwrap();
        let signs_from = ring.keys().iter().find(|k| k.kid == new_kid).unwrap().created().unwrap() + lead;
        let stamp = signs_from.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert!(String::from_utf8_lossy(&generated.stderr).contains(&format!("signs with it from {stamp}")), "{}", String::from_utf8_lossy(&generated.stderr));
        // The running login reads the folder again (every second here) and publishes
        // the new key without a restart, while the old key goes on signing.
        let at = Instant::now();
        let kids = || -> Vec<String> {
            let jwks: Value = fleet.get("/login/.well-known/jwks.json").json().unwrap();
            jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
        };
        let published = wait_until(Duration::from_secs(3), || kids().contains(&new_kid));
        assert!(published, "the new key is not published {:?} after it was made: {:?}", at.elapsed(), kids());
        assert!(kids().contains(&old_kid), "the old key stays published");
        let listed = fleet.run("flotilla-login", &["keys", "list"]);
        let listed = String::from_utf8(listed.stdout).unwrap();
        let (early_access, _) = sign_in(&fleet, "ada@example.org");
        let answered = chrono::Utc::now().naive_utc();
        assert!(answered < signs_from, "the machine is too slow for this test: the sign-in ended {} after the new key's turn", answered - signs_from);
        assert_eq!(decode_part(&early_access, 0)["kid"], old_kid.as_str(), "the old key signs until the new one is {lead} old");
        assert!(listed.contains(&format!("{old_kid}\tsigning\n")) && listed.contains(&format!("{new_kid}\tpublished, signs from {stamp}\n")), "{listed}");

        // Once the lead has passed, the new key signs.
        assert!(wait_until(Duration::from_secs(10), || chrono::Utc::now().naive_utc() >= signs_from));
        let (new_access, _) = sign_in(&fleet, "ada@example.org");
        assert_eq!(decode_part(&new_access, 0)["kid"], new_kid.as_str(), "the new key signs");
        // profile accepts its token at the first try, which is what the lead is for.
        // profile fetched the JWKS either after login published the key, and has it,
        // or before: then at least 4 - 1 = 3 s before this token (the lead, less the
        // reload interval within which login published it), which is longer than the
        // 2 s within which profile refuses an unknown kid without fetching again; so
        // the unknown kid makes it fetch, and the JWKS it gets holds the key. A lead
        // longer than FLOTILLA_KEYS_RELOAD_SECS + 2 s guarantees this; the default
        // (360 s against 30 s) also outlasts the 300 s between profile's periodic
        // fetches, for verifiers that do not fetch on an unknown kid.
        let (status, body) = me(&fleet, &new_access);
        assert_eq!(status, StatusCode::OK, "profile refused the new key's first token: {body}");
        assert_eq!(me(&fleet, &old_access).0, StatusCode::OK, "the old key's tokens stay valid");
        assert_eq!(me(&fleet, &early_access).0, StatusCode::OK);
        let listed = fleet.run("flotilla-login", &["keys", "list"]);
        let listed = String::from_utf8(listed.stdout).unwrap();
        assert!(listed.contains(&format!("{new_kid}\tsigning\n")) && listed.contains(&format!("{old_kid}\tpublished\n")), "{listed}");
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
