//! The database as the requests see it: a connection taken for one piece of work, and
//! what is answered when the database itself fails.
//!
//! - A database that cannot be reached (PostgreSQL stopped, say) is answered `503
//!   database_unavailable` with `Retry-After: 1`, at once: after the first failure the
//!   service stops waiting on the pool (an *outage*), and lets one request through
//!   every [`TRIAL_EVERY`] to see whether the database is back. The first that gets
//!   through ends the outage, without a restart.
//! - A SQLite file held locked by another process is answered `503 database_locked`
//!   once the busy timeout has passed (`FLOTILLA_DB_BUSY_TIMEOUT_MS`, 800 ms by
//!   default, so the answer comes within a second).
//! - `/ready` says which of the two it is, and since when.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotilla_db::{Fault, Pool, PooledConnection};

use crate::Error;

/// While the database is unreachable, how often a request is let through to try it.
pub const TRIAL_EVERY: Duration = Duration::from_millis(250);

/// How long one wait for a pooled connection lasts before the outage is looked at
/// again, so that requests queued for a connection when the database went away are
/// answered at once too.
const WAIT_SLICE: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct Outage {
    since: Instant,
    reason: String,
    last_trial: Instant,
}

/// The database's health as this process has seen it.
#[derive(Debug, Default)]
pub struct Health {
    /// Whether `outage` holds one: read without the lock on every request, which
    /// takes the lock only during an outage.
    down: AtomicBool,
    outage: Mutex<Option<Outage>>,
}

impl Health {
    /// `Err` (503) while the database is known to be unreachable, unless it is this
    /// request's turn to try it.
    pub fn admit(&self) -> Result<(), Error> {
        if !self.down.load(Ordering::Acquire) {
            return Ok(());
        }
        let Ok(mut outage) = self.outage.lock() else {
            return Ok(());
        };
        match outage.as_mut() {
            None => Ok(()),
            Some(outage) if outage.last_trial.elapsed() >= TRIAL_EVERY => {
                outage.last_trial = Instant::now();
                Ok(())
            }
            Some(_) => Err(unreachable()),
        }
    }

    /// The database is unreachable: answer at once from now on.
    pub fn lost(&self, reason: &str) {
        flotilla_db::note_lost_connection();
        if let Ok(mut outage) = self.outage.lock()
            && outage.is_none()
        {
            log::error!("the database is unreachable: {reason}; answering 503 until it is back");
            *outage = Some(Outage {
                since: Instant::now(),
                reason: reason.to_owned(),
                last_trial: Instant::now(),
            });
            self.down.store(true, Ordering::Release);
        }
    }

    /// A piece of work reached the database: any outage is over.
    pub fn reached(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut outage) = self.outage.lock()
            && let Some(ended) = outage.take()
        {
            self.down.store(false, Ordering::Release);
            log::warn!(
                "the database is reachable again, after {:.1} s",
                ended.since.elapsed().as_secs_f64()
            );
        }
    }

    /// The ongoing outage: why, and for how long.
    pub fn outage(&self) -> Option<(String, Duration)> {
        let outage = self.outage.lock().ok()?;
        outage
            .as_ref()
            .map(|o| (o.reason.clone(), o.since.elapsed()))
    }

    /// A connection from the pool, waiting at most the pool's timeout; `Err` at once
    /// when an outage begins meanwhile. While the process is suspicious of its
    /// connections (one was lost lately), each is pinged first, and a dead one dropped.
    pub fn checkout(&self, pool: &Pool) -> Result<PooledConnection, Error> {
        let deadline = Instant::now() + pool.connection_timeout();
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match pool.get_timeout(wait.min(WAIT_SLICE)) {
                Ok(mut conn) => {
                    if !flotilla_db::suspicious() {
                        return Ok(conn);
                    }
                    match flotilla_db::diesel::r2d2::R2D2Connection::ping(&mut *conn) {
                        Ok(()) => return Ok(conn),
                        // Given back, the pool pings it again and drops it.
                        Err(e) => return Err(self.judge(Error::from(e))),
                    }
                }
                // The pool could not connect meanwhile: the database is down (or,
                // SQLite, locked), whatever the time left.
                Err(e) if let Some(cause) = connect_failure(&e) => {
                    return Err(self.answer(&Fault::of_pool_message(&cause)));
                }
                Err(e) if Instant::now() >= deadline || self.outage().is_some() => {
                    return Err(Error::from(e));
                }
                Err(_) => continue,
            }
        }
    }

    /// Work's outcome, with a database fault in it answered as a 503 (and an
    /// unreachable database starting an outage), and a success ending one.
    pub fn judge_result<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        match result {
            Ok(value) => {
                self.reached();
                Ok(value)
            }
            Err(e) => Err(self.judge(e)),
        }
    }

    /// An error, answered as a 503 when a database fault is behind it.
    pub fn judge(&self, error: Error) -> Error {
        let fault = match &error {
            Error::Internal(cause) => Fault::find(cause.as_ref()),
            _ => None,
        };
        match fault {
            Some(fault) => self.answer(&fault),
            None => {
                if !matches!(error, Error::Unavailable { .. }) {
                    // Any other answer came from a database that answered.
                    self.reached();
                }
                error
            }
        }
    }

    fn answer(&self, fault: &Fault) -> Error {
        match fault {
            Fault::Unreachable(reason) => {
                self.lost(reason);
                unreachable()
            }
            Fault::Locked => locked(),
        }
    }
}

/// Why the pool's connects failed during a wait that timed out, if they did: r2d2
/// keeps the last connect error (and clears it when it says it), and a wait that
/// timed out only because every connection was busy has none.
fn connect_failure(e: &flotilla_db::PoolError) -> Option<String> {
    let message = e.to_string();
    let (_, cause) = message.split_once(": ")?;
    Some(cause.to_owned())
}

fn unreachable() -> Error {
    Error::Unavailable {
        code: "database_unavailable",
        message: "The database cannot be reached right now; please try again shortly.".into(),
        retry_after_secs: 1,
    }
}

/// 503 for work that waited past the busy timeout for another process's lock.
pub fn locked() -> Error {
    Error::Unavailable {
        code: "database_locked",
        message: "The database is held locked by another process; please try again shortly.".into(),
        retry_after_secs: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_answers_at_once_and_lets_a_trial_through() {
        let health = Health::default();
        assert!(health.admit().is_ok());
        health.lost("connection refused");
        let refused = health.admit().unwrap_err();
        assert_eq!(refused.code(), "database_unavailable");
        assert_eq!(refused.retry_after_secs(), Some(1));
        let (reason, _) = health.outage().unwrap();
        assert_eq!(reason, "connection refused");
        // The trial's turn comes after TRIAL_EVERY: make it due.
        health.outage.lock().unwrap().as_mut().unwrap().last_trial -= TRIAL_EVERY;
        assert!(health.admit().is_ok(), "one request tries the database");
        assert!(health.admit().is_err(), "the others still do not");
        health.reached();
        assert!(health.admit().is_ok());
        assert!(health.outage().is_none());
    }

    #[test]
    fn faults_under_internal_errors_become_503s() {
        use flotilla_db::diesel::result::{DatabaseErrorKind, Error as DieselError};
        let health = Health::default();
        let locked = Error::Internal(
            anyhow::Error::new(DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new("database is locked".to_owned()),
            ))
            .context("saving"),
        );
        let judged = health.judge(locked);
        assert_eq!(judged.code(), "database_locked");
        assert!(health.outage().is_none(), "a lock is no outage");
        let other = health.judge(Error::Internal(anyhow::anyhow!("disk full")));
        assert_eq!(other.code(), "internal_error");
    }
}
