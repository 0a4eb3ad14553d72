use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_db::{DatabaseUrl, Pool, PoolConfig};
use flotilla_testkit::{TestDb, wait_until};

use super::*;

fn each_backend(test: impl Fn(&Pool)) {
    for db in [Some(TestDb::sqlite()), TestDb::postgres()]
        .into_iter()
        .flatten()
    {
        let url = DatabaseUrl::parse(db.url()).unwrap();
        let pool = flotilla_db::connect(&PoolConfig {
            url: url.clone(),
            max_size: 8,
            timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        })
        .unwrap();
        flotilla_db::migrate(&mut pool.get().unwrap(), &url).unwrap();
        test(&pool);
    }
}

fn job(key: &str) -> NewJob {
    NewJob::new(Job::Noop, key)
}

const LEASE: Duration = Duration::from_secs(60);

#[test]
fn an_idempotency_key_enqueues_once() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        assert!(enqueue(&mut conn, &job("a")).unwrap());
        // Inside a transaction too: the conflict does not spoil it.
        write_transaction(&mut conn, |c| {
            assert!(!enqueue(c, &job("a"))?);
            assert!(enqueue(c, &job("b"))?);
            QueryResult::Ok(())
        })
        .unwrap();
        let count: i64 = jobs::table.count().get_result(&mut conn).unwrap();
        assert_eq!(count, 2);
    });
}

#[test]
fn a_claimed_job_is_leased_and_completed_once() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        enqueue(&mut conn, &job("a")).unwrap();
        let claimed = claim(&mut conn, "w1", LEASE, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].attempts, 1);
        assert_eq!(claimed[0].idempotency_key, "a");
        assert_eq!(claimed[0].decode().unwrap(), Job::Noop);
        assert!(
            claim(&mut conn, "w2", LEASE, 10).unwrap().is_empty(),
            "leased"
        );
        assert!(!complete(&mut conn, &claimed[0], "w2").unwrap(), "not w2's");
        assert!(complete(&mut conn, &claimed[0], "w1").unwrap());
        assert!(
            claim(&mut conn, "w2", LEASE, 10).unwrap().is_empty(),
            "done"
        );
        let payload: String = jobs::table.select(jobs::payload).first(&mut conn).unwrap();
        assert_eq!(payload, "{}", "a done job keeps no payload");
    });
}

#[test]
fn jobs_can_be_completed_together_but_only_by_their_worker() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        for key in ["a", "b", "c"] {
            enqueue(&mut conn, &job(key)).unwrap();
        }
        let claimed = claim(&mut conn, "w1", LEASE, 3).unwrap();
        let ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
        assert_eq!(complete_many(&mut conn, &ids, "w2").unwrap(), 0);
        assert_eq!(complete_many(&mut conn, &ids[..2], "w1").unwrap(), 2);
        assert_eq!(
            complete_many(&mut conn, &ids, "w1").unwrap(),
            1,
            "the third only"
        );
        assert_eq!(complete_many(&mut conn, &[], "w1").unwrap(), 0);
        assert_eq!(counts(&mut conn).unwrap(), (0, 0));
    });
}

#[test]
fn a_job_whose_worker_died_is_claimed_again_after_its_lease() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        enqueue(&mut conn, &job("a")).unwrap();
        let first = claim(&mut conn, "dead-worker", Duration::from_millis(200), 10).unwrap();
        assert_eq!(first.len(), 1);
        let mut again = Vec::new();
        assert!(wait_until(Duration::from_secs(5), || {
            again = claim(&mut conn, "w2", LEASE, 10).unwrap();
            !again.is_empty()
        }));
        assert_eq!(again[0].id, first[0].id);
        assert_eq!(again[0].attempts, 2);
        assert!(
            !complete(&mut conn, &first[0], "dead-worker").unwrap(),
            "lease lost"
        );
        assert!(complete(&mut conn, &again[0], "w2").unwrap());
    });
}

