//! flotilla-pages: writes the static public site that nginx serves at `/`: the home
//! page, the 404 page, the stylesheet, the public profiles and their directory under
//! `/people/`, `sitemap.xml`, `feed.xml` and `robots.txt`. It listens on no port.
//! `build` writes everything once (after a deploy, from the systemd timer); `watch`
//! keeps the profiles and their lists current, reacting to `user.*` events on the bus
//! and catching up from `users.updated_at` for any event it missed. A full build goes
//! into a fresh folder switched in at once ([`builds`]); an update by `watch` writes
//! each file beside its final name and renames it into place (and leaves a file that
//! already holds its bytes alone), so nginx never serves half a page nor a mix of two
//! builds.

mod builds;
mod names;
mod output;
mod people;
pub mod reference;
mod site;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use askama::Template;
use flotilla_db::{AnyConnection, PageBuild, PageUpdate, PoolConfig};
use flotilla_kit::html::render;
use flotilla_kit::{ConfigError, Env};

pub use builds::{BuildStatus, Status, UpdateStatus};
use output::Output;
pub use people::{People, Profile};

/// What `build` and `watch` read.
#[derive(Debug, Clone)]
pub struct PagesConfig {
    /// `FLOTILLA_PAGES_OUT` (default `<FLOTILLA_DATA_DIR>/www`): the folder nginx serves.
    pub out: PathBuf,
    /// `FLOTILLA_SITE_NAME` (default `flotilla`): the name shown on the pages.
    pub site_name: String,
    /// `FLOTILLA_PUBLIC_URL` (default `http://127.0.0.1:8080`): the site's origin, for
    /// the absolute addresses of the sitemap, the feed and robots.txt.
    pub public_url: String,
    /// `DATABASE_URL` (default the SQLite file under `FLOTILLA_DATA_DIR`).
    pub database: PoolConfig,
    /// `FLOTILLA_BUS_EVENTS_OUT` (default `tcp://127.0.0.1:7112`): where `watch` hears
    /// of changed accounts (and the bus secret).
    pub events_out: flotilla_bus::BusEndpoint,
    /// `FLOTILLA_PAGES_CATCHUP_SECS` (default 30): how often `watch` reads the accounts
    /// changed since its last pass, for changes whose event it missed.
    pub catch_up: Duration,
    /// `FLOTILLA_PAGES_REBUILD_SECS` (default 86400, nightly): how often `watch`
    /// reconciles every public page with the database by a full build.
    pub rebuild: Duration,
}

impl PagesConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let data_dir = flotilla_kit::config::data_dir(env)?;
        Ok(Self {
            out: env.path("FLOTILLA_PAGES_OUT", data_dir.join("www"))?,
            site_name: env.string("FLOTILLA_SITE_NAME", "flotilla"),
            public_url: flotilla_kit::config::public_url(env)?,
            database: flotilla_kit::config::database(env, &data_dir)?,
            events_out: flotilla_kit::config::bus(env)?.events_out,
            catch_up: Duration::from_secs(env.number(
                "FLOTILLA_PAGES_CATCHUP_SECS",
                30,
                1..=86_400,
            )?),
            rebuild: Duration::from_secs(env.number(
                "FLOTILLA_PAGES_REBUILD_SECS",
                86_400,
                60..=604_800,
            )?),
        })
    }
}

/// Writes the whole site into a fresh folder (the fixed pages, then every public
/// profile), switches it in (see [`builds`]), records the build in `page_builds` (the
/// admin console's fleet page shows the last) and in the status file. Returns how many
/// profiles are published.
pub fn build(config: &PagesConfig) -> anyhow::Result<usize> {
    let mut conn = open(config)?;
    let _lock = Lock::take(&config.out)?;
    Ok(full_build(config, &mut conn)?.len())
}

