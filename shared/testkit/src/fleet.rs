use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};

use crate::{Proc, TempDir, TestDb, binary, free_port, in_ci, wait_until, workspace_root};

/// The HTTP services, with the default ports that `proxy/upstreams.conf` names.
pub const SERVICES: [(&str, u16); 5] = [
    ("signup", 7101),
    ("login", 7102),
    ("profile", 7103),
    ("admin", 7104),
    ("worker", 7105),
];

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One running copy of a service: its name and its number, 0 for the first. nginx's
/// upstream for the service names every instance.
type Instance = (&'static str, usize);

/// How long one instance's restart took (`Fleet::restart_instance`).
#[derive(Debug, Clone, Copy)]
pub struct Restart {
    /// From SIGTERM until the process exited (it drains first).
    pub stopped_after: Duration,
    /// From SIGTERM until the new process answered `/ready` with 200.
    pub ready_after: Duration,
}

/// The real fleet: migrated database, static site, every service binary on a free
/// port, and nginx in front of them with the configuration from `proxy/`.
pub struct Fleet {
    pub db: TestDb,
    dir: TempDir,
    env: BTreeMap<String, String>,
    services: BTreeMap<Instance, (Proc, SocketAddr)>,
    /// Where each instance listens, chosen before any starts (admin's fleet page is
    /// told them all); a stopped instance comes back there.
    addrs: BTreeMap<Instance, SocketAddr>,
    nginx: Option<Proc>,
    /// `flotilla-pages watch`, when a test started it.
    pages: Option<Proc>,
    /// The example app (`examples/hello/app.py`) and its address, when asked for.
    example: Option<(Proc, SocketAddr)>,
    port: u16,
    /// nginx's port, chosen before the services started (`on_localhost`).
    fixed_port: Option<u16>,
    client: Client,
}

pub struct FleetBuilder {
    db: TestDb,
    env: BTreeMap<String, String>,
    instances: BTreeMap<&'static str, usize>,
    example: bool,
    localhost: bool,
}

impl FleetBuilder {
    /// An extra variable for every process of the fleet.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Runs `count` instances of an HTTP service behind nginx (one by default), each on
    /// an address of its own, all in the service's upstream. Not the worker: it hosts
    /// the bus, whose ports one process holds.
    pub fn instances(mut self, name: &str, count: usize) -> Self {
        let name = service_name(name);
        assert!(
            count >= 1 && (name != "worker" || count == 1),
            "{count} instances of {name}"
        );
        self.instances.insert(name, count);
        self
    }

    /// Also runs the example app (`examples/hello/app.py`) behind nginx at `/hello/`,
    /// as `make run` does.
    pub fn example_app(mut self) -> Self {
        self.example = true;
        self
    }

    /// Serves the fleet as `http://localhost:<port>` (its `FLOTILLA_PUBLIC_URL`, and the
    /// origin the tests send) instead of `127.0.0.1`: WebAuthn needs a domain name, so
    /// passkeys are on.
    pub fn on_localhost(mut self) -> Self {
        self.localhost = true;
        self
    }

    pub fn start(self) -> Fleet {
        let dir = TempDir::new("fleet");
        let data_dir = dir.path().join("var");
        let mut env = BTreeMap::from([
            ("DATABASE_URL".to_owned(), self.db.url().to_owned()),
            (
                "FLOTILLA_DATA_DIR".to_owned(),
                data_dir.display().to_string(),
            ),
            (
                "FLOTILLA_PAGES_OUT".to_owned(),
                data_dir.join("www").display().to_string(),
            ),
            ("FLOTILLA_AUTO_MIGRATE".to_owned(), "false".to_owned()),
            ("FLOTILLA_HTTP_WORKERS".to_owned(), "1".to_owned()),
            // No shedding by time: debug builds on a machine the tests share queue for
            // the machine's sake, not for an overload's, and a test that meets a 503
            // `overloaded` it did not ask for fails. The kit's and the hash pool's own
            // tests check it; `make bench` measures it. A test may turn it on.
            ("FLOTILLA_QUEUE_TARGET_MS".to_owned(), "0".to_owned()),
            ("FLOTILLA_HASH_WAIT_MS".to_owned(), "0".to_owned()),
            ("FLOTILLA_LOG".to_owned(), "info".to_owned()),
            ("FLOTILLA_LOG_STYLE".to_owned(), "never".to_owned()),
        ]);
        for name in [
            "FLOTILLA_BUS_WAKE",
            "FLOTILLA_BUS_EVENTS_IN",
            "FLOTILLA_BUS_EVENTS_OUT",
        ] {
            env.insert(name.to_owned(), format!("tcp://127.0.0.1:{}", free_port()));
        }
        // Not port 0: every address is known before any service starts (admin asks them
        // all), and a port from the ephemeral range may be taken by some client's
        // connection while its service is stopped, and then it cannot come back.
        let addrs: BTreeMap<Instance, SocketAddr> = SERVICES
            .iter()
            .flat_map(|(name, _)| {
                let count = self.instances.get(name).copied().unwrap_or(1);
                (0..count).map(|index| (*name, index))
            })
            .map(|instance| (instance, SocketAddr::from(([127, 0, 0, 1], free_port()))))
            .collect();
        let names: std::collections::BTreeSet<&str> = addrs.keys().map(|(name, _)| *name).collect();
        let fleet_var: Vec<String> = names
            .iter()
            .map(|name| format!("{name}={}", instance_urls(&addrs, name).join(",")))
            .collect();
        env.insert("FLOTILLA_ADMIN_FLEET".to_owned(), fleet_var.join(" "));
        // The public address must be known before the services start: nginx's port is
        // chosen now.
        let fixed_port = self.localhost.then(free_port);
        if let Some(port) = fixed_port {
            env.insert(
                "FLOTILLA_PUBLIC_URL".to_owned(),
                format!("http://localhost:{port}"),
            );
        }
        env.extend(self.env);
        let mut fleet = Fleet {
            db: self.db,
            dir,
            env,
            services: BTreeMap::new(),
            addrs,
            nginx: None,
            pages: None,
            example: None,
            port: 0,
            fixed_port,
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
        };
        let migrated = fleet.run("flotilla-worker", &["migrate"]);
        assert!(
            migrated.status.success(),
            "migrate failed:\n{}",
            stderr(&migrated)
        );
        let built = fleet.run("flotilla-pages", &["build"]);
        assert!(
            built.status.success(),
            "pages build failed:\n{}",
            stderr(&built)
        );
        // In SERVICES' order: login, whose address the later ones are given for the
        // keys, before profile and admin.
        for (name, _) in SERVICES {
            for index in 0..self.instances.get(name).copied().unwrap_or(1) {
                fleet.start_instance(name, index);
            }
        }
        if self.example {
            fleet.start_example();
        }
        fleet.start_nginx();
        fleet
    }
}

impl Fleet {
    pub fn builder(db: TestDb) -> FleetBuilder {
        FleetBuilder {
            db,
            env: BTreeMap::new(),
            instances: BTreeMap::new(),
            example: false,
            localhost: false,
        }
    }

    pub fn start(db: TestDb) -> Fleet {
        Self::builder(db).start()
    }

    /// A command for one of the binaries with the fleet's environment.
    pub fn command(&self, binary_name: &str) -> Command {
        let mut command = Command::new(binary(binary_name));
        command.current_dir(self.dir.path()).env_clear();
        for keep in ["PATH", "HOME", "LANG", "TZ"] {
            if let Ok(value) = std::env::var(keep) {
                command.env(keep, value);
            }
        }
        command.envs(&self.env);
        command
    }

    /// Runs a binary to completion (e.g. `migrate`) and returns what it did.
    pub fn run(&self, binary_name: &str, args: &[&str]) -> Output {
        self.command(binary_name).args(args).output().unwrap()
    }

    /// Starts a service on a free port; again after `stop_service`, on the port it had
    /// (nginx and the other services know it by that address).
    pub fn start_service(&mut self, name: &'static str) {
        self.start_instance(name, 0);
    }

    /// Starts one instance of a service (`start_service` for the others than the first).
    pub fn start_instance(&mut self, name: &str, index: usize) {
        let instance = (service_name(name), index);
        let name = instance.0;
        let mut command = self.command(&format!("flotilla-{name}"));
        let listen = *self
            .addrs
            .get(&instance)
            .unwrap_or_else(|| panic!("no instance {index} of {name}"));
        command.env(
            format!("FLOTILLA_{}_LISTEN", name.to_ascii_uppercase()),
            listen.to_string(),
        );
        let label = match index {
            0 => name.to_owned(),
            _ => format!("{name}[{index}]"),
        };
        let mut proc = Proc::spawn(&label, command);
        let addr = proc.wait_listening(START_TIMEOUT);
        if name == "login" && index == 0 {
            // The other services fetch the public keys from login directly, unless the
            // test named another URL (login comes back on the same address).
            self.env
                .entry("FLOTILLA_JWKS_URL".to_owned())
                .or_insert_with(|| format!("http://{addr}/login/.well-known/jwks.json"));
        }
        self.services.insert(instance, (proc, addr));
    }

    /// Restarts one instance as a deploy does: SIGTERM, wait until it has drained and
    /// exited (successfully), start it on the same address, wait until its `/ready`
    /// answers 200.
    pub fn restart_instance(&mut self, name: &str, index: usize) -> Restart {
        let began = Instant::now();
        let status = self.stop_instance(name, index, libc::SIGTERM);
        assert!(
            status.success(),
            "{name}[{index}] exited with {status} on SIGTERM:\n{}",
            self.all_logs()
        );
        let stopped_after = began.elapsed();
        self.start_instance(name, index);
        let url = format!("http://{}/{name}/ready", self.instance_addr(name, index));
        let ready = wait_until(START_TIMEOUT, || {
            self.client
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(
            ready,
            "{name}[{index}] was not ready within {START_TIMEOUT:?} of its start:\n{}",
            self.all_logs()
        );
        Restart {
            stopped_after,
            ready_after: began.elapsed(),
        }
    }

    /// Starts the example app on a free port and waits until it answers.
    fn start_example(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(python3());
        command
            .arg(workspace_root().join("examples/hello/app.py"))
            .arg(addr.to_string());
        let mut proc = Proc::spawn("hello", command);
        let up = wait_until(START_TIMEOUT, || {
            proc.try_exit().is_some() || std::net::TcpStream::connect(addr).is_ok()
        });
        assert!(
            up && proc.try_exit().is_none(),
            "the example app did not start on {addr}:\n{}",
            proc.logs()
        );
        self.example = Some((proc, addr));
    }

    fn start_nginx(&mut self) {
        let nginx = nginx_binary();
        let root = workspace_root();
        // Each `server 127.0.0.1:<default port>[ parameters];` line becomes one line per
        // instance of that service, with the same parameters.
        let placement = std::fs::read_to_string(root.join("proxy/upstreams.conf")).unwrap();
        let mut upstreams = String::new();
        for line in placement.lines() {
            let service = SERVICES.iter().find_map(|(name, port)| {
                let rest = line
                    .trim()
                    .strip_prefix(&format!("server 127.0.0.1:{port}"))?;
                rest.starts_with([' ', ';']).then_some((*name, rest))
            });
            let Some((name, parameters)) = service else {
                upstreams.push_str(line);
                upstreams.push('\n');
                continue;
            };
            for (_, (_, addr)) in self.services.iter().filter(|((n, _), _)| *n == name) {
                upstreams.push_str(&format!("    server {addr}{parameters}\n"));
            }
        }
        let upstreams_path = self.dir.path().join("upstreams.conf");
        std::fs::write(&upstreams_path, upstreams).unwrap();
        let prefix = self.dir.path().join("nginx");
        let www = self.dir.path().join("var/www");
        std::fs::create_dir_all(&www).unwrap();
        // The tests send hundreds of logins and signups a second from 127.0.0.1: nginx's
        // per-address limit on them stays out of the way unless a test sets its own.
        let limits = [
            ("FLOTILLA_PROXY_AUTH_RATE", "10000r/s"),
            ("FLOTILLA_PROXY_AUTH_BURST", "10000"),
        ]
        .map(|(name, default)| {
            let value = self.env.get(name).map_or(default, String::as_str);
            (name, value.to_owned())
        });
        // A test that plays clients at other addresses sends them as X-Forwarded-For
        // and trusts it from 127.0.0.1 (FLOTILLA_PROXY_REAL_IP_FROM).
        let real_ip = self.env.get("FLOTILLA_PROXY_REAL_IP_FROM").cloned();
        // A test that keeps /admin to some client networks (FLOTILLA_PROXY_ADMIN_ALLOW).
        let admin_allow = self.env.get("FLOTILLA_PROXY_ADMIN_ALLOW").cloned();
        let example = self.example.as_ref().map(|(_, addr)| addr.to_string());
        for _attempt in 0..3 {
            let port = self.fixed_port.unwrap_or_else(free_port);
            let rendered = Command::new(root.join("scripts/render-proxy.sh"))
                .arg(&prefix)
                .arg(format!("127.0.0.1:{port}"))
                .arg(&www)
                .arg(&upstreams_path)
                .envs(limits.clone())
                .envs(real_ip.iter().map(|v| ("FLOTILLA_PROXY_REAL_IP_FROM", v)))
                .envs(
                    admin_allow
                        .iter()
                        .map(|v| ("FLOTILLA_PROXY_ADMIN_ALLOW", v)),
                )
                .envs(example.iter().map(|v| ("FLOTILLA_EXAMPLE_ADDR", v)))
                .output()
                .unwrap();
            assert!(
                rendered.status.success(),
                "render-proxy.sh failed:\n{}",
                stderr(&rendered)
            );
            let mut command = Command::new(&nginx);
            command
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(prefix.join("nginx.conf"))
                .args(["-e", "stderr"]);
            let mut proc = Proc::spawn("nginx", command);
            self.port = port;
            let client = self.client.clone();
            let url = self.url("/");
            let up = wait_until(START_TIMEOUT, || {
                proc.try_exit().is_some() || client.get(&url).send().is_ok()
            });
            if up && proc.try_exit().is_none() {
                self.nginx = Some(proc);
                return;
            }
            // Most likely another process took the port first: try another.
            eprintln!("nginx did not start on port {port}:\n{}", proc.logs());
        }
        panic!("nginx did not start");
    }

    /// The fleet's public origin, as a browser sees it.
    pub fn origin(&self) -> String {
        match self.fixed_port {
            Some(port) => format!("http://localhost:{port}"),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Where one service listens, bypassing nginx.
    pub fn service_addr(&self, name: &str) -> SocketAddr {
        self.instance_addr(name, 0)
    }

    /// Where one instance of a service listens (`service_addr` for the others).
    pub fn instance_addr(&self, name: &str, index: usize) -> SocketAddr {
        self.services
            .get(&(service_name(name), index))
            .unwrap_or_else(|| panic!("no instance {index} of {name} running"))
            .1
    }

    pub fn direct_url(&self, name: &str, path: &str) -> String {
        format!("http://{}{path}", self.service_addr(name))
    }

    pub fn service(&mut self, name: &str) -> &mut Proc {
        &mut self
            .services
            .get_mut(&(service_name(name), 0))
            .unwrap_or_else(|| panic!("no service {name}"))
            .0
    }

    /// Stops a service with `signal` (`libc::SIGTERM`, `libc::SIGKILL`) and waits for it to exit.
    pub fn stop_service(&mut self, name: &str, signal: i32) {
        self.stop_instance(name, 0, signal);
    }

    /// Stops one instance of a service with `signal` and waits for it to exit.
    pub fn stop_instance(&mut self, name: &str, index: usize, signal: i32) -> ExitStatus {
        let (mut proc, _) = self
            .services
            .remove(&(service_name(name), index))
            .unwrap_or_else(|| panic!("no instance {index} of {name} running"));
        proc.signal(signal);
        proc.wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{} did not stop:\n{}", proc.name, proc.logs()))
    }

    /// Starts `flotilla-pages watch` and waits until it hears the bus, so that the
    /// next account change reaches it as an event.
    pub fn start_pages_watcher(&mut self) -> &mut Proc {
        let mut command = self.command("flotilla-pages");
        command.arg("watch");
        let mut proc = Proc::spawn("pages", command);
        let listening = wait_until(START_TIMEOUT, || {
            assert!(
                proc.try_exit().is_none(),
                "pages watch exited:\n{}",
                proc.logs()
            );
            proc.logs().contains("listening for account changes")
        });
        assert!(
            listening,
            "pages watch did not connect to the bus:\n{}",
            proc.logs()
        );
        self.pages.insert(proc)
    }

    /// Stops `flotilla-pages watch` with `signal` (`libc::SIGKILL` for a crash) and
    /// waits for it to exit.
    pub fn stop_pages_watcher(&mut self, signal: i32) {
        let mut proc = self.pages.take().expect("no pages watcher running");
        proc.signal(signal);
        if proc.wait_exit(Duration::from_secs(20)).is_none() {
            panic!("pages watch did not stop:\n{}", proc.logs());
        }
    }

    pub fn nginx(&mut self) -> &mut Proc {
        self.nginx.as_mut().unwrap()
    }

    /// Variables the fleet's processes were given.
    pub fn env_var(&self, name: &str) -> &str {
        &self.env[name]
    }

    /// The fleet's database, for a test's own queries.
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// Every variable the fleet's processes were given: what a host's env file holds.
    pub fn envs(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A request through nginx.
    pub fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().unwrap()
    }

    /// A GET as a browser sends it.
    pub fn get_html(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("Accept", "text/html,*/*;q=0.8")
            .send()
            .unwrap()
    }

    /// Every log line of every process, for failure messages.
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        for (proc, _) in self.services.values() {
            out.push_str(&format!("--- {}\n{}\n", proc.name, proc.logs()));
        }
        if let Some(nginx) = &self.nginx {
            out.push_str(&format!("--- nginx\n{}\n", nginx.logs()));
        }
        if let Some(pages) = &self.pages {
            out.push_str(&format!("--- pages\n{}\n", pages.logs()));
        }
        if let Some((example, _)) = &self.example {
            out.push_str(&format!("--- hello\n{}\n", example.logs()));
        }
        out
    }

    /// The messages the file transport wrote to `to` (`To: <address>`), oldest first.
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let dir = self.data_dir().join("mail");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .into_iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|m| {
                m.lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}")))
            })
            .collect()
    }

    /// Waits until `count` messages to `to` exist, and returns them.
    pub fn wait_for_mails(&self, to: &str, count: usize) -> Vec<String> {
        let found = wait_until(Duration::from_secs(15), || self.mails_to(to).len() >= count);
        assert!(
            found,
            "{count} mail(s) to {to} did not arrive:\n{}",
            self.all_logs()
        );
        self.mails_to(to)
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.env["FLOTILLA_DATA_DIR"])
    }

    /// A bus endpoint of the fleet (`FLOTILLA_BUS_WAKE`, …) with the fleet's secret:
    /// `FLOTILLA_BUS_SECRET` when the test set it, else the `bus.secret` its
    /// processes made in the data folder.
    pub fn bus_endpoint(&self, name: &str) -> flotilla_bus::BusEndpoint {
        let hex = match self.env.get("FLOTILLA_BUS_SECRET") {
            Some(hex) => hex.clone(),
            None => std::fs::read_to_string(self.data_dir().join("bus.secret")).unwrap(),
        };
        let secret = flotilla_bus::BusSecret::from_hex(&hex).unwrap();
        flotilla_bus::BusEndpoint::new(self.env_var(name), &secret)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("fleet logs:\n{}", self.all_logs());
        }
        // nginx first, so nothing reaches a stopping service; then the services.
        self.nginx.take();
        self.pages.take();
        self.example.take();
        self.services.clear();
    }
}

