//! `flotilla-two-step-bench URL EMAIL PASSWORD ACCOUNTS SECONDS CONCURRENCY` (make
//! bench): sign-ins with a password and an authenticator app's code, through nginx at
//! `URL`, as fast as they go for `SECONDS` with `CONCURRENCY` clients.
//!
//! ACCOUNTS accounts are made in `DATABASE_URL` with the password hash of the verified
//! account `EMAIL` (whose password is PASSWORD), and each sets up its app through
//! profile's routes (`GET`/`POST /profile/totp`), as a person would. A code is good
//! once, for its 30-second step and the steps either side, so each account signs in at
//! most once per step (twice right after setting up, with the previous step's code):
//! the flood takes the next account whose next step's code is good now.
//!
//! Prints one line: "sign_ins_per_s second_p50_ms second_p99_ms health_p50_ms failed",
//! where the second step's times are those of `POST /login/second-step` alone (its code
//! checked, its step spent, the session opened and the tokens signed) and health's a
//! `GET /login/health` through the same nginx right after, for comparison. Never
//! deployed: it lives in the test kit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use flotilla_db::new_id;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use totp_rs::{Builder, Secret};

const STEP: i64 = 30;

struct Bench {
    url: String,
    password: String,
    client: Client,
}

/// An account of the bench: its address, its app's secret, the step of its last code.
struct Account {
    email: String,
    secret: Vec<u8>,
    last_step: i64,
}

fn now_step() -> i64 {
    chrono::Utc::now().timestamp() / STEP
}

fn code(secret: &[u8], step: i64) -> anyhow::Result<String> {
    let totp = Builder::new()
        .with_secret(secret.to_vec())
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(totp.generate(u64::try_from(step * STEP)?).to_string())
}

impl Bench {
    fn post(&self, path: &str, access: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self.send(path, access, body)?;
        let status = response.status().as_u16();
        Ok((status, response.json().unwrap_or(Value::Null)))
    }

    fn send(
        &self,
        path: &str,
        access: Option<&str>,
        body: &Value,
    ) -> reqwest::Result<reqwest::blocking::Response> {
        let mut request = self.client.post(format!("{}{path}", self.url)).json(body);
        if let Some(access) = access {
            request = request.bearer_auth(access);
        }
        request.send()
    }

    /// [`Bench::post`], sent again while the fleet answers `503` (busy hashing), after
    /// the `Retry-After` it asks for, as a person or a polite client would: the setting
    /// up is not what is measured.
    fn post_until_served(
        &self,
        path: &str,
        access: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        for _ in 0..20 {
            let response = self.send(path, access, body)?;
            let status = response.status().as_u16();
            if status != 503 {
                return Ok((status, response.json().unwrap_or(Value::Null)));
            }
            let asked = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .unwrap_or(1);
            std::thread::sleep(Duration::from_secs(asked.min(2)));
        }
        bail!("{path} answered 503 twenty times")
    }

    /// Signs in with the password alone (the account has no app yet) and sets the app
    /// up: its secret, and the step of the code that set it up.
    fn enrol(&self, email: &str) -> anyhow::Result<Account> {
        let login = json!({"email": email, "password": self.password});
        let (status, body) = self.post_until_served("/login", None, &login)?;
        let access = body["access_token"]
            .as_str()
            .with_context(|| format!("{email} cannot sign in: {status} {body}"))?;
        let offer: Value = self
            .client
            .get(format!("{}/profile/totp", self.url))
            .bearer_auth(access)
            .send()?
            .json()?;
        let key = offer["secret"].as_str().context("no secret offered")?;
        let secret = Secret::try_from_base32(key)
            .map_err(|e| anyhow!("{e}"))?
            .as_ref()
            .to_vec();
        // Set up with the previous step's code (still good), which leaves two codes
        // good now: twice the sign-ins per account before the next step comes.
        let step = now_step() - 1;
        let setup = json!({
            "pending": offer["pending"],
            "code": code(&secret, step)?,
            "password": self.password,
        });
        let (status, body) = self.post_until_served("/profile/totp", Some(access), &setup)?;
        if status != 201 {
            bail!("{email}: setting up the app answered {status} {body}");
        }
        Ok(Account {
            email: email.to_owned(),
            secret,
            last_step: step,
        })
    }