/// One full build, with the [`Lock`] held; returns its profiles (in the new folder).
fn full_build(config: &PagesConfig, conn: &mut AnyConnection) -> anyhow::Result<People> {
    let started_at = chrono::Utc::now();
    let clock = Instant::now();
    // A folder from an older version is moved aside first, so the new build is the
    // newest in `<out>.builds`.
    let previous = builds::current(&config.out)?;
    let folder = builds::new_folder(&config.out)?;
    let out = Output::fresh(&folder, previous.as_deref());
    let fixed = write_fixed_pages(&out, &config.public_url)?.len();
    keep_old_assets(previous.as_deref(), &folder)?;
    let names = names::Names::create(&folder)?;
    let mut people = People::new(out, names, &config.site_name, &config.public_url);
    people.build(conn)?;
    builds::switch(&config.out, &folder)?;
    people.now_served();
    let finished_at = chrono::Utc::now();
    // The fixed pages, and the profiles with their lists (directory, home, sitemap,
    // feed).
    let pages = fixed + people.pages();
    record_build(conn, started_at, finished_at, pages)?;
    let mut status = Status::read(&config.out);
    status.last_build = Some(BuildStatus {
        started_at: builds::rfc3339(started_at),
        finished_at: builds::rfc3339(finished_at),
        duration_ms: millis(clock.elapsed()),
        pages,
        folder,
    });
    status.write(&config.out)?;
    Ok(people)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Records a full build in `page_builds`.
fn record_build(
    conn: &mut AnyConnection,
    started_at: chrono::DateTime<chrono::Utc>,
    finished_at: chrono::DateTime<chrono::Utc>,
    pages: usize,
) -> anyhow::Result<()> {
    PageBuild {
        id: 0,
        host: host_name(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: started_at.naive_utc(),
        finished_at: finished_at.naive_utc(),
        pages: i64::try_from(pages).unwrap_or(i64::MAX),
    }
    .record(conn)
    .context("cannot record the build in page_builds")
}

/// This machine's name, for the rows of builds and updates: read once, not at every
/// update.
fn host_name() -> String {
    static HOST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    });
    HOST.clone()
}

/// Builds the site, then keeps the profiles current until the process is stopped
/// (every write is atomic, so it is always safe to kill). The changes are written into
/// the current build's folder; the periodic reconciliation is a full build.
pub fn watch(config: &PagesConfig) -> anyhow::Result<()> {
    let (changed, events) = mpsc::channel::<String>();
    let subscriber = flotilla_bus::EventSubscriber::events(
        &config.events_out,
        &[flotilla_bus::EventTopic::USER_PREFIX],
        move |event| {
            if let Some(id) = event.user_id() {
                let _ = changed.send(id.to_owned());
            }
        },
    )?;
    let mut watcher = Watcher::new(config);
    loop {
        watcher.wait_for_changes(&events)?;
        if !watcher.told_connected && subscriber.is_connected() {
            watcher.told_connected = true;
            log::info!("listening for account changes on {}", config.events_out);
        }
        watcher.pass();
    }
}

/// What `watch` keeps between passes: the accounts changed since the last pass, when
/// the next catch-up and rebuild are due, and the back-off after a failed pass.
struct Watcher<'a> {
    config: &'a PagesConfig,
    /// What is published in the build folder the changes go to; `None` until the
    /// first full build.
    site: Option<People>,
    conn: Option<AnyConnection>,
    pending: BTreeSet<String>,
    next_catch_up: Instant,
    next_rebuild: Instant,
    told_connected: bool,
    /// After a failed pass, nothing is tried before this (growing waits, at most 32 s).
    retry_at: Instant,
    failures: u32,
}

impl<'a> Watcher<'a> {
    fn new(config: &'a PagesConfig) -> Self {
        let now = Instant::now();
        Self {
            config,
            site: None,
            conn: None,
            pending: BTreeSet::new(),
            next_catch_up: now,
            next_rebuild: now,
            told_connected: false,
            retry_at: now,
            failures: 0,
        }
    }

