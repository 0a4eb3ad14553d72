//! Admission control: what a process takes on when more arrives than it can answer.
//!
//! Where requests wait decides where they can be refused. A handler that reads SQLite
//! on its own thread (`work::read`) is done within one poll, so the requests in flight
//! stay near the number of workers however hard the process is pushed: the queue is in
//! front of the middleware, in the connections nginx opened and the worker has not
//! read yet, and a cap on requests in flight never sees it. Nothing in the process
//! knows when such a request arrived; nginx does, and stamps it
//! (`X-Request-Start: t=<seconds.milliseconds>`, proxy/flotilla/proxy-headers.conf).
//! The middleware reads the stamp of a trusted proxy and refuses, with `503
//! overloaded` and `Retry-After`, a request that already waited too long, before any
//! of its work is done: a refusal costs a parse and a small answer, so refusing the
//! late ones drains the queue.
//!
//! How long is too long comes from Facebook's "controlled delay" ("Fail at Scale",
//! ACM Queue 2015, after CoDel): a queue that was empty moments ago is a burst, and
//! waits; a queue that has not been empty for a whole `interval` is a standing queue,
//! an overload, and then only requests that waited at most `target` are taken, so the
//! admitted ones keep nearly their usual latency and the rest are refused at once.
//! [`AdaptiveTimeout`] is that rule; the hash pool of `flotilla-auth` uses it too, for
//! the sign-ins that wait for a hashing thread.
//!
//! Clocks: the stamp is nginx's clock, the wait is measured on ours. On one host they
//! are the same clock. Across hosts, an offset is learned: the smallest apparent wait
//! seen lately is taken as the offset plus the network's own delay, and subtracted
//! ([`QueueDelay`]); a clock that jumps is caught when nothing at all has been
//! admitted for an interval (a real queue drains once its late requests are refused).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// "Controlled delay": while the queue stands, only arrivals that waited (or would
/// wait) at most `target` are taken; otherwise all are. The queue stands when at least
/// [`STANDING_AFTER`] arrivals in a row met a queue and the first of them was `interval`
/// ago: arrivals that keep finding others ahead of them, for longer than a burst
/// takes to clear. A few late arrivals in quiet times (a machine busy elsewhere) are
/// not a standing queue.
#[derive(Debug)]
pub struct AdaptiveTimeout {
    target: Duration,
    interval: Duration,
    epoch: Instant,
    /// When the arrivals that met a queue began, in microseconds since `epoch`.
    streak_start: AtomicU64,
    /// How many arrivals in a row met a queue.
    streak: AtomicU64,
}

/// Arrivals in a row that met a queue before it may count as standing.
pub const STANDING_AFTER: u64 = 8;

impl AdaptiveTimeout {
    pub fn new(target: Duration, interval: Duration) -> Self {
        Self {
            target,
            interval,
            epoch: Instant::now(),
            streak_start: AtomicU64::new(0),
            streak: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn interval_us(&self) -> u64 {
        u64::try_from(self.interval.as_micros()).unwrap_or(u64::MAX)
    }

    /// An arrival: whether it met no queue (no one ahead of it).
    pub fn observe(&self, empty: bool) {
        if empty {
            self.streak.store(0, Ordering::Relaxed);
        } else if self.streak.fetch_add(1, Ordering::Relaxed) == 0 {
            self.streak_start.store(self.now_us(), Ordering::Relaxed);
        }
    }

    /// Whether the queue has stood for a whole interval.
    pub fn standing(&self) -> bool {
        self.streak.load(Ordering::Relaxed) >= STANDING_AFTER
            && self
                .now_us()
                .saturating_sub(self.streak_start.load(Ordering::Relaxed))
                > self.interval_us()
    }

    /// Whether an arrival that waited (or would wait) `waited` is taken.
    pub fn admits(&self, waited: Duration) -> bool {
        waited <= self.target || !self.standing()
    }

    pub fn target(&self) -> Duration {
        self.target
    }
}

/// What the middleware decided from a request's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Waited this long (the offset taken away): refused.
    TooLate(Duration),
}

/// A wait shorter than this counts as "no queue" (nginx's stamp has milliseconds).
const EMPTY_BELOW: Duration = Duration::from_millis(1);
/// How long the smallest apparent wait is remembered: between one and two of these.
const OFFSET_WINDOW_US: i64 = 60_000_000;

/// The queue in front of the middleware, seen through the proxy's stamps.
#[derive(Debug)]
pub struct QueueDelay {
    timeout: AdaptiveTimeout,
    /// Learnt from the first stamp on.
    offset: Mutex<Option<Offset>>,
    /// When a request was last admitted, microseconds since the timeout's epoch.
    last_admitted: AtomicU64,
}

/// The smallest apparent wait (our clock minus the stamp) of this window and the last.
#[derive(Debug)]
struct Offset {
    window_start: i64,
    current: i64,
    previous: i64,
}

impl Offset {
    fn observe(&mut self, raw: i64, now: i64) -> i64 {
        if now - self.window_start >= OFFSET_WINDOW_US {
            self.previous = self.current;
            self.current = raw;
            self.window_start = now;
        } else {
            self.current = self.current.min(raw);
        }
        self.previous.min(self.current)
    }

