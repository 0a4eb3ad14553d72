//! Every HTML flow in a real browser (Debian's Chromium), through nginx: each page
//! passes axe-core's WCAG 2.1 A/AA rules at 360 and 1280 px, light and dark, does not
//! scroll sideways, and logs no error to the console. The walk itself
//! (`flotilla_testkit::browser::walk`) fails when a flow does not end where it should.

use std::time::Instant;

use flotilla_testkit::Browser;
use flotilla_testkit::browser::walk;

use super::*;

on_both_databases! {
    fn every_page_is_accessible_at_both_widths_in_both_schemes(db: TestDb) {
        let fleet = Fleet::start(db);
        let mut browser = Browser::start();
        let started = Instant::now();
        let mut pages = Vec::new();
        let mut problems = Vec::new();
        walk(&fleet, &mut browser, &mut |browser, name| {
            pages.push(name.to_owned());
            problems.extend(browser.page_problems(name));
        });
        eprintln!("{} pages walked and checked in {:.1?}", pages.len(), started.elapsed());
        // The walk the README lists (and `make screenshots` numbers): 43 pages, each once.
        assert_eq!(pages.len(), 43, "{pages:?}");
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