#[test]
fn failures_back_off_then_park_the_job_as_dead() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        let mut new = job("a");
        new.max_attempts = 2;
        enqueue(&mut conn, &new).unwrap();
        let claimed = claim(&mut conn, "w", LEASE, 1).unwrap().remove(0);
        let outcome = fail(
            &mut conn,
            &claimed,
            "w",
            &Failure::Temporary("timeout".into()),
        )
        .unwrap();
        let Outcome::RetryAt(at) = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            at > now() + TimeDelta::milliseconds(1000),
            "backs off: {at}"
        );
        assert!(
            claim(&mut conn, "w", LEASE, 1).unwrap().is_empty(),
            "not yet due"
        );

        // Make it due, fail it again: the last attempt parks it.
        diesel::update(jobs::table)
            .set(jobs::run_after.eq(now()))
            .execute(&mut conn)
            .unwrap();
        let claimed = claim(&mut conn, "w", LEASE, 1).unwrap().remove(0);
        assert_eq!(claimed.attempts, 2);
        let outcome = fail(
            &mut conn,
            &claimed,
            "w",
            &Failure::Temporary("timeout again".into()),
        )
        .unwrap();
        assert_eq!(outcome, Outcome::Dead);
        let (error, dead): (Option<String>, Option<NaiveDateTime>) = jobs::table
            .select((jobs::last_error, jobs::dead_at))
            .first(&mut conn)
            .unwrap();
        assert_eq!(error.as_deref(), Some("timeout again"));
        assert!(dead.is_some());
        assert_eq!(counts(&mut conn).unwrap(), (0, 1));
    });
}

#[test]
fn a_permanent_failure_is_not_retried_and_a_released_job_keeps_its_attempts() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        enqueue(&mut conn, &job("a")).unwrap();
        enqueue(&mut conn, &job("b")).unwrap();
        let claimed = claim(&mut conn, "w", LEASE, 2).unwrap();
        assert_eq!(claimed.len(), 2);
        let outcome = fail(
            &mut conn,
            &claimed[0],
            "w",
            &Failure::Permanent("550 no such mailbox".into()),
        )
        .unwrap();
        assert_eq!(outcome, Outcome::Dead);
        assert!(release(&mut conn, &claimed[1], "w").unwrap());
        let again = claim(&mut conn, "w", LEASE, 2).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, claimed[1].id);
        assert_eq!(again[0].attempts, 1, "the released attempt did not count");
    });
}

#[test]
fn concurrent_workers_never_share_a_job() {
    each_backend(|pool| {
        {
            let mut conn = pool.get().unwrap();
            for i in 0..200 {
                enqueue(&mut conn, &job(&format!("j{i}"))).unwrap();
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        std::thread::scope(|scope| {
            for w in 0..4 {
                let pool = pool.clone();
                let seen = seen.clone();
                scope.spawn(move || {
                    let worker = format!("w{w}");
                    let mut conn = pool.get().unwrap();
                    loop {
                        let batch = claim(&mut conn, &worker, LEASE, 7).unwrap();
                        if batch.is_empty() {
                            break;
                        }
                        for job in batch {
                            assert!(complete(&mut conn, &job, &worker).unwrap());
                            seen.lock().unwrap().push(job.id);
                        }
                    }
                });
            }
        });
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 200);
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            200,
            "each job once"
        );
    });
}

#[test]
fn backoff_grows_and_is_capped() {
    for attempt in 1..30 {
        let wait = backoff(attempt).as_secs_f64();
        let base = (2.0 * 2f64.powi(attempt.clamp(1, 20) - 1)).min(3600.0);
        assert!(
            wait >= base * 0.75 && wait <= base * 1.25,
            "{attempt}: {wait}"
        );
    }
}

fn mail_to(to: &str) -> Job {
    Job::Mail(flotilla_contracts::Mail {
        to: to.to_owned(),
        message: flotilla_contracts::Message::AccountDeleted {},
    })
}

