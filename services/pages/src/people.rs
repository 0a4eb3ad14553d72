//! The public profiles: `/people/<username>` for every account whose owner made it
//! public (verified, not disabled, not closed, with a username), and the files that
//! list them (the home page, the directory, the sitemap, the feed: [`crate::site`]).
//!
//! [`People`] holds nothing per profile: which page is whose is kept in a file beside
//! the build ([`Names`]), and the lists are written from the database, read in username
//! order a chunk at a time in one snapshot, never held whole. Three kinds of pass:
//! - [`People::build`] writes every public profile and the lists into a fresh folder;
//! - [`People::refresh`] reads the accounts named by `user.*` events;
//! - [`People::catch_up`] reads the accounts whose `updated_at` moved since the last
//!   pass, for changes whose event was lost.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use askama::Template;
use chrono::{NaiveDateTime, TimeDelta};
use flotilla_accounts::{ListedProfile, SiteAccount};
use flotilla_db::AnyConnection;
use flotilla_kit::html::render;

use crate::names::Names;
use crate::output::Output;
use crate::site::{self, Lists};

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

/// Profiles read from the database at a time.
const CHUNK: i64 = 2_000;

/// The published profiles of one output folder.
pub struct People {
    out: Output,
    site_name: String,
    /// The site's origin, for the sitemap and the feed.
    public_url: String,
    /// The username of each published page, by account id.
    names: Names,
    /// How many profiles are published.
    count: usize,
    /// How many directory pages and sitemap files the last pass wrote.
    directory_pages: usize,
    sitemaps: usize,
    /// The latest `updated_at` seen; `catch_up` reads from a little before it.
    seen_until: Option<NaiveDateTime>,
    /// Pages changed since the lists were last written: a pass whose lists failed
    /// writes them again on its retry, though its accounts' pages are done.
    lists_stale: bool,
}

impl People {
    /// The profiles of the folder `out`, whose pages `names` names.
    pub fn new(out: Output, names: Names, site_name: &str, public_url: &str) -> Self {
        Self {
            out,
            site_name: site_name.to_owned(),
            public_url: public_url.to_owned(),
            names,
            count: 0,
            directory_pages: 0,
            sitemaps: 0,
            seen_until: None,
            lists_stale: false,
        }
    }

    /// The folder it writes.
    pub fn out(&self) -> &Output {
        &self.out
    }

    /// The folder was switched in: from now on it is served.
    pub fn now_served(&mut self) {
        self.out.now_served();
    }

    /// How many profiles are published.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many files the last pass left in the folder: one page per profile, the
    /// directory's pages, the home page, the sitemap's files and the feed.
    pub fn pages(&self) -> usize {
        self.count + self.directory_pages + 1 + self.sitemaps + 1
    }

    /// Writes every public profile's page and the lists (into a fresh folder: see
    /// [`Output`]), reading the database in chunks.
    pub fn build(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        self.names.clear()?;
        // It saw every change up to its snapshot's latest.
        let latest = self.read_list(conn, true)?;
        self.seen_until = latest
            .map(|l| l.min(chrono::Utc::now().naive_utc()))
            .or(self.seen_until);
        Ok(())
    }

    /// Takes over a folder that `build` wrote and switched in, with its names (the
    /// folder was made from the database; the changes since come by events and
    /// catch-ups, as ever). A folder without a names file (an older version's) gets
    /// one from the database.
    pub fn follow(
        &mut self,
        folder: &std::path::Path,
        conn: &mut AnyConnection,
    ) -> anyhow::Result<()> {
        let mut names = match Names::existing(folder)? {
            Some(names) => names,
            None => {
                // Filled under another name and renamed when whole, so that a failure
                // part-way leaves no file to be taken for complete.
                let mut names = Names::create_temporary(folder)?;
                let mut after: Option<String> = None;
                loop {
                    let rows = SiteAccount::public_profiles_after(conn, after.as_deref(), CHUNK)
                        .context("cannot read the public profiles")?;
                    let Some(last) = rows.last() else { break };
                    after = last.username.clone();
                    let pages: Vec<(String, String)> = rows
                        .into_iter()
                        .filter_map(|row| match from_row(row) {
                            (id, Some(profile), _) => Some((id, profile.username)),
                            _ => None,
                        })
                        .collect();
                    names.set_all(&pages)?;
                }
                names.finish(folder)?
            }
        };
        // Taken over only once all of it is ready: a failure leaves the watcher on the
        // folder it had, to try again.
        self.count = names.len()?;
        self.names = names;
        self.out = Output::served(folder);
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
        self.apply(accounts)?;
        self.write_lists_if_stale(conn)
    }

    /// Reads the accounts changed since the last pass (less [`CLOCK_SLACK`]).
    pub fn catch_up(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        // Nothing seen yet (there was no account at the build): from the start.
        let since = self.seen_until.unwrap_or_default();
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
        self.apply(accounts)?;
        self.write_lists_if_stale(conn)?;
        self.seen_until = Some(latest);
        Ok(())
    }

