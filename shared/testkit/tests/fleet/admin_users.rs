//! `GET /admin/users` through nginx: prefix search of addresses and usernames whatever
//! their case, each filter, the refusals, the HTML page and its pager, and keyset paging
//! that neither skips nor repeats a row while accounts are being added.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::header::{ACCEPT, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::admin::{admin_account, admin_call, admin_send};
use super::login::{sign_in, verified_account};
use super::*;

/// An account written straight into the database: (id, email, username, created_at,
/// what else as `column = value` pairs of SQL text).
fn insert(
    db: &TestDb,
    id: &str,
    email: &str,
    username: Option<&str>,
    created: &str,
    extra: &[(&str, &str)],
) {
    let mut columns = String::from("id, email, username, role, is_public, created_at, updated_at");
    let username = username.map_or("NULL".to_owned(), |u| {
        format!("'{}'", u.replace('\'', "''"))
    });
    let mut values = format!(
        "'{id}', '{}', {username}, 'user', 0, '{created}', '{created}'",
        email.replace('\'', "''")
    );
    for (column, value) in extra {
        if *column == "role" {
            values = values.replace("'user'", value);
            continue;
        }
        columns.push_str(&format!(", {column}"));
        values.push_str(&format!(", {value}"));
    }
    db.execute(&format!("INSERT INTO users ({columns}) VALUES ({values})"));
}

const VERIFIED: (&str, &str) = ("email_verified_at", "'2026-01-01 00:00:00'");

/// The ids of a page's users, in order, and its `next`.
fn page(fleet: &Fleet, access: &str, query: &str) -> (Vec<String>, Option<String>) {
    let (status, body) = admin_call(
        fleet,
        Method::GET,
        &format!("/admin/users?{query}"),
        access,
        None,
    );
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let ids = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, body["next"].as_str().map(str::to_owned))
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Every id of a search, page by page (`limit` per page), checking each cursor.
fn every_page(fleet: &Fleet, access: &str, query: &str, limit: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let q = match &after {
            Some(cursor) => format!("{query}&limit={limit}&after={cursor}"),
            None => format!("{query}&limit={limit}"),
        };
        let (rows, next) = page(fleet, access, &q);
        assert!(rows.len() <= limit);
        all.extend(rows);
        match next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
    panic!("more than 1000 pages");
}

