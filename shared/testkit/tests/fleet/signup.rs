//! Signup and email verification through nginx, mail delivered by the worker.

use std::time::Duration;

use flotilla_testkit::{SmtpSink, link_param, wait_until};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};

use super::links::{post_form, post_token};
use super::login::link_lifetimes;
use super::*;

const PASSWORD: &str = "correct horse battery staple";

fn signup(fleet: &Fleet, body: Value) -> (StatusCode, Value) {
    let response = fleet
        .request(reqwest::Method::POST, "/signup")
        .json(&body)
        .send()
        .unwrap();
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn verify(fleet: &Fleet, token: &str) -> (StatusCode, Value) {
    let response = post_token(fleet, "/signup/verify", token);
    let status = response.status();
    (status, response.json().unwrap())
}

on_both_databases! {
    fn signup_mail_verify_journey(db: TestDb) {
        let fleet = Fleet::start(db);
        let (status, body) = signup(&fleet, json!({"email": "Ada@Example.ORG", "password": PASSWORD, "username": "ada"}));
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body, json!({"status": "verification_sent"}));

        let mails = fleet.wait_for_mails("Ada@example.org", 1);
        assert!(mails[0].contains("Subject: Confirm your email address"), "{}", mails[0]);
        assert!(mails[0].contains("Message-ID: <verify_email_"), "{}", mails[0]);
        let token = link_param(&mails[0], "token").unwrap();
        assert_eq!(token.len(), 43);
        // The database keeps only the token's hash.
        assert!(fleet.db.strings("SELECT token_hash AS v FROM email_tokens").iter().all(|h| h.len() == 64 && *h != token));
        assert_eq!(link_lifetimes(&fleet, "verify_email"), vec![chrono::TimeDelta::hours(48)], "valid 48 hours");
        // The mail is written before its job is marked done: wait for that.
        let payloads = || fleet.db.strings("SELECT payload AS v FROM jobs WHERE kind = 'email'");
        assert!(wait_until(Duration::from_secs(10), || payloads() == vec!["{}"]), "sent jobs forget their link: {:?}", payloads());

        let unverified = fleet.db.strings("SELECT email AS v FROM users WHERE email_verified_at IS NULL");
        assert_eq!(unverified, vec!["Ada@example.org"]);
        assert_eq!(verify(&fleet, &token), (StatusCode::OK, json!({"status": "verified"})));
        assert!(fleet.db.strings("SELECT email AS v FROM users WHERE email_verified_at IS NULL").is_empty());

        let (status, body) = verify(&fleet, &token);
        assert_eq!(status, StatusCode::BAD_REQUEST, "second use refused");
        assert_eq!(body["error"], "token_invalid");
        assert!(body["message"].as_str().unwrap().contains("/signup/resend"));
    }

    fn a_duplicate_signup_is_indistinguishable_and_the_owner_is_told(db: TestDb) {
        let fleet = Fleet::start(db);
        let first = signup(&fleet, json!({"email": "grace@example.org", "password": PASSWORD}));
        fleet.wait_for_mails("grace@example.org", 1);
        let second = signup(&fleet, json!({"email": " GRACE@example.org", "password": "another long passphrase"}));
        assert_eq!(first, second);
        let mails = fleet.wait_for_mails("grace@example.org", 2);
        assert!(mails[1].contains("Someone tried to sign up with your address"), "{}", mails[1]);
        assert_eq!(fleet.db.strings("SELECT email AS v FROM users"), vec!["grace@example.org"]);
    }

    fn every_rule_is_refused_with_its_field_named(db: TestDb) {
        let fleet = Fleet::start(db);
        let cases = [
            (json!({"email": "not-an-address", "password": PASSWORD}), "email", "must be an address"),
            (json!({"email": "", "password": PASSWORD}), "email", "is required"),
            (json!({"email": format!("{}@example.org", "a".repeat(250)), "password": PASSWORD}), "email", "254"),
            (json!({"email": "ada@example.org", "password": "short"}), "password", "at least 12"),
            (json!({"email": "ada@example.org", "password": "x".repeat(129)}), "password", "at most 128"),
            (json!({"email": "ada@example.org", "password": "qwerty123456"}), "password", "common"),
            (json!({"email": "lovelace@example.org", "password": "lovelace-rocks-2026"}), "password", "email"),
            (json!({"email": "ada@example.org", "password": PASSWORD, "username": "A d"}), "username", "lower-case"),
            (json!({"email": "ada@example.org", "password": PASSWORD, "username": "admin"}), "username", "reserved"),
        ];
        for (body, field, problem) in cases {
            let (status, answer) = signup(&fleet, body.clone());
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
            assert_eq!(answer["error"], "invalid_input");
            let message = answer["fields"][field].as_str().unwrap_or_else(|| panic!("{body}: {answer}"));
            assert!(message.contains(problem), "{body}: {message}");
        }
        let malformed = fleet.request(reqwest::Method::POST, "/signup")
            .header(CONTENT_TYPE, "application/json").body("{\"email\":").send().unwrap();
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
        assert_eq!(malformed.json::<Value>().unwrap()["error"], "malformed_json");
        let unknown = signup(&fleet, json!({"email": "ada@example.org", "password": PASSWORD, "admin": true}));
        assert_eq!(unknown.0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(unknown.1["fields"]["admin"], "is not a field of this request");
        let text = fleet.request(reqwest::Method::POST, "/signup")
            .header(CONTENT_TYPE, "text/plain").body("hello").send().unwrap();
        assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(fleet.db.strings("SELECT id AS v FROM users").is_empty(), "nothing was written");
    }

    fn a_taken_username_is_a_conflict(db: TestDb) {
        let fleet = Fleet::start(db);
        assert_eq!(signup(&fleet, json!({"email": "a@example.org", "password": PASSWORD, "username": "ada"})).0, StatusCode::ACCEPTED);
        // Reserved once the address is confirmed (see enumeration.rs for before).
        let token = link_param(&fleet.wait_for_mails("a@example.org", 1)[0], "token").unwrap();
        assert_eq!(verify(&fleet, &token).0, StatusCode::OK);
        let (status, body) = signup(&fleet, json!({"email": "b@example.org", "password": PASSWORD, "username": "ada"}));
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "username_taken");
        assert!(body["fields"]["username"].as_str().unwrap().contains("taken"));
    }

    fn the_form_works_without_javascript(db: TestDb) {
        let fleet = Fleet::start(db);
        let page = fleet.get_html("/signup");
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().unwrap();
        assert!(html.contains("<form method=\"post\" action=\"/signup\">"));
        assert!(html.contains("<label for=\"password\">"));

        let bad = fleet.request(reqwest::Method::POST, "/signup")
            .header("Accept", "text/html")
            .form(&[("email", "ada@example.org"), ("password", "short"), ("username", "")])
            .send().unwrap();
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = bad.text().unwrap();
        assert!(html.contains("value=\"ada@example.org\""), "the email is kept");
        assert!(html.contains("Password must be at least 12 characters"), "{html}");
        assert!(!html.contains("value=\"short\""), "never the password");

        let good = fleet.request(reqwest::Method::POST, "/signup")
            .form(&[("email", "ada@example.org"), ("password", PASSWORD)])
            .send().unwrap();
        assert_eq!(good.status(), StatusCode::SEE_OTHER);
        assert_eq!(good.headers()[LOCATION], "/signup/check-email");
        assert_eq!(fleet.get_html("/signup/check-email").status(), StatusCode::OK);
        let token = link_param(&fleet.wait_for_mails("ada@example.org", 1)[0], "token").unwrap();
        // Opening the link shows a button; its form spends the link.
        let page = fleet.get_html(&format!("/signup/verify?token={token}"));
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().unwrap().contains(&format!("name=\"token\" value=\"{token}\"")));
        let done = post_form(&fleet, "/signup/verify", &[("token", token.as_str())]);
        assert_eq!(done.status(), StatusCode::OK);
        assert!(done.text().unwrap().contains("Your email address is confirmed"));
        let again = post_form(&fleet, "/signup/verify", &[("token", token.as_str())]);
        assert_eq!(again.status(), StatusCode::BAD_REQUEST);
        assert!(again.text().unwrap().contains("href=\"/signup/resend\""));
        assert_eq!(fleet.get_html(&format!("/signup/verify?token={token}")).status(), StatusCode::BAD_REQUEST);
    }

    fn expired_and_unknown_links_are_refused_and_a_new_one_can_be_had(db: TestDb) {
        let fleet = Fleet::start(db);
        signup(&fleet, json!({"email": "ada@example.org", "password": PASSWORD}));
        let token = link_param(&fleet.wait_for_mails("ada@example.org", 1)[0], "token").unwrap();
        fleet.db.execute("UPDATE email_tokens SET expires_at = '2000-01-01 00:00:00', created_at = '2000-01-01 00:00:00'");
        let (status, body) = verify(&fleet, &token);
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("token_expired")));
        assert_eq!(verify(&fleet, "nonsense").1["error"], "token_invalid");
        assert_eq!(verify(&fleet, "").1["error"], "token_invalid");

        // Resend answers the same for anyone; only the unverified account gets a link,
        // and at most one a minute.
        for email in ["ada@example.org", "nobody@example.org", "ada@example.org"] {
            let response = fleet.request(reqwest::Method::POST, "/signup/resend").json(&json!({"email": email})).send().unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            assert_eq!(response.json::<Value>().unwrap(), json!({"status": "verification_sent"}));
        }
        let mails = fleet.wait_for_mails("ada@example.org", 2);
        let fresh = link_param(&mails[1], "token").unwrap();
        assert_eq!(verify(&fleet, &fresh).0, StatusCode::OK);
        assert!(fleet.mails_to("nobody@example.org").is_empty());
        assert!(
            !wait_until(Duration::from_millis(1500), || fleet.mails_to("ada@example.org").len() > 2),
            "the third request, within a minute, sent nothing"
        );
    }
}

