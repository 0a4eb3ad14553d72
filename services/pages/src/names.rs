//! Which username each published page belongs to, by account id: the page to remove
//! when its owner renames, goes private or closes the account (closing forgets the
//! name, so the database cannot say). Kept in a small SQLite file beside each build
//! folder, `<builds>/<sequence>.names.sqlite` (outside what nginx serves), rather than
//! in memory: the watcher's memory stays the same however many profiles there are, and
//! a watcher that takes over a folder `build` wrote finds its names there.

use std::path::{Path, PathBuf};

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

diesel::table! {
    published (id) {
        id -> Text,
        username -> Text,
    }
}

/// The names file of a build folder.
pub fn path_of(folder: &Path) -> PathBuf {
    let mut name = folder.as_os_str().to_owned();
    name.push(".names.sqlite");
    PathBuf::from(name)
}

/// The published names of one build folder.
pub struct Names {
    conn: SqliteConnection,
}

impl Names {
    /// An empty file for a fresh build folder (one left by a build that did not finish
    /// is replaced).
    pub fn create(folder: &Path) -> anyhow::Result<Self> {
        Self::create_at(&path_of(folder))
    }

    /// An empty file for a folder that has none, under a temporary name until
    /// [`Names::finish`].
    pub fn create_temporary(folder: &Path) -> anyhow::Result<Self> {
        Self::create_at(&temporary_of(folder))
    }

    /// Puts the file made by [`Names::create_temporary`] in its place; returns it open
    /// there.
    pub fn finish(self, folder: &Path) -> anyhow::Result<Self> {
        drop(self.conn);
        let (from, to) = (temporary_of(folder), path_of(folder));
        std::fs::rename(&from, &to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        Self::open(&to)
    }

    fn create_at(path: &Path) -> anyhow::Result<Self> {
        for stale in companions(path) {
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", stale.display()));
                }
                _ => {}
            }
        }
        let mut names = Self::open(path)?;
        names
            .conn
            .batch_execute(
                "CREATE TABLE published (id TEXT PRIMARY KEY NOT NULL, username TEXT NOT NULL);
                 CREATE INDEX published_username ON published (username);",
            )
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(names)
    }

    /// The file of a build folder, if it has one.
    pub fn existing(folder: &Path) -> anyhow::Result<Option<Self>> {
        let path = path_of(folder);
        if !path.exists() {
            return Ok(None);
        }
        Self::open(&path).map(Some)
    }

    fn open(path: &Path) -> anyhow::Result<Self> {
        let url = path.to_str().context("a names file's path is not UTF-8")?;
        let mut conn = SqliteConnection::establish(url)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // WAL with NORMAL: a power loss may lose the last changes (the next full build
        // makes the file again), never the file; and no sync per change.
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -1024;",
        )
        .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { conn })
    }

    /// The name of `id`'s page, if it has one.
    pub fn get(&mut self, id: &str) -> anyhow::Result<Option<String>> {
        published::table
            .find(id)
            .select(published::username)
            .first(&mut self.conn)
            .optional()
            .context("cannot read the published names")
    }

    /// Records `id`'s page as `username`.
    pub fn set(&mut self, id: &str, username: &str) -> anyhow::Result<()> {
        diesel::replace_into(published::table)
            .values((published::id.eq(id), published::username.eq(username)))
            .execute(&mut self.conn)
            .context("cannot record a published name")?;
        Ok(())
    }

    /// Records many at once (a full build's chunk), in one transaction.
    pub fn set_all(&mut self, pages: &[(String, String)]) -> anyhow::Result<()> {
        let rows: Vec<_> = pages
            .iter()
            .map(|(id, username)| (published::id.eq(id), published::username.eq(username)))
            .collect();
        // SQLite's bound values per statement (32,766) allow 16,383 rows of two.
        for chunk in rows.chunks(8_000) {
            diesel::replace_into(published::table)
                .values(chunk)
                .execute(&mut self.conn)
                .context("cannot record the published names")?;
        }
        Ok(())
    }

    /// Forgets every page.
    pub fn clear(&mut self) -> anyhow::Result<()> {
        diesel::delete(published::table)
            .execute(&mut self.conn)
            .context("cannot forget the published names")?;
        Ok(())
    }

    /// Forgets `id`'s page.
    pub fn remove(&mut self, id: &str) -> anyhow::Result<()> {
        diesel::delete(published::table.find(id))
            .execute(&mut self.conn)
            .context("cannot forget a published name")?;
        Ok(())
    }

    /// Whether an account other than `id` has the page `username`.
    pub fn taken_by_other(&mut self, username: &str, id: &str) -> anyhow::Result<bool> {
        diesel::select(diesel::dsl::exists(
            published::table
                .filter(published::username.eq(username))
                .filter(published::id.ne(id)),
        ))
        .get_result(&mut self.conn)
        .context("cannot read the published names")
    }

    /// How many pages are published.
    pub fn len(&mut self) -> anyhow::Result<usize> {
        let count: i64 = published::table
            .count()
            .get_result(&mut self.conn)
            .context("cannot count the published names")?;
        Ok(usize::try_from(count).unwrap_or(0))
    }
}

/// Where [`Names::create_temporary`] fills a folder's file.
fn temporary_of(folder: &Path) -> PathBuf {
    let mut name = path_of(folder).into_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The file at `path` and SQLite's files beside it.
fn companions(path: &Path) -> Vec<PathBuf> {
    ["", "-journal", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// The folder whose names file (or SQLite's file beside it) `file` is, by name.
pub fn folder_of(file: &str) -> Option<&str> {
    ["", "-journal", "-wal", "-shm"].iter().find_map(|suffix| {
        file.strip_suffix(suffix)?
            .strip_suffix(".names.sqlite")
            .or_else(|| file.strip_suffix(suffix)?.strip_suffix(".names.sqlite.tmp"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_beside_the_folder_and_found_again() {
        let dir = flotilla_testkit::TempDir::new("pages");
        let folder = dir.path().join("0000000001");
        assert!(Names::existing(&folder).unwrap().is_none());
        let mut names = Names::create(&folder).unwrap();
        names
            .set_all(&[("a".into(), "ada".into()), ("b".into(), "bob".into())])
            .unwrap();
        names.set("a", "ada-l").unwrap();
        names.remove("b").unwrap();
        assert!(names.taken_by_other("ada-l", "b").unwrap());
        assert!(
            !names.taken_by_other("ada-l", "a").unwrap()
                && !names.taken_by_other("bob", "x").unwrap()
        );
        drop(names);
        assert_eq!(path_of(&folder), dir.path().join("0000000001.names.sqlite"));
        let mut again = Names::existing(&folder).unwrap().unwrap();
        assert_eq!(again.get("a").unwrap().as_deref(), Some("ada-l"));
        assert_eq!(again.get("b").unwrap(), None);
        assert_eq!(again.len().unwrap(), 1);
        // A fresh build of the same folder starts empty.
        assert_eq!(Names::create(&folder).unwrap().len().unwrap(), 0);
    }
}
