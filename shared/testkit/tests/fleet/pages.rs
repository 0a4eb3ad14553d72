//! The public profiles of the static site: `flotilla-pages watch` publishes, renames
//! and removes `/people/<username>` as their owners change them, served by nginx.

use std::time::Duration;

use flotilla_testkit::wait_until;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::login::{PASSWORD, sign_in, verified_account};
use super::*;

fn patch(fleet: &Fleet, access: &str, body: Value) {
    let response = fleet
        .request(Method::PATCH, "/profile/me")
        .bearer_auth(access)
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Waits (at most 10 s: the catch-up is an hour away, so only the event can do it)
/// until `path` answers `status`; returns its body.
fn served(fleet: &Fleet, path: &str, status: StatusCode) -> String {
    let mut body = String::new();
    let reached = wait_until(Duration::from_secs(10), || {
        let response = fleet.get_html(path);
        let got = response.status();
        body = response.text().unwrap();
        got == status
    });
    assert!(
        reached,
        "{path} is not {status}:\n{body}\n{}",
        fleet.all_logs()
    );
    body
}

/// A fleet with `flotilla-pages watch` running (its catch-up an hour away, so that
/// only events move the pages), and Ada and Grace signed up and signed in: their access
/// tokens.
fn watched_by_pages(db: TestDb) -> (Fleet, String, String) {
    let mut fleet = Fleet::builder(db)
        .env("FLOTILLA_PAGES_CATCHUP_SECS", "3600")
        .start();
    fleet.start_pages_watcher();
    verified_account(&fleet, "ada@example.org");
    verified_account(&fleet, "grace@example.org");
    let (ada, _) = sign_in(&fleet, "ada@example.org");
    let (grace, _) = sign_in(&fleet, "grace@example.org");
    (fleet, ada, grace)
}

on_both_databases! {
    fn public_profiles_follow_their_owners(db: TestDb) {
        let (fleet, ada, grace) = watched_by_pages(db);
        assert!(served(&fleet, "/people/", StatusCode::OK).contains("No one has made their profile public yet."));

        // A username alone publishes nothing; making it public does.
        patch(&fleet, &ada, json!({"username": "ada", "display_name": "Ada <b>L</b>", "bio": "Counts.\n\n<script>x</script>"}));
        patch(&fleet, &grace, json!({"username": "grace", "public": true}));
        served(&fleet, "/people/grace", StatusCode::OK);
        assert_eq!(fleet.get_html("/people/ada").status(), StatusCode::NOT_FOUND);
        patch(&fleet, &ada, json!({"public": true}));
        let page = served(&fleet, "/people/ada", StatusCode::OK);
        assert!(page.contains("<h1>Ada &lt;b&gt;L&lt;/b&gt;</h1>"), "{page}");
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;") && !page.contains("<script>"), "{page}");
        // The watcher writes the page, then the list: wait for the list too.
        let both = || {
            let index = fleet.get_html("/people/").text().unwrap();
            index.contains("href=\"/people/ada\"") && index.contains("href=\"/people/grace\"")
        };
        assert!(wait_until(Duration::from_secs(10), both), "{}", fleet.all_logs());
        // The watcher's updates are told in the status file beside the site.
        let status_file = fleet.data_dir().join("www.status.json");
        let updated = || {
            let status: Value = serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
            status["last_update"]["changed"].as_u64().is_some_and(|n| n >= 1)
                && status["last_update"]["duration_ms"].is_u64()
                && status["last_build"]["pages"].is_u64()
        };
        assert!(wait_until(Duration::from_secs(10), updated), "{}", fleet.all_logs());

        // A new name moves the page; going private removes it.
        patch(&fleet, &ada, json!({"username": "ada-l"}));
        served(&fleet, "/people/ada-l", StatusCode::OK);
        assert_eq!(fleet.get_html("/people/ada").status(), StatusCode::NOT_FOUND);
        patch(&fleet, &grace, json!({"public": false}));
        served(&fleet, "/people/grace", StatusCode::NOT_FOUND);
        // The watcher removes the page, then rewrites the list: wait for the list too.
        let listed = || fleet.get_html("/people/").text().unwrap().contains("grace");
        assert!(wait_until(Duration::from_secs(10), || !listed()), "{}", fleet.all_logs());

        // Closing the account removes the page at once, before the purge.
        let closed = fleet.request(Method::DELETE, "/profile/me").bearer_auth(&ada).json(&json!({"password": PASSWORD})).send().unwrap();
        assert_eq!(closed.status(), StatusCode::NO_CONTENT);
        served(&fleet, "/people/ada-l", StatusCode::NOT_FOUND);
        let listed = || fleet.get_html("/people/").text().unwrap().contains("ada");
        assert!(wait_until(Duration::from_secs(10), || !listed()), "{}", fleet.all_logs());
    }

    fn full_builds_switch_in_whole_while_nginx_serves_the_pages(db: TestDb) {
        let fleet = Fleet::start(db);
        // Thirty public profiles, written straight into the database: the accounts are
        // not what this test is about, the builds are.
        let t = "'2026-11-01 10:00:00'";
        let names: Vec<String> = (0..30).map(|n| format!("member-{n:02}")).collect();
        for name in &names {
            fleet.db().execute(&format!(
                "INSERT INTO users (id, email, username, display_name, bio, is_public, \
                 email_verified_at, created_at, updated_at) VALUES ('{name}', \
                 '{name}@example.org', '{name}', 'Member <{name}>', '{}', 1, {t}, {t}, {t})",
                "A long enough bio. ".repeat(200)
            ));
        }
        let build = || {
            let built = fleet.run("flotilla-pages", &["build"]);
            assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        };
        build();
        assert_eq!(fleet.get_html("/people/member-00").status(), StatusCode::OK);

        // wrk reads the profiles through nginx while builds switch in, each with new
        // display names (so that a build differs from the one it replaces).
        let paths: Vec<String> = names.iter().map(|n| format!("/people/{n}")).collect();
        let mut command = std::process::Command::new(flotilla_testkit::wrk());
        command
            .args(["-t2", "-c8", "-d3s", "-s"])
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/pages.lua"))
            .arg(fleet.origin())
            .arg("--")
            .args(&paths);
        let mut wrk = flotilla_testkit::Proc::spawn("wrk", command);
        // The folder of the last build: Fleet::start's was the first, then the one above.
        let mut last = 2;
        while wrk.try_exit().is_none() {
            last += 1;
            fleet.db().execute(&format!("UPDATE users SET display_name = 'Build {last} <' || username || '>'"));
            build();
        }
        let output = wrk.logs();
        let line = output.lines().find(|l| l.starts_with("flotilla-wrk ")).unwrap_or_else(|| panic!("{output}"));
        let field = |name: &str| -> u64 {
            line.split(' ').find_map(|f| f.strip_prefix(&format!("{name}="))).and_then(|v| v.parse().ok()).unwrap()
        };
        assert!(last - 2 >= 3, "only {} builds while wrk read: {line}", last - 2);
        assert!(field("requests") > 100, "{line}");
        for counted in ["bad", "connect", "read", "write", "timeout", "status"] {
            assert_eq!(field(counted), 0, "{counted}: {line}\n{}", fleet.all_logs());
        }
        eprintln!("{} full builds while wrk read: {line}", last - 2);
        assert!(fleet.get_html("/people/member-00").text().unwrap().contains(&format!("Build {last} &lt;")));

        // The site is a symlink to the newest of the two builds kept, and the status
        // file beside it says so.
        let www = fleet.data_dir().join("www");
        assert!(std::fs::symlink_metadata(&www).unwrap().is_symlink());
        let mut kept: Vec<String> = std::fs::read_dir(fleet.data_dir().join("www.builds"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        // Each with its names file (which page is whose), outside what nginx serves.
        let n = last - 1;
        assert_eq!(kept, [format!("{n:010}"), format!("{n:010}.names.sqlite"), format!("{last:010}"), format!("{last:010}.names.sqlite")]);
        let status: Value =
            serde_json::from_slice(&std::fs::read(fleet.data_dir().join("www.status.json")).unwrap())
                .unwrap();
        let recorded = fleet.db().strings("SELECT CAST(pages AS TEXT) AS v FROM page_builds ORDER BY id DESC");
        assert_eq!(status["last_build"]["pages"].to_string(), recorded[0], "{status}");
        assert!(status["last_build"]["folder"].as_str().unwrap().ends_with(&format!("www.builds/{last:010}")));
        assert_eq!(fleet.get_html("/www.status.json").status(), StatusCode::NOT_FOUND);
    }

    fn every_page_has_one_address_and_is_cached_by_its_etag(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        patch(&fleet, &ada, json!({"username": "ada", "public": true}));
        let built = fleet.run("flotilla-pages", &["build"]);
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

        // The other spellings of a page move to its own address for good, the query
        // string kept, with a path alone (behind TLS, an absolute http one would be wrong).
        for (asked, canonical) in [
            ("/index", "/"),
            ("/index.html", "/"),
            ("/people", "/people/"),
            ("/people/index", "/people/"),
            ("/people/index.html?page=2", "/people/?page=2"),
            ("/people/ada/", "/people/ada"),
            ("/people/ada.html", "/people/ada"),
            ("/people/ada/?from=feed", "/people/ada?from=feed"),
        ] {
            let moved = fleet.get(asked);
            assert_eq!(moved.status(), StatusCode::MOVED_PERMANENTLY, "{asked}");
            assert_eq!(moved.headers()["location"], canonical, "{asked}");
        }
        // The services' paths are theirs: no rule of the site's applies to them.
        assert_eq!(fleet.get("/login/nothing.html").status(), StatusCode::NOT_FOUND);
        assert!(fleet.get("/login/nothing.html").headers().get("location").is_none());
        // Unknown paths, and the 404 page's own file, get the site's 404 page.
        for path in ["/nothing", "/people/nobody", "/404.html"] {
            let missing = fleet.get_html(path);
            assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
            let body = missing.text().unwrap();
            assert!(body.contains("Page not found"), "{path}: {body}");
        }

        // Pages may be kept a minute, then are checked again by their ETag or date.
        let page = fleet.get_html("/people/ada");
        assert_eq!(page.status(), StatusCode::OK);
        let headers = page.headers().clone();
        assert_eq!(headers["cache-control"], "max-age=60");
        assert!(headers.contains_key("last-modified") && headers.contains_key("x-frame-options"));
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let again = fleet.request(Method::GET, "/people/ada").header("If-None-Match", &etag).send().unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let since = headers["last-modified"].to_str().unwrap().to_owned();
        let again = fleet.request(Method::GET, "/people/ada").header("If-Modified-Since", &since).send().unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
}

on_both_databases! {
    fn a_profile_reaches_every_listing_within_a_second_and_leaves_them_as_fast(db: TestDb) {
        let (fleet, ada, grace) = watched_by_pages(db);
        patch(&fleet, &grace, json!({"username": "grace", "public": true}));
        served(&fleet, "/people/grace", StatusCode::OK);
        patch(&fleet, &ada, json!({"username": "ada", "display_name": "Ada <L>"}));

        // Where Ada is shown: her page, the directory, the home page, the sitemap.
        let shown = || {
            let page = fleet.get_html("/people/ada");
            let page = page.status() == StatusCode::OK && page.text().unwrap().contains("<h1>Ada &lt;L&gt;</h1>");
            let link = "<a href=\"/people/ada\">Ada &lt;L&gt;</a> <span class=\"handle\">@ada</span>";
            let directory = fleet.get_html("/people/").text().unwrap().contains(link);
            let home = fleet.get_html("/").text().unwrap().contains(link);
            let sitemap = fleet.get("/sitemap.xml").text().unwrap().contains("/people/ada</loc>");
            [page, directory, home, sitemap]
        };
        assert_eq!(shown(), [false; 4]);
        patch(&fleet, &ada, json!({"public": true}));
        assert!(wait_until(Duration::from_secs(1), || shown() == [true; 4]), "{:?}\n{}", shown(), fleet.all_logs());
        let home = fleet.get_html("/").text().unwrap();
        assert!(home.contains("2 members have a public profile."), "{home}");

        patch(&fleet, &ada, json!({"public": false}));
        assert!(wait_until(Duration::from_secs(1), || shown() == [false; 4]), "{:?}\n{}", shown(), fleet.all_logs());
        let home = fleet.get_html("/").text().unwrap();
        assert!(home.contains("1 member has a public profile.") && home.contains("/people/grace"), "{home}");

        // Public again, then the account closed: gone from all four as fast.
        patch(&fleet, &ada, json!({"public": true}));
        assert!(wait_until(Duration::from_secs(1), || shown() == [true; 4]), "{:?}\n{}", shown(), fleet.all_logs());
        let closed = fleet.request(Method::DELETE, "/profile/me").bearer_auth(&ada).json(&json!({"password": PASSWORD})).send().unwrap();
        assert_eq!(closed.status(), StatusCode::NO_CONTENT);
        assert!(wait_until(Duration::from_secs(1), || shown() == [false; 4]), "{:?}\n{}", shown(), fleet.all_logs());
        assert_eq!(fleet.get_html("/people/ada").status(), StatusCode::NOT_FOUND);
    }

    fn the_directory_pages_stay_right_as_profiles_come_and_go(db: TestDb) {
        let mut fleet = Fleet::builder(db).env("FLOTILLA_PAGES_CATCHUP_SECS", "3600").start();
        // m-000 … m-098, public, straight into the database; the watcher's first full
        // build publishes them: 99 profiles, two pages of 50 and 49.
        let t = "'2026-11-01 10:00:00'";
        for n in 0..99 {
            let name = format!("m-{n:03}");
            fleet.db().execute(&format!(
                "INSERT INTO users (id, email, username, is_public, email_verified_at, created_at, \
                 updated_at) VALUES ('{name}', '{name}@example.org', '{name}', 1, {t}, {t}, {t})"
            ));
        }
        fleet.start_pages_watcher();
        verified_account(&fleet, "ada@example.org");
        verified_account(&fleet, "grace@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        let (grace, _) = sign_in(&fleet, "grace@example.org");
        // The names listed on a directory page, in order.
        let listed = |path: &str| -> Vec<String> {
            let page = fleet.get_html(path).text().unwrap();
            page.split("<a href=\"/people/").skip(1).filter_map(|s| s.split('"').next()).filter(|n| !n.is_empty() && !n.contains('/')).map(str::to_owned).collect()
        };
        let all = |names: &[&str]| -> Vec<String> {
            let mut all: Vec<String> = (0..99).map(|n| format!("m-{n:03}")).collect();
            all.extend(names.iter().map(|n| (*n).to_owned()));
            all.sort();
            all
        };
        let pages_hold = |expected: &[String]| {
            let chunks: Vec<Vec<String>> = expected.chunks(50).map(<[String]>::to_vec).collect();
            (1..=chunks.len()).all(|page| {
                let path = if page == 1 { "/people/".to_owned() } else { format!("/people/page/{page}") };
                listed(&path) == chunks[page - 1]
            }) && fleet.get_html(&format!("/people/page/{}", chunks.len() + 1)).status() == StatusCode::NOT_FOUND
        };
        assert!(wait_until(Duration::from_secs(10), || pages_hold(&all(&[]))), "{:?}", listed("/people/page/2"));

        // Ada comes in on page 1: m-049 moves to page 2, which is now full; still two pages.
        patch(&fleet, &ada, json!({"username": "m-0105", "public": true}));
        assert!(wait_until(Duration::from_secs(1), || pages_hold(&all(&["m-0105"]))), "{:?}", listed("/people/"));
        // Grace makes a third page, which links back; the others say "of 3".
        patch(&fleet, &grace, json!({"username": "m-0005", "public": true}));
        assert!(wait_until(Duration::from_secs(1), || pages_hold(&all(&["m-0105", "m-0005"]))), "{:?}", listed("/people/page/3"));
        let third = fleet.get_html("/people/page/3").text().unwrap();
        assert!(third.contains("<link rel=\"prev\" href=\"/people/page/2\">") && !third.contains("rel=\"next\""), "{third}");
        assert!(third.contains("Page 3 of 3"), "{third}");
        let second = fleet.get_html("/people/page/2").text().unwrap();
        assert!(second.contains("<link rel=\"next\" href=\"/people/page/3\">") && second.contains("Page 2 of 3"), "{second}");
        // A rename moves her within the list; going private takes her out, and the
        // third page goes with the 101st profile.
        patch(&fleet, &grace, json!({"username": "m-0505"}));
        assert!(wait_until(Duration::from_secs(1), || pages_hold(&all(&["m-0105", "m-0505"]))), "{:?}", listed("/people/page/2"));
        patch(&fleet, &ada, json!({"public": false}));
        assert!(wait_until(Duration::from_secs(1), || pages_hold(&all(&["m-0505"]))), "{:?}", listed("/people/page/2"));
        let second = fleet.get_html("/people/page/2").text().unwrap();
        assert!(!second.contains("rel=\"next\"") && second.contains("Page 2 of 2"), "{second}");
        assert_eq!(fleet.get_html("/people/m-0105").status(), StatusCode::NOT_FOUND);
        assert_eq!(fleet.get_html("/people/m-0005").status(), StatusCode::NOT_FOUND);
    }

    fn a_watcher_killed_in_its_passes_leaves_whole_files_and_the_next_catches_up(db: TestDb) {
        let (mut fleet, ada, grace) = watched_by_pages(db);
        patch(&fleet, &grace, json!({"username": "grace", "public": true}));
        served(&fleet, "/people/grace", StatusCode::OK);
        patch(&fleet, &ada, json!({"username": "ada"}));
        // Five times: two edits, and the watcher killed (SIGKILL) as soon as they are
        // answered, while it handles their events.
        for round in 0..5 {
            patch(&fleet, &grace, json!({"display_name": format!("Grace {round}")}));
            patch(&fleet, &ada, json!({"public": round % 2 == 0}));
            fleet.stop_pages_watcher(libc::SIGKILL);
            // Whatever it had done, every file nginx serves is whole.
            for (path, end) in [
                ("/", "</html>"),
                ("/people/", "</html>"),
                ("/people/grace", "</html>"),
                ("/sitemap.xml", "</urlset>"),
                ("/feed.xml", "</feed>"),
            ] {
                let response = fleet.get_html(path);
                assert_eq!(response.status(), StatusCode::OK, "{path}");
                let body = response.text().unwrap();
                assert!(body.trim_end().ends_with(end), "{path} is cut short:\n{body}");
            }
            fleet.start_pages_watcher();
        }
        // The last watcher catches up with every edit: Grace's last name, Ada public (the
        // last round's), both listed.
        let current = || {
            let grace = fleet.get_html("/people/grace").text().unwrap().contains("<h1>Grace 4</h1>");
            let ada = fleet.get_html("/people/ada").status() == StatusCode::OK;
            let directory = fleet.get_html("/people/").text().unwrap();
            let home = fleet.get_html("/").text().unwrap();
            grace && ada && directory.contains("/people/ada") && directory.contains("Grace 4")
                && home.contains("2 members have a public profile.")
        };
        assert!(wait_until(Duration::from_secs(10), current), "{}", fleet.all_logs());
    }

    fn the_sitemap_feed_and_robots_are_served_with_their_types(db: TestDb) {
        let fleet = Fleet::start(db);
        verified_account(&fleet, "ada@example.org");
        let (ada, _) = sign_in(&fleet, "ada@example.org");
        patch(&fleet, &ada, json!({"username": "ada", "display_name": "Ada & co", "public": true}));
        let built = fleet.run("flotilla-pages", &["build"]);
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

        for (path, kind, holds) in [
            ("/robots.txt", "text/plain", "Disallow: /login\n"),
            ("/sitemap.xml", "application/xml", "/people/ada</loc><lastmod>"),
            ("/feed.xml", "application/atom+xml", "<title>Ada &amp; co</title>"),
        ] {
            let response = fleet.get(path);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let got = response.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(got.starts_with(kind), "{path}: {got}");
            let body = response.text().unwrap();
            assert!(body.contains(holds), "{path}: {body}");
        }
        // The directory's first page has one address, /people/.
        let moved = fleet.get("/people/page/1?x=1");
        assert_eq!(moved.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(moved.headers()["location"], "/people/?x=1");
        assert_eq!(fleet.get_html("/people/page/2").status(), StatusCode::NOT_FOUND);
        let home = fleet.get_html("/").text().unwrap();
        assert!(home.contains("1 member has a public profile.") && home.contains("href=\"/feed.xml\""), "{home}");
    }
}

/// A watcher that cannot do its work (here: a database not migrated yet) waits longer
/// and longer between attempts instead of spinning, and recovers by itself.
#[test]
fn the_watcher_backs_off_while_the_database_is_unusable_and_recovers() {
    let dir = flotilla_testkit::TempDir::new("pages-watch");
    let command = || {
        let mut command = std::process::Command::new(flotilla_testkit::binary("flotilla-pages"));
        command
            .env_clear()
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("flotilla.db").display()),
            )
            .env("FLOTILLA_DATA_DIR", dir.path())
            .env(
                "FLOTILLA_BUS_EVENTS_OUT",
                format!("tcp://127.0.0.1:{}", flotilla_testkit::free_port()),
            )
            .env("FLOTILLA_LOG_STYLE", "never");
        command
    };
    let mut watch_command = command();
    watch_command.arg("watch");
    let started = std::time::Instant::now();
    let watcher = flotilla_testkit::Proc::spawn("pages", watch_command);
    let failures = |proc: &flotilla_testkit::Proc| {
        proc.log_lines()
            .iter()
            .filter(|l| l.contains("could not be updated"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || failures(&watcher) >= 2),
        "{}",
        watcher.logs()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retried at once: {}",
        watcher.logs()
    );
    assert!(
        watcher.logs().contains("lacks migrations"),
        "{}",
        watcher.logs()
    );
    assert!(
        watcher.logs().contains("trying again in 4s"),
        "{}",
        watcher.logs()
    );

    let mut migrate = command();
    assert!(migrate.arg("migrate").status().unwrap().success());
    let recovered = wait_until(Duration::from_secs(20), || {
        watcher.logs().contains("0 public profiles in")
    });
    assert!(recovered, "{}", watcher.logs());
    assert!(failures(&watcher) <= 4, "{}", watcher.logs());
}