#[test]
fn mail_goes_out_through_smtp_and_a_refusal_is_not_retried() {
    let sink = SmtpSink::start(&["bounce@example.org"]);
    let fleet = Fleet::builder(TestDb::sqlite())
        .env("FLOTILLA_MAIL_TRANSPORT", "smtp")
        .env("FLOTILLA_SMTP_HOST", "127.0.0.1")
        .env("FLOTILLA_SMTP_PORT", &sink.port.to_string())
        .env("FLOTILLA_SMTP_SECURITY", "none")
        .start();
    assert_eq!(
        signup(
            &fleet,
            json!({"email": "ada@example.org", "password": PASSWORD})
        )
        .0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        signup(
            &fleet,
            json!({"email": "bounce@example.org", "password": PASSWORD})
        )
        .0,
        StatusCode::ACCEPTED
    );
    assert!(
        wait_until(Duration::from_secs(15), || !sink.messages().is_empty()),
        "{}",
        fleet.all_logs()
    );
    let message = &sink.messages()[0];
    assert_eq!(message.to, vec!["ada@example.org"]);
    assert!(message.data.contains("Message-ID: <verify_email_"));
    assert!(link_param(&message.data, "token").is_some_and(|t| t.len() == 43));
    // The refused one is parked as dead at once, with the server's reason.
    assert!(wait_until(Duration::from_secs(15), || {
        !fleet
            .db
            .strings("SELECT last_error AS v FROM jobs WHERE dead_at IS NOT NULL")
            .is_empty()
    }));
    let errors = fleet
        .db
        .strings("SELECT last_error AS v FROM jobs WHERE dead_at IS NOT NULL");
    assert!(errors[0].contains("550"), "{errors:?}");
    assert_eq!(
        fleet
            .db
            .strings("SELECT CAST(attempts AS TEXT) AS v FROM jobs WHERE dead_at IS NOT NULL"),
        vec!["1"]
    );
}

