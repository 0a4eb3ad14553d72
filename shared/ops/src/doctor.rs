//! `scripts/doctor PLACEMENT`: every host's own checks (`flotilla-host check`, run
//! there over ssh: disk, nginx, its instances, the database, keys, bus, pages), each
//! line prefixed by the host, then what only several hosts together can tell: their
//! clocks against this machine's, the signing keys of the login hosts, and the keys
//! each login instance publishes and each host's services fetch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::deploy::Ssh;
use crate::placement::{Host, Placement};

/// What `doctor` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub placement: PathBuf,
    /// `FLOTILLA_SSH_CONFIG`: passed to ssh as `-F`.
    pub ssh_config: Option<PathBuf>,
    /// `FLOTILLA_DOCTOR_MIN_FREE_MB`, passed on to each host's check when set.
    pub min_free_mb: Option<u32>,
}

/// The agent of the active release, on every host deploy has visited.
pub const AGENT: &str = "/opt/flotilla/current/scripts/flotilla-host";

/// How far a host's clock may be from this machine's. Access tokens and bus seals
/// allow 30 s between any two hosts (docs/security.md); measured against one
/// machine, two hosts within 15 s of it are within 30 s of each other, and 10 s keeps
/// a third of that for the drift between two diagnoses. Only an offset the
/// measurement proves (its ssh round trip subtracted) fails.
pub const MAX_SKEW: Duration = Duration::from_secs(10);

/// A verdict line, as the agent prints them.
fn verdict(ok: bool, text: &str, hint: &str) -> String {
    if ok {
        format!("ok    {text}")
    } else {
        format!("FAIL  {text}; hint: {hint}")
    }
}

/// What a host's agent reports beside its verdicts, for the checks across hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// `@keys DIGEST`: the key folder of a login host.
    Keys(String),
    /// `@jwks DIGEST SOURCE`: the keys a login instance publishes, or that this host's
    /// services fetch.
    Jwks { digest: String, source: String },
}

impl Fact {
    fn parse(line: &str) -> Option<Fact> {
        let mut words = line.strip_prefix('@')?.split_whitespace();
        match (words.next()?, words.next()?, words.next()) {
            ("keys", digest, None) => Some(Fact::Keys(digest.to_owned())),
            ("jwks", digest, Some(source)) => Some(Fact::Jwks {
                digest: digest.to_owned(),
                source: source.to_owned(),
            }),
            _ => None,
        }
    }
}

/// A host's clock read over ssh between two readings of ours (nanoseconds since 1970).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub remote: i128,
    pub before: i128,
    pub after: i128,
}

impl Clock {
    /// The host's clock minus ours, at best and at worst: its reading was taken
    /// somewhere between ours.
    fn bounds(&self) -> (f64, f64) {
        let secs = |ns: i128| ns as f64 / 1e9;
        (
            secs(self.remote - self.after),
            secs(self.remote - self.before),
        )
    }

    /// The offset, as well as one reading can tell (the middle of the bounds).
    pub fn offset(&self) -> f64 {
        let (low, high) = self.bounds();
        (low + high) / 2.0
    }

    /// How far the offset may be from [`Clock::offset`]: half the round trip.
    pub fn uncertainty(&self) -> f64 {
        let (low, high) = self.bounds();
        (high - low) / 2.0
    }

    /// The least offset consistent with the reading: what it proves.
    pub fn proven_skew(&self) -> f64 {
        let (low, high) = self.bounds();
        if low <= 0.0 && high >= 0.0 {
            0.0
        } else {
            low.abs().min(high.abs())
        }
    }
}

/// One host's part of the diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct HostReport {
    pub host: String,
    /// Its verdict lines (and anything else the agent printed), in order.
    pub lines: Vec<String>,
    pub facts: Vec<Fact>,
    pub clock: Option<Clock>,
}

impl HostReport {
    fn new(host: &Host) -> HostReport {
        HostReport {
            host: host.name.clone(),
            lines: Vec::new(),
            facts: Vec::new(),
            clock: None,
        }
    }

