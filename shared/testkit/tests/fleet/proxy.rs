//! What a browser or API client sees through nginx.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use reqwest::blocking::Response;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

const PUBLIC: [&str; 4] = ["signup", "login", "profile", "admin"];

fn assert_security_headers(what: &str, headers: &HeaderMap) {
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "same-origin", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert!(headers.contains_key("permissions-policy"), "{what}");
    assert!(
        headers.get("server").is_none_or(|s| s == "nginx"),
        "no version leaked"
    );
}

/// Sends `send` up to `tries` times and returns the first answer nginx refused (429).
fn first_refusal(what: &str, tries: usize, send: impl Fn() -> Response) -> Response {
    let mut seen = Vec::new();
    for _ in 0..tries {
        let response = send();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            return response;
        }
        seen.push(response.status());
    }
    panic!("{what}: no 429 in {tries} attempts: {seen:?}");
}

on_both_databases! {
    fn every_service_is_healthy_and_ready_through_nginx(db: TestDb) {
        let backend = db.backend_name();
        let fleet = Fleet::start(db);
        for name in PUBLIC {
            let health = fleet.get(&format!("/{name}/health"));
            assert_eq!(health.status(), StatusCode::OK, "/{name}/health");
            let body: Value = health.json().unwrap();
            assert_eq!(body["status"], "ok");
            assert_eq!(body["service"], name);

            let ready = fleet.get(&format!("/{name}/ready"));
            assert_eq!(ready.status(), StatusCode::OK, "/{name}/ready");
            let body: Value = ready.json().unwrap();
            assert_eq!(body["database"], backend, "{name} runs on the test's database");
            assert_eq!(body["schema"], "current");
        }
        // The worker is internal: nginx does not route to it.
        assert_eq!(fleet.get("/worker/health").status(), StatusCode::NOT_FOUND);
        let direct = fleet.client().get(fleet.direct_url("worker", "/worker/health")).send().unwrap();
        assert_eq!(direct.status(), StatusCode::OK);
    }

    fn the_static_site_is_served_at_the_root(db: TestDb) {
        let fleet = Fleet::start(db);
        let home = fleet.get_html("/");
        assert_eq!(home.status(), StatusCode::OK);
        assert!(home.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let body = home.text().unwrap();
        assert!(body.contains("href=\"/signup\""), "{body}");
        // The stylesheet, named by its bytes: browsers keep it a year without asking.
        let href = flotilla_kit::html::stylesheet_href();
        assert!(body.contains(&format!("<link rel=\"stylesheet\" href=\"{href}\">")), "{body}");
        let css = fleet.get(href);
        assert_eq!(css.status(), StatusCode::OK);
        assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
        let cache: Vec<&str> = css.headers().get_all("cache-control").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cache, ["max-age=31536000", "immutable"], "{:?}", css.headers());
        assert!(css.headers().contains_key("content-security-policy"), "the server's headers stay");
        assert_eq!(css.text().unwrap(), flotilla_kit::html::STYLESHEET);
        // Under its plain name too (nginx's own pages, the site's other apps), for an hour.
        let plain = fleet.get("/assets/site.css");
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(plain.headers()["cache-control"], "max-age=3600");
        // The services' pages name the same file.
        let signup = fleet.get_html("/signup").text().unwrap();
        assert!(signup.contains(&format!("href=\"{href}\"")), "{signup}");
        // The icon: every page names it, fingerprinted like the stylesheet, and
        // /favicon.ico answers for what asks there (no more 404 on every page).
        let icon = flotilla_kit::html::icon_href();
        for page in [&body, &signup] {
            assert!(page.contains(&format!("<link rel=\"icon\" href=\"{icon}\" type=\"image/svg+xml\">")), "{page}");
        }
        let svg = fleet.get(icon);
        assert_eq!(svg.status(), StatusCode::OK);
        assert_eq!(svg.headers()["content-type"], "image/svg+xml; charset=utf-8");
        assert_eq!(svg.headers().get_all("cache-control").iter().count(), 2, "{:?}", svg.headers());
        let ico = fleet.get("/favicon.ico");
        assert_eq!(ico.status(), StatusCode::OK);
        assert_eq!(ico.headers()["content-type"], "image/x-icon");
        assert_eq!(ico.headers()["cache-control"], "max-age=86400");
        assert_eq!(ico.bytes().unwrap().as_ref(), flotilla_kit::html::FAVICON_ICO);

        let missing = fleet.get_html("/no/such/page");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.text().unwrap().contains("There is no page at this address"));
    }

    fn metrics_are_refused_through_nginx_and_served_directly(db: TestDb) {
        let fleet = Fleet::start(db);
        for name in PUBLIC {
            for path in [format!("/{name}/metrics"), format!("/{name}/metrics/")] {
                assert_eq!(fleet.get(&path).status(), StatusCode::FORBIDDEN, "{path}");
            }
        }
        assert_eq!(fleet.get("/signup/health").status(), StatusCode::OK);
        let text = fleet
            .client()
            .get(fleet.direct_url("signup", "/signup/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(text.contains(
            "flotilla_http_requests_total{service=\"signup\",method=\"GET\",route=\"/signup/health\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains("flotilla_http_request_duration_seconds_bucket{service=\"signup\",method=\"GET\",route=\"/signup/health\",status=\"200\",le=\"+Inf\"} 1"));
        assert!(text.contains("flotilla_db_pool_max_connections{service=\"signup\"} 8"));
        assert!(text.contains("process_resident_memory_bytes{service=\"signup\"}"));
    }

    fn security_headers_are_on_every_answer(db: TestDb) {
        let fleet = Fleet::start(db);
        for path in ["/", "/signup/health", "/login/nothing-here", "/no/such/page"] {
            let response = fleet.get(path);
            assert_security_headers(path, response.headers());
            assert!(response.headers().get("retry-after").is_none(), "{path}");
        }
    }

    fn errors_follow_the_accept_header(db: TestDb) {
        let fleet = Fleet::start(db);
        let api = fleet.request(reqwest::Method::GET, "/profile/no-such-route")
            .header("Accept", "application/json")
            .send()
            .unwrap();
        assert_eq!(api.status(), StatusCode::NOT_FOUND);
        let body: Value = api.json().unwrap();
        assert_eq!(body["error"], "not_found");
        assert!(body["message"].as_str().unwrap().contains("nothing at this address"));

        let page = fleet.get_html("/profile/no-such-route");
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(page.text().unwrap().contains("<h1>Not Found</h1>"));
    }

    fn the_client_address_and_request_id_come_from_nginx(db: TestDb) {
        let mut fleet = Fleet::start(db);
        // A client cannot choose its address by sending X-Forwarded-For itself.
        let response = fleet.request(reqwest::Method::GET, "/login/health")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Request-Id", "chosen-by-client")
            .send()
            .unwrap();
        let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(request_id, "chosen-by-client");
        assert_eq!(request_id.len(), 32, "nginx's $request_id: {request_id}");
        let line = "127.0.0.1 \"GET /login/health\" 200";
        let login = fleet.service("login");
        assert!(
            flotilla_testkit::wait_until(Duration::from_secs(5), || login.logs().contains(line)),
            "{}", login.logs()
        );
        let logs = login.logs();
        let logged = logs.lines().find(|l| l.contains(line)).unwrap();
        assert!(logged.ends_with(&format!("rid={request_id}")), "{logged}");
        assert!(!logs.contains("6.6.6.6"), "{logs}");
    }

    fn attempts_at_login_forgot_and_signup_are_limited_per_address_and_the_forms_are_not(db: TestDb) {
        // One attempt a second, and 3 at once above it: the 5th in quick succession is
        // refused, or a later one if the machine is slow enough for the rate to refill.
        let fleet = Fleet::builder(db)
            .env("FLOTILLA_PROXY_AUTH_RATE", "60r/m")
            .env("FLOTILLA_PROXY_AUTH_BURST", "3")
            .start();
        let forgot = || {
            fleet.request(Method::POST, "/login/forgot")
                .json(&json!({"email": "ada@example.org"}))
                .send()
                .unwrap()
        };
        let refused = first_refusal("POST /login/forgot", 8, forgot);
        let headers = refused.headers().clone();
        assert_security_headers("the 429", &headers);
        assert_eq!(headers["retry-after"], "1", "60r/m admits one more a second later");
        assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
        let body: Value = refused.json().unwrap();
        assert_eq!(body["error"], "rate_limited", "{body}");
        assert!(body["message"].as_str().unwrap().contains("Too many attempts"), "{body}");

        // The forms are never limited, even while the address is being refused.
        for path in ["/login", "/signup", "/login/forgot"] {
            for _ in 0..20 {
                let status = fleet.get_html(path).status();
                assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "GET {path}");
            }
        }

        // Signing up and logging in draw on the same budget; a form post gets a page.
        let refused = first_refusal("POST /signup (JSON)", 8, || {
            fleet.request(Method::POST, "/signup")
                .json(&json!({"email": "not-an-address", "password": "short"}))
                .send()
                .unwrap()
        });
        assert_security_headers("the 429 to POST /signup", refused.headers());
        assert_eq!(refused.json::<Value>().unwrap()["error"], "rate_limited");
        let refused = first_refusal("POST /signup (form)", 8, || {
            fleet.request(Method::POST, "/signup")
                .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
                .form(&[("email", "not-an-address"), ("password", "short")])
                .send()
                .unwrap()
        });
        assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_security_headers("the 429 page", refused.headers());
        let page = refused.text().unwrap();
        assert!(page.contains("<h1>Too many attempts</h1>"), "{page}");
        first_refusal("POST /login", 8, || {
            fleet.request(Method::POST, "/login")
                .json(&json!({"email": "ada@example.org", "password": "wrong"}))
                .send()
                .unwrap()
        });

        // Per address: another client (127.0.0.2, also loopback) still gets through.
        let other = reqwest::blocking::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .build()
            .unwrap();
        let response = other.post(fleet.url("/login/forgot"))
            .json(&json!({"email": "ada@example.org"}))
            .send()
            .unwrap();
        assert_ne!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    fn the_access_log_keeps_paths_and_never_the_tokens_in_links(db: TestDb) {
        let fleet = Fleet::start(db);
        let secret = "a-token-that-must-stay-out-of-logs";
        for path in [
            format!("/signup/verify?token={secret}"),
            format!("/login/reset?token={secret}"),
            format!("/profile/email/confirm?token={secret}"),
        ] {
            assert_eq!(fleet.get(&path).status(), StatusCode::BAD_REQUEST, "{path}");
            // What the page then loads carries it as its Referer.
            let referer = fleet.url(&path);
            let css = fleet.client().get(fleet.url("/assets/site.css")).header("referer", &referer).send().unwrap();
            assert_eq!(css.status(), StatusCode::OK);
        }
        let log = fleet.dir().join("nginx/access.log");
        let mut text = String::new();
        // nginx writes each line as the request ends: the last one may trail the answer.
        let written = flotilla_testkit::wait_until(Duration::from_secs(5), || {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            text.matches("GET /assets/site.css HTTP/1.1").count() == 3
        });
        assert!(written, "{}:\n{text}", log.display());
        assert!(text.contains("GET /signup/verify HTTP/1.1\" 400"), "{text}");
        assert!(text.contains(&format!("\"{}\"", fleet.url("/login/reset"))), "the referer's path is kept: {text}");
        assert!(!text.contains(secret) && !text.contains("token="), "{text}");
        // Nor do the services' own access lines: the path alone.
        let logged = flotilla_testkit::wait_until(Duration::from_secs(5), || {
            let logs = fleet.all_logs();
            ["\"GET /signup/verify\" 400", "\"GET /login/reset\" 400", "\"GET /profile/email/confirm\" 400"].iter().all(|line| logs.contains(line))
        });
        assert!(logged, "the services' access lines:\n{}", fleet.all_logs());
        assert!(!fleet.all_logs().contains(secret), "{}", fleet.all_logs());
    }
}
