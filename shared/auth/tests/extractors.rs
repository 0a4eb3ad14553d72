//! The extractors on a real actix-web service with a real (SQLite) database: who gets
//! through `Authenticated`, `Verified` and `Admin`, and with what refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use flotilla_auth::access_token::{self, Claims};
use flotilla_auth::keys::KeyRing;
use flotilla_auth::{Admin, Auth, AuthConfig, Authenticated, KeySource, TokenSettings, Verified};
use flotilla_db::{DatabaseUrl, PoolConfig};
use std::time::Duration;

fn free_endpoint() -> flotilla_bus::BusEndpoint {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = flotilla_bus::BusSecret::from_bytes(&[3; 32]).unwrap();
    flotilla_bus::BusEndpoint::new(&format!("tcp://127.0.0.1:{port}"), &secret)
}

fn claims(settings: &TokenSettings, role: &str, verified: bool) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "user-1".into(),
        sid: format!("session-{role}-{verified}"),
        role: role.into(),
        email_verified: verified,
        csrf: "form-token".into(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + settings.ttl_secs,
    }
}

#[actix_web::test]
async fn each_extractor_admits_exactly_whom_it_names() {
    let dir = std::env::temp_dir().join(format!(
        "flotilla-extractors-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let database = PoolConfig {
        url: DatabaseUrl::parse(&format!("sqlite://{}", dir.join("flotilla.db").display()))
            .unwrap(),
        max_size: 2,
        timeout: Duration::from_secs(3),
        busy_timeout: Duration::from_secs(3),
    };
    let mut conn = flotilla_db::open(&database).unwrap();
    flotilla_db::migrate(&mut conn, &database.url).unwrap();
    let pool = flotilla_db::connect(&database).unwrap();
    let settings = TokenSettings {
        issuer: "http://127.0.0.1:8080/login".into(),
        audience: "flotilla".into(),
        ttl_secs: 900,
        leeway_secs: 30,
    };
    let config = AuthConfig {
        tokens: settings.clone(),
        keys: KeySource::Local,
        jwks_ca: Vec::new(),
        catch_up: Duration::from_secs(60),
        events_in: free_endpoint(),
        events_out: free_endpoint(),
        public_url: "http://127.0.0.1:8080".into(),
        secure_cookies: false,
    };
    let auth = Auth::start(config, pool).unwrap();
    let (ring, _) = KeyRing::load_or_create(&dir.join("keys")).unwrap();
    auth.set_keys(&ring);
    let key = ring.current().unwrap();
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(auth))
            .route(
                "/any",
                web::get().to(|_: Authenticated| async { HttpResponse::Ok().finish() }),
            )
            .route(
                "/verified",
                web::get().to(|_: Verified| async { HttpResponse::Ok().finish() }),
            )
            .route(
                "/admin",
                web::get().to(|_: Admin| async { HttpResponse::Ok().finish() }),
            ),
    )
    .await;
    let user = access_token::sign(key, &claims(&settings, "user", true)).unwrap();
    let unverified = access_token::sign(key, &claims(&settings, "user", false)).unwrap();
    let admin = access_token::sign(key, &claims(&settings, "admin", true)).unwrap();

    let cases: [(&str, Option<&str>, StatusCode, Option<&str>); 10] = [
        (
            "/any",
            None,
            StatusCode::UNAUTHORIZED,
            Some("not_authenticated"),
        ),
        (
            "/any",
            Some("not.a.token"),
            StatusCode::UNAUTHORIZED,
            Some("token_invalid"),
        ),
        ("/any", Some(&unverified), StatusCode::OK, None),
        (
            "/verified",
            None,
            StatusCode::UNAUTHORIZED,
            Some("not_authenticated"),
        ),
        ("/verified", Some(&unverified), StatusCode::FORBIDDEN, None),
        ("/verified", Some(&user), StatusCode::OK, None),
        (
            "/admin",
            None,
            StatusCode::UNAUTHORIZED,
            Some("not_authenticated"),
        ),
        (
            "/admin",
            Some(&user),
            StatusCode::FORBIDDEN,
            Some("admin_only"),
        ),
        (
            "/admin",
            Some(&unverified),
            StatusCode::FORBIDDEN,
            Some("admin_only"),
        ),
        ("/admin", Some(&admin), StatusCode::OK, None),
    ];
    for (path, token, status, code) in cases {
        let mut request = test::TestRequest::get().uri(path);
        if let Some(token) = token {
            request = request.insert_header(("Authorization", format!("Bearer {token}")));
        }
        let response = test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status(), status, "{path} with {token:?}");
        if let Some(code) = code {
            let body: serde_json::Value = test::read_body_json(response).await;
            assert_eq!(body["error"], code, "{path}: {body}");
        }
    }
    // The cookie carries the token as well as the header does (a GET needs no form
    // token).
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/admin")
            .cookie(actix_web::cookie::Cookie::new(
                "flotilla_access",
                admin.clone(),
            ))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let _ = std::fs::remove_dir_all(&dir);
}
