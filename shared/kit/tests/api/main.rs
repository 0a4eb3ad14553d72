//! The kit's request handling, on a real server bound to a free port with a service
//! made for the test: body limits, malformed input, admission control (the in-flight
//! cap, the queue's delay), error pages, graceful draining.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpResponse, web};
use flotilla_kit::{Api, Application, Config, Env, Error, Service};
use flotilla_testkit::{TestDb, wait_until};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

static SERVICE: Service = Service {
    name: "test",
    default_port: 0,
    api,
    setup: flotilla_kit::no_state,
    background: None,
    commands: &[],
};

fn api(api: Api) -> Api {
    api.route::<__path_echo, _, _>(echo)
        .route::<__path_either, _, _>(either)
        .route::<__path_slow, _, _>(slow)
        .route::<__path_boom, _, _>(boom)
        .route::<__path_optional, _, _>(optional)
}

#[derive(serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
struct Echo {
    text: String,
}

/// Answers its body.
#[utoipa::path(post, path = "/test/echo", request_body = Echo,
    responses((status = 200, description = "The body.", body = Echo)))]
async fn echo(body: web::Json<Echo>) -> HttpResponse {
    HttpResponse::Ok().json(body.into_inner())
}

/// The same as JSON or as a form (`flotilla_kit::input::Input`).
#[utoipa::path(post, path = "/test/either",
    request_body(content((Echo = "application/json"), (Echo = "application/x-www-form-urlencoded"))),
    responses((status = 200, description = "The body.", body = Echo)))]
async fn either(body: flotilla_kit::input::Input<Echo>) -> HttpResponse {
    HttpResponse::Ok().json(body.raw())
}

/// Holds a request in flight for `ms` milliseconds, server side.
#[utoipa::path(get, path = "/test/slow", params(("ms" = Option<u64>, Query, description = "How long")),
    responses((status = 200, description = "Done.", content_type = "text/plain", body = String)))]
async fn slow(query: web::Query<HashMap<String, u64>>) -> HttpResponse {
    let ms = query.get("ms").copied().unwrap_or(0);
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
    HttpResponse::Ok().body("done")
}

/// `{"text"}`, or no body at all.
#[utoipa::path(post, path = "/test/optional",
    request_body(content((Option<Echo> = "application/json"))),
    responses((status = 204, description = "Read.")))]
async fn optional(body: web::Bytes) -> Result<HttpResponse, Error> {
    if !body.is_empty() {
        serde_json::from_slice::<Echo>(&body).map_err(Error::malformed_json)?;
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Fails on our side.
#[utoipa::path(get, path = "/test/boom", responses((status = 500, description = "Always.")))]
async fn boom() -> Result<HttpResponse, Error> {
    Err(anyhow::anyhow!("the disk at /srv/secret is full").into())
}

struct TestApp {
    addr: SocketAddr,
    handle: ServerHandle,
    client: Client,
    _db: TestDb,
}

impl TestApp {
    fn spawn(vars: &[(&str, &str)]) -> Self {
        let db = TestDb::sqlite();
        let mut env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert("DATABASE_URL".into(), db.url().into());
        env.insert("FLOTILLA_TEST_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("FLOTILLA_HTTP_WORKERS".into(), "2".into());
        let config = Config::from_env(&Env::from_fn(|k| env.get(k).cloned()), "test", 0).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(&SERVICE, config).unwrap();
                tx.send((app.port(), app.handle())).unwrap();
                app.run_until_stopped().await.unwrap();
            })
        });
        let (port, handle) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            handle,
            client: Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            _db: db,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/test{path}", self.addr)
    }

    fn in_flight(&self) -> u64 {
        let text = self
            .client
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("flotilla_http_requests_in_flight{service=\"test\"} "))
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        block_on(self.handle.stop(false));
    }
}

/// Runs a future (`ServerHandle::stop`) to completion from a plain thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    actix_web::rt::System::new().block_on(future)
}

