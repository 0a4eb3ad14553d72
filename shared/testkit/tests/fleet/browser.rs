//! Every HTML flow in a real browser (Debian's Chromium), through nginx: each page
//! passes axe-core's WCAG 2.1 A/AA rules at 360 and 1280 px, light and dark, does not
//! scroll sideways, and logs no error to the console. The walk itself
//! (`flotilla_testkit::browser::walk`) fails when a flow does not end where it should.
//! The fleets are at `localhost`, a domain name as a deployment's is, so the pages offer
//! passkeys; Chromium's virtual authenticator answers them.

use std::time::{Duration, Instant};

use flotilla_testkit::browser::walk;
use flotilla_testkit::{Browser, wait_until};

use super::login::{PASSWORD, verified_account};
use super::*;

on_both_databases! {
    fn every_page_is_accessible_at_both_widths_in_both_schemes(db: TestDb) {
        // At a domain name, as a deployment is: the pages offer passkeys.
        let fleet = Fleet::builder(db).on_localhost().start();
        let mut browser = Browser::start();
        let started = Instant::now();
        let mut pages = Vec::new();
        let mut problems = Vec::new();
        walk(&fleet, &mut browser, &mut |browser, name| {
            pages.push(name.to_owned());
            problems.extend(browser.page_problems(name));
        });
        eprintln!("{} pages walked and checked in {:.1?}", pages.len(), started.elapsed());
        // The walk docs/development.md lists (and `make screenshots` numbers): 55 pages, each once.
        assert_eq!(pages.len(), 55, "{pages:?}");
        let names: std::collections::BTreeSet<&String> = pages.iter().collect();
        assert_eq!(names.len(), pages.len(), "a page name twice: {pages:?}");
        // What the walk did, as the database holds it: ada's account closed, grace's
        // disabled by the admin.
        let open = fleet.db.strings("SELECT email AS v FROM users WHERE deleted_at IS NULL AND disabled_at IS NULL ORDER BY email");
        assert_eq!(open, ["root@example.org"]);
        assert!(
            problems.is_empty(),
            "{} problem(s) on the pages:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}

/// The checks find what they are for (so that a clean walk means clean pages): a page
/// with an image without text, a field without a label, a script error and a line
/// wider than a phone.
#[test]
fn the_checks_catch_a_broken_page() {
    let mut browser = Browser::start();
    browser.goto(
        "data:text/html,<!doctype html><html><head><meta name=viewport content='width=device-width'><title>t</title></head><body>\
         <img src='data:image/gif;base64,R0lGODlhAQABAAAAACw='><input name=q>\
         <div style='width:900px'>wide</div><script>undefined_function()</script></body></html>",
    );
    let problems = browser.page_problems("broken").join("\n");
    for expected in [
        "at 360 px, light: image-alt",
        "at 1280 px, dark: label",
        "html-has-lang",
        "at 360 px, dark: the page is 9",
        "console error:",
        "undefined_function",
    ] {
        assert!(
            problems.contains(expected),
            "{expected} not in:\n{problems}"
        );
    }
    assert!(
        !problems.contains("at 1280 px, light: the page is"),
        "{problems}"
    );
}

// Passkeys as a person meets them in Chromium, answered by its virtual authenticator
// (a laptop's screen lock): added from the account page (the account's first
// second factor, so its recovery codes), then signing in without the password (the
// address field's autofill offers the passkey as soon as the page loads), then the
// password's second step answered by it, and removed with it. Each page passes the
// walk's checks.
on_both_databases! {
    fn passkeys_are_added_sign_in_and_answer_the_second_step_in_a_browser(db: TestDb) {
        let fleet = Fleet::builder(db).on_localhost().start();
        let email = "ada@example.org";
        verified_account(&fleet, email);
        let mut browser = Browser::start();
        let authenticator = browser.add_virtual_authenticator();
        let mut problems = Vec::new();
        let mut check = |browser: &mut Browser, name: &str| {
            problems.extend(browser.page_problems(name));
        };
        let expect_path = |browser: &Browser, prefix: &str| {
            let path = browser.path();
            let text = browser.text();
            assert!(path.starts_with(prefix), "expected {prefix}, at {path}:\n{text}");
        };
        let session_amr = || {
            fleet.db.strings(&format!(
                "SELECT amr AS v FROM sessions WHERE revoked_at IS NULL AND user_id IN \
                 (SELECT id FROM users WHERE email = '{email}') ORDER BY created_at DESC"
            ))
        };

        // Signed in with the password (the authenticator holds no passkey of the site
        // yet: the address field's offer waits).
        browser.goto(&fleet.url("/login"));
        check(&mut browser, "login");
        browser.fill("/login", "email", email);
        browser.fill("/login", "password", PASSWORD);
        browser.submit("/login");
        expect_path(&browser, "/profile");
        assert_eq!(session_amr(), ["pwd"]);

        // "Add a passkey": the name and the password, the browser makes the key.
        assert!(browser.exists(
            "form[action='/profile/passkeys'] .passkey-choice:not([hidden])"
        ));
        browser.fill("/profile/passkeys", "name", "Laptop");
        browser.fill("/profile/passkeys", "password", PASSWORD);
        browser.submit("/profile/passkeys");
        expect_path(&browser, "/profile/passkeys");
        check(&mut browser, "passkey-recovery-codes");
        let text = browser.text();
        assert!(text.contains("Two-step sign-in is on."), "{text}");
        assert_eq!(browser.texts(".recovery-codes code").len(), 10);
        let held = browser.passkeys(&authenticator);
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0]["rpId"], "localhost", "{held:?}");
        assert_eq!(held[0]["isResidentCredential"], true, "{held:?}");
        browser.click("a[href='/profile#two-step']");
        expect_path(&browser, "/profile");
        check(&mut browser, "account-with-passkey");
        let cells = browser.texts("#passkeys ~ .table-wrap td");
        assert!(cells.contains(&"Laptop".to_owned()), "{cells:?}");

        // Signed out (to the sign-in page), the sign-in page signs in with the passkey
        // alone, with no click.
        browser.submit("/login/logout");
        let signed_in = browser.wait_for_path("/profile");
        let (path, text) = (browser.path(), browser.text());
        assert!(signed_in, "the passkey did not sign in: {path}\n{text}");
        check(&mut browser, "account-signed-in-by-passkey");
        let amr = session_amr();
        assert!(amr == ["hwk mfa"] || amr == ["swk mfa"], "{amr:?}");
        let used = fleet
            .db
            .strings("SELECT 'yes' AS v FROM passkeys WHERE last_used_at IS NOT NULL");
        assert_eq!(used, ["yes"]);

        // The password instead (the passkey's offer let pass): its second step takes
        // the passkey.
        browser.set_passkey_presence(&authenticator, false);
        browser.submit("/login/logout");
        expect_path(&browser, "/login");
        check(&mut browser, "login-with-passkey-offered");
        browser.fill("/login", "email", email);
        browser.fill("/login", "password", PASSWORD);
        browser.submit("/login");
        expect_path(&browser, "/login/second-step");
        check(&mut browser, "second-step-with-passkey");
        browser.set_passkey_presence(&authenticator, true);
        browser.click("form[action='/login/second-step'] [data-passkey-get]");
        expect_path(&browser, "/profile");
        let amr = session_amr();
        assert!(amr == ["pwd hwk mfa"] || amr == ["pwd swk mfa"], "{amr:?}");

        // Its button signs in too, where the autofill's offer was let pass: once the
        // button is shown (the script has its challenge and starts the offer).
        browser.set_passkey_presence(&authenticator, false);
        browser.submit("/login/logout");
        expect_path(&browser, "/login");
        let button = "form[action='/login/passkey'] [type=submit]";
        assert!(wait_until(Duration::from_secs(10), || browser.shown(button)));
        browser.set_passkey_presence(&authenticator, true);
        browser.submit("/login/passkey");
        expect_path(&browser, "/profile");
        let amr = session_amr();
        assert!(amr == ["hwk mfa"] || amr == ["swk mfa"], "{amr:?}");

        // Removed, asked with the password and the passkey itself.
        browser.click("a[href^='/profile/passkeys/'][href$='/remove']");
        expect_path(&browser, "/profile/passkeys/");
        check(&mut browser, "remove-passkey");
        let action = browser.path();
        browser.fill(&action, "password", PASSWORD);
        browser.click(&format!("form[action='{action}'] [data-passkey-get]"));
        expect_path(&browser, "/profile");
        check(&mut browser, "passkey-removed");
        let left = fleet.db.strings("SELECT name AS v FROM passkeys");
        assert!(left.is_empty(), "{left:?}");

        assert!(
            problems.is_empty(),
            "{} problem(s) on the pages:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}
