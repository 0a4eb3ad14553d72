//! Several hosts on one machine, and the fleet deployed across them.
//!
//! `scripts/test-hosts.sh` makes each host a network namespace on a bridge of its own,
//! with its own /etc, flotilla folders, logs, /run, /tmp, process ids and a real sshd,
//! which this process (the deploying side, on the bridge too) reaches with
//! `ssh -F DIR/ssh_config`. On them: PostgreSQL on `db`, and the fleet placed by a
//! placement file and installed by `scripts/deploy`; then the journey (signup, the
//! mailed link, sign-in, profile) through the edge's nginx, one service moved to another
//! host, and a release that never becomes ready rolled back. Needs root and a kernel
//! that allows namespaces: in CI their absence fails these tests, elsewhere it skips
//! them with the reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use flotilla_testkit::{TempDir, in_ci, link_param, signal_group, wait_until, workspace_root};
use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The output of a command that must succeed, trimmed.
fn ok(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what}: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

/// Hosts made by `scripts/test-hosts.sh`; stopped (every process killed, namespaces and
/// bridge removed) when dropped, however the test ends.
struct Hosts {
    addresses: BTreeMap<String, String>,
    dir: TempDir,
}

impl Hosts {
    fn script() -> PathBuf {
        workspace_root().join("scripts/test-hosts.sh")
    }

    /// Why this machine cannot make hosts, if it cannot: a failure in CI, a skip
    /// elsewhere.
    fn unavailable() -> Option<String> {
        let check = Command::new(Self::script()).arg("check").output().unwrap();
        if check.status.success() {
            return None;
        }
        let reason = format!("{}{}", text(&check.stdout), text(&check.stderr));
        assert!(
            !in_ci(),
            "CI is set, and this machine cannot make the hosts of the multi-host tests: {reason}"
        );
        Some(reason.trim().to_owned())
    }

    /// One host per name, or `None` (after saying why) where the machine cannot make
    /// them, outside CI.
    fn start(names: &[&str]) -> Option<Self> {
        if let Some(reason) = Self::unavailable() {
            eprintln!("SKIPPED (hosts): {reason}");
            return None;
        }
        // The guard exists before the start: a start that fails half way is stopped too.
        let mut hosts = Self {
            addresses: BTreeMap::new(),
            dir: TempDir::new("hosts"),
        };
        let started = Instant::now();
        let output = Command::new(Self::script())
            .arg("start")
            .arg(hosts.dir())
            .args(names)
            .output()
            .unwrap();
        let printed = ok("test-hosts.sh start", output);
        for line in printed.lines() {
            let (name, address) = line.split_once(' ').unwrap();
            hosts.addresses.insert(name.to_owned(), address.to_owned());
        }
        assert_eq!(
            hosts.addresses.len(),
            names.len(),
            "one address per host: {printed}"
        );
        eprintln!(
            "{} hosts started in {:.1} s: {}",
            names.len(),
            started.elapsed().as_secs_f64(),
            printed.replace('\n', ", ")
        );
        Some(hosts)
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn address(&self, host: &str) -> &str {
        &self.addresses[host]
    }

    fn ssh_config(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    /// Runs a shell command on a host, over ssh as root.
    fn ssh(&self, host: &str, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.ssh_config())
            .arg(host)
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A file of a host, from outside: `file("app1", "var-lib-flotilla/mail")` is
    /// app1's `/var/lib/flotilla/mail` (see test-hosts.sh for the folders).
    fn file(&self, host: &str, path: &str) -> PathBuf {
        self.dir().join(host).join(path)
    }

    /// The command lines of every process of a host, as this side reads them.
    fn processes(&self, host: &str) -> Vec<String> {
        let output = Command::new(Self::script())
            .arg("pids")
            .arg(self.dir())
            .arg(host)
            .output()
            .unwrap();
        ok("test-hosts.sh pids", output)
            .split_whitespace()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|raw| text(&raw).replace('\0', " ").trim_end().to_owned())
            .collect()
    }

    /// A PostgreSQL cluster on `host` with a role and a database, reached with the
    /// password from the hosts' network; its URL without the password.
    fn postgres(&self, host: &str, user: &str, database: &str, password: &str) -> String {
        let mut child = Command::new(Self::script())
            .arg("postgres")
            .arg(self.dir())
            .args([host, user, database])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        ok("test-hosts.sh postgres", child.wait_with_output().unwrap())
    }

    fn stop(&self) -> Output {
        Command::new(Self::script())
            .arg("stop")
            .arg(self.dir())
            .output()
            .unwrap()
    }

    /// The names this run gave its namespaces and bridge (test-hosts.sh's state file).
    fn kernel_objects(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir().join("state"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("netns ")
                    .or_else(|| l.strip_prefix("bridge "))
            })
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let output = self.stop();
        if !output.status.success() {
            eprintln!("test-hosts.sh stop failed: {}", text(&output.stderr));
        }
    }
}

