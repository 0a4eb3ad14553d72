use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use flotilla_testkit::TestDb;

use super::*;
use crate::schema::users;

fn each_backend(test: impl Fn(&TestDb)) {
    let sqlite = TestDb::sqlite();
    test(&sqlite);
    if let Some(pg) = TestDb::postgres() {
        test(&pg);
    }
}

fn pool_for(db: &TestDb) -> Pool {
    let config = PoolConfig {
        url: DatabaseUrl::parse(db.url()).unwrap(),
        max_size: 4,
        timeout: Duration::from_secs(3),
        busy_timeout: Duration::from_secs(3),
    };
    connect(&config).unwrap()
}

#[test]
fn migrate_brings_an_empty_database_to_current_once() {
    each_backend(|db| {
        let pool = pool_for(db);
        let url = DatabaseUrl::parse(db.url()).unwrap();
        let mut conn = pool.get().unwrap();
        assert!(matches!(
            schema_status(&mut conn).unwrap(),
            SchemaStatus::Behind { .. }
        ));
        let applied = migrate(&mut conn, &url).unwrap();
        assert_eq!(
            applied,
            [
                "20261122000001",
                "20261122000002",
                "20261122000003",
                "20261122000004",
                "20261122000005",
                "20261202000006",
                "20261202000007",
                "20261202000008",
                "20261202000009",
                "20261202000010",
                "20261202000011",
                "20261202000012",
                "20261202000013",
                "20261203000014"
            ]
            .map(String::from)
        );
        assert_eq!(schema_status(&mut conn).unwrap(), SchemaStatus::Current);
        assert!(
            migrate(&mut conn, &url).unwrap().is_empty(),
            "second run applies nothing"
        );
    });
}

#[test]
fn a_database_a_newer_release_expanded_is_served() {
    each_backend(|db| {
        let pool = pool_for(db);
        let url = DatabaseUrl::parse(db.url()).unwrap();
        let mut conn = pool.get().unwrap();
        migrate(&mut conn, &url).unwrap();
        // What a next release's expand migration does: add, record its version.
        diesel::sql_query("ALTER TABLE users ADD COLUMN nickname TEXT")
            .execute(&mut conn)
            .unwrap();
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')",
        )
        .execute(&mut conn)
        .unwrap();
        assert_eq!(
            schema_status(&mut conn).unwrap(),
            SchemaStatus::Newer {
                unknown: vec!["29991231000000".into()]
            }
        );
        assert!(
            migrate(&mut conn, &url).unwrap().is_empty(),
            "an older migrate leaves a newer schema alone"
        );
    });
}

#[test]
fn a_database_a_newer_release_contracted_is_refused() {
    each_backend(|db| {
        let pool = pool_for(db);
        let url = DatabaseUrl::parse(db.url()).unwrap();
        let mut conn = pool.get().unwrap();
        migrate(&mut conn, &url).unwrap();
        diesel::sql_query(
            "INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')",
        )
        .execute(&mut conn)
        .unwrap();
        // The contract migration: binaries must know 29991231000000 from now on.
        diesel::sql_query(
            "INSERT INTO schema_compat (id, oldest_reader) VALUES (1, '29991231000000')",
        )
        .execute(&mut conn)
        .unwrap();
        assert_eq!(
            schema_status(&mut conn).unwrap(),
            SchemaStatus::Ahead {
                unknown: vec!["29991231000000".into()]
            }
        );
        let err = migrate(&mut conn, &url).unwrap_err().to_string();
        assert!(err.contains("newer flotilla"), "{err}");
    });
}

