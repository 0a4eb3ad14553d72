//! Second factors through nginx: an authenticator app set up at profile (codes
//! computed here from the key it shows), the sign-in's second step at login, a code
//! used once, wrong codes throttled, recovery codes used once, the step-up on
//! sensitive routes, the `amr` claim as another service (an app behind nginx) sees
//! it, and no secret in the export or the logs.

use flotilla_auth::factors::TotpSecret;
use flotilla_testkit::wait_until;
use reqwest::Method;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use reqwest::header::{ACCEPT, COOKIE, LOCATION, ORIGIN, RETRY_AFTER};
use serde_json::{Value, json};

use super::admin::{admin_account, admin_call, role_command};
use super::apps::{bearer_get, seen_by_app, with_example};
use super::login::{
    PASSWORD, cookie_value, decode_part, login, set_cookies, sign_in, verified_account,
};
use super::*;

/// An account's authenticator app, as the test holds it: the key and what profile
/// answered when it was set up.
pub(super) struct App {
    secret: TotpSecret,
    key: String,
    pending: String,
    /// The code that set it up (spent).
    first_code: String,
    recovery_codes: Vec<String>,
}

impl App {
    /// The code the app shows `offset` steps from now.
    fn code(&self, offset: i64) -> String {
        let now = chrono::Utc::now().timestamp() + offset * 30;
        self.secret.code_at(u64::try_from(now).unwrap())
    }
}

fn json_post(fleet: &Fleet, path: &str, access: &str, body: &Value) -> Response {
    fleet
        .request(Method::POST, path)
        .bearer_auth(access)
        .json(body)
        .send()
        .unwrap()
}

fn error_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// Sets up an authenticator app for the account of `access`, checking the refusals on
/// the way.
pub(super) fn set_up_app(fleet: &Fleet, access: &str) -> App {
    let offer = bearer_get(fleet, "/profile/totp", access);
    assert_eq!(offer.status(), StatusCode::OK);
    let offer: Value = offer.json().unwrap();
    let key = offer["secret"].as_str().unwrap().to_owned();
    let url = offer["otpauth_url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/flotilla:"), "{url}");
    assert!(url.contains(&format!("secret={key}")), "{url}");
    let pending = offer["pending"].as_str().unwrap().to_owned();
    let secret = TotpSecret::from_base32(&key).unwrap();
    let app = App {
        secret,
        key,
        pending,
        first_code: String::new(),
        recovery_codes: Vec::new(),
    };
    let setup = |code: &str, password: &str| {
        let body = json!({"pending": app.pending, "code": code, "password": password});
        json_post(fleet, "/profile/totp", access, &body)
    };
    // A code of the wrong shape, a wrong code, a wrong password: refused, nothing set.
    let (status, body) = error_of(setup("12345", PASSWORD));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["fields"]["code"].is_string(), "{body}");
    let wrong = wrong_code(&app);
    let (status, body) = error_of(setup(&wrong, PASSWORD));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["fields"]["code"]
            .as_str()
            .unwrap()
            .contains("not the code")
    );
    let (status, body) = error_of(setup(&app.code(0), "not the password"));
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "wrong_password");
    // Another account's form, or one altered, does not set anything up.
    let (status, body) = error_of(json_post(
        fleet,
        "/profile/totp",
        access,
        &json!({"pending": "AAAA", "code": app.code(0), "password": PASSWORD}),
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "setup_expired");
    assert_eq!(factors(fleet, access)["totp"], Value::Null);

    let first_code = app.code(0);
    let done = setup(&first_code, PASSWORD);
    assert_eq!(done.status(), StatusCode::CREATED);
    let codes: Vec<String> = done.json::<Value>().unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    // Set up once: a second offer is refused.
    let again = bearer_get(fleet, "/profile/totp", access);
    assert_eq!(again.status(), StatusCode::CONFLICT);
    App {
        first_code,
        recovery_codes: codes,
        ..app
    }
}

