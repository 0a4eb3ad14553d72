//! One account in the console and the actions on it, through nginx: disabling holds
//! at profile within a second, the last admin stays, every action is audited with its
//! request id, changes need a recent sign-in, and the page's forms are guarded.

use std::time::{Duration, Instant};

use flotilla_testkit::link_param;
use reqwest::blocking::Response;
use reqwest::header::{COOKIE, LOCATION, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::admin::{admin_account, admin_call, admin_send};
use super::login::{PASSWORD, decode_part, login, me, refused_within, sign_in, verified_account};
use super::*;

const ACTIONS: [&str; 8] = [
    "disable",
    "enable",
    "promote",
    "demote",
    "revoke-sessions",
    "force-password-reset",
    "resend-verification",
    "delete",
];

/// The id of the account of `email`.
fn id_of(fleet: &Fleet, email: &str) -> String {
    let ids = fleet.db.strings(&format!(
        "SELECT id AS v FROM users WHERE email = '{email}'"
    ));
    assert_eq!(ids.len(), 1, "{email}: {ids:?}");
    ids[0].clone()
}

/// An action with a bearer token: status, body and the answer's request id.
fn act(fleet: &Fleet, access: &str, id: &str, action: &str) -> (StatusCode, Value, String) {
    let path = format!("/admin/users/{id}/{action}");
    let response = admin_send(fleet, Method::POST, &path, access, Some(json!({})));
    let status = response.status();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, response.json().unwrap_or(Value::Null), request_id)
}

/// The audit log, oldest first: `actor|action|target_id|target|client_addr|request_id`.
fn audit(fleet: &Fleet) -> Vec<String> {
    fleet.db.strings(
        "SELECT actor || '|' || action || '|' || COALESCE(target_id, '') || '|' || target \
         || '|' || client_addr || '|' || request_id AS v FROM audit_log ORDER BY id",
    )
}

/// Asserts the newest audit entry is `action` by `actor` on `email`, with the answer's
/// request id.
fn audited(fleet: &Fleet, actor: &str, action: &str, id: &str, email: &str, request_id: &str) {
    let rows = audit(fleet);
    let expected = format!("{actor}|{action}|{id}|{email}|127.0.0.1|{request_id}");
    assert_eq!(rows.last(), Some(&expected), "{rows:?}");
}

