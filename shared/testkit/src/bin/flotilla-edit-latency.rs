//! `flotilla-edit-latency --url URL --mail-dir DIR [--accounts N] [--rate R] [--seconds S]`:
//! the static site's incremental latency, for benchmarks (`make bench`): how long from
//! `PATCH /profile/me` answered to the changed page being served by nginx at
//! `/people/<username>`, while R profiles a second change.
//! Never part of a deployment: it lives in the test kit.
//!
//! Setup, through the real API of the fleet behind `URL` (nginx's origin), a few
//! accounts at a time: N accounts signed up, verified with the token of the mail the
//! fleet's file transport writes to `DIR` (`*.eml`), signed in, and given a username
//! (`edit-latency-<run>-<i>`: a hyphen, which flotilla-seed's names never have, and a
//! random part per run) and a public page; then it waits until every page is served.
//! Run: for S seconds, one edit every 1/R s (scheduled from the start, so a slow edit
//! does not slow the rate), round robin over the accounts, each in its own thread: a
//! new display name (a marker unique to the edit), then `GET /people/<username>` every
//! 10 ms until the page holds the marker (10 s at most: missed). An account whose last
//! edit is still pending is skipped for the next one (counted); when every account is
//! pending the edit is dropped (counted).
//!
//! Prints one line of `key=value` fields (milliseconds; `-` where nothing was measured):
//! `edits errors missed skipped dropped p50_ms p90_ms p99_ms max_ms patch_p50_ms
//! patch_p99_ms rate`. Exits 1 when the setup fails; edits that fail are counted, not
//! fatal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const PASSWORD: &str = "edit latency bench password";
/// Accounts set up at once: signup and login each hash a password with Argon2.
const SETUP_THREADS: usize = 4;
const POLL: Duration = Duration::from_millis(10);
const GIVE_UP: Duration = Duration::from_secs(10);
const MAIL_WAIT: Duration = Duration::from_secs(30);
const PAGES_WAIT: Duration = Duration::from_secs(60);

struct Args {
    url: String,
    mail_dir: PathBuf,
    accounts: usize,
    rate: f64,
    seconds: f64,
}

struct Account {
    username: String,
    access: String,
}

enum Outcome {
    /// The marker was served after `latency`; the PATCH itself took `patch`.
    Seen {
        latency: Duration,
        patch: Duration,
    },
    Missed {
        patch: Duration,
    },
    Error(String),
}

fn main() {
    if let Err(e) = run() {
        eprintln!("flotilla-edit-latency: {e:#}");
        std::process::exit(1);
    }
}

