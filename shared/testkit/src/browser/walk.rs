//! Every HTML flow of the fleet, walked in a browser as a person does: typing into the
//! fields, clicking the buttons, following the links of the mails. One walk serves the
//! browser test (the visitor checks each page) and `make screenshots` (it photographs
//! them). Forms are found by their `action` and fields by their `name`, never by text
//! or class, so a redesign of the markup leaves the walk alone; a step that moves its form
//! to a page of its own (asking first) is one call to [`Walk::reach_form`].

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::Browser;
use crate::{Fleet, link_param, mail_text, wait_until};

/// The password of every account of the walk, until it changes it.
pub const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "a second passphrase of ours";
const RESET_PASSWORD: &str = "the third passphrase chosen";

const ADA: &str = "ada@example.org";
const ADA_NEW: &str = "ada.lovelace@example.org";
/// The console's admin, and the account it acts on: made over the JSON API, not walked.
const ROOT: &str = "root@example.org";
const GRACE: &str = "grace@example.org";

/// Walks every flow on `fleet`, calling `visit` with a short name on each page reached
/// (the names are unique and in the order of the walk). Fails when a flow does not end
/// where a person expects it to.
pub fn walk(fleet: &Fleet, browser: &mut Browser, visit: &mut dyn FnMut(&mut Browser, &str)) {
    let mut walk = Walk {
        fleet,
        browser,
        visit,
    };
    walk.signup_and_verify();
    walk.sign_in();
    walk.account();
    walk.two_step();
    walk.site();
    walk.sign_out();
    walk.forgot_and_reset();
    walk.close_account();
    walk.admin();
}

struct Walk<'a> {
    fleet: &'a Fleet,
    browser: &'a mut Browser,
    visit: &'a mut dyn FnMut(&mut Browser, &str),
}