    /// Reads an agent's output: its facts apart, its lines kept.
    pub fn read(&mut self, stdout: &str) {
        for line in stdout.lines() {
            match Fact::parse(line) {
                Some(fact) => self.facts.push(fact),
                None if line.starts_with('@') => {}
                None => self.lines.push(line.to_owned()),
            }
        }
    }
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// Runs the agent's check on one host; a host that cannot be asked is one FAIL line.
fn examine(ssh: &Ssh, host: &Host, min_free_mb: Option<u32>) -> HostReport {
    let mut report = HostReport::new(host);
    let before = now_ns();
    let probe = format!("date +%s%N; test -x {AGENT} && echo deployed");
    let reached = ssh.output(host, &["sh", "-c", &probe]);
    let after = now_ns();
    let output = match reached {
        Ok(output) if output.status.code() != Some(255) => output,
        Ok(output) => {
            report.lines.push(verdict(
                false,
                &format!(
                    "ssh: cannot reach {} ({})",
                    host.ssh,
                    last_line(&output.stderr)
                ),
                "`ssh` to it must work without a password, as root or with passwordless \
                 sudo, as scripts/deploy needs (FLOTILLA_SSH_CONFIG names an ssh \
                 configuration)",
            ));
            return report;
        }
        Err(why) => {
            report
                .lines
                .push(verdict(false, &why, "apt-get install openssh-client"));
            return report;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    if let Some(remote) = lines.next().and_then(|l| l.trim().parse::<i128>().ok()) {
        report.clock = Some(Clock {
            remote,
            before,
            after,
        });
    }
    if !lines.any(|l| l.trim() == "deployed") {
        report.lines.push(verdict(
            false,
            &format!("host: flotilla is not deployed here ({AGENT} is missing)"),
            "scripts/deploy PLACEMENT",
        ));
        return report;
    }
    let min = min_free_mb.map(|mb| format!("FLOTILLA_DOCTOR_MIN_FREE_MB={mb}"));
    let mut words = Vec::new();
    if let Some(min) = &min {
        words.extend(["env", min.as_str()]);
    }
    words.extend([AGENT, "check", "--facts"]);
    match ssh.output(host, &words) {
        Ok(output) => {
            report.read(&String::from_utf8_lossy(&output.stdout));
            // 0: every check ok; 1: some failed. Anything else: the agent itself failed.
            if !matches!(output.status.code(), Some(0 | 1)) {
                report.lines.push(verdict(
                    false,
                    &format!(
                        "check: the agent ended with {} ({})",
                        output.status,
                        last_line(&output.stderr)
                    ),
                    "run it there to see why: flotilla-host check",
                ));
            }
        }
        Err(why) => report.lines.push(verdict(false, &why, "run doctor again")),
    }
    report
}

/// The checks across hosts, from their reports: clocks, key folders, JWKS.
pub fn across(reports: &[HostReport]) -> Vec<String> {
    let mut lines = Vec::new();
    let clocks: Vec<(&str, Clock)> = reports
        .iter()
        .filter_map(|r| Some((r.host.as_str(), r.clock?)))
        .collect();
    if !clocks.is_empty() {
        let limit = MAX_SKEW.as_secs_f64();
        let shown: Vec<String> = clocks
            .iter()
            .map(|(host, clock)| {
                format!(
                    "{host} {:+.1} s ±{:.1}",
                    clock.offset(),
                    clock.uncertainty()
                )
            })
            .collect();
        let off: Vec<String> = clocks
            .iter()
            .filter(|(_, clock)| clock.proven_skew() > limit)
            .map(|(host, clock)| format!("{host} is {:+.1} s off", clock.offset()))
            .collect();
        lines.push(if off.is_empty() {
            verdict(
                true,
                &format!(
                    "clock: every host within {} s of this machine's ({})",
                    MAX_SKEW.as_secs(),
                    shown.join(", ")
                ),
                "",
            )
        } else {
            verdict(
                false,
                &format!(
                    "clock: {} (more than {} s from this machine's; tokens and bus \
                     messages allow 30 s between hosts)",
                    off.join(", "),
                    MAX_SKEW.as_secs()
                ),
                "keep every host's clock synchronised (systemd-timesyncd or chrony; \
                 timedatectl status shows it)",
            )
        });
    }
    let keys: Vec<(&str, &str)> = reports
        .iter()
        .flat_map(|r| {
            r.facts.iter().filter_map(|f| match f {
                Fact::Keys(digest) => Some((r.host.as_str(), digest.as_str())),
                Fact::Jwks { .. } => None,
            })
        })
        .collect();
    if !keys.is_empty() {
        let hosts: Vec<&str> = keys.iter().map(|(h, _)| *h).collect();
        if keys.iter().all(|(_, d)| *d == keys[0].1) {
            lines.push(verdict(
                true,
                &format!(
                    "signing keys: the same key folder on every login host ({})",
                    hosts.join(", ")
                ),
                "",
            ));
        } else {
            let each: Vec<String> = keys.iter().map(|(h, d)| format!("{h} {d}")).collect();
            lines.push(verdict(
                false,
                &format!(
                    "signing keys: the login hosts' key folders differ ({})",
                    each.join(", ")
                ),
                "scripts/deploy copies the first login host's keys to the others: run it \
                 again (a key added by hand on one host goes to the others that way too)",
            ));
        }
    }
    let mut jwks: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for report in reports {
        for fact in &report.facts {
            if let Fact::Jwks { digest, source } = fact {
                jwks.entry(digest.as_str())
                    .or_default()
                    .push(format!("{} {source}", report.host));
            }
        }
    }
    match jwks.len() {
        0 => {}
        1 => {
            let sources: usize = jwks.values().map(Vec::len).sum();
            lines.push(verdict(
                true,
                &format!(
                    "jwks: every login instance and every host's services see the same \
                     keys ({sources} sources)"
                ),
                "",
            ));
        }
        _ => {
            let groups: Vec<String> = jwks
                .iter()
                .map(|(digest, sources)| format!("{digest}: {}", sources.join(", ")))
                .collect();
            lines.push(verdict(
                false,
                &format!(
                    "jwks: the keys differ between hosts ({})",
                    groups.join("; ")
                ),
                "right after flotilla-login keys generate that lasts \
                 FLOTILLA_KEYS_RELOAD_SECS (30 s): run doctor again; otherwise see the \
                 signing keys line",
            ));
        }
    }
    lines
}

/// Diagnoses every host of the placement, printing as it goes. Returns whether every
/// check was ok; an error when the placement cannot be read.
pub fn doctor(options: &Options) -> Result<bool, String> {
    let placement = Placement::load(&options.placement).map_err(|e| e.to_string())?;
    let ssh = Ssh::new(options.ssh_config.clone(), false);
    // Every host at once: each check waits on its own host only.
    let reports: Vec<HostReport> = std::thread::scope(|scope| {
        let running: Vec<_> = placement
            .hosts
            .iter()
            .map(|host| {
                let ssh = &ssh;
                (
                    host,
                    scope.spawn(move || examine(ssh, host, options.min_free_mb)),
                )
            })
            .collect();
        running
            .into_iter()
            .map(|(host, handle)| {
                handle.join().unwrap_or_else(|_| {
                    let mut report = HostReport::new(host);
                    report.lines.push(verdict(
                        false,
                        "doctor: examining this host failed",
                        "run doctor again",
                    ));
                    report
                })
            })
            .collect()
    });
    let fleet = across(&reports);
    let width = reports
        .iter()
        .map(|r| r.host.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let (mut checks, mut failed) = (0, 0);
    let all = reports
        .iter()
        .flat_map(|r| r.lines.iter().map(move |l| (r.host.as_str(), l)))
        .chain(fleet.iter().map(|l| ("fleet", l)));
    for (host, line) in all {
        if line.starts_with("ok ") || line.starts_with("FAIL ") || line.starts_with("skip ") {
            checks += 1;
        }
        if line.starts_with("FAIL ") {
            failed += 1;
        }
        println!("{host:<width$}  {line}");
    }
    if failed == 0 {
        println!("all {checks} checks ok on {} hosts", reports.len());
    } else {
        println!("{failed} of {checks} checks FAILED");
    }
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, stdout: &str, clock: Option<Clock>) -> HostReport {
        let mut report = HostReport {
            host: host.to_owned(),
            lines: Vec::new(),
            facts: Vec::new(),
            clock,
        };
        report.read(stdout);
        report
    }

    const SECOND: i128 = 1_000_000_000;

    fn clock(offset_ms: i128, round_trip_ms: i128) -> Clock {
        let before = 1_000 * SECOND;
        let after = before + round_trip_ms * 1_000_000;
        Clock {
            remote: before + (after - before) / 2 + offset_ms * 1_000_000,
            before,
            after,
        }
    }

    #[test]
    fn facts_are_taken_apart_from_the_lines() {
        let r = report(
            "app1",
            "ok    disk: fine\n@keys 0123abcd\n@jwks 89ab http://10.0.0.3:7102/login/.well-known/jwks.json\n@future thing\nFAIL  x; hint: y\n",
            None,
        );
        assert_eq!(r.lines, ["ok    disk: fine", "FAIL  x; hint: y"]);
        assert_eq!(
            r.facts,
            [
                Fact::Keys("0123abcd".into()),
                Fact::Jwks {
                    digest: "89ab".into(),
                    source: "http://10.0.0.3:7102/login/.well-known/jwks.json".into()
                }
            ]
        );
    }

    #[test]
    fn a_clock_fails_only_beyond_what_the_round_trip_can_explain() {
        assert_eq!(clock(0, 200).proven_skew(), 0.0);
        assert!((clock(3_000, 200).offset() - 3.0).abs() < 1e-9);
        // 10.5 s off, read within 200 ms: at least 10.4 s, proven.
        assert!(clock(10_500, 200).proven_skew() > 10.0);
        // 10.5 s "off" but the reading took 2 s: it may be 9.5 s, not proven.
        assert!(clock(10_500, 2_000).proven_skew() < 10.0);
        let lines = across(&[
            report("app1", "", Some(clock(100, 50))),
            report("app2", "", Some(clock(-42_000, 50))),
        ]);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("FAIL  clock: app2 is -42.0 s off"),
            "{}",
            lines[0]
        );
        assert!(!lines[0].contains("app1 is"), "{}", lines[0]);
        let fine = across(&[report("app1", "", Some(clock(100, 50)))]);
        assert!(
            fine[0].starts_with("ok    clock: every host within 10 s"),
            "{}",
            fine[0]
        );
    }

    #[test]
    fn key_folders_and_jwks_must_agree_across_hosts() {
        let same = across(&[
            report("app1", "@keys aa\n@jwks j1 http://a/x\n", None),
            report("app2", "@keys aa\n@jwks j1 http://b/x\n", None),
            report("edge", "", None),
        ]);
        assert_eq!(
            same,
            [
                "ok    signing keys: the same key folder on every login host (app1, app2)",
                "ok    jwks: every login instance and every host's services see the same keys (2 sources)"
            ]
        );
        let differ = across(&[
            report("app1", "@keys aa\n@jwks j1 http://a/x\n", None),
            report("app2", "@keys bb\n@jwks j2 http://b/x\n", None),
        ]);
        assert!(
            differ[0].starts_with(
                "FAIL  signing keys: the login hosts' key folders differ (app1 aa, app2 bb)"
            ),
            "{}",
            differ[0]
        );
        assert!(
            differ[1].starts_with("FAIL  jwks: the keys differ between hosts (j1: app1 http://a/x; j2: app2 http://b/x)"),
            "{}",
            differ[1]
        );
    }
}