    /// Nothing learnt yet, or forgotten: from now on, `raw` is the offset.
    fn start(raw: i64, now: i64) -> Self {
        Offset {
            window_start: now,
            current: raw,
            previous: raw,
        }
    }
}

impl QueueDelay {
    /// Requests that waited over `target` are refused while the queue stands (has
    /// not been empty for ten times `target`).
    pub fn new(target: Duration) -> Self {
        Self {
            timeout: AdaptiveTimeout::new(target, target * 10),
            offset: Mutex::new(None),
            last_admitted: AtomicU64::new(0),
        }
    }

    /// Judges a request stamped `stamp_us` (microseconds since 1970, the proxy's
    /// clock) that reached the middleware at `now_us` (ours).
    pub fn judge(&self, stamp_us: i64, now_us: i64) -> Verdict {
        let raw = now_us - stamp_us;
        let offset = match self.offset.lock() {
            Ok(mut offset) => {
                let nothing_admitted = self
                    .timeout
                    .now_us()
                    .saturating_sub(self.last_admitted.load(Ordering::Relaxed))
                    > self.timeout.interval_us();
                // Refused everything for a whole interval: a real queue would have
                // drained by now; the clocks moved apart instead.
                let forget = self.timeout.standing() && nothing_admitted;
                match offset.as_mut() {
                    Some(learnt) if !forget => learnt.observe(raw, now_us),
                    _ => {
                        *offset = Some(Offset::start(raw, now_us));
                        raw
                    }
                }
            }
            Err(_) => 0,
        };
        let waited = Duration::from_micros(u64::try_from(raw - offset).unwrap_or(0));
        self.timeout.observe(waited < EMPTY_BELOW);
        if self.timeout.admits(waited) {
            self.last_admitted
                .store(self.timeout.now_us(), Ordering::Relaxed);
            Verdict::Admit
        } else {
            Verdict::TooLate(waited)
        }
    }

