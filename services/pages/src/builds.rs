//! Where the site lives on disk, and how a full build is switched in.
//!
//! `FLOTILLA_PAGES_OUT` (the folder nginx serves) is a symlink to the current build,
//! `<out>.builds/<id>/`. A full build writes a fresh folder there, flushes it to disk,
//! then replaces the symlink in one rename(2): nginx, which resolves the symlink per
//! request, serves either the whole old build or the whole new one, never a mix and
//! never a missing page. The previous build is kept (a request that resolved the old
//! link just before the switch still finds its file); older ones are removed.
//!
//! Beside them, `<out>.status.json` tells operators (scripts/doctor) when the last
//! full build and the last incremental update ran and how long they took. Nothing here
//! is inside `out`, so nginx serves none of it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// `<out>.builds`, `<out>.status.json`, …: a sibling of `out` named after it.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out
        .file_name()
        .map_or_else(|| OsString::from("www"), OsString::from);
    name.push(suffix);
    out.with_file_name(name)
}

/// The folder that holds the builds.
pub fn builds_dir(out: &Path) -> PathBuf {
    sibling(out, ".builds")
}

/// The operators' status file.
pub fn status_path(out: &Path) -> PathBuf {
    sibling(out, ".status.json")
}

/// Build folders are named by a zero-padded sequence number, so that their names sort
/// in the order they were made.
fn build_number(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?;
    (name.len() == 10 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The folder the symlink `out` points to, made absolute; `None` if `out` does not
/// exist yet. An `out` that is a real folder (written by a version before atomic
/// builds) is first moved into `<out>.builds/` and replaced by a symlink to it.
/// Called with the [`crate::Lock`] held.
pub fn current(out: &Path) -> anyhow::Result<Option<PathBuf>> {
    let meta = match std::fs::symlink_metadata(out) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot look at {}", out.display())),
    };
    if meta.file_type().is_symlink() {
        let target =
            std::fs::read_link(out).with_context(|| format!("cannot read {}", out.display()))?;
        return Ok(Some(parent(out).join(target)));
    }
    anyhow::ensure!(
        meta.is_dir(),
        "{} is neither a folder nor a symlink to one: move it away",
        out.display()
    );
    // A folder from before atomic builds: moved aside, then linked. Between the two
    // renames nginx finds no site for a moment (once, on the first build after the
    // upgrade); the folder itself is kept as a build, never deleted here.
    let folder = new_folder(out)?;
    std::fs::rename(out, &folder).with_context(|| {
        format!(
            "cannot move the old site {} to {}",
            out.display(),
            folder.display()
        )
    })?;
    link(out, &folder)?;
    log::info!(
        "{} is now a symlink to the builds in {}",
        out.display(),
        builds_dir(out).display()
    );
    Ok(Some(folder))
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A path for the next build, after every folder already in `<out>.builds` (it is
/// created by whoever writes into it). Called with the [`crate::Lock`] held.
pub fn new_folder(out: &Path) -> anyhow::Result<PathBuf> {
    let dir = builds_dir(out);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut last = 0;
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        last = last.max(build_number(&entry.file_name()).unwrap_or(0));
    }
    Ok(dir.join(format!("{:010}", last + 1)))
}

/// Makes `folder` (a fresh, complete build) the site: flushes it to disk, points `out`
/// at it in one rename, then removes every build but it and the one it replaced.
/// Called with the [`crate::Lock`] held.
pub fn switch(out: &Path, folder: &Path) -> anyhow::Result<()> {
    let previous = current(out)?;
    // After a crash the link must not point at files still only in memory.
    sync_filesystem(folder)?;
    link(out, folder)?;
    remove_old(out, folder, previous.as_deref())
}

/// Points `out` at `folder` (relative to out's folder, so the data folder can move as a
/// whole): a temporary symlink beside `out`, renamed over it.
fn link(out: &Path, folder: &Path) -> anyhow::Result<()> {
    let base = parent(out);
    let target = folder.strip_prefix(base).unwrap_or(folder);
    let temporary = sibling(out, &format!(".link.{}.tmp", std::process::id()));
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", temporary.display()));
        }
        _ => {}
    }
    std::os::unix::fs::symlink(target, &temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    std::fs::rename(&temporary, out)
        .with_context(|| format!("cannot point {} at {}", out.display(), folder.display()))?;
    std::fs::File::open(base)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot flush {}", base.display()))
}

/// Removes the builds other than `keep` and `previous` (failed or interrupted builds
/// too: they are neither).
fn remove_old(out: &Path, keep: &Path, previous: Option<&Path>) -> anyhow::Result<()> {
    let dir = builds_dir(out);
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name();
        // A build folder, or its names file (`<folder>.names.sqlite`, SQLite's files
        // beside it, a temporary one).
        let folder = name.to_str().and_then(crate::names::folder_of);
        let of = folder.map_or(name.clone(), std::ffi::OsString::from);
        let kept = [Some(keep), previous]
            .into_iter()
            .flatten()
            .any(|k| k.file_name() == Some(of.as_os_str()));
        if kept || build_number(&of).is_none() {
            continue;
        }
        let removed = if folder.is_some() {
            std::fs::remove_file(&path)
        } else {
            std::fs::remove_dir_all(&path)
        };
        removed.with_context(|| format!("cannot remove the old build {}", path.display()))?;
    }
    remove_temporaries(out)
}