fn usage() -> anyhow::Error {
    anyhow!(
        "usage: flotilla-edit-latency --url http://127.0.0.1:PORT --mail-dir DIR \
         [--accounts N (60)] [--rate EDITS_PER_SECOND (20)] [--seconds S (30)]"
    )
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        url: String::new(),
        mail_dir: PathBuf::new(),
        accounts: 60,
        rate: 20.0,
        seconds: 30.0,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let value = raw.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--url" => args.url = value.trim_end_matches('/').to_owned(),
            "--mail-dir" => args.mail_dir = PathBuf::from(value),
            "--accounts" => args.accounts = value.parse().map_err(|_| usage())?,
            "--rate" => args.rate = value.parse().map_err(|_| usage())?,
            "--seconds" => args.seconds = value.parse().map_err(|_| usage())?,
            _ => return Err(usage()),
        }
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if args.url.is_empty()
        || args.mail_dir.as_os_str().is_empty()
        || args.accounts == 0
        || !positive(args.rate)
        || !positive(args.seconds)
    {
        return Err(usage());
    }
    Ok(args)
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let client = Client::builder()
        .timeout(GIVE_UP)
        .build()
        .context("building the HTTP client")?;
    let run_tag = format!("{:08x}", rand::random::<u32>());

    let accounts = set_up(&client, &args, &run_tag)?;
    wait_for_pages(&client, &args.url, &accounts)?;

    let accounts = Arc::new(accounts);
    let pending: Arc<Vec<AtomicBool>> =
        Arc::new(accounts.iter().map(|_| AtomicBool::new(false)).collect());
    let (sender, outcomes) = mpsc::channel();
    let (mut edits, mut skipped, mut dropped) = (0usize, 0usize, 0usize);
    let mut next = 0usize;
    let mut editors = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    for tick in 0u64.. {
        let due = start + Duration::from_secs_f64(tick as f64 / args.rate);
        if due >= end {
            break;
        }
        thread::sleep(due.saturating_duration_since(Instant::now()));
        // The next account in turn whose last edit is done.
        let mut chosen = None;
        for _ in 0..accounts.len() {
            let i = next;
            next = (next + 1) % accounts.len();
            if !pending[i].swap(true, Ordering::AcqRel) {
                chosen = Some(i);
                break;
            }
            skipped += 1;
        }
        let Some(i) = chosen else {
            dropped += 1;
            continue;
        };
        edits += 1;
        let marker = format!("Edited-{run_tag}-{tick}");
        let (client, url, accounts, pending, sender) = (
            client.clone(),
            args.url.clone(),
            Arc::clone(&accounts),
            Arc::clone(&pending),
            sender.clone(),
        );
        editors.push(thread::spawn(move || {
            let outcome = edit(&client, &url, &accounts[i], &marker);
            pending[i].store(false, Ordering::Release);
            // The receiver outlives every editor (joined below).
            let _ = sender.send(outcome);
        }));
    }
    thread::sleep(end.saturating_duration_since(Instant::now()));
    let rate = edits as f64 / start.elapsed().as_secs_f64();
    drop(sender);
    for editor in editors {
        if editor.join().is_err() {
            bail!("an edit's thread panicked");
        }
    }

    let (mut latencies, mut patches) = (Vec::new(), Vec::new());
    let (mut errors, mut missed) = (0usize, 0usize);
    for outcome in outcomes {
        match outcome {
            Outcome::Seen { latency, patch } => {
                latencies.push(latency);
                patches.push(patch);
            }
            Outcome::Missed { patch } => {
                missed += 1;
                patches.push(patch);
            }
            Outcome::Error(why) => {
                if errors < 5 {
                    eprintln!("flotilla-edit-latency: {why}");
                }
                errors += 1;
            }
        }
    }
    latencies.sort();
    patches.sort();
    println!(
        "edits={edits} errors={errors} missed={missed} skipped={skipped} dropped={dropped} \
         p50_ms={} p90_ms={} p99_ms={} max_ms={} patch_p50_ms={} patch_p99_ms={} rate={rate:.1}",
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 90.0),
        percentile_ms(&latencies, 99.0),
        percentile_ms(&latencies, 100.0),
        percentile_ms(&patches, 50.0),
        percentile_ms(&patches, 99.0),
    );
    Ok(())
}

/// The nearest-rank percentile of sorted durations, in milliseconds; `-` when empty.
fn percentile_ms(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let at = sorted[rank.clamp(1, sorted.len()) - 1];
    format!("{:.1}", at.as_secs_f64() * 1000.0)
}

