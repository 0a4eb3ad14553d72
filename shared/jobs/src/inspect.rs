//! What the admin console reads of the queue, and the one change it makes: counts by
//! state and kind ([`census`]), the jobs of a state ([`list`], never their payload: a
//! mail's holds its link), and a dead job queued again ([`requeue_dead`]); and what
//! `flotilla-worker status` reads for doctor: the [`backlog`].

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use flotilla_db::schema::jobs;
use flotilla_db::{AnyConnection, diesel, portable_sql};
use serde::Serialize;

use crate::JobKind;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its time or for a worker.
    Queued,
    /// Leased by a worker now.
    Running,
    Done,
    /// Parked after its last attempt or a permanent failure.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [Self::Queued, Self::Running, Self::Done, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The rows in this state. Each has one `?`, bound to now: the lease's end is
    /// compared with it; the states without a lease only check it is bound.
    fn condition(self) -> &'static str {
        match self {
            Self::Queued => {
                "done_at IS NULL AND dead_at IS NULL AND (locked_until IS NULL OR locked_until < ?)"
            }
            Self::Running => "done_at IS NULL AND dead_at IS NULL AND locked_until >= ?",
            Self::Done => "done_at IS NOT NULL AND dead_at IS NULL AND ? IS NOT NULL",
            Self::Dead => "dead_at IS NOT NULL AND ? IS NOT NULL",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many jobs of a kind are in a state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    /// As stored: a newer release's kind is counted too.
    pub kind: String,
    pub state: JobState,
    pub count: i64,
}

/// Every (kind, state) that has jobs, by kind then state.
pub fn census(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<Vec<Count>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        state: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let sql = portable_sql(
        conn,
        "SELECT kind, CASE WHEN dead_at IS NOT NULL THEN 'dead' \
         WHEN done_at IS NOT NULL THEN 'done' \
         WHEN locked_until IS NOT NULL AND locked_until >= ? THEN 'running' \
         ELSE 'queued' END AS state, COUNT(*) AS n FROM jobs GROUP BY 1, 2 ORDER BY 1, 2",
    );
    let rows: Vec<Row> = diesel::sql_query(sql)
        .bind::<Timestamp, _>(now)
        .load(conn)?;
    let mut counts: Vec<Count> = rows
        .into_iter()
        .filter_map(|row| {
            Some(Count {
                state: JobState::parse(&row.state)?,
                kind: row.kind,
                count: row.n,
            })
        })
        .collect();
    counts.sort_by(|a, b| (&a.kind, a.state).cmp(&(&b.kind, b.state)));
    Ok(counts)
}

/// The queue as a sysadmin watches it: what waits now, what waits for a later retry,
/// what runs, what died (and how recently), and how long the oldest due job has
/// waited (a worker that keeps up leaves none waiting long).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Backlog {
    /// Queued and due: a worker would take these now.
    #[diesel(sql_type = BigInt)]
    pub due: i64,
    /// Queued for later (a retry's backoff, a scheduled task).
    #[diesel(sql_type = BigInt)]
    pub scheduled: i64,
    #[diesel(sql_type = BigInt)]
    pub running: i64,
    #[diesel(sql_type = BigInt)]
    pub dead: i64,
    /// Dead since the `since` given to [`backlog`].
    #[diesel(sql_type = BigInt)]
    pub dead_since: i64,
    /// When the oldest due job became due.
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub oldest_due: Option<NaiveDateTime>,
}

/// The [`Backlog`] at `now`, counting as recent the jobs dead since `since`. One scan
/// of the table, read-only.
pub fn backlog(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    since: NaiveDateTime,
) -> QueryResult<Backlog> {
    let queued =
        "dead_at IS NULL AND done_at IS NULL AND (locked_until IS NULL OR locked_until < ?)";
    let sql = portable_sql(
        conn,
        &format!(
            "SELECT \
             COALESCE(SUM(CASE WHEN {queued} AND run_after <= ? THEN 1 ELSE 0 END), 0) AS due, \
             COALESCE(SUM(CASE WHEN {queued} AND run_after > ? THEN 1 ELSE 0 END), 0) AS scheduled, \
             COALESCE(SUM(CASE WHEN dead_at IS NULL AND done_at IS NULL \
                 AND locked_until >= ? THEN 1 ELSE 0 END), 0) AS running, \
             COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS dead, \
             COALESCE(SUM(CASE WHEN dead_at >= ? THEN 1 ELSE 0 END), 0) AS dead_since, \
             MIN(CASE WHEN {queued} AND run_after <= ? THEN run_after END) AS oldest_due \
             FROM jobs"
        ),
    );
    diesel::sql_query(sql)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(since)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .get_result(conn)
}

