use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

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

/// The real fleet: migrated database, static site, every service binary on a free
/// port, and nginx in front of them with the configuration from `proxy/`.
pub struct Fleet {
    pub db: TestDb,
    dir: TempDir,
    env: BTreeMap<String, String>,
    services: BTreeMap<&'static str, (Proc, SocketAddr)>,
    /// Where each service listens, chosen before any starts (admin's fleet page is
    /// told them all); a stopped service comes back there.
    addrs: BTreeMap<&'static str, SocketAddr>,
    nginx: Option<Proc>,
    /// `flotilla-pages watch`, when a test started it.
    pages: Option<Proc>,
    port: u16,
    client: Client,
}

pub struct FleetBuilder {
    db: TestDb,
    env: BTreeMap<String, String>,
}

impl FleetBuilder {
    /// An extra variable for every process of the fleet.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
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
        let addrs: BTreeMap<&'static str, SocketAddr> = SERVICES
            .iter()
            .map(|(name, _)| (*name, SocketAddr::from(([127, 0, 0, 1], free_port()))))
            .collect();
        let fleet_var: Vec<String> = addrs
            .iter()
            .map(|(name, addr)| format!("{name}=http://{addr}"))
            .collect();
        env.insert("FLOTILLA_ADMIN_FLEET".to_owned(), fleet_var.join(" "));
        env.extend(self.env);
        let mut fleet = Fleet {
            db: self.db,
            dir,
            env,
            services: BTreeMap::new(),
            addrs,
            nginx: None,
            pages: None,
            port: 0,
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
        for (name, _) in SERVICES {
            fleet.start_service(name);
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
        let mut command = self.command(&format!("flotilla-{name}"));
        let listen = self.addrs[name];
        command.env(
            format!("FLOTILLA_{}_LISTEN", name.to_ascii_uppercase()),
            listen.to_string(),
        );
        let mut proc = Proc::spawn(name, command);
        let addr = proc.wait_listening(START_TIMEOUT);
        if name == "login" {
            // The other services fetch the public keys from login directly, unless the
            // test named another URL (login comes back on the same address).
            self.env
                .entry("FLOTILLA_JWKS_URL".to_owned())
                .or_insert_with(|| format!("http://{addr}/login/.well-known/jwks.json"));
        }
        self.services.insert(name, (proc, addr));
    }

    fn start_nginx(&mut self) {
        let nginx = nginx_binary();
        let root = workspace_root();
        let mut upstreams = std::fs::read_to_string(root.join("proxy/upstreams.conf")).unwrap();
        for (name, default_port) in SERVICES {
            let default = format!("server 127.0.0.1:{default_port};");
            if upstreams.contains(&default) {
                let addr = self.services[name].1;
                upstreams = upstreams.replace(&default, &format!("server {addr};"));
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
        for _attempt in 0..3 {
            let port = free_port();
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
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Where one service listens, bypassing nginx.
    pub fn service_addr(&self, name: &str) -> SocketAddr {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"))
            .1
    }

    pub fn direct_url(&self, name: &str, path: &str) -> String {
        format!("http://{}{path}", self.service_addr(name))
    }

    pub fn service(&mut self, name: &str) -> &mut Proc {
        &mut self
            .services
            .get_mut(name)
            .unwrap_or_else(|| panic!("no service {name}"))
            .0
    }

    /// Stops a service with `signal` (`libc::SIGTERM`, `libc::SIGKILL`) and waits for it to exit.
    pub fn stop_service(&mut self, name: &str, signal: i32) {
        let (name, (mut proc, _)) = self
            .services
            .remove_entry(name)
            .unwrap_or_else(|| panic!("no service {name}"));
        proc.signal(signal);
        assert!(
            proc.wait_exit(Duration::from_secs(20)).is_some(),
            "{name} did not stop"
        );
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
        for (name, (proc, _)) in &self.services {
            out.push_str(&format!("--- {name}\n{}\n", proc.logs()));
        }
        if let Some(nginx) = &self.nginx {
            out.push_str(&format!("--- nginx\n{}\n", nginx.logs()));
        }
        if let Some(pages) = &self.pages {
            out.push_str(&format!("--- pages\n{}\n", pages.logs()));
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
        self.services.clear();
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// nginx, or a failure that says how to get it. Outside CI a missing nginx is a panic
/// too: every fleet test needs it, and `make test` installs it.
pub fn nginx_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/nginx")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is missing{}: run `make test` (it installs nginx on Debian as root) \
                 or `apt-get install nginx`",
                if in_ci() { " in CI" } else { "" }
            )
        })
}
