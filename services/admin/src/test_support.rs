//! What the unit tests that need a database share: each backend the machine has, migrated,
//! and accounts with second factors made from rows (a factor's secret is never read by
//! the console, so a stand-in does).

use chrono::TimeDelta;
use flotilla_accounts::{NewUser, RecoveryCodes, Session, TotpFactor, User};
use flotilla_db::{AnyConnection, DatabaseUrl, PoolConfig};
use flotilla_testkit::TestDb;

/// Runs `test` on a fresh SQLite database, then on PostgreSQL when there is one.
pub fn each_backend(test: impl Fn(&TestDb, &mut AnyConnection)) {
    for db in [Some(TestDb::sqlite()), TestDb::postgres()]
        .into_iter()
        .flatten()
    {
        let url = DatabaseUrl::parse(db.url()).unwrap();
        let mut conn = flotilla_db::open(&PoolConfig {
            url: url.clone(),
            max_size: 1,
            timeout: std::time::Duration::from_secs(5),
            busy_timeout: std::time::Duration::from_secs(5),
        })
        .unwrap();
        flotilla_db::migrate(&mut conn, &url).unwrap();
        test(&db, &mut conn);
    }
}

/// An account of `email` (id `id`), with a password.
pub fn account(conn: &mut AnyConnection, id: &str, email: &str) -> User {
    NewUser {
        id,
        email,
        username: None,
        password_hash: "$argon2id$v=19$hash",
    }
    .insert(conn, flotilla_jobs::now())
    .unwrap();
    User::find(conn, id).unwrap().unwrap()
}

/// Gives the account an authenticator app (a stand-in for the sealed secret) and
/// `codes` recovery codes.
pub fn with_factors(conn: &mut AnyConnection, id: &str, app: bool, codes: usize) {
    let now = flotilla_jobs::now();
    if app {
        assert!(TotpFactor::add(conn, id, "sealed-stand-in", 1, now).unwrap());
    }
    let hashes: Vec<String> = (0..codes).map(|i| format!("hash-{id}-{i}")).collect();
    RecoveryCodes::replace(conn, id, &hashes, now).unwrap();
}

/// A live session of the account, signed in now with `amr`.
pub fn session(conn: &mut AnyConnection, sid: &str, user_id: &str, amr: &str) -> Session {
    let now = flotilla_jobs::now();
    let session = Session {
        id: sid.to_owned(),
        user_id: user_id.to_owned(),
        csrf_token: format!("csrf-{sid}"),
        user_agent: "test".to_owned(),
        client_addr: "127.0.0.1".to_owned(),
        created_at: now,
        last_used_at: now,
        idle_expires_at: now + TimeDelta::hours(1),
        expires_at: now + TimeDelta::days(1),
        revoked_at: None,
        revoked_reason: None,
        authenticated_at: Some(now),
        amr: amr.to_owned(),
    };
    session.insert(conn).unwrap();
    session
}