    pub fn target(&self) -> Duration {
        self.timeout.target()
    }
}

/// `X-Request-Start` as nginx sends it (`t=1733200000.123`, seconds since 1970 with
/// milliseconds; the `t=` may be missing), in microseconds.
pub fn parse_request_start(value: &str) -> Option<i64> {
    let value = value.trim();
    let value = value.strip_prefix("t=").unwrap_or(value);
    let (seconds, fraction) = value.split_once('.').unwrap_or((value, ""));
    if seconds.is_empty()
        || fraction.len() > 6
        || !seconds
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seconds: i64 = seconds.parse().ok()?;
    let micros: i64 = format!("{fraction:0<6}").parse().ok()?;
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

/// Now on our clock, in microseconds since 1970.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1000;

    #[test]
    fn stamps_are_read_as_nginx_writes_them() {
        assert_eq!(
            parse_request_start("t=1733200000.123"),
            Some(1_733_200_000_123_000)
        );
        assert_eq!(
            parse_request_start("1733200000.5"),
            Some(1_733_200_000_500_000)
        );
        assert_eq!(
            parse_request_start("1733200000"),
            Some(1_733_200_000_000_000)
        );
        for bad in ["", "t=", "t=abc", "t=1.2.3", "t=-5.000", "t=1.1234567"] {
            assert_eq!(parse_request_start(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_burst_waits_a_standing_queue_takes_only_the_target() {
        let delay = QueueDelay::new(Duration::from_millis(10));
        let now = 1_000_000 * MS;
        // No queue: learnt as such.
        assert_eq!(delay.judge(now, now), Verdict::Admit);
        // A burst, however late, while the queue was just empty.
        assert_eq!(delay.judge(now - 50 * MS, now), Verdict::Admit);
        assert_eq!(delay.judge(now - 500 * MS, now), Verdict::Admit);
        // Requests keep coming that waited 5 ms: the queue is never empty, and once
        // it has not been for longer than the interval, 10 ms at most are taken.
        let since = Instant::now();
        while since.elapsed() <= Duration::from_millis(110) {
            assert_eq!(delay.judge(now - 5 * MS, now), Verdict::Admit);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(delay.timeout.standing());
        assert_eq!(delay.judge(now - 8 * MS, now), Verdict::Admit);
        assert_eq!(
            delay.judge(now - 50 * MS, now),
            Verdict::TooLate(Duration::from_millis(50))
        );
        // One request that met no queue ends the standing queue.
        assert_eq!(delay.judge(now, now), Verdict::Admit);
        assert!(!delay.timeout.standing());
        assert_eq!(delay.judge(now - 50 * MS, now), Verdict::Admit);
    }

    #[test]
    fn a_few_late_requests_in_quiet_times_are_no_standing_queue() {
        let timeout = AdaptiveTimeout::new(Duration::from_millis(10), Duration::from_millis(20));
        for _ in 0..STANDING_AFTER - 1 {
            timeout.observe(false);
        }
        std::thread::sleep(Duration::from_millis(25));
        assert!(!timeout.standing());
        assert!(timeout.admits(Duration::from_secs(1)));
        timeout.observe(false);
        assert!(timeout.standing());
        assert!(!timeout.admits(Duration::from_millis(11)));
        assert!(timeout.admits(Duration::from_millis(10)));
    }

    #[test]
    fn a_proxy_whose_clock_is_behind_is_allowed_for() {
        let delay = QueueDelay::new(Duration::from_millis(10));
        let now = 1_000_000 * MS;
        // nginx's clock is 300 ms behind ours: every stamp looks 300 ms old.
        let skew = 300 * MS;
        for _ in 0..3 {
            assert_eq!(delay.judge(now - skew, now), Verdict::Admit);
        }
        // Learnt: a request that waited 20 ms more than that is a burst, not a flood.
        assert_eq!(delay.judge(now - skew - 20 * MS, now), Verdict::Admit);
        assert!(!delay.timeout.standing());
    }

    #[test]
    fn a_clock_that_jumps_does_not_refuse_everything_for_long() {
        let delay = QueueDelay::new(Duration::from_millis(10));
        let now = 1_000_000 * MS;
        assert_eq!(delay.judge(now, now), Verdict::Admit);
        // nginx's clock steps back by 500 ms: every request looks late, the queue
        // seems to stand, and they are refused…
        let jump = 500 * MS;
        let since = Instant::now();
        let mut refused = 0;
        while since.elapsed() <= Duration::from_millis(250) {
            let later = now + i64::try_from(since.elapsed().as_micros()).unwrap();
            if let Verdict::TooLate(_) = delay.judge(later - jump, later) {
                refused += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(refused > 0);
        // …but not for long: once nothing has been admitted for a whole interval, the
        // offset is learnt again.
        let later = now + 300 * MS;
        assert_eq!(delay.judge(later - jump, later), Verdict::Admit);
        assert_eq!(delay.judge(later - jump - 2 * MS, later), Verdict::Admit);
    }
}
