//! From a placement and its secrets, the files each host gets: its env file, one env
//! file per instance, systemd drop-ins for second copies, and the edge's nginx
//! upstreams. Pure functions of their inputs, so that an unchanged placement renders
//! byte-identical files and deploy can tell that nothing changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::placement::{BUS_PORTS, Database, Host, Instance, Placement, Role, Service};

/// The production paths of the host layout (docs/operations.md, "Placement and deploy").
pub const DATA_DIR: &str = "/var/lib/flotilla";
pub const RELEASES: &str = "/opt/flotilla/releases";

/// The secrets file: `KEY=value` lines, mode 0600.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a secret never reaches a log line.
        f.debug_list().entries(self.values.keys()).finish()
    }
}

impl Secrets {
    /// Reads the secrets file, refusing one its group or others may read.
    pub fn load(path: &Path) -> Result<Secrets, String> {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|e| {
            format!(
                "the secrets file {}: {e} (see proxy/secrets.example.env)",
                path.display()
            )
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "the secrets file {} may be read by others (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("the secrets file {}: {e}", path.display()))?;
        Secrets::parse(&text).map_err(|e| format!("the secrets file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Secrets, String> {
        let mut values = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {}: expected KEY=value", number + 1));
            };
            let key = key.trim();
            if key != "DATABASE_PASSWORD" && !key.starts_with("FLOTILLA_") {
                return Err(format!(
                    "line {}: {key}: expected DATABASE_PASSWORD or a FLOTILLA_ variable",
                    number + 1
                ));
            }
            if !value.is_empty() {
                values.insert(key.to_owned(), value.to_owned());
            }
        }
        Ok(Secrets { values })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// One file for one host: its path there, its mode, its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub path: String,
    pub mode: u32,
    pub contents: String,
}

/// Everything deploy installs on one host, and what runs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    pub host: Host,
    pub instances: Vec<Instance>,
    pub nginx: bool,
    pub pages: bool,
    pub files: Vec<HostFile>,
}

/// nginx's files for the edge, by name under `/etc/nginx/flotilla/`: the server block
/// (`server.conf`) and the snippets it and the apps' locations include, as the
/// release's `scripts/render-proxy.sh` rendered them.
pub type NginxFiles = BTreeMap<String, String>;

/// Renders every host's files; the edge gets `nginx`'s.
pub fn render(
    placement: &Placement,
    secrets: &Secrets,
    nginx_files: &NginxFiles,
) -> Result<Vec<HostPlan>, String> {
    let database_url = database_url(placement, secrets)?;
    if placement.is_spread() {
        // A single host makes these in its data folder; several must share one.
        for secret in SHARED_SECRETS {
            secret.check(secrets)?;
        }
    }
    let instances = placement.instances();
    let mut plans = Vec::new();
    for host in &placement.hosts {
        let here: Vec<Instance> = instances
            .iter()
            .filter(|i| i.host == host.name)
            .cloned()
            .collect();
        let nginx = host.runs.iter().any(|r| matches!(r, Role::Nginx(_)));
        let pages = host.runs.contains(&Role::Pages);
        let mut files = Vec::new();
        if !here.is_empty() || pages {
            files.push(HostFile {
                path: "/etc/flotilla/flotilla.env".to_owned(),
                mode: 0o640,
                contents: host_env(placement, secrets, host, &database_url)?,
            });
        }
        for instance in &here {
            files.push(HostFile {
                path: format!("/etc/flotilla/instances/{}.env", instance.name),
                mode: 0o640,
                contents: instance_env(placement, instance),
            });
            if instance.name != instance.service.name() {
                files.push(HostFile {
                    path: format!(
                        "/etc/systemd/system/flotilla@{}.service.d/instance.conf",
                        instance.name
                    ),
                    mode: 0o644,
                    contents: format!(
                        "# A second {service} on this host (written by scripts/deploy).\n\
                         [Service]\nExecStart=\n\
                         ExecStart=/opt/flotilla/current/bin/flotilla-{service} serve\n",
                        service = instance.service
                    ),
                });
            }
        }
        files.push(HostFile {
            path: "/etc/flotilla/placement".to_owned(),
            mode: 0o644,
            contents: runs_list(&here, pages, nginx),
        });
        if nginx {
            files.push(HostFile {
                path: "/etc/nginx/flotilla/upstreams.conf".to_owned(),
                mode: 0o644,
                contents: upstreams(placement),
            });
            for (name, contents) in nginx_files {
                files.push(HostFile {
                    path: format!("/etc/nginx/flotilla/{name}"),
                    mode: 0o644,
                    contents: contents.clone(),
                });
            }
            files.push(HostFile {
                path: "/etc/nginx/conf.d/flotilla.conf".to_owned(),
                mode: 0o644,
                contents: "# flotilla (written by scripts/deploy): the upstreams, then the \
                           server block.\ninclude /etc/nginx/flotilla/upstreams.conf;\n\
                           include /etc/nginx/flotilla/server.conf;\n"
                    .to_owned(),
            });
        }
        plans.push(HostPlan {
            host: host.clone(),
            instances: here,
            nginx,
            pages,
            files,
        });
    }
    Ok(plans)
}

/// A secret every host of a spread fleet must hold alike, so the secrets file's: 64 hex
/// digits (`openssl rand -hex 32`), or more when `more` allows it.
struct SharedSecret {
    name: &'static str,
    /// What it is, for the message that asks for it.
    what: &'static str,
    more: bool,
}

const SHARED_SECRETS: [SharedSecret; 2] = [
    SharedSecret {
        name: "FLOTILLA_BUS_SECRET",
        what: "the secret every bus message is sealed with",
        more: true,
    },
    SharedSecret {
        name: "FLOTILLA_FACTOR_KEY",
        what: "the key second factors' secrets are sealed with at rest (a fleet that ran \
               on one host: the 64 digits of its /var/lib/flotilla/factor.key, or no \
               authenticator app set up there opens)",
        more: false,
    },
];

impl SharedSecret {
    fn check(&self, secrets: &Secrets) -> Result<(), String> {
        let Some(value) = secrets.get(self.name) else {
            return Err(format!(
                "the fleet spans several hosts: set {} in the secrets file (openssl rand \
                 -hex 32), the same for every host: {}",
                self.name, self.what
            ));
        };
        let length_ok = value.len() == 64 || (self.more && value.len() > 64);
        if length_ok && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(format!(
                "{} in the secrets file: expected {} hex digits (openssl rand -hex 32)",
                self.name,
                if self.more {
                    "64 or more"
                } else {
                    "exactly 64"
                }
            ))
        }
    }
}

