//! Emailed links and what they leave behind: opening a link spends nothing (a mail
//! scanner confirms nothing), only a post from its page or a JSON client does; no live
//! token stays in a job, a log or a Referer; sign-ins racing a reset, a password
//! change or the closing of the account leave no session behind; only this site's pages may post a change
//! (`Sec-Fetch-Site`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use flotilla_testkit::{SmtpSink, link_param, wait_until};
use reqwest::blocking::Response;
use reqwest::header::{CACHE_CONTROL, COOKIE, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::login::{PASSWORD, decode_part, login, me, sign_in, verified_account};
use super::*;

/// Posts a link's token as a JSON client does.
pub(super) fn post_token(fleet: &Fleet, path: &str, token: &str) -> Response {
    fleet
        .request(Method::POST, path)
        .json(&json!({ "token": token }))
        .send()
        .unwrap()
}

/// Posts a form as a browser does from one of this site's pages.
pub(super) fn post_form(fleet: &Fleet, path: &str, form: &[(&str, &str)]) -> Response {
    fleet
        .request(Method::POST, path)
        .header("accept", "text/html")
        .header(ORIGIN, fleet.origin())
        .header("sec-fetch-site", "same-origin")
        .form(form)
        .send()
        .unwrap()
}

/// Opens a link as a browser (or a mail scanner) does, several times over, and checks
/// that the page is a form posting the token, kept out of caches and Referers.
fn open_link_page(fleet: &Fleet, path: &str, token: &str) {
    let url = format!("{path}?token={token}");
    for _ in 0..3 {
        let json = fleet.get(&url);
        assert_eq!(json.status(), StatusCode::OK, "{url}");
        assert_eq!(json.json::<Value>().unwrap()["status"], "valid");
        let page = fleet.get_html(&url);
        assert_eq!(page.status(), StatusCode::OK, "{url}");
        assert_eq!(page.headers()["referrer-policy"], "strict-origin", "{url}");
        assert_eq!(page.headers()[CACHE_CONTROL], "no-store", "{url}");
        let html = page.text().unwrap();
        assert!(
            html.contains(&format!("<form method=\"post\" action=\"{path}\">")),
            "{html}"
        );
        assert!(
            html.contains(&format!("name=\"token\" value=\"{token}\"")),
            "{html}"
        );
    }
    // Other pages keep the site's usual policy.
    assert_eq!(
        fleet.get("/signup/health").headers()["referrer-policy"],
        "same-origin"
    );
}

/// A post of `token` to `path` from another site, and from outside any page
/// (`Sec-Fetch-Site: none`): both refused, nothing spent.
fn refused_from_elsewhere(fleet: &Fleet, path: &str, token: &str) {
    for (origin, site) in [
        ("https://evil.example", "cross-site"),
        ("https://evil.example", "none"),
    ] {
        let response = fleet
            .request(Method::POST, path)
            .header(ORIGIN, origin)
            .header("sec-fetch-site", site)
            .form(&[("token", token)])
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {site}");
        assert_eq!(
            response.json::<Value>().unwrap()["error"],
            "cross_origin_request"
        );
    }
    let typed = fleet
        .request(Method::POST, path)
        .header("sec-fetch-site", "none")
        .json(&json!({ "token": token }))
        .send()
        .unwrap();
    assert_eq!(
        typed.status(),
        StatusCode::FORBIDDEN,
        "{path}: Sec-Fetch-Site none"
    );
}

fn count(fleet: &Fleet, sql: &str) -> usize {
    fleet.db.strings(sql).len()
}

on_both_databases! {
    fn opening_a_link_spends_nothing_and_a_post_from_its_page_does(db: TestDb) {
        let fleet = Fleet::start(db);

        // Verification.
        let signed_up = fleet.request(Method::POST, "/signup").json(&json!({"email": "ada@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
        let token = link_param(&fleet.wait_for_mails("ada@example.org", 1)[0], "token").unwrap();
        open_link_page(&fleet, "/signup/verify", &token);
        refused_from_elsewhere(&fleet, "/signup/verify", &token);
        let unverified = "SELECT id AS v FROM users WHERE email_verified_at IS NULL";
        assert_eq!(count(&fleet, unverified), 1, "opening the link verified nothing");
        assert_eq!(count(&fleet, "SELECT token_hash AS v FROM email_tokens WHERE used_at IS NOT NULL"), 0);
        let done = post_form(&fleet, "/signup/verify", &[("token", &token)]);
        assert_eq!(done.status(), StatusCode::OK);
        assert!(done.text().unwrap().contains("Your email address is confirmed"));
        assert_eq!(count(&fleet, unverified), 0);
        assert_eq!(post_token(&fleet, "/signup/verify", &token).json::<Value>().unwrap()["error"], "token_invalid", "single use");
        assert_eq!(fleet.get(&format!("/signup/verify?token={token}")).status(), StatusCode::BAD_REQUEST);
        let malformed = fleet.request(Method::POST, "/signup/verify").json(&json!({"token": "x", "other": 1})).send().unwrap();
        assert_eq!(malformed.status(), StatusCode::UNPROCESSABLE_ENTITY);

        // Change of address: the link needs no session; opening it changes nothing.
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let asked = fleet.request(Method::POST, "/profile/email").bearer_auth(&access)
            .json(&json!({"new_email": "lovelace@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(asked.status(), StatusCode::ACCEPTED);
        let token = link_param(&fleet.wait_for_mails("lovelace@example.org", 1)[0], "token").unwrap();
        open_link_page(&fleet, "/profile/email/confirm", &token);
        refused_from_elsewhere(&fleet, "/profile/email/confirm", &token);
        assert_eq!(me(&fleet, &access).1["email"], "ada@example.org", "opening the link changed nothing");
        let done = post_form(&fleet, "/profile/email/confirm", &[("token", &token)]);
        assert_eq!(done.status(), StatusCode::OK);
        assert!(done.text().unwrap().contains("Your new email address is confirmed"));
        assert_eq!(me(&fleet, &access).1["email"], "lovelace@example.org");
        let again = post_token(&fleet, "/profile/email/confirm", &token);
        assert_eq!((again.status(), again.json::<Value>().unwrap()["error"].clone()), (StatusCode::BAD_REQUEST, json!("token_invalid")));

        // Reset: opening shows the form; only its post (with a password) spends it.
        let asked = fleet.request(Method::POST, "/login/forgot").json(&json!({"email": "lovelace@example.org"})).send().unwrap();
        assert_eq!(asked.status(), StatusCode::ACCEPTED);
        let mails = fleet.wait_for_mails("lovelace@example.org", 2);
        let reset = mails.iter().find(|m| m.contains("Subject: Reset your password")).unwrap();
        let token = link_param(reset, "token").unwrap();
        let page = fleet.get_html(&format!("/login/reset?token={token}"));
        assert_eq!(page.headers()["referrer-policy"], "strict-origin");
        assert!(page.text().unwrap().contains(&format!("name=\"token\" value=\"{token}\"")));
        refused_from_elsewhere(&fleet, "/login/reset", &token);
        assert_eq!(fleet.get(&format!("/login/reset?token={token}")).status(), StatusCode::OK, "still valid");
        assert_eq!(login(&fleet, "lovelace@example.org", PASSWORD).0, StatusCode::OK);
        let new_password = "a brand new passphrase 2026";
        let done = post_form(&fleet, "/login/reset", &[("token", &token), ("password", new_password)]);
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        assert_eq!(login(&fleet, "lovelace@example.org", new_password).0, StatusCode::OK);
    }

    fn a_mail_that_failed_for_good_keeps_no_link(db: TestDb) {
        // The mailbox refuses for good: the mail is parked as dead at once.
        let sink = SmtpSink::start(&["bounce@example.org"]);
        let fleet = Fleet::builder(db)
            .env("FLOTILLA_MAIL_TRANSPORT", "smtp")
            .env("FLOTILLA_SMTP_HOST", "127.0.0.1")
            .env("FLOTILLA_SMTP_PORT", &sink.port.to_string())
            .env("FLOTILLA_SMTP_SECURITY", "none")
            .start();
        let signed_up = fleet.request(Method::POST, "/signup").json(&json!({"email": "bounce@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
        let dead = "SELECT payload AS v FROM jobs WHERE dead_at IS NOT NULL";
        assert!(wait_until(Duration::from_secs(15), || count(&fleet, dead) == 1), "{}", fleet.all_logs());
        let payload = &fleet.db.strings(dead)[0];
        // Still readable for whoever looks into the failure, without the token.
        assert!(payload.contains("bounce@example.org") && payload.contains("verify_email"), "{payload}");
        assert!(payload.contains("/signup/verify?token=erased"), "{payload}");
        // Whatever the column, every token in the jobs table is an erased one.
        let every_column = "SELECT COALESCE(payload, '') || ' ' || COALESCE(last_error, '') || ' ' || COALESCE(recipient, '') AS v FROM jobs";
        for row in fleet.db.strings(every_column) {
            assert_eq!(row.matches("token=").count(), row.matches("token=erased").count(), "{row}");
        }

        // Nor did any log line carry a link.
        assert!(!fleet.all_logs().contains("token="), "{}", fleet.all_logs());
        // Retries keep the link until the last attempt, and that one erases it: the
        // queue's own tests (shared/jobs) on both databases.
    }

    fn the_file_transport_logs_no_link(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let mail = &fleet.mails_to("ada@example.org")[0];
        let token = link_param(mail, "token").unwrap();
        let logs = fleet.all_logs();
        assert!(logs.contains("mail \"Confirm your email address\" written to"), "{logs}");
        assert!(!logs.contains(&token), "{logs}");
        assert!(!logs.contains("token="), "{logs}");
    }

    fn sign_ins_racing_a_reset_leave_no_live_session(db: TestDb) {
        let fleet = quick_hashes(db);
        verified_account(&fleet, "ada@example.org");
        let asked = fleet.request(Method::POST, "/login/forgot").json(&json!({"email": "ada@example.org"})).send().unwrap();
        assert_eq!(asked.status(), StatusCode::ACCEPTED);
        let mails = fleet.wait_for_mails("ada@example.org", 2);
        let token = link_param(mails.iter().find(|m| m.contains("Subject: Reset your password")).unwrap(), "token").unwrap();
        let new_password = "a brand new passphrase 2026";
        let granted = race_sign_ins(&fleet, || {
            let done = fleet.request(Method::POST, "/login/reset").json(&json!({"token": token, "password": new_password})).send().unwrap();
            assert_eq!(done.status(), StatusCode::OK);
        });
        no_session_outlives(&fleet, &granted, None);
    }

    fn sign_ins_racing_a_password_change_leave_no_live_session(db: TestDb) {
        let fleet = quick_hashes(db);
        verified_account(&fleet, "ada@example.org");
        let (keep, _) = sign_in(&fleet, "ada@example.org");
        let granted = race_sign_ins(&fleet, || {
            let done = fleet.request(Method::POST, "/profile/password").bearer_auth(&keep)
                .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase 2026"})).send().unwrap();
            assert_eq!(done.status(), StatusCode::NO_CONTENT);
        });
        no_session_outlives(&fleet, &granted, Some(&keep));
        assert_eq!(me(&fleet, &keep).0, StatusCode::OK, "the session that changed it stays");
    }

    fn sign_ins_racing_closing_the_account_leave_no_live_session(db: TestDb) {
        let fleet = quick_hashes(db);
        verified_account(&fleet, "ada@example.org");
        let (keep, _) = sign_in(&fleet, "ada@example.org");
        let granted = race_sign_ins(&fleet, || {
            let done = fleet.request(Method::DELETE, "/profile/me").bearer_auth(&keep)
                .json(&json!({"password": PASSWORD})).send().unwrap();
            assert_eq!(done.status(), StatusCode::NO_CONTENT);
        });
        no_session_outlives(&fleet, &granted, None);
        assert_eq!(me(&fleet, &keep).0, StatusCode::UNAUTHORIZED, "the session that closed it ends too");
    }

    fn only_this_sites_pages_may_post_a_change(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let cookie = format!("flotilla_access={access}");
        let csrf = decode_part(&access, 1)["csrf"].as_str().unwrap().to_owned();
        let change = |site: Option<&str>, name: &str| {
            let mut request = fleet.request(Method::POST, "/profile/me").header(COOKIE, &cookie).header(ORIGIN, fleet.origin());
            if let Some(site) = site {
                request = request.header("sec-fetch-site", site);
            }
            request.form(&[("csrf_token", csrf.as_str()), ("display_name", name)]).send().unwrap()
        };
        // Started outside any page (an address typed, a bookmark): refused like another
        // site, whatever its Origin says.
        for site in ["none", "same-site", "cross-site"] {
            let refused = change(Some(site), "Mallory");
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{site}");
            assert_eq!(refused.json::<Value>().unwrap()["error"], "cross_origin_request", "{site}");
        }
        assert_eq!(change(Some("same-origin"), "Ada").status(), StatusCode::SEE_OTHER);
        assert_eq!(change(None, "Ada L").status(), StatusCode::SEE_OTHER, "an older browser: Origin alone");
        assert_eq!(me(&fleet, &access).1["display_name"], "Ada L");
        // The sign-in form too: Sec-Fetch-Site none is no page of this site.
        let typed = fleet.request(Method::POST, "/login").header("sec-fetch-site", "none")
            .form(&[("email", "ada@example.org"), ("password", PASSWORD)]).send().unwrap();
        assert_eq!(typed.status(), StatusCode::FORBIDDEN);
        let from_page = fleet.request(Method::POST, "/login").header("sec-fetch-site", "same-origin").header(ORIGIN, fleet.origin())
            .form(&[("email", "ada@example.org"), ("password", PASSWORD)]).send().unwrap();
        assert_eq!(from_page.status(), StatusCode::SEE_OTHER);
    }
}

/// A fleet whose password hashes are cheap, so that many sign-ins fit in a race on a
/// busy machine.
fn quick_hashes(db: TestDb) -> Fleet {
    Fleet::builder(db)
        .env("FLOTILLA_ARGON2_MEMORY_KIB", "8192")
        .env("FLOTILLA_ARGON2_ITERATIONS", "1")
        .start()
}

/// Signs in with the old password from many threads at once, over and over, while
/// `change` (a reset or a password change) runs; returns the access tokens of the
/// sign-ins that succeeded. Every sign-in either succeeded or was refused as a wrong
/// password (the password had changed) or asked to wait.
fn race_sign_ins(fleet: &Fleet, change: impl FnOnce()) -> Vec<String> {
    let (changed, successes) = (AtomicBool::new(false), AtomicUsize::new(0));
    let (granted, refused) = std::thread::scope(|scope| {
        // As many as may be checked at once (FLOTILLA_LOGIN_MAX_FAILURES): none queues.
        let racers: Vec<_> = (0..5)
            .map(|_| {
                let (client, url) = (fleet.client().clone(), fleet.url("/login"));
                let (changed, successes) = (&changed, &successes);
                scope.spawn(move || {
                    let (mut granted, mut refused) = (Vec::new(), 0);
                    // A few more attempts after the change, so some lose the race.
                    let mut after = 0;
                    while after < 2 {
                        if changed.load(Ordering::SeqCst) {
                            after += 1;
                        }
                        let response = client
                            .post(&url)
                            .json(&json!({"email": "ada@example.org", "password": PASSWORD}))
                            .send()
                            .unwrap();
                        let status = response.status();
                        let text = response.text().unwrap();
                        let body: Value = serde_json::from_str(&text)
                            .unwrap_or_else(|_| panic!("{status}: {text}"));
                        match status {
                            StatusCode::OK => {
                                successes.fetch_add(1, Ordering::SeqCst);
                                granted.push(body["access_token"].as_str().unwrap().to_owned());
                            }
                            StatusCode::UNAUTHORIZED => {
                                assert_eq!(body["error"], "invalid_credentials");
                                refused += 1;
                            }
                            StatusCode::TOO_MANY_REQUESTS => {}
                            other => panic!("{other}: {body}"),
                        }
                    }
                    (granted, refused)
                })
            })
            .collect();
        // Once the sign-ins are under way, the password changes in their midst.
        let going = wait_until(Duration::from_secs(20), || {
            successes.load(Ordering::SeqCst) >= 5
        });
        assert!(going, "the sign-ins did not get going");
        change();
        changed.store(true, Ordering::SeqCst);
        racers.into_iter().map(|r| r.join().unwrap()).fold(
            (Vec::new(), 0),
            |(mut all, n), (granted, refused)| {
                all.extend(granted);
                (all, n + refused)
            },
        )
    });
    assert!(!granted.is_empty(), "some sign-ins came before the change");
    assert!(refused > 0, "some came after it");
    granted
}

/// No session opened with the old password (or before the account closed) is live in
/// the database, and every service refuses its access token: profile, and login's
/// `/login/session`, which reads nothing but the token and the revocation list.
fn no_session_outlives(fleet: &Fleet, granted: &[String], keep: Option<&str>) {
    let kept = keep.map(|access| decode_part(access, 1)["sid"].as_str().unwrap().to_owned());
    let live = fleet
        .db
        .strings("SELECT id AS v FROM sessions WHERE revoked_at IS NULL");
    assert_eq!(
        live,
        kept.iter().cloned().collect::<Vec<_>>(),
        "only the session that made the change is live"
    );
    let session = |access: &str| {
        fleet
            .request(Method::GET, "/login/session")
            .bearer_auth(access)
            .send()
            .unwrap()
            .status()
    };
    for access in granted {
        assert!(
            wait_until(Duration::from_secs(5), || me(fleet, access).0
                == StatusCode::UNAUTHORIZED
                && session(access) == StatusCode::UNAUTHORIZED),
            "a session opened with the old password still works"
        );
    }
}

/// How many of this database's connections wait for a lock (PostgreSQL).
fn waiting_for_locks(fleet: &Fleet) -> usize {
    count(
        fleet,
        "SELECT pid::text AS v FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
}

/// The race made certain on PostgreSQL: sign-ins are held up in the middle of opening
/// their session (their refresh token's insert waits for a lock the test holds) while
/// a reset, a password change or the closing of the account runs. Without the account
/// row's lock the change would pick the sessions to end before theirs commit, and the
/// sign-ins would then commit live sessions with the old password (or of a closed
/// account).
#[test]
fn sign_ins_held_up_mid_session_do_not_outlive_a_reset_a_password_change_or_a_close() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let fleet = Fleet::start(db);
    verified_account(&fleet, "ada@example.org");
    let asked = fleet
        .request(Method::POST, "/login/forgot")
        .json(&json!({"email": "ada@example.org"}))
        .send()
        .unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let mails = fleet.wait_for_mails("ada@example.org", 2);
    let token = link_param(
        mails
            .iter()
            .find(|m| m.contains("Subject: Reset your password"))
            .unwrap(),
        "token",
    )
    .unwrap();
    let reset_to = "a brand new passphrase 2026";
    let reset = fleet
        .request(Method::POST, "/login/reset")
        .json(&json!({"token": token, "password": reset_to}));
    held_up_sign_ins(&fleet, PASSWORD, reset, None);

    let (keep, _) = {
        let (status, body) = login(&fleet, "ada@example.org", reset_to);
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["access_token"].as_str().unwrap().to_owned(), ())
    };
    let change = fleet
        .request(Method::POST, "/profile/password")
        .bearer_auth(&keep)
        .json(
            &json!({"current_password": reset_to, "new_password": "yet another passphrase 2027"}),
        );
    held_up_sign_ins(&fleet, reset_to, change, Some(&keep));

    // Closing the account: every session ends, those held up too.
    let changed_to = "yet another passphrase 2027";
    let close = fleet
        .request(Method::DELETE, "/profile/me")
        .bearer_auth(&keep)
        .json(&json!({"password": changed_to}));
    held_up_sign_ins(&fleet, changed_to, close, None);
}

/// Holds up three sign-ins with `password` mid-session while `change` is sent, then
/// lets them go; afterwards no session but `keep`'s is live.
fn held_up_sign_ins(
    fleet: &Fleet,
    password: &str,
    change: reqwest::blocking::RequestBuilder,
    keep: Option<&str>,
) {
    use flotilla_db::diesel::{Connection as _, PgConnection, connection::SimpleConnection as _};
    let mut holder = PgConnection::establish(fleet.db.url()).unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE refresh_tokens IN EXCLUSIVE MODE")
        .unwrap();
    let (granted, change_status) = std::thread::scope(|scope| {
        let sign_ins: Vec<_> = (0..3)
            .map(|_| {
                let request = fleet
                    .client()
                    .post(fleet.url("/login"))
                    .json(&json!({"email": "ada@example.org", "password": password}));
                scope.spawn(move || {
                    let response = request.send().unwrap();
                    let status = response.status();
                    (status, response.json::<Value>().unwrap_or(Value::Null))
                })
            })
            .collect();
        assert!(
            wait_until(Duration::from_secs(20), || waiting_for_locks(fleet) >= 3),
            "the sign-ins are held up"
        );
        let change = scope.spawn(move || change.send().unwrap().status());
        // The change waits for the account (the sign-ins hold it) or, without that
        // lock, is done already.
        wait_until(Duration::from_secs(10), || {
            change.is_finished() || waiting_for_locks(fleet) >= 4
        });
        holder.batch_execute("COMMIT").unwrap();
        let granted: Vec<String> = sign_ins
            .into_iter()
            .map(|s| s.join().unwrap())
            .filter(|(status, _)| *status == StatusCode::OK)
            .map(|(_, body)| body["access_token"].as_str().unwrap().to_owned())
            .collect();
        (granted, change.join().unwrap())
    });
    assert!(change_status.is_success(), "{change_status}");
    assert!(
        !granted.is_empty(),
        "the sign-ins held up had the right password"
    );
    no_session_outlives(fleet, &granted, keep);
}
