//! `flotilla-load`: load through nginx for `make bench` and `make soak`, on loopback.
//! Never part of a deployment: it lives in the test kit.
//!
//! ```text
//! flotilla-load open --url URL [--method GET] [--json BODY [--vary K]]
//!                    [--header 'Name: value']… --phase RATE:SECONDS…
//!                    [--timeout-secs 10] [--max-outstanding 4000] [--timeline]
//! flotilla-load closed --url URL [--method …] [--json …] [--header …]… [--clients 16]
//!                    [--seconds 5]
//! flotilla-load accounts --like EMAIL --label LABEL --count N
//! flotilla-load journeys --url ORIGIN --mail-dir DIR [--rate 2] [--seconds 600]
//!                    [--returning 0.5] [--timeout-secs 10]
//! ```
//!
//! `open`: the request (GET URL by default) at a constant rate per phase (an open loop: see `rate`), one line
//! of `key=value` fields per phase on stdout. `closed`: the same request from a few clients as
//! fast as answers come, one line. `journeys`: people signing up, signing in, reading
//! and editing their profile at a fixed rate (see `journeys`), a table on stdout and a
//! last line of totals. `accounts`: N verified accounts `LABEL-<i>@example.org` in
//! `DATABASE_URL` with the password of the account EMAIL. In a JSON body, `{k}`
//! becomes the request's number modulo K (`--vary`): `load-{k}@example.org`.

mod http;
mod journeys;
mod rate;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::http::Http;
use crate::rate::{Phase, Target};

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run()));
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(2),
        Err(e) => {
            eprintln!("flotilla-load: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The flags of a command line, in order, each with its value (`--timeline` has none).
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut flags = Vec::new();
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            if !flag.starts_with("--") {
                bail!("unexpected {flag:?}");
            }
            let value = match args.peek() {
                Some(v) if !v.starts_with("--") => args.next().unwrap_or_default(),
                _ => String::new(),
            };
            flags.push((flag, value));
        }
        Ok(Self(flags))
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.all(name).last()
    }

    fn has(&self, name: &str) -> bool {
        self.all(name).next().is_some()
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow!("{name} {v:?} is not a number")),
        }
    }

    fn required(&self, name: &str) -> anyhow::Result<&str> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| anyhow!("{name} is missing"))
    }
}

fn target(flags: &Flags) -> anyhow::Result<Target> {
    let url = flags.required("--url")?;
    let method = flags.get("--method").unwrap_or("GET");
    Ok(Target {
        method: method.parse().map_err(|_| anyhow!("--method {method:?}"))?,
        json: flags.get("--json").map(str::to_owned),
        vary: flags.number("--vary", 0)?,
        uri: url.parse().with_context(|| format!("--url {url:?}"))?,
        headers: flags
            .all("--header")
            .map(http::header)
            .collect::<anyhow::Result<_>>()?,
    })
}

/// `RATE:SECONDS`.
fn phase(text: &str) -> anyhow::Result<Phase> {
    let (rate, seconds) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("--phase {text:?}: expected RATE:SECONDS"))?;
    let phase = Phase {
        rate: rate
            .parse()
            .map_err(|_| anyhow!("--phase {text:?}: a rate"))?,
        seconds: seconds
            .parse()
            .map_err(|_| anyhow!("--phase {text:?}: seconds"))?,
    };
    if !(phase.rate > 0.0 && phase.seconds > 0.0) {
        bail!("--phase {text:?}: the rate and the seconds must be above 0");
    }
    Ok(phase)
}

/// Whether the run met its own targets (journeys: no errors).
async fn run() -> anyhow::Result<bool> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let flags = Flags::parse(args)?;
    let timeout = Duration::from_secs_f64(flags.number("--timeout-secs", 10.0)?);
    let http = Http::new(timeout);
    match command.as_str() {
        "open" => {
            let phases = flags
                .all("--phase")
                .map(phase)
                .collect::<anyhow::Result<Vec<_>>>()?;
            if phases.is_empty() {
                bail!("open: at least one --phase RATE:SECONDS");
            }
            let max_outstanding = flags.number("--max-outstanding", 4000)?;
            rate::open_loop(
                http,
                target(&flags)?,
                &phases,
                max_outstanding,
                flags.has("--timeline"),
            )
            .await;
            Ok(true)
        }
        "closed" => {
            let clients = flags.number("--clients", 16)?;
            let seconds = flags.number("--seconds", 5.0)?;
            rate::closed_loop(http, target(&flags)?, clients, seconds).await;
            Ok(true)
        }
        "accounts" => {
            let made = flotilla_testkit::accounts_like(
                flags.required("--like")?,
                flags.required("--label")?,
                flags.number("--count", 100)?,
            )?;
            eprintln!("flotilla-load: {} accounts made", made.len());
            Ok(true)
        }
        "journeys" => {
            let settings = journeys::Settings {
                origin: flags.required("--url")?.trim_end_matches('/').to_owned(),
                mail_dir: PathBuf::from(flags.required("--mail-dir")?),
                rate: flags.number("--rate", 2.0)?,
                seconds: flags.number("--seconds", 600.0)?,
                returning: flags.number("--returning", 0.5)?,
            };
            journeys::run(http, settings).await
        }
        _ => bail!(
            "usage: flotilla-load open|closed|journeys --url URL … (see the head of \
             shared/testkit/src/bin/flotilla-load/main.rs)"
        ),
    }
}