/// Expand, then contract: a migration that removes or changes what the previous
/// release reads must raise `schema_compat.oldest_reader` in the same migration, so
/// that the previous release refuses the database instead of failing on it. The
/// migrations before this rule (1-9) are what every deployed database already has.
#[test]
fn a_migration_that_contracts_the_schema_says_so() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let contracting = [
        "drop table",
        "drop column",
        "rename ",
        "alter column",
        "drop index",
        "drop view",
        "drop trigger",
    ];
    let mut offenders = Vec::new();
    for backend in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(root.join(backend)).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let number: u32 = name[11..17].parse().unwrap();
            if number < 10 {
                continue;
            }
            let sql = std::fs::read_to_string(dir.join("up.sql")).unwrap();
            let code: String = sql
                .lines()
                .map(|l| l.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n")
                .to_lowercase();
            let adds_required_column = code.split(';').any(|stmt| {
                stmt.contains("add column")
                    && stmt.contains("not null")
                    && !stmt.contains("default")
            });
            let contracts =
                contracting.iter().any(|word| code.contains(word)) || adds_required_column;
            if contracts && !code.contains("schema_compat") {
                offenders.push(format!("{backend}/{name}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these migrations remove or change what the previous release reads (or add a \
         required column it does not write) without raising schema_compat.oldest_reader; \
         split them into an expand now and a contract in a later release (docs/operations.md, \
         Upgrades): {offenders:?}"
    );
}

type UserRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i32,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
);

type TokenRow = (
    String,
    String,
    String,
    String,
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
);

/// `schema.rs` is written by hand: loading every column on both backends proves it
/// matches what the migrations create.
#[test]
fn schema_matches_migrations() {
    each_backend(|db| {
        let pool = pool_for(db);
        let mut conn = pool.get().unwrap();
        migrate(&mut conn, &DatabaseUrl::parse(db.url()).unwrap()).unwrap();
        let now = chrono::Utc::now().naive_utc();
        diesel::insert_into(users::table)
            .values((
                users::id.eq("6c0f7d3e-0000-4000-8000-000000000001"),
                users::email.eq("Ada@Example.org"),
                users::username.eq("ada"),
                users::created_at.eq(now),
                users::updated_at.eq(now),
            ))
            .execute(&mut conn)
            .unwrap();
        let rows: Vec<UserRow> = users::table
            .select(users::all_columns)
            .load(&mut conn)
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, "Ada@Example.org");
        assert_eq!(rows[0].6, "user", "role defaults to user");
        assert_eq!(rows[0].7, 0, "profiles are private by default");

        let tokens: Vec<TokenRow> = crate::schema::email_tokens::table
            .select(crate::schema::email_tokens::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(tokens.is_empty());
        let count: i64 = crate::schema::jobs::table
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(count, 0);
        type SessionRow = (
            String,
            String,
            String,
            String,
            String,
            NaiveDateTime,
            NaiveDateTime,
            NaiveDateTime,
            NaiveDateTime,
            Option<NaiveDateTime>,
            Option<String>,
            Option<NaiveDateTime>,
            String,
        );
        let sessions: Vec<SessionRow> = crate::schema::sessions::table
            .select(crate::schema::sessions::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(sessions.is_empty());
        type RefreshRow = (
            String,
            String,
            NaiveDateTime,
            Option<NaiveDateTime>,
            Option<String>,
        );
        let refresh: Vec<RefreshRow> = crate::schema::refresh_tokens::table
            .select(crate::schema::refresh_tokens::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(refresh.is_empty());
        diesel::insert_into(crate::schema::auth_events::table)
            .values((
                crate::schema::auth_events::kind.eq("login.failure"),
                crate::schema::auth_events::client_addr.eq("127.0.0.1"),
                crate::schema::auth_events::user_agent.eq("test"),
                crate::schema::auth_events::created_at.eq(now),
            ))
            .execute(&mut conn)
            .unwrap();
        type EventRow = (
            i64,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
            String,
            String,
            NaiveDateTime,
        );
        let events: Vec<EventRow> = crate::schema::auth_events::table
            .select(crate::schema::auth_events::all_columns)
            .load(&mut conn)
            .unwrap();
        assert_eq!(events.len(), 1);
        type AuditRow = (
            i64,
            NaiveDateTime,
            Option<String>,
            String,
            String,
            Option<String>,
            String,
            String,
            String,
            String,
        );
        let audit: Vec<AuditRow> = crate::schema::audit_log::table
            .select(crate::schema::audit_log::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(audit.is_empty());
        type BuildRow = (i64, String, String, NaiveDateTime, NaiveDateTime, i64);
        let builds: Vec<BuildRow> = crate::schema::page_builds::table
            .select(crate::schema::page_builds::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(builds.is_empty());
        assert_eq!(crate::PageUpdate::last(&mut conn).unwrap(), None);
        type TotpRow = (
            String,
            String,
            Option<i64>,
            NaiveDateTime,
            Option<NaiveDateTime>,
        );
        let totp: Vec<TotpRow> = crate::schema::totp_factors::table
            .select(crate::schema::totp_factors::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(totp.is_empty());
        type CodeRow = (String, String, NaiveDateTime);
        let codes: Vec<CodeRow> = crate::schema::recovery_codes::table
            .select(crate::schema::recovery_codes::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(codes.is_empty());
        type StepRow = (
            String,
            String,
            String,
            String,
            i32,
            NaiveDateTime,
            NaiveDateTime,
        );
        let steps: Vec<StepRow> = crate::schema::second_steps::table
            .select(crate::schema::second_steps::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(steps.is_empty());
        type PasskeyRow = (
            String,
            String,
            String,
            String,
            String,
            NaiveDateTime,
            Option<NaiveDateTime>,
        );
        let keys: Vec<PasskeyRow> = crate::schema::passkeys::table
            .select(crate::schema::passkeys::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(keys.is_empty());
        type ChallengeRow = (
            String,
            String,
            Option<String>,
            String,
            NaiveDateTime,
            NaiveDateTime,
        );
        let challenges: Vec<ChallengeRow> = crate::schema::passkey_challenges::table
            .select(crate::schema::passkey_challenges::all_columns)
            .load(&mut conn)
            .unwrap();
        assert!(challenges.is_empty());

        // The unique indexes ignore case.
        let dup = diesel::insert_into(users::table)
            .values((
                users::id.eq("6c0f7d3e-0000-4000-8000-000000000002"),
                users::email.eq("ada@example.org"),
                users::created_at.eq(now),
                users::updated_at.eq(now),
            ))
            .execute(&mut conn);
        assert!(matches!(
            dup,
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        ));
    });
}

#[test]
fn write_transaction_commits_or_rolls_back_whole() {
    each_backend(|db| {
        let pool = pool_for(db);
        let mut conn = pool.get().unwrap();
        migrate(&mut conn, &DatabaseUrl::parse(db.url()).unwrap()).unwrap();
        let now = chrono::Utc::now().naive_utc();
        let insert = |conn: &mut AnyConnection, id: &str| {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(id),
                    users::email.eq(format!("{id}@example.org")),
                    users::created_at.eq(now),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
        };
        write_transaction(&mut conn, |c| insert(c, "a")).unwrap();
        let failed: Result<(), diesel::result::Error> = write_transaction(&mut conn, |c| {
            insert(c, "b")?;
            insert(c, "a")?; // duplicate: the whole transaction goes
            Ok(())
        });
        assert!(failed.is_err());
        let ids: Vec<String> = users::table.select(users::id).load(&mut conn).unwrap();
        assert_eq!(ids, vec!["a".to_string()]);
        // The connection is usable again after the rollback.
        write_transaction(&mut conn, |c| insert(c, "c")).unwrap();
    });
}

#[test]
fn sqlite_connections_are_tuned_for_several_processes() {
    let db = TestDb::sqlite();
    let pool = pool_for(&db);
    let mut conn = pool.get().unwrap();
    #[derive(QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }
    let mode: Vec<Mode> = diesel::sql_query("PRAGMA journal_mode")
        .load(&mut conn)
        .unwrap();
    assert_eq!(mode[0].journal_mode, "wal");
    #[derive(QueryableByName)]
    struct Fk {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        foreign_keys: i32,
    }
    let fk: Vec<Fk> = diesel::sql_query("PRAGMA foreign_keys")
        .load(&mut conn)
        .unwrap();
    assert_eq!(fk[0].foreign_keys, 1);
}

#[test]
fn an_unreachable_postgres_fails_fast_with_the_real_reason() {
    let port = flotilla_testkit::free_port();
    let config = PoolConfig {
        url: DatabaseUrl::parse(&format!("postgres://flotilla:pw@127.0.0.1:{port}/flotilla"))
            .unwrap(),
        max_size: 2,
        timeout: Duration::from_secs(2),
        busy_timeout: Duration::from_secs(1),
    };
    let started = Instant::now();
    let err = format!("{:#}", connect(&config).unwrap_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("Connection refused") || err.contains("connection refused"),
        "{err}"
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "names the database: {err}"
    );
    assert!(!err.contains("pw@"), "no password in the message: {err}");
}

#[test]
fn ids_are_version_4_uuids() {
    let id = crate::new_id();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    assert_ne!(crate::new_id(), id);
}

#[test]
fn a_read_snapshot_does_not_see_writes_made_during_it() {
    each_backend(|db| {
        let pool = pool_for(db);
        let mut conn = pool.get().unwrap();
        migrate(&mut conn, &DatabaseUrl::parse(db.url()).unwrap()).unwrap();
        let now = chrono::Utc::now().naive_utc();
        let mut other = pool.get().unwrap();
        let counts: (i64, i64) = read_snapshot(&mut conn, |c| {
            let before: i64 = users::table.count().get_result(c)?;
            diesel::insert_into(users::table)
                .values((
                    users::id.eq("meanwhile"),
                    users::email.eq("meanwhile@example.org"),
                    users::created_at.eq(now),
                    users::updated_at.eq(now),
                ))
                .execute(&mut *other)?;
            let after: i64 = users::table.count().get_result(c)?;
            Ok::<_, diesel::result::Error>((before, after))
        })
        .unwrap();
        assert_eq!(counts, (0, 0), "{}", db.backend_name());
        let now_seen: i64 = users::table.count().get_result(&mut conn).unwrap();
        assert_eq!(
            now_seen, 1,
            "the connection is usable after it, and sees the write"
        );
    });
}

#[test]
fn like_literal_escapes_what_like_would_interpret() {
    assert_eq!(like_literal(r"a_b%c\d"), r"a\_b\%c\\d");
    assert_eq!(like_literal("ada@example.org"), "ada@example.org");
}

#[test]
fn the_recipient_of_a_first_release_mail_job_is_back_filled() {
    each_backend(|db| {
        let pool = pool_for(db);
        let mut conn = pool.get().unwrap();
        crate::migrate::migrate_next(&mut conn, 5);
        let mut insert = |key: &str, kind: &str, payload: &str| {
            let sql = format!(
                "INSERT INTO jobs (kind, payload, idempotency_key, run_after, attempts, \
                 max_attempts, created_at, updated_at, dead_at) VALUES ('{kind}', '{payload}', \
                 '{key}', '2026-11-30 10:00:00', 8, 8, '2026-11-30 10:00:00', \
                 '2026-11-30 10:00:00', '2026-11-30 10:00:00')"
            );
            diesel::sql_query(sql).execute(&mut *conn).unwrap();
        };
        insert(
            "dead",
            "email",
            r#"{"template":"password_reset","to":"ada@example.org","params":{"link":"x"}}"#,
        );
        insert("done", "email", "{}");
        insert("broken", "email", "not json");
        insert(
            "purge",
            "purge_user",
            r#"{"user_id":"u1","login_key":"k","to":"x"}"#,
        );
        crate::migrate::migrate_next(&mut conn, 1);
        // Migration 6 is applied; only later ones may be pending.
        match schema_status(&mut conn).unwrap() {
            SchemaStatus::Behind { pending } => {
                assert!(
                    pending.iter().all(|v| v.as_str() > "20261202000006"),
                    "{pending:?}"
                );
            }
            status => assert_eq!(status, SchemaStatus::Current),
        }
        let filled = db.strings(
            "SELECT idempotency_key || '=' || COALESCE(recipient, '-') AS v FROM jobs \
             ORDER BY idempotency_key",
        );
        assert_eq!(
            filled,
            ["broken=-", "dead=ada@example.org", "done=-", "purge=-"]
        );
    });
}

#[test]
fn a_new_sqlite_database_and_its_wal_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::sqlite();
    let url = DatabaseUrl::parse(db.url()).unwrap();
    let path = url.sqlite_path().unwrap().to_owned();
    assert!(!path.exists());
    let pool = pool_for(&db);
    let mut conn = pool.get().unwrap();
    migrate(&mut conn, &url).unwrap();
    diesel::sql_query("CREATE TABLE mode_probe (x INTEGER)")
        .execute(&mut conn)
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[test]
fn refresh_tokens_of_the_release_before_keep_working_without_a_spending_device() {
    each_backend(|db| {
        let pool = pool_for(db);
        let mut conn = pool.get().unwrap();
        crate::migrate::migrate_next(&mut conn, 6);
        let t = "'2026-12-01 10:00:00'";
        for sql in [
            format!(
                "INSERT INTO users (id, email, created_at, updated_at) VALUES ('u1', 'ada@example.org', {t}, {t})"
            ),
            format!(
                "INSERT INTO sessions (id, user_id, csrf_token, user_agent, client_addr, created_at, \
                 last_used_at, idle_expires_at, expires_at) VALUES ('s1', 'u1', 'c', 'ua', '127.0.0.1', {t}, {t}, {t}, {t})"
            ),
            format!(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at, used_at) VALUES \
                 ('spent', 's1', {t}, {t}), ('live', 's1', {t}, NULL)"
            ),
        ] {
            diesel::sql_query(sql).execute(&mut *conn).unwrap();
        }
        crate::migrate::migrate_next(&mut conn, 1);
        let rows = db.strings(
            "SELECT token_hash || '=' || COALESCE(spent_by_device, '-') AS v FROM refresh_tokens \
             ORDER BY token_hash",
        );
        assert_eq!(rows, ["live=-", "spent=-"], "{}", db.backend_name());
    });
}

#[test]
fn a_read_only_connection_reads_and_never_writes_or_creates() {
    each_backend(|db| {
        let url = DatabaseUrl::parse(db.url()).unwrap();
        let config = PoolConfig {
            url: url.clone(),
            max_size: 1,
            timeout: Duration::from_secs(3),
            busy_timeout: Duration::from_secs(3),
        };
        if let Some(path) = url.sqlite_path() {
            let err = format!("{:#}", open_read_only(&config).err().unwrap());
            assert!(err.contains("does not exist"), "{err}");
            assert!(
                !path.exists(),
                "a read-only open created {}",
                path.display()
            );
        }
        migrate(&mut open(&config).unwrap(), &url).unwrap();
        let mut conn = open_read_only(&config).unwrap();
        assert_eq!(schema_status(&mut conn).unwrap(), SchemaStatus::Current);
        let (known, applied) = migration_versions(&mut conn).unwrap();
        assert_eq!(known, applied);
        assert!(!known.is_empty());
        let write =
            diesel::sql_query("CREATE TABLE read_only_probe (x INTEGER)").execute(&mut conn);
        let err = write.unwrap_err().to_string();
        assert!(
            err.contains("read-only") || err.contains("readonly"),
            "{err}"
        );
    });
}

#[test]
fn a_read_only_uri_escapes_what_a_uri_reads_as_its_own() {
    assert_eq!(
        crate::read_only_uri(std::path::Path::new("/tmp/a%b?c#d.db")),
        "file:/tmp/a%25b%3fc%23d.db?mode=ro"
    );
}

#[test]
fn a_host_keeps_one_page_update_row_its_last() {
    each_backend(|db| {
        let pool = pool_for(db);
        let mut conn = pool.get().unwrap();
        migrate(&mut conn, &DatabaseUrl::parse(db.url()).unwrap()).unwrap();
        let at = |s: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 12, 2)
                .unwrap()
                .and_hms_opt(10, 0, s)
                .unwrap()
        };
        let update = |host: &str, s: u32, changed: i64| crate::PageUpdate {
            host: host.into(),
            version: "1.0.0".into(),
            at: at(s),
            duration_ms: 12,
            changed,
        };
        update("edge-1", 1, 3).record(&mut conn).unwrap();
        update("edge-1", 2, 5).record(&mut conn).unwrap();
        assert_eq!(
            crate::PageUpdate::last(&mut conn).unwrap(),
            Some(update("edge-1", 2, 5))
        );
        update("edge-2", 3, 1).record(&mut conn).unwrap();
        assert_eq!(
            crate::PageUpdate::last(&mut conn).unwrap(),
            Some(update("edge-2", 3, 1))
        );
        let rows: i64 = crate::schema::page_updates::table
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(rows, 2);
    });
}
