//! The models against both backends.

use chrono::TimeDelta;
use flotilla_contracts::{AuditAction, PurgeUser};
use flotilla_db::diesel::Connection;
use flotilla_db::{AnyConnection, DatabaseUrl, PoolConfig};
use flotilla_testkit::TestDb;

use super::*;
use crate::email_link::Link;

fn each_backend(test: impl Fn(&TestDb, &mut AnyConnection)) {
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

fn ada(conn: &mut AnyConnection) -> User {
    let now = flotilla_jobs::now();
    NewUser {
        id: "u1",
        email: "Ada@Example.org",
        username: Some("ada"),
        password_hash: "$argon2id$v=19$hash",
    }
    .insert(conn, now)
    .unwrap();
    User::find(conn, "u1").unwrap().unwrap()
}

#[test]
fn a_new_user_reads_back_typed() {
    each_backend(|db, conn| {
        let user = ada(conn);
        assert_eq!(user.role, Role::User, "{}", db.backend_name());
        assert!(!user.public);
        assert!(!user.is_verified() && !user.is_disabled() && !user.is_closed());
        assert_eq!(
            user.password_hash.as_ref().unwrap().expose(),
            "$argon2id$v=19$hash"
        );
        let printed = format!("{user:?}");
        assert!(
            printed.contains("password_hash: Some([redacted])"),
            "{printed}"
        );
        assert!(!printed.contains("argon2"), "{printed}");
        db.execute("UPDATE users SET role = 'admin'");
        assert_eq!(User::find(conn, "u1").unwrap().unwrap().role, Role::Admin);
    });
}

#[test]
fn public_is_a_bool_stored_as_0_or_1() {
    each_backend(|db, conn| {
        ada(conn);
        let now = flotilla_jobs::now();
        let public = ProfileChanges {
            public: Some(true),
            ..ProfileChanges::default()
        };
        assert_eq!(User::update_profile(conn, "u1", &public, now).unwrap(), 1);
        let stored = "SELECT CAST(is_public AS TEXT) AS v FROM users";
        assert_eq!(db.strings(stored), ["1"], "{}", db.backend_name());
        assert!(User::find(conn, "u1").unwrap().unwrap().public);
        assert!(
            SiteAccount::public_profiles_after(conn, None, 10)
                .unwrap()
                .is_empty()
        );
        User::mark_verified(conn, "u1", "ada@example.org", now).unwrap();
        let listed = SiteAccount::public_profiles_after(conn, None, 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].has_public_profile());
        assert_eq!(SiteAccount::count_public_profiles(conn).unwrap(), 1);
        User::close(conn, "u1", now).unwrap();
        assert_eq!(db.strings(stored), ["0"]);
        let closed = User::find(conn, "u1").unwrap().unwrap();
        assert!(!closed.public && closed.is_closed() && closed.password_hash.is_none());
        assert!(
            SiteAccount::public_profiles_after(conn, None, 10)
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn addresses_and_names_match_whatever_their_case() {
    each_backend(|_, conn| {
        ada(conn);
        let found = User::by_email(conn, "ada@example.org").unwrap().unwrap();
        assert_eq!(found.email, "Ada@Example.org");
        assert!(User::username_taken(conn, "ada", None).unwrap());
        assert!(!User::username_taken(conn, "ada", Some("u1")).unwrap());
        // Unconfirmed, ada's username is not reserved; confirmed, it is.
        let now = flotilla_jobs::now();
        assert_eq!(
            User::release_unconfirmed_username(conn, "ada", Some("u1"), now).unwrap(),
            0
        );
        assert_eq!(
            User::release_unconfirmed_username(conn, "ada", None, now).unwrap(),
            1
        );
        assert!(!User::username_taken(conn, "ada", None).unwrap());
        User::close(conn, "u1", flotilla_jobs::now()).unwrap();
        assert!(User::by_email(conn, "ada@example.org").unwrap().is_none());
        let freed = User::by_email_with_closed(conn, "deleted-u1@deleted.invalid").unwrap();
        assert!(freed.is_some_and(|u| u.is_closed()));
        assert!(User::find_active(conn, "u1").unwrap().is_none());
    });
}

#[test]
fn a_link_works_once_and_in_time() {
    each_backend(|_, conn| {
        ada(conn);
        let now = flotilla_jobs::now();
        let purpose = LinkPurpose::PasswordReset;
        let day = TimeDelta::days(1);
        let issued = email_link::issue(conn, "u1", purpose, "ada@example.org", day, now).unwrap();
        assert_eq!(issued.hash, token_hash(&issued.token));
        let check = |conn: &mut AnyConnection, purpose, at| {
            email_link::check(conn, &issued.hash, purpose, at).unwrap()
        };
        assert_eq!(check(conn, LinkPurpose::VerifyEmail, now), Link::Invalid);
        assert_eq!(check(conn, purpose, now + day), Link::Expired);
        let valid = Link::Valid {
            user_id: "u1".into(),
            email: "ada@example.org".into(),
        };
        assert_eq!(check(conn, purpose, now), valid);
        assert!(email_link::spend(conn, &issued.hash, now).unwrap());
        assert!(!email_link::spend(conn, &issued.hash, now).unwrap());
        assert_eq!(check(conn, purpose, now), Link::Invalid);
    });
}

#[test]
fn voiding_ends_one_purpose_of_one_account_and_nothing_else() {
    each_backend(|db, conn| {
        ada(conn);
        let now = flotilla_jobs::now();
        NewUser {
            id: "u2",
            email: "grace@example.org",
            username: None,
            password_hash: "$argon2id$v=19$hash",
        }
        .insert(conn, now)
        .unwrap();
        let hour = TimeDelta::hours(1);
        let mut issue = |user: &str, purpose| {
            email_link::issue(conn, user, purpose, "someone@example.org", hour, now)
                .unwrap()
                .hash
        };
        let reset = LinkPurpose::PasswordReset;
        let (spent, first, second) = (issue("u1", reset), issue("u1", reset), issue("u1", reset));
        let change = issue("u1", LinkPurpose::ChangeEmail);
        let graces = issue("u2", reset);
        assert!(email_link::spend(conn, &spent, now).unwrap());

        let later = now + TimeDelta::seconds(1);
        let voided = email_link::void(conn, "u1", reset, later).unwrap();
        assert_eq!(
            voided,
            2,
            "the two unused reset links ({})",
            db.backend_name()
        );
        for hash in [&spent, &first, &second] {
            assert_eq!(
                email_link::check(conn, hash, reset, now).unwrap(),
                Link::Invalid
            );
        }
        // The spent one keeps the time it was used.
        let used = format!(
            "SELECT CAST(used_at AS TEXT) AS v FROM email_tokens WHERE token_hash = '{spent}'"
        );
        let used_now = format!(
            "SELECT CAST(used_at AS TEXT) AS v FROM email_tokens WHERE token_hash = '{first}'"
        );
        assert_ne!(db.strings(&used), db.strings(&used_now));
        let valid = |conn: &mut AnyConnection, hash: &str, purpose, user: &str| {
            email_link::check(conn, hash, purpose, now).unwrap()
                == Link::Valid {
                    user_id: user.into(),
                    email: "someone@example.org".into(),
                }
        };
        assert!(
            valid(conn, &change, LinkPurpose::ChangeEmail, "u1"),
            "another purpose"
        );
        assert!(valid(conn, &graces, reset, "u2"), "another account");
        assert_eq!(email_link::void(conn, "u1", reset, later).unwrap(), 0);
    });
}

#[test]
fn a_closed_account_is_purged_and_an_open_one_is_not() {
    each_backend(|db, conn| {
        ada(conn);
        let target = PurgeUser {
            user_id: "u1".into(),
            login_key: token_hash("ada@example.org"),
            email: Some("ada@example.org".into()),
        };
        assert!(!purge_closed(conn, &target).unwrap());
        User::close(conn, "u1", flotilla_jobs::now()).unwrap();
        assert!(purge_closed(conn, &target).unwrap());
        assert!(db.strings("SELECT id AS v FROM users").is_empty());
    });
}

#[test]
fn a_link_hides_its_hash() {
    let at = flotilla_jobs::now();
    let link = EmailLink {
        token_hash: "0123abcd".into(),
        user_id: "u1".into(),
        purpose: LinkPurpose::VerifyEmail,
        email: "ada@example.org".into(),
        created_at: at,
        expires_at: at,
        used_at: None,
    };
    let printed = format!("{link:?}");
    assert!(printed.contains("token_hash: [redacted]"), "{printed}");
    assert!(!printed.contains("0123abcd"), "{printed}");
}

#[test]
fn the_audit_log_is_searched_newest_first_by_actor_target_action_and_keyset() {
    each_backend(|_, conn| {
        let now = flotilla_jobs::now();
        let admin = Actor::Admin {
            id: "a1".into(),
            email: "Root@Example.org".into(),
        };
        let shell = Actor::CommandLine {
            unix_user: "ops".into(),
        };
        let entries = [
            (&shell, AuditAction::Promoted, ("a1", "Root@Example.org")),
            (&admin, AuditAction::Disabled, ("u1", "Ada@Example.org")),
            (&admin, AuditAction::Enabled, ("u1", "Ada@Example.org")),
            (&admin, AuditAction::Promoted, ("u2", "bob@example.org")),
        ];
        for (actor, action, target) in entries {
            let entry = NewAuditEntry {
                actor,
                action,
                target: Some(target),
                client_addr: "127.0.0.1",
                request_id: "r",
                detail: "",
            };
            entry.record(conn, now).unwrap();
        }
        fn found(
            conn: &mut AnyConnection,
            search: AuditSearch,
            limit: i64,
        ) -> Vec<(AuditAction, String)> {
            AuditEntry::search(conn, &search, limit)
                .unwrap()
                .into_iter()
                .map(|e| (AuditAction::parse(&e.action).unwrap(), e.target))
                .collect()
        }
        let all = found(conn, AuditSearch::default(), 10);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].0, AuditAction::Promoted, "newest first");
        let by = |actor: &str| AuditSearch {
            actor: Some(actor.into()),
            ..AuditSearch::default()
        };
        assert_eq!(
            found(conn, by("root@example.ORG"), 10).len(),
            3,
            "address, any case"
        );
        assert_eq!(found(conn, by("a1"), 10).len(), 3, "account id");
        assert_eq!(found(conn, by("command line (ops)"), 10).len(), 1);
        let about_ada = AuditSearch {
            target: Some("ADA@example.org".into()),
            ..AuditSearch::default()
        };
        assert_eq!(
            found(conn, about_ada.clone(), 10),
            vec![
                (AuditAction::Enabled, "Ada@Example.org".to_owned()),
                (AuditAction::Disabled, "Ada@Example.org".to_owned())
            ]
        );
        let promoted = AuditSearch {
            action: Some(AuditAction::Promoted),
            ..AuditSearch::default()
        };
        assert_eq!(found(conn, promoted, 10).len(), 2);
        // Keyset: the page after the newest entry of Ada's.
        let first = AuditEntry::search(conn, &about_ada, 1).unwrap();
        let older = AuditSearch {
            before: Some(first[0].id),
            ..about_ada
        };
        assert_eq!(
            found(conn, older, 10),
            vec![(AuditAction::Disabled, "Ada@Example.org".to_owned())]
        );
    });
}

#[test]
fn the_public_list_reads_in_chunks_by_username_without_the_reserved_name() {
    each_backend(|_, conn| {
        let now = flotilla_jobs::now();
        let public = ProfileChanges {
            public: Some(true),
            ..ProfileChanges::default()
        };
        for (id, name) in [
            ("u1", "cy"),
            ("u2", "ab"),
            ("u3", "index"),
            ("u4", "bo"),
            ("u5", "dee"),
        ] {
            let email = format!("{name}@example.org");
            NewUser {
                id,
                email: &email,
                username: Some(name),
                password_hash: "$argon2id$v=19$hash",
            }
            .insert(conn, now)
            .unwrap();
            User::update_profile(conn, id, &public, now).unwrap();
            if id != "u5" {
                User::mark_verified(conn, id, &email, now).unwrap();
            }
        }
        assert_eq!(SiteAccount::count_public_profiles(conn).unwrap(), 3);
        let mut names = |after: Option<&str>| -> Vec<String> {
            SiteAccount::public_profiles_after(conn, after, 2)
                .unwrap()
                .into_iter()
                .filter_map(|a| a.username)
                .collect()
        };
        assert_eq!(names(None), ["ab", "bo"]);
        assert_eq!(names(Some("bo")), ["cy"]);
        assert!(names(Some("cy")).is_empty());
        // What the lists show, from the index alone: the same profiles.
        let listed: Vec<String> = SiteAccount::listed_after(conn, Some("ab"), 10)
            .unwrap()
            .into_iter()
            .map(|l| l.username)
            .collect();
        assert_eq!(listed, ["bo", "cy"]);
    });
}

#[test]
fn a_challenge_is_taken_once_for_its_purpose_and_account_and_ends() {
    each_backend(|db, conn| {
        let user = ada(conn);
        let now = flotilla_jobs::now();
        let purpose = ChallengePurpose::Confirm;
        let token = Challenge::create(conn, purpose, Some(&user.id), "{}", now).unwrap();
        // Another purpose, another account: nothing, and it stays.
        let other = ChallengePurpose::SecondStep;
        assert_eq!(
            Challenge::take(conn, &token, other, Some(&user.id), now).unwrap(),
            None
        );
        assert_eq!(
            Challenge::take(conn, &token, purpose, Some("u2"), now).unwrap(),
            None
        );
        let taken = Challenge::take(conn, &token, purpose, Some(&user.id), now).unwrap();
        assert_eq!(taken, Some((Some(user.id.clone()), "{}".to_owned())));
        assert_eq!(
            Challenge::take(conn, &token, purpose, Some(&user.id), now).unwrap(),
            None
        );
        // One that ended is not taken, and the clean-up deletes it.
        let old = Challenge::create(conn, purpose, None, "{}", now).unwrap();
        let later = now + CHALLENGE_TTL + TimeDelta::seconds(1);
        assert_eq!(
            Challenge::take(conn, &old, purpose, None, later).unwrap(),
            None
        );
        let cleaned = cleanup(conn, later, 30).unwrap();
        assert_eq!(cleaned.tokens, 1, "{}", db.backend_name());
        assert_eq!(
            db.strings("SELECT token_hash AS v FROM passkey_challenges"),
            Vec::<String>::new()
        );
    });
}

#[test]
fn a_passkey_another_request_registered_meanwhile_is_refused_not_an_error() {
    each_backend(|db, conn| {
        ada(conn);
        let row = PasskeyRow {
            id: "p1".into(),
            user_id: "u1".into(),
            credential_id: "Y3JlZGVudGlhbA".into(),
            name: "key".into(),
            credential: "{}".into(),
            created_at: flotilla_jobs::now(),
            last_used_at: None,
        };
        conn.transaction(|conn| {
            assert!(PasskeyRow::insert(conn, &row)?);
            // The same credential, inserted as if by a request that looked it up
            // before this one's commit: the unique index refuses it, and the
            // transaction goes on.
            let again = PasskeyRow {
                id: "p2".into(),
                ..row.clone()
            };
            assert!(!PasskeyRow::insert(conn, &again)?);
            let ids: Vec<String> = PasskeyRow::of(conn, "u1")?
                .into_iter()
                .map(|p| p.id)
                .collect();
            assert_eq!(ids, ["p1"]);
            Ok::<_, flotilla_db::diesel::result::Error>(())
        })
        .unwrap();
        assert_eq!(
            db.strings("SELECT id AS v FROM passkeys"),
            vec!["p1".to_owned()],
            "{}",
            db.backend_name()
        );
    });
}