#[test]
fn test_hosts_refuses_bad_arguments() {
    let dir = TempDir::new("hosts-args");
    let run = |args: &[&str]| Command::new(Hosts::script()).args(args).output().unwrap();
    let d = dir.path().to_str().unwrap();
    for (args, problem) in [
        (vec!["start", d], "usage:"),
        (vec!["start", d, "Edge"], "host name 'Edge'"),
        (vec!["start", d, "app1", "app1"], "host 'app1' given twice"),
        (
            vec!["start", "/tmp/with space", "app1"],
            "DIR '/tmp/with space'",
        ),
        (
            vec!["postgres", d, "db", "Flotilla", "flotilla"],
            "USER 'Flotilla'",
        ),
        (vec!["launch", d], "usage:"),
    ] {
        let output = run(&args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(
            text(&output.stderr).contains(problem),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(!dir.path().join("state").exists(), "nothing was made");
    // Stopping where nothing runs is fine, as often as wanted.
    for _ in 0..2 {
        let output = run(&["stop", d]);
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

#[test]
fn hosts_are_machines_of_their_own_reached_over_ssh() {
    let Some(hosts) = Hosts::start(&["alpha", "beta", "db"]) else {
        return;
    };
    // Each answers ssh, by its name and by its address, as itself.
    for (name, address) in &hosts.addresses {
        assert_eq!(ok("hostname", hosts.ssh(name, "hostname")), *name);
        assert_eq!(
            ok(
                "hostname",
                hosts.ssh(&format!("root@{address}"), "hostname")
            ),
            *name
        );
        let addresses = ok("ip", hosts.ssh(name, "ip -4 -o addr show dev eth0"));
        assert!(addresses.contains(&format!("{address}/24")), "{addresses}");
    }

    // Its own /etc (a user added there is nobody else's) and its own folders, which
    // this side reads from outside.
    let marker = format!("flotilla-hosts-{}", std::process::id());
    ok(
        "write on alpha",
        hosts.ssh(
            "alpha",
            &format!(
                "echo alpha > /etc/{marker} && echo kept > /var/lib/flotilla/{marker} && \
                 useradd --system --no-create-home {marker}"
            ),
        ),
    );
    let read =
        |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(
        read(hosts.file("alpha", &format!("etc/{marker}"))),
        "alpha\n"
    );
    assert_eq!(
        read(hosts.file("alpha", &format!("var-lib-flotilla/{marker}"))),
        "kept\n"
    );
    assert!(read(hosts.file("alpha", "etc/passwd")).contains(&format!("{marker}:")));
    assert!(
        !Path::new("/etc").join(&marker).exists(),
        "the machine's /etc is untouched"
    );
    assert!(!Path::new("/var/lib/flotilla").join(&marker).exists());
    assert!(!read(PathBuf::from("/etc/passwd")).contains(&format!("{marker}:")));
    let elsewhere = hosts.ssh(
        "beta",
        &format!("test -e /etc/{marker} || test -e /var/lib/flotilla/{marker} || id {marker}"),
    );
    assert!(
        !elsewhere.status.success(),
        "beta has alpha's files or user"
    );

    // A process started with setsid outlives its ssh session, which ends at once; only
    // its own host sees it.
    let started = Instant::now();
    ok(
        "setsid on alpha",
        hosts.ssh("alpha", "setsid sleep 3600 </dev/null >/dev/null 2>&1 &"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the session waited for it"
    );
    assert!(
        wait_until(Duration::from_secs(5), || hosts
            .processes("alpha")
            .iter()
            .any(|c| c == "sleep 3600")),
        "{:?}",
        hosts.processes("alpha")
    );
    ok("pgrep on alpha", hosts.ssh("alpha", "pgrep -x sleep"));
    assert!(
        !hosts.ssh("beta", "pgrep -x sleep").status.success(),
        "beta sees alpha's processes"
    );

    // The hosts reach each other.
    ok(
        "beta to alpha",
        hosts.ssh(
            "beta",
            &format!("exec 3<>/dev/tcp/{}/22", hosts.address("alpha")),
        ),
    );

    // PostgreSQL on db: the password opens it from another host and from this side,
    // and nothing else does.
    let password = format!("pw-{:016x}", rand::random::<u64>());
    let url = hosts.postgres("db", "flotilla", "flotilla", &password);
    assert_eq!(
        url,
        format!("postgres://flotilla@{}:5432/flotilla", hosts.address("db"))
    );
    let client = ok(
        "psql from beta",
        hosts.ssh(
            "beta",
            &format!("PGPASSWORD={password} psql '{url}' -AtXc 'SELECT inet_client_addr()'"),
        ),
    );
    assert_eq!(client, hosts.address("beta"));
    let psql = |password: &str| {
        Command::new("psql")
            .arg(&url)
            .args(["-AtXc", "SELECT current_user"])
            .env("PGPASSWORD", password)
            .output()
            .unwrap()
    };
    assert_eq!(ok("psql from this side", psql(&password)), "flotilla");
    let refused = psql("not-the-password");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("password authentication failed"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        !std::fs::read_to_string(hosts.file("db", "var-log/postgresql/flotilla.log"))
            .unwrap()
            .contains(&password),
        "the server's log keeps no password"
    );

    // stop: every process of every host ends, the namespaces and the bridge go; twice
    // is fine.
    let pids: Vec<String> = ["alpha", "beta", "db"]
        .iter()
        .flat_map(|host| {
            let output = Command::new(Hosts::script())
                .arg("pids")
                .arg(hosts.dir())
                .arg(host)
                .output()
                .unwrap();
            ok("pids", output)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        pids.len() >= 10,
        "sshd, sleep, PostgreSQL's processes: {pids:?}"
    );
    let objects = hosts.kernel_objects();
    assert_eq!(
        objects.len(),
        4,
        "three namespaces and a bridge: {objects:?}"
    );
    let started = Instant::now();
    ok("stop", hosts.stop());
    eprintln!(
        "3 hosts stopped in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for pid in &pids {
        // Gone, or dead and waiting for its parent to read its status (a zombie).
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'));
        assert!(!running, "process {pid} outlived stop: {state}");
    }
    let namespaces = ok(
        "ip netns",
        Command::new("ip").args(["netns", "list"]).output().unwrap(),
    );
    let links = ok(
        "ip link",
        Command::new("ip").args(["-o", "link"]).output().unwrap(),
    );
    for object in &objects {
        assert!(
            !namespaces.contains(object.as_str()),
            "{object} is left: {namespaces}"
        );
        assert!(
            !links.contains(&format!(": {object}:")),
            "{object} is left: {links}"
        );
    }
    ok("stop again", hosts.stop());
}

// ---------------------------------------------------------------------------------
// The fleet across hosts, deployed with scripts/deploy.

/// The release tarball that a deploy installs: `scripts/release`'s, built from the
/// debug binaries `make test` built.
fn release_tarball(out: &Path) -> PathBuf {
    let output = Command::new(workspace_root().join("scripts/release"))
        .args(["--profile", "debug", "--out"])
        .arg(out)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let printed = ok("scripts/release", output);
    PathBuf::from(printed.lines().last().unwrap())
}

/// `flotilla-<version>-linux-<arch>.tar.gz` → `<version>`.
fn version_of(tarball: &Path) -> String {
    let name = tarball.file_name().unwrap().to_str().unwrap();
    let rest = name.strip_prefix("flotilla-").unwrap();
    rest[..rest.rfind("-linux-").unwrap()].to_owned()
}

/// The release again under another version, its `flotilla-profile` a program that
/// starts and never becomes ready (nor listens). Its manifest and checksums are
/// rewritten, so that nothing but its readiness gives it away.
fn broken_release(tarball: &Path, out: &Path) -> PathBuf {
    let script = r#"
        set -euo pipefail
        tarball=$1 out=$2 commit=badc0ffee0ff0000000000000000000000000000
        stage=$out/stage
        rm -rf "$stage"
        mkdir -p "$stage"
        tar -C "$stage" -xzf "$tarball"
        old=$(cd "$stage" && ls)
        base=${old#flotilla-}
        base=${base%%-*}
        new=$base-${commit:0:12}
        arch=$(basename "$tarball" .tar.gz)
        arch=${arch##*-linux-}
        mv "$stage/$old" "$stage/flotilla-$new"
        dir=$stage/flotilla-$new
        cat >"$dir/bin/flotilla-profile" <<EOF
#!/bin/sh
# flotilla-profile of a broken release (the multi-host test's): it runs, and never
# becomes ready.
case "\${1:-serve}" in
version) echo "flotilla-profile $new (broken: never ready)" ;;
serve) while :; do sleep 1; done ;;
*) echo "flotilla-profile of a broken release: only serve and version" >&2; exit 1 ;;
esac
EOF
        chmod 0755 "$dir/bin/flotilla-profile"
        sed -i -e "s/^version=.*/version=$new/" -e "s/^commit=.*/commit=$commit/" \
            -e 's/^dirty=.*/dirty=false/' "$dir/MANIFEST"
        (cd "$dir" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort |
            xargs -d '\n' sha256sum >SHA256SUMS)
        name=flotilla-$new-linux-$arch.tar.gz
        tar -C "$stage" -czf "$out/$name" "flotilla-$new"
        (cd "$out" && sha256sum "$name" >"$name.sha256")
        rm -rf "$stage"
        echo "$out/$name"
    "#;
    std::fs::create_dir_all(out).unwrap();
    let output = Command::new("bash")
        .args(["-c", script, "broken-release"])
        .arg(tarball)
        .arg(out)
        .output()
        .unwrap();
    PathBuf::from(ok("the broken release", output))
}

/// The placement file of the test: `app1` and `app2` run what they are given.
fn placement(hosts: &Hosts, app1: &[&str], app2: &[&str]) -> String {
    let list = |run: &[&str]| {
        run.iter()
            .map(|what| format!("\"{what}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"# The multi-host test's fleet (shared/testkit/tests/ops/multihost.rs).
public_url = "http://{edge}"
secrets = "secrets.env"

[database]
backend = "postgresql"
name = "flotilla"
user = "flotilla"

[hosts.edge]
ssh = "root@edge"
address = "{edge}"
run = ["nginx:80", "pages"]

[hosts.app1]
ssh = "root@app1"
address = "{app1_address}"
run = [{app1}]

[hosts.app2]
ssh = "root@app2"
address = "{app2_address}"
run = [{app2}]

[hosts.db]
ssh = "root@db"
address = "{db}"
run = ["postgresql:5432"]

[env]
FLOTILLA_MAIL_TRANSPORT = "file"
FLOTILLA_LOG = "info"
"#,
        edge = hosts.address("edge"),
        app1_address = hosts.address("app1"),
        app2_address = hosts.address("app2"),
        db = hosts.address("db"),
        app1 = list(app1),
        app2 = list(app2),
    )
}

/// What a deploy did: whether it succeeded, its output, how long it took.
struct Deployed {
    success: bool,
    log: String,
    took: Duration,
}

/// Runs `scripts/deploy PLACEMENT --release TARBALL` with the hosts' ssh configuration
/// (`FLOTILLA_SSH_CONFIG`), killed after
/// `timeout`. Its output goes to DIR/`log_name` as well.
fn deploy(
    hosts: &Hosts,
    placement: &Path,
    tarball: &Path,
    log_name: &str,
    timeout: Duration,
) -> Deployed {
    let log_path = hosts.dir().join(log_name);
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(workspace_root().join("scripts/deploy"))
        .arg(placement)
        .arg("--release")
        .arg(tarball)
        .env("FLOTILLA_SSH_CONFIG", hosts.ssh_config())
        // The broken release's profile never becomes ready: give up on it sooner.
        .env("FLOTILLA_DEPLOY_READY_SECS", "20")
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout {
            signal_group(child.id() as i32, libc::SIGKILL);
            let _ = child.wait();
            panic!(
                "scripts/deploy ran longer than {timeout:?}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let deployed = Deployed {
        success: status.success(),
        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
        took: started.elapsed(),
    };
    eprintln!(
        "deploy ({log_name}): {} in {:.1} s",
        if deployed.success { "done" } else { "failed" },
        deployed.took.as_secs_f64()
    );
    deployed
}

/// Runs `scripts/doctor PLACEMENT` from the deploying side, as a sysadmin does: its
/// exit status and its lines (each a host's name, then `ok`, `FAIL` or `skip`).
fn doctor(hosts: &Hosts, placement: &Path) -> (i32, String) {
    let started = Instant::now();
    let output = Command::new(workspace_root().join("scripts/doctor"))
        .arg(placement)
        .env("FLOTILLA_SSH_CONFIG", hosts.ssh_config())
        .env("FLOTILLA_BIN_DIR", flotilla_testkit::bin_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&output.stdout);
    eprintln!(
        "doctor ({:.1} s):\n{out}{}",
        started.elapsed().as_secs_f64(),
        text(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), out)
}

/// doctor's `FAIL` lines, each without the host's name's padding.
fn doctor_failures(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let (host, rest) = l.split_once(' ')?;
            let rest = rest.trim_start();
            rest.starts_with("FAIL ").then(|| format!("{host} {rest}"))
        })
        .collect()
}

/// The public side: requests to the edge's nginx, as a browser's API client sends them.
struct Edge {
    client: Client,
    origin: String,
    mail_dir: PathBuf,
}

impl Edge {
    fn new(hosts: &Hosts, worker_host: &str) -> Self {
        Self {
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            origin: format!("http://{}", hosts.address("edge")),
            mail_dir: hosts.file(worker_host, "var-lib-flotilla/mail"),
        }
    }

    fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.origin))
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// The mails the worker's file transport wrote to `to`.
    fn mails_to(&self, to: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.mail_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|m| {
                m.lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
            })
            .collect()
    }

    /// An access token for the account, from a sign-in through nginx.
    fn sign_in(&self, email: &str) -> String {
        let (status, body) = self.post("/login", json!({"email": email, "password": PASSWORD}));
        assert_eq!(status, StatusCode::OK, "sign-in of {email}: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    fn me(&self, access: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}/profile/me", self.origin))
            .bearer_auth(access)
            .send()
            .unwrap();
        let status = response.status();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Signup → the mailed link → verification → sign-in → the profile, all through
    /// nginx, the mail read from the worker host's folder.
    fn journey(&self, email: &str) {
        let (status, body) = self.post("/signup", json!({"email": email, "password": PASSWORD}));
        assert_eq!(status, StatusCode::ACCEPTED, "signup of {email}: {body}");
        assert!(
            wait_until(Duration::from_secs(30), || !self.mails_to(email).is_empty()),
            "no mail to {email} in {}",
            self.mail_dir.display()
        );
        let token = link_param(&self.mails_to(email)[0], "token").expect("the mail has a link");
        let (status, body) = self.post("/signup/verify", json!({"token": token}));
        assert_eq!(
            (status, &body),
            (StatusCode::OK, &json!({"status": "verified"}))
        );
        let access = self.sign_in(email);
        let (status, me) = self.me(&access);
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["email"], email);
    }
}

/// A GET straight to an instance (not through nginx): its status, or 0 when nothing
/// answers.
fn direct_status(address: &str, port: u16, path: &str) -> u16 {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{address}:{port}{path}"))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn listens(address: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{address}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

#[test]
fn a_fleet_across_four_hosts_deploys_moves_a_service_and_rolls_back_a_broken_release() {
    let Some(hosts) = Hosts::start(&["edge", "app1", "app2", "db"]) else {
        return;
    };
    let password = format!("{:032x}", rand::random::<u128>());
    hosts.postgres("db", "flotilla", "flotilla", &password);

    // The release, the placement and the secrets (mode 0600), as a sysadmin has them.
    let tarball = release_tarball(&hosts.dir().join("dist"));
    let good = version_of(&tarball);
    let config = hosts.dir().join("deploy");
    std::fs::create_dir_all(&config).unwrap();
    let secrets = config.join("secrets.env");
    std::fs::write(
        &secrets,
        format!(
            "DATABASE_PASSWORD={password}\nFLOTILLA_BUS_SECRET={:032x}{:032x}\n\
             FLOTILLA_FACTOR_KEY={:032x}{:032x}\n",
            rand::random::<u128>(),
            rand::random::<u128>(),
            rand::random::<u128>(),
            rand::random::<u128>()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let placement_file = config.join("placement.toml");
    let app1 = ["signup:7101", "login:7102", "profile:7103", "worker:7105"];
    std::fs::write(
        &placement_file,
        placement(&hosts, &app1, &["login:7102", "profile:7103", "admin:7104"]),
    )
    .unwrap();

    // 1. Deploy; the journey through the edge.
    let first = deploy(
        &hosts,
        &placement_file,
        &tarball,
        "deploy-1.log",
        Duration::from_secs(600),
    );
    assert!(first.success, "the first deploy failed:\n{}", first.log);
    let edge = Edge::new(&hosts, "app1");
    edge.journey("ada@example.org");
    for host in ["edge", "app1", "app2"] {
        let current = std::fs::read_link(hosts.file(host, "opt-flotilla/current")).unwrap();
        assert!(
            current.ends_with(&good),
            "{host}: current is {}",
            current.display()
        );
    }
    for (service, port) in [("profile", 7103), ("admin", 7104)] {
        let ready = direct_status(hosts.address("app2"), port, &format!("/{service}/ready"));
        assert_eq!(ready, 200, "{service} on app2:{port}");
    }
    // The secrets file's bus secret and factor key, on every host: none made its own.
    for host in ["app1", "app2"] {
        for file in ["bus.secret", "factor.key"] {
            let path = hosts.file(host, &format!("var-lib-flotilla/{file}"));
            assert!(!path.exists(), "{host} made its own {file}");
        }
    }
    // doctor: every host's checks and those across hosts, all ok.
    let (status, out) = doctor(&hosts, &placement_file);
    assert_eq!(status, 0, "{out}");
    assert!(doctor_failures(&out).is_empty(), "{out}");
    for expected in [
        "edge   ok    through nginx /profile: health 200, ready 200",
        "edge   ok    pages: the last full build was",
        "app1   ok    instance worker",
        "app1   ok    queue:",
        "app2   ok    instance admin",
        "app2   ok    database: postgres://flotilla:***@",
        "db     ok    disk:",
        "fleet  ok    clock: every host within 10 s",
        "fleet  ok    signing keys: the same key folder on every login host (app1, app2)",
        "fleet  ok    jwks: every login instance and every host's services see the same keys",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(expected)),
            "expected `{expected}`:\n{out}"
        );
    }
    assert!(
        !out.contains(&password),
        "doctor shows the database password:\n{out}"
    );

    // Run again unchanged, deploy changes nothing: no copy, no restart, no reload.
    let again = deploy(
        &hosts,
        &placement_file,
        &tarball,
        "deploy-1-again.log",
        Duration::from_secs(300),
    );
    assert!(
        again.success,
        "the same deploy again failed:\n{}",
        again.log
    );
    for unchanged in [
        "app1: signup unchanged",
        "app1: worker unchanged",
        "app2: admin unchanged",
        "already there",
        "nginx unchanged",
    ] {
        assert!(
            again.log.contains(unchanged),
            "expected `{unchanged}`:\n{}",
            again.log
        );
    }
    for change in [
        "==> app1: restart",
        "==> app2: restart",
        "build the static site",
        "nginx reloaded",
    ] {
        assert!(
            !again.log.contains(change),
            "`{change}` on an unchanged deploy:\n{}",
            again.log
        );
    }

    // 2. Move app2's profile to app1 (a second instance there, on another port):
    //    app2 stops it, and the journey still works.
    let moved: Vec<&str> = app1.iter().copied().chain(["profile:7203"]).collect();
    std::fs::write(
        &placement_file,
        placement(&hosts, &moved, &["login:7102", "admin:7104"]),
    )
    .unwrap();
    let second = deploy(
        &hosts,
        &placement_file,
        &tarball,
        "deploy-2.log",
        Duration::from_secs(300),
    );
    assert!(
        second.success,
        "the deploy that moves profile failed:\n{}",
        second.log
    );
    let runs_profile = |host: &str| {
        hosts
            .processes(host)
            .into_iter()
            .filter(|c| c.contains("bin/flotilla-profile"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(15), || runs_profile("app2") == 0),
        "app2 still runs profile: {:?}",
        hosts.processes("app2")
    );
    assert!(
        !listens(hosts.address("app2"), 7103),
        "app2 still listens on 7103"
    );
    // Both of app1's profiles run and are ready (after the move, and after the rollback).
    let app1_profiles_ready = || {
        assert_eq!(runs_profile("app1"), 2, "{:?}", hosts.processes("app1"));
        for port in [7103, 7203] {
            assert_eq!(
                direct_status(hosts.address("app1"), port, "/profile/ready"),
                200,
                "app1:{port}"
            );
        }
    };
    app1_profiles_ready();
    edge.journey("grace@example.org");
    edge.sign_in("ada@example.org");

    // 3. A release whose profile never becomes ready: the deploy fails, every host is
    //    back on the good release, and the journey still works.
    let broken = broken_release(&tarball, &hosts.dir().join("dist-broken"));
    let bad = version_of(&broken);
    let third = deploy(
        &hosts,
        &placement_file,
        &broken,
        "deploy-3.log",
        Duration::from_secs(300),
    );
    assert!(
        !third.success,
        "a release that never becomes ready was deployed:\n{}",
        third.log
    );
    assert!(
        third.log.contains("profile"),
        "the deploy does not say what failed:\n{}",
        third.log
    );
    for host in ["edge", "app1", "app2"] {
        let current = std::fs::read_link(hosts.file(host, "opt-flotilla/current")).unwrap();
        assert!(
            current.ends_with(&good),
            "{host}: current is {} after the roll-back",
            current.display()
        );
        assert!(
            wait_until(Duration::from_secs(15), || hosts
                .processes(host)
                .iter()
                .all(|c| !c.contains(&bad))),
            "{host} still runs the broken release: {:?}",
            hosts.processes(host)
        );
    }
    app1_profiles_ready();
    edge.journey("alan@example.org");
    edge.sign_in("grace@example.org");

    // 4. doctor names what breaks: an instance stopped, then PostgreSQL stopped.
    let stopped = hosts.ssh("app2", "kill $(cat /run/flotilla/admin.pid)");
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert!(
        wait_until(Duration::from_secs(15), || !listens(
            hosts.address("app2"),
            7104
        )),
        "admin on app2 did not stop"
    );
    let (status, out) = doctor(&hosts, &placement_file);
    assert_eq!(status, 1, "{out}");
    let failed = doctor_failures(&out);
    let admin = format!("{}:7104", hosts.address("app2"));
    assert_eq!(
        failed.len(),
        2,
        "the stopped admin and its path through nginx:\n{out}"
    );
    for expected in [
        format!("app2 FAIL  instance admin ({admin}): no answer (connection refused, not running)"),
        "edge FAIL  through nginx /admin: health 502".to_owned(),
    ] {
        assert!(
            failed.iter().any(|l| l.starts_with(&expected)),
            "expected `{expected}`:\n{out}"
        );
    }
    let pg_stopped = hosts.ssh(
        "db",
        "runuser -u postgres -- /usr/lib/postgresql/*/bin/pg_ctl -D /var/lib/postgresql/flotilla stop -m fast",
    );
    assert!(pg_stopped.status.success(), "{}", text(&pg_stopped.stderr));
    let (status, out) = doctor(&hosts, &placement_file);
    assert_eq!(status, 1, "{out}");
    let database = format!(
        "postgres://flotilla:***@{}:5432/flotilla",
        hosts.address("db")
    );
    for host in ["edge", "app1", "app2"] {
        assert!(
            doctor_failures(&out).iter().any(|l| l.starts_with(&format!(
                "{host} FAIL  database: cannot open the database {database}"
            ))),
            "{host} does not name the database:\n{out}"
        );
    }
    assert!(
        !out.contains(&password),
        "doctor shows the database password:\n{out}"
    );
    eprintln!(
        "deploys: {:.1} s, {:.1} s (move), {:.1} s (broken, rolled back)",
        first.took.as_secs_f64(),
        second.took.as_secs_f64(),
        third.took.as_secs_f64()
    );
}
