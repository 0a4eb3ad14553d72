//! Where a pass writes, and how. Two kinds of folder:
//! - a **fresh** build folder, which nobody serves until [`crate::builds::switch`]
//!   links it in: a file is written straight to its name, or, when the build it
//!   replaces holds the same bytes under the same name, hard-linked from there, so its
//!   mtime (nginx's ETag and Last-Modified) survives a full build and browsers keep
//!   their copy;
//! - the **served** build, which `watch` updates: each file is written beside its name
//!   and renamed into place (nginx never sends half a page), and a file that already
//!   holds the bytes is left alone.
//!
//! Neither ever writes into an existing file, so a file linked into two builds changes
//! in neither.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, Clone)]
enum Mode {
    /// Not served yet; `previous` is the build it will replace.
    Fresh {
        previous: Option<PathBuf>,
    },
    Served,
}

/// A build folder and how to write into it.
#[derive(Debug, Clone)]
pub struct Output {
    root: PathBuf,
    mode: Mode,
}

impl Output {
    /// A folder being filled by a full build that will replace `previous`.
    pub fn fresh(root: &Path, previous: Option<&Path>) -> Self {
        Self {
            root: root.to_owned(),
            mode: Mode::Fresh {
                previous: previous.map(Path::to_owned),
            },
        }
    }

    /// The folder nginx serves.
    pub fn served(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            mode: Mode::Served,
        }
    }

    /// From now on the folder is served (it was just switched in).
    pub fn now_served(&mut self) {
        self.mode = Mode::Served;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Puts `content` at `relative`; returns whether the served bytes changed (always
    /// true in a fresh folder).
    pub fn write(&self, relative: &str, content: &[u8]) -> anyhow::Result<bool> {
        let path = self.root.join(relative);
        match &self.mode {
            Mode::Served => write_atomically(&path, content),
            Mode::Fresh { previous } => {
                if let Some(previous) = previous {
                    let old = previous.join(relative);
                    if holds(&old, content)? && link(&old, &path).is_ok() {
                        return Ok(true);
                    }
                }
                with_folder(&path, |path| std::fs::write(path, content))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(true)
            }
        }
    }

    /// Removes `relative` if it is there.
    pub fn remove(&self, relative: &str) -> anyhow::Result<()> {
        let path = self.root.join(relative);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    /// Removes each file of the folder `relative` whose name `stale` picks (a missing
    /// folder has none): the cleaning of every pass (directory pages and sitemap parts
    /// past the last, what a killed pass left half-written).
    pub fn remove_files(&self, relative: &str, stale: impl Fn(&str) -> bool) -> anyhow::Result<()> {
        remove_files(&self.root.join(relative), stale)
    }
}

/// Removes each file of `dir` whose name `stale` picks (a missing folder has none).
pub fn remove_files(dir: &Path, stale: impl Fn(&str) -> bool) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if stale(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Whether the file at `path` holds exactly `content` (a missing file does not).
fn holds(path: &Path, content: &[u8]) -> anyhow::Result<bool> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() != content.len() as u64 => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    match std::fs::read(path) {
        Ok(existing) => Ok(existing == content),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn link(from: &Path, to: &Path) -> std::io::Result<()> {
    with_folder(to, |to| std::fs::hard_link(from, to))
}

/// Runs `make(path)`, creating `path`'s folder first if it was missing.
fn with_folder(path: &Path, make: impl Fn(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    match make(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            make(path)
        }
        done => done,
    }
}

/// Puts `content` at `path`, written beside it and renamed into place; returns whether
/// it did. A file that already holds exactly these bytes is left alone, so its mtime
/// (nginx's ETag and Last-Modified) stays and browsers keep their copy.
pub fn write_atomically(path: &Path, content: &[u8]) -> anyhow::Result<bool> {
    if holds(path, content)? {
        return Ok(false);
    }
    let dir = path.parent().context("an output file has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .context("an output file has no name")?
        .to_string_lossy();
    // Hidden, and ending in .tmp: nginx refuses such names (proxy/server.conf.in).
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, content)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_fresh_build_links_the_unchanged_files_of_the_one_it_replaces() {
        let dir = flotilla_testkit::TempDir::new("pages");
        let (old, new) = (dir.path().join("1"), dir.path().join("2"));
        let first = Output::fresh(&old, None);
        first.write("people/ada.html", b"ada").unwrap();
        first.write("people/bob.html", b"bob").unwrap();
        let second = Output::fresh(&new, Some(&old));
        second.write("people/ada.html", b"ada").unwrap();
        second.write("people/bob.html", b"bob, changed").unwrap();
        let inode = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            inode(old.join("people/ada.html")),
            inode(new.join("people/ada.html"))
        );
        assert_ne!(
            inode(old.join("people/bob.html")),
            inode(new.join("people/bob.html"))
        );
        assert_eq!(std::fs::read(old.join("people/bob.html")).unwrap(), b"bob");
        // Served, a change replaces the name: the linked old build keeps its bytes.
        let mut served = second;
        served.now_served();
        assert!(served.write("people/ada.html", b"ada, changed").unwrap());
        assert!(!served.write("people/ada.html", b"ada, changed").unwrap());
        assert_eq!(std::fs::read(old.join("people/ada.html")).unwrap(), b"ada");
    }
}
