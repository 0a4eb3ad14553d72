//! Slowing down password guesses: after `max_failures` failures within the window
//! (since the last success), each further attempt waits 2, 4, 8 … seconds after the
//! last failure, up to a ceiling. Never a permanent lock: failures older than the window
//! stop counting.
//!
//! Sign-ins keep one count per address typed, and one per known device (a valid
//! [`crate::device`] cookie entry for the account of that address), so that failures
//! from elsewhere never delay the device: the key is the caller's choice.
//!
//! The failures are auth events in the database (shared by every instance); the
//! attempts still being checked are counted in memory ([`InFlight`]), at most the free
//! failures at once per key, so that a burst of parallel guesses cannot all pass the
//! check before the first failure is written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_contracts::AuthEventKind;
use flotilla_db::AnyConnection;
use flotilla_db::diesel::dsl::max;
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::auth_events;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many failures are free and how the wait grows after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    pub max_failures: usize,
    pub window: TimeDelta,
    pub max_delay_secs: i64,
}

impl ThrottleSettings {
    /// `FLOTILLA_LOGIN_MAX_FAILURES` (5) failures within
    /// `FLOTILLA_LOGIN_FAILURE_WINDOW_SECS` (900) before attempts are delayed, by at most
    /// `FLOTILLA_LOGIN_MAX_DELAY_SECS` (900). Login's sign-ins and profile's password
    /// checks follow the same settings.
    pub fn from_env(env: &flotilla_kit::Env) -> Result<Self, flotilla_kit::ConfigError> {
        Ok(Self {
            max_failures: env.number("FLOTILLA_LOGIN_MAX_FAILURES", 5, 1..=1000)?,
            window: TimeDelta::seconds(env.number(
                "FLOTILLA_LOGIN_FAILURE_WINDOW_SECS",
                900,
                10..=86_400,
            )?),
            max_delay_secs: env.number("FLOTILLA_LOGIN_MAX_DELAY_SECS", 900, 1..=86_400)?,
        })
    }
}

/// What is throttled: the key the events are recorded under and their kinds.
#[derive(Debug, Clone, Copy)]
pub struct Attempts<'a> {
    /// `auth_events.login_key`: a hash of what the attempts are at (an address typed at
    /// sign-in, a known device's [`crate::device::DeviceEntry::key`], or an account
    /// whose password is checked by profile).
    pub key: &'a str,
    pub failure: AuthEventKind,
    /// A success ends the run of failures before it (`None`: only the window does).
    pub success: Option<AuthEventKind>,
}

/// The seconds to wait before the next attempt, if any: the failures recorded in the
/// database plus the `in_flight` other attempts at the same key still being checked.
pub fn wait(
    conn: &mut AnyConnection,
    settings: &ThrottleSettings,
    attempts: Attempts<'_>,
    in_flight: usize,
    now: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    let window_start = now - settings.window;
    // Aggregates, not `.first()`/`.limit()`: a bound LIMIT makes SQLite re-prepare.
    let last_success: Option<NaiveDateTime> = match attempts.success {
        Some(kind) => auth_events::table
            .filter(auth_events::login_key.eq(attempts.key))
            .filter(auth_events::kind.eq(kind.as_str()))
            .filter(auth_events::created_at.gt(window_start))
            .select(max(auth_events::created_at))
            .get_result(conn)?,
        None => None,
    };
    let since = last_success.map_or(window_start, |at| at.max(window_start));
    let failures = || {
        auth_events::table
            .filter(auth_events::login_key.eq(attempts.key))
            .filter(auth_events::kind.eq(attempts.failure.as_str()))
            .filter(auth_events::created_at.gt(since))
    };
    let count = usize::try_from(failures().count().get_result::<i64>(conn)?).unwrap_or(0);
    if count + in_flight < settings.max_failures {
        return Ok(None);
    }
    if count < settings.max_failures {
        // The free attempts are all being checked now: the next waits for their outcome.
        return Ok(Some(1));
    }
    let last: Option<NaiveDateTime> = failures()
        .select(max(auth_events::created_at))
        .get_result(conn)?;
    match last.and_then(|last| delay(settings, count, last, now)) {
        Some(wait) => Ok(Some(wait)),
        // Past the free attempts, one at a time.
        None if in_flight > 0 => Ok(Some(1)),
        None => Ok(None),
    }
}

/// The wait after `count` failures, the last at `last`: `None` once it has passed.
pub fn delay(
    settings: &ThrottleSettings,
    count: usize,
    last: NaiveDateTime,
    now: NaiveDateTime,
) -> Option<i64> {
    if count < settings.max_failures {
        return None;
    }
    let exponent = (count + 1 - settings.max_failures).min(30) as u32;
    let wait = 2i64.saturating_pow(exponent).min(settings.max_delay_secs);
    let left = (last + TimeDelta::seconds(wait) - now).num_milliseconds();
    (left > 0).then(|| (left + 999) / 1000)
}

