//! `make release` (scripts/release) and its promise: the tarball's binaries run on a
//! stock Debian 12 server with nothing but the base system, nginx and an ssh server.
//! The server is a root file system made by `debootstrap --variant=minbase` (cached
//! under target/ops-rootfs/ by scripts/clean-root.sh), run in mount and PID namespaces
//! of its own; the test talks to it over the shared network. Ubuntu 22.04 cannot be
//! fetched here: the release script's glibc ceiling (2.35) stands for it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flotilla_testkit::{Proc, TempDir, free_port, in_ci, wait_until, workspace_root};
use reqwest::StatusCode;

/// What bin/ holds: every service, the page generator and the deploy tool, never
/// flotilla-seed.
pub const RELEASE_BINARIES: [&str; 7] = [
    "flotilla-admin",
    "flotilla-login",
    "flotilla-ops",
    "flotilla-pages",
    "flotilla-profile",
    "flotilla-signup",
    "flotilla-worker",
];

/// The newest glibc a release may need (Ubuntu 22.04's).
const GLIBC_CEILING: (u32, u32) = (2, 35);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn both(output: &Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// `scripts/release --profile debug` with `args` after it, and `env` added.
fn release(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(workspace_root().join("scripts/release"))
        .args(["--profile", "debug"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Makes a release into `out` and returns the tarball's path.
fn make_release(out: &Path, env: &[(&str, &str)]) -> PathBuf {
    let made = release(&["--out", out.to_str().unwrap()], env);
    assert!(
        made.status.success(),
        "scripts/release failed:\n{}",
        both(&made)
    );
    let stdout = text(&made.stdout);
    let tarball = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(
        tarball.is_file(),
        "no tarball at {stdout:?}:\n{}",
        both(&made)
    );
    tarball
}

fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}",
        both(&output)
    );
    text(&output.stdout)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}

fn has_debootstrap() -> bool {
    Command::new("sh")
        .args([
            "-c",
            "command -v debootstrap || test -x /usr/sbin/debootstrap",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A missing component: a failure in CI, a skip with the reason elsewhere.
fn skip(why: &str) {
    assert!(!in_ci(), "CI cannot skip the clean-server test: {why}");
    eprintln!("SKIPPED (release on a clean Debian 12): {why}");
}

/// The clean Debian 12 root, made once (scripts/clean-root.sh) and reused.
fn clean_root() -> Option<PathBuf> {
    if !is_root() {
        skip("it needs root (debootstrap, chroot, mounts in a namespace of its own)");
        return None;
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let dir = target.join("ops-rootfs/bookworm");
    let started = Instant::now();
    let made = Command::new(workspace_root().join("scripts/clean-root.sh"))
        .arg(&dir)
        .output()
        .unwrap();
    if !made.status.success() {
        if !has_debootstrap() {
            skip(&format!(
                "debootstrap cannot be installed here:\n{}",
                both(&made)
            ));
            return None;
        }
        panic!("scripts/clean-root.sh failed:\n{}", both(&made));
    }
    eprintln!(
        "clean root {} ready in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Some(dir)
}

/// The glibc version `2.34` as (2, 34).
fn glibc_version(version: &str) -> (u32, u32) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Everything the tarball promises, read from it without a server: its name, the
/// checksum beside it, owners, one top folder, the MANIFEST, stripped binaries, the
/// folders and a SHA256SUMS naming every file. Returns the version.
fn check_tarball(tarball: &Path) -> String {
    let out = tarball.parent().unwrap();
    let file_name = tarball.file_name().unwrap().to_str().unwrap();
    run("sha256sum", &["-c", &format!("{file_name}.sha256")], out);

    let listing = run("tar", &["--numeric-owner", "-tvzf", file_name], out);
    let top = listing
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], "0/0", "owner of {line}");
        assert!(
            fields.last().unwrap().starts_with(&format!("{top}/")),
            "not under one top folder: {line}"
        );
    }

    let unpacked = TempDir::new("release-unpacked");
    run(
        "tar",
        &[
            "-xzf",
            tarball.to_str().unwrap(),
            "-C",
            unpacked.path().to_str().unwrap(),
        ],
        out,
    );
    let top_dir = unpacked.path().join(&top);
    let manifest_text = std::fs::read_to_string(top_dir.join("MANIFEST")).unwrap();
    let manifest: BTreeMap<&str, &str> = manifest_text
        .lines()
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {l}"))
        })
        .collect();
    assert_eq!(
        manifest.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "built_at", "commit", "dirty", "glibc", "name", "needs", "target", "version"
        ]),
        "{manifest_text}"
    );
    assert_eq!(manifest["name"], "flotilla");
    let version = manifest["version"].to_owned();
    assert_eq!(top, format!("flotilla-{version}"));
    assert_eq!(
        file_name,
        format!("flotilla-{version}-linux-{}.tar.gz", std::env::consts::ARCH)
    );
    let root = workspace_root();
    let commit = run("git", &["rev-parse", "HEAD"], &root);
    assert_eq!(manifest["commit"], commit.trim());
    let cargo_toml = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let workspace_version = cargo_toml
        .split("[workspace.package]")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    let expected = format!("{workspace_version}-{}", &commit[..12]);
    match manifest["dirty"] {
        "true" => assert_eq!(version, format!("{expected}-dirty")),
        "false" => assert_eq!(version, expected),
        other => panic!("dirty={other}"),
    }
    assert!(manifest["target"].contains("linux"), "{manifest_text}");
    assert!(
        glibc_version(manifest["glibc"]) <= GLIBC_CEILING,
        "{manifest_text}"
    );
    let needs: Vec<&str> = manifest["needs"].split(' ').collect();
    assert!(
        needs.contains(&"libc.so.6") && needs.iter().all(|n| n.contains(".so")),
        "{manifest_text}"
    );
    assert!(
        manifest["built_at"].len() == 20 && manifest["built_at"].ends_with('Z'),
        "{manifest_text}"
    );

    let bins: Vec<String> = std::fs::read_dir(top_dir.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(bins, RELEASE_BINARIES);
    for bin in RELEASE_BINARIES {
        let sections = run(
            "readelf",
            &["-S", "--wide", &format!("bin/{bin}")],
            &top_dir,
        );
        assert!(
            !sections.contains(".symtab") && !sections.contains(".debug_info"),
            "{bin} is not stripped"
        );
    }
    for file in [
        "proxy/upstreams.conf",
        "proxy/server.conf.in",
        "proxy/nginx.conf.in",
        "systemd/flotilla@.service",
        "systemd/flotilla.env.example",
        "scripts/render-proxy.sh",
        "scripts/lib.sh",
    ] {
        assert!(top_dir.join(file).is_file(), "{file} is missing");
    }

    // SHA256SUMS names every file but itself.
    let listed: BTreeSet<String> = std::fs::read_to_string(top_dir.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_owned())
        .collect();
    let files: BTreeSet<String> = run("find", &[".", "-type", "f", "-printf", "%P\\n"], &top_dir)
        .lines()
        .filter(|f| *f != "SHA256SUMS")
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, files);
    version
}

