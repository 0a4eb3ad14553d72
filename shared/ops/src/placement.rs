//! The placement file: which hosts exist and what runs on each. Read once, checked
//! whole, and refused with a message naming the host or entry when it cannot work.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A placement that was read and checked: every service runs somewhere, nothing
/// shares a port, the database is reachable from everything that reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The origin browsers use (`FLOTILLA_PUBLIC_URL`).
    pub public_url: String,
    /// The secrets file, resolved against the placement file's folder.
    pub secrets: PathBuf,
    pub database: Database,
    /// In name order: the order deploy visits them.
    pub hosts: Vec<Host>,
    /// Settings every host gets.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgresql {
        name: String,
        user: String,
        /// The host that runs it and its port.
        host: String,
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// What `ssh` is given: `user@host` or a Host of the ssh configuration.
    pub ssh: String,
    /// How the other hosts reach this one.
    pub address: String,
    pub runs: Vec<Role>,
}

/// One entry of a host's `run` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Service(Service, u16),
    Nginx(u16),
    Pages,
    Postgresql(u16),
}

/// The processes deploy starts and restarts, each a `flotilla-<name>` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Signup,
    Login,
    Profile,
    Admin,
    Worker,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Signup,
        Service::Login,
        Service::Profile,
        Service::Admin,
        Service::Worker,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Signup => "signup",
            Service::Login => "login",
            Service::Profile => "profile",
            Service::Admin => "admin",
            Service::Worker => "worker",
        }
    }

    /// The port of `make run` and the README's table, shown in messages.
    pub fn default_port(self) -> u16 {
        match self {
            Service::Signup => 7101,
            Service::Login => 7102,
            Service::Profile => 7103,
            Service::Admin => 7104,
            Service::Worker => 7105,
        }
    }

    /// The variable its listen address is read from.
    pub fn listen_variable(self) -> String {
        format!("FLOTILLA_{}_LISTEN", self.name().to_uppercase())
    }

    fn parse(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The worker's bus sockets, bound by the first worker (the hub): wake, events in,
/// events out.
pub const BUS_PORTS: [u16; 3] = [7110, 7111, 7112];

/// One running copy of a service on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Unique on its host: the service's name, or `<service>-<port>` for a second copy
    /// on the same host. The systemd unit is `flotilla@<name>`.
    pub name: String,
    pub service: Service,
    pub host: String,
    pub address: String,
    pub port: u16,
}

impl Instance {
    pub fn url(&self) -> String {
        format!("http://{}", self.socket())
    }