#[test]
fn a_mail_is_found_by_its_recipient_until_it_is_done() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        for (key, to) in [
            ("a", "ada@example.org"),
            ("b", "bob@example.org"),
            ("c", "ada@example.org"),
        ] {
            enqueue(&mut conn, &NewJob::new(mail_to(to), key)).unwrap();
        }
        let recipients: Vec<Option<String>> = jobs::table
            .order(jobs::id)
            .select(jobs::recipient)
            .load(&mut conn)
            .unwrap();
        assert_eq!(
            recipients,
            [
                Some("ada@example.org"),
                Some("bob@example.org"),
                Some("ada@example.org")
            ]
            .map(|r| r.map(String::from))
        );
        let claimed = claim(&mut conn, "w1", LEASE, 10).unwrap();
        assert_eq!(claimed[0].decode().unwrap(), mail_to("ada@example.org"));
        // a (to ada) is done; b (to bob) and c (to ada) fail for good.
        assert!(complete(&mut conn, &claimed[0], "w1").unwrap());
        for job in &claimed[1..] {
            let gone = Failure::Permanent("550 no such mailbox".into());
            assert_eq!(fail(&mut conn, job, "w1", &gone).unwrap(), Outcome::Dead);
        }
        let done: Option<String> = jobs::table
            .filter(jobs::idempotency_key.eq("a"))
            .select(jobs::recipient)
            .first(&mut conn)
            .unwrap();
        assert_eq!(done, None, "a done mail forgets its address");
        assert_eq!(
            purge_dead_mails_to(&mut conn, "ada@example.org").unwrap(),
            1
        );
        let left: Vec<String> = jobs::table
            .order(jobs::id)
            .select(jobs::idempotency_key)
            .load(&mut conn)
            .unwrap();
        assert_eq!(left, ["a", "b"], "only ada's dead mail went");
    });
}

fn reset_mail(token: &str) -> Job {
    Job::Mail(flotilla_contracts::Mail {
        to: "ada@example.org".into(),
        message: flotilla_contracts::Message::PasswordReset {
            link: format!("http://x/login/reset?token={token}"),
            valid_minutes: 60,
            client_addr: None,
        },
    })
}

fn payload_of(conn: &mut AnyConnection, key: &str) -> String {
    jobs::table
        .filter(jobs::idempotency_key.eq(key))
        .select(jobs::payload)
        .first(conn)
        .unwrap()
}

#[test]
fn a_link_is_kept_for_retries_and_erased_once_the_job_is_dead() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        let tokens = [
            "TokenRetriedThenDead0123456789",
            "TokenRefusedForGood0123456789",
        ];
        for (key, token) in ["temporary", "permanent"].into_iter().zip(tokens) {
            let mut new = NewJob::new(reset_mail(token), key);
            new.max_attempts = 2;
            enqueue(&mut conn, &new).unwrap();
        }
        let claimed = claim(&mut conn, "w", LEASE, 2).unwrap();
        let timeout = Failure::Temporary("timeout".into());
        assert!(matches!(
            fail(&mut conn, &claimed[0], "w", &timeout).unwrap(),
            Outcome::RetryAt(_)
        ));
        assert!(
            payload_of(&mut conn, "temporary").contains(tokens[0]),
            "a retry still needs the link"
        );
        let refused = Failure::Permanent("550 no such mailbox".into());
        assert_eq!(
            fail(&mut conn, &claimed[1], "w", &refused).unwrap(),
            Outcome::Dead
        );
        // The last attempt of the first one.
        diesel::update(jobs::table)
            .set(jobs::run_after.eq(now()))
            .execute(&mut conn)
            .unwrap();
        let again = claim(&mut conn, "w", LEASE, 2).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            fail(&mut conn, &again[0], "w", &timeout).unwrap(),
            Outcome::Dead
        );
        for (key, token) in ["temporary", "permanent"].into_iter().zip(tokens) {
            let payload = payload_of(&mut conn, key);
            assert!(!payload.contains(token), "{key}: {payload}");
            // Still readable for whoever looks into the failure.
            let Job::Mail(mail) = Job::decode("email", &payload).unwrap() else {
                panic!("{key}: not a mail");
            };
            assert_eq!(mail.to, "ada@example.org");
        }
        let left: i64 = jobs::table
            .filter(jobs::payload.like("%0123456789%"))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(left, 0);
    });
}

