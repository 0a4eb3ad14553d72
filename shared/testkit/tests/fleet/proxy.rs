//! What a browser or API client sees through nginx.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::*;

const PUBLIC: [&str; 4] = ["signup", "login", "profile", "admin"];

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
        assert!(body.contains("/assets/site.css"));

        let css = fleet.get("/assets/site.css");
        assert_eq!(css.status(), StatusCode::OK);
        assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));

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
            let headers = response.headers();
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
            assert_eq!(headers["x-frame-options"], "DENY", "{path}");
            assert!(headers.get("server").is_none_or(|s| s == "nginx"), "no version leaked");
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
}