/// The clean server's processes: every one of them dies with the PID namespace's
/// first process, which `unshare --kill-child` kills when unshare dies. unshare blocks
/// SIGTERM, so it gets SIGKILL, on drop and (setpriv --pdeathsig) when the test dies.
struct Server(Proc);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.signal(libc::SIGKILL);
        self.0.wait_exit(Duration::from_secs(10));
    }
}

fn refuses_connections(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn a_release_runs_on_a_clean_debian_12_server() {
    let started = Instant::now();
    let Some(root) = clean_root() else { return };
    let root_ready = started.elapsed();

    let out = TempDir::new("release");
    let tarball = make_release(out.path(), &[]);
    let released = started.elapsed() - root_ready;
    let version = check_tarball(&tarball);

    let http = free_port();
    let (signup, login, profile) = (free_port(), free_port(), free_port());
    let work = TempDir::new("clean-server");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ops/clean-root-fleet.sh");
    let mut command = Command::new("setpriv");
    command
        .args([
            "--pdeathsig",
            "KILL",
            "unshare",
            "--mount",
            "--pid",
            "--fork",
        ])
        .args(["--kill-child", "bash"])
        .arg(&fixture)
        .arg(&root)
        .arg(work.path())
        .arg(&tarball)
        .env("FLOTILLA_TEST_HTTP_PORT", http.to_string())
        .env("FLOTILLA_TEST_SIGNUP_PORT", signup.to_string())
        .env("FLOTILLA_TEST_LOGIN_PORT", login.to_string())
        .env("FLOTILLA_TEST_PROFILE_PORT", profile.to_string())
        .env("FLOTILLA_TEST_BUS_WAKE_PORT", free_port().to_string())
        .env("FLOTILLA_TEST_BUS_IN_PORT", free_port().to_string())
        .env("FLOTILLA_TEST_BUS_OUT_PORT", free_port().to_string());
    let mut server = Server(Proc::spawn("clean server", command));

    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = |path: &str| format!("http://127.0.0.1:{http}{path}");
    let ready = |path: &str| {
        client
            .get(url(path))
            .send()
            .is_ok_and(|r| r.status() == StatusCode::OK)
    };
    let up = wait_until(Duration::from_secs(90), || {
        server.0.try_exit().is_some()
            || ["/login/ready", "/signup/ready", "/profile/ready"]
                .iter()
                .all(|path| ready(path))
    });
    assert!(
        up && server.0.try_exit().is_none(),
        "the release did not come up on the clean server:\n{}",
        server.0.logs()
    );
    let logs = server.0.logs();
    assert!(logs.contains("ldd: every library found"), "{logs}");
    assert!(logs.contains("Debian GNU/Linux 12"), "{logs}");

    // Through the server's own nginx, from outside it.
    let signed_up = client
        .post(url("/signup"))
        .json(&serde_json::json!({
            "email": "first@example.org",
            "password": "correct horse battery staple"
        }))
        .send()
        .unwrap();
    assert_eq!(
        signed_up.status(),
        StatusCode::ACCEPTED,
        "{}\n{}",
        signed_up.text().unwrap_or_default(),
        server.0.logs()
    );
    let login_ready = client.get(url("/login/ready")).send().unwrap();
    assert_eq!(login_ready.status(), StatusCode::OK);
    let fleet_up = started.elapsed() - root_ready - released;

    drop(server);
    for port in [http, signup, login, profile] {
        assert!(
            wait_until(Duration::from_secs(10), || refuses_connections(port)),
            "port {port} still answers after the server was torn down"
        );
    }
    // The cached root is as debootstrap left it: the server wrote to its overlay.
    for path in ["opt/flotilla", "etc/flotilla", "var/lib/flotilla"] {
        assert!(
            !root.join(path).exists(),
            "{path} was written to the cached root"
        );
    }
    eprintln!(
        "release {version}: clean root {:.1} s, scripts/release --profile debug {:.1} s, \
         unpacked, checked and serving {:.1} s, total {:.1} s",
        root_ready.as_secs_f64(),
        released.as_secs_f64(),
        fleet_up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_release_script_refuses_bad_input_and_a_too_new_glibc_and_repeats_itself() {
    let out = TempDir::new("release-refusals");
    let out_arg = out.path().to_str().unwrap();

    for args in [vec!["--profile", "fast"], vec!["--out"], vec!["--shiny"]] {
        let refused = Command::new(workspace_root().join("scripts/release"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            refused.status.code(),
            Some(64),
            "{args:?}: {}",
            both(&refused)
        );
        assert!(text(&refused.stderr).contains("usage: "), "{args:?}");
    }
    let refused = release(
        &["--out", out_arg],
        &[("FLOTILLA_RELEASE_GLIBC_MAX", "two")],
    );
    assert_eq!(refused.status.code(), Some(78), "{}", both(&refused));
    assert!(text(&refused.stderr).contains("FLOTILLA_RELEASE_GLIBC_MAX='two'"));

    // Binaries that need a newer glibc than the oldest promised system: refused, and
    // nothing is left in the output folder.
    let refused = release(
        &["--out", out_arg],
        &[("FLOTILLA_RELEASE_GLIBC_MAX", "2.17")],
    );
    assert!(!refused.status.success(), "{}", both(&refused));
    let said = text(&refused.stderr);
    assert!(
        said.contains("the binaries need glibc 2.") && said.contains("newer than 2.17"),
        "{said}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    // The same commit and SOURCE_DATE_EPOCH make the same bytes.
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let first = TempDir::new("release-first");
    let second = TempDir::new("release-second");
    let a = make_release(first.path(), &epoch);
    let b = make_release(second.path(), &epoch);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two releases of one tree differ"
    );
    let manifest = run(
        "tar",
        &["-xzOf", a.to_str().unwrap(), "--wildcards", "*/MANIFEST"],
        first.path(),
    );
    assert!(
        manifest.contains("built_at=2023-11-14T22:13:20Z"),
        "{manifest}"
    );
}