/// `DATABASE_URL` for every host: the PostgreSQL server's private address, or the
/// SQLite file in the data folder.
fn database_url(placement: &Placement, secrets: &Secrets) -> Result<String, String> {
    match &placement.database {
        Database::Sqlite => Ok(format!("sqlite://{DATA_DIR}/flotilla.db")),
        Database::Postgresql {
            name,
            user,
            host,
            port,
        } => {
            let password = secrets
                .get("DATABASE_PASSWORD")
                .ok_or("the database is PostgreSQL: set DATABASE_PASSWORD in the secrets file")?;
            let address = &placement
                .host(host)
                .ok_or("the database host is not among the hosts")?
                .address;
            let address = if address.contains(':') {
                format!("[{address}]")
            } else {
                address.clone()
            };
            Ok(format!(
                "postgres://{user}:{}@{address}:{port}/{name}",
                percent_encode(password)
            ))
        }
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn host_env(
    placement: &Placement,
    secrets: &Secrets,
    host: &Host,
    database_url: &str,
) -> Result<String, String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| vars.push((key.to_owned(), value));
    set("FLOTILLA_DATA_DIR", DATA_DIR.to_owned());
    set("DATABASE_URL", database_url.to_owned());
    // Migrations run once per deploy; keys are made once and copied to every login.
    set("FLOTILLA_AUTO_MIGRATE", "false".to_owned());
    set("FLOTILLA_KEYS_GENERATE", "false".to_owned());
    set("FLOTILLA_PUBLIC_URL", placement.public_url.clone());
    let edge = placement.edge();
    let mut trusted = vec!["127.0.0.1".to_owned(), "::1".to_owned()];
    if !trusted.contains(&edge.address) {
        trusted.push(edge.address.clone());
    }
    set("FLOTILLA_TRUSTED_PROXIES", trusted.join(","));
    let logins = placement.instances_of(Service::Login);
    let login = logins
        .iter()
        .find(|i| i.host == host.name)
        .or(logins.first())
        .ok_or("no login instance")?;
    set(
        "FLOTILLA_JWKS_URL",
        format!("{}/login/.well-known/jwks.json", login.url()),
    );
    for (key, endpoint) in bus_endpoints(&placement.hub().address) {
        set(key, endpoint);
    }
    let fleet: Vec<String> = Service::ALL
        .into_iter()
        .map(|service| {
            let urls: Vec<String> = placement
                .instances_of(service)
                .iter()
                .map(Instance::url)
                .collect();
            format!("{service}={}", urls.join(","))
        })
        .collect();
    set("FLOTILLA_ADMIN_FLEET", fleet.join(" "));
    set("FLOTILLA_LOG_STYLE", "never".to_owned());
    let mut out = format!(
        "# /etc/flotilla/flotilla.env of host {}: written by scripts/deploy from the\n\
         # placement. Edit the placement and deploy again rather than this file.\n",
        host.name
    );
    for (key, value) in vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(placement.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        if key.starts_with("FLOTILLA_PROXY_") {
            continue; // nginx's, rendered into server.conf
        }
        line(&mut out, key, value)?;
    }
    for (key, value) in &secrets.values {
        if key.starts_with("FLOTILLA_") {
            line(&mut out, key, value)?;
        }
    }
    Ok(out)
}

/// One `KEY=value` line, read alike by systemd's EnvironmentFile and the host agent:
/// no quoting, so a value may not hold what either would interpret.
fn line(out: &mut String, key: &str, value: &str) -> Result<(), String> {
    if value.contains(['\\', '"', '\'', '\n', '\r', '\0']) || value.trim() != value {
        return Err(format!(
            "{key}: a value may not hold quotes, backslashes, line breaks or leading and \
             trailing spaces in an env file"
        ));
    }
    let _ = writeln!(out, "{key}={value}");
    Ok(())
}

fn instance_env(placement: &Placement, instance: &Instance) -> String {
    let mut out = format!(
        "# {} on host {} (written by scripts/deploy).\n{}={}\n",
        instance.name,
        instance.host,
        instance.service.listen_variable(),
        instance.socket()
    );
    // A worker that is not the hub binds its bus sockets on loopback, unused: the
    // others connect to the hub's.
    if instance.service == Service::Worker && placement.hub() != *instance {
        for (key, endpoint) in bus_endpoints("127.0.0.1") {
            let _ = writeln!(out, "{key}={endpoint}");
        }
    }
    out
}

/// The bus variables and their endpoints on the hub at `address`.
fn bus_endpoints(address: &str) -> [(&'static str, String); 3] {
    let socket = |port: u16| {
        let hub = Instance {
            name: String::new(),
            service: Service::Worker,
            host: String::new(),
            address: address.to_owned(),
            port,
        };
        format!("tcp://{}", hub.socket())
    };
    [
        ("FLOTILLA_BUS_WAKE", socket(BUS_PORTS[0])),
        ("FLOTILLA_BUS_EVENTS_IN", socket(BUS_PORTS[1])),
        ("FLOTILLA_BUS_EVENTS_OUT", socket(BUS_PORTS[2])),
    ]
}

/// The host agent's list of what runs on a host: `instance service address:port`
/// lines, then `pages` and `nginx` when they run there.
fn runs_list(instances: &[Instance], pages: bool, nginx: bool) -> String {
    let mut out = String::from("# What runs on this host (written by scripts/deploy).\n");
    for i in instances {
        let _ = writeln!(out, "{} {} {}", i.name, i.service, i.socket());
    }
    if pages {
        out.push_str("pages\n");
    }
    if nginx {
        out.push_str("nginx\n");
    }
    out
}

/// nginx's upstreams: one per service, every instance a `server` line.
pub fn upstreams(placement: &Placement) -> String {
    let mut out = String::from(
        "# Placement (written by scripts/deploy from the placement file): where each\n\
         # service runs. A request that cannot reach an instance is retried on the next\n\
         # when it is idempotent (server.conf's proxy_next_upstream). max_fails=0: an\n\
         # instance is never set aside for failing, so one restarted a moment ago takes\n\
         # requests again at once; idle connections are closed after 20 s, each holding\n\
         # the service's buffers for it (proxy/upstreams.conf says why).\n",
    );
    for service in Service::ALL {
        if service == Service::Worker {
            continue; // no public path
        }
        let _ = writeln!(out, "\nupstream flotilla_{service} {{");
        for instance in placement.instances_of(service) {
            let _ = writeln!(out, "    server {} max_fails=0;", instance.socket());
        }
        out.push_str("    keepalive 32;\n    keepalive_timeout 20s;\n}\n");
    }
    out
}

/// The `FLOTILLA_PROXY_` settings of the placement's `[env]`, for render-proxy.sh.
pub fn proxy_env(placement: &Placement) -> Vec<(String, String)> {
    placement
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("FLOTILLA_PROXY_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn example() -> Placement {
        Placement::parse(
            include_str!("../../../proxy/placement.example.toml"),
            Path::new("/"),
        )
        .expect("the example works")
    }

    fn secrets() -> Secrets {
        Secrets::parse(&format!(
            "# comment\nDATABASE_PASSWORD=p@ss word\nFLOTILLA_BUS_SECRET={}\n\
             FLOTILLA_FACTOR_KEY={}\nFLOTILLA_SMTP_PASSWORD=smtp\n",
            "ab".repeat(32),
            "cd".repeat(32)
        ))
        .expect("parses")
    }

    /// nginx's files with the server block alone.
    pub(crate) fn server_only(server: &str) -> NginxFiles {
        NginxFiles::from([("server.conf".to_owned(), server.to_owned())])
    }

    fn file<'a>(plans: &'a [HostPlan], host: &str, path: &str) -> &'a str {
        &plans
            .iter()
            .find(|p| p.host.name == host)
            .and_then(|p| p.files.iter().find(|f| f.path == path))
            .unwrap_or_else(|| panic!("{host}:{path}"))
            .contents
    }

    #[test]
    fn each_host_gets_the_addresses_of_the_others() {
        let plans = render(&example(), &secrets(), &server_only("server {}\n")).expect("renders");
        let app2 = file(&plans, "app2", "/etc/flotilla/flotilla.env");
        assert!(
            app2.contains(
                "\nDATABASE_URL=postgres://flotilla:p%40ss%20word@10.0.0.5:5432/flotilla\n"
            ),
            "{app2}"
        );
        // login on the same host first.
        assert!(
            app2.contains("\nFLOTILLA_JWKS_URL=http://10.0.0.4:7102/login/.well-known/jwks.json\n")
        );
        assert!(app2.contains("\nFLOTILLA_BUS_WAKE=tcp://10.0.0.3:7110\n"));
        assert!(app2.contains("\nFLOTILLA_TRUSTED_PROXIES=127.0.0.1,::1,10.0.0.2\n"));
        assert!(app2.contains("\nFLOTILLA_ADMIN_FLEET=signup=http://10.0.0.3:7101 login=http://10.0.0.3:7102,http://10.0.0.4:7102 "));
        assert!(app2.contains("\nFLOTILLA_SMTP_PASSWORD=smtp\n"));
        // The secrets every host shares, on each host that runs a service.
        for host in ["app1", "app2"] {
            let env = file(&plans, host, "/etc/flotilla/flotilla.env");
            assert!(
                env.contains(&format!("\nFLOTILLA_BUS_SECRET={}\n", "ab".repeat(32))),
                "{host}"
            );
            assert!(
                env.contains(&format!("\nFLOTILLA_FACTOR_KEY={}\n", "cd".repeat(32))),
                "{host}"
            );
        }
        assert!(app2.contains("\nFLOTILLA_MAIL_TRANSPORT=smtp\n"));
        assert!(
            !app2.contains("FLOTILLA_PROXY_ADMIN_ALLOW"),
            "nginx's setting stays nginx's"
        );
        assert_eq!(
            file(&plans, "app2", "/etc/flotilla/instances/profile.env"),
            "# profile on host app2 (written by scripts/deploy).\nFLOTILLA_PROFILE_LISTEN=10.0.0.4:7103\n"
        );
        let upstreams = file(&plans, "edge", "/etc/nginx/flotilla/upstreams.conf");
        assert!(upstreams.contains(
            "upstream flotilla_login {\n    server 10.0.0.3:7102 max_fails=0;\n    server 10.0.0.4:7102 max_fails=0;\n"
        ), "{upstreams}");
        assert!(!upstreams.contains("worker"));
        // The database host runs nothing of ours: it gets only the (empty) list.
        let db = plans.iter().find(|p| p.host.name == "db").expect("db");
        assert_eq!(db.files.len(), 1);
        assert_eq!(
            file(&plans, "edge", "/etc/flotilla/placement"),
            "# What runs on this host (written by scripts/deploy).\npages\nnginx\n"
        );
    }

    #[test]
    fn rendering_twice_gives_the_same_bytes() {
        let a = render(&example(), &secrets(), &server_only("s")).expect("renders");
        let b = render(&example(), &secrets(), &server_only("s")).expect("renders");
        assert_eq!(a, b);
    }

    #[test]
    fn a_spread_fleet_needs_the_bus_secret_and_postgres_its_password() {
        let none = Secrets::parse("DATABASE_PASSWORD=x\n").expect("parses");
        let why = render(&example(), &none, &server_only("")).expect_err("refused");
        assert!(why.contains("set FLOTILLA_BUS_SECRET"), "{why}");
        let short =
            Secrets::parse("DATABASE_PASSWORD=x\nFLOTILLA_BUS_SECRET=abc\n").expect("parses");
        assert!(
            render(&example(), &short, &server_only(""))
                .expect_err("refused")
                .contains("64 or more hex")
        );
        let no_password =
            Secrets::parse(&format!("FLOTILLA_BUS_SECRET={}\n", "a".repeat(64))).expect("parses");
        assert!(
            render(&example(), &no_password, &server_only(""))
                .expect_err("refused")
                .contains("DATABASE_PASSWORD")
        );
    }

    #[test]
    fn a_spread_fleet_needs_the_factor_key_of_64_hex_digits() {
        let with_key = |key: Option<&str>| {
            let mut text = format!(
                "DATABASE_PASSWORD=x\nFLOTILLA_BUS_SECRET={}\n",
                "a".repeat(64)
            );
            if let Some(key) = key {
                text.push_str(&format!("FLOTILLA_FACTOR_KEY={key}\n"));
            }
            render(
                &example(),
                &Secrets::parse(&text).expect("parses"),
                &server_only(""),
            )
        };
        let why = with_key(None).expect_err("refused");
        assert!(
            why.contains("set FLOTILLA_FACTOR_KEY in the secrets file"),
            "{why}"
        );
        assert!(
            why.contains("factor.key"),
            "says where a single host kept it: {why}"
        );
        let bad = [
            "b".repeat(63),
            "b".repeat(66),
            format!("{}g", "b".repeat(63)),
        ];
        for key in &bad {
            let why = with_key(Some(key)).expect_err("refused");
            assert_eq!(
                why,
                "FLOTILLA_FACTOR_KEY in the secrets file: expected exactly 64 hex digits \
                 (openssl rand -hex 32)"
            );
            assert!(
                !why.contains(key.as_str()),
                "the value stays out of the message"
            );
        }
        assert!(with_key(Some(&"B7".repeat(32))).is_ok());
        // One host makes its own factor.key: the secrets file need not hold one.
        let single = Placement::parse(
            r#"
public_url = "http://127.0.0.1:8080"
[database]
backend = "sqlite"
[hosts.solo]
ssh = "root@localhost"
address = "127.0.0.1"
run = ["nginx:8080", "pages", "signup:7101", "login:7102", "profile:7103", "admin:7104", "worker:7105"]
"#,
            Path::new("/"),
        )
        .expect("one host");
        let plans = render(
            &single,
            &Secrets::parse("").expect("parses"),
            &server_only(""),
        )
        .expect("renders");
        let env = file(&plans, "solo", "/etc/flotilla/flotilla.env");
        assert!(!env.contains("FLOTILLA_FACTOR_KEY"), "{env}");
    }

    #[test]
    fn a_value_the_env_file_cannot_hold_is_refused_by_name_only() {
        let quoted = Secrets::parse(&format!(
            "DATABASE_PASSWORD=x\nFLOTILLA_BUS_SECRET={}\nFLOTILLA_FACTOR_KEY={}\n\
             FLOTILLA_SMTP_PASSWORD=a\"b\n",
            "a".repeat(64),
            "b".repeat(64)
        ))
        .expect("parses");
        let why = render(&example(), &quoted, &server_only("")).expect_err("refused");
        assert!(why.starts_with("FLOTILLA_SMTP_PASSWORD: "), "{why}");
        assert!(!why.contains("a\"b"), "the value stays out of the message");
        assert!(Secrets::parse("PATH=/bin\n").is_err());
        assert_eq!(
            format!("{:?}", secrets()),
            "[\"DATABASE_PASSWORD\", \"FLOTILLA_BUS_SECRET\", \"FLOTILLA_FACTOR_KEY\", \
             \"FLOTILLA_SMTP_PASSWORD\"]"
        );
    }

    #[test]
    fn a_second_copy_gets_its_own_listen_address_and_binary() {
        let text = include_str!("../../../proxy/placement.example.toml")
            .replace("\"admin:7104\"]", "\"admin:7104\", \"login:7202\"]");
        let placement = Placement::parse(&text, Path::new("/")).expect("works");
        let plans = render(&placement, &secrets(), &server_only("")).expect("renders");
        assert_eq!(
            file(&plans, "app2", "/etc/flotilla/instances/login-7202.env"),
            "# login-7202 on host app2 (written by scripts/deploy).\nFLOTILLA_LOGIN_LISTEN=10.0.0.4:7202\n"
        );
        assert!(
            file(
                &plans,
                "app2",
                "/etc/systemd/system/flotilla@login-7202.service.d/instance.conf"
            )
            .contains("ExecStart=/opt/flotilla/current/bin/flotilla-login serve")
        );
    }
}