    pub fn socket(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// Why a placement was refused: every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub Vec<String>);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// Variables deploy writes itself from the placement: an `[env]` entry may not set them.
pub const DERIVED: [&str; 16] = [
    "DATABASE_URL",
    "FLOTILLA_DATA_DIR",
    "FLOTILLA_PUBLIC_URL",
    "FLOTILLA_TRUSTED_PROXIES",
    "FLOTILLA_JWKS_URL",
    "FLOTILLA_BUS_WAKE",
    "FLOTILLA_BUS_EVENTS_IN",
    "FLOTILLA_BUS_EVENTS_OUT",
    "FLOTILLA_ADMIN_FLEET",
    "FLOTILLA_AUTO_MIGRATE",
    "FLOTILLA_KEYS_GENERATE",
    "FLOTILLA_SIGNUP_LISTEN",
    "FLOTILLA_LOGIN_LISTEN",
    "FLOTILLA_PROFILE_LISTEN",
    "FLOTILLA_ADMIN_LISTEN",
    "FLOTILLA_WORKER_LISTEN",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    public_url: String,
    secrets: Option<PathBuf>,
    database: DatabaseFile,
    hosts: BTreeMap<String, HostFile>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseFile {
    backend: String,
    name: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFile {
    ssh: String,
    address: String,
    run: Vec<String>,
}

impl Placement {
    /// Reads and checks the placement file at `path`.
    pub fn load(path: &Path) -> Result<Placement, Refused> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Refused(vec![format!("{}: {e}", path.display())]))?;
        let folder = path.parent().unwrap_or(Path::new("."));
        Placement::parse(&text, folder)
            .map_err(|Refused(problems)| Refused(with_prefix(path, problems)))
    }

    /// Checks a placement given as text; a relative `secrets` path is taken from
    /// `folder`.
    pub fn parse(text: &str, folder: &Path) -> Result<Placement, Refused> {
        let file: File = toml::from_str(text).map_err(|e| Refused(vec![toml_message(&e)]))?;
        let mut problems = Vec::new();
        let public_url = file.public_url.trim_end_matches('/').to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
            || public_url.len() < "http://x".len()
        {
            problems.push(format!(
                "public_url = \"{}\": expected the origin browsers use, e.g. \
                 \"https://accounts.example.org\"",
                file.public_url
            ));
        }
        let mut hosts = Vec::new();
        for (name, host) in &file.hosts {
            hosts.push(read_host(name, host, &mut problems));
        }
        if hosts.is_empty() {
            problems.push("no [hosts.NAME] table: name at least one host".to_owned());
        }
        check_addresses(&hosts, &mut problems);
        check_ports(&hosts, &mut problems);
        check_roles(&hosts, &mut problems);
        let database = read_database(&file.database, &hosts, &mut problems);
        check_env(&file.env, &mut problems);
        if !problems.is_empty() {
            return Err(Refused(problems));
        }
        let secrets = file
            .secrets
            .map(|s| folder.join(s))
            .unwrap_or_else(|| folder.join("secrets.env"));
        Ok(Placement {
            public_url,
            secrets,
            database,
            hosts,
            env: file.env,
        })
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Every instance of every service, host by host in name order.
    pub fn instances(&self) -> Vec<Instance> {
        let mut all = Vec::new();
        for host in &self.hosts {
            let mut seen = BTreeSet::new();
            for role in &host.runs {
                if let Role::Service(service, port) = *role {
                    let name = if seen.insert(service) {
                        service.name().to_owned()
                    } else {
                        format!("{}-{port}", service.name())
                    };
                    all.push(Instance {
                        name,
                        service,
                        host: host.name.clone(),
                        address: host.address.clone(),
                        port,
                    });
                }
            }
        }
        all
    }

    pub fn instances_of(&self, service: Service) -> Vec<Instance> {
        self.instances()
            .into_iter()
            .filter(|i| i.service == service)
            .collect()
    }

    /// The host that runs nginx (and the page generator beside it).
    pub fn edge(&self) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.runs.iter().any(|r| matches!(r, Role::Nginx(_))))
            .unwrap_or(&self.hosts[0])
    }

    pub fn nginx_port(&self) -> u16 {
        self.edge()
            .runs
            .iter()
            .find_map(|r| match r {
                Role::Nginx(port) => Some(*port),
                _ => None,
            })
            .unwrap_or(80)
    }

    /// The first worker: it binds the bus every other process connects to.
    pub fn hub(&self) -> Instance {
        self.instances_of(Service::Worker)
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("a checked placement has a worker"))
    }

    /// True when the fleet spans several hosts (the bus then needs its secret).
    pub fn is_spread(&self) -> bool {
        self.hosts.iter().filter(|h| !h.runs.is_empty()).count() > 1
    }
}

fn with_prefix(path: &Path, problems: Vec<String>) -> Vec<String> {
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect()
}

fn toml_message(error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => format!("at byte {}: {message}", span.start),
        None => message.to_owned(),
    }
}