#[test]
fn a_full_hashing_pool_answers_503_and_other_requests_still_flow() {
    let fleet = Fleet::builder(TestDb::sqlite())
        .env("FLOTILLA_HASH_WORKERS", "1")
        .env("FLOTILLA_HASH_QUEUE", "0")
        // Slow hashes, so that requests overlap.
        .env("FLOTILLA_ARGON2_MEMORY_KIB", "8192")
        .env("FLOTILLA_ARGON2_ITERATIONS", "20")
        .start();
    let statuses: Vec<(StatusCode, Option<String>)> = std::thread::scope(|scope| {
        let attempts: Vec<_> = (0..4)
            .map(|i| {
                let (client, url) = (fleet.client().clone(), fleet.url("/signup"));
                scope.spawn(move || {
                    let response = client
                        .post(url)
                        .json(&json!({"email": format!("flood{i}@example.org"), "password": PASSWORD}))
                        .send()
                        .unwrap();
                    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                    (response.status(), retry)
                })
            })
            .collect();
        // While hashes run, health answers.
        assert_eq!(fleet.get("/signup/health").status(), StatusCode::OK);
        attempts.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().any(|(s, _)| *s == StatusCode::ACCEPTED),
        "{statuses:?}"
    );
    let refused: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!refused.is_empty(), "{statuses:?}");
    assert!(
        refused
            .iter()
            .all(|(_, retry)| retry.as_deref() == Some("2")),
        "{statuses:?}"
    );
    // Nothing was written for the refused ones.
    let accepted = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(
        fleet.db.strings("SELECT email AS v FROM users").len(),
        accepted
    );
}