    /// Brings each account's page in line with what it should show; marks the lists
    /// stale when a published account changed or left. Removals go first, and a page is
    /// removed only when no other account now has its name: a name freed by one account
    /// and taken by another keeps the new owner's page, whatever the order. A page is
    /// removed before its name is forgotten, so that a failure in between leaves the
    /// name to be found again on the retry.
    fn apply(
        &mut self,
        accounts: impl IntoIterator<Item = (String, Option<Profile>)>,
    ) -> anyhow::Result<()> {
        let mut changes = Vec::new();
        for (id, wanted) in accounts {
            let old = self.names.get(&id)?;
            if wanted.is_some() || old.is_some() {
                changes.push((id, old, wanted));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        self.lists_stale = true;
        for (id, old, wanted) in &changes {
            let renamed = |old: &String| wanted.as_ref().is_none_or(|p| p.username != *old);
            let Some(old) = old.as_ref().filter(|old| renamed(old)) else {
                continue;
            };
            let still_taken = self.names.taken_by_other(old, id)?
                || changes
                    .iter()
                    .any(|(_, _, w)| w.as_ref().is_some_and(|p| p.username == *old));
            if !still_taken {
                self.out.remove(&page_file(old))?;
            }
            self.names.remove(id)?;
        }
        for (id, _, wanted) in changes {
            if let Some(profile) = wanted {
                let html = render_profile(&self.site_name, &profile);
                self.out
                    .write(&page_file(&profile.username), html.as_bytes())?;
                self.names.set(&id, &profile.username)?;
            }
        }
        Ok(())
    }

    /// Writes the lists if a pass changed pages since they were last written.
    fn write_lists_if_stale(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        if self.lists_stale {
            self.read_list(conn, false)?;
        }
        Ok(())
    }

    /// Reads the public profiles in username order, in chunks of [`CHUNK`], within one
    /// snapshot, and writes the lists; with `pages` (a full build), each profile's page
    /// too, remembering its name. Without, only what the lists show is read (from the
    /// index alone).
    /// Returns the latest `updated_at` of any account in the snapshot.
    fn read_list(
        &mut self,
        conn: &mut AnyConnection,
        pages: bool,
    ) -> anyhow::Result<Option<NaiveDateTime>> {
        let (directory_pages, sitemaps, members, latest) =
            flotilla_db::read_snapshot(conn, |conn| {
                let members = SiteAccount::count_public_profiles(conn)
                    .context("cannot count the public profiles")?;
                let members = usize::try_from(members).unwrap_or(0);
                let mut lists = Lists::new(
                    &self.out,
                    &self.site_name,
                    &self.public_url,
                    members,
                    site::SITEMAP_URLS,
                );
                let mut after: Option<String> = None;
                loop {
                    let chunk = if pages {
                        let rows =
                            SiteAccount::public_profiles_after(conn, after.as_deref(), CHUNK)
                                .context("cannot read the public profiles")?;
                        after = rows.last().and_then(|r| r.username.clone());
                        let chunk: Vec<(Option<String>, Profile)> = rows
                            .into_iter()
                            .filter_map(|row| match from_row(row) {
                                (id, Some(profile), _) => Some((Some(id), profile)),
                                _ => None,
                            })
                            .collect();
                        let names: Vec<(String, String)> = chunk
                            .iter()
                            .filter_map(|(id, p)| Some((id.clone()?, p.username.clone())))
                            .collect();
                        self.names.set_all(&names)?;
                        chunk
                    } else {
                        let rows = SiteAccount::listed_after(conn, after.as_deref(), CHUNK)
                            .context("cannot read the public profiles")?;
                        after = rows.last().map(|r| r.username.clone());
                        rows.into_iter().map(|row| (None, listed(row))).collect()
                    };
                    if after.is_none() {
                        break;
                    }
                    for (id, profile) in chunk {
                        if id.is_some() {
                            let html = render_profile(&self.site_name, &profile);
                            self.out
                                .write(&page_file(&profile.username), html.as_bytes())?;
                        }
                        lists.push(profile)?;
                    }
                }
                let (directory_pages, sitemaps) = lists.finish()?;
                anyhow::Ok((directory_pages, sitemaps, members, max_updated(conn)?))
            })?;
        self.directory_pages = directory_pages;
        self.sitemaps = sitemaps;
        // What the lists counted is what is published (the same filter).
        self.count = members;
        self.lists_stale = false;
        Ok(latest)
    }
}

/// A profile as the lists show it.
fn listed(row: ListedProfile) -> Profile {
    Profile {
        username: row.username,
        display_name: row.display_name,
        bio: None,
        member_since: row.created_at,
        updated_at: row.updated_at,
    }
}

/// The page of `username`, relative to the output folder.
fn page_file(username: &str) -> String {
    format!("people/{username}.html")
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
        site::render_directory_page(site_name, people, 1, 1)
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
            html.contains(&format!("<title>{ESCAPED} — flotilla</title>")),
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
        assert!(html.contains(&format!(
            ">{ESCAPED}</a> <span class=\"handle\">@ada</span></li>"
        )));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn the_index_links_every_profile_and_says_when_there_is_none() {
        let ada = ada();
        let html = render_index("x", &[&ada]);
        assert!(html.contains(
            "<a href=\"/people/ada\">Ada &lt;Lovelace&gt;</a> <span class=\"handle\">@ada</span>"
        ));
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
