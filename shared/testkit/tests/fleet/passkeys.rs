//! Passkeys through nginx, answered by a software authenticator (webauthn-authenticator-rs'
//! `softpasskey`) the way a browser would: registered at profile, answering the
//! sign-in's second step and a step-up, each challenge used once, removed; and off on
//! a site reached at an IP address. Signing in without a password needs a credential
//! that hands back its account, which the software authenticator does not: the
//! browser test does that one, in Chromium.

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use super::apps::bearer_get;
use super::login::{PASSWORD, decode_part, login, sign_in, verified_account};
use super::*;

fn post(fleet: &Fleet, path: &str, access: Option<&str>, body: &Value) -> Response {
    let mut request = fleet.request(Method::POST, path).json(body);
    if let Some(access) = access {
        request = request.bearer_auth(access);
    }
    request.send().unwrap()
}

fn answer(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

/// A challenge's options, and apart the token the script sends back.
fn options(body: &Value) -> (Value, String) {
    let mut body = body.clone();
    let token = body["challenge"].as_str().unwrap().to_owned();
    body.as_object_mut().unwrap().remove("challenge");
    (body, token)
}

fn origin(fleet: &Fleet) -> Url {
    Url::parse(&fleet.origin()).unwrap()
}

/// Registers a passkey named `name` on the account of `access`: the answer to
/// `POST /profile/passkeys`.
fn register(
    fleet: &Fleet,
    key: &mut SoftPasskey,
    access: &str,
    name: &str,
    extra: Value,
) -> (Response, Value) {
    let (status, body) = answer(post(
        fleet,
        "/profile/passkeys/options",
        Some(access),
        &json!({}),
    ));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    let (ccr, token) = options(&body);
    let ccr: CreationChallengeResponse = serde_json::from_value(ccr).unwrap();
    let made = key.do_registration(origin(fleet), ccr).unwrap();
    let mut form = json!({
        "name": name,
        "credential": serde_json::to_string(&made).unwrap(),
        "credential_challenge": token,
        "password": PASSWORD,
    });
    for (k, v) in extra.as_object().unwrap() {
        form[k] = v.clone();
    }
    (post(fleet, "/profile/passkeys", Some(access), &form), form)
}

/// The key's answer to a challenge from `path`: (`passkey`, `passkey_challenge`).
fn assertion(
    fleet: &Fleet,
    key: &mut SoftPasskey,
    path: &str,
    access: Option<&str>,
    body: &Value,
) -> (String, String) {
    let (status, body) = answer(post(fleet, path, access, body));
    assert_eq!(status, StatusCode::OK, "{body}");
    let (rcr, token) = options(&body);
    let rcr: RequestChallengeResponse = serde_json::from_value(rcr).unwrap();
    let made = key.do_authentication(origin(fleet), rcr).unwrap();
    (serde_json::to_string(&made).unwrap(), token)
}

/// The second step's page a browser reaches after the password.
fn second_step_page(fleet: &Fleet, email: &str) -> String {
    let first = fleet
        .request(Method::POST, "/login")
        .header("origin", fleet.origin())
        .header("accept", "text/html")
        .form(&[("email", email), ("password", PASSWORD)])
        .send()
        .unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let cookies = super::login::set_cookies(&first);
    let step = super::login::cookie_value(&cookies, "flotilla_second_step").unwrap();
    fleet
        .request(Method::GET, "/login/second-step")
        .header("accept", "text/html")
        .header("cookie", format!("flotilla_second_step={step}"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

fn factors(fleet: &Fleet, access: &str) -> Value {
    bearer_get(fleet, "/profile/factors", access)
        .json()
        .unwrap()
}

on_both_databases! {
    fn a_passkey_is_registered_and_answers_the_second_step_once(db: TestDb) {
        let fleet = Fleet::builder(db).on_localhost().start();
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        let mut key = SoftPasskey::new(true);

        // A wrong password adds nothing; the right one adds the account's first second
        // factor, with its recovery codes.
        let (wrong, _) = register(&fleet, &mut key, &access, "Laptop", json!({"password": "nope, wrong"}));
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
        let (added, sent) = register(&fleet, &mut key, &access, "Laptop", json!({}));
        assert_eq!(added.status(), StatusCode::CREATED);
        let codes = added.json::<Value>().unwrap()["recovery_codes"].clone();
        assert_eq!(codes.as_array().unwrap().len(), 10);
        let listed = factors(&fleet, &access);
        assert_eq!(listed["passkeys"][0]["name"], "Laptop", "{listed}");
        assert_eq!(listed["passkeys"][0]["last_used_at"], Value::Null);
        assert_eq!(listed["recovery_codes_left"], 10);
        // The same answer again is refused: its challenge was used.
        let mut replay = sent.clone();
        replay["code"] = codes[0].clone();
        let (status, body) = answer(post(&fleet, "/profile/passkeys", Some(&access), &replay));
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "passkey_refused");
        // A second passkey, with the account's second factor (a recovery code): no
        // new codes this time.
        let mut phone = SoftPasskey::new(true);
        let (added, _) = register(&fleet, &mut phone, &access, "Phone", json!({"code": codes[1]}));
        assert_eq!(added.status(), StatusCode::CREATED);
        let names: Vec<Value> = factors(&fleet, &access)["passkeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("Laptop"), json!("Phone")]);
        // The stored credential is no secret, but neither the export nor the page's
        // JSON shows it.
        let stored = fleet.db.strings("SELECT credential AS v FROM passkeys");
        let export = bearer_get(&fleet, "/profile/export", &access).text().unwrap();
        assert!(!export.contains(&stored[0]) && export.contains("Laptop"));

        // The second step's page offers the passkey to this account, and not to one
        // with an app alone.
        let grace = "grace@example.org";
        verified_account(&fleet, grace);
        let (grace_access, _) = sign_in(&fleet, grace);
        super::second_factor::set_up_app(&fleet, &grace_access);
        for (who, offered) in [(email, true), (grace, false)] {
            let page = second_step_page(&fleet, who);
            assert_eq!(page.contains("data-passkey-get"), offered, "{who}: {page}");
        }

        // Signing in asks for it.
        let (status, body) = login(&fleet, email, PASSWORD);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["methods"], json!(["passkey", "recovery_code"]), "{body}");
        let step = body["second_step_token"].as_str().unwrap().to_owned();
        let step_body = json!({"second_step_token": step});
        let (passkey, challenge) =
            assertion(&fleet, &mut key, "/login/second-step/passkey", None, &step_body);
        let finish = |passkey: &str, challenge: &str, step: &str| {
            answer(post(&fleet, "/login/second-step", None, &json!({
                "second_step_token": step,
                "passkey": passkey,
                "passkey_challenge": challenge,
            })))
        };
        let (status, body) = finish(&passkey, &challenge, &step);
        assert_eq!(status, StatusCode::OK, "{body}");
        let signed_in = body["access_token"].as_str().unwrap().to_owned();
        let amr = decode_part(&signed_in, 1)["amr"].clone();
        assert!(
            amr == json!(["pwd", "hwk", "mfa"]) || amr == json!(["pwd", "swk", "mfa"]),
            "{amr}"
        );
        assert!(factors(&fleet, &signed_in)["passkeys"][0]["last_used_at"].is_string());
        // The same answer again, at a new step: its challenge was used.
        let (_, body) = login(&fleet, email, PASSWORD);
        let step = body["second_step_token"].as_str().unwrap().to_owned();
        let (status, body) = finish(&passkey, &challenge, &step);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "passkey_refused");
        // Another account's challenge is not this one's either: a confirmation's
        // challenge does not answer a second step.
        let (passkey, challenge) =
            assertion(&fleet, &mut key, "/login/confirm/passkey", Some(&signed_in), &json!({}));
        let (status, _) = finish(&passkey, &challenge, &step);
        assert_eq!(status, StatusCode::FORBIDDEN);

        // The passkey proves it is you for a change of password.
        let (passkey, challenge) =
            assertion(&fleet, &mut key, "/login/confirm/passkey", Some(&signed_in), &json!({}));
        let changed = post(&fleet, "/profile/password", Some(&signed_in), &json!({
            "current_password": PASSWORD,
            "new_password": "another good passphrase",
            "passkey": passkey,
            "passkey_challenge": challenge,
        }));
        assert_eq!(changed.status(), StatusCode::NO_CONTENT);

        // Removed (the phone with its own answer, the laptop with a recovery code): the
        // password alone signs in again.
        let ids: Vec<String> = factors(&fleet, &signed_in)["passkeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        let (passkey, challenge) =
            assertion(&fleet, &mut phone, "/login/confirm/passkey", Some(&signed_in), &json!({}));
        let proofs = [
            json!({"passkey": passkey, "passkey_challenge": challenge}),
            json!({"code": codes[2]}),
        ];
        for (id, mut proof) in ids.iter().rev().zip(proofs) {
            proof["password"] = json!("another good passphrase");
            let removed = fleet
                .request(Method::DELETE, &format!("/profile/passkeys/{id}"))
                .bearer_auth(&signed_in)
                .json(&proof)
                .send()
                .unwrap();
            assert_eq!(removed.status(), StatusCode::NO_CONTENT);
        }
        assert_eq!(
            factors(&fleet, &signed_in),
            json!({"totp": null, "passkeys": [], "recovery_codes_left": 0})
        );
        let (status, body) = login(&fleet, email, "another good passphrase");
        assert_eq!(status, StatusCode::OK);
        assert!(body["access_token"].is_string(), "{body}");
        let mails = fleet.mails_to(email).join("\n");
        assert!(mails.contains("A passkey was added"), "{mails}");
        assert!(
            flotilla_testkit::wait_until(std::time::Duration::from_secs(10), || {
                fleet.mails_to(email).join("\n").contains("A passkey was removed")
            })
        );
    }

    fn passkeys_are_off_at_an_ip_address(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (access, _) = sign_in(&fleet, "ada@example.org");
        for (path, token) in [
            ("/profile/passkeys/options", Some(access.as_str())),
            ("/login/passkey/options", None),
        ] {
            let (status, body) = answer(post(&fleet, path, token, &json!({})));
            assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
            assert_eq!(body["error"], "passkeys_unavailable");
        }
        // The account page says why, and offers no button.
        let page = fleet
            .request(Method::GET, "/profile")
            .bearer_auth(&access)
            .header("accept", "text/html")
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(page.contains("reached at an IP address"), "{page}");
        assert!(!page.contains("data-passkey-create"));
    }

    fn an_app_added_beside_a_passkey_asks_for_the_passkey_first(db: TestDb) {
        let fleet = Fleet::builder(db).on_localhost().start();
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let (access, _) = sign_in(&fleet, email);
        let mut key = SoftPasskey::new(true);
        let (added, _) = register(&fleet, &mut key, &access, "Laptop", json!({}));
        assert_eq!(added.status(), StatusCode::CREATED);
        let codes = added.json::<Value>().unwrap()["recovery_codes"].clone();
        // This session signed in with the password alone: a stolen one must not add a
        // factor of its own with the password.
        let offer: Value = bearer_get(&fleet, "/profile/totp", &access).json().unwrap();
        let secret = flotilla_auth::factors::TotpSecret::from_base32(offer["secret"].as_str().unwrap()).unwrap();
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
        let setup = |extra: Value| {
            let mut body = json!({
                "pending": offer["pending"],
                "code": secret.code_at(now),
                "password": PASSWORD,
            });
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            answer(post(&fleet, "/profile/totp", Some(&access), &body))
        };
        let (status, body) = setup(json!({}));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["fields"]["factor_code"].is_string(), "{body}");
        assert_eq!(factors(&fleet, &access)["totp"], Value::Null);
        // With a recovery code it is added, and the account keeps its other codes.
        let (status, body) = setup(json!({"factor_code": codes[0]}));
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["recovery_codes"], Value::Null);
        let listed = factors(&fleet, &access);
        assert!(listed["totp"].is_object(), "{listed}");
        assert_eq!(listed["recovery_codes_left"], 9);
    }
}
