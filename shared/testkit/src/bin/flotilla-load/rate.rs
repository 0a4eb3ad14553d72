//! Requests at a constant rate (an open loop, as wrk2 does): request `i` of a phase is
//! due at `start + i / rate` whatever became of the others, and its latency counts
//! from that moment, not from when it could be sent, so a server that stalls is
//! charged for the requests it kept waiting. Also a closed loop (`closed`): a few
//! clients each sending its next request when its last is answered, to find what the
//! fleet completes when kept busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Method, Uri};

use tokio::time::Instant;

use crate::http::{Header, Http};
use crate::stats::Latencies;

/// What every request of a run asks for.
pub struct Target {
    pub method: Method,
    pub uri: Uri,
    pub headers: Vec<Header>,
    /// A JSON body; `{k}` in it becomes the request's number modulo `vary` (many
    /// accounts signing in, say).
    pub json: Option<String>,
    pub vary: usize,
}

impl Target {
    async fn send(&self, http: &Http, n: usize) -> anyhow::Result<crate::http::Answer> {
        let body = self.json.as_ref().map(|json| {
            if self.vary > 0 {
                Bytes::from(json.replace("{k}", &(n % self.vary).to_string()))
            } else {
                Bytes::from(json.clone())
            }
        });
        http.send_json(self.method.clone(), self.uri.clone(), &self.headers, body)
            .await
    }
}

/// A constant rate for a while.
#[derive(Clone, Copy)]
pub struct Phase {
    pub rate: f64,
    pub seconds: f64,
}

/// How a request ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// 503: refused by admission control (or a pool that is full).
    Refused,
    /// Any other status.
    Other(u16),
    /// No answer: the connection failed or the deadline passed.
    Failed,
}

struct Sample {
    phase: usize,
    /// Due this long after its phase began.
    due: Duration,
    /// Sent this long after it was due (the generator's own lag).
    lag: Duration,
    latency: Duration,
    outcome: Outcome,
}

/// Runs the phases one after the other, then prints one line per phase.
pub async fn open_loop(
    http: Http,
    target: Target,
    phases: &[Phase],
    max_outstanding: usize,
    timeline: bool,
) {
    let target = Arc::new(target);
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut unsent = vec![0usize; phases.len()];
    let mut peak = vec![0usize; phases.len()];
    let mut phase_start = Instant::now() + Duration::from_millis(20);
    let mut sent = 0usize;
    for (p, phase) in phases.iter().enumerate() {
        let count = (phase.rate * phase.seconds).round() as u64;
        for i in 0..count {
            let offset = Duration::from_secs_f64(i as f64 / phase.rate);
            let due = phase_start + offset;
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            let now_outstanding = outstanding.load(Ordering::Relaxed);
            peak[p] = peak[p].max(now_outstanding);
            if now_outstanding >= max_outstanding {
                unsent[p] += 1;
                continue;
            }
            outstanding.fetch_add(1, Ordering::Relaxed);
            let n = sent;
            sent += 1;
            let (http, target, samples, outstanding) = (
                http.clone(),
                Arc::clone(&target),
                Arc::clone(&samples),
                Arc::clone(&outstanding),
            );
            tokio::spawn(async move {
                let lag = due.elapsed();
                let answer = target.send(&http, n).await;
                let latency = due.elapsed();
                let outcome = match answer {
                    Ok(a) if (200..300).contains(&a.status) => Outcome::Ok,
                    Ok(a) if a.status == 503 => Outcome::Refused,
                    Ok(a) => Outcome::Other(a.status),
                    Err(_) => Outcome::Failed,
                };
                if let Ok(mut samples) = samples.lock() {
                    samples.push(Sample {
                        phase: p,
                        due: offset,
                        lag,
                        latency,
                        outcome,
                    });
                }
                outstanding.fetch_sub(1, Ordering::Relaxed);
            });
        }
        phase_start += Duration::from_secs_f64(phase.seconds);
        if phase_start > Instant::now() {
            tokio::time::sleep_until(phase_start).await;
        }
    }
    // The last answers (each has its deadline).
    while outstanding.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let samples = match samples.lock() {
        Ok(mut s) => std::mem::take(&mut *s),
        Err(_) => Vec::new(),
    };
    for (p, phase) in phases.iter().enumerate() {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.phase == p).collect();
        report(p, phase, &mine, unsent[p], peak[p]);
        if timeline {
            print_timeline(p, phase, &mine);
        }
    }
}

