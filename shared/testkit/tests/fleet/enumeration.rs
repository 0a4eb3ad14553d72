//! No route tells whether an address has an account: each route that takes one is
//! asked the same thing about an address that has an account and one that has none,
//! through nginx, and the whole answers are compared (status, headers, body), with
//! what the asker can read afterwards and how long the answers take.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flotilla_testkit::{mail_text, wait_until};
use reqwest::Method;
use reqwest::StatusCode;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{ACCEPT, COOKIE, ORIGIN};
use serde_json::{Value, json};

use super::links::post_token;
use super::login::{PASSWORD, decode_part, sign_in, verified_account};
use super::*;

/// An address with an account and one without, of the same length, so that a page
/// that shows the address typed has the same length either way.
const TAKEN: &str = "grace@example.org";
const FREE: &str = "gwene@example.org";

/// An answer as the asker sees it, with what differs between any two requests left
/// out: `Date`, `X-Request-Id`, the values of cookies; `hide` lists strings (the
/// addresses typed) replaced by `<address>` in the body.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

fn answer(response: Response, hide: &[&str]) -> Answer {
    let status = response.status();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in response.headers() {
        let name = name.as_str().to_owned();
        if name == "date" || name == "x-request-id" {
            continue;
        }
        let mut value = value.to_str().unwrap_or("<binary>").to_owned();
        if name == "set-cookie" {
            let (pair, attributes) = value.split_once(';').unwrap_or((&value, ""));
            let cookie_name = pair.split_once('=').map_or(pair, |(n, _)| n);
            value = format!("{cookie_name}=<value>;{attributes}");
        }
        headers.entry(name).or_default().push(value);
    }
    let mut body = response.text().unwrap();
    for hidden in hide {
        body = body.replace(hidden, "<address>");
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends `send`'s request for the address that has an account, then for `free` (of
/// the same length, never used before), and asserts the answers are the same;
/// returns the first.
fn same_for_both(what: &str, free: &str, send: impl Fn(&str) -> Response) -> Answer {
    assert_eq!(free.len(), TAKEN.len());
    let taken = answer(send(TAKEN), &[TAKEN, free]);
    let free = answer(send(free), &[TAKEN, free]);
    assert_eq!(taken, free, "{what}: the answers differ");
    taken
}

fn json_post(fleet: &Fleet, path: &str, body: Value) -> Response {
    fleet
        .request(Method::POST, path)
        .header(ORIGIN, fleet.origin())
        .json(&body)
        .send()
        .unwrap()
}

/// A post from the page's form, as a browser sends it.
fn form_post(fleet: &Fleet, path: &str, fields: &[(&str, &str)]) -> RequestBuilder {
    fleet
        .request(Method::POST, path)
        .header(ORIGIN, fleet.origin())
        .header(ACCEPT, "text/html,*/*;q=0.8")
        .form(fields)
}

/// Every mail the file transport wrote, to whomever.
fn mail_count(fleet: &Fleet) -> usize {
    std::fs::read_dir(fleet.data_dir().join("mail"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// A mail as its reader sees it, without what differs between any two mails (date,
/// message id, MIME boundaries) and with `hide` replaced by `<address>`.
fn readable(mail: &str, hide: &[&str]) -> String {
    let text = mail_text(mail);
    let boundary = text
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("\u{0}")
        .to_owned();
    let mut out = String::new();
    for line in text.lines() {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("date:") || lower.starts_with("message-id:") {
            continue;
        }
        out.push_str(&line.replace(&boundary, "<boundary>"));
        out.push('\n');
    }
    for hidden in hide {
        out = out.replace(hidden, "<address>");
    }
    out
}

/// The JSON an account reads about itself, with ids and times replaced by their
/// kind and `hide` by `<address>`, so that two accounts' reads compare.
fn normalised(value: &Value, hide: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("id" | "session_id" | "user_id", Value::String(_)) => json!("<id>"),
                        (key, Value::String(_)) if key == "at" || key.ends_with("_at") => {
                            json!("<time>")
                        }
                        _ => normalised(v, hide),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalised(v, hide)).collect()),
        Value::String(s) => {
            let mut s = s.clone();
            for hidden in hide {
                s = s.replace(hidden, "<address>");
            }
            Value::String(s)
        }
        other => other.clone(),
    }
}

/// What an account reads about itself afterwards: export, activity, sessions.
fn reads(fleet: &Fleet, access: &str, hide: &[&str]) -> Vec<(String, Value)> {
    ["/profile/export", "/profile/activity", "/profile/sessions"]
        .into_iter()
        .map(|path| {
            let response = fleet
                .request(Method::GET, path)
                .bearer_auth(access)
                .send()
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let body: Value = response.json().unwrap();
            (path.to_owned(), normalised(&body, hide))
        })
        .collect()
}

/// Lets the account ask for a change of address again (the once-a-minute rule).
fn a_minute_later(fleet: &Fleet) {
    fleet.db.execute(
        "UPDATE auth_events SET created_at = '2000-01-01 00:00:00' WHERE kind = 'email.change_requested'",
    );
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `send` alternately for addresses with and without an account (`rounds` of
/// each) and asserts the medians are within a factor of two: a missing Argon2 hash,
/// or a mail's worth of work on one side only, would be far outside it.
fn times_match(
    what: &str,
    rounds: usize,
    mut send: impl FnMut(usize, bool) -> StatusCode,
) -> (Duration, Duration) {
    let (mut taken, mut free) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for has_account in [round % 2 == 0, round % 2 != 0] {
            let started = Instant::now();
            let status = send(round, has_account);
            let took = started.elapsed();
            assert!(
                status.is_client_error() || status.is_success(),
                "{what}: {status}"
            );
            if has_account {
                taken.push(took)
            } else {
                free.push(took)
            }
        }
    }
    let (taken, free) = (median(taken), median(free));
    let ratio = taken.as_secs_f64() / free.as_secs_f64();
    eprintln!("{what}: median {taken:?} with an account, {free:?} without (ratio {ratio:.2})");
    assert!(
        (0.5..=2.0).contains(&ratio),
        "{what}: {taken:?} with an account against {free:?} without"
    );
    (taken, free)
}

on_both_databases! {
    fn signup_resend_forgot_and_login_answer_the_same_for_any_address(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, TAKEN);
        let before = mail_count(&fleet);

        // Signup: the owner of an address that has an account is told; a free address
        // gets its link. The asker sees the same either way.
        let signed_up = same_for_both("POST /signup (JSON)", FREE, |email| {
            json_post(&fleet, "/signup", json!({"email": email, "password": PASSWORD}))
        });
        assert_eq!(signed_up.status, StatusCode::ACCEPTED, "{}", signed_up.body);
        let signed_up = same_for_both("POST /signup (form)", "gwen1@example.org", |email| {
            form_post(&fleet, "/signup", &[("email", email), ("password", PASSWORD)]).send().unwrap()
        });
        assert_eq!(signed_up.status, StatusCode::SEE_OTHER);
        // A refusal that shows the form again shows the same form.
        let refused = same_for_both("POST /signup (form, a bad password)", "gwen2@example.org", |email| {
            form_post(&fleet, "/signup", &[("email", email), ("password", "short")]).send().unwrap()
        });
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);

        // Resend and forgot: the same 202 for anyone.
        let resent = same_for_both("POST /signup/resend (JSON)", "gwen3@example.org", |email| {
            json_post(&fleet, "/signup/resend", json!({"email": email}))
        });
        assert_eq!(resent.status, StatusCode::ACCEPTED);
        same_for_both("POST /signup/resend (form)", "gwen4@example.org", |email| {
            form_post(&fleet, "/signup/resend", &[("email", email)]).send().unwrap()
        });
        let forgot = same_for_both("POST /login/forgot (JSON)", "gwen5@example.org", |email| {
            json_post(&fleet, "/login/forgot", json!({"email": email}))
        });
        assert_eq!(forgot.status, StatusCode::ACCEPTED);
        same_for_both("POST /login/forgot (form)", "gwen6@example.org", |email| {
            form_post(&fleet, "/login/forgot", &[("email", email)]).send().unwrap()
        });

        // Sign-in with a wrong password: the same refusal, no cookie either way.
        let failed = same_for_both("POST /login (JSON)", "gwen7@example.org", |email| {
            json_post(&fleet, "/login", json!({"email": email, "password": "not the password at all"}))
        });
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED, "{}", failed.body);
        assert!(!failed.headers.contains_key("set-cookie"));
        let failed = same_for_both("POST /login (form)", "gwen8@example.org", |email| {
            form_post(&fleet, "/login", &[("email", email), ("password", "not the password at all")]).send().unwrap()
        });
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
        assert!(failed.body.contains("value=\"<address>\""), "the address typed is kept");

        // The mails went to the addresses typed and to nobody else: the owner of the
        // taken address is told of the signups and gets the reset link, the free
        // address gets its verification link.
        let signup_notice = "Subject: Someone tried to sign up with your address";
        let reached = wait_until(Duration::from_secs(15), || {
            fleet.mails_to(TAKEN).iter().any(|m| m.contains("/login/reset?token="))
                && fleet.mails_to(FREE).len() == 1
                && fleet.mails_to("gwen1@example.org").len() == 1
        });
        assert!(reached, "the mails did not arrive:\n{}", fleet.all_logs());
        // Before: the taken address's own verification.
        let to_typed = fleet.mails_to(TAKEN).len() - 1 + 2;
        assert_eq!(mail_count(&fleet) - before, to_typed, "no mail to anyone else");
        assert!(fleet.mails_to(TAKEN).iter().any(|m| m.contains(signup_notice)), "the owner is told");
    }

    fn a_taken_username_is_refused_the_same_whatever_the_address(db: TestDb) {
        let fleet = Fleet::start(db);
        let created = json_post(&fleet, "/signup", json!({"email": TAKEN, "password": PASSWORD, "username": "grace"}));
        assert_eq!(created.status(), StatusCode::ACCEPTED);
        let token = flotilla_testkit::link_param(&fleet.wait_for_mails(TAKEN, 1)[0], "token").unwrap();
        assert_eq!(post_token(&fleet, "/signup/verify", &token).status(), StatusCode::OK);
        let before = mail_count(&fleet);

        // Usernames are public (/people/…): refusing one for a free address only
        // would tell that the other address has an account.
        let refused = same_for_both("POST /signup, a taken username (JSON)", FREE, |email| {
            json_post(&fleet, "/signup", json!({"email": email, "password": PASSWORD, "username": "grace"}))
        });
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        assert_eq!(serde_json::from_str::<Value>(&refused.body).unwrap()["error"], "username_taken");
        let refused = same_for_both("POST /signup, a taken username (form)", FREE, |email| {
            form_post(&fleet, "/signup", &[("email", email), ("password", PASSWORD), ("username", "grace")]).send().unwrap()
        });
        assert_eq!(refused.status, StatusCode::CONFLICT);
        assert!(refused.body.contains("taken"), "{}", refused.body);
        // Nothing was created and nobody was mailed.
        assert_eq!(fleet.db.strings("SELECT email AS v FROM users"), vec![TAKEN.to_owned()]);
        assert!(!wait_until(Duration::from_millis(1500), || mail_count(&fleet) > before), "no mail");

        // Nor does a second signup tell: a signup with a free address creates an
        // account holding the username, one with a taken address does not, so if an
        // unconfirmed account kept its username, a second signup with it would be
        // refused after a free address only. Until confirmed, an account lets it go.
        let second = same_for_both("POST /signup, the username of a signup just before", FREE, |email| {
            let name = format!("u{}", &email[..5]);
            let first = json_post(&fleet, "/signup", json!({"email": email, "password": PASSWORD, "username": name}));
            assert_eq!(first.status(), StatusCode::ACCEPTED);
            json_post(&fleet, "/signup", json!({"email": format!("x{email}"), "password": PASSWORD, "username": name}))
        });
        assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
        let holders = fleet.db.strings("SELECT email || ':' || COALESCE(username, '-') AS v FROM users ORDER BY email");
        assert_eq!(holders, ["grace@example.org:grace", "gwene@example.org:-", "xgrace@example.org:ugrace", "xgwene@example.org:ugwene"]);
    }

    fn an_address_change_reads_the_same_to_the_asker_whether_the_address_is_taken_or_free(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, TAKEN);
        // Two askers alike: one asks for the taken address, the other for the free one.
        let (ada, bob) = ("ada@example.org", "bob@example.org");
        verified_account(&fleet, ada);
        verified_account(&fleet, bob);
        let (ada_access, _) = sign_in(&fleet, ada);
        let (bob_access, _) = sign_in(&fleet, bob);
        let hide = [TAKEN, FREE, ada, bob];
        let ask = |access: &str, new_email: &str, password: &str| {
            fleet.request(Method::POST, "/profile/email").bearer_auth(access)
                .json(&json!({"new_email": new_email, "password": password})).send().unwrap()
        };

        let to_taken = answer(ask(&ada_access, TAKEN, PASSWORD), &hide);
        let to_free = answer(ask(&bob_access, FREE, PASSWORD), &hide);
        assert_eq!(to_taken, to_free);
        assert_eq!(to_taken.status, StatusCode::ACCEPTED, "{}", to_taken.body);

        // Within the minute: the same 429, also with a wrong password (never checked).
        for password in [PASSWORD, "not the password at all"] {
            let again = [(&ada_access, TAKEN), (&bob_access, FREE)].map(|(access, email)| {
                let mut a = answer(ask(access, email, password), &hide);
                // Seconds left: the two may be a second apart.
                a.headers.remove("retry-after");
                a.body = a.body.chars().filter(|c| !c.is_ascii_digit()).collect();
                a
            });
            assert_eq!(again[0], again[1]);
            assert_eq!(again[0].status, StatusCode::TOO_MANY_REQUESTS, "{}", again[0].body);
        }

        // A form post from the account page: the same redirect.
        a_minute_later(&fleet);
        let form = [(&ada_access, TAKEN), (&bob_access, FREE)].map(|(access, email)| {
            let csrf = decode_part(access, 1)["csrf"].as_str().unwrap().to_owned();
            let response = form_post(&fleet, "/profile/email", &[("new_email", email), ("password", PASSWORD), ("csrf_token", &csrf)])
                .header(COOKIE, format!("flotilla_access={access}"))
                .send().unwrap();
            answer(response, &hide)
        });
        assert_eq!(form[0], form[1]);
        assert_eq!(form[0].status, StatusCode::SEE_OTHER, "{}", form[0].body);

        // Each old address got the same two notices; the free address got its links,
        // the taken one's owner was told, without a link.
        let notices = [ada, bob].map(|email| {
            let mails = fleet.wait_for_mails(email, 3);
            mails[1..].iter().map(|m| readable(m, &hide)).collect::<Vec<_>>()
        });
        assert_eq!(notices[0], notices[1]);
        assert!(notices[0].iter().all(|m| m.contains("Subject: A change of your email address was asked for")));
        assert_eq!(fleet.wait_for_mails(FREE, 2).len(), 2);
        let told = fleet.wait_for_mails(TAKEN, 2);
        assert!(told[1].contains("Subject: Someone tried to use your email address"));
        assert!(told.iter().all(|m| !m.contains("/profile/email/confirm")));

        // What each asker reads afterwards is the same: the pending links (the one for
        // the taken address can never complete), the activity, the sessions.
        assert_eq!(reads(&fleet, &ada_access, &hide), reads(&fleet, &bob_access, &hide));
        let export = &reads(&fleet, &ada_access, &hide)[0].1;
        assert_eq!(export["email_links"].as_array().unwrap().iter().filter(|l| l["purpose"] == "change_email").count(), 2, "{export}");
        // The link no mail carried stays unused: the address never moves.
        assert_eq!(fleet.db.strings("SELECT email AS v FROM users ORDER BY email"), vec![ada.to_owned(), bob.to_owned(), TAKEN.to_owned()]);
    }

    fn the_once_a_minute_address_change_rule_comes_before_the_password_check(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let ask = |password: &str| {
            let response = fleet.request(Method::POST, "/profile/email").bearer_auth(&access)
                .json(&json!({"new_email": "lovelace@example.org", "password": password})).send().unwrap();
            let status = response.status();
            (status, response.json::<Value>().unwrap_or(Value::Null))
        };
        assert_eq!(ask(PASSWORD).0, StatusCode::ACCEPTED);
        // A flood of requests within the minute, wrong passwords included: each is
        // refused before any hash, so none counts as a failed password check and the
        // password throttle (five failures) is never reached.
        for _ in 0..8 {
            let (status, body) = ask("not the password at all");
            assert_eq!((status, body["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_requests")), "{body}");
        }
        let failed = fleet.db.strings("SELECT kind AS v FROM auth_events WHERE kind = 'password.check_failed'");
        assert!(failed.is_empty(), "{failed:?}");
        // Once the minute is over, the password is checked again.
        a_minute_later(&fleet);
        assert_eq!(ask("not the password at all").0, StatusCode::FORBIDDEN);
        assert_eq!(fleet.db.strings("SELECT kind AS v FROM auth_events WHERE kind = 'password.check_failed'").len(), 1);
    }

    fn answers_take_as_long_for_an_address_with_an_account_as_for_a_free_one(db: TestDb) {
        let fleet = Fleet::start(db);
        const ROUNDS: usize = 8;
        // Accounts, unverified (resend sends them links); free addresses of the same length.
        let taken: Vec<String> = (0..ROUNDS).map(|i| format!("taken{i}@example.org")).collect();
        let free = |route: &str, i: usize| format!("{route}{i}@example.org");
        for email in &taken {
            let created = json_post(&fleet, "/signup", json!({"email": email, "password": PASSWORD}));
            assert_eq!(created.status(), StatusCode::ACCEPTED);
        }
        let pick = |has_account: bool, round: usize, route: &str| {
            if has_account { taken[round].clone() } else { free(route, round) }
        };

        times_match("POST /signup", ROUNDS, |round, has| {
            json_post(&fleet, "/signup", json!({"email": pick(has, round, "fresh"), "password": PASSWORD})).status()
        });
        // Four failures per address stay below the throttle.
        times_match("POST /login", ROUNDS, |round, has| {
            json_post(&fleet, "/login", json!({"email": pick(has, round / 4, "nouse"), "password": "not the password at all"})).status()
        });
        // These two do no hash: a link issued and a mail queued for an account is
        // hidden under the floor both answers wait for.
        let floor = flotilla_auth::even_time::FLOOR;
        let medians = times_match("POST /login/forgot", ROUNDS, |round, has| {
            json_post(&fleet, "/login/forgot", json!({"email": pick(has, round, "unkno")})).status()
        });
        assert!(medians.0 >= floor && medians.1 >= floor, "{medians:?}");
        // Each account was sent its link: the work the floor hides was done.
        let links = |purpose: &str| fleet.db.strings(&format!("SELECT purpose AS v FROM email_tokens WHERE purpose = '{purpose}' AND created_at > '2001-01-01'")).len();
        assert_eq!(links("password_reset"), ROUNDS);
        // The signup's links were sent less than a minute ago: as if they were older.
        fleet.db.execute("UPDATE email_tokens SET created_at = '2000-01-01 00:00:00'");
        let medians = times_match("POST /signup/resend", ROUNDS, |round, has| {
            json_post(&fleet, "/signup/resend", json!({"email": pick(has, round, "nobod")})).status()
        });
        assert!(medians.0 >= floor && medians.1 >= floor, "{medians:?}");
        assert_eq!(links("verify_email"), ROUNDS);

        verified_account(&fleet, "asker@example.org");
        let (access, _) = sign_in(&fleet, "asker@example.org");
        times_match("POST /profile/email", ROUNDS, |round, has| {
            a_minute_later(&fleet);
            fleet.request(Method::POST, "/profile/email").bearer_auth(&access)
                .json(&json!({"new_email": pick(has, round, "moved"), "password": PASSWORD}))
                .send().unwrap().status()
        });
    }
}