    /// One sign-in in two steps; the second step's time.
    fn sign_in(&self, account: &Account, step: i64) -> anyhow::Result<Duration> {
        let login = json!({"email": account.email, "password": self.password});
        let (status, body) = self.post("/login", None, &login)?;
        let token = body["second_step_token"]
            .as_str()
            .with_context(|| format!("password step: {status} {body}"))?;
        let second = json!({"second_step_token": token, "code": code(&account.secret, step)?});
        let started = Instant::now();
        let (status, body) = self.post("/login/second-step", None, &second)?;
        let took = started.elapsed();
        if status != 200 || !body["access_token"].is_string() {
            bail!("second step: {status} {body}");
        }
        Ok(took)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, template, password, accounts, seconds, concurrency] = args.as_slice() else {
        bail!("usage: flotilla-two-step-bench URL EMAIL PASSWORD ACCOUNTS SECONDS CONCURRENCY");
    };
    let (accounts, seconds, concurrency): (usize, u64, usize) =
        (accounts.parse()?, seconds.parse()?, concurrency.parse()?);
    let bench = Bench {
        url: url.trim_end_matches('/').to_owned(),
        password: password.clone(),
        client: Client::builder().timeout(Duration::from_secs(30)).build()?,
    };
    let run = &new_id()[..8];
    let emails = flotilla_testkit::accounts_like(template, &format!("two-step-{run}"), accounts)?;
    // Each sets up its app, a few at a time (two Argon2 hashes each).
    let queue = Mutex::new(emails.into_iter().collect::<VecDeque<_>>());
    let ready = Mutex::new(VecDeque::new());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let Some(email) = queue.lock().map_err(|_| anyhow!("lock"))?.pop_front()
                        else {
                            return Ok(());
                        };
                        let account = bench.enrol(&email)?;
                        ready
                            .lock()
                            .map_err(|_| anyhow!("lock"))?
                            .push_back(account);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow!("an enrolment panicked"))??;
        }
        Ok(())
    })?;
    // The flood: the next account whose next code is good now.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let times = Mutex::new(Vec::new());
    let failed = Mutex::new(0usize);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                while Instant::now() < deadline {
                    let Some(mut account) = ready.lock().ok().and_then(|mut r| r.pop_front())
                    else {
                        return;
                    };
                    let now = now_step();
                    let step = (account.last_step + 1).max(now - 1);
                    if step > now + 1 {
                        if let Ok(mut r) = ready.lock() {
                            r.push_back(account);
                        }
                        std::thread::yield_now();
                        continue;
                    }
                    match bench.sign_in(&account, step) {
                        Ok(took) => {
                            account.last_step = step;
                            if let Ok(mut t) = times.lock() {
                                t.push(took);
                            }
                        }
                        Err(e) => {
                            eprintln!("{}: {e:#}", account.email);
                            if let Ok(mut f) = failed.lock() {
                                *f += 1;
                            }
                        }
                    }
                    if let Ok(mut r) = ready.lock() {
                        r.push_back(account);
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut times = times.into_inner().map_err(|_| anyhow!("lock"))?;
    times.sort();
    let rate = times.len() as f64 / elapsed;
    // The same nginx's own cheapest route to the same service, unloaded, for scale.
    let mut health = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        bench
            .client
            .get(format!("{}/login/health", bench.url))
            .send()?
            .error_for_status()?;
        health.push(started.elapsed());
    }
    health.sort();
    println!(
        "{rate:.1} {:.2} {:.2} {:.2} {}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&health, 0.5),
        failed.into_inner().map_err(|_| anyhow!("lock"))?
    );
    Ok(())
}
