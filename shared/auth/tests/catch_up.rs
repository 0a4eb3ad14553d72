//! A service that has just started knows the sessions revoked while it was down before
//! it answers its first token check: the check waits for the deny-list's first catch-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use flotilla_auth::keys::KeyRing;
use flotilla_auth::{KeySource, TokenError, access_token};
use flotilla_db::diesel::{RunQueryDsl, sql_query};

mod common;

/// How long the catch-up is kept from the database after the start.
const HELD: Duration = Duration::from_millis(400);

#[actix_web::test]
async fn the_first_check_waits_for_what_was_revoked_before_the_start() {
    let at = (chrono::Utc::now() - chrono::TimeDelta::seconds(10))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let started = Instant::now();
    let (auth, settings, dir) = common::start_auth_after("catch-up", KeySource::Local, |pool| {
        let mut conn = pool.get().unwrap();
        flotilla_db::on_backend!(&mut *conn, |c| {
            sql_query(format!(
                "INSERT INTO users (id, email, role, is_public, created_at, updated_at) \
                 VALUES ('user-1', 'ada@example.org', 'user', 0, '{at}', '{at}')"
            ))
            .execute(c)
            .unwrap();
            sql_query(format!(
                "INSERT INTO sessions (id, user_id, csrf_token, user_agent, client_addr, \
                 created_at, last_used_at, idle_expires_at, expires_at, revoked_at, \
                 revoked_reason) VALUES ('signed-out', 'user-1', 'f', 'test', '127.0.0.1', \
                 '{at}', '{at}', '{at}', '{at}', '{at}', 'logout')"
            ))
            .execute(c)
            .unwrap();
        });
        // Every connection of the pool (2) held for a while: the first catch-up waits
        // for one, as it would for a database slow to answer.
        let held = (conn, pool.get().unwrap());
        std::thread::spawn(move || {
            std::thread::sleep(HELD);
            drop(held);
        });
    });
    let (ring, _) = KeyRing::load_or_create(&dir.join("keys")).unwrap();
    auth.set_keys(&ring);
    let sign = |sid: &str| {
        let claims = common::claims(&settings, sid, "user", true);
        access_token::sign(ring.newest().unwrap(), &claims).unwrap()
    };
    assert!(
        started.elapsed() < HELD,
        "the set-up took longer than the hold"
    );
    assert_eq!(
        auth.verify(&sign("signed-out")).await,
        Err(TokenError::Revoked)
    );
    assert!(
        started.elapsed() >= HELD,
        "the check did not wait for the catch-up"
    );
    assert!(auth.verify(&sign("live")).await.is_ok());
    std::fs::remove_dir_all(dir).ok();
}
