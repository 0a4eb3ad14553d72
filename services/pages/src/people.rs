//! The public profiles: `/people/<username>` for every account whose owner made it
//! public (verified, not disabled, not closed, with a username), and the files that
//! list them (the home page, the directory, the sitemap, the feed: [`crate::site`]).
//! [`People`] remembers what it has published, so that a pass writes only the pages
//! that changed and removes the page of anyone who renamed, went private, was disabled
//! or closed the account.
//!
//! Three kinds of pass: [`People::rebuild`] reads every public profile and reconciles
//! the folder with it (also removing files no pass of this process wrote);
//! [`People::refresh`] reads the accounts named by `user.*` events; and
//! [`People::catch_up`] reads the accounts whose `updated_at` moved since the last pass,
//! for changes whose event was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use askama::Template;
use chrono::{NaiveDateTime, TimeDelta};
use flotilla_accounts::SiteAccount;
use flotilla_db::AnyConnection;
use flotilla_kit::html::render;

use crate::{site, write_atomically};

/// What a public page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub username: String,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub member_since: NaiveDateTime,
    /// The account's `updated_at` (the sitemap's `lastmod`, the feed's `updated`).
    pub updated_at: NaiveDateTime,
}

/// An account as the site sees it: its id, its page if it has one, and when it last
/// changed.
fn from_row(user: SiteAccount) -> (String, Option<Profile>, NaiveDateTime) {
    let shown = user.has_public_profile();
    // `index` is the list's own page (reserved since, but an older account may hold it).
    let profile = user
        .username
        .filter(|name| shown && name != "index")
        .map(|username| Profile {
            username,
            display_name: user.display_name,
            bio: user.bio,
            member_since: user.created_at,
            updated_at: user.updated_at,
        });
    (user.id, profile, user.updated_at)
}

/// Changes by writers whose clocks lag the others' by up to this much are still seen
/// by [`People::catch_up`]; a page read twice is not written twice.
const CLOCK_SLACK: TimeDelta = TimeDelta::seconds(30);

/// The published profiles of one output folder.
pub struct People {
    /// The output folder (the home page's).
    out: PathBuf,
    /// Its `people` folder.
    dir: PathBuf,
    site_name: String,
    /// The site's origin, for the sitemap and the feed.
    public_url: String,
    published: BTreeMap<String, Profile>,
    /// How many directory pages and sitemap files the last pass wrote.
    directory_pages: usize,
    sitemaps: usize,
    /// The latest `updated_at` seen; `catch_up` reads from a little before it.
    seen_until: Option<NaiveDateTime>,
}

impl People {
    pub fn new(out: &Path, site_name: &str, public_url: &str) -> Self {
        Self {
            out: out.to_owned(),
            dir: out.join("people"),
            site_name: site_name.to_owned(),
            public_url: public_url.to_owned(),
            published: BTreeMap::new(),
            directory_pages: 0,
            sitemaps: 0,
            seen_until: None,
        }
    }

    /// How many profiles are published.
    pub fn len(&self) -> usize {
        self.published.len()
    }

    pub fn is_empty(&self) -> bool {
        self.published.is_empty()
    }

    /// How many files the last pass left in the folder: one page per profile, the
    /// directory's pages, the home page, the sitemap's files and the feed.
    pub fn pages(&self) -> usize {
        self.published.len() + self.directory_pages + 1 + self.sitemaps + 1
    }