fn read_host(name: &str, file: &HostFile, problems: &mut Vec<String>) -> Host {
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_name {
        problems.push(format!(
            "[hosts.{name}]: a host's name is 1 to 63 of a-z, 0-9 and -"
        ));
    }
    if file.ssh.trim().is_empty() || file.ssh.starts_with('-') || file.ssh.contains(' ') {
        problems.push(format!(
            "[hosts.{name}] ssh = \"{}\": expected user@host or a Host of your ssh \
             configuration",
            file.ssh
        ));
    }
    let address = file.address.trim_matches(['[', ']']).to_owned();
    let address_ok = address.parse::<std::net::IpAddr>().is_ok()
        || (!address.is_empty()
            && address
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !address_ok {
        problems.push(format!(
            "[hosts.{name}] address = \"{}\": expected the address or name the other \
             hosts reach it at, e.g. \"10.0.0.3\"",
            file.address
        ));
    }
    let mut runs = Vec::new();
    for entry in &file.run {
        match read_role(entry) {
            Ok(role) => runs.push(role),
            Err(why) => problems.push(format!("[hosts.{name}] run \"{entry}\": {why}")),
        }
    }
    Host {
        name: name.to_owned(),
        ssh: file.ssh.clone(),
        address,
        runs,
    }
}

fn read_role(entry: &str) -> Result<Role, String> {
    let (what, port) = match entry.split_once(':') {
        Some((what, port)) => {
            let port =
                port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    format!("the port \"{port}\" is not a number from 1 to 65535")
                })?;
            (what, Some(port))
        }
        None => (entry, None),
    };
    let need_port =
        |example: u16| port.ok_or_else(|| format!("give its port, e.g. \"{what}:{example}\""));
    if let Some(service) = Service::parse(what) {
        return Ok(Role::Service(service, need_port(service.default_port())?));
    }
    match what {
        "nginx" => Ok(Role::Nginx(need_port(80)?)),
        "postgresql" => Ok(Role::Postgresql(need_port(5432)?)),
        "pages" if port.is_none() => Ok(Role::Pages),
        "pages" => Err("the page generator listens on no port: write \"pages\"".to_owned()),
        _ => Err(
            "expected one of signup, login, profile, admin, worker, nginx, pages, postgresql"
                .to_owned(),
        ),
    }
}

fn check_addresses(hosts: &[Host], problems: &mut Vec<String>) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for host in hosts {
        if let Some(other) = seen.insert(&host.address, &host.name) {
            problems.push(format!(
                "[hosts.{}] and [hosts.{other}] have the same address {}: each host needs \
                 its own",
                host.name, host.address
            ));
        }
    }
    if hosts.len() > 1 {
        for host in hosts {
            let loopback = host.address == "localhost"
                || host
                    .address
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback() || a.is_unspecified());
            if loopback {
                problems.push(format!(
                    "[hosts.{}] address = \"{}\": the other hosts cannot reach it there; \
                     give its private address",
                    host.name, host.address
                ));
            }
        }
    }
}

fn check_ports(hosts: &[Host], problems: &mut Vec<String>) {
    let first_worker = hosts
        .iter()
        .find(|h| {
            h.runs
                .iter()
                .any(|r| matches!(r, Role::Service(Service::Worker, _)))
        })
        .map(|h| h.name.as_str());
    for host in hosts {
        let mut taken: BTreeMap<u16, String> = BTreeMap::new();
        let mut claim = |port: u16, what: String| {
            if let Some(other) = taken.get(&port) {
                problems.push(format!(
                    "[hosts.{}]: {what} and {other} both want port {port}",
                    host.name
                ));
            } else {
                taken.insert(port, what);
            }
        };
        let mut workers = 0;
        for role in &host.runs {
            match *role {
                Role::Service(service, port) => {
                    claim(port, format!("{service}:{port}"));
                    if service == Service::Worker {
                        workers += 1;
                        if Some(host.name.as_str()) == first_worker && workers == 1 {
                            for bus in BUS_PORTS {
                                claim(bus, format!("the bus hub (worker, port {bus})"));
                            }
                        }
                    }
                }
                Role::Nginx(port) => claim(port, format!("nginx:{port}")),
                Role::Postgresql(port) => claim(port, format!("postgresql:{port}")),
                Role::Pages => {}
            }
        }
        if workers > 1 {
            problems.push(format!(
                "[hosts.{}]: {workers} workers: one worker per host (it runs jobs in \
                 parallel already); put another on another host",
                host.name
            ));
        }
    }
}

