//! The admin console's audit log through nginx: entries from the command line and the
//! console, filtered and paged by keyset, exported as JSON lines; append-only in the
//! database itself; for operators only; and nginx keeping `/admin` to chosen networks.

use std::collections::HashSet;

use reqwest::header::{ACCEPT, CONTENT_DISPOSITION, CONTENT_TYPE, COOKIE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::admin::{admin_account, admin_call, admin_send, role_command};
use super::login::{sign_in, verified_account};
use super::*;

const ENTRY_FIELDS: [&str; 10] = [
    "id",
    "at",
    "actor",
    "actor_id",
    "action",
    "target",
    "target_id",
    "client_addr",
    "request_id",
    "detail",
];

fn account_id(fleet: &Fleet, email: &str) -> String {
    fleet
        .db
        .strings(&format!(
            "SELECT id AS v FROM users WHERE lower(email) = lower('{email}')"
        ))
        .remove(0)
}

/// The ids of a JSON page's entries, and its `next`.
fn ids(body: &Value) -> (Vec<i64>, Option<i64>) {
    let entries = body["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"));
    (
        entries.iter().map(|e| e["id"].as_i64().unwrap()).collect(),
        body["next"].as_i64(),
    )
}

fn listed(fleet: &Fleet, access: &str, query: &str) -> Value {
    let (status, body) = admin_call(
        fleet,
        Method::GET,
        &format!("/admin/audit{query}"),
        access,
        None,
    );
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// Every entry through `before`, page by page: the ids in order.
fn walk(fleet: &Fleet, access: &str, filters: &str, limit: usize) -> Vec<i64> {
    let (mut all, mut before) = (Vec::new(), None::<i64>);
    loop {
        let cursor = before.map(|b| format!("&before={b}")).unwrap_or_default();
        let body = listed(fleet, access, &format!("?limit={limit}{filters}{cursor}"));
        let (page, next) = ids(&body);
        assert!(page.len() <= limit);
        all.extend(page);
        match next {
            Some(next) => before = Some(next),
            None => return all,
        }
    }
}

/// The export's lines, parsed, after checking its headers.
fn export(fleet: &Fleet, access: &str, query: &str, accept: Option<&str>) -> Vec<Value> {
    let mut request = fleet
        .request(Method::GET, &format!("/admin/audit{query}"))
        .bearer_auth(access);
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    let response = request.send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/x-ndjson");
    let disposition = response.headers()[CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let text = response.text().unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// Entries as the console writes them (its actions are another part's), added
/// straight to the table: inserting is what the log allows.
fn console_entry(fleet: &Fleet, actor: (&str, &str), action: &str, target: (&str, &str)) {
    fleet.db.execute(&format!(
        "INSERT INTO audit_log (created_at, actor_id, actor, action, target_id, target, client_addr, request_id, detail) \
         VALUES (CURRENT_TIMESTAMP, '{}', '{}', '{action}', '{}', '{}', '192.0.2.7', 'req-{action}', '')",
        actor.0, actor.1, target.0, target.1
    ));
}

on_both_databases! {
    fn the_audit_log_is_filtered_paged_and_exported(db: TestDb) {
        let fleet = Fleet::start(db);
        // Unrestricted by nginx (FLOTILLA_PROXY_ADMIN_ALLOW unset): the service answers.
        assert_eq!(fleet.get("/admin/health").status(), StatusCode::OK);

        let access = admin_account(&fleet, "Root@Example.org");
        for email in ["ada@example.org", "Bob@Example.org"] {
            verified_account(&fleet, email);
            let (promoted, printed) = role_command(&fleet, "promote", email);
            assert!(promoted, "{printed}");
        }
        let (demoted, printed) = role_command(&fleet, "demote", "bob@example.org");
        assert!(demoted, "{printed}");
        let (root, ada, bob) = (account_id(&fleet, "Root@Example.org"), account_id(&fleet, "ada@example.org"), account_id(&fleet, "Bob@Example.org"));
        console_entry(&fleet, (&root, "Root@Example.org"), "account.disabled", (&ada, "ada@example.org"));
        console_entry(&fleet, (&root, "Root@Example.org"), "account.enabled", (&ada, "ada@example.org"));

        // Newest first, every field; the command line's entries name its Unix user.
        let body = listed(&fleet, &access, "");
        let entries = body["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 6, "{body}");
        assert_eq!(body["next"], Value::Null);
        for entry in entries {
            for field in ENTRY_FIELDS {
                assert!(entry.get(field).is_some(), "{field} missing in {entry}");
            }
        }
        let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["account.enabled", "account.disabled", "account.demoted", "account.promoted", "account.promoted", "account.promoted"]);
        let promotion = &entries[3];
        assert!(promotion["actor"].as_str().unwrap().starts_with("command line ("), "{promotion}");
        assert_eq!(promotion["actor_id"], Value::Null);
        assert_eq!((promotion["target"].as_str(), promotion["target_id"].as_str()), (Some("Bob@example.org"), Some(bob.as_str())), "the address as stored");
        assert!(promotion["at"].as_str().unwrap().ends_with('Z'));

        // Filters: an action; a target by address in any case, or by id; an actor.
        let (only, _) = ids(&listed(&fleet, &access, "?action=account.demoted"));
        assert_eq!(only.len(), 1);
        let about_bob = ids(&listed(&fleet, &access, "?target=bOB%40example.ORG")).0;
        assert_eq!(about_bob.len(), 2);
        assert_eq!(ids(&listed(&fleet, &access, &format!("?target={bob}"))).0, about_bob);
        let by_root = ids(&listed(&fleet, &access, "?actor=root%40example.org")).0;
        assert_eq!(by_root.len(), 2);
        assert_eq!(ids(&listed(&fleet, &access, &format!("?actor={root}"))).0, by_root);
        let unix_user = promotion["actor"].as_str().unwrap().to_owned();
        let shell = unix_user.replace(' ', "%20").replace('(', "%28").replace(')', "%29");
        assert_eq!(ids(&listed(&fleet, &access, &format!("?actor={shell}"))).0.len(), 4);
        let both = ids(&listed(&fleet, &access, &format!("?actor={root}&target=ada%40example.org&action=account.disabled"))).0;
        assert_eq!(both.len(), 1);
        // Blank filters (a form left empty) filter nothing.
        assert_eq!(ids(&listed(&fleet, &access, "?actor=&target=&action=")).0.len(), 6);

        // Keyset paging: every entry once, newest first, whatever the page size, and
        // an entry added meanwhile does not shift the pages already cut.
        let everything = ids(&body).0;
        for limit in [1, 2, 4] {
            assert_eq!(walk(&fleet, &access, "", limit), everything, "limit {limit}");
        }
        let first = listed(&fleet, &access, "?limit=2");
        let (page, next) = ids(&first);
        console_entry(&fleet, (&root, "Root@Example.org"), "account.sessions_revoked", (&ada, "ada@example.org"));
        let second = ids(&listed(&fleet, &access, &format!("?limit=2&before={}", next.unwrap()))).0;
        assert_eq!([page, second].concat(), everything[..4].to_vec());

        // The export: the whole filtered log, one JSON object a line.
        let all = export(&fleet, &access, "?format=jsonl", None);
        assert_eq!(all.len(), 7);
        assert_eq!(all[0]["action"], "account.sessions_revoked");
        assert_eq!(export(&fleet, &access, "?target=bob%40example.org", Some("application/x-ndjson")).len(), 2);
        // Many more than one batch: every entry once, newest first.
        fleet.db.execute(
            "INSERT INTO audit_log (created_at, actor_id, actor, action, target_id, target, client_addr, request_id, detail) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1203) \
             SELECT CURRENT_TIMESTAMP, NULL, 'command line (bulk)', 'job.retried', NULL, '', '127.0.0.1', 'bulk', 'bulk' FROM n",
        );
        let lines = export(&fleet, &access, "?format=jsonl", None);
        assert_eq!(lines.len(), 1210);
        let ids: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, none twice");
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1210);
        let retried = export(&fleet, &access, "?format=jsonl&action=job.retried", None);
        assert_eq!(retried.len(), 1203);
        assert!(retried.iter().all(|l| l["detail"] == "bulk"));

        // The page: a table, filters kept in the links, without JavaScript.
        let page = fleet.request(Method::GET, "/admin/audit?target=ada%40example.org&limit=1")
            .header(COOKIE, format!("flotilla_access={access}")).header(ACCEPT, "text/html").send().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().unwrap();
        assert!(html.contains("class=\"data\"") && html.contains("class=\"filters\"") && html.contains("class=\"pager\""), "{html}");
        assert!(html.contains("account.sessions_revoked") && !html.contains("account.disabled</td>"), "{html}");
        assert!(html.contains("value=\"ada@example.org\""), "{html}");
        assert!(html.contains("/admin/audit?target=ada%40example.org&amp;limit=1&amp;before="), "{html}");
        assert!(html.contains("format=jsonl"), "{html}");
        assert!(!html.contains("<script>"), "no markup from the log unescaped: {html}");
    }

    fn the_audit_log_is_append_only_and_for_operators(db: TestDb) {
        let fleet = Fleet::start(db);
        let access = admin_account(&fleet, "root@example.org");
        let before = fleet.db.strings("SELECT actor || '|' || action || '|' || target AS v FROM audit_log");
        assert_eq!(before.len(), 1);

        // The database itself refuses changes, whoever asks.
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "UPDATE audit_log SET detail = 'x' WHERE id = (SELECT MAX(id) FROM audit_log)",
            "DELETE FROM audit_log",
            "DELETE FROM audit_log WHERE action = 'account.promoted'",
        ] {
            let refused = fleet.db.try_execute(sql).expect_err(sql);
            assert!(refused.contains("append-only"), "{sql}: {refused}");
        }
        if fleet.db.is_postgres() {
            let refused = fleet.db.try_execute("TRUNCATE audit_log").expect_err("TRUNCATE");
            assert!(refused.contains("append-only"), "{refused}");
        }
        assert_eq!(fleet.db.strings("SELECT actor || '|' || action || '|' || target AS v FROM audit_log"), before);

        // No route changes it.
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let response = admin_send(&fleet, method.clone(), "/admin/audit", &access, Some(serde_json::json!({})));
            assert!(matches!(response.status(), StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND), "{method}: {}", response.status());
        }
        assert_eq!(fleet.db.strings("SELECT actor || '|' || action || '|' || target AS v FROM audit_log"), before);

        // Anonymous: 401, a browser sent to sign in; signed in without the role: 403.
        let anonymous = fleet.get("/admin/audit?format=jsonl");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let browser = fleet.get_html("/admin/audit?action=account.promoted");
        assert_eq!(browser.status(), StatusCode::SEE_OTHER);
        assert_eq!(browser.headers()[LOCATION], "/login?next=%2Fadmin%2Faudit%3Faction%3Daccount.promoted");
        verified_account(&fleet, "ada@example.org");
        let (member, _) = sign_in(&fleet, "ada@example.org");
        for path in ["/admin/audit", "/admin/audit?format=jsonl"] {
            let (status, body) = admin_call(&fleet, Method::GET, path, &member, None);
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            assert_eq!(body["error"], "admin_only");
        }

        // Bad filters: 422, each field named.
        let (status, body) = admin_call(&fleet, Method::GET, "/admin/audit?action=account.teleported&limit=500&before=soon&format=xml", &access, None);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        for field in ["action", "limit", "before", "format"] {
            assert!(body["fields"][field].is_string(), "{field}: {body}");
        }
        let (status, body) = admin_call(&fleet, Method::GET, "/admin/audit?limit=0", &access, None);
        assert_eq!((status, body["fields"]["limit"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("must be 1 to 200")));
    }

    fn nginx_keeps_the_console_to_chosen_networks(db: TestDb) {
        // 127.0.0.1, where the test connects from, is not in the allowed networks.
        let mut fleet = Fleet::builder(db)
            .env("FLOTILLA_PROXY_ADMIN_ALLOW", "10.9.0.0/16, 2001:db8::/32")
            .start();
        for path in ["/admin", "/admin/health", "/admin/audit"] {
            assert_eq!(fleet.get(path).status(), StatusCode::FORBIDDEN, "{path}");
        }
        let admin_log = fleet.service("admin").logs();
        assert!(!admin_log.contains("/admin/audit"), "nginx refused it before the service:\n{admin_log}");
        // The rest of the site still works, and the service itself is up.
        assert_eq!(fleet.get("/login/health").status(), StatusCode::OK);
        assert_eq!(fleet.get_html("/login").status(), StatusCode::OK);
        verified_account(&fleet, "ada@example.org");
        sign_in(&fleet, "ada@example.org");
        let direct = fleet.client().get(fleet.direct_url("admin", "/admin/health")).send().unwrap();
        assert_eq!(direct.status(), StatusCode::OK);
    }
}