on_both_databases! {
    fn search_finds_by_prefix_and_filters(db: TestDb) {
        let fleet = Fleet::start(db);
        let access = admin_account(&fleet, "root@example.org");
        let root_id = fleet.db.strings("SELECT id AS v FROM users WHERE email = 'root@example.org'")[0].clone();
        let t = "2026-02-01 10:00:00";
        insert(&fleet.db, "u-ada", "Ada.Lovelace@Example.org", Some("countess"), t, &[VERIFIED]);
        insert(&fleet.db, "u-adam", "adam@example.org", None, t, &[]);
        insert(&fleet.db, "u-zed", "zed@example.org", Some("ADAfan"), t, &[VERIFIED]);
        insert(&fleet.db, "u-both", "adalbert@example.org", Some("adalbert"), t, &[VERIFIED]);
        insert(&fleet.db, "u-under", "under@example.org", Some("a_b"), t, &[VERIFIED]);
        insert(&fleet.db, "u-abc", "abc@example.org", Some("abcd"), t, &[VERIFIED]);
        insert(&fleet.db, "u-off", "adoff@example.org", None, t, &[VERIFIED, ("disabled_at", "'2026-03-01 00:00:00'")]);
        insert(&fleet.db, "u-gone", "deleted-u-gone@deleted.invalid", None, t, &[VERIFIED, ("deleted_at", "'2026-03-01 00:00:00'")]);
        insert(&fleet.db, "u-boss", "adboss@example.org", None, t, &[VERIFIED, ("role", "'admin'")]);
        for (at, kind) in [("2026-04-01 00:00:00", "login.success"), ("2026-05-01 00:00:00", "login.success"), ("2026-06-01 00:00:00", "login.failure")] {
            fleet.db.execute(&format!(
                "INSERT INTO auth_events (user_id, kind, client_addr, user_agent, created_at) \
                 VALUES ('u-ada', '{kind}', '127.0.0.1', 'test', '{at}')"
            ));
        }

        // Addresses first, in address order; then usernames whose address does not
        // match; whatever the case of the query or of the stored values.
        let (found, next) = page(&fleet, &access, "q=ada");
        assert_eq!(found, ids(&["u-ada", "u-both", "u-adam", "u-zed"]));
        assert_eq!(next, None);
        assert_eq!(page(&fleet, &access, "q=%20ADA%20").0, found, "trimmed, any case");
        assert_eq!(page(&fleet, &access, "q=COUNT").0, ids(&["u-ada"]));
        // `_` and `%` are letters, not wildcards.
        assert_eq!(page(&fleet, &access, "q=a_").0, ids(&["u-under"]));
        assert_eq!(page(&fleet, &access, "q=a%25").0, Vec::<String>::new());

        // The JSON of one account; the latest sign-in, not a failure after it.
        let (_, body) = admin_call(&fleet, Method::GET, "/admin/users?q=countess", &access, None);
        let ada = &body["users"][0];
        assert_eq!(ada["email"], "Ada.Lovelace@Example.org");
        assert_eq!(ada["username"], "countess");
        assert_eq!(ada["email_verified"], true);
        assert_eq!(ada["disabled"], false);
        assert_eq!(ada["role"], "user");
        assert_eq!(ada["created_at"], "2026-02-01T10:00:00Z");
        assert_eq!(ada["last_sign_in_at"], "2026-05-01T00:00:00Z");
        let keys: Vec<&String> = ada.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
        let (_, body) = admin_call(&fleet, Method::GET, "/admin/users?q=adam", &access, None);
        assert_eq!(body["users"][0]["last_sign_in_at"], Value::Null);
        assert_eq!(body["users"][0]["username"], Value::Null);
        assert_eq!(body["users"][0]["email_verified"], false);

        // Filters, without a prefix (newest first: the seeded rows share a time, then
        // by id descending) and with one.
        assert_eq!(page(&fleet, &access, "status=disabled").0, ids(&["u-off"]));
        assert_eq!(page(&fleet, &access, "status=closed").0, ids(&["u-gone"]));
        assert_eq!(page(&fleet, &access, "status=unverified").0, ids(&["u-adam"]));
        assert_eq!(page(&fleet, &access, "role=admin").0, vec![root_id.clone(), "u-boss".into()]);
        assert_eq!(page(&fleet, &access, "role=admin&q=ad").0, ids(&["u-boss"]));
        assert_eq!(page(&fleet, &access, "status=disabled&q=ad").0, ids(&["u-off"]));
        // Each rare filter's prefix indexes, by address and by username.
        assert_eq!(page(&fleet, &access, "status=closed&q=deleted-u").0, ids(&["u-gone"]));
        assert_eq!(page(&fleet, &access, "status=closed&q=ada").0, Vec::<String>::new());
        assert_eq!(page(&fleet, &access, "status=disabled&q=a_").0, Vec::<String>::new());
        assert_eq!(page(&fleet, &access, "role=admin&q=abcd").0, Vec::<String>::new());
        assert_eq!(page(&fleet, &access, "status=disabled&role=admin&q=ad").0, Vec::<String>::new());
        assert_eq!(page(&fleet, &access, "status=closed&role=user&q=DELETED").0, ids(&["u-gone"]));
        assert_eq!(page(&fleet, &access, "status=unverified&q=ada").0, ids(&["u-adam"]));
        let verified = page(&fleet, &access, "status=verified&limit=100").0;
        assert!(verified.contains(&"u-off".to_owned()), "disabled but verified: {verified:?}");
        assert!(!verified.contains(&"u-gone".to_owned()) && !verified.contains(&"u-adam".to_owned()));
        let users = page(&fleet, &access, "role=user&limit=100").0;
        assert!(!users.contains(&root_id) && !users.contains(&"u-boss".to_owned()));
        assert_eq!(users.len(), 8, "{users:?}");
        // Everything, newest first: root signed up now, the rest share one time.
        let all = page(&fleet, &access, "").0;
        assert_eq!(all[0], root_id);
        assert_eq!(all[1..], ids(&["u-zed", "u-under", "u-off", "u-gone", "u-both", "u-boss", "u-adam", "u-ada", "u-abc"]));

        // Paging a prefix across both phases, one row at a time.
        assert_eq!(every_page(&fleet, &access, "q=ada", 1), found);
        assert_eq!(every_page(&fleet, &access, "q=ada", 2), found);
        assert_eq!(every_page(&fleet, &access, "q=ada", 3), found);
        assert_eq!(every_page(&fleet, &access, "", 4), all);

        // Refusals name the field.
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("status=deleted", "status"),
            ("role=root", "role"),
            ("after=not-a-cursor", "after"),
            ("sort=email", "sort"),
        ] {
            let (status, body) = admin_call(&fleet, Method::GET, &format!("/admin/users?{query}"), &access, None);
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
            assert!(body["fields"][field].is_string(), "{query}: {body}");
        }
        // A cursor of a prefix search does not continue the newest-first list.
        let (_, cursor) = page(&fleet, &access, "q=ada&limit=1");
        let (status, body) = admin_call(&fleet, Method::GET, &format!("/admin/users?after={}", cursor.unwrap()), &access, None);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["fields"]["after"].is_string(), "{body}");
        let long = "a".repeat(255);
        let (status, body) = admin_call(&fleet, Method::GET, &format!("/admin/users?q={long}"), &access, None);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["fields"]["q"].is_string(), "{body}");
    }

    fn only_admins_get_in(db: TestDb) {
        let fleet = Fleet::start(db);
        let anonymous = fleet.get("/admin/users?q=ada");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let browser = fleet.get_html("/admin/users?q=ada&status=disabled");
        assert_eq!(browser.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            browser.headers()[LOCATION],
            "/login?next=%2Fadmin%2Fusers%3Fq%3Dada%26status%3Ddisabled"
        );
        verified_account(&fleet, "someone@example.org");
        let (access, _) = sign_in(&fleet, "someone@example.org");
        let (status, body) = admin_call(&fleet, Method::GET, "/admin/users", &access, None);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"], "admin_only");
        assert!(body.get("users").is_none());
    }

    fn the_page_escapes_and_its_pager_works(db: TestDb) {
        let fleet = Fleet::start(db);
        let access = admin_account(&fleet, "root@example.org");
        for n in 0..5 {
            insert(&fleet.db, &format!("u-{n}"), &format!("page{n}@example.org"), Some(&format!("<b>n{n}</b>&\"'")), &format!("2026-02-0{} 10:00:00", n + 1), &[VERIFIED]);
        }
        let html = |path: &str| {
            let response = fleet.request(Method::GET, path).bearer_auth(&access).header(ACCEPT, "text/html").send().unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            response.text().unwrap()
        };
        let first = html("/admin/users?q=page&limit=2");
        assert!(first.contains("&lt;b&gt;n0&lt;/b&gt;&amp;&quot;&#39;"), "{first}");
        assert!(!first.contains("<b>n0"), "{first}");
        assert!(first.contains(r#"value="page""#), "the search form keeps the query: {first}");
        assert!(first.contains(r#"<form class="filters" method="get" action="/admin/users">"#));
        assert!(first.contains(r#"class="data""#) && first.contains(r#"class="pager""#));
        assert!(!first.contains("Previous page"), "{first}");
        let link = |page: &str, rel: &str| -> String {
            let marker = format!(r#"" rel="{rel}">"#);
            let end = page.find(&marker).unwrap_or_else(|| panic!("no {rel} link: {page}"));
            let start = page[..end].rfind("href=\"").unwrap() + 6;
            page[start..end].replace("&amp;", "&")
        };
        let rows = |page: &str| -> Vec<String> {
            (0..5).filter(|n| page.contains(&format!("page{n}@example.org"))).map(|n| format!("page{n}")).collect()
        };
        assert_eq!(rows(&first), ["page0", "page1"]);
        let next = link(&first, "next");
        assert!(next.starts_with("/admin/users?q=page&limit=2&after="), "{next}");
        let second = html(&next);
        assert_eq!(rows(&second), ["page2", "page3"]);
        let third = html(&link(&second, "next"));
        assert_eq!(rows(&third), ["page4"]);
        assert!(!third.contains("rel=\"next\""), "{third}");
        let back = html(&link(&third, "prev"));
        assert_eq!(rows(&back), ["page2", "page3"]);
        let front = html(&link(&back, "prev"));
        assert_eq!(rows(&front), ["page0", "page1"]);

        // The same table for an API client is JSON.
        let response = admin_send(&fleet, Method::GET, "/admin/users?q=page", &access, None);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    }

    fn paging_holds_while_accounts_are_added(db: TestDb) {
        let fleet = Fleet::start(db);
        let access = admin_account(&fleet, "root@example.org");
        // 60 accounts over 6 creation times: ties broken by id.
        for n in 0..60 {
            insert(&fleet.db, &format!("old-{n:03}"), &format!("member{n:03}@example.org"), Some(&format!("m{n:03}")), &format!("2026-01-0{} 00:00:00", n % 6 + 1), &[VERIFIED]);
        }
        let before: HashSet<String> = fleet.db.strings("SELECT id AS v FROM users").into_iter().collect();
        let before_members: HashSet<String> = before.iter().filter(|id| id.starts_with("old-")).cloned().collect();
        let stop = AtomicBool::new(false);
        let added = std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 2000 {
                    let now = chrono::Utc::now().naive_utc().format("%F %T%.f").to_string();
                    // New addresses on both sides of the pages already read.
                    let email = if n % 2 == 0 { format!("member{n:03}b@example.org") } else { format!("member000-{n}@example.org") };
                    insert(&fleet.db, &format!("new-{n:04}"), &email, None, &now, &[]);
                    n += 1;
                }
                n
            });
            let newest = every_page(&fleet, &access, "", 7);
            let prefixed = every_page(&fleet, &access, "q=MEMBER", 7);
            let filtered = every_page(&fleet, &access, "status=verified&q=member", 7);
            stop.store(true, Ordering::Relaxed);
            let added = writer.join().unwrap();
            for (name, seen, expected) in [("newest", &newest, &before), ("prefix", &prefixed, &before_members), ("verified prefix", &filtered, &before_members)] {
                let unique: HashSet<&String> = seen.iter().collect();
                assert_eq!(unique.len(), seen.len(), "{name}: a row twice");
                for id in expected {
                    assert!(unique.contains(id), "{name}: {id} missing");
                }
                for id in &unique {
                    assert!(expected.contains(*id) || id.starts_with("new-"), "{name}: {id}");
                }
            }
            added
        });
        assert!(added > 0, "no account was added while paging");
    }
}