#[test]
fn json_bodies_are_checked_with_clear_errors() {
    let app = TestApp::spawn(&[("FLOTILLA_MAX_BODY_BYTES", "1024")]);
    let ok = app
        .client
        .post(app.url("/echo"))
        .json(&json!({"text": "hi"}))
        .send()
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().unwrap()["text"], "hi");

    let big = app
        .client
        .post(app.url("/echo"))
        .json(&json!({"text": "x".repeat(2000)}))
        .send()
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = big.json().unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains("1024 bytes"));
    // The same from a route that takes JSON or a form.
    let big = app
        .client
        .post(app.url("/either"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("text={}", "x".repeat(2000)))
        .send()
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = big.json().unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains("1024 bytes"));

    let malformed = app
        .client
        .post(app.url("/echo"))
        .header("Content-Type", "application/json")
        .body("{\"text\": ")
        .send()
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.json::<Value>().unwrap()["error"],
        "malformed_json"
    );

    let wrong_field = app
        .client
        .post(app.url("/echo"))
        .json(&json!({"txt": "hi"}))
        .send()
        .unwrap();
    assert_eq!(wrong_field.status(), StatusCode::BAD_REQUEST);
    assert!(
        wrong_field.json::<Value>().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("missing field `text`")
    );

    let form = app
        .client
        .post(app.url("/echo"))
        .body("text=hi")
        .header("Content-Type", "text/plain")
        .send()
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        form.json::<Value>().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );
}

