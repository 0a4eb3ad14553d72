//! Prometheus text exposition, by hand: a counter and a latency histogram per
//! (method, route pattern, status), plus gauges the service adds when rendering. Route
//! patterns (not raw paths) keep the label set bounded whatever clients send.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

type Key = (&'static str, String, u16);
/// (name, kind label) → (help, count).
type Counters = BTreeMap<(&'static str, &'static str), (&'static str, u64)>;

/// Why a request was refused with `503 overloaded` before its handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// It waited longer than the queue allows ([`crate::admission`]).
    Queue,
    /// `FLOTILLA_MAX_IN_FLIGHT` requests were in flight.
    InFlight,
}

impl Rejection {
    const ALL: [Rejection; 2] = [Rejection::Queue, Rejection::InFlight];

    fn label(self) -> &'static str {
        match self {
            Rejection::Queue => "queue",
            Rejection::InFlight => "in_flight",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    series: Mutex<HashMap<Key, Series>>,
    /// By [`Rejection`], in the order of `Rejection::ALL`.
    rejected: [AtomicU64; 2],
    /// A service's own counters.
    counters: Mutex<Counters>,
}

/// Methods become a fixed set of labels; anything exotic is "OTHER".
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    pub fn observe(&self, method: &'static str, route: String, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let entry = series.entry((method, route, status)).or_default();
        entry.count += 1;
        entry.sum_seconds += seconds;
        if let Some(i) = BUCKETS.iter().position(|le| seconds <= *le) {
            entry.buckets[i] += 1;
        }
    }

    /// A request turned away before its handler ran.
    pub fn reject(&self, why: Rejection) {
        if let Some(i) = Rejection::ALL.iter().position(|r| *r == why) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds one to a service counter `name{kind="<kind>"}`.
    pub fn count(&self, name: &'static str, help: &'static str, kind: &'static str) {
        if let Ok(mut counters) = self.counters.lock() {
            counters.entry((name, kind)).or_insert((help, 0)).1 += 1;
        }
    }

    pub fn render(&self, service: &str, out: &mut String) {
        let service = escape_label(service);
        let series = self.snapshot();
        render_counts(&service, &series, out);
        render_durations(&service, &series, out);
        out.push_str("# HELP flotilla_http_requests_rejected_total Requests refused with 503 overloaded before their handler ran, by reason: waited too long in the queue, or too many in flight.\n");
        out.push_str("# TYPE flotilla_http_requests_rejected_total counter\n");
        for (why, n) in Rejection::ALL.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "flotilla_http_requests_rejected_total{{service=\"{service}\",reason=\"{}\"}} {}",
                why.label(),
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP flotilla_bus_messages_rejected_total Bus messages dropped because their seal (the shared secret's HMAC and time) failed, by kind and reason.\n");
        out.push_str("# TYPE flotilla_bus_messages_rejected_total counter\n");
        for (kind, reason, n) in flotilla_bus::rejections() {
            let _ = writeln!(
                out,
                "flotilla_bus_messages_rejected_total{{service=\"{service}\",kind=\"{}\",reason=\"{}\"}} {n}",
                kind.label(),
                reason.label()
            );
        }
        if let Ok(counters) = self.counters.lock() {
            let mut last = "";
            for ((name, kind), (help, n)) in counters.iter() {
                if *name != last {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                    last = name;
                }
                let _ = writeln!(out, "{name}{{service=\"{service}\",kind=\"{kind}\"}} {n}");
            }
        }
    }

    /// The request series, copied out of the lock and sorted.
    fn snapshot(&self) -> Vec<(Key, Series)> {
        let mut series: Vec<(Key, Series)> = match self.series.lock() {
            Ok(map) => map
                .iter()
                .map(|(k, s)| {
                    (
                        k.clone(),
                        Series {
                            count: s.count,
                            sum_seconds: s.sum_seconds,
                            buckets: s.buckets,
                        },
                    )
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        series.sort_by(|a, b| a.0.cmp(&b.0));
        series
    }
}

/// `flotilla_http_requests_total`, one line per method, route and status.
fn render_counts(service: &str, series: &[(Key, Series)], out: &mut String) {
    out.push_str(
        "# HELP flotilla_http_requests_total HTTP requests answered, by route and status.\n",
    );
    out.push_str("# TYPE flotilla_http_requests_total counter\n");
    for ((method, route, status), s) in series {
        let _ = writeln!(
            out,
            "flotilla_http_requests_total{{service=\"{service}\",method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
            escape_label(route),
            s.count
        );
    }
}

/// `flotilla_http_request_duration_seconds`, a histogram per method, route and status.
fn render_durations(service: &str, series: &[(Key, Series)], out: &mut String) {
    out.push_str(
        "# HELP flotilla_http_request_duration_seconds Time to answer, by route and status.\n",
    );
    out.push_str("# TYPE flotilla_http_request_duration_seconds histogram\n");
    for ((method, route, status), s) in series {
        let labels = format!(
            "service=\"{service}\",method=\"{method}\",route=\"{}\",status=\"{status}\"",
            escape_label(route)
        );
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(s.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "flotilla_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "flotilla_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(
            out,
            "flotilla_http_request_duration_seconds_sum{{{labels}}} {}",
            s.sum_seconds
        );
        let _ = writeln!(
            out,
            "flotilla_http_request_duration_seconds_count{{{labels}}} {}",
            s.count
        );
    }
}

/// Appends one gauge with its HELP and TYPE lines.
pub fn gauge(
    out: &mut String,
    name: &str,
    help: &str,
    service: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    let _ = writeln!(
        out,
        "{name}{{service=\"{}\"}} {value}",
        escape_label(service)
    );
}

/// The resident set size of this process, from /proc (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.observe(
            "GET",
            "/signup/health".into(),
            200,
            Duration::from_micros(300),
        );
        metrics.observe(
            "GET",
            "/signup/health".into(),
            200,
            Duration::from_millis(20),
        );
        metrics.observe("POST", "/signup".into(), 422, Duration::from_millis(2));
        metrics.reject(Rejection::InFlight);
        metrics.count("flotilla_worker_passes_total", "Passes.", "poll");
        metrics.count("flotilla_worker_passes_total", "Passes.", "poll");
        metrics.count("flotilla_worker_passes_total", "Passes.", "wake");
        let mut out = String::new();
        metrics.render("signup", &mut out);
        assert!(out.contains(
            "flotilla_http_requests_total{service=\"signup\",method=\"GET\",route=\"/signup/health\",status=\"200\"} 2"
        ));
        assert!(out.contains("route=\"/signup/health\",status=\"200\",le=\"0.0005\"} 1"));
        assert!(out.contains("route=\"/signup/health\",status=\"200\",le=\"0.025\"} 2"));
        assert!(out.contains("route=\"/signup/health\",status=\"200\",le=\"+Inf\"} 2"));
        assert!(out.contains("status=\"422\"} 1"));
        assert!(out.contains(
            "flotilla_http_requests_rejected_total{service=\"signup\",reason=\"in_flight\"} 1"
        ));
        assert!(out.contains(
            "flotilla_http_requests_rejected_total{service=\"signup\",reason=\"queue\"} 0"
        ));
        assert!(out.contains("flotilla_worker_passes_total{service=\"signup\",kind=\"poll\"} 2"));
        assert!(out.contains("flotilla_worker_passes_total{service=\"signup\",kind=\"wake\"} 1"));
        assert_eq!(
            out.matches("# TYPE flotilla_worker_passes_total counter")
                .count(),
            1
        );
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
