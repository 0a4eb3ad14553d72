//! The job queue: a transactional outbox in the `jobs` table.
//!
//! A writer calls [`enqueue`] inside the transaction that causes the job, so the job
//! exists exactly when the change does; after commit it may wake the worker over
//! ZeroMQ (flotilla-bus), but workers also poll, so a lost wake-up only delays.
//! Workers [`claim`] due jobs with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`;
//! SQLite: one `BEGIN IMMEDIATE` transaction), so several workers on several servers
//! never run one job at the same time, and a job whose worker died is claimed again
//! when its lease expires. A failure is retried with exponential backoff and jitter;
//! after the last attempt, or on a permanent failure, the job is parked as dead with
//! its error. Completed jobs keep no payload and no recipient (a link with a token, an
//! address); dead ones keep theirs for diagnosis, but without the links' tokens. What a job is (its kind and typed payload) is defined in
//! flotilla-contracts, so producers and the worker share one shape.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use flotilla_db::schema::jobs;
use flotilla_db::{AnyConnection, diesel, portable_sql, write_transaction};

pub use flotilla_contracts::{DecodeError, Job, JobKind, holds_erased_link, without_secrets};

/// Attempts before a job is parked as dead, unless the job says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 8;

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// A job to add to the queue: what to do ([`Job`], typed in flotilla-contracts) and
/// how the queue treats it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job: Job,
    /// Unique: enqueueing the same key twice adds one job (scheduled tasks use the
    /// time slot; emails something naming the message).
    pub idempotency_key: String,
    pub run_after: NaiveDateTime,
    pub max_attempts: i32,
}