/// Six digits that are none of the app's codes around now.
fn wrong_code(app: &App) -> String {
    let near: Vec<String> = (-2..=2).map(|o| app.code(o)).collect();
    (0..)
        .map(|n| format!("{:06}", (n * 7919) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

fn factors(fleet: &Fleet, access: &str) -> Value {
    let response = bearer_get(fleet, "/profile/factors", access);
    assert_eq!(response.status(), StatusCode::OK);
    response.json().unwrap()
}

/// The password step: the second step's token.
fn password_step(fleet: &Fleet, email: &str) -> String {
    let (status, body) = login(fleet, email, PASSWORD);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "second_factor_required", "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(body["expires_in"], 300);
    body["second_step_token"].as_str().unwrap().to_owned()
}

fn second_step(fleet: &Fleet, token: &str, code: &str) -> (StatusCode, Value) {
    let response = fleet
        .request(Method::POST, "/login/second-step")
        .json(&json!({"second_step_token": token, "code": code}))
        .send()
        .unwrap();
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert!(response.headers().contains_key(RETRY_AFTER));
    }
    (status, response.json().unwrap_or(Value::Null))
}

fn amr(access: &str) -> Value {
    decode_part(access, 1)["amr"].clone()
}

/// Waits for a mail to `to` that says `text`.
fn mailed(fleet: &Fleet, to: &str, text: &str) {
    let found = wait_until(std::time::Duration::from_secs(10), || {
        fleet.mails_to(to).iter().any(|m| m.contains(text))
    });
    assert!(found, "no mail says {text:?}: {:?}", fleet.mails_to(to));
}

fn count(fleet: &Fleet, sql: &str) -> usize {
    fleet.db.strings(sql).len()
}

on_both_databases! {
    fn an_authenticator_app_makes_signing_in_take_a_code_used_once(db: TestDb) {
        let fleet = with_example(db);
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        let app = set_up_app(&fleet, &access);
        let listed = factors(&fleet, &access);
        assert!(listed["totp"]["created_at"].is_string(), "{listed}");
        assert_eq!(listed["recovery_codes_left"], 10);
        // The key is stored sealed: neither it nor the codes are in the database.
        let stored = fleet.db.strings("SELECT secret AS v FROM totp_factors");
        assert_eq!(stored.len(), 1);
        assert!(!stored[0].contains(&app.key) && !stored[0].contains(&app.key.to_lowercase()));
        let hashes = fleet.db.strings("SELECT code_hash AS v FROM recovery_codes").join(" ");
        for code in &app.recovery_codes {
            assert!(!hashes.contains(code.as_str()));
        }
        // Set up and mailed to the owner, and in the activity.
        mailed(&fleet, email, "An authenticator app was set up");
        assert_eq!(count(&fleet, "SELECT kind AS v FROM auth_events WHERE kind = 'totp.added'"), 1);

        // The password alone opens no session now.
        let token = password_step(&fleet, email);
        // The code that set the app up is spent: not accepted again.
        let (status, body) = second_step(&fleet, &token, &app.first_code);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "wrong_code");
        // Malformed: the field named, the step still alive.
        let (status, body) = second_step(&fleet, &token, "12");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["fields"]["code"].is_string());
        // The next step's code (one step of drift allowed) finishes the sign-in.
        let code = app.code(1);
        let (status, body) = second_step(&fleet, &token, &code);
        assert_eq!(status, StatusCode::OK, "{body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(amr(&access), json!(["pwd", "otp", "mfa"]));
        // Another service sees how: the app behind nginx gets the `amr`.
        let seen = seen_by_app(bearer_get(&fleet, "/hello/api/me", &access));
        assert_eq!(seen["amr"], "pwd otp mfa", "{seen}");
        // The step is spent, and the code too: a new sign-in cannot use it again.
        let (status, body) = second_step(&fleet, &token, &app.code(1));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "second_step_ended");
        let token = password_step(&fleet, email);
        let (status, body) = second_step(&fleet, &token, &code);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

        // A recovery code, however typed, signs in once, and is mailed.
        let recovery = app.recovery_codes[0].to_uppercase().replace('-', " ");
        let (status, body) = second_step(&fleet, &token, &recovery);
        assert_eq!(status, StatusCode::OK, "{body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(amr(&access), json!(["pwd", "rc", "mfa"]));
        assert_eq!(factors(&fleet, &access)["recovery_codes_left"], 9);
        mailed(&fleet, email, "9 recovery codes are left");
        let token = password_step(&fleet, email);
        let (status, _) = second_step(&fleet, &token, &app.recovery_codes[0]);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(factors(&fleet, &access)["recovery_codes_left"], 9);
    }

    fn wrong_codes_end_the_step_and_are_throttled_per_account(db: TestDb) {
        let fleet = Fleet::start(db);
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        let app = set_up_app(&fleet, &access);
        let wrong = wrong_code(&app);
        // Four wrong codes are refused; the fifth ends the step.
        let token = password_step(&fleet, email);
        for _ in 0..4 {
            let (status, body) = second_step(&fleet, &token, &wrong);
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        }
        let (status, body) = second_step(&fleet, &token, &wrong);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "second_step_ended");
        assert_eq!(
            count(&fleet, "SELECT kind AS v FROM auth_events WHERE kind = 'login.second_factor_failed'"),
            5
        );
        // The password again gives a new step, but the account's wrong codes count
        // there too: even the right code waits now.
        let token = password_step(&fleet, email);
        let (status, body) = second_step(&fleet, &token, &app.code(1));
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"], "too_many_attempts");
        // Nothing was opened meanwhile.
        assert_eq!(
            count(&fleet, "SELECT kind AS v FROM auth_events WHERE kind = 'login.success'"),
            1
        );
    }

    fn sensitive_changes_ask_for_the_code(db: TestDb) {
        let fleet = Fleet::start(db);
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        let app = set_up_app(&fleet, &access);
        let token = password_step(&fleet, email);
        let (_, body) = second_step(&fleet, &token, &app.code(1));
        let access = body["access_token"].as_str().unwrap().to_owned();

        // A new password: without the code 422 naming it, with a wrong one 403.
        let change = |code: Option<&str>| {
            let mut body = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
            if let Some(code) = code {
                body["code"] = json!(code);
            }
            error_of(json_post(&fleet, "/profile/password", &access, &body))
        };
        let (status, body) = change(None);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["fields"]["code"], "is required");
        let (status, body) = change(Some(&wrong_code(&app)));
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "wrong_code");
        assert_eq!(
            count(&fleet, "SELECT kind AS v FROM auth_events WHERE kind = 'second_factor.check_failed'"),
            1
        );
        // A change of address and closing the account ask for it too.
        let (status, body) = error_of(json_post(
            &fleet,
            "/profile/email",
            &access,
            &json!({"new_email": "new@example.org", "password": PASSWORD}),
        ));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["fields"]["code"], "is required");
        let close = fleet
            .request(Method::DELETE, "/profile/me")
            .bearer_auth(&access)
            .json(&json!({"password": PASSWORD}))
            .send()
            .unwrap();
        assert_eq!(close.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // So do removing the app and new recovery codes.
        let (status, body) = error_of(json_post(
            &fleet,
            "/profile/recovery-codes",
            &access,
            &json!({"password": PASSWORD}),
        ));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let removal = fleet
            .request(Method::DELETE, "/profile/totp")
            .bearer_auth(&access)
            .json(&json!({"password": PASSWORD, "code": wrong_code(&app)}))
            .send()
            .unwrap();
        assert_eq!(removal.status(), StatusCode::FORBIDDEN);
        assert!(factors(&fleet, &access)["totp"].is_object());
        // "Confirm it's you" takes the code as well, and says so in the session.
        let (status, body) = error_of(json_post(
            &fleet,
            "/login/confirm",
            &access,
            &json!({"password": PASSWORD}),
        ));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        // The app's codes are each used once, and the next is half a minute away: a
        // recovery code confirms here.
        let confirmed = json_post(
            &fleet,
            "/login/confirm",
            &access,
            &json!({"password": PASSWORD, "code": app.recovery_codes[3]}),
        );
        assert_eq!(confirmed.status(), StatusCode::NO_CONTENT);
        let sid = decode_part(&access, 1)["sid"].as_str().unwrap().to_owned();
        let stored = fleet.db.strings(&format!("SELECT amr AS v FROM sessions WHERE id = '{sid}'"));
        assert_eq!(stored, vec!["pwd rc mfa".to_owned()]);
        // New recovery codes with a recovery code: the old ones stop working.
        let renewed = json_post(
            &fleet,
            "/profile/recovery-codes",
            &access,
            &json!({"password": PASSWORD, "code": app.recovery_codes[1]}),
        );
        assert_eq!(renewed.status(), StatusCode::CREATED);
        let fresh = renewed.json::<Value>().unwrap()["recovery_codes"].clone();
        assert_eq!(fresh.as_array().unwrap().len(), 10);
        assert_eq!(factors(&fleet, &access)["recovery_codes_left"], 10);
        let stale = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase", "code": app.recovery_codes[2]});
        let (status, _) = error_of(json_post(&fleet, "/profile/password", &access, &stale));
        assert_eq!(status, StatusCode::FORBIDDEN);
        // With a fresh code, the password changes.
        let fine = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase", "code": fresh[0]});
        let (status, body) = error_of(json_post(&fleet, "/profile/password", &access, &fine));
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        // Removing the app: signing in takes the password alone again.
        let removal = fleet
            .request(Method::DELETE, "/profile/totp")
            .bearer_auth(&access)
            .json(&json!({"password": "a brand new passphrase", "code": fresh[1]}))
            .send()
            .unwrap();
        assert_eq!(removal.status(), StatusCode::NO_CONTENT);
        assert_eq!(factors(&fleet, &access), json!({"totp": null, "passkeys": [], "recovery_codes_left": 0}));
        let (status, body) = login(&fleet, email, "a brand new passphrase");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(amr(body["access_token"].as_str().unwrap()), json!(["pwd"]));
        mailed(&fleet, email, "authenticator app of your flotilla account was removed");
    }

    fn no_factor_secret_reaches_the_export_or_a_log(db: TestDb) {
        let fleet = Fleet::start(db);
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        let app = set_up_app(&fleet, &access);
        let token = password_step(&fleet, email);
        let (status, _) = second_step(&fleet, &token, &app.recovery_codes[0]);
        assert_eq!(status, StatusCode::OK);
        let export = bearer_get(&fleet, "/profile/export", &access).text().unwrap();
        let export_json: Value = serde_json::from_str(&export).unwrap();
        assert!(export_json["second_factors"]["totp"].is_object(), "{export}");
        assert_eq!(export_json["second_factors"]["recovery_codes_left"], 9);
        let stored = fleet.db.strings("SELECT secret AS v FROM totp_factors");
        let logs = fleet.all_logs();
        let mails = fleet.mails_to(email).join("\n");
        let mut secrets = vec![app.key.clone(), app.pending.clone(), stored[0].clone(), token];
        secrets.extend(app.recovery_codes.iter().cloned());
        for secret in &secrets {
            assert!(!export.contains(secret.as_str()), "the export holds {secret}");
            assert!(!logs.contains(secret.as_str()), "a log holds {secret}");
            assert!(!mails.contains(secret.as_str()), "a mail holds {secret}");
        }
    }

    fn a_browser_signs_in_in_two_steps(db: TestDb) {
        let fleet = Fleet::start(db);
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        let app = set_up_app(&fleet, &access);
        let post = |path: &str, cookie: &str, form: &[(&str, &str)]| {
            fleet
                .request(Method::POST, path)
                .header(ORIGIN, fleet.origin())
                .header(ACCEPT, "text/html")
                .header(COOKIE, cookie)
                .form(form)
                .send()
                .unwrap()
        };
        let get = |path: &str, cookie: &str| {
            fleet
                .request(Method::GET, path)
                .header(ACCEPT, "text/html")
                .header(COOKIE, cookie)
                .send()
                .unwrap()
        };
        let first = post(
            "/login",
            "",
            &[("email", email), ("password", PASSWORD), ("next", "/profile#security")],
        );
        assert_eq!(first.status(), StatusCode::SEE_OTHER);
        let to = first.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(to.starts_with("/login/second-step?next="), "{to}");
        let cookies = set_cookies(&first);
        assert!(cookie_value(&cookies, "flotilla_access").is_none(), "{cookies:?}");
        let step = cookie_value(&cookies, "flotilla_second_step").unwrap();
        let jar = format!("flotilla_second_step={step}");
        let page = get(&to, &jar);
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().unwrap();
        assert!(page.contains("autocomplete=\"one-time-code\""), "{page}");
        // A wrong code: the form again, with the problem, still no session.
        let wrong = post("/login/second-step", &jar, &[("code", &wrong_code(&app))]);
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        assert!(set_cookies(&wrong).is_empty());
        assert!(wrong.text().unwrap().contains("The code is not right"));
        let done = post(
            "/login/second-step",
            &jar,
            &[("code", &app.code(1)), ("next", "/profile")],
        );
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        assert_eq!(done.headers()[LOCATION], "/profile");
        let cookies = set_cookies(&done);
        let access = cookie_value(&cookies, "flotilla_access").unwrap();
        // The step's cookie goes.
        assert_eq!(cookie_value(&cookies, "flotilla_second_step").as_deref(), Some(""));
        let account = get("/profile", &format!("flotilla_access={access}"));
        assert_eq!(account.status(), StatusCode::OK);
        let account = account.text().unwrap();
        assert!(account.contains("Recovery codes left: <strong>10</strong>"), "{account}");
        // The step is spent: its page sends the browser to sign in again.
        let away = get("/login/second-step", &jar);
        assert_eq!(away.status(), StatusCode::SEE_OTHER);
        assert_eq!(away.headers()[LOCATION], "/login");
    }

    fn an_admin_resets_lost_factors_and_the_console_can_require_them(db: TestDb) {
        let fleet = Fleet::builder(db).env("FLOTILLA_ADMIN_REQUIRE_MFA", "true").start();
        let root = admin_account(&fleet, "root@example.org");
        // An admin without a second factor: kept out of the console, told why.
        let (status, body) = admin_call(&fleet, Method::GET, "/admin", &root, None);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "second_factor_required");
        let page = fleet
            .request(Method::GET, "/admin")
            .bearer_auth(&root)
            .header(ACCEPT, "text/html")
            .send()
            .unwrap();
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert!(page.text().unwrap().contains("/profile#two-step"));
        // With an app, and a sign-in through it: in.
        let root_app = set_up_app(&fleet, &root);
        let token = password_step(&fleet, "root@example.org");
        let (_, body) = second_step(&fleet, &token, &root_app.code(1));
        let root = body["access_token"].as_str().unwrap().to_owned();
        let (status, body) = admin_call(&fleet, Method::GET, "/admin", &root, None);
        assert_eq!(status, StatusCode::OK, "{body}");

        // Ada lost her phone and her recovery codes: the password alone does not sign in.
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        set_up_app(&fleet, &access);
        let ids = fleet.db.strings(&format!("SELECT id AS v FROM users WHERE email = '{email}'"));
        let path = format!("/admin/users/{}", ids[0]);
        let (status, body) = admin_call(&fleet, Method::GET, &path, &root, None);
        assert_eq!(status, StatusCode::OK);
        let seen = body["second_factors"].to_string();
        assert!(body["second_factors"]["totp"].is_object(), "{seen}");
        assert_eq!(body["second_factors"]["recovery_codes_left"], 10);
        let sealed = fleet.db.strings("SELECT secret AS v FROM totp_factors");
        assert!(sealed.iter().all(|s| !seen.contains(s.as_str())), "{seen}");
        // The reset: everything goes, the sessions end, audited, mailed.
        let reset = format!("{path}/reset-factors");
        let (status, body) = admin_call(&fleet, Method::POST, &reset, &root, Some(json!({})));
        assert_eq!(status, StatusCode::OK, "{body}");
        // Its sessions are refused everywhere within a moment (the bus).
        let ended = wait_until(std::time::Duration::from_secs(3), || {
            bearer_get_status(&fleet, &access).0 == StatusCode::UNAUTHORIZED
        });
        assert!(ended, "ada's session outlived the reset");
        let (status, body) = admin_call(&fleet, Method::POST, &reset, &root, Some(json!({})));
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"], "no_second_factor");
        let audit = fleet.db.strings("SELECT action AS v FROM audit_log WHERE action = 'account.factors_reset'");
        assert_eq!(audit.len(), 1);
        mailed(&fleet, email, "second factors of your flotilla account");
        let (status, body) = login(&fleet, email, PASSWORD);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["access_token"].is_string(), "{body}");

        // The command line does the same for an admin locked out of their own.
        let (done, printed) = role_command(&fleet, "reset-factors", "root@example.org");
        assert!(done, "{printed}");
        // No bus from the command line: the services catch up from the database.
        let ended = wait_until(std::time::Duration::from_secs(15), || {
            admin_call(&fleet, Method::GET, "/admin", &root, None).0 == StatusCode::UNAUTHORIZED
        });
        assert!(ended, "root's session outlived the command line's reset");
        let (status, body) = login(&fleet, "root@example.org", PASSWORD);
        assert_eq!(status, StatusCode::OK);
        let root = body["access_token"].as_str().unwrap().to_owned();
        let (status, body) = admin_call(&fleet, Method::GET, "/admin", &root, None);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "second_factor_required");
    }
}

/// What profile answers a token now.
fn bearer_get_status(fleet: &Fleet, access: &str) -> (StatusCode, Value) {
    let response = bearer_get(fleet, "/profile/me", access);
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}
