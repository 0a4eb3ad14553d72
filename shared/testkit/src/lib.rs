//! Test-only helpers (a dev-dependency, never in a binary): a database of its own for
//! each test, on SQLite or on the throwaway PostgreSQL cluster that `make test` starts,
//! and the real fleet — the service binaries behind the real nginx — on free ports;
//! a real browser (Chromium through chromedriver) that walks its pages ([`browser`]).
//!
//! Environment: `FLOTILLA_TEST_POSTGRES_URL` (an admin URL of the test cluster; set by
//! `make test`), `FLOTILLA_BIN_DIR` (where the built binaries are; default
//! `target/debug`), `CI` (when true, a missing PostgreSQL or nginx fails the test
//! instead of skipping it), `FLOTILLA_KEEP_TEST_DIRS` (keep temporary folders).
#![allow(unsafe_code)] // one pre_exec hook: children die with the test that made them
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure is a panic

mod accounts;
pub mod browser;
mod db;
mod fleet;
mod process;
mod smtp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use accounts::accounts_like;
pub use browser::Browser;
pub use db::{PgCluster, TestDb, postgres_tests_on};
pub use fleet::{Fleet, FleetBuilder, Restart, SERVICES, nginx_binary, python3, wrk};
pub use process::{Proc, signal_group};
pub use smtp::{Received, SmtpSink};

/// Declares each test twice, `name::sqlite` and `name::postgres`, each with a database
/// of its own. The PostgreSQL one needs the cluster `make test` starts (without it,
/// outside CI, it is skipped; in CI it fails).
#[macro_export]
macro_rules! on_both_databases {
    ($(fn $name:ident($db:ident: TestDb) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn run($db: $crate::TestDb) $body

                #[test]
                fn sqlite() {
                    run($crate::TestDb::sqlite());
                }

                #[test]
                fn postgres() {
                    if let Some(db) = $crate::TestDb::postgres() {
                        run(db);
                    }
                }
            }
        )*
    };
}

/// True when running in CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true" | "1" | "yes"))
}

/// The checkout's top folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Where the service binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FLOTILLA_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    target.join("debug")
}

/// The path of a built binary, or a panic that says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` \
         (`make test` does)",
        path.display()
    );
    path
}

/// A port nothing listens on right now, below the kernel's ephemeral range: a port
/// from that range can be taken by any client's outgoing connection, so a service
/// stopped and started again could not get it back.
///
/// Reserved for the life of this test process, across processes: nextest runs each
/// test in a process of its own, and a port a fleet keeps for a stopped service (to
/// start it there again) is unbound meanwhile, so another test could otherwise pick
/// it. The reservation is a lock on `/tmp/flotilla-test-ports/<port>`, released by the
/// system when the process ends, however it ends.
pub fn free_port() -> u16 {
    static RESERVED: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 20_000u16.min(ephemeral_start.saturating_sub(1000));
    let dir = std::env::temp_dir().join("flotilla-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    for _ in 0..1000 {
        let port = rand::random_range(low..ephemeral_start);
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // another test process has it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            RESERVED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(file);
            return port;
        }
    }
    panic!("no free port on the loopback interface below {ephemeral_start}");
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A value that breaks a page if shown as it is (markup, both quotes, an ampersand)…
pub const MARKUP: &str = "<script>\"'&";
/// …and what a page shows instead.
pub const MARKUP_ESCAPED: &str = "&lt;script&gt;&quot;&#39;&amp;";

/// The text of a mail as a person reads it: quoted-printable soft line breaks joined
/// and `=3D` turned back into `=`.
pub fn mail_text(raw: &str) -> String {
    raw.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The value of `name=` in the first link of a mail that carries one.
pub fn link_param(mail: &str, name: &str) -> Option<String> {
    let text = mail_text(mail);
    let start = text.find(&format!("{name}="))? + name.len() + 1;
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    )
}

/// A folder removed when dropped (unless `FLOTILLA_KEEP_TEST_DIRS` is set).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "flotilla-{label}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        // As a data folder must be: others (nginx's workers) pass through, never list.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o711)
            .create(&path)
            .expect("a temporary folder can be made");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("FLOTILLA_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