/// The attempts being checked right now in this process, per key, at most `limit` at
/// once (the free failures): more wait their turn, so that the database has recorded
/// the outcome of earlier ones before they are checked. Parallel sign-ins of one
/// account with the right password are queued, not refused.
#[derive(Debug, Clone)]
pub struct InFlight {
    limit: usize,
    keys: Arc<Mutex<HashMap<String, Slot>>>,
}

#[derive(Debug)]
struct Slot {
    permits: Arc<Semaphore>,
    /// Attempts holding or waiting for a permit; the slot goes when none is left.
    users: usize,
}

/// Waited this long for a turn, an attempt is refused (429) rather than queued on.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(10);

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            keys: Arc::default(),
        }
    }

    /// Waits for a turn at `key` (at most [`TURN_TIMEOUT`]; `None` then) and counts the
    /// attempt until the returned guard is dropped; also returns how many others at
    /// the same key are being checked.
    pub async fn begin(&self, key: &str) -> Option<(InFlightGuard, usize)> {
        let permits = {
            let mut keys = self.keys.lock().ok()?;
            let slot = keys.entry(key.to_owned()).or_insert_with(|| Slot {
                permits: Arc::new(Semaphore::new(self.limit)),
                users: 0,
            });
            slot.users += 1;
            slot.permits.clone()
        };
        // Counted as a user from here: the guard (or the timeout below) undoes it.
        let mut guard = InFlightGuard {
            keys: self.keys.clone(),
            key: key.to_owned(),
            _permit: None,
        };
        let permit = tokio::time::timeout(TURN_TIMEOUT, permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        guard._permit = Some(permit);
        let others = self.limit - permits.available_permits() - 1;
        Some((guard, others))
    }
}

/// One attempt in flight; dropping it (on every path out of the handler) ends it.
#[derive(Debug)]
pub struct InFlightGuard {
    keys: Arc<Mutex<HashMap<String, Slot>>>,
    key: String,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut keys) = self.keys.lock()
            && let Some(slot) = keys.get_mut(&self.key)
        {
            slot.users -= 1;
            if slot.users == 0 {
                keys.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            max_failures: 5,
            window: TimeDelta::seconds(900),
            max_delay_secs: 900,
        }
    }

    #[test]
    fn delays_start_after_the_allowed_failures_and_grow_to_a_ceiling() {
        let settings = settings();
        let now = chrono::Utc::now().naive_utc();
        let ago = |secs: i64| now - TimeDelta::seconds(secs);
        assert_eq!(delay(&settings, 4, ago(0), now), None);
        assert_eq!(delay(&settings, 5, ago(0), now), Some(2));
        assert_eq!(delay(&settings, 6, ago(0), now), Some(4));
        assert_eq!(delay(&settings, 7, ago(1), now), Some(7));
        assert_eq!(delay(&settings, 30, ago(0), now), Some(900));
        // Waited long enough: the next attempt is let through.
        assert_eq!(delay(&settings, 6, ago(5), now), None);
    }

    #[tokio::test]
    async fn attempts_in_flight_take_turns_and_are_counted_until_their_guards_drop() {
        let in_flight = InFlight::new(2);
        let (a, before_a) = in_flight.begin("k").await.unwrap();
        let (b, before_b) = in_flight.begin("k").await.unwrap();
        let (_other, before_other) = in_flight.begin("another key").await.unwrap();
        assert_eq!((before_a, before_b, before_other), (0, 1, 0));
        // A third at "k" waits for a turn.
        let third = in_flight.begin("k");
        tokio::pin!(third);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut third)
                .await
                .is_err()
        );
        drop(a);
        let (c, before_c) = third.await.unwrap();
        assert_eq!(before_c, 1, "b is still in flight");
        drop(b);
        drop(c);
        assert!(
            !in_flight.keys.lock().unwrap().contains_key("k"),
            "forgotten"
        );
        let (_d, before_d) = in_flight.begin("k").await.unwrap();
        assert_eq!(before_d, 0);
    }

    /// The clock is tokio's, paused: it jumps to the timeout instead of waiting 10 s.
    /// (Login records such a refusal as `login.throttled`, through the same function as
    /// a refusal for too many failures, which the end-to-end tests check.)
    #[tokio::test(start_paused = true)]
    async fn an_attempt_without_a_turn_in_time_is_refused_and_not_counted() {
        let in_flight = InFlight::new(1);
        let (held, _) = in_flight.begin("k").await.unwrap();
        let asked = tokio::time::Instant::now();
        assert!(in_flight.begin("k").await.is_none(), "no turn");
        assert_eq!(asked.elapsed(), TURN_TIMEOUT);
        assert_eq!(
            in_flight.keys.lock().unwrap()["k"].users,
            1,
            "only the one held"
        );
        drop(held);
        assert!(
            !in_flight.keys.lock().unwrap().contains_key("k"),
            "forgotten"
        );
    }
}