/// A job as the console shows it: what, when, how it failed; not its payload.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, Serialize)]
pub struct JobSummary {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    /// A mail's address (kept until the job is done).
    #[diesel(sql_type = Nullable<Text>)]
    pub recipient: Option<String>,
    #[diesel(sql_type = Timestamp)]
    pub created_at: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    pub updated_at: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    pub run_after: NaiveDateTime,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub done_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub dead_at: Option<NaiveDateTime>,
}

/// The newest `limit` jobs in `state`, of `kind` if given.
pub fn list(
    conn: &mut AnyConnection,
    state: JobState,
    kind: Option<JobKind>,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<JobSummary>> {
    let sql = portable_sql(
        conn,
        &format!(
            "SELECT id, kind, attempts, max_attempts, last_error, recipient, created_at, \
             updated_at, run_after, done_at, dead_at FROM jobs WHERE {} \
             AND (? IS NULL OR kind = ?) ORDER BY id DESC LIMIT ?",
            state.condition()
        ),
    );
    let kind = kind.map(JobKind::as_str);
    diesel::sql_query(sql)
        .bind::<Timestamp, _>(now)
        .bind::<Nullable<Text>, _>(kind)
        .bind::<Nullable<Text>, _>(kind)
        .bind::<BigInt, _>(limit)
        .load(conn)
}

/// What became of a request to queue a job again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    /// Queued again: due now, its attempts counted from zero.
    Queued { kind: String },
    /// No job has this id.
    Unknown,
    /// The job is not dead (queued, running or done).
    NotDead { state: JobState },
    /// A mail whose link's token was erased when it died: sent again, its link would
    /// not work, so it stays dead ([`crate::holds_erased_link`]).
    LinkErased { kind: String },
}

/// A job's kind, payload, and the columns that say its state: `dead_at`, `done_at`,
/// `locked_until`.
type Lifecycle = (
    String,
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// Queues dead job `id` again (attempts reset, `dead_at` cleared, due `now`), inside
/// the caller's transaction, where the change's audit entry goes too.
pub fn requeue_dead(conn: &mut AnyConnection, id: i64, now: NaiveDateTime) -> QueryResult<Requeue> {
    let found: Option<Lifecycle> = jobs::table
        .filter(jobs::id.eq(id))
        .select((
            jobs::kind,
            jobs::payload,
            jobs::dead_at,
            jobs::done_at,
            jobs::locked_until,
        ))
        .first(conn)
        .optional()?;
    let Some((kind, payload, dead_at, done_at, locked_until)) = found else {
        return Ok(Requeue::Unknown);
    };
    if dead_at.is_none() {
        let state = match (done_at, locked_until) {
            (Some(_), _) => JobState::Done,
            (None, Some(until)) if until >= now => JobState::Running,
            _ => JobState::Queued,
        };
        return Ok(Requeue::NotDead { state });
    }
    if crate::holds_erased_link(&payload) {
        return Ok(Requeue::LinkErased { kind });
    }
    let updated = diesel::update(
        jobs::table
            .filter(jobs::id.eq(id))
            .filter(jobs::dead_at.is_not_null()),
    )
    .set((
        jobs::dead_at.eq(None::<NaiveDateTime>),
        jobs::attempts.eq(0),
        jobs::run_after.eq(now),
        jobs::locked_until.eq(None::<NaiveDateTime>),
        jobs::locked_by.eq(None::<String>),
        jobs::updated_at.eq(now),
    ))
    .execute(conn)?;
    Ok(match updated {
        1 => Requeue::Queued { kind },
        _ => Requeue::Unknown,
    })
}