/// A timestamp as both backends read it in SQL.
fn sql_time(at: chrono::NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Makes the session of `access` look signed in an hour ago.
fn age_session(fleet: &Fleet, access: &str) {
    let sid = decode_part(access, 1)["sid"].as_str().unwrap().to_owned();
    let hour_ago = sql_time(chrono::Utc::now().naive_utc() - chrono::TimeDelta::hours(1));
    let changed = fleet.db.execute(&format!(
        "UPDATE sessions SET authenticated_at = '{hour_ago}' WHERE id = '{sid}'"
    ));
    assert_eq!(changed, 1);
}

/// A browser's form post, with the access cookie and this site's origin.
pub(super) fn form_post(
    fleet: &Fleet,
    access: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Response {
    fleet
        .request(Method::POST, path)
        .header(COOKIE, format!("flotilla_access={access}"))
        .header(ORIGIN, fleet.origin())
        .header("accept", "text/html")
        .form(form)
        .send()
        .unwrap()
}

fn csrf_of(access: &str) -> String {
    decode_part(access, 1)["csrf"].as_str().unwrap().to_owned()
}

on_both_databases! {
    fn disabling_ends_every_session_within_a_second_and_enabling_undoes_it(db: TestDb) {
        let fleet = Fleet::start(db);
        let admin = admin_account(&fleet, "root@example.org");
        verified_account(&fleet, "ada@example.org");
        let id = id_of(&fleet, "ada@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        assert_eq!(me(&fleet, &ada).0, StatusCode::OK);

        let (status, body, request_id) = act(&fleet, &admin, &id, "disable");
        let answered = Instant::now();
        assert_eq!(status, StatusCode::OK, "{body}");
        let took = refused_within(&fleet, &ada, answered, Duration::from_secs(1));
        println!("disabled account's token refused at profile after {took:?}");
        assert_eq!((body["changed"].as_bool(), body["account"]["disabled"].as_bool()), (Some(true), Some(true)), "{body}");
        assert_eq!(body["sessions_ended"], 1, "{body}");
        audited(&fleet, "root@example.org", "account.disabled", &id, "ada@example.org", &request_id);
        let reasons = fleet.db.strings(&format!("SELECT revoked_reason AS v FROM sessions WHERE user_id = '{id}'"));
        assert_eq!(reasons, ["account_disabled"]);
        let (status, body) = login(&fleet, "ada@example.org", PASSWORD);
        assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("account_disabled")), "{body}");

        // Again: nothing changes, and nothing is recorded.
        let (status, body, _) = act(&fleet, &admin, &id, "disable");
        assert_eq!((status, body["changed"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
        assert_eq!(audit(&fleet).len(), 2, "the promotion and the disable");

        let (status, body, request_id) = act(&fleet, &admin, &id, "enable");
        assert_eq!((status, body["account"]["disabled"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
        audited(&fleet, "root@example.org", "account.enabled", &id, "ada@example.org", &request_id);
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        assert_eq!(me(&fleet, &ada).0, StatusCode::OK);
    }

    fn the_last_admin_can_be_neither_demoted_disabled_nor_deleted(db: TestDb) {
        let fleet = Fleet::start(db);
        let root = admin_account(&fleet, "root@example.org");
        let root_id = id_of(&fleet, "root@example.org");
        for action in ["demote", "disable", "delete"] {
            let (status, body, _) = act(&fleet, &root, &root_id, action);
            assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("last_admin")), "{action}: {body}");
            assert!(body["message"].as_str().unwrap().contains("last admin"), "{body}");
        }
        let state = fleet.db.strings(&format!(
            "SELECT role || '|' || CASE WHEN disabled_at IS NULL AND deleted_at IS NULL THEN 'open' ELSE 'shut' END AS v FROM users WHERE id = '{root_id}'"
        ));
        assert_eq!(state, ["admin|open"], "nothing changed");
        assert_eq!(audit(&fleet).len(), 1, "only the command line's promotion");

        // With a second admin, the first can step down (its own account: allowed).
        verified_account(&fleet, "grace@example.org");
        let grace_id = id_of(&fleet, "grace@example.org");
        let (status, body, request_id) = act(&fleet, &root, &grace_id, "promote");
        assert_eq!((status, body["account"]["role"].as_str()), (StatusCode::OK, Some("admin")), "{body}");
        audited(&fleet, "root@example.org", "account.promoted", &grace_id, "grace@example.org", &request_id);
        let (status, body, request_id) = act(&fleet, &root, &root_id, "demote");
        assert_eq!((status, body["account"]["role"].as_str()), (StatusCode::OK, Some("user")), "{body}");
        audited(&fleet, "root@example.org", "account.demoted", &root_id, "root@example.org", &request_id);
        // root is no admin now; grace is the last one.
        let (status, _, _) = act(&fleet, &root, &grace_id, "demote");
        assert_eq!(status, StatusCode::FORBIDDEN);
        let grace = sign_in(&fleet, "grace@example.org").0;
        let (status, body, _) = act(&fleet, &grace, &grace_id, "disable");
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("last_admin")), "{body}");
    }

    fn resets_links_and_deletion_act_and_are_audited(db: TestDb) {
        let fleet = Fleet::start(db);
        let admin = admin_account(&fleet, "root@example.org");
        verified_account(&fleet, "ada@example.org");
        let id = id_of(&fleet, "ada@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        let (ada_too, _) = sign_in(&fleet, "ada@example.org");

        // Unknown actions and accounts.
        assert_eq!(act(&fleet, &admin, &id, "teleport").0, StatusCode::NOT_FOUND);
        assert_eq!(act(&fleet, &admin, "00000000-0000-4000-8000-000000000000", "disable").0, StatusCode::NOT_FOUND);
        assert_eq!(act(&fleet, &admin, "not%20an%20id", "disable").0, StatusCode::NOT_FOUND);

        let (status, body, request_id) = act(&fleet, &admin, &id, "revoke-sessions");
        assert_eq!((status, body["sessions_ended"].as_u64()), (StatusCode::OK, Some(2)), "{body}");
        audited(&fleet, "root@example.org", "account.sessions_revoked", &id, "ada@example.org", &request_id);
        let answered = Instant::now();
        refused_within(&fleet, &ada, answered, Duration::from_secs(1));
        refused_within(&fleet, &ada_too, answered, Duration::from_secs(1));

        // A forced reset: sessions ended, the password gone, a reset link mailed that
        // sets a new one.
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        let mails_before = fleet.mails_to("ada@example.org").len();
        let (status, body, request_id) = act(&fleet, &admin, &id, "force-password-reset");
        assert_eq!((status, body["sessions_ended"].as_u64(), body["account"]["has_password"].as_bool()), (StatusCode::OK, Some(1), Some(false)), "{body}");
        audited(&fleet, "root@example.org", "account.password_reset_forced", &id, "ada@example.org", &request_id);
        refused_within(&fleet, &ada, Instant::now(), Duration::from_secs(1));
        assert_eq!(login(&fleet, "ada@example.org", PASSWORD).0, StatusCode::UNAUTHORIZED, "the old password no longer works");
        let mails = fleet.wait_for_mails("ada@example.org", mails_before + 1);
        let mail = mails.last().unwrap();
        assert!(mail.contains("/login/reset?token="), "{mail}");
        let token = link_param(mail, "token").unwrap();
        let reset = fleet.request(Method::POST, "/login/reset")
            .json(&json!({"token": token, "password": "a brand new passphrase"})).send().unwrap();
        assert!(reset.status().is_success(), "{}", reset.text().unwrap());
        let (status, signed_in) = login(&fleet, "ada@example.org", "a brand new passphrase");
        assert_eq!(status, StatusCode::OK, "{signed_in}");
        let ada = signed_in["access_token"].as_str().unwrap().to_owned();

        // A confirmed address gets no new link; an unconfirmed one does.
        let (status, body, _) = act(&fleet, &admin, &id, "resend-verification");
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("already_verified")), "{body}");
        let signup = fleet.request(Method::POST, "/signup")
            .json(&json!({"email": "new@example.org", "password": PASSWORD})).send().unwrap();
        assert_eq!(signup.status(), StatusCode::ACCEPTED);
        fleet.wait_for_mails("new@example.org", 1);
        let new_id = id_of(&fleet, "new@example.org");
        let (status, body, request_id) = act(&fleet, &admin, &new_id, "resend-verification");
        assert_eq!(status, StatusCode::OK, "{body}");
        audited(&fleet, "root@example.org", "account.verification_resent", &new_id, "new@example.org", &request_id);
        let mails = fleet.wait_for_mails("new@example.org", 2);
        let first = link_param(&mails[0], "token").unwrap();
        let second = link_param(&mails[1], "token").unwrap();
        assert_ne!(first, second, "a new link");
        assert!(mails[1].contains("/signup/verify?token="), "{}", mails[1]);

        // Delete: closed as its owner closes it, the purge queued.
        let (ada_page_status, page) = admin_call(&fleet, Method::GET, &format!("/admin/users/{id}"), &admin, None);
        assert_eq!(ada_page_status, StatusCode::OK, "{page}");
        assert_eq!(page["sessions"].as_array().unwrap().len(), 1, "{page}");
        let (status, body, request_id) = act(&fleet, &admin, &id, "delete");
        assert_eq!((status, body["account"]["closed"].as_bool()), (StatusCode::OK, Some(true)), "{body}");
        audited(&fleet, "root@example.org", "account.deleted", &id, "ada@example.org", &request_id);
        refused_within(&fleet, &ada, Instant::now(), Duration::from_secs(1));
        assert_eq!(login(&fleet, "ada@example.org", "a brand new passphrase").0, StatusCode::UNAUTHORIZED);
        let purge = fleet.db.strings(&format!("SELECT kind AS v FROM jobs WHERE idempotency_key = 'purge_user:{id}'"));
        assert_eq!(purge, ["purge_user"]);
        let (status, page) = admin_call(&fleet, Method::GET, &format!("/admin/users/{id}"), &admin, None);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["account"]["closed"], true, "{page}");
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.iter().any(|j| j["kind"] == "purge_user" && j["state"] == "pending"), "{page}");
        assert!(jobs.iter().all(|j| j.get("payload").is_none()), "{page}");
        assert_eq!(page["actions"], json!([]), "{page}");
        let (status, body, _) = act(&fleet, &admin, &id, "enable");
        assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("account_closed")), "{body}");

        // The page lists the entries about the account, newest first.
        let actions: Vec<&str> = page["audit"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["account.deleted", "account.password_reset_forced", "account.sessions_revoked"]);
        assert!(!page.to_string().contains("$argon2"), "no hash in {page}");
    }

    fn changes_need_a_recent_sign_in(db: TestDb) {
        let fleet = Fleet::start(db);
        let admin = admin_account(&fleet, "root@example.org");
        verified_account(&fleet, "ada@example.org");
        let id = id_of(&fleet, "ada@example.org");
        age_session(&fleet, &admin);

        let (status, body, _) = act(&fleet, &admin, &id, "disable");
        assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("reauthentication_required")), "{body}");
        let csrf = csrf_of(&admin);
        let form = [("csrf_token", csrf.as_str()), ("confirm", "yes")];
        let response = form_post(&fleet, &admin, &format!("/admin/users/{id}/disable"), &form);
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], format!("/login/confirm?next=%2Fadmin%2Fusers%2F{id}"));
        // Reading needs no recent sign-in.
        let (status, page) = admin_call(&fleet, Method::GET, &format!("/admin/users/{id}"), &admin, None);
        assert_eq!((status, page["account"]["disabled"].as_bool()), (StatusCode::OK, Some(false)), "nothing changed: {page}");
        assert_eq!(audit(&fleet).len(), 1, "only the promotion");

        // Confirming the password in the same session (what the browser was sent to
        // do) opens the window again: the same token may now.
        let confirmed = fleet.request(Method::POST, "/login/confirm").bearer_auth(&admin)
            .json(&serde_json::json!({"password": super::login::PASSWORD})).send().unwrap();
        assert_eq!(confirmed.status(), StatusCode::NO_CONTENT);
        let (status, body, _) = act(&fleet, &admin, &id, "disable");
        assert_eq!((status, body["account"]["disabled"].as_bool()), (StatusCode::OK, Some(true)), "{body}");

        // So may a fresh sign-in.
        age_session(&fleet, &admin);
        let (status, _, _) = act(&fleet, &admin, &id, "enable");
        assert_eq!(status, StatusCode::FORBIDDEN);
        let admin = sign_in(&fleet, "root@example.org").0;
        let (status, body, _) = act(&fleet, &admin, &id, "enable");
        assert_eq!((status, body["account"]["disabled"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
    }

    fn only_admins_get_in(db: TestDb) {
        let fleet = Fleet::start(db);
        admin_account(&fleet, "root@example.org");
        verified_account(&fleet, "ada@example.org");
        let id = id_of(&fleet, "ada@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        let page = format!("/admin/users/{id}");

        let anonymous = fleet.request(Method::GET, &page).send().unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let browser = fleet.get_html(&page);
        assert_eq!(browser.status(), StatusCode::SEE_OTHER);
        assert_eq!(browser.headers()[LOCATION], format!("/login?next=%2Fadmin%2Fusers%2F{id}"));
        let (status, body) = admin_call(&fleet, Method::GET, &page, &ada, None);
        assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("admin_only")), "{body}");
        for action in ACTIONS {
            let path = format!("/admin/users/{id}/{action}");
            let anonymous = fleet.request(Method::POST, &path).json(&json!({})).send().unwrap();
            assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{action}");
            let (status, _, _) = act(&fleet, &ada, &id, action);
            assert_eq!(status, StatusCode::FORBIDDEN, "{action}");
        }
        let (status, body) = me(&fleet, &ada);
        assert_eq!((status, body["role"].as_str()), (StatusCode::OK, Some("user")), "ada still in, still a user");
        assert_eq!(audit(&fleet).len(), 1);
    }

    fn the_account_page_escapes_its_values_and_guards_its_forms(db: TestDb) {
        let fleet = Fleet::start(db);
        let admin = admin_account(&fleet, "root@example.org");
        verified_account(&fleet, "ada@example.org");
        let id = id_of(&fleet, "ada@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        let named = fleet.request(Method::PATCH, "/profile/me").bearer_auth(&ada)
            .json(&json!({"display_name": "Ada <script>alert(1)</script>"})).send().unwrap();
        assert_eq!(named.status(), StatusCode::OK);

        let cookie = format!("flotilla_access={admin}");
        let get_page = |path: &str| {
            let response = fleet.request(Method::GET, path).header(COOKIE, &cookie).header("accept", "text/html").send().unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().unwrap()
        };
        let html = get_page(&format!("/admin/users/{id}"));
        assert!(html.contains("Ada &lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("$argon2"), "no hash in the page");
        let csrf = csrf_of(&admin);
        let token_field = format!("<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">");
        for action in ["disable", "promote", "revoke-sessions", "force-password-reset", "delete"] {
            let form = format!("<form method=\"post\" action=\"/admin/users/{id}/{action}\">\n{token_field}");
            assert!(html.contains(&form), "{action}: {html}");
        }
        // Only what applies: an enabled, confirmed, plain account.
        for action in ["enable", "demote", "resend-verification"] {
            assert!(!html.contains(&format!("/admin/users/{id}/{action}\"")), "{action}");
        }
        assert_eq!(html.matches("name=\"confirm\" value=\"yes\" required").count(), 3, "disable, reset, delete");
        for section in ["id=\"sessions\"", "id=\"events\"", "id=\"jobs\"", "id=\"audit\""] {
            assert!(html.contains(section), "{section}");
        }

        let disable = format!("/admin/users/{id}/disable");
        let forged = form_post(&fleet, &admin, &disable, &[("confirm", "yes")]);
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no form token");
        let unticked = form_post(&fleet, &admin, &disable, &[("csrf_token", csrf.as_str())]);
        assert_eq!(unticked.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(unticked.text().unwrap().contains("tick the box"), "the page says why");
        assert_eq!(me(&fleet, &ada).0, StatusCode::OK, "nothing changed");
        assert_eq!(audit(&fleet).len(), 1);

        let done = form_post(&fleet, &admin, &disable, &[("csrf_token", csrf.as_str()), ("confirm", "yes")]);
        assert_eq!(done.status(), StatusCode::SEE_OTHER);
        let back = done.headers()[LOCATION].to_str().unwrap().to_owned();
        assert_eq!(back, format!("/admin/users/{id}?done=disable"));
        let html = get_page(&back);
        assert!(html.contains("Disabled: every session ended"), "{html}");
        assert!(html.contains(&format!("/admin/users/{id}/enable\"")), "now it can be enabled");
        assert!(html.contains("account.disabled"), "in the audit section");
        assert_eq!(me(&fleet, &ada).0, StatusCode::UNAUTHORIZED);

        // A refusal is shown on the page: the last admin.
        let root_id = id_of(&fleet, "root@example.org");
        let refused = form_post(&fleet, &admin, &format!("/admin/users/{root_id}/demote"), &[("csrf_token", csrf.as_str())]);
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        assert!(refused.text().unwrap().contains("last admin"));
    }
}