#[test]
fn dead_jobs_of_an_earlier_release_lose_their_links_at_the_clean_up() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        let token = "TokenOfAnEarlierRelease0123456789";
        enqueue(&mut conn, &NewJob::new(reset_mail(token), "old")).unwrap();
        enqueue(&mut conn, &NewJob::new(reset_mail(token), "pending")).unwrap();
        // Parked as the release before this one did: the payload untouched.
        diesel::update(jobs::table.filter(jobs::idempotency_key.eq("old")))
            .set(jobs::dead_at.eq(Some(now())))
            .execute(&mut conn)
            .unwrap();
        assert_eq!(erase_dead_secrets(&mut conn).unwrap(), 1);
        assert!(!payload_of(&mut conn, "old").contains(token));
        assert!(
            payload_of(&mut conn, "pending").contains(token),
            "a job still to run keeps its link"
        );
        assert_eq!(erase_dead_secrets(&mut conn).unwrap(), 0, "once");
    });
}

#[test]
fn the_backlog_tells_due_from_later_running_and_dead_recent_from_old() {
    each_backend(|pool| {
        let mut conn = pool.get().unwrap();
        let start = now();
        let empty = inspect::backlog(&mut conn, start, start).unwrap();
        assert_eq!(
            (empty.due, empty.scheduled, empty.running, empty.dead),
            (0, 0, 0, 0)
        );
        assert_eq!(empty.oldest_due, None);
        for key in ["running", "due-old", "due-new", "dead-old", "dead-new"] {
            enqueue(&mut conn, &job(key)).unwrap();
        }
        let mut later = job("later");
        later.run_after = start + TimeDelta::hours(1);
        enqueue(&mut conn, &later).unwrap();
        let claimed = claim(&mut conn, "w", LEASE, 1).unwrap();
        let set = |key: &str, column: &str, at: NaiveDateTime| {
            let mut c = pool.get().unwrap();
            let sql = portable_sql(
                &c,
                &format!("UPDATE jobs SET {column} = ? WHERE idempotency_key = ?"),
            );
            diesel::sql_query(sql)
                .bind::<Timestamp, _>(at)
                .bind::<Text, _>(key)
                .execute(&mut c)
                .unwrap();
        };
        // The claimed one is whichever came first: name the others after it.
        let running = claimed[0].idempotency_key.clone();
        assert_eq!(running, "running");
        set("due-old", "run_after", start - TimeDelta::minutes(10));
        set("dead-old", "dead_at", start - TimeDelta::days(3));
        set("dead-new", "dead_at", start - TimeDelta::minutes(1));
        let at = now();
        let backlog = inspect::backlog(&mut conn, at, at - TimeDelta::days(1)).unwrap();
        assert_eq!(backlog.due, 2, "{backlog:?}");
        assert_eq!(backlog.scheduled, 1, "{backlog:?}");
        assert_eq!(backlog.running, 1, "{backlog:?}");
        assert_eq!(backlog.dead, 2, "{backlog:?}");
        assert_eq!(backlog.dead_since, 1, "{backlog:?}");
        let oldest = backlog.oldest_due.unwrap();
        assert!(
            (oldest - (start - TimeDelta::minutes(10)))
                .num_milliseconds()
                .abs()
                < 1000,
            "{oldest} is the older due job's time"
        );
    });
}