#[test]
fn beyond_the_in_flight_cap_requests_get_503_with_retry_after() {
    let app = TestApp::spawn(&[("FLOTILLA_MAX_IN_FLIGHT", "1")]);
    let client = app.client.clone();
    let url = app.url("/slow?ms=3000");
    let held = std::thread::spawn(move || client.get(url).send().unwrap().status());
    assert!(wait_until(Duration::from_secs(5), || app.in_flight() == 1));

    let refused = app.client.get(app.url("/slow?ms=0")).send().unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.json::<Value>().unwrap()["error"], "overloaded");
    // Health and metrics still answer while saturated.
    assert_eq!(
        app.client.get(app.url("/health")).send().unwrap().status(),
        StatusCode::OK
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains(
        "flotilla_http_requests_rejected_total{service=\"test\",reason=\"in_flight\"} 1"
    ));

    assert_eq!(held.join().unwrap(), StatusCode::OK);
    assert_eq!(
        app.client
            .get(app.url("/slow?ms=0"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// `X-Request-Start` as nginx writes it, `ago` before now.
fn stamp(ago: Duration) -> String {
    let at = std::time::SystemTime::now() - ago;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("t={}.{:03}", since.as_secs(), since.subsec_millis())
}

impl TestApp {
    fn get_stamped(&self, path: &str, ago: Duration) -> reqwest::blocking::Response {
        self.client
            .get(self.url(path))
            .header("X-Request-Start", stamp(ago))
            .send()
            .unwrap()
    }

    /// Requests that keep finding a queue (stamped 20 ms ago, within a 50 ms target)
    /// for longer than the interval (ten targets), then one that waited five seconds:
    /// its answer.
    fn late_after_a_standing_queue(&self) -> reqwest::blocking::Response {
        let since = std::time::Instant::now();
        while since.elapsed() < Duration::from_millis(600) {
            let status = self
                .get_stamped("/slow?ms=0", Duration::from_millis(20))
                .status();
            assert_eq!(status, StatusCode::OK);
            std::thread::sleep(Duration::from_millis(10));
        }
        self.get_stamped("/slow?ms=0", Duration::from_secs(5))
    }
}

#[test]
fn requests_that_waited_too_long_behind_the_proxy_are_refused() {
    let app = TestApp::spawn(&[("FLOTILLA_QUEUE_TARGET_MS", "50")]);
    let get = |path: &str, ago: Duration| app.get_stamped(path, ago);
    // Fresh from the proxy (the first stamp also says how its clock stands to ours).
    assert_eq!(get("/slow?ms=0", Duration::ZERO).status(), StatusCode::OK);
    // A burst after a quiet moment is taken however long it waited.
    assert_eq!(
        get("/slow?ms=0", Duration::from_secs(5)).status(),
        StatusCode::OK
    );
    // A queue that stands: a late request is refused at once.
    let late = app.late_after_a_standing_queue();
    assert_eq!(late.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(late.headers()["retry-after"], "1");
    assert_eq!(late.json::<Value>().unwrap()["error"], "overloaded");
    // Health and readiness answer however late.
    assert_eq!(
        get("/health", Duration::from_secs(5)).status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/ready", Duration::from_secs(5)).status(),
        StatusCode::OK
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .contains("flotilla_http_requests_rejected_total{service=\"test\",reason=\"queue\"} 1")
    );

    // Only a trusted proxy's stamp counts; turned off, none.
    for vars in [
        [
            ("FLOTILLA_TRUSTED_PROXIES", "none"),
            ("FLOTILLA_QUEUE_TARGET_MS", "50"),
        ],
        [
            ("FLOTILLA_TRUSTED_PROXIES", "127.0.0.1"),
            ("FLOTILLA_QUEUE_TARGET_MS", "0"),
        ],
    ] {
        let app = TestApp::spawn(&vars);
        assert_eq!(
            app.get_stamped("/slow?ms=0", Duration::ZERO).status(),
            StatusCode::OK
        );
        let late = app.late_after_a_standing_queue();
        assert_eq!(late.status(), StatusCode::OK, "{vars:?}");
    }
}

#[test]
fn internal_errors_are_generic_outside_and_detailed_in_the_log() {
    let app = TestApp::spawn(&[]);
    let api = app.client.get(app.url("/boom")).send().unwrap();
    assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(api.headers().contains_key("x-request-id"));
    let body = api.text().unwrap();
    assert!(body.contains("internal_error"));
    assert!(!body.contains("/srv/secret"), "{body}");

    let page = app
        .client
        .get(app.url("/boom"))
        .header("Accept", "text/html")
        .send()
        .unwrap();
    assert_eq!(page.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().unwrap();
    assert!(html.contains("<h1>Internal Server Error</h1>"), "{html}");
    assert!(!html.contains("/srv/secret"));
}

#[test]
fn stopping_gracefully_finishes_the_requests_in_flight() {
    let app = TestApp::spawn(&[]);
    let client = app.client.clone();
    let url = app.url("/slow?ms=1500");
    let held = std::thread::spawn(move || {
        let response = client.get(url).send().unwrap();
        (response.status(), response.text().unwrap())
    });
    assert!(wait_until(Duration::from_secs(5), || app.in_flight() == 1));
    let handle = app.handle.clone();
    let stopping = std::thread::spawn(move || block_on(handle.stop(true)));
    let (status, body) = held.join().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "done");
    stopping.join().unwrap();
    // Stopped: new connections are refused.
    assert!(app.client.get(app.url("/health")).send().is_err());
}

#[test]
fn the_document_describes_exactly_the_routes_served() {
    let app = TestApp::spawn(&[]);
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        // (sorted: serde_json's map here)
        [
            "/test/boom",
            "/test/echo",
            "/test/either",
            "/test/health",
            "/test/metrics",
            "/test/openapi.json",
            "/test/optional",
            "/test/ready",
            "/test/slow",
        ]
    );
    assert_eq!(SERVICE.api().problems(), Vec::<String>::new());
    // The kit's own answers are added: 503 with Retry-After everywhere, the body
    // errors where there is a body, each also as a page.
    let echo = &doc["paths"]["/test/echo"]["post"]["responses"];
    for status in ["200", "400", "413", "415", "422", "503"] {
        assert!(echo.get(status).is_some(), "echo lacks {status}: {echo}");
    }
    assert!(echo["503"]["headers"].get("Retry-After").is_some());
    assert_eq!(
        echo["422"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
    assert!(echo["422"]["content"].get("text/html").is_some());
    assert!(
        doc["paths"]["/test/slow"]["get"]["responses"]
            .get("400")
            .is_none(),
        "no body, no 400"
    );
    // nginx's 414 where parameters are in the address; none where there are none.
    let slow = &doc["paths"]["/test/slow"]["get"]["responses"];
    assert!(slow["414"]["content"].get("text/html").is_some(), "{slow}");
    assert!(echo.get("414").is_none(), "{echo}");
    // An Option<T> body is T or nothing, never null.
    let optional = &doc["paths"]["/test/optional"]["post"]["requestBody"];
    assert_eq!(
        optional["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Echo",
        "{optional}"
    );
    assert!(optional.get("required").is_none(), "{optional}");
    for body in [None, Some(json!({"text": "hi"}))] {
        let mut request = app.client.post(app.url("/optional"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        assert_eq!(request.send().unwrap().status(), StatusCode::NO_CONTENT);
    }
    for scheme in ["bearer", "cookie"] {
        assert!(doc["components"]["securitySchemes"].get(scheme).is_some());
    }
    // Served where described, and only with the methods described.
    let echoed = app
        .client
        .post(app.url("/echo"))
        .json(&json!({"text": "hi"}))
        .send()
        .unwrap();
    assert_eq!(echoed.status(), StatusCode::OK);
    let wrong = app.client.get(app.url("/echo")).send().unwrap();
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
}