/// Removes the temporary symlink or status file a killed pass left beside `out` (the
/// [`crate::Lock`] is held, so no other pass is writing one).
fn remove_temporaries(out: &Path) -> anyhow::Result<()> {
    let Some(name) = out.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    crate::output::remove_files(parent(out), |file| {
        [".link.", ".status."]
            .iter()
            .any(|kind| file.starts_with(&format!("{name}{kind}")))
            && file.ends_with(".tmp")
    })
}

/// Flushes the file system that holds `folder` (one syncfs(2), rather than an fsync
/// per page).
#[allow(unsafe_code)]
fn sync_filesystem(folder: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let dir =
        std::fs::File::open(folder).with_context(|| format!("cannot open {}", folder.display()))?;
    // SAFETY: syncfs(2) on a descriptor this function owns and keeps open for the call;
    // no memory is passed.
    let done = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if done != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot flush {} to disk", folder.display()));
    }
    Ok(())
}

/// `<out>.status.json`: what scripts/doctor reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub last_build: Option<BuildStatus>,
    pub last_update: Option<UpdateStatus>,
    /// The version of flotilla-pages that wrote the file.
    pub version: String,
}

/// The last full build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildStatus {
    /// RFC 3339, UTC.
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    /// Files of the site: the fixed pages, the profiles and their lists (directory, home,
    /// sitemap, feed).
    pub pages: usize,
    /// The build's folder, which `out` points to.
    pub folder: PathBuf,
}

/// The last incremental pass of `watch` that had accounts to look at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// When it finished; RFC 3339, UTC.
    pub at: String,
    pub duration_ms: u64,
    /// The accounts it looked at.
    pub changed: usize,
}