/// The N accounts, SETUP_THREADS at a time; the first failure ends the setup.
fn set_up(client: &Client, args: &Args, run_tag: &str) -> anyhow::Result<Vec<Account>> {
    let started = Instant::now();
    let mut accounts: Vec<(usize, Account)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..SETUP_THREADS.min(args.accounts))
            .map(|first| {
                scope.spawn(move || {
                    (first..args.accounts)
                        .step_by(SETUP_THREADS)
                        .map(|i| Ok((i, set_up_one(client, args, run_tag, i)?)))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(
                worker
                    .join()
                    .map_err(|_| anyhow!("a setup thread panicked"))??,
            );
        }
        Ok::<_, anyhow::Error>(all)
    })?;
    accounts.sort_by_key(|(i, _)| *i);
    eprintln!(
        "flotilla-edit-latency: {} accounts set up in {:.1} s",
        accounts.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(accounts.into_iter().map(|(_, a)| a).collect())
}

/// Signup, the mailed token, verification, login, a username and a public page.
fn set_up_one(client: &Client, args: &Args, run_tag: &str, i: usize) -> anyhow::Result<Account> {
    let username = format!("edit-latency-{run_tag}-{i}");
    let email = format!("{username}@example.org");
    let url = &args.url;
    let credentials = json!({"email": email, "password": PASSWORD});
    let signup = client
        .post(format!("{url}/signup"))
        .json(&credentials)
        .send()
        .with_context(|| format!("POST /signup for {email}"))?;
    expect_status(signup, StatusCode::ACCEPTED, "POST /signup", &email)?;
    let token = wait_for_token(&args.mail_dir, &email)?;
    let verify = client
        .post(format!("{url}/signup/verify"))
        .json(&json!({"token": token}))
        .send()
        .with_context(|| format!("POST /signup/verify for {email}"))?;
    expect_status(verify, StatusCode::OK, "POST /signup/verify", &email)?;
    let login = client
        .post(format!("{url}/login"))
        .json(&credentials)
        .send()
        .with_context(|| format!("POST /login for {email}"))?;
    let body: Value = expect_status(login, StatusCode::OK, "POST /login", &email)?
        .json()
        .with_context(|| format!("POST /login for {email}: the answer is not JSON"))?;
    let access = body["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("POST /login for {email}: no access_token in {body}"))?
        .to_owned();
    let profile = client
        .patch(format!("{url}/profile/me"))
        .bearer_auth(&access)
        .json(&json!({
            "username": username,
            "display_name": format!("Edit latency {i}"),
            "public": true,
        }))
        .send()
        .with_context(|| format!("PATCH /profile/me for {email}"))?;
    expect_status(profile, StatusCode::OK, "PATCH /profile/me", &email)?;
    Ok(Account { username, access })
}

fn expect_status(
    response: reqwest::blocking::Response,
    want: StatusCode,
    what: &str,
    email: &str,
) -> anyhow::Result<reqwest::blocking::Response> {
    let status = response.status();
    if status == want {
        return Ok(response);
    }
    let body = response.text().unwrap_or_default();
    bail!("{what} for {email} answered {status} (expected {want}): {body}")
}

/// The token of the first mail to `email` in the mail folder, waited for.
fn wait_for_token(mail_dir: &Path, email: &str) -> anyhow::Result<String> {
    let to = format!("To: {email}");
    let deadline = Instant::now() + MAIL_WAIT;
    loop {
        let mails = std::fs::read_dir(mail_dir).into_iter().flatten().flatten();
        for entry in mails {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let Ok(mail) = std::fs::read_to_string(&path) else {
                continue;
            };
            if mail.lines().any(|l| l.eq_ignore_ascii_case(&to))
                && let Some(token) = flotilla_testkit::link_param(&mail, "token")
            {
                return Ok(token);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no mail to {email} with a token in {} after {} s",
                mail_dir.display(),
                MAIL_WAIT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Until every account's page is served (PAGES_WAIT at most).
fn wait_for_pages(client: &Client, url: &str, accounts: &[Account]) -> anyhow::Result<()> {
    let started = Instant::now();
    for account in accounts {
        let page = format!("{url}/people/{}", account.username);
        loop {
            let status = client.get(&page).send().map(|r| r.status()).ok();
            if status == Some(StatusCode::OK) {
                break;
            }
            if started.elapsed() >= PAGES_WAIT {
                bail!(
                    "{page} was not served within {} s (last answer: {status:?})",
                    PAGES_WAIT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    eprintln!(
        "flotilla-edit-latency: every page served {:.1} s after the setup",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One edit: the new display name, then the page polled until it shows it.
fn edit(client: &Client, url: &str, account: &Account, marker: &str) -> Outcome {
    let t0 = Instant::now();
    let answer = client
        .patch(format!("{url}/profile/me"))
        .bearer_auth(&account.access)
        .json(&json!({"display_name": marker}))
        .send();
    let patch = t0.elapsed();
    match answer {
        Ok(r) if r.status() == StatusCode::OK => {}
        Ok(r) => {
            return Outcome::Error(format!(
                "PATCH /profile/me for {} answered {}",
                account.username,
                r.status()
            ));
        }
        Err(e) => {
            return Outcome::Error(format!("PATCH /profile/me for {}: {e}", account.username));
        }
    }
    let page = format!("{url}/people/{}", account.username);
    while t0.elapsed() < GIVE_UP {
        let shown = client
            .get(&page)
            .send()
            .ok()
            .filter(|r| r.status() == StatusCode::OK)
            .and_then(|r| r.text().ok())
            .is_some_and(|body| body.contains(marker));
        if shown {
            return Outcome::Seen {
                latency: t0.elapsed(),
                patch,
            };
        }
        thread::sleep(POLL);
    }
    Outcome::Missed { patch }
}