fn check_roles(hosts: &[Host], problems: &mut Vec<String>) {
    for service in Service::ALL {
        let placed = hosts.iter().any(|h| {
            h.runs
                .iter()
                .any(|r| matches!(r, Role::Service(s, _) if *s == service))
        });
        if !placed {
            problems.push(format!(
                "{service} runs nowhere: add \"{service}:{}\" to a host's run list",
                service.default_port()
            ));
        }
    }
    let with = |pick: fn(&Role) -> bool| -> Vec<&str> {
        hosts
            .iter()
            .filter(|h| h.runs.iter().any(pick))
            .map(|h| h.name.as_str())
            .collect()
    };
    let nginx = with(|r| matches!(r, Role::Nginx(_)));
    let pages = with(|r| matches!(r, Role::Pages));
    match nginx.as_slice() {
        [] => problems.push(
            "nginx runs nowhere: add \"nginx:80\" to the run list of the host browsers reach"
                .to_owned(),
        ),
        [_] => {}
        several => problems.push(format!(
            "nginx runs on {}: one host is the edge (put a load balancer in front of it \
             for more)",
            several.join(", ")
        )),
    }
    match pages.as_slice() {
        [] => problems
            .push("pages runs nowhere: add \"pages\" to the run list of the nginx host".to_owned()),
        [one] if nginx.len() == 1 && *one != nginx[0] => problems.push(format!(
            "pages runs on {one} but nginx on {}: the page generator writes the files nginx \
             serves, so it runs beside nginx",
            nginx[0]
        )),
        [_] => {}
        several => problems.push(format!(
            "pages runs on {}: once, beside nginx",
            several.join(", ")
        )),
    }
    for host in hosts {
        let mut seen = BTreeSet::new();
        for role in &host.runs {
            let once = match role {
                Role::Nginx(_) => Some("nginx"),
                Role::Pages => Some("pages"),
                Role::Postgresql(_) => Some("postgresql"),
                Role::Service(..) => None,
            };
            if let Some(what) = once
                && !seen.insert(what)
            {
                problems.push(format!("[hosts.{}]: {what} is listed twice", host.name));
            }
        }
    }
}

fn read_database(file: &DatabaseFile, hosts: &[Host], problems: &mut Vec<String>) -> Database {
    let postgres: Vec<(&Host, u16)> = hosts
        .iter()
        .flat_map(|h| {
            h.runs.iter().filter_map(move |r| match r {
                Role::Postgresql(port) => Some((h, *port)),
                _ => None,
            })
        })
        .collect();
    match file.backend.as_str() {
        "sqlite" => {
            if !postgres.is_empty() {
                problems.push(
                    "[database] backend = \"sqlite\", but a host runs postgresql: choose one"
                        .to_owned(),
                );
            }
            // Everything that opens the database: the services, the worker, pages.
            let readers: Vec<&str> = hosts
                .iter()
                .filter(|h| {
                    h.runs
                        .iter()
                        .any(|r| matches!(r, Role::Service(..) | Role::Pages))
                })
                .map(|h| h.name.as_str())
                .collect();
            if readers.len() > 1 {
                problems.push(format!(
                    "[database] backend = \"sqlite\", but the services and pages run on \
                     {}: SQLite is one file that only one host can open; put them on one \
                     host, or use backend = \"postgresql\"",
                    readers.join(", ")
                ));
            }
            Database::Sqlite
        }
        "postgresql" => {
            let name = file.name.clone().unwrap_or_else(|| "flotilla".to_owned());
            let user = file.user.clone().unwrap_or_else(|| "flotilla".to_owned());
            for (what, value) in [("name", &name), ("user", &user)] {
                let ok = !value.is_empty()
                    && value.len() <= 63
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    problems.push(format!(
                        "[database] {what} = \"{value}\": 1 to 63 of a-z, A-Z, 0-9, _ and -"
                    ));
                }
            }
            match postgres.as_slice() {
                [(host, port)] => Database::Postgresql {
                    name,
                    user,
                    host: host.name.clone(),
                    port: *port,
                },
                [] => {
                    problems.push(
                        "[database] backend = \"postgresql\", but no host runs it: add \
                         \"postgresql:5432\" to its host's run list"
                            .to_owned(),
                    );
                    Database::Sqlite
                }
                several => {
                    let names: Vec<&str> = several.iter().map(|(h, _)| h.name.as_str()).collect();
                    problems.push(format!(
                        "postgresql runs on {}: deploy connects to one database server",
                        names.join(", ")
                    ));
                    Database::Sqlite
                }
            }
        }
        other => {
            problems.push(format!(
                "[database] backend = \"{other}\": expected \"sqlite\" or \"postgresql\""
            ));
            Database::Sqlite
        }
    }
}