    /// Waits for a change event or for the next due time, whichever comes first; a
    /// burst of changes (a page of edits) is gathered into one pass.
    fn wait_for_changes(&mut self, events: &mpsc::Receiver<String>) -> anyhow::Result<()> {
        // Until the subscriber is connected, look often, to say so once it is.
        let tick = if self.told_connected {
            self.config.catch_up
        } else {
            Duration::from_millis(100)
        };
        let mut due = self
            .next_catch_up
            .min(self.next_rebuild)
            .min(Instant::now() + tick);
        if !self.pending.is_empty() {
            due = due.min(self.retry_at);
        }
        let due = due.max(self.retry_at);
        match events.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(id) => {
                self.pending.insert(id);
                let settle = Instant::now() + Duration::from_millis(20);
                while let Ok(id) =
                    events.recv_timeout(settle.saturating_duration_since(Instant::now()))
                {
                    self.pending.insert(id);
                }
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the event subscriber stopped")
            }
        }
    }

    /// Runs what is due: a rebuild, a catch-up, or the pending changes.
    fn pass(&mut self) {
        let now = Instant::now();
        if now < self.retry_at {
            return;
        }
        let rebuild = now >= self.next_rebuild;
        let catch_up = !rebuild && now >= self.next_catch_up;
        if !rebuild && !catch_up && self.pending.is_empty() {
            return;
        }
        let (config, site, pending) = (self.config, &mut self.site, &self.pending);
        let clock = Instant::now();
        let result = connection(&mut self.conn, config).and_then(|conn| {
            let _lock = Lock::take(&config.out)?;
            let current = builds::current(&config.out)?;
            let people = match (site.as_mut(), current) {
                (Some(people), Some(current)) if !rebuild => {
                    if people.out().root() != current {
                        // `build` switched in a folder of its own since: follow it.
                        people.follow(&current, conn)?;
                    }
                    people
                }
                // A full reconciliation, recorded as a build: where no timer runs
                // `build` (make run, a host without systemd), this keeps the last
                // build's age (the console's fleet page, scripts/doctor) meaningful.
                _ => {
                    *site = Some(full_build(config, conn)?);
                    return Ok(());
                }
            };
            if catch_up {
                people.catch_up(conn)?;
            }
            // After a catch-up too: an account purged since its event has no row left
            // to be caught up from.
            people.refresh(conn, pending)?;
            if !pending.is_empty() {
                let (at, duration_ms) = (chrono::Utc::now(), millis(clock.elapsed()));
                let mut status = Status::read(&config.out);
                status.last_update = Some(UpdateStatus {
                    at: builds::rfc3339(at),
                    duration_ms,
                    changed: pending.len(),
                });
                status.write(&config.out)?;
                // For the admin console's fleet page; the pages are out already, so a
                // failure here is told, not retried.
                let update = PageUpdate {
                    host: host_name(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    at: at.naive_utc(),
                    duration_ms: i64::try_from(duration_ms).unwrap_or(i64::MAX),
                    changed: i64::try_from(pending.len()).unwrap_or(i64::MAX),
                };
                if let Err(e) = update.record(conn) {
                    log::warn!("cannot record the update in page_updates: {e}");
                }
                log::debug!(
                    "updated {} accounts in {}",
                    pending.len(),
                    people.out().root().display()
                );
            }
            Ok(())
        });
        // A pass reads the list a chunk at a time; without this the watcher's resident
        // size would track the largest pass rather than what it holds (the names it
        // published).
        flotilla_kit::memory::give_back_free_memory();
        match result {
            Ok(()) => {
                log::debug!(
                    "{} in {} ms ({} accounts named by events)",
                    if rebuild {
                        "full build"
                    } else if catch_up {
                        "catch-up"
                    } else {
                        "update"
                    },
                    millis(clock.elapsed()),
                    self.pending.len()
                );
                self.failures = 0;
                self.pending.clear();
                if rebuild {
                    if let Some(people) = &self.site {
                        log::info!(
                            "{} public profiles in {}",
                            people.len(),
                            people.out().root().display()
                        );
                    }
                    self.next_rebuild = now + config.rebuild;
                }
                if rebuild || catch_up {
                    self.next_catch_up = now + config.catch_up;
                }
            }
            Err(e) => {
                // The pass is tried again after a wait (the changes stay pending, a
                // due rebuild stays due); a broken connection is opened again.
                self.failures += 1;
                let wait = Duration::from_secs(1 << self.failures.min(5));
                log::warn!(
                    "the public profiles could not be updated, trying again in {}s: {e:#}",
                    wait.as_secs()
                );
                self.conn = None;
                self.retry_at = now + wait;
            }
        }
    }
}

fn open(config: &PagesConfig) -> anyhow::Result<AnyConnection> {
    let mut conn = flotilla_db::open(&config.database)?;
    match flotilla_db::schema_status(&mut conn)? {
        flotilla_db::SchemaStatus::Current | flotilla_db::SchemaStatus::Newer { .. } => Ok(conn),
        flotilla_db::SchemaStatus::Behind { pending } => anyhow::bail!(
            "the database lacks migrations {}: run `flotilla-pages migrate` first",
            pending.join(", ")
        ),
        flotilla_db::SchemaStatus::Ahead { unknown } => anyhow::bail!(
            "the database has migrations this binary does not know ({}): deploy the newer version",
            unknown.join(", ")
        ),
    }
}

fn connection<'a>(
    conn: &'a mut Option<AnyConnection>,
    config: &PagesConfig,
) -> anyhow::Result<&'a mut AnyConnection> {
    if conn.is_none() {
        *conn = Some(open(config)?);
    }
    conn.as_mut().context("no database connection")
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound;