impl NewJob {
    /// Due now, with the default number of attempts.
    pub fn new(job: impl Into<Job>, idempotency_key: impl Into<String>) -> Self {
        Self {
            job: job.into(),
            idempotency_key: idempotency_key.into(),
            run_after: now(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// Adds a job, inside the caller's transaction. Returns false when a job with the same
/// idempotency key exists already (nothing is added, and the transaction stays usable).
pub fn enqueue(conn: &mut AnyConnection, job: &NewJob) -> QueryResult<bool> {
    let now = now();
    let sql = portable_sql(
        conn,
        "INSERT INTO jobs (kind, payload, recipient, idempotency_key, run_after, attempts, \
         max_attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    );
    let inserted = diesel::sql_query(sql)
        .bind::<Text, _>(job.job.kind().as_str())
        .bind::<Text, _>(job.job.payload())
        .bind::<Nullable<Text>, _>(job.job.recipient())
        .bind::<Text, _>(&job.idempotency_key)
        .bind::<Timestamp, _>(job.run_after)
        .bind::<Integer, _>(job.max_attempts)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .execute(conn)?;
    Ok(inserted == 1)
}

/// A claimed job, as stored: [`Claimed::decode`] reads what it asks for.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    payload: String,
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    /// Including this one.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
}

impl Claimed {
    /// The job, written by this release or the one before it; a shape this release
    /// cannot read is an error to park the job with (it will not read better later).
    pub fn decode(&self) -> Result<Job, DecodeError> {
        Job::decode(&self.kind, &self.payload)
    }

    /// Whether its payload holds a link whose token was erased ([`holds_erased_link`]).
    pub fn holds_erased_link(&self) -> bool {
        holds_erased_link(&self.payload)
    }
}

/// Claims up to `limit` due jobs for `worker` until `now + lease`.
pub fn claim(
    conn: &mut AnyConnection,
    worker: &str,
    lease: Duration,
    limit: i64,
) -> QueryResult<Vec<Claimed>> {
    let now = now();
    let until = now + TimeDelta::from_std(lease).unwrap_or(TimeDelta::minutes(5));
    let skip_locked = match conn {
        AnyConnection::Postgresql(_) => " FOR UPDATE SKIP LOCKED",
        AnyConnection::Sqlite(_) => "",
    };
    let sql = portable_sql(
        conn,
        &format!(
            "UPDATE jobs SET locked_by = ?, locked_until = ?, attempts = attempts + 1, \
             updated_at = ? WHERE id IN (SELECT id FROM jobs WHERE done_at IS NULL \
             AND dead_at IS NULL AND run_after <= ? AND (locked_until IS NULL OR \
             locked_until < ?) ORDER BY run_after, id LIMIT ?{skip_locked}) \
             RETURNING id, kind, payload, idempotency_key, attempts, max_attempts"
        ),
    );
    let query = diesel::sql_query(sql)
        .bind::<Text, _>(worker)
        .bind::<Timestamp, _>(until)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit);
    let mut jobs: Vec<Claimed> = write_transaction(conn, |conn| query.load(conn))?;
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Marks a job done (and forgets its payload). Only the worker holding it can.
pub fn complete(conn: &mut AnyConnection, job: &Claimed, worker: &str) -> QueryResult<bool> {
    Ok(complete_many(conn, &[job.id], worker)? == 1)
}

/// Marks several jobs done in one statement; returns how many were still this
/// worker's to complete.
pub fn complete_many(conn: &mut AnyConnection, ids: &[i64], worker: &str) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let now = now();
    diesel::update(
        jobs::table
            .filter(jobs::id.eq_any(ids))
            .filter(jobs::locked_by.eq(worker))
            .filter(jobs::done_at.is_null()),
    )
    .set((
        jobs::done_at.eq(now),
        jobs::updated_at.eq(now),
        jobs::locked_until.eq(None::<NaiveDateTime>),
        jobs::payload.eq("{}"),
        jobs::recipient.eq(None::<String>),
        jobs::last_error.eq(None::<String>),
    ))
    .execute(conn)
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying (a server down, a timeout).
    Temporary(String),
    /// Retrying cannot help (a malformed payload, a mailbox refused for good).
    Permanent(String),
}

/// What became of a failed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    RetryAt(NaiveDateTime),
    Dead,
}

/// Records a failure: retried after a backoff (the payload kept whole), or parked as
/// dead after the last attempt or on a permanent failure, its payload then kept
/// without its secrets ([`without_secrets`]: the links' tokens).
pub fn fail(
    conn: &mut AnyConnection,
    job: &Claimed,
    worker: &str,
    failure: &Failure,
) -> QueryResult<Outcome> {
    let now = now();
    let (error, permanent) = match failure {
        Failure::Temporary(e) => (e, false),
        Failure::Permanent(e) => (e, true),
    };
    let error: String = error.chars().take(2000).collect();
    let (retry_at, dead_at) = if permanent || job.attempts >= job.max_attempts {
        (None, Some(now))
    } else {
        let wait = TimeDelta::from_std(backoff(job.attempts)).unwrap_or(TimeDelta::hours(1));
        (Some(now + wait), None)
    };
    // A job that will not run again keeps no live link: retries still need it.
    let payload = dead_at.map(|_| without_secrets(&job.payload));
    let sql = portable_sql(
        conn,
        "UPDATE jobs SET run_after = COALESCE(?, run_after), dead_at = ?, updated_at = ?, \
         locked_until = NULL, last_error = ?, payload = COALESCE(?, payload) \
         WHERE id = ? AND locked_by = ?",
    );
    diesel::sql_query(sql)
        .bind::<Nullable<Timestamp>, _>(retry_at)
        .bind::<Nullable<Timestamp>, _>(dead_at)
        .bind::<Timestamp, _>(now)
        .bind::<Text, _>(&error)
        .bind::<Nullable<Text>, _>(payload)
        .bind::<BigInt, _>(job.id)
        .bind::<Text, _>(worker)
        .execute(conn)?;
    Ok(retry_at.map_or(Outcome::Dead, Outcome::RetryAt))
}

/// Gives a claimed job back untouched (a worker stopping before it started the job);
/// the attempt is not counted.
pub fn release(conn: &mut AnyConnection, job: &Claimed, worker: &str) -> QueryResult<bool> {
    let sql = portable_sql(
        conn,
        "UPDATE jobs SET locked_until = NULL, locked_by = NULL, attempts = attempts - 1, \
         updated_at = ? WHERE id = ? AND locked_by = ? AND done_at IS NULL AND dead_at IS NULL",
    );
    let updated = diesel::sql_query(sql)
        .bind::<Timestamp, _>(now())
        .bind::<BigInt, _>(job.id)
        .bind::<Text, _>(worker)
        .execute(conn)?;
    Ok(updated == 1)
}

/// The wait before retry `attempt + 1`: 2 s doubling per attempt, at most an hour,
/// with ±25 % jitter so that failures spread out.
pub fn backoff(attempt: i32) -> Duration {
    let exponent = attempt.clamp(1, 20) - 1;
    let base = (2.0_f64 * 2f64.powi(exponent)).min(3600.0);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64(base * jitter)
}

/// Deletes done jobs finished before `before`; returns how many.
pub fn purge_done(conn: &mut AnyConnection, before: NaiveDateTime) -> QueryResult<usize> {
    let sql = portable_sql(
        conn,
        "DELETE FROM jobs WHERE done_at IS NOT NULL AND done_at < ?",
    );
    diesel::sql_query(sql)
        .bind::<Timestamp, _>(before)
        .execute(conn)
}

/// Deletes jobs parked as dead before `before` (their payload may name a person: an
/// address, a link); returns how many.
pub fn purge_dead(conn: &mut AnyConnection, before: NaiveDateTime) -> QueryResult<usize> {
    let sql = portable_sql(
        conn,
        "DELETE FROM jobs WHERE dead_at IS NOT NULL AND dead_at < ?",
    );
    diesel::sql_query(sql)
        .bind::<Timestamp, _>(before)
        .execute(conn)
}

/// Erases the secrets of dead jobs parked before this release erased them at once
/// ([`without_secrets`]); returns how many were rewritten.
pub fn erase_dead_secrets(conn: &mut AnyConnection) -> QueryResult<usize> {
    write_transaction(conn, |conn| {
        let held: Vec<(i64, String)> = jobs::table
            .filter(jobs::dead_at.is_not_null())
            .filter(jobs::payload.like("%token=%"))
            .select((jobs::id, jobs::payload))
            .load(conn)?;
        let mut erased = 0;
        for (id, payload) in held {
            let clean = without_secrets(&payload);
            if clean != payload {
                erased += diesel::update(jobs::table.filter(jobs::id.eq(id)))
                    .set(jobs::payload.eq(clean))
                    .execute(conn)?;
            }
        }
        Ok(erased)
    })
}

/// Deletes the mails to `address` that failed for good (a closed account's: they name
/// it, and hold its links); returns how many.
pub fn purge_dead_mails_to(conn: &mut AnyConnection, address: &str) -> QueryResult<usize> {
    diesel::delete(
        jobs::table
            .filter(jobs::dead_at.is_not_null())
            .filter(jobs::recipient.eq(address)),
    )
    .execute(conn)
}

/// Counts by state, for metrics: (due or running, dead).
pub fn counts(conn: &mut AnyConnection) -> QueryResult<(i64, i64)> {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = BigInt)]
        pending: i64,
        #[diesel(sql_type = BigInt)]
        dead: i64,
    }
    let row: Counts = diesel::sql_query(
        "SELECT COALESCE(SUM(CASE WHEN done_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END), 0) \
         AS pending, COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS dead \
         FROM jobs",
    )
    .get_result(conn)?;
    Ok((row.pending, row.dead))
}

pub mod inspect;

#[cfg(test)]
mod tests;
