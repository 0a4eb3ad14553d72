//! The systemd units in systemd/, every one of them (the folder is read, so a unit
//! added later is covered): `systemd-analyze verify` without a word of complaint, and
//! for services an exposure of at most 2.0 from `systemd-analyze security
//! --offline=true`, printed for each unit.
//!
//! verify wants the ExecStart binaries to exist and the system's own units
//! (sysinit.target, …): both run against a temporary root (`--root=`) holding this
//! machine's /usr/lib/systemd/system, the units under /etc/systemd/system, and an
//! executable stand-in for each binary of the release under /opt/flotilla/current/bin.
//! A template (`flotilla@.service`) is checked as each service instance.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use flotilla_testkit::{SERVICES, TempDir, in_ci, workspace_root};

use crate::release::RELEASE_BINARIES;

const MOST_EXPOSURE: f64 = 2.0;

fn analyze(root: &Path, args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(format!("--root={}", root.display()))
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// "→ Overall exposure level for flotilla@signup.service: 1.4 OK 🙂" → 1.4
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    line.rsplit_once(": ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn every_unit_verifies_and_every_service_is_exposed_at_most_2() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !in_ci(),
            "systemd-analyze is missing in CI ('apt-get install systemd')"
        );
        eprintln!("SKIPPED (units): systemd-analyze is missing ('apt-get install systemd')");
        return;
    }
    let root = TempDir::new("units-root");
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|d| Path::new(d).join("sysinit.target").is_file())
        .expect("this machine's systemd units (sysinit.target) are somewhere");
    std::fs::create_dir_all(root.path().join("usr/lib/systemd")).unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(system_units)
        .arg(root.path().join("usr/lib/systemd/system"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", text(&copied));
    let bin = root.path().join("opt/flotilla/current/bin");
    std::fs::create_dir_all(&bin).unwrap();
    // What units run: the release's binaries, and its scripts (the backup timer's).
    let scripts = root.path().join("opt/flotilla/current/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let programs = RELEASE_BINARIES
        .iter()
        .map(|name| bin.join(name))
        .chain(["backup", "restore"].map(|name| scripts.join(name)));
    for path in programs {
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let installed = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&installed).unwrap();
    let mut units: Vec<String> = std::fs::read_dir(workspace_root().join("systemd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            [
                ".service", ".target", ".timer", ".socket", ".path", ".mount",
            ]
            .iter()
            .any(|suffix| name.ends_with(suffix))
        })
        .collect();
    units.sort();
    assert!(units.iter().any(|u| u == "flotilla@.service"), "{units:?}");
    for unit in &units {
        std::fs::copy(
            workspace_root().join("systemd").join(unit),
            installed.join(unit),
        )
        .unwrap();
    }

    let mut failures = Vec::new();
    for unit in &units {
        // A template is checked as each service's instance.
        let names: Vec<String> = match unit.split_once("@.") {
            Some((prefix, suffix)) => SERVICES
                .iter()
                .map(|(service, _)| format!("{prefix}@{service}.{suffix}"))
                .collect(),
            None => vec![unit.clone()],
        };
        for name in &names {
            let verified = analyze(root.path(), &["verify", name]);
            let said = text(&verified);
            if !verified.status.success() || !said.trim().is_empty() {
                failures.push(format!("verify {name}:\n{said}"));
            }
        }
        if !unit.ends_with(".service") {
            println!(
                "{unit}: verified (a {} has no exposure score)",
                unit.rsplit('.').next().unwrap()
            );
            continue;
        }
        let report = analyze(root.path(), &["security", "--offline=true", &names[0]]);
        match exposure(&text(&report)) {
            Some(score) => {
                println!("{unit}: verified, exposure {score:.1}");
                if score > MOST_EXPOSURE {
                    failures.push(format!(
                        "{unit}: exposure {score:.1} above {MOST_EXPOSURE:.1}:\n{}",
                        text(&report)
                    ));
                }
            }
            None => failures.push(format!("{unit}: no exposure score:\n{}", text(&report))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
