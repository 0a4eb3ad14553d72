//! `flotilla-ops`: the placement checked or rendered, deploy, and doctor.
//!
//!   flotilla-ops check PLACEMENT          checks it, prints what runs where
//!   flotilla-ops deploy PLACEMENT [--dry-run] [--release FILE]
//!   flotilla-ops doctor PLACEMENT         every host's checks, then those across hosts;
//!                                         exit 1 on any FAIL
//!
//! Reads `FLOTILLA_SSH_CONFIG` (an ssh configuration file, passed as `-F`),
//! `FLOTILLA_DEPLOY_READY_SECS` (default 60: how long an instance may take to become
//! ready before the deploy is rolled back) and `FLOTILLA_DOCTOR_MIN_FREE_MB` (passed
//! on to each host's disk check).

use std::path::PathBuf;
use std::process::ExitCode;

use flotilla_ops::deploy::{self, Options};
use flotilla_ops::doctor;
use flotilla_ops::placement::{Placement, Role};

const USAGE: &str = "usage: flotilla-ops check PLACEMENT\n       \
                     flotilla-ops deploy PLACEMENT [--dry-run] [--release FILE]\n       \
                     flotilla-ops doctor PLACEMENT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("check") if args.len() == 2 => check(&args[1]),
        Some("deploy") => match deploy_options(&args[1..]) {
            Ok(options) => match deploy::deploy(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("error: {message}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Some("doctor") if args.len() == 2 && !args[1].starts_with('-') => run_doctor(&args[1]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(64)
        }
    }
}

fn check(path: &str) -> ExitCode {
    match Placement::load(&PathBuf::from(path)) {
        Ok(placement) => {
            for host in &placement.hosts {
                let runs: Vec<String> = host
                    .runs
                    .iter()
                    .map(|r| match r {
                        Role::Service(s, p) => format!("{s}:{p}"),
                        Role::Nginx(p) => format!("nginx:{p}"),
                        Role::Pages => "pages".to_owned(),
                        Role::Postgresql(p) => format!("postgresql:{p}"),
                    })
                    .collect();
                println!(
                    "{} ({}, ssh {}): {}",
                    host.name,
                    host.address,
                    host.ssh,
                    runs.join(" ")
                );
            }
            println!("ok: {path} can work");
            ExitCode::SUCCESS
        }
        Err(refused) => {
            for line in refused.0 {
                eprintln!("error: {line}");
            }
            eprintln!("the placement was refused: nothing was done");
            ExitCode::from(78)
        }
    }
}

fn deploy_options(args: &[String]) -> Result<Options, ExitCode> {
    let usage = || {
        eprintln!("{USAGE}");
        ExitCode::from(64)
    };
    let mut placement = None;
    let mut release = None;
    let mut dry_run = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--dry-run" => dry_run = true,
            "--release" => release = Some(PathBuf::from(rest.next().ok_or_else(usage)?)),
            other if other.starts_with('-') || placement.is_some() => return Err(usage()),
            other => placement = Some(PathBuf::from(other)),
        }
    }
    let ready_secs = match std::env::var("FLOTILLA_DEPLOY_READY_SECS") {
        Err(_) => 60,
        Ok(value) => match value.parse::<u32>() {
            Ok(secs) if (1..=3600).contains(&secs) => secs,
            _ => {
                eprintln!(
                    "error: FLOTILLA_DEPLOY_READY_SECS='{value}': expected seconds from 1 to 3600"
                );
                return Err(ExitCode::from(78));
            }
        },
    };
    Ok(Options {
        placement: placement.ok_or_else(usage)?,
        release,
        dry_run,
        ssh_config: std::env::var_os("FLOTILLA_SSH_CONFIG").map(PathBuf::from),
        ready_secs,
    })
}

fn run_doctor(placement: &str) -> ExitCode {
    let min_free_mb = match std::env::var("FLOTILLA_DOCTOR_MIN_FREE_MB") {
        Err(_) => None,
        Ok(value) => match value.parse::<u32>() {
            Ok(mb) => Some(mb),
            Err(_) => {
                eprintln!(
                    "error: FLOTILLA_DOCTOR_MIN_FREE_MB='{value}': expected megabytes, e.g. 1024"
                );
                return ExitCode::from(78);
            }
        },
    };
    let options = doctor::Options {
        placement: PathBuf::from(placement),
        ssh_config: std::env::var_os("FLOTILLA_SSH_CONFIG").map(PathBuf::from),
        min_free_mb,
    };
    match doctor::doctor(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(refused) => {
            for line in refused.lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(78)
        }
    }
}
