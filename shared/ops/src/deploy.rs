//! `scripts/deploy PLACEMENT [--dry-run]`: the release and each host's files, over ssh,
//! one step at a time, with a rollback of every host when an instance does not become
//! ready. The host side of each step is `scripts/flotilla-host` of the release.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::placement::{Host, Instance, Placement, Service};
use crate::release::Release;
use crate::render::{self, HostPlan, Secrets};

/// What `deploy` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub placement: PathBuf,
    /// The release tarball; default: the newest under `dist/`.
    pub release: Option<PathBuf>,
    pub dry_run: bool,
    /// `FLOTILLA_SSH_CONFIG`: passed to ssh as `-F`.
    pub ssh_config: Option<PathBuf>,
    /// `FLOTILLA_DEPLOY_READY_SECS`: how long an instance may take to become ready.
    pub ready_secs: u32,
}

/// How deploy reaches a host: ssh, or (for `--dry-run`) nothing but a printed line.
pub struct Ssh {
    config: Option<PathBuf>,
    dry_run: bool,
}

/// The agent's path in a release unpacked on a host.
fn agent(version: &str) -> String {
    format!("{}/{version}/scripts/flotilla-host", render::RELEASES)
}

impl Ssh {
    pub fn new(config: Option<PathBuf>, dry_run: bool) -> Ssh {
        Ssh { config, dry_run }
    }