/// One line of `key=value` fields for a phase (milliseconds; `-` for nothing measured).
fn report(p: usize, phase: &Phase, samples: &[&Sample], unsent: usize, peak: usize) {
    let mut ok = Latencies::default();
    let mut refused = Latencies::default();
    let mut lag = Latencies::default();
    let mut first_second = Latencies::default();
    let mut first_five = Latencies::default();
    let (mut other, mut failed) = (0usize, 0usize);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for s in samples {
        lag.push(s.lag);
        match s.outcome {
            Outcome::Ok => {
                ok.push(s.latency);
                if s.due < Duration::from_secs(1) {
                    first_second.push(s.latency);
                }
                if s.due < Duration::from_secs(5) {
                    first_five.push(s.latency);
                }
            }
            Outcome::Refused => refused.push(s.latency),
            Outcome::Other(status) => {
                other += 1;
                *statuses.entry(status).or_default() += 1;
            }
            Outcome::Failed => failed += 1,
        }
    }
    for l in [
        &mut ok,
        &mut refused,
        &mut lag,
        &mut first_second,
        &mut first_five,
    ] {
        l.sort();
    }
    let rate = |n: usize| format!("{:.1}", n as f64 / phase.seconds);
    let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}x{n}")).collect();
    println!(
        "phase={} offered={:.1} seconds={} sent={} ok={} ok_rate={} ok_p50_ms={} ok_p99_ms={} \
         ok_max_ms={} refused={} refused_rate={} refused_p50_ms={} refused_p99_ms={} \
         other={other} other_statuses={} failed={failed} unsent={unsent} \
         first1s_ok_p99_ms={} first5s_ok_p99_ms={} lag_p99_ms={} peak_outstanding={peak}",
        p + 1,
        phase.rate,
        phase.seconds,
        samples.len(),
        ok.len(),
        rate(ok.len()),
        ok.ms(50.0),
        ok.ms(99.0),
        ok.ms(100.0),
        refused.len(),
        rate(refused.len()),
        refused.ms(50.0),
        refused.ms(99.0),
        if statuses.is_empty() {
            "-".to_owned()
        } else {
            statuses.join(",")
        },
        first_second.ms(99.0),
        first_five.ms(99.0),
        lag.ms(99.0),
    );
}

/// Per second of a phase, on stderr: answers by kind and the admitted p99.
fn print_timeline(p: usize, phase: &Phase, samples: &[&Sample]) {
    let seconds = phase.seconds.ceil() as usize;
    let mut ok = (0..seconds)
        .map(|_| Latencies::default())
        .collect::<Vec<_>>();
    let mut refused = vec![0usize; seconds];
    let mut bad = vec![0usize; seconds];
    for s in samples {
        let second = (s.due.as_secs() as usize).min(seconds.saturating_sub(1));
        match s.outcome {
            Outcome::Ok => ok[second].push(s.latency),
            Outcome::Refused => refused[second] += 1,
            _ => bad[second] += 1,
        }
    }
    for (second, l) in ok.iter_mut().enumerate() {
        l.sort();
        eprintln!(
            "phase {} second {:>3}: ok {:>6} p99 {:>8} ms  refused {:>6}  other {:>4}",
            p + 1,
            second,
            l.len(),
            l.ms(99.0),
            refused[second],
            bad[second]
        );
    }
}

/// `clients` clients, each sending its next request when its last is answered, for
/// `seconds` (after a second of warming up); a client refused (503) pauses 10 ms
/// first, as a client that honours `Retry-After` would not hammer. Prints one line.
pub async fn closed_loop(http: Http, target: Target, clients: usize, seconds: f64) {
    let target = Arc::new(target);
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, target) = (http.clone(), Arc::clone(&target));
        tasks.push(tokio::spawn(async move {
            let mut ok = Latencies::default();
            let (mut refused, mut bad) = (0usize, 0usize);
            let mut n = client;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let answer = target.send(&http, n).await;
                n += clients;
                let status = answer.map_or(0, |a| a.status);
                if status == 503 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if started < warm {
                    continue;
                }
                match status {
                    200..=299 => ok.push(started.elapsed()),
                    503 => refused += 1,
                    _ => bad += 1,
                }
            }
            (ok, refused, bad)
        }));
    }
    let mut all = Latencies::default();
    let (mut refused, mut bad) = (0usize, 0usize);
    for task in tasks {
        if let Ok((ok, r, b)) = task.await {
            all.extend(ok);
            refused += r;
            bad += b;
        }
    }
    all.sort();
    println!(
        "clients={clients} seconds={seconds} ok={} ok_rate={:.1} ok_p50_ms={} ok_p99_ms={} \
         refused={refused} bad={bad}",
        all.len(),
        all.len() as f64 / seconds,
        all.ms(50.0),
        all.ms(99.0),
    );
}