/// Writes the pages that do not depend on the database into `out`: the stylesheet
/// under its fingerprinted name (the fleet's pages), and as `assets/site.css` (nginx's
/// own 429 page, the site's other apps: cached for an hour), the script (fingerprinted),
/// the icon (fingerprinted,
/// and as `favicon.ico`), the 404 page, robots.txt, the API reference (`/api/`) and
/// the fleet's OpenAPI document (`/api/openapi.json`);
/// returns them, relative to it. (The home page shows the members: [`People`] writes
/// it.)
fn write_fixed_pages(out: &Output, public_url: &str) -> anyhow::Result<Vec<&'static str>> {
    let not_found = render(&NotFound);
    let robots = site::robots(public_url);
    let reference = reference::render(reference::DOCUMENT)?;
    use flotilla_kit::html::{
        FAVICON_ICO, ICON_SVG, SCRIPT, STYLESHEET, icon_href, script_href, stylesheet_href,
    };
    let files: [(&'static str, &[u8]); 9] = [
        (&stylesheet_href()[1..], STYLESHEET.as_bytes()),
        ("assets/site.css", STYLESHEET.as_bytes()),
        (&script_href()[1..], SCRIPT.as_bytes()),
        (&icon_href()[1..], ICON_SVG.as_bytes()),
        ("favicon.ico", FAVICON_ICO),
        ("404.html", not_found.as_bytes()),
        ("robots.txt", robots.as_bytes()),
        ("api/index.html", reference.as_bytes()),
        ("api/openapi.json", reference::DOCUMENT.as_bytes()),
    ];
    for (relative, content) in files {
        out.write(relative, content)?;
    }
    Ok(files.iter().map(|(relative, _)| *relative).collect())
}

/// Earlier assets a build keeps from the one it replaces: at most this many, the
/// newest.
const OLD_ASSETS: usize = 10;

/// Links into the fresh build `folder` the assets of `previous` it does not have (the
/// [`OLD_ASSETS`] newest): a page a browser or a service of the previous release still
/// holds names the stylesheet it was made with, by its old fingerprint, and finds it
/// for a while after the upgrade.
fn keep_old_assets(previous: Option<&Path>, folder: &Path) -> anyhow::Result<()> {
    let Some(previous) = previous else {
        return Ok(());
    };
    let old = previous.join("assets");
    let entries = match std::fs::read_dir(&old) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", old.display())),
    };
    let mut kept = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", old.display()))?;
        let name = entry.file_name();
        let into = folder.join("assets").join(&name);
        let meta = entry.metadata()?;
        if meta.is_file() && !name.to_string_lossy().starts_with('.') && !into.exists() {
            kept.push((meta.modified()?, entry.path(), into));
        }
    }
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    for (_, from, into) in kept.into_iter().take(OLD_ASSETS) {
        std::fs::hard_link(&from, &into)
            .with_context(|| format!("cannot link {} into {}", from.display(), into.display()))?;
    }
    Ok(())
}