impl Walk<'_> {
    fn signup_and_verify(&mut self) {
        self.open("/signup", "signup");
        // A password the browser lets through (long enough) and the server refuses.
        self.fill("/signup", "email", ADA);
        self.fill("/signup", "password", "qwerty123456");
        self.fill("/signup", "username", "ada");
        self.browser.submit("/signup");
        self.expect_path("/signup");
        assert_eq!(
            self.browser.value("[name='email']"),
            ADA,
            "the address is kept"
        );
        self.visit("signup-refused");
        self.fill("/signup", "password", PASSWORD);
        self.fill("/signup", "username", "ada");
        self.browser.submit("/signup");
        self.expect_path("/signup/check-email");
        self.visit("check-email");

        let verify = self.mail_link(ADA, "/signup/verify");
        self.open("/signup/resend", "resend");
        self.open(&verify, "verify");
        self.browser.submit("/signup/verify");
        self.visit("verified");
        assert_eq!(self.verified(ADA), ["yes"], "the address is confirmed");
        // The link again, as a person who clicks it twice meets it.
        self.open(&verify, "link-used");
        assert!(!self.browser.exists("form[action='/signup/verify']"));
    }

    fn sign_in(&mut self) {
        self.open("/login", "login");
        self.fill("/login", "email", ADA);
        self.fill("/login", "password", "not the password at all");
        self.browser.submit("/login");
        self.expect_path("/login");
        self.visit("login-refused");
        self.log_in(ADA, PASSWORD);
        self.expect_path("/profile");
        self.visit("account");
    }

    /// The account page's forms, one after the other.
    fn account(&mut self) {
        self.fill("/profile/me", "display_name", "Ada Lovelace");
        self.fill("/profile/me", "bio", "Wrote the first program.");
        self.browser.tick("/profile/me", "public");
        self.browser.submit("/profile/me");
        self.expect_path("/profile");
        self.visit("profile-saved");

        self.fill("/profile/password", "current_password", PASSWORD);
        self.fill("/profile/password", "new_password", NEW_PASSWORD);
        self.browser.submit("/profile/password");
        self.expect_path("/profile");
        self.visit("password-changed");

        self.fill("/profile/email", "new_email", ADA_NEW);
        self.fill("/profile/email", "password", NEW_PASSWORD);
        self.browser.submit("/profile/email");
        self.expect_path("/profile");
        self.visit("address-change-sent");
        let confirm = self.mail_link(ADA_NEW, "/profile/email/confirm");
        self.open(&confirm, "address-confirm");
        // Opening the link changes nothing: its page's button does.
        self.browser.submit("/profile/email/confirm");
        self.visit("address-confirmed");
        let email = self
            .fleet
            .db
            .strings("SELECT email AS v FROM users WHERE username = 'ada'");
        assert_eq!(email, [ADA_NEW], "the new address replaced the old one");

        // Two more devices, signed in over the API: one signed out from its row, the
        // other with everything else.
        for _ in 0..2 {
            self.api_sign_in(ADA_NEW, NEW_PASSWORD);
        }
        self.open("/profile", "sessions");
        self.browser
            .click("form[action^='/profile/sessions/'][action$='/revoke'] [type=submit]");
        self.expect_path("/profile");
        self.visit("session-revoked");
        self.reach_form("/profile/sessions/revoke-others", "revoke-others");
        self.browser.submit("/profile/sessions/revoke-others");
        self.expect_path("/profile");
        self.visit("sessions-revoked");
        assert!(
            !self
                .browser
                .exists("form[action^='/profile/sessions/'][action$='/revoke']"),
            "only this device is left"
        );
    }

    /// Two-step sign-in with an authenticator app (the walk's app is [`totp`], fed the
    /// key the setup page writes out): set up from the account page, its recovery codes
    /// renewed, a sign-in through the second step, a confirmation that asks for the
    /// code, a passkey added and removed, and the app removed again, so that the rest
    /// of the walk signs in with the password alone.
    fn two_step(&mut self) {
        self.browser.click("a[href='/profile/totp']");
        self.expect_path("/profile/totp");
        self.visit("totp-setup");
        let key = self.browser.texts(".secret-key code").join("");
        assert!(!key.is_empty(), "the setup page writes the key out");
        // A code the app does not show: refused, and the same key offered again.
        self.fill("/profile/totp", "code", &wrong_code(&key));
        self.fill("/profile/totp", "password", NEW_PASSWORD);
        self.browser.submit("/profile/totp");
        self.expect_path("/profile/totp");
        self.visit("totp-refused");
        assert_eq!(
            self.browser.texts(".secret-key code").join(""),
            key,
            "the same key again"
        );
        self.fill("/profile/totp", "code", &totp(&key, 0));
        self.fill("/profile/totp", "password", NEW_PASSWORD);
        self.browser.submit("/profile/totp");
        self.visit("recovery-codes");
        let codes = self.recovery_codes();
        self.browser.click("a[href='/profile#two-step']");
        self.expect_path("/profile");
        self.visit("account-two-step");
        assert!(
            self.browser.exists("a[href='/profile/totp/remove']"),
            "the app is set up"
        );

        // New recovery codes, asked for with one of the old ones: the old stop working.
        self.reach_form("/profile/recovery-codes", "new-recovery-codes");
        self.fill("/profile/recovery-codes", "password", NEW_PASSWORD);
        self.fill("/profile/recovery-codes", "code", &codes[0]);
        self.browser.submit("/profile/recovery-codes");
        self.visit("recovery-codes-renewed");
        let renewed = self.recovery_codes();
        assert!(
            renewed.iter().all(|c| !codes.contains(c)),
            "new codes: {renewed:?}, old: {codes:?}"
        );

        // Signing in again takes the password, then the app's code: a wrong one is
        // refused on the same page, the app's next one signs in.
        self.browser.goto(&self.fleet.url("/profile"));
        self.browser.submit("/login/logout");
        self.browser.goto(&self.fleet.url("/login"));
        self.log_in(ADA_NEW, NEW_PASSWORD);
        self.expect_path("/login/second-step");
        self.visit("second-step");
        self.fill("/login/second-step", "code", &wrong_code(&key));
        self.browser.submit("/login/second-step");
        self.expect_path("/login/second-step");
        self.visit("second-step-refused");
        self.fill("/login/second-step", "code", &totp(&key, 1));
        self.browser.submit("/login/second-step");
        self.expect_path("/profile");
        assert_eq!(self.session_amr(ADA_NEW), "pwd otp mfa");

        // "Confirm it's you" asks for the second factor as well (a recovery code: the
        // app's next code is half a minute away).
        self.open("/login/confirm?next=%2Fprofile", "confirm-with-code");
        self.fill("/login/confirm", "password", NEW_PASSWORD);
        self.fill("/login/confirm", "code", &renewed[0]);
        self.browser.submit("/login/confirm");
        self.expect_path("/profile");
        assert_eq!(self.session_amr(ADA_NEW), "pwd rc mfa");

        // A passkey beside the app, made by the browser's virtual authenticator (a
        // laptop's screen lock): added with the password alone (the second factor
        // proved it is ada minutes ago), then removed with the passkey itself. The
        // authenticator goes with it, so no later sign-in page is answered by it.
        let authenticator = self.browser.add_virtual_authenticator();
        self.fill("/profile/passkeys", "name", "Laptop");
        self.fill("/profile/passkeys", "password", NEW_PASSWORD);
        self.browser.submit("/profile/passkeys");
        self.expect_path("/profile?done=passkey-added");
        self.visit("passkey-added");
        assert_eq!(self.browser.passkeys(&authenticator).len(), 1);
        let added = self.fleet.db.strings("SELECT name AS v FROM passkeys");
        assert_eq!(added, ["Laptop"], "the passkey is added");
        self.browser
            .click("a[href^='/profile/passkeys/'][href$='/remove']");
        self.expect_path("/profile/passkeys/");
        self.visit("remove-passkey");
        let removal = self.browser.path();
        self.fill(&removal, "password", NEW_PASSWORD);
        self.browser
            .click(&format!("{} [data-passkey-get]", super::form(&removal)));
        self.expect_path("/profile");
        let left = self.fleet.db.strings("SELECT name AS v FROM passkeys");
        assert!(left.is_empty(), "the passkey is removed: {left:?}");
        self.browser.remove_virtual_authenticator(&authenticator);

        self.reach_form("/profile/totp/remove", "remove-app");
        self.fill("/profile/totp/remove", "password", NEW_PASSWORD);
        self.fill("/profile/totp/remove", "code", &renewed[1]);
        self.browser.submit("/profile/totp/remove");
        self.expect_path("/profile");
        assert!(
            self.browser.exists("a[href='/profile/totp']"),
            "the app is removed"
        );
        let left = self.fleet.db.strings(
            "SELECT 'x' AS v FROM recovery_codes WHERE user_id IN \
             (SELECT id FROM users WHERE username = 'ada')",
        );
        assert!(left.is_empty(), "the recovery codes went with the app");
    }

    /// The static site, rebuilt as `make pages` does now that ada's profile is public.
    fn site(&mut self) {
        let built = self.fleet.run("flotilla-pages", &["build"]);
        assert!(
            built.status.success(),
            "pages build failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        self.open("/", "home");
        self.open("/people/", "directory");
        assert!(
            self.browser.exists("a[href$='/people/ada']"),
            "ada is listed"
        );
        self.browser.click("a[href$='/people/ada']");
        self.expect_path("/people/ada");
        self.visit("person");
        self.open("/no-such-page", "not-found");
    }

    fn sign_out(&mut self) {
        self.open("/profile", "account-again");
        self.browser.submit("/login/logout");
        self.visit("signed-out");
        self.browser.goto(&self.fleet.url("/profile"));
        assert!(self.browser.path().starts_with("/login"), "signed out");
    }

    fn forgot_and_reset(&mut self) {
        self.open("/login", "login-again");
        self.browser.click("a[href='/login/forgot']");
        self.expect_path("/login/forgot");
        self.visit("forgot");
        self.fill("/login/forgot", "email", ADA_NEW);
        self.browser.submit("/login/forgot");
        self.visit("forgot-sent");
        let reset = self.mail_link(ADA_NEW, "/login/reset");
        self.open(&reset, "reset");
        self.fill("/login/reset", "password", RESET_PASSWORD);
        self.browser.submit("/login/reset");
        self.visit("reset-done");
        self.open(&reset, "reset-link-used");
        assert!(!self.browser.exists("form[action='/login/reset']"));
        // The old password no longer opens the account; the new one does.
        self.browser.goto(&self.fleet.url("/login"));
        self.log_in(ADA_NEW, NEW_PASSWORD);
        self.expect_path("/login");
        self.log_in(ADA_NEW, RESET_PASSWORD);
        self.expect_path("/profile");
    }

    fn close_account(&mut self) {
        self.reach_form("/profile/delete", "close-account");
        self.fill("/profile/delete", "password", RESET_PASSWORD);
        self.browser.submit("/profile/delete");
        self.visit("account-closed");
        self.open("/login", "login-after-closing");
        self.log_in(ADA_NEW, RESET_PASSWORD);
        self.expect_path("/login");
        assert!(
            self.browser.exists("form[action='/login']"),
            "a closed account does not sign in"
        );
    }

    /// The console, as an admin made from the command line uses it.
    fn admin(&mut self) {
        for email in [ROOT, GRACE] {
            self.api_account(email);
        }
        let promoted = self.fleet.run("flotilla-admin", &["promote", ROOT]);
        assert!(promoted.status.success(), "promote failed: {promoted:?}");
        let grace = self
            .fleet
            .db
            .strings(&format!(
                "SELECT id AS v FROM users WHERE email = '{GRACE}'"
            ))
            .remove(0);

        self.browser.goto(&self.fleet.url("/admin"));
        self.expect_path("/login?next=");
        self.log_in(ROOT, PASSWORD);
        self.expect_path("/admin");
        self.visit("admin");
        self.open("/admin/users", "admin-users");
        self.open(&format!("/admin/users/{grace}"), "admin-account");
        self.open("/admin/jobs", "admin-jobs");
        self.open("/admin/fleet", "admin-fleet");
        self.open("/admin/audit", "admin-audit");

        // An action long after signing in asks for the password first.
        self.fleet.db.execute(&format!(
            "UPDATE sessions SET authenticated_at = '2000-01-01 00:00:00' \
             WHERE user_id IN (SELECT id FROM users WHERE email = '{ROOT}')"
        ));
        let disable = format!("/admin/users/{grace}/disable");
        self.open(&format!("/admin/users/{grace}"), "admin-account-again");
        self.browser.tick(&disable, "confirm");
        self.browser.submit(&disable);
        self.expect_path("/login/confirm?next=");
        self.visit("confirm");
        self.fill("/login/confirm", "password", PASSWORD);
        self.browser.submit("/login/confirm");
        self.expect_path(&format!("/admin/users/{grace}"));
        self.browser.tick(&disable, "confirm");
        self.browser.submit(&disable);
        self.visit("admin-account-disabled");
        let disabled = self.fleet.db.strings(&format!(
            "SELECT email AS v FROM users WHERE id = '{grace}' AND disabled_at IS NOT NULL"
        ));
        assert_eq!(disabled, [GRACE], "the admin disabled grace");
    }

    // The steps' pieces.

    fn visit(&mut self, name: &str) {
        (self.visit)(self.browser, name);
    }

    /// Opens a path of the fleet (or a whole URL) and visits the page.
    fn open(&mut self, path: &str, name: &str) {
        let url = if path.starts_with('/') {
            self.fleet.url(path)
        } else {
            path.to_owned()
        };
        self.browser.goto(&url);
        self.visit(name);
    }

    fn fill(&mut self, action: &str, name: &str, value: &str) {
        self.browser.fill(action, name, value);
    }

    /// Signs in on the sign-in form of the current page.
    fn log_in(&mut self, email: &str, password: &str) {
        self.fill("/login", "email", email);
        self.fill("/login", "password", password);
        self.browser.submit("/login");
    }

    /// Makes sure the form posting to `action` is on the page: when it is not but a link
    /// to `action` is (a step that asks first, on a page of its own), follows the link
    /// and visits that page as `name`.
    /// A destructive action's own page, reached by its link on the account page (it
    /// asks first: its form is never on the page that links to it).
    fn reach_form(&mut self, action: &str, name: &str) {
        assert!(
            !self.browser.exists(&super::form(action)),
            "{action}: the form is on the page that should only link to it"
        );
        self.browser.click(&format!("a[href='{action}']"));
        self.expect_path(action);
        self.visit(name);
    }

    fn expect_path(&self, prefix: &str) {
        let path = self.browser.path();
        assert!(
            path.starts_with(prefix),
            "expected {prefix}, the browser is at {path}:\n{}",
            self.browser.text()
        );
    }

    /// The link to `path` in the first mail to `to` that carries one, once it is there.
    fn mail_link(&self, to: &str, path: &str) -> String {
        let with_link = || {
            self.fleet
                .mails_to(to)
                .into_iter()
                .filter(|m| mail_text(m).contains(&format!("{path}?token=")))
                .collect::<Vec<_>>()
        };
        let arrived = wait_until(Duration::from_secs(15), || !with_link().is_empty());
        assert!(arrived, "no mail to {to} with a link to {path}");
        let token = link_param(&with_link()[0], "token").unwrap();
        self.fleet.url(&format!("{path}?token={token}"))
    }

    /// The recovery codes the page shows (ten, each once).
    fn recovery_codes(&self) -> Vec<String> {
        let codes = self.browser.texts(".recovery-codes code");
        assert_eq!(codes.len(), 10, "{codes:?}");
        codes
    }

    /// How the newest open session of `email` was proven (its `amr`: `pwd otp mfa`, …).
    fn session_amr(&self, email: &str) -> String {
        let amr = self.fleet.db.strings(&format!(
            "SELECT amr AS v FROM sessions WHERE revoked_at IS NULL AND user_id IN \
             (SELECT id FROM users WHERE email = '{email}') ORDER BY created_at DESC"
        ));
        amr.into_iter().next().unwrap_or_default()
    }

    fn verified(&self, email: &str) -> Vec<String> {
        self.fleet.db.strings(&format!(
            "SELECT 'yes' AS v FROM users WHERE email = '{email}' AND email_verified_at IS NOT NULL"
        ))
    }

    /// A verified account made over the JSON API (the accounts the walk does not follow).
    fn api_account(&self, email: &str) {
        let signed_up = self
            .fleet
            .request(Method::POST, "/signup")
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .unwrap();
        assert!(signed_up.status().is_success(), "signup of {email}");
        let link = self.mail_link(email, "/signup/verify");
        let token = link.rsplit('=').next().unwrap_or_default();
        let verified = self
            .fleet
            .request(Method::POST, "/signup/verify")
            .json(&json!({"token": token}))
            .send()
            .unwrap();
        assert!(verified.status().is_success(), "verification of {email}");
    }

    /// A session from another device (the JSON API).
    fn api_sign_in(&self, email: &str, password: &str) {
        let response = self
            .fleet
            .request(Method::POST, "/login")
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
            )
            .json(&json!({"email": email, "password": password}))
            .send()
            .unwrap();
        assert!(response.status().is_success(), "sign-in of {email}");
    }
}

/// The code an authenticator app shows `steps` half-minutes from now for `key` (the
/// base32 key the setup page writes out, spaces and all): RFC 6238's defaults, as
/// flotilla's apps are told (SHA-1, six digits, 30 seconds).
fn totp(key: &str, steps: i64) -> String {
    let compact: String = key.chars().filter(|c| !c.is_whitespace()).collect();
    let secret = totp_rs::Secret::try_from_base32(compact)
        .unwrap_or_else(|e| panic!("the key {key} is not base32: {e:?}"));
    let app = totp_rs::Builder::new()
        .with_secret(secret.as_ref().to_vec())
        .build()
        .unwrap_or_else(|e| panic!("no app for the key {key}: {e}"));
    let at = chrono::Utc::now().timestamp() + steps * 30;
    app.generate(u64::try_from(at).unwrap_or_default())
        .to_string()
}

/// Six digits that are none of the codes of `key` around now.
fn wrong_code(key: &str) -> String {
    let near: Vec<String> = (-2..=2).map(|steps| totp(key, steps)).collect();
    (0..)
        .map(|n: u32| format!("{:06}", 123_456 + n))
        .find(|c| !near.contains(c))
        .unwrap_or_default()
}