/// A moment as the status file writes it.
pub fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Status {
    /// The file as it is, or an empty status if there is none or it cannot be read (it
    /// is only a report: the next write replaces it whole).
    pub fn read(out: &Path) -> Self {
        std::fs::read(status_path(out))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes the file beside its final name and renames it into place, so a reader
    /// sees the old status or the new one.
    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        let path = status_path(out);
        let status = Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..self.clone()
        };
        let mut json = serde_json::to_vec_pretty(&status).context("cannot encode the status")?;
        json.push(b'\n');
        let temporary = sibling(out, &format!(".status.{}.tmp", std::process::id()));
        std::fs::write(&temporary, json)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot move {} into place", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_testkit::TempDir;

    /// A build as `build` makes one, holding only `index.html`.
    fn build_with(out: &Path, index: &str) -> PathBuf {
        current(out).unwrap();
        let folder = new_folder(out).unwrap();
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("index.html"), index).unwrap();
        switch(out, &folder).unwrap();
        folder
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_switch_keeps_the_previous_build_and_removes_older_ones() {
        let tmp = TempDir::new("builds");
        let out = tmp.path().join("www");
        assert_eq!(current(&out).unwrap(), None);
        build_with(&out, "one");
        assert_eq!(
            std::fs::read_to_string(out.join("index.html")).unwrap(),
            "one"
        );
        build_with(&out, "two");
        // A build that failed half-way, the files of a pass killed while switching,
        // and something that is not a build.
        std::fs::create_dir_all(new_folder(&out).unwrap()).unwrap();
        std::fs::write(tmp.path().join("www.status.1.tmp"), "{").unwrap();
        std::os::unix::fs::symlink("www.builds/0000000003", tmp.path().join("www.link.1.tmp"))
            .unwrap();
        std::fs::create_dir_all(builds_dir(&out).join("notes")).unwrap();
        let third = build_with(&out, "three");
        assert_eq!(third, builds_dir(&out).join("0000000004"));
        assert_eq!(
            std::fs::read_to_string(out.join("index.html")).unwrap(),
            "three"
        );
        assert_eq!(
            names(&builds_dir(&out)),
            ["0000000002", "0000000004", "notes"]
        );
        // Relative, so the data folder can move as a whole; nothing left beside it.
        assert_eq!(
            std::fs::read_link(&out).unwrap(),
            Path::new("www.builds/0000000004")
        );
        assert_eq!(current(&out).unwrap(), Some(third));
        assert_eq!(names(tmp.path()), ["www", "www.builds"]);
    }

    #[test]
    fn a_real_folder_from_before_is_moved_aside_not_deleted() {
        let tmp = TempDir::new("builds");
        let out = tmp.path().join("www");
        std::fs::create_dir_all(out.join("people")).unwrap();
        std::fs::write(out.join("people/ada.html"), "old").unwrap();
        let moved = builds_dir(&out).join("0000000001");
        assert_eq!(current(&out).unwrap(), Some(moved.clone()));
        assert!(std::fs::symlink_metadata(&out).unwrap().is_symlink());
        assert_eq!(
            std::fs::read_to_string(out.join("people/ada.html")).unwrap(),
            "old"
        );
        // The next build replaces it, and keeps it as the previous one.
        build_with(&out, "new");
        assert_eq!(
            std::fs::read_to_string(out.join("index.html")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(moved.join("people/ada.html")).unwrap(),
            "old"
        );
    }

    #[test]
    fn a_reader_never_sees_a_missing_or_mixed_site_during_switches() {
        let tmp = TempDir::new("builds");
        let out = tmp.path().join("www");
        build_with(&out, &"a".repeat(4096));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (out, done) = (out.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
                    assert!(
                        page.len() == 4096 && page.bytes().all(|b| b == page.as_bytes()[0]),
                        "a page of mixed or partial content"
                    );
                    reads += 1;
                }
                reads
            })
        };
        for round in 0..100 {
            build_with(&out, &(if round % 2 == 0 { "b" } else { "a" }).repeat(4096));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn the_status_file_is_written_whole_beside_the_site() {
        let tmp = TempDir::new("builds");
        let out = tmp.path().join("www");
        assert_eq!(Status::read(&out), Status::default());
        let status = Status {
            last_build: Some(BuildStatus {
                started_at: "2026-12-01T10:00:00.000Z".into(),
                finished_at: "2026-12-01T10:00:01.500Z".into(),
                duration_ms: 1500,
                pages: 5,
                folder: builds_dir(&out).join("0000000001"),
            }),
            last_update: None,
            version: String::new(),
        };
        status.write(&out).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("www.status.json")).unwrap())
                .unwrap();
        assert_eq!(json["last_build"]["duration_ms"], 1500);
        assert_eq!(
            json["last_build"]["finished_at"],
            "2026-12-01T10:00:01.500Z"
        );
        assert_eq!(json["last_update"], serde_json::Value::Null);
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(Status::read(&out).last_build, status.last_build);
        assert_eq!(names(tmp.path()), ["www.status.json"]);
        assert_eq!(
            rfc3339(chrono::DateTime::from_timestamp(1_764_583_200, 0).unwrap()),
            "2025-12-01T10:00:00.000Z"
        );
    }
}
