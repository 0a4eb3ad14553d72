//! `flotilla-screenshots FOLDER`: walks every HTML flow in the browser (the walk of the
//! browser tests) on a throwaway fleet at `localhost` (so with passkeys) and SQLite
//! database, and saves each page at 360 and 1280 px, light and dark, as
//! `FOLDER/<NN>-<page>-<width>-<light|dark>.png` (the folder emptied first), for review. `make screenshots` runs it into
//! var/screenshots. Never part of a deployment: it lives in the test kit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a tool of the tests: a failure is a panic

use std::path::PathBuf;

use flotilla_testkit::browser::{ColorScheme, WIDTHS, walk};
use flotilla_testkit::{Browser, Fleet, TestDb};

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .expect("usage: flotilla-screenshots FOLDER");
    if out.exists() {
        std::fs::remove_dir_all(&out).expect("the folder can be emptied");
    }
    std::fs::create_dir_all(&out).expect("the folder can be made");
    let fleet = Fleet::builder(TestDb::sqlite()).on_localhost().start();
    let mut browser = Browser::start();
    let mut saved = Vec::new();
    let mut pages = 0;
    walk(&fleet, &mut browser, &mut |browser, name| {
        pages += 1;
        for width in WIDTHS {
            for scheme in ColorScheme::BOTH {
                browser.set_width(width);
                browser.set_color_scheme(scheme);
                let file = out.join(format!("{pages:02}-{name}-{width}-{}.png", scheme.as_str()));
                std::fs::write(&file, browser.screenshot()).expect("the screenshot is written");
                saved.push(file);
            }
        }
        browser.set_width(WIDTHS[1]);
        browser.set_color_scheme(ColorScheme::Light);
    });
    for file in &saved {
        println!("{}", file.display());
    }
    eprintln!(
        "{pages} pages, {} screenshots in {}",
        saved.len(),
        out.display()
    );
}
