//! The extractors on a real actix-web service with a real (SQLite) database: who gets
//! through `Authenticated`, `Verified` and `Admin`, and with what refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use flotilla_auth::access_token::{self, Claims};
use flotilla_auth::keys::KeyRing;
use flotilla_auth::{Admin, Authenticated, KeySource, TokenSettings, Verified};

mod common;

fn claims(settings: &TokenSettings, role: &str, verified: bool) -> Claims {
    common::claims(
        settings,
        &format!("session-{role}-{verified}"),
        role,
        verified,
    )
}

#[actix_web::test]
async fn each_extractor_admits_exactly_whom_it_names() {
    let (auth, settings, dir) = common::start_auth("extractors", KeySource::Local);
    let (ring, _) = KeyRing::load_or_create(&dir.join("keys")).unwrap();
    auth.set_keys(&ring);
    let key = ring.newest().unwrap();
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
