//! The site's other apps behind the same nginx (`proxy/flotilla/`, login's
//! `/login/auth`): the example app (`examples/hello`) learns who is signed in from
//! headers nginx alone may set, and the door refuses whom it should.

use std::time::{Duration, Instant};

use flotilla_auth::Claims;
use flotilla_testkit::wait_until;
use reqwest::blocking::Response;
use reqwest::header::{ACCEPT, COOKIE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::admin::admin_account;
use super::links::post_form;
use super::login::{
    PASSWORD, bearer_post, cookie_value, decode_part, set_cookies, sign_in, signing_key,
    verified_account,
};
use super::*;

const HTML: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

pub(super) fn with_example(db: TestDb) -> Fleet {
    Fleet::builder(db).example_app().start()
}

/// A GET with a token as a Bearer header.
pub(super) fn bearer_get(fleet: &Fleet, path: &str, access: &str) -> Response {
    fleet
        .request(Method::GET, path)
        .bearer_auth(access)
        .send()
        .unwrap()
}

/// What the example app received: its `/hello/api/me` echoes every `X-Flotilla-*`
/// header that reached it.
pub(super) fn seen_by_app(response: Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    response.json().unwrap()
}

/// A GET as a browser with these cookies (`name=value; …`).
fn browser_get(fleet: &Fleet, path: &str, cookies: &str) -> Response {
    let mut request = fleet.request(Method::GET, path).header(ACCEPT, HTML);
    if !cookies.is_empty() {
        request = request.header(COOKIE, cookies);
    }
    request.send().unwrap()
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {}", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// A token for the session of `access` with its claims changed by `change`, signed with
/// the fleet's own key: what a token of another kind (audience, age, address) of the
/// same person looks like.
fn resigned(fleet: &Fleet, access: &str, change: impl FnOnce(&mut Claims)) -> String {
    let mut claims: Claims = serde_json::from_value(decode_part(access, 1)).unwrap();
    change(&mut claims);
    flotilla_auth::access_token::sign(&signing_key(fleet), &claims).unwrap()
}

on_both_databases! {
    fn a_browser_signs_in_at_the_door_and_the_app_greets_it(db: TestDb) {
        let fleet = with_example(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let named = fleet
            .request(Method::PATCH, "/profile/me")
            .bearer_auth(&access)
            .json(&json!({"display_name": "Adà <Lovelace>", "username": "ada"}))
            .send()
            .unwrap();
        assert_eq!(named.status(), StatusCode::OK, "{}", named.text().unwrap());

        // An anonymous browser is sent to sign in, with the whole address to come back to.
        let wanted = "/hello/?x=1&y=%C3%A0";
        let refused = browser_get(&fleet, wanted, "");
        assert_eq!(refused.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&refused), "/login?next=%2Fhello%2F%3Fx%3D1%26y%3D%25C3%25A0");
        let form = browser_get(&fleet, &location(&refused), "");
        assert_eq!(form.status(), StatusCode::OK);
        assert!(form.text().unwrap().contains(r#"value="/hello/?x=1&amp;y=%C3%A0""#));
        // The form's post comes back to that address, signed in.
        let signed_in = post_form(
            &fleet,
            "/login",
            &[("email", "ada@example.org"), ("password", PASSWORD), ("next", wanted)],
        );
        assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&signed_in), wanted);
        let cookies = set_cookies(&signed_in);
        let access_cookie = cookie_value(&cookies, "flotilla_access").unwrap();
        let refresh_cookie = cookie_value(&cookies, "flotilla_refresh").unwrap();
        let jar = format!("flotilla_access={access_cookie}");
        let page = browser_get(&fleet, wanted, &jar);
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().unwrap();
        assert!(page.contains("Hello, Adà &lt;Lovelace&gt;"), "{page}");

        // Its form carries the session's form token, which the app checks on a post.
        let claims = decode_part(&access_cookie, 1);
        let csrf = claims["csrf"].as_str().unwrap();
        assert!(page.contains(&format!(r#"name="csrf_token" value="{csrf}""#)), "{page}");
        let post = |form: &[(&str, &str)]| {
            fleet
                .request(Method::POST, "/hello/")
                .header(COOKIE, &jar)
                .header(ACCEPT, HTML)
                .form(form)
                .send()
                .unwrap()
        };
        assert_eq!(post(&[("message", "hi")]).status(), StatusCode::FORBIDDEN);
        assert_eq!(post(&[("message", "hi"), ("csrf_token", "forged")]).status(), StatusCode::FORBIDDEN);
        let accepted = post(&[("message", "hi <there>"), ("csrf_token", csrf)]);
        assert_eq!(accepted.status(), StatusCode::OK);
        assert!(accepted.text().unwrap().contains("hi &lt;there&gt;"));

        // The app reads the rest from the headers nginx passed.
        let seen = seen_by_app(browser_get(&fleet, "/hello/api/me", &jar));
        assert_eq!(seen["user-id"], claims["sub"]);
        assert_eq!(seen["session-id"], claims["sid"]);
        assert_eq!(seen["email"], "ada@example.org");
        assert_eq!(seen["username"], "ada");
        assert_eq!(seen["display-name"], "Adà <Lovelace>");
        assert_eq!(seen["role"], "user");
        assert_eq!(seen["email-verified"], "true");
        assert_eq!(seen["csrf-token"], csrf);

        // Without its access token (expired, say), the browser is renewed from the
        // refresh cookie at the sign-in page, without a password, and comes back.
        let refused = browser_get(&fleet, "/hello/", "");
        let renewal = browser_get(
            &fleet,
            &location(&refused),
            &format!("flotilla_refresh={refresh_cookie}"),
        );
        assert_eq!(renewal.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&renewal), "/hello/");
        let renewed = cookie_value(&set_cookies(&renewal), "flotilla_access").unwrap();
        let again = browser_get(&fleet, "/hello/", &format!("flotilla_access={renewed}"));
        assert_eq!(again.status(), StatusCode::OK);

        // An API client gets the 401 as JSON; the open page greets only the signed in.
        let api = fleet.request(Method::GET, "/hello/api/me").send().unwrap();
        assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api.json::<Value>().unwrap()["error"], "not_authenticated");
        let open = browser_get(&fleet, "/hello/welcome", "");
        assert_eq!(open.status(), StatusCode::OK);
        assert!(open.text().unwrap().contains("Hello, stranger"));
        let greeted = browser_get(&fleet, "/hello/welcome", &jar).text().unwrap();
        assert!(greeted.contains("Hello, Adà &lt;Lovelace&gt;"), "{greeted}");

        // The door itself is never reached from outside.
        for path in ["/login/auth", "/login/auth/refused"] {
            assert_eq!(fleet.get(path).status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(bearer_get(&fleet, path, &access).status(), StatusCode::NOT_FOUND);
        }
        // Each check counted, by outcome.
        let metrics = fleet
            .client()
            .get(fleet.direct_url("login", "/login/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        for outcome in ["allowed", "anonymous", "not_authenticated"] {
            let line = format!("flotilla_auth_requests_total{{service=\"login\",kind=\"{outcome}\"}}");
            assert!(metrics.contains(&line), "{outcome} not counted:\n{metrics}");
        }
    }

    fn no_client_can_pose_as_a_user(db: TestDb) {
        let fleet = with_example(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let claims = decode_part(&access, 1);
        let forged = [
            ("X-Flotilla-User-Id", "someone-else"),
            ("X-Flotilla-Role", "admin"),
            ("x-flotilla-email", "boss@example.org"),
            ("X-Flotilla-Email-Verified", "true"),
            ("X-Flotilla-Csrf-Token", "mine"),
            ("X-Flotilla-Session-Id", "other"),
            ("X-Flotilla-Amr", "pwd hwk mfa"),
            ("X_Flotilla_Role", "admin"),
            ("X-Flotilla-Require", "optional"),
        ];
        let send = |path: &str, token: Option<&str>| {
            let mut request = fleet.request(Method::GET, path);
            for (name, value) in forged {
                request = request.header(name, value);
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().unwrap()
        };
        // Signed in: the app sees the person's own values, each once.
        let seen = seen_by_app(send("/hello/api/me", Some(&access)));
        assert_eq!(seen["user-id"], claims["sub"], "{seen}");
        assert_eq!(seen["role"], "user", "{seen}");
        assert_eq!(seen["email"], "ada@example.org", "{seen}");
        assert_eq!(seen["session-id"], claims["sid"], "{seen}");
        assert_eq!(seen["csrf-token"], claims["csrf"], "{seen}");
        // How the person signed in: the token's `amr`, not the client's say.
        assert_eq!(claims["amr"], serde_json::json!(["pwd"]), "{claims}");
        assert_eq!(seen["amr"], "pwd", "{seen}");
        assert!(seen.get("require").is_none(), "{seen}");
        // Anonymous on the open page: none of it reaches the app, which would greet the
        // address it was given.
        let open = send("/hello/welcome", None);
        assert_eq!(open.status(), StatusCode::OK);
        let open = open.text().unwrap();
        assert!(open.contains("Hello, stranger") && !open.contains("boss@"), "{open}");
        // A client's requirement does not loosen the location's.
        assert_eq!(send("/hello/api/me", None).status(), StatusCode::UNAUTHORIZED);
    }

    fn the_door_refuses_revoked_foreign_and_expired_tokens(db: TestDb) {
        // Two logins: the sign-out lands on one, and the other hears of it on the bus.
        let fleet = Fleet::builder(db)
            .instances("login", 2)
            .env("FLOTILLA_REVOCATION_CATCHUP_SECS", "60")
            .example_app()
            .start();
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        assert_eq!(bearer_get(&fleet, "/hello/api/me", &access).status(), StatusCode::OK);

        // Another audience or issuer, an expired token: 401, with the reason.
        let code = |token: &str| {
            let refused = bearer_get(&fleet, "/hello/api/me", token);
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            refused.json::<Value>().unwrap()["error"].as_str().unwrap().to_owned()
        };
        let other_app = resigned(&fleet, &access, |c| c.aud = "another-site".into());
        assert_eq!(code(&other_app), "token_invalid");
        let other_issuer = resigned(&fleet, &access, |c| c.iss = "https://elsewhere.example/login".into());
        assert_eq!(code(&other_issuer), "token_invalid");
        let expired = resigned(&fleet, &access, |c| {
            c.exp = chrono::Utc::now().timestamp() - 120;
            c.iat = c.exp - 900;
            c.nbf = c.iat;
        });
        assert_eq!(code(&expired), "token_expired");
        assert_eq!(code("not.a.token"), "token_invalid");
        // A post is refused the same way, its body never reaching anyone.
        let post = fleet
            .request(Method::POST, "/hello/")
            .form(&[("message", "hi")])
            .send()
            .unwrap();
        assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(post.json::<Value>().unwrap()["error"], "not_authenticated");
        // A browser with an expired cookie is sent to renew it.
        let browser = browser_get(&fleet, "/hello/", &format!("flotilla_access={expired}"));
        assert_eq!(browser.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&browser), "/login?next=%2Fhello%2F");

        // Signed out: refused at the app within a second, whichever login nginx asks.
        assert!(wait_until(Duration::from_secs(20), || {
            (0..4).all(|_| bearer_get(&fleet, "/hello/api/me", &access).status() == StatusCode::OK)
        }));
        let (doomed, _) = sign_in(&fleet, "ada@example.org");
        assert_eq!(bearer_get(&fleet, "/hello/api/me", &doomed).status(), StatusCode::OK);
        let signed_out = Instant::now();
        assert_eq!(bearer_post(&fleet, "/login/logout", &doomed), StatusCode::NO_CONTENT);
        let refused = wait_until(Duration::from_secs(1), || {
            (0..4).all(|_| bearer_get(&fleet, "/hello/api/me", &doomed).status() == StatusCode::UNAUTHORIZED)
        });
        assert!(refused, "the app still let the signed-out session in after {:?}:\n{}", signed_out.elapsed(), fleet.all_logs());
        assert_eq!(code(&doomed), "session_revoked");
        assert_eq!(bearer_get(&fleet, "/hello/api/me", &access).status(), StatusCode::OK);
    }

    fn the_verified_and_admin_locations_admit_exactly_whom_they_name(db: TestDb) {
        let fleet = with_example(db);
        verified_account(&fleet, "ada@example.org");
        let (user, _) = sign_in(&fleet, "ada@example.org");
        let admin = admin_account(&fleet, "root@example.org");
        // Ada's session, as a token from before her address was confirmed would say.
        let unconfirmed = resigned(&fleet, &user, |c| c.email_verified = false);

        let status = |path: &str, token: &str| bearer_get(&fleet, path, token).status();
        assert_eq!(status("/hello/verified", &user), StatusCode::OK);
        assert_eq!(status("/hello/verified", &admin), StatusCode::OK);
        assert_eq!(status("/hello/verified", &unconfirmed), StatusCode::FORBIDDEN);
        assert_eq!(status("/hello/", &unconfirmed), StatusCode::OK, "signed in is enough there");
        assert_eq!(status("/hello/admin", &admin), StatusCode::OK);
        assert_eq!(status("/hello/admin", &user), StatusCode::FORBIDDEN);
        assert_eq!(status("/hello/admin", &unconfirmed), StatusCode::FORBIDDEN);
        assert_eq!(status("/hello/admin", "forged"), StatusCode::UNAUTHORIZED);

        let refusal = |path: &str, token: &str| {
            bearer_get(&fleet, path, token).json::<Value>().unwrap()["error"].as_str().unwrap().to_owned()
        };
        assert_eq!(refusal("/hello/verified", &unconfirmed), "email_not_verified");
        assert_eq!(refusal("/hello/admin", &user), "role_required");
        // A browser is told on a page, not sent to sign in again.
        let page = browser_get(&fleet, "/hello/admin", &format!("flotilla_access={user}"));
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert!(page.text().unwrap().contains("not open to your account"));
        let admin_page = bearer_get(&fleet, "/hello/admin", &admin).text().unwrap();
        assert!(admin_page.contains("admin"), "{admin_page}");
    }

    fn the_static_files_of_a_location_are_kept_to_the_signed_in(db: TestDb) {
        let fleet = with_example(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let open = fleet.get("/hello/open/members.txt");
        assert_eq!(open.status(), StatusCode::OK);
        let body = open.text().unwrap();
        assert_eq!(
            fleet.get("/hello/static/members.txt").status(),
            StatusCode::UNAUTHORIZED
        );
        let kept = bearer_get(&fleet, "/hello/static/members.txt", &access);
        assert_eq!(kept.status(), StatusCode::OK);
        assert_eq!(kept.text().unwrap(), body);
    }

    fn a_token_verifies_with_pyjwt_and_the_published_keys(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        let claims = decode_part(&access, 1);
        let jwks = fleet.url("/login/.well-known/jwks.json");
        let issuer = claims["iss"].as_str().unwrap();
        let check = |token: &str, audience: &str| {
            let output = std::process::Command::new(flotilla_testkit::python3())
                .arg(flotilla_testkit::workspace_root().join("examples/verify/verify_token.py"))
                .args([jwks.as_str(), issuer, audience, token])
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&output.stdout).into_owned();
            let err = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status.success(), out, err)
        };
        let (ok, out, err) = check(&access, "flotilla");
        assert!(ok, "PyJWT refused our token: {err}");
        let verified: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(verified["sub"], claims["sub"]);
        assert_eq!(verified["sid"], claims["sid"]);
        assert_eq!(verified["email"], "ada@example.org");
        let (ok, _, err) = check(&access, "another-site");
        assert!(!ok && err.contains("audience"), "{err}");
        let expired = resigned(&fleet, &access, |c| {
            c.exp = chrono::Utc::now().timestamp() - 120;
        });
        let (ok, _, err) = check(&expired, "flotilla");
        assert!(!ok && err.contains("expired"), "{err}");
        let forged = resigned(&fleet, &access, |c| c.role = "admin".into());
        let tampered = format!(
            "{}.{}",
            forged.rsplit_once('.').unwrap().0,
            access.rsplit_once('.').unwrap().1
        );
        let (ok, _, err) = check(&tampered, "flotilla");
        assert!(!ok, "a changed token passed: {err}");
    }
}