    /// Reads every public profile and makes the folder hold exactly their pages.
    pub fn rebuild(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        let rows = SiteAccount::public_profiles(conn).context("cannot read the public profiles")?;
        let latest = max_updated(conn)?;
        let mut found = BTreeMap::new();
        for row in rows {
            if let (id, Some(profile), _) = from_row(row) {
                found.insert(id, profile);
            }
        }
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|id| !found.contains_key(*id))
            .cloned()
            .collect();
        let accounts = gone
            .into_iter()
            .map(|id| (id, None))
            .chain(found.into_iter().map(|(id, p)| (id, Some(p))));
        self.apply(accounts)?;
        self.remove_strays()?;
        // Every listing, changed or not: a file altered or lost behind our back is put
        // right, and one that is as it should be is not touched.
        self.write_listings()?;
        let now = chrono::Utc::now().naive_utc();
        self.seen_until = latest.map(|l| l.min(now)).or(self.seen_until);
        Ok(())
    }

    /// Reads the accounts with these ids (from `user.updated` / `user.deleted`); an
    /// account no longer in the database loses its page.
    pub fn refresh(
        &mut self,
        conn: &mut AnyConnection,
        ids: &BTreeSet<String>,
    ) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rows = SiteAccount::with_ids(conn, &ids).context("cannot read the changed accounts")?;
        let mut accounts: BTreeMap<String, Option<Profile>> =
            ids.iter().map(|id| ((*id).to_owned(), None)).collect();
        for row in rows {
            let (id, profile, _) = from_row(row);
            accounts.insert(id, profile);
        }
        if self.apply(accounts)? {
            self.write_listings()?;
        }
        Ok(())
    }

    /// Reads the accounts changed since the last pass (less [`CLOCK_SLACK`]).
    pub fn catch_up(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        let Some(since) = self.seen_until else {
            return self.rebuild(conn);
        };
        let rows = SiteAccount::changed_since(conn, since - CLOCK_SLACK)
            .context("cannot read the changed accounts")?;
        let mut latest = since;
        // A writer whose clock runs ahead must not move the mark past everyone else's
        // changes: it goes no further than this host's now.
        let now = chrono::Utc::now().naive_utc();
        let accounts: Vec<(String, Option<Profile>)> = rows
            .into_iter()
            .map(|row| {
                let (id, profile, updated) = from_row(row);
                latest = latest.max(updated.min(now));
                (id, profile)
            })
            .collect();
        if self.apply(accounts)? {
            self.write_listings()?;
        }
        self.seen_until = Some(latest);
        Ok(())
    }

    /// Brings each account's page in line with what it should show; returns whether
    /// anything the index shows changed. Removals go first, and a page is removed only
    /// when no other account now has its name: a name freed by one account and taken
    /// by another keeps the new owner's page, whatever the order.
    fn apply(
        &mut self,
        accounts: impl IntoIterator<Item = (String, Option<Profile>)>,
    ) -> anyhow::Result<bool> {
        let changes: Vec<(String, Option<Profile>)> = accounts
            .into_iter()
            .filter(|(id, wanted)| {
                let on_disk = wanted
                    .as_ref()
                    .is_none_or(|p| self.page_path(&p.username).exists());
                self.published.get(id) != wanted.as_ref() || !on_disk
            })
            .collect();
        if changes.is_empty() {
            return Ok(false);
        }
        for (id, _) in &changes {
            let Some(old) = self.published.remove(id) else {
                continue;
            };
            let owned = |p: &Profile| p.username == old.username;
            let still_taken = self.published.values().any(owned)
                || changes.iter().any(|(_, w)| w.as_ref().is_some_and(owned));
            if !still_taken {
                self.remove_page(&old.username)?;
            }
        }
        for (id, wanted) in changes {
            if let Some(profile) = wanted {
                let html = render_profile(&self.site_name, &profile);
                write_atomically(&self.page_path(&profile.username), html.as_bytes())?;
                self.published.insert(id, profile);
            }
        }
        Ok(true)
    }

    fn page_path(&self, username: &str) -> PathBuf {
        self.dir.join(format!("{username}.html"))
    }

    fn remove_page(&self, username: &str) -> anyhow::Result<()> {
        let path = self.page_path(username);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    /// Removes the pages in the folder that no published profile has (left by an
    /// earlier run, say, for an account closed while nothing was watching), and
    /// leftover temporary files.
    fn remove_strays(&self) -> anyhow::Result<()> {
        let keep: BTreeSet<String> = self
            .published
            .values()
            .map(|p| format!("{}.html", p.username))
            .chain(["index.html".to_owned()])
            .collect();
        // A half-written file left by a process killed mid-write goes too (passes never
        // overlap: see `crate::Lock`).
        crate::remove_files(&self.dir, |name| {
            name.ends_with(".tmp") || (name.ends_with(".html") && !keep.contains(name))
        })
    }

    /// Writes the pages made from the whole list (see [`crate::site`]); only those
    /// whose bytes changed reach the disk.
    fn write_listings(&mut self) -> anyhow::Result<()> {
        let mut people: Vec<&Profile> = self.published.values().collect();
        people.sort_by(|a, b| a.username.cmp(&b.username));
        self.directory_pages =
            site::write_directory(&self.dir, &self.site_name, site::PAGE_SIZE, &people)?;
        site::write_home(&self.out, &self.site_name, &people)?;
        self.sitemaps = site::write_sitemap(
            &self.out,
            &self.public_url,
            self.directory_pages,
            &people,
            site::SITEMAP_URLS,
        )?;
        site::write_feed(&self.out, &self.site_name, &self.public_url, &people)?;
        Ok(())
    }
}