    /// Runs `words` on `host` as root (through `sudo -n` when the ssh user is not),
    /// with `stdin` as its input; its standard output comes back, its errors pass
    /// through to ours.
    pub fn run<S: AsRef<str>>(
        &self,
        host: &Host,
        words: &[S],
        stdin: Option<&[u8]>,
    ) -> Result<String, String> {
        let command = shell_line(words);
        if self.dry_run {
            let input = if stdin.is_some() { " < (input)" } else { "" };
            println!("    [{}] {command}{input}", host.name);
            return Ok(String::new());
        }
        let mut ssh = self.command(host, words);
        ssh.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = ssh
            .spawn()
            .map_err(|e| format!("ssh: {e} (is openssh-client installed?)"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A failed write shows as the command's own failure below.
            let _ = pipe.write_all(input);
        }
        let output = child
            .wait_with_output()
            .map_err(|e| format!("ssh {}: {e}", host.ssh))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("    [{}] {line}", host.name);
        }
        if !output.status.success() {
            return Err(format!(
                "{}: `{}` failed ({})",
                host.name,
                words
                    .first()
                    .map_or("", |w| w.as_ref().rsplit('/').next().unwrap_or(""))
                    .to_owned()
                    + words
                        .get(1)
                        .map(|w| format!(" {}", w.as_ref()))
                        .as_deref()
                        .unwrap_or(""),
                output.status
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `ssh HOST` running `words` as root: directly when the ssh user is root, else
    /// through `sudo -n`. The one place the ssh command line is made.
    fn command<S: AsRef<str>>(&self, host: &Host, words: &[S]) -> Command {
        let command = shell_line(words);
        let mut ssh = Command::new("ssh");
        if let Some(config) = &self.config {
            ssh.arg("-F").arg(config);
        }
        ssh.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "--"])
            .arg(&host.ssh)
            .arg(format!(
                "if [ \"$(id -u)\" = 0 ]; then {command}; else sudo -n {command}; fi"
            ));
        ssh
    }

    fn agent(&self, host: &Host, version: &str, args: &[&str]) -> Result<String, String> {
        self.run(host, &agent_words(version, args), None)
    }

    fn agent_with(
        &self,
        host: &Host,
        version: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<String, String> {
        self.run(host, &agent_words(version, args), Some(stdin))
    }
}

/// The agent of release `version` with `args`, as words for `Ssh::run`.
fn agent_words(version: &str, args: &[&str]) -> Vec<String> {
    std::iter::once(agent(version))
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect()
}

/// Words as one line for a POSIX shell.
fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word for a POSIX shell.
fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@+,".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn step(text: impl AsRef<str>) {
    println!("==> {}", text.as_ref());
}

/// A short hex digest.
fn digest(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize()[..8].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What an instance runs with: the release and every file it reads. A running
/// instance with the same fingerprint is left alone.
fn fingerprint(version: &str, plan: &HostPlan, instance: Option<&Instance>) -> String {
    let mut parts = vec![version];
    for file in &plan.files {
        let read = file.path == "/etc/flotilla/flotilla.env"
            || instance.is_some_and(|i| {
                file.path == format!("/etc/flotilla/instances/{}.env", i.name)
                    || file
                        .path
                        .contains(&format!("flotilla@{}.service.d", i.name))
            });
        if read {
            parts.push(&file.path);
            parts.push(&file.contents);
        }
    }
    digest(&parts)
}

/// The host's files as a tar, for `flotilla-host stage`.
fn tar_files(plan: &HostPlan, scratch: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let root = scratch.join(&plan.host.name);
    let _ = std::fs::remove_dir_all(&root);
    for file in &plan.files {
        let path = root.join(file.path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let output = Command::new("tar")
        .args([
            "-cf",
            "-",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&root)
        .arg(".")
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    if !output.status.success() {
        return Err(format!("tar: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(output.stdout)
}

/// nginx's files for the edge, by the release's own render-proxy.sh: the server block
/// and the snippets of `flotilla/` (not `flotilla/apps/`: the operator's apps stay as
/// they are on the host).
fn nginx_files(
    placement: &Placement,
    release: &Release,
    scratch: &Path,
) -> Result<render::NginxFiles, String> {
    let out = scratch.join("nginx");
    let mut command = Command::new(release.dir.join("scripts/render-proxy.sh"));
    command
        .arg(&out)
        .arg(placement.nginx_port().to_string())
        .arg(format!("{}/www", render::DATA_DIR))
        .env(
            "FLOTILLA_PROXY_ACCESS_LOG",
            "/var/log/nginx/flotilla.access.log",
        );
    for (key, value) in render::proxy_env(placement) {
        command.env(key, value);
    }
    let output = command
        .output()
        .map_err(|e| format!("render-proxy.sh: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rendering nginx's configuration: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let read =
        |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut files = render::NginxFiles::new();
    files.insert("server.conf".to_owned(), read(&out.join("server.conf"))?);
    let snippets = out.join("flotilla");
    let entries =
        std::fs::read_dir(&snippets).map_err(|e| format!("{}: {e}", snippets.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".conf") && entry.path().is_file() {
            files.insert(name, read(&entry.path())?);
        }
    }
    Ok(files)
}

/// The whole deploy. Returns a message for the operator on failure (after rolling
/// back when something had been activated).
pub fn deploy(options: &Options) -> Result<(), String> {
    let placement = Placement::load(&options.placement).map_err(|e| e.to_string())?;
    let secrets = Secrets::load(&placement.secrets)?;
    let scratch = scratch_dir()?;
    let result = (|| {
        let release = Release::open(options.release.as_deref(), &scratch)?;
        let nginx = nginx_files(&placement, &release, &scratch)?;
        let plans = render::render(&placement, &secrets, &nginx)?;
        let ssh = Ssh::new(options.ssh_config.clone(), options.dry_run);
        let mut run = Run {
            ssh: &ssh,
            placement: &placement,
            plans: &plans,
            release: &release,
            scratch: &scratch,
            ready_secs: options.ready_secs,
            activated: Vec::new(),
            before: BTreeMap::new(),
            restarted: Vec::new(),
        };
        if options.dry_run {
            println!(
                "dry run: every step of deploying {} to {} hosts; nothing is done. A real \
                 run skips the steps whose result is already in place.",
                release.version,
                plans.len()
            );
        }
        match run.forward() {
            Ok(()) => Ok(()),
            Err(failure) if run.activated.is_empty() => Err(failure),
            Err(failure) => {
                println!("deploy failed: {failure}");
                step("rolling back every host to its previous release");
                match run.back() {
                    Ok(()) => Err(format!("{failure}; rolled back to the previous release")),
                    Err(also) => Err(format!(
                        "{failure}; the rollback failed too: {also}. Run scripts/doctor \
                         on the placement"
                    )),
                }
            }
        }
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn scratch_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "flotilla-deploy-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

struct Run<'a> {
    ssh: &'a Ssh,
    placement: &'a Placement,
    plans: &'a [HostPlan],
    release: &'a Release,
    scratch: &'a Path,
    ready_secs: u32,
    /// Hosts whose new files are installed: the rollback visits them.
    activated: Vec<&'a Host>,
    /// Per host: what ran before this deploy (instance → fingerprint).
    before: BTreeMap<String, BTreeMap<String, String>>,
    /// (host, instance) restarted by this deploy.
    restarted: Vec<(&'a Host, String)>,
}

impl<'a> Run<'a> {
    fn forward(&mut self) -> Result<(), String> {
        let version = self.release.version.as_str();
        let dry = self.ssh.dry_run;
        for plan in self.plans {
            let host = &plan.host;
            step(format!("{}: release {version}", host.name));
            let present = !dry
                && self
                    .ssh
                    .run(
                        host,
                        &[
                            "test",
                            "-f",
                            &format!("{}/{version}/.checked", render::RELEASES),
                        ],
                        None,
                    )
                    .is_ok();
            if present {
                println!("    already there");
            } else {
                let tarball = if dry {
                    Vec::new()
                } else {
                    std::fs::read(&self.release.tarball)
                        .map_err(|e| format!("{}: {e}", self.release.tarball.display()))?
                };
                let incoming = format!("/opt/flotilla/incoming/{version}.tar.gz");
                let script = format!("/opt/flotilla/incoming/flotilla-host-{version}");
                let top = format!("flotilla-{version}/scripts/flotilla-host");
                self.ssh.run(
                    host,
                    &[
                        "sh",
                        "-c",
                        &format!(
                            "mkdir -p /opt/flotilla/incoming && cat > {incoming} && \
                             tar -xzOf {incoming} {top} > {script} && \
                             bash {script} unpack {version} < {incoming}; \
                             status=$?; rm -f {incoming} {script}; exit $status"
                        ),
                    ],
                    Some(&tarball),
                )?;
            }
            step(format!("{}: stage its files", host.name));
            let files = if dry {
                Vec::new()
            } else {
                tar_files(plan, self.scratch)?
            };
            if dry {
                for file in &plan.files {
                    println!("    [{}] {} (mode {:o})", host.name, file.path, file.mode);
                }
            }
            let changes = self
                .ssh
                .agent_with(host, version, &["stage", version], &files)?;
            for line in changes.lines() {
                println!("    {line}");
            }
        }

        let hub = self.placement.hub();
        let hub_host = self.host(&hub.host);
        step(format!("{}: migrate the database (once)", hub_host.name));
        self.ssh.agent(hub_host, version, &["migrate", version])?;

        self.keys()?;

        for plan in self.plans {
            step(format!("{}: activate {version}", plan.host.name));
            self.activated.push(&plan.host);
            self.ssh
                .agent(&plan.host, version, &["activate", version])?;
        }

        for plan in self.plans {
            let running = self.ssh.agent(&plan.host, version, &["running"])?;
            let map = running
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(n, f)| (n.to_owned(), f.trim().to_owned()))
                .collect();
            self.before.insert(plan.host.name.clone(), map);
        }
        for plan in self.plans {
            for instance in &plan.instances {
                let wanted = fingerprint(version, plan, Some(instance));
                let now = self.before[&plan.host.name].get(&instance.name);
                if !dry && now == Some(&wanted) {
                    println!("==> {}: {} unchanged", plan.host.name, instance.name);
                    continue;
                }
                step(format!(
                    "{}: restart {} ({}), then wait for its /ready",
                    plan.host.name,
                    instance.name,
                    instance.socket()
                ));
                self.restarted.push((&plan.host, instance.name.clone()));
                self.ssh
                    .agent(&plan.host, version, &["restart", &instance.name, &wanted])?;
                self.ssh.agent(
                    &plan.host,
                    version,
                    &["ready", &instance.name, &self.ready_secs.to_string()],
                )?;
            }
        }
        let edge = self.placement.edge();
        let plan = self.plan(&edge.name);
        let pages = fingerprint(version, plan, None);
        if dry || self.before[&edge.name].get("pages") != Some(&pages) {
            step(format!(
                "{}: build the static site, start its watcher",
                edge.name
            ));
            self.restarted.push((&plan.host, "pages".to_owned()));
            self.ssh.agent(&plan.host, version, &["pages", &pages])?;
        }
        step(format!("{}: nginx -t, then reload nginx", edge.name));
        self.ssh.agent(&plan.host, version, &["nginx"])?;
        for plan in self.plans {
            step(format!(
                "{}: stop what no longer runs there",
                plan.host.name
            ));
            self.ssh.agent(&plan.host, version, &["retire"])?;
        }
        for plan in self.plans {
            self.ssh.agent(&plan.host, version, &["commit"])?;
        }
        step(format!("deployed {version}"));
        Ok(())
    }

    /// Signing keys: made once on the first login host, the same on every other.
    fn keys(&self) -> Result<(), String> {
        let version = self.release.version.as_str();
        let logins = self.placement.instances_of(Service::Login);
        let mut hosts: Vec<&Host> = Vec::new();
        for login in &logins {
            let host = self.host(&login.host);
            if !hosts.iter().any(|h| h.name == host.name) {
                hosts.push(host);
            }
        }
        let Some((first, others)) = hosts.split_first() else {
            return Ok(());
        };
        step(format!("{}: signing keys (made once)", first.name));
        self.ssh
            .agent(first, version, &["keys-generate", version])?;
        let digest = self.ssh.agent(first, version, &["keys-digest"])?;
        for host in others {
            step(format!(
                "{}: the same signing keys as {}",
                host.name, first.name
            ));
            if !self.ssh.dry_run && self.ssh.agent(host, version, &["keys-digest"])? == digest {
                println!("    already the same");
                continue;
            }
            let keys = if self.ssh.dry_run {
                Vec::new()
            } else {
                self.ssh.agent_bytes(first, version, &["keys-export"])?
            };
            self.ssh
                .agent_with(host, version, &["keys-import"], &keys)?;
        }
        Ok(())
    }

    /// Every activated host back to its rollback point, then the instances this deploy
    /// restarted started again on the previous release.
    fn back(&mut self) -> Result<(), String> {
        let version = self.release.version.as_str();
        for host in self.activated.clone() {
            step(format!(
                "{}: restore the previous files and release",
                host.name
            ));
            self.ssh.agent(host, version, &["rollback"])?;
        }
        let restarted = std::mem::take(&mut self.restarted);
        for (host, name) in &restarted {
            let Some(previous) = self.before.get(&host.name).and_then(|m| m.get(name)) else {
                continue; // new in this deploy: retire stops it below
            };
            if name == "pages" {
                self.ssh.agent(host, version, &["pages", previous])?;
                continue;
            }
            step(format!(
                "{}: restart {name} on the previous release",
                host.name
            ));
            self.ssh
                .agent(host, version, &["restart", name, previous])?;
            self.ssh.agent(
                host,
                version,
                &["ready", name, &self.ready_secs.to_string()],
            )?;
        }
        let edge = self.placement.edge();
        self.ssh.agent(edge, version, &["nginx"])?;
        for host in self.activated.clone() {
            self.ssh.agent(host, version, &["retire"])?;
        }
        Ok(())
    }

    fn host(&self, name: &str) -> &'a Host {
        &self.plan(name).host
    }

    fn plan(&self, name: &str) -> &'a HostPlan {
        self.plans
            .iter()
            .find(|p| p.host.name == name)
            .unwrap_or_else(|| unreachable!("every host has a plan"))
    }
}

impl Ssh {
    /// Runs `words` on `host` as root, as `run` does, and returns how it ended and what
    /// it printed, whatever its exit status (doctor reads the lines of a check that
    /// found failures, which exits 1).
    pub fn output<S: AsRef<str>>(
        &self,
        host: &Host,
        words: &[S],
    ) -> Result<std::process::Output, String> {
        self.command(host, words)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ssh: {e} (is openssh-client installed?)"))
    }

    /// Like `agent`, for output that is not text (the key folder's tar); never printed.
    fn agent_bytes(&self, host: &Host, version: &str, args: &[&str]) -> Result<Vec<u8>, String> {
        let output = self
            .command(host, &agent_words(version, args))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ssh {}: {e}", host.ssh))?;
        if !output.status.success() {
            return Err(format!(
                "{}: {} failed: {}",
                host.name,
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(output.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(quote("/opt/flotilla/x"), "/opt/flotilla/x");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn a_fingerprint_follows_what_the_instance_reads() {
        let placement = Placement::parse(
            include_str!("../../../proxy/placement.example.toml"),
            Path::new("/"),
        )
        .expect("the example works");
        let secrets = Secrets::parse(&format!(
            "DATABASE_PASSWORD=x\nFLOTILLA_BUS_SECRET={}\nFLOTILLA_FACTOR_KEY={}\n",
            "a".repeat(64),
            "b".repeat(64)
        ))
        .expect("parses");
        let plans = render::render(&placement, &secrets, &render::tests::server_only("s"))
            .expect("renders");
        let app2 = plans.iter().find(|p| p.host.name == "app2").expect("app2");
        let login = &app2.instances[0];
        let a = fingerprint("1", app2, Some(login));
        assert_eq!(a, fingerprint("1", app2, Some(login)), "stable");
        assert_ne!(
            a,
            fingerprint("2", app2, Some(login)),
            "a new release restarts"
        );
        let profile = &app2.instances[1];
        assert_ne!(a, fingerprint("1", app2, Some(profile)), "own listen file");
        // nginx's files do not restart the services.
        let other = render::render(&placement, &secrets, &render::tests::server_only("t"))
            .expect("renders");
        let app2_other = other.iter().find(|p| p.host.name == "app2").expect("app2");
        assert_eq!(a, fingerprint("1", app2_other, Some(login)));
    }
}