/// The name of an HTTP service as `SERVICES` holds it.
fn service_name(name: &str) -> &'static str {
    SERVICES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, _)| *n)
        .unwrap_or_else(|| panic!("no service {name}"))
}

/// `http://ADDR` of each instance of `name`, first to last.
fn instance_urls(addrs: &BTreeMap<Instance, SocketAddr>, name: &str) -> Vec<String> {
    addrs
        .iter()
        .filter(|((n, _), _)| *n == name)
        .map(|(_, addr)| format!("http://{addr}"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Python 3 for the example app and the token checks of other libraries (PyJWT), or a
/// failure that says how to get it: Debian's, which `make test` gives the libraries,
/// before any other on the PATH.
pub fn python3() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.is_file() {
        return debian;
    }
    on_path("python3")
        .unwrap_or_else(|| missing("python3", "python3 python3-jwt python3-cryptography"))
}

/// wrk (the load tests: a rolling restart, full builds under readers), or a failure
/// that says how to get it: `make test` installs it.
pub fn wrk() -> PathBuf {
    on_path("wrk").unwrap_or_else(|| missing("wrk", "wrk"))
}

/// The first `name` in the folders of the PATH.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Fails the test: `what` is missing, and `make test` installs `packages`.
pub(crate) fn missing(what: &str, packages: &str) -> ! {
    panic!(
        "{what} is missing{}: run `make test` (it installs {packages} on Debian as root), or \
         `apt-get install {packages}`",
        if in_ci() { " in CI" } else { "" }
    )
}

/// nginx, or a failure that says how to get it. Outside CI a missing nginx is a panic
/// too: every fleet test needs it, and `make test` installs it.
pub fn nginx_binary() -> PathBuf {
    on_path("nginx")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .unwrap_or_else(|| missing("nginx", "nginx"))
}