fn max_updated(conn: &mut AnyConnection) -> anyhow::Result<Option<NaiveDateTime>> {
    SiteAccount::latest_change(conn).context("cannot read the latest change")
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage<'a> {
    site_name: &'a str,
    profile: &'a Profile,
}

impl PersonPage<'_> {
    /// The bio's paragraphs (split at blank lines), each trimmed; none if it is blank.
    fn paragraphs(&self) -> impl Iterator<Item = &str> {
        let bio = self.profile.bio.as_deref().unwrap_or("");
        bio.split("\n\n").map(str::trim).filter(|p| !p.is_empty())
    }
}

fn render_profile(site_name: &str, profile: &Profile) -> String {
    render(&PersonPage { site_name, profile })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_index(site_name: &str, people: &[&Profile]) -> String {
        site::render_directory_page(site_name, people, site::PAGE_SIZE, 1)
    }

    fn ada() -> Profile {
        Profile {
            username: "ada".into(),
            display_name: Some("Ada <Lovelace>".into()),
            bio: Some("First line\nsecond line\n\n<script>x</script>".into()),
            member_since: chrono::NaiveDate::from_ymd_opt(2026, 11, 3)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap(),
            updated_at: chrono::NaiveDate::from_ymd_opt(2026, 11, 5)
                .unwrap()
                .and_hms_opt(8, 30, 0)
                .unwrap(),
        }
    }

    #[test]
    fn a_profile_page_escapes_everything_its_owner_typed() {
        let html = render_profile("Ada & Co", &ada());
        assert!(html.contains("<h1>Ada &lt;Lovelace&gt;</h1>"), "{html}");
        assert!(
            html.contains("<p>First line<br>\nsecond line</p>"),
            "{html}"
        );
        assert!(
            html.contains("<p>&lt;script&gt;x&lt;/script&gt;</p>"),
            "{html}"
        );
        assert!(html.contains("Member of Ada &amp; Co since November 2026."));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn quotes_and_ampersands_are_escaped_too() {
        use flotilla_testkit::{MARKUP as TYPED, MARKUP_ESCAPED as ESCAPED};
        let mut profile = ada();
        profile.display_name = Some(TYPED.into());
        profile.bio = Some(TYPED.into());
        let html = render_profile(TYPED, &profile);
        assert!(
            html.contains(&format!("<title>{ESCAPED} · flotilla</title>")),
            "{html}"
        );
        assert!(html.contains(&format!("<h1>{ESCAPED}</h1>")));
        assert!(html.contains(&format!("<p>{ESCAPED}</p>")));
        assert!(html.contains(&format!("Member of {ESCAPED} since")));
        let html = render_index(TYPED, &[&profile]);
        assert!(
            html.contains(&format!("<h1>People of {ESCAPED}</h1>")),
            "{html}"
        );
        assert!(html.contains(&format!(">{ESCAPED}</a> @ada</li>")));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn the_index_links_every_profile_and_says_when_there_is_none() {
        let ada = ada();
        let html = render_index("x", &[&ada]);
        assert!(html.contains("<a href=\"/people/ada\">Ada &lt;Lovelace&gt;</a> @ada"));
        assert!(render_index("x", &[]).contains("No one has made their profile public yet."));
    }

    #[test]
    fn only_verified_public_open_accounts_with_a_name_get_a_page() {
        let t = ada().member_since;
        let row = |public, username: Option<&str>, verified, disabled, deleted| SiteAccount {
            id: "id".into(),
            username: username.map(str::to_owned),
            display_name: None,
            bio: None,
            public: public == 1,
            email_verified_at: verified,
            disabled_at: disabled,
            created_at: t,
            updated_at: t,
            deleted_at: deleted,
        };
        assert!(
            from_row(row(1, Some("ada"), Some(t), None, None))
                .1
                .is_some()
        );
        assert!(
            from_row(row(0, Some("ada"), Some(t), None, None))
                .1
                .is_none()
        );
        assert!(from_row(row(1, None, Some(t), None, None)).1.is_none());
        assert!(from_row(row(1, Some("ada"), None, None, None)).1.is_none());
        assert!(
            from_row(row(1, Some("ada"), Some(t), Some(t), None))
                .1
                .is_none()
        );
        assert!(
            from_row(row(1, Some("ada"), Some(t), None, Some(t)))
                .1
                .is_none()
        );
    }
}