/// Held for the whole of a pass that writes the site, so that `build` (from the timer)
/// and `watch` never interleave: a pass reads the database and writes its pages with
/// no other pass in between, so the later one always wins with the later data. An
/// advisory lock on `<out>.lock` (beside the folder nginx serves, not in it).
struct Lock(#[allow(dead_code)] std::fs::File);

impl Lock {
    fn take(out: &Path) -> anyhow::Result<Self> {
        let path = out.with_extension("lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Self(file))
    }
}

/// `flotilla-pages openapi FILE…`: the services' OpenAPI documents (each printed by
/// `flotilla-<service> openapi`) merged into the fleet's, as JSON.
pub fn merge_documents(files: &[String]) -> anyhow::Result<String> {
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
        let document: flotilla_kit::utoipa::openapi::OpenApi = serde_json::from_str(&text)
            .with_context(|| format!("{file} is no OpenAPI document"))?;
        documents.push(document);
    }
    let fleet = flotilla_kit::api::merge(documents).map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_string_pretty(&fleet)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::write_atomically;
    use flotilla_testkit::TestDb;
    use std::collections::BTreeMap;

    /// A migrated database, and a site folder `name` in a temporary folder (beside it,
    /// the names file, the status file, the builds) with its configuration.
    fn migrated_site(name: &str) -> (TestDb, flotilla_testkit::TempDir, PathBuf, PagesConfig) {
        let db = TestDb::sqlite();
        let tmp = flotilla_testkit::TempDir::new("pages");
        let out = tmp.path().join(name);
        let config = config(&db, &out, "flotilla");
        flotilla_kit::cli::migrate(&config.database).unwrap();
        (db, tmp, out, config)
    }

    /// The profiles of the served folder `out`, with a names file beside it.
    fn people_of(out: &Path) -> People {
        let names = names::Names::create(out).unwrap();
        People::new(Output::served(out), names, "flotilla", "http://x.org")
    }

    fn config(db: &TestDb, out: &Path, site_name: &str) -> PagesConfig {
        let env = Env::from_fn(|k| match k {
            "DATABASE_URL" => Some(db.url().to_owned()),
            "FLOTILLA_PAGES_OUT" => Some(out.display().to_string()),
            "FLOTILLA_SITE_NAME" => Some(site_name.to_owned()),
            "FLOTILLA_BUS_SECRET" => Some("ab".repeat(32)),
            _ => None,
        });
        PagesConfig::from_env(&env).unwrap()
    }

    #[test]
    fn writes_404_and_stylesheet() {
        let db = TestDb::sqlite();
        let out = flotilla_testkit::TempDir::new("pages");
        let config = config(&db, out.path(), "Ada & <Co>");
        let written = write_fixed_pages(&Output::served(out.path()), &config.public_url).unwrap();
        let stylesheet = flotilla_kit::html::stylesheet_href();
        assert!(
            stylesheet.starts_with("/assets/site.")
                && stylesheet.len() == "/assets/site..css".len() + 16
        );
        let icon = &flotilla_kit::html::icon_href()[1..];
        assert_eq!(
            written,
            vec![
                &stylesheet[1..],
                "assets/site.css",
                &flotilla_kit::html::script_href()[1..],
                icon,
                "favicon.ico",
                "404.html",
                "robots.txt",
                "api/index.html",
                "api/openapi.json",
            ]
        );
        assert_eq!(
            std::fs::read(out.path().join("favicon.ico")).unwrap(),
            flotilla_kit::html::FAVICON_ICO
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join(&stylesheet[1..])).unwrap(),
            flotilla_kit::html::STYLESHEET
        );
        assert!(
            std::fs::read_to_string(out.path().join("404.html"))
                .unwrap()
                .contains("Page not found")
        );
        let left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn build_publishes_public_profiles_only_and_removes_stale_pages() {
        let (db, _tmp, out, config) = migrated_site("www");
        assert!(matches!(build(&config), Ok(0)));
        let t = "'2026-11-01 10:00:00'";
        for (id, name, public, verified) in [
            ("1", "ada", 1, t),
            ("2", "bob", 0, t),
            ("3", "eve", 1, "NULL"),
        ] {
            db.execute(&format!(
                "INSERT INTO users (id, email, username, display_name, is_public, \
                 email_verified_at, created_at, updated_at) VALUES ('{id}', '{name}@x.org', \
                 '{name}', 'The <{name}>', {public}, {verified}, {t}, {t})"
            ));
        }
        let people = out.join("people");
        std::fs::write(people.join("gone.html"), "an account closed long ago").unwrap();
        assert!(matches!(build(&config), Ok(1)));
        let builds = db.strings(
            "SELECT CAST(pages AS TEXT) || ' ' || version AS v FROM page_builds ORDER BY id",
        );
        let v = env!("CARGO_PKG_VERSION");
        // One row per build: 9 fixed files, the home page, the directory, the sitemap,
        // the feed, the profiles.
        assert_eq!(builds, [format!("13 {v}"), format!("14 {v}")]);
        let ada = std::fs::read_to_string(people.join("ada.html")).unwrap();
        assert!(ada.contains("<h1>The &lt;ada&gt;</h1>"), "{ada}");
        assert!(!people.join("bob.html").exists(), "private");
        assert!(!people.join("eve.html").exists(), "unverified");
        assert!(!people.join("gone.html").exists(), "stale");
        let index = std::fs::read_to_string(people.join("index.html")).unwrap();
        assert!(index.contains("href=\"/people/ada\""));
        assert!(!index.contains("bob"));
        let home = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(home.contains("1 member has a public profile."), "{home}");
        assert!(
            home.contains("<a href=\"/people/ada\">The &lt;ada&gt;</a>"),
            "{home}"
        );
        assert!(!home.contains("/people/bob") && !home.contains("/people/eve"));
    }

    /// Every file under `dir`, relative, with its bytes.
    fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(next) = todo.pop() {
            for entry in std::fs::read_dir(&next).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    files.insert(path.strip_prefix(dir).unwrap().to_owned(), bytes);
                }
            }
        }
        files
    }

    #[test]
    fn two_builds_of_the_same_data_are_byte_identical_and_the_status_says_when() {
        let (db, tmp, out, config) = migrated_site("www");
        let t = "'2026-11-01 10:00:00'";
        for name in ["ada", "bob", "eve"] {
            db.execute(&format!(
                "INSERT INTO users (id, email, username, display_name, bio, is_public, \
                 email_verified_at, created_at, updated_at) VALUES ('{name}', \
                 '{name}@x.org', '{name}', 'The <{name}>', 'Hello\n\nthere', 1, {t}, {t}, {t})"
            ));
        }
        assert!(matches!(build(&config), Ok(3)));
        assert!(matches!(build(&config), Ok(3)));
        let builds = builds::builds_dir(&out);
        let (first, second) = (
            tree(&builds.join("0000000001")),
            tree(&builds.join("0000000002")),
        );
        assert!(
            first.contains_key(Path::new("people/ada.html")),
            "{:?}",
            first.keys()
        );
        assert!(first == second, "two builds of the same data differ");
        // The second build linked the first's files: their mtime (nginx's ETag and
        // Last-Modified) did not move, so browsers keep their copies.
        for file in first.keys() {
            let mtime = |n: &str| modified(&builds.join(n).join(file));
            assert_eq!(
                mtime("0000000001"),
                mtime("0000000002"),
                "{}",
                file.display()
            );
        }

        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("www.status.json")).unwrap())
                .unwrap();
        let last = &status["last_build"];
        // The stylesheet and the icon (twice each), the script, 404 page, robots.txt,
        // the API reference and its document; three profiles, the directory, the home
        // page, the sitemap and the feed.
        assert_eq!(last["pages"], 16, "{status}");
        assert_eq!(
            last["folder"],
            builds.join("0000000002").display().to_string()
        );
        for at in ["started_at", "finished_at"] {
            let at = last[at].as_str().unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
                "{at}"
            );
        }
        assert!(last["duration_ms"].is_u64());
        assert_eq!(status["last_update"], serde_json::Value::Null);
        assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn a_build_keeps_the_ten_newest_earlier_assets_of_the_one_it_replaces() {
        let (_db, _tmp, out, config) = migrated_site("www");
        build(&config).unwrap();
        // Twelve stylesheets of earlier releases, the first the oldest.
        let assets = out.join("assets");
        for n in 0..12u64 {
            let path = assets.join(format!("site.{n:016x}.css"));
            std::fs::write(&path, format!("/* release {n} */")).unwrap();
            let at = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + n);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
        build(&config).unwrap();
        let kept = |n: u64| out.join(format!("assets/site.{n:016x}.css")).exists();
        assert!((2..12).all(kept), "the ten newest stay");
        assert!(!kept(0) && !kept(1), "the oldest go");
        assert!(
            out.join(&flotilla_kit::html::stylesheet_href()[1..])
                .exists()
        );
    }

    #[test]
    fn watch_updates_the_current_build_and_follows_one_switched_in_by_build() {
        let (db, _tmp, out, config) = migrated_site("www");
        let insert = |name: &str| {
            let t = "'2026-11-01 10:00:00'";
            db.execute(&format!(
                "INSERT INTO users (id, email, username, is_public, email_verified_at, \
                 created_at, updated_at) VALUES ('{name}', '{name}@x.org', '{name}', 1, {t}, \
                 {t}, {t})"
            ));
        };
        let mut watcher = Watcher::new(&config);
        // The first pass is a full build.
        watcher.pass();
        assert_eq!(
            builds::current(&out).unwrap(),
            Some(builds::builds_dir(&out).join("0000000001"))
        );
        // An event: written into the current build, and told in the status file.
        insert("ada");
        watcher.pending.insert("ada".into());
        watcher.pass();
        assert!(out.join("people/ada.html").exists());
        let status = Status::read(&out);
        assert_eq!(status.last_update.map(|u| u.changed), Some(1));
        // `build` switches in a folder of its own; the next event goes there, and the
        // list keeps everyone.
        assert!(matches!(build(&config), Ok(1)));
        insert("bob");
        watcher.pending.insert("bob".into());
        watcher.pass();
        let current = builds::current(&out).unwrap().unwrap();
        assert_eq!(current, builds::builds_dir(&out).join("0000000002"));
        assert!(current.join("people/bob.html").exists());
        let index = std::fs::read_to_string(out.join("people/index.html")).unwrap();
        assert!(
            index.contains("/people/ada") && index.contains("/people/bob"),
            "{index}"
        );
        // A due reconciliation is a full build, which the status file records.
        watcher.next_rebuild = Instant::now();
        watcher.pass();
        let status = Status::read(&out);
        let folder = builds::builds_dir(&out).join("0000000003");
        assert_eq!(
            status.last_build.map(|b| (b.pages, b.folder)),
            // Nine fixed files, two profiles, the directory, home, sitemap and feed.
            Some((15, folder))
        );
        assert_eq!(status.last_update.map(|u| u.changed), Some(1));
    }

    #[test]
    fn a_catch_up_sees_changes_whose_event_was_lost() {
        let (db, _tmp, out, config) = migrated_site("site");
        let t = "'2026-11-01 10:00:00'";
        db.execute(&format!(
            "INSERT INTO users (id, email, username, is_public, email_verified_at, created_at, \
             updated_at) VALUES ('1', 'ada@x.org', 'ada', 1, {t}, {t}, {t})"
        ));
        let mut conn = open(&config).unwrap();
        let mut people = people_of(&out);
        people.build(&mut conn).unwrap();
        let page = out.as_path().join("people/ada.html");
        assert!(page.exists());

        // Renamed, with no event: the catch-up moves the page.
        db.execute("UPDATE users SET username = 'ada-l', updated_at = '2026-11-01 10:00:05'");
        people.catch_up(&mut conn).unwrap();
        assert!(!page.exists());
        assert!(out.as_path().join("people/ada-l.html").exists());
        // Closed: gone, and the list says nobody is left.
        db.execute("UPDATE users SET deleted_at = updated_at, updated_at = '2026-11-01 10:00:09'");
        people.catch_up(&mut conn).unwrap();
        assert!(people.is_empty());
        assert!(!out.as_path().join("people/ada-l.html").exists());
        let index = std::fs::read_to_string(out.as_path().join("people/index.html")).unwrap();
        assert!(index.contains("No one has made their profile public yet."));
        // Purged after an event: a refresh of an id with no row removes nothing more
        // and fails nothing.
        db.execute("DELETE FROM users");
        people
            .refresh(&mut conn, &BTreeSet::from(["1".to_owned()]))
            .unwrap();
    }

    #[test]
    fn a_name_freed_and_taken_keeps_the_new_owner_s_page_in_any_order() {
        let (db, _tmp, out, config) = migrated_site("site");
        let t = "'2026-11-01 10:00:00'";
        for (id, name) in [("a", "ada"), ("b", "bob")] {
            db.execute(&format!(
                "INSERT INTO users (id, email, username, display_name, is_public, \
                 email_verified_at, created_at, updated_at) VALUES ('{id}', '{name}@x.org', \
                 '{name}', 'Owner {id}', 1, {t}, {t}, {t})"
            ));
        }
        let mut conn = open(&config).unwrap();
        let mut people = people_of(&out);
        people.build(&mut conn).unwrap();
        let page =
            |name: &str| std::fs::read_to_string(out.as_path().join(format!("people/{name}.html")));
        // Ada renames to x, then Bob takes "ada"; the events arrive the other way round.
        db.execute("UPDATE users SET username = 'x' WHERE id = 'a'");
        db.execute("UPDATE users SET username = 'ada' WHERE id = 'b'");
        people
            .refresh(&mut conn, &BTreeSet::from(["b".to_owned()]))
            .unwrap();
        people
            .refresh(&mut conn, &BTreeSet::from(["a".to_owned()]))
            .unwrap();
        assert!(page("ada").unwrap().contains("Owner b"));
        assert!(page("x").unwrap().contains("Owner a"));
        assert!(page("bob").is_err());
        // Swapped back in one pass.
        db.execute("UPDATE users SET username = 'tmp' WHERE id = 'b'");
        db.execute("UPDATE users SET username = 'ada' WHERE id = 'a'");
        db.execute("UPDATE users SET username = 'x' WHERE id = 'b'");
        people
            .refresh(&mut conn, &BTreeSet::from(["a".to_owned(), "b".to_owned()]))
            .unwrap();
        assert!(page("ada").unwrap().contains("Owner a"));
        assert!(page("x").unwrap().contains("Owner b"));
        // A page deleted behind its back is written again by the next full pass.
        std::fs::remove_file(out.as_path().join("people/x.html")).unwrap();
        people.build(&mut conn).unwrap();
        assert!(page("x").unwrap().contains("Owner b"));
    }

    #[test]
    fn a_file_holding_the_same_bytes_is_not_rewritten() {
        let out = flotilla_testkit::TempDir::new("pages");
        let path = out.path().join("a/page.html");
        write_atomically(&path, b"one").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let modified = || std::fs::metadata(&path).unwrap().modified().unwrap();
        write_atomically(&path, b"one").unwrap();
        assert_eq!(modified(), old, "the same bytes are not written again");
        write_atomically(&path, b"two").unwrap();
        assert_ne!(modified(), old);
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
    }

    /// Sets a file's mtime far back, to see whether a pass rewrites it.
    fn age(path: &Path) -> std::time::SystemTime {
        let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(old).unwrap();
        old
    }

    fn modified(path: &Path) -> std::time::SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn a_profile_going_public_rewrites_only_the_directory_pages_it_shifts() {
        let (db, _tmp, out, config) = migrated_site("site");
        let t = "'2026-11-01 10:00:00'";
        // u000 … u099, all public but u075: 99 profiles, two pages.
        for i in 0..100 {
            let public = i32::from(i != 75);
            db.execute(&format!(
                "INSERT INTO users (id, email, username, is_public, email_verified_at, \
                 created_at, updated_at) VALUES ('{i}', 'u{i}@x.org', 'u{i:03}', {public}, \
                 {t}, {t}, {t})"
            ));
        }
        let mut conn = open(&config).unwrap();
        let mut people = people_of(&out);
        people.build(&mut conn).unwrap();
        let first = out.as_path().join("people/index.html");
        let second = out.as_path().join("people/page/2.html");
        let (first_written, second_written) = (age(&first), age(&second));
        assert!(!std::fs::read_to_string(&second).unwrap().contains("u075"));

        // u075 goes public: it joins page 2 and pushes u099 along; page 1 stays as it was.
        db.execute("UPDATE users SET is_public = 1 WHERE id = '75'");
        people
            .refresh(&mut conn, &BTreeSet::from(["75".to_owned()]))
            .unwrap();
        assert_eq!(modified(&first), first_written, "page 1 is not rewritten");
        assert_ne!(modified(&second), second_written);
        let page = std::fs::read_to_string(&second).unwrap();
        assert!(page.contains("href=\"/people/u075\"") && page.contains("u099"));
        assert!(!out.as_path().join("people/page/3.html").exists());
        // u000 goes private: page 1 loses it, the rest move up.
        db.execute("UPDATE users SET is_public = 0 WHERE id = '0'");
        people
            .refresh(&mut conn, &BTreeSet::from(["0".to_owned()]))
            .unwrap();
        assert!(!std::fs::read_to_string(&first).unwrap().contains("u000"));
        assert_eq!(
            people.pages(),
            99 + 2 + 3,
            "the profiles, two directory pages, home, sitemap, feed"
        );
    }

    #[test]
    fn two_builds_of_the_same_data_are_byte_identical() {
        let db = TestDb::sqlite();
        let (one, two) = (
            flotilla_testkit::TempDir::new("pages"),
            flotilla_testkit::TempDir::new("pages"),
        );
        let config_one = config(&db, one.path(), "flotilla");
        flotilla_kit::cli::migrate(&config_one.database).unwrap();
        for i in 0..60 {
            let t = format!("'2026-11-01 10:{:02}:00'", i % 7);
            db.execute(&format!(
                "INSERT INTO users (id, email, username, display_name, is_public, \
                 email_verified_at, created_at, updated_at) VALUES ('{i}', 'u{i}@x.org', \
                 'u{i}', 'U & {i}', 1, {t}, {t}, {t})"
            ));
        }
        build(&config_one).unwrap();
        build(&config(&db, two.path(), "flotilla")).unwrap();
        let (first, second) = (tree(one.path()), tree(two.path()));
        let names: Vec<String> = first.keys().map(|p| p.display().to_string()).collect();
        for name in [
            "index.html",
            "people/page/2.html",
            "sitemap.xml",
            "feed.xml",
            "robots.txt",
        ] {
            assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
        }
        assert!(first == second, "the trees differ");
    }

    #[test]
    fn the_output_folder_follows_the_data_folder() {
        let env = Env::from_fn(|k| match k {
            "FLOTILLA_DATA_DIR" => Some("/srv/flotilla".to_string()),
            "FLOTILLA_BUS_SECRET" => Some("ab".repeat(32)),
            _ => None,
        });
        assert_eq!(
            PagesConfig::from_env(&env).unwrap().out,
            PathBuf::from("/srv/flotilla/www")
        );
    }
}
