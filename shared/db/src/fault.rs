//! Telling the database's own faults from a query's: PostgreSQL gone (stopped, cut off,
//! restarted under the pool's connections) or a SQLite file held locked by another
//! process. Both are answered `503` with `Retry-After` by the request handlers; neither
//! is a bug of ours to log as one.
//!
//! A pooled PostgreSQL connection whose server went away looks healthy to diesel until
//! it is used (`is_broken` only sees an unfinished transaction), so once a connection
//! has been lost the process is *suspicious* for a while: the pool pings every
//! connection given back and the kit every connection taken, and drops the dead ones,
//! instead of handing each to one more request. Outside those windows nothing is pinged.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What went wrong with the database itself, as opposed to the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The server cannot be reached or dropped the connection; why, in one line.
    Unreachable(String),
    /// Another connection or process holds the lock this work waited for, past the
    /// busy timeout (SQLite's `database is locked`).
    Locked,
}

impl Fault {
    /// The fault behind a query's error, if it is one.
    pub fn of(error: &DieselError) -> Option<Self> {
        match error {
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => Some(Self::Unreachable(first_line(info.message()))),
            DieselError::DatabaseError(_, info) if is_lock_message(info.message()) => {
                Some(Self::Locked)
            }
            // A transaction whose connection went away cannot be rolled back either.
            DieselError::BrokenTransactionManager => Some(Self::Unreachable(
                "the connection broke during a transaction".into(),
            )),
            _ => None,
        }
    }

    /// The fault told by a pool that could not connect in time (r2d2 keeps only the
    /// connect error's text).
    pub fn of_pool_message(cause: &str) -> Self {
        match is_lock_message(cause) {
            true => Self::Locked,
            false => Self::Unreachable(first_line(cause)),
        }
    }

    /// The fault behind any error, looking through its causes (a service's own error
    /// enum or an `anyhow` context around a diesel error).
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(fault) = e.downcast_ref::<DieselError>().and_then(Self::of) {
                return Some(fault);
            }
            next = e.source();
        }
        None
    }
}

/// SQLite's messages for SQLITE_BUSY and SQLITE_LOCKED, which diesel passes on as
/// `Unknown` with the library's own text.
fn is_lock_message(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database table is locked")
}

/// The first line, trimmed: libpq's messages run over several (with hints), and a log
/// line or a `/ready` answer wants one. They name the host and port, never a password.
fn first_line(message: &str) -> String {
    let line = message.lines().map(str::trim).find(|l| !l.is_empty());
    line.unwrap_or("the connection failed").to_owned()
}

/// How long after a lost connection the pool checks the connections it hands out and
/// takes back: long enough to sweep out every connection made before an outage.
const SUSPICION: Duration = Duration::from_secs(30);

/// Milliseconds since [`epoch`] until which connections are checked; 0: never.
static SUSPECT_UNTIL: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A connection of this process was lost: check every connection for a while.
pub fn note_lost_connection() {
    let until = now_ms().saturating_add(SUSPICION.as_millis() as u64);
    SUSPECT_UNTIL.fetch_max(until, Ordering::Relaxed);
}

/// Whether connections should be pinged before they are trusted.
pub fn suspicious() -> bool {
    let until = SUSPECT_UNTIL.load(Ordering::Relaxed);
    until != 0 && now_ms() < until
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: DatabaseErrorKind, message: &'static str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn lost_connections_and_locks_are_faults_and_the_rest_are_not() {
        let lost = error(
            DatabaseErrorKind::ClosedConnection,
            "server closed the connection unexpectedly\n\tThis probably means…",
        );
        assert_eq!(
            Fault::of(&lost),
            Some(Fault::Unreachable(
                "server closed the connection unexpectedly".into()
            ))
        );
        let busy = error(DatabaseErrorKind::Unknown, "database is locked");
        assert_eq!(Fault::of(&busy), Some(Fault::Locked));
        let unique = error(DatabaseErrorKind::UniqueViolation, "duplicate key");
        assert_eq!(Fault::of(&unique), None);
        assert_eq!(Fault::of(&DieselError::NotFound), None);
    }

    #[test]
    fn a_fault_is_found_under_the_errors_that_wrap_it() {
        let wrapped = anyhow::Error::new(error(DatabaseErrorKind::Unknown, "database is locked"))
            .context("saving the profile")
            .context("database work");
        assert_eq!(Fault::find(wrapped.as_ref()), Some(Fault::Locked));
        let plain = anyhow::anyhow!("database is locked, says a string");
        assert_eq!(Fault::find(plain.as_ref()), None);
    }

    #[test]
    fn a_lost_connection_makes_the_process_suspicious() {
        note_lost_connection();
        assert!(suspicious());
    }
}