/// Secrets whose names do not end in `_PASSWORD`: the secrets file's, never `[env]`'s.
const SECRETS: [&str; 2] = ["FLOTILLA_BUS_SECRET", "FLOTILLA_FACTOR_KEY"];

fn check_env(env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    for (key, value) in env {
        if !key.starts_with("FLOTILLA_") {
            problems.push(format!(
                "[env] {key}: only FLOTILLA_ variables (docs/configuration.md)"
            ));
        } else if DERIVED.contains(&key.as_str()) {
            problems.push(format!(
                "[env] {key}: deploy writes it from the placement; remove it here"
            ));
        } else if key.ends_with("_PASSWORD") || SECRETS.contains(&key.as_str()) {
            problems.push(format!(
                "[env] {key}: a secret; put it in the secrets file instead"
            ));
        }
        if value.contains('\n') || value.contains('\0') {
            problems.push(format!("[env] {key}: a value is one line"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../proxy/placement.example.toml");

    fn refused(text: &str) -> String {
        Placement::parse(text, Path::new("/p"))
            .expect_err("refused")
            .to_string()
    }

    fn spread(extra_app2: &str) -> String {
        format!(
            r#"
public_url = "https://a.example"
[database]
backend = "postgresql"
[hosts.edge]
ssh = "root@e"
address = "10.0.0.2"
run = ["nginx:80", "pages"]
[hosts.app1]
ssh = "root@a1"
address = "10.0.0.3"
run = ["signup:7101", "login:7102", "profile:7103", "admin:7104", "worker:7105"]
[hosts.app2]
ssh = "root@a2"
address = "10.0.0.4"
run = [{extra_app2}]
[hosts.db]
ssh = "root@d"
address = "10.0.0.5"
run = ["postgresql:5432"]
"#
        )
    }

    #[test]
    fn the_example_is_a_working_placement() {
        let p = Placement::parse(EXAMPLE, Path::new("/etc/deploy")).expect("the example works");
        assert_eq!(p.public_url, "https://accounts.example.org");
        assert_eq!(p.secrets, Path::new("/etc/deploy/secrets.env"));
        assert_eq!(
            p.database,
            Database::Postgresql {
                name: "flotilla".into(),
                user: "flotilla".into(),
                host: "db".into(),
                port: 5432
            }
        );
        assert_eq!(p.edge().name, "edge");
        assert_eq!(p.hub().host, "app1");
        let logins: Vec<String> = p
            .instances_of(Service::Login)
            .iter()
            .map(Instance::socket)
            .collect();
        assert_eq!(logins, ["10.0.0.3:7102", "10.0.0.4:7102"]);
        assert!(p.is_spread());
    }

    #[test]
    fn a_second_copy_on_one_host_is_named_by_its_port() {
        let p = Placement::parse(&spread(r#""login:7102", "login:7202""#), Path::new("/"))
            .expect("works");
        let names: Vec<(String, String)> = p
            .instances_of(Service::Login)
            .into_iter()
            .map(|i| (i.host, i.name))
            .collect();
        assert_eq!(
            names,
            [
                ("app1".into(), "login".into()),
                ("app2".into(), "login".into()),
                ("app2".into(), "login-7202".into())
            ]
        );
    }

    #[test]
    fn a_service_placed_nowhere_is_refused() {
        let text = spread("").replace("\"admin:7104\", ", "");
        assert!(
            refused(&text).contains("admin runs nowhere: add \"admin:7104\""),
            "{}",
            refused(&text)
        );
    }

    #[test]
    fn two_instances_on_one_port_are_refused() {
        let why = refused(&spread(r#""login:7102", "profile:7102""#));
        assert!(
            why.contains("[hosts.app2]: profile:7102 and login:7102 both want port 7102"),
            "{why}"
        );
        // The hub's bus ports count as taken.
        let why = refused(&spread("").replace("\"signup:7101\"", "\"signup:7110\""));
        assert!(why.contains("the bus hub (worker, port 7110)"), "{why}");
    }

    #[test]
    fn sqlite_across_hosts_is_refused() {
        let text = spread(r#""profile:7103""#)
            .replace("backend = \"postgresql\"", "backend = \"sqlite\"")
            .replace("run = [\"postgresql:5432\"]", "run = []");
        let why = refused(&text);
        assert!(
            why.contains("SQLite is one file that only one host can open"),
            "{why}"
        );
        assert!(why.contains("app1, app2, edge"), "{why}");
    }

    #[test]
    fn sqlite_on_one_host_works() {
        let text = r#"
public_url = "http://127.0.0.1:8080"
[database]
backend = "sqlite"
[hosts.solo]
ssh = "root@localhost"
address = "127.0.0.1"
run = ["nginx:8080", "pages", "signup:7101", "login:7102", "profile:7103", "admin:7104", "worker:7105"]
"#;
        let p = Placement::parse(text, Path::new("/")).expect("one host on SQLite works");
        assert_eq!(p.database, Database::Sqlite);
        assert!(!p.is_spread());
    }

    #[test]
    fn pages_away_from_nginx_and_bad_entries_are_refused() {
        let text = spread(r#""pages", "login", "mailer:25", "login:x""#)
            .replace("[\"nginx:80\", \"pages\"]", "[\"nginx:80\"]");
        let why = refused(&text);
        assert!(
            why.contains("pages runs on app2 but nginx on edge"),
            "{why}"
        );
        assert!(
            why.contains("run \"login\": give its port, e.g. \"login:7102\""),
            "{why}"
        );
        assert!(why.contains("run \"mailer:25\": expected one of"), "{why}");
        assert!(why.contains("the port \"x\" is not a number"), "{why}");
    }

    #[test]
    fn loopback_and_shared_addresses_across_hosts_are_refused() {
        let why = refused(
            &spread("")
                .replace("10.0.0.4", "127.0.0.1")
                .replace("10.0.0.5", "10.0.0.3"),
        );
        assert!(
            why.contains("[hosts.app2] address = \"127.0.0.1\""),
            "{why}"
        );
        assert!(why.contains("have the same address 10.0.0.3"), "{why}");
    }

    #[test]
    fn env_may_not_set_what_deploy_derives_or_hold_secrets() {
        let text = format!(
            "{}\n[env]\nDATABASE_URL = \"x\"\nFLOTILLA_SMTP_PASSWORD = \"p\"\nFLOTILLA_LOG = \"info\"\n\
             FLOTILLA_BUS_SECRET = \"{}\"\nFLOTILLA_FACTOR_KEY = \"{}\"\n",
            spread(""),
            "a".repeat(64),
            "b".repeat(64)
        );
        let why = refused(&text);
        assert!(
            why.contains("[env] DATABASE_URL: only FLOTILLA_ variables"),
            "{why}"
        );
        for secret in [
            "FLOTILLA_SMTP_PASSWORD",
            "FLOTILLA_BUS_SECRET",
            "FLOTILLA_FACTOR_KEY",
        ] {
            assert!(
                why.contains(&format!(
                    "[env] {secret}: a secret; put it in the secrets file instead"
                )),
                "{why}"
            );
        }
        assert!(!why.contains("FLOTILLA_LOG"), "{why}");
        assert!(
            !why.contains(&"b".repeat(64)),
            "no secret in the message: {why}"
        );
    }

    #[test]
    fn unknown_keys_and_postgres_nowhere_are_refused() {
        assert!(
            refused(&spread("").replace("ssh = \"root@e\"", "sh = \"root@e\""))
                .contains("unknown field `sh`")
        );
        let why = refused(&spread("").replace("run = [\"postgresql:5432\"]", "run = []"));
        assert!(why.contains("no host runs it"), "{why}");
    }
}
