//! `make bench`'s queue figures, against a running flotilla-worker on the same
//! database (`DATABASE_URL`) and wake-up socket (`FLOTILLA_BUS_WAKE`, sealed with
//! `FLOTILLA_BUS_SECRET`):
//!
//! - throughput: N no-op jobs committed in one transaction, one wake-up, time until the
//!   last is done (jobs/s);
//! - latency: one no-op job at a time, committed then woken as a service does; the
//!   time from its enqueue to its completion, from the database's own timestamps. A
//!   no-op starts and ends within one pass, so this bounds enqueue-to-start.
//!
//! Prints `throughput_per_s latency_p50_ms latency_p99_ms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::jobs;
use flotilla_db::{DatabaseUrl, PoolConfig, write_transaction};
use flotilla_jobs::{Job, NewJob};

fn main() {
    let url = DatabaseUrl::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL")).unwrap();
    let secret = flotilla_bus::BusSecret::from_hex(
        &std::env::var("FLOTILLA_BUS_SECRET").expect("FLOTILLA_BUS_SECRET"),
    )
    .expect("FLOTILLA_BUS_SECRET: 64 hex digits or more");
    let wake = flotilla_bus::WakeSender::start(&flotilla_bus::BusEndpoint::new(
        &std::env::var("FLOTILLA_BUS_WAKE").expect("FLOTILLA_BUS_WAKE"),
        &secret,
    ))
    .unwrap();
    let count: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let config = PoolConfig {
        url,
        max_size: 2,
        timeout: Duration::from_secs(10),
        busy_timeout: Duration::from_secs(10),
    };
    let mut conn = flotilla_db::open(&config).unwrap();
    let run = format!("{:08x}", rand::random::<u32>());
    let done = |conn: &mut flotilla_db::AnyConnection, prefix: &str| -> i64 {
        jobs::table
            .filter(jobs::idempotency_key.like(format!("{prefix}%")))
            .filter(jobs::done_at.is_not_null())
            .count()
            .get_result(conn)
            .unwrap()
    };

    // Throughput.
    let prefix = format!("bench:{run}:t:");
    write_transaction(&mut conn, |c| {
        for i in 0..count {
            flotilla_jobs::enqueue(c, &NewJob::new(Job::Noop, format!("{prefix}{i}")))?;
        }
        QueryResult::Ok(())
    })
    .unwrap();
    let started = Instant::now();
    wake.wake("noop");
    while done(&mut conn, &prefix) < count as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the worker did not drain the queue"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let throughput = count as f64 / started.elapsed().as_secs_f64();

    // Latency, one job at a time.
    let prefix = format!("bench:{run}:l:");
    for i in 0..200 {
        let key = format!("{prefix}{i}");
        flotilla_jobs::enqueue(&mut conn, &NewJob::new(Job::Noop, key.clone())).unwrap();
        wake.wake("noop");
        let deadline = Instant::now() + Duration::from_secs(10);
        while done(&mut conn, &key) < 1 {
            assert!(Instant::now() < deadline, "job {key} was not run");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let times: Vec<(NaiveDateTime, Option<NaiveDateTime>)> = jobs::table
        .filter(jobs::idempotency_key.like(format!("{prefix}%")))
        .select((jobs::created_at, jobs::done_at))
        .load(&mut conn)
        .unwrap();
    let mut latencies: Vec<f64> = times
        .into_iter()
        .filter_map(|(created, done)| {
            done.map(|d| (d - created).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!("{throughput:.0} {:.2} {:.2}", p(0.5), p(0.99));
}
