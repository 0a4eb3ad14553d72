//! The files made from the whole list of public profiles: the home page (how many, and
//! the newest), the directory (`/people/`, then `/people/page/2`, …), `sitemap.xml`
//! and `feed.xml` (Atom, the newest members); and `robots.txt`.
//!
//! [`Lists`] writes them from one reading of the list in username order, a profile at
//! a time, holding one directory page, one sitemap file's addresses and the newest
//! members, never the whole list: its memory does not grow with the site. A pass that
//! changed the list renders all of them and writes only those whose bytes changed
//! ([`Output::write`] compares), so a profile going public rewrites its own directory
//! page and the later ones it shifts, never the earlier ones.

use askama::Template;
use chrono::NaiveDateTime;
use flotilla_kit::html::render;

use crate::output::Output;
use crate::people::Profile;

/// Profiles per directory page. Fixed, so that a page's address keeps showing the same
/// stretch of the alphabet as profiles come and go; 50 keeps a page small (a few KB, one
/// screenful or two on a phone) while 100,000 profiles still need only 2,000 pages,
/// which a pass renders and compares in well under a second.
pub const PAGE_SIZE: usize = 50;

/// Times as the sitemap (W3C Datetime) and Atom (RFC 3339) want them; the database
/// keeps UTC.
pub const W3C_TIME: &str = "%Y-%m-%dT%H:%M:%SZ";

/// At most this many addresses in one sitemap file (the sitemaps.org limit); a longer
/// list is split into `sitemap-1.xml`, `sitemap-2.xml`, … named by a sitemap index.
pub const SITEMAP_URLS: usize = 50_000;

/// How many of the newest members the feed holds.
pub const FEED_ENTRIES: usize = 20;

/// How many of the newest members the home page shows.
pub const HOME_NEWEST: usize = 10;

/// robots.txt: everything may be crawled but the services' pages, which are forms and
/// private views.
pub fn robots(public_url: &str) -> String {
    let mut text = String::from("User-agent: *\nAllow: /\n");
    for path in ["/login", "/signup", "/profile", "/admin", "/hello"] {
        text.push_str(&format!("Disallow: {path}\n"));
    }
    text.push_str(&format!("\nSitemap: {public_url}/sitemap.xml\n"));
    text
}

/// The files of the list, written as the profiles come (sorted by username).
pub struct Lists<'a> {
    out: &'a Output,
    site_name: &'a str,
    public_url: &'a str,
    /// How many profiles the list has (counted in the same snapshot as it is read).
    members: usize,
    /// How many have come.
    seen: usize,
    /// The directory: how many pages, the one being filled, its profiles.
    pages: usize,
    page: usize,
    on_page: Vec<Profile>,
    sitemap: SitemapWriter,
    /// The newest members so far, newest first, at most [`FEED_ENTRIES`].
    newest: Vec<Profile>,
}

impl<'a> Lists<'a> {
    /// Lists for `members` profiles, into `out`; a sitemap file holds at most
    /// `sitemap_limit` addresses.
    pub fn new(
        out: &'a Output,
        site_name: &'a str,
        public_url: &'a str,
        members: usize,
        sitemap_limit: usize,
    ) -> Self {
        let pages = directory_pages(members, PAGE_SIZE);
        let mut sitemap = SitemapWriter::new(public_url, 1 + pages + members, sitemap_limit);
        sitemap.urls.push(SitemapUrl::page("/".to_owned()));
        for page in 1..=pages {
            sitemap.urls.push(SitemapUrl::page(directory_href(page)));
        }
        Self {
            out,
            site_name,
            public_url,
            members,
            seen: 0,
            pages,
            page: 1,
            on_page: Vec::with_capacity(PAGE_SIZE),
            sitemap,
            newest: Vec::with_capacity(FEED_ENTRIES + 1),
        }
    }

    /// The next profile of the list.
    pub fn push(&mut self, profile: Profile) -> anyhow::Result<()> {
        self.seen += 1;
        anyhow::ensure!(
            self.seen <= self.members,
            "the list of public profiles changed while it was read"
        );
        self.sitemap.push(
            self.out,
            SitemapUrl {
                path: format!("/people/{}", profile.username),
                lastmod: Some(profile.updated_at),
            },
        )?;
        self.consider_newest(&profile);
        self.on_page.push(profile);
        if self.on_page.len() == PAGE_SIZE && self.page < self.pages {
            self.write_page()?;
        }
        Ok(())
    }

    /// Keeps `profile` if it is among the newest so far.
    fn consider_newest(&mut self, profile: &Profile) {
        let at = self
            .newest
            .partition_point(|p| newer_first(p, profile) == std::cmp::Ordering::Less);
        if at < FEED_ENTRIES {
            self.newest.insert(at, profile.clone());
            self.newest.truncate(FEED_ENTRIES);
        }
    }

    fn write_page(&mut self) -> anyhow::Result<()> {
        let people: Vec<&Profile> = self.on_page.iter().collect();
        let html = render_directory_page(self.site_name, &people, self.page, self.pages);
        self.out
            .write(&directory_file(self.page), html.as_bytes())?;
        self.on_page.clear();
        self.page += 1;
        Ok(())
    }

    /// Writes what is left (the last directory page, the sitemap's last file and its
    /// index, the home page, the feed) and removes the directory pages and sitemap
    /// parts past the last. Returns how many directory pages and sitemap files there
    /// are.
    pub fn finish(mut self) -> anyhow::Result<(usize, usize)> {
        anyhow::ensure!(
            self.seen == self.members,
            "the list of public profiles changed while it was read"
        );
        self.write_page()?;
        remove_pages_after(self.out, self.pages)?;
        let sitemaps = self.sitemap.finish(self.out)?;
        let newest: Vec<&Profile> = self.newest.iter().collect();
        let home = render_home(self.site_name, self.members, &newest);
        self.out.write("index.html", home.as_bytes())?;
        let feed = render_feed(self.site_name, self.public_url, &newest);
        self.out.write("feed.xml", feed.as_bytes())?;
        Ok((self.pages, sitemaps))
    }
}

/// One address of the sitemap; the site's own pages have no date.
struct SitemapUrl {
    path: String,
    lastmod: Option<NaiveDateTime>,
}

impl SitemapUrl {
    fn page(path: String) -> Self {
        Self {
            path,
            lastmod: None,
        }
    }
}

#[derive(Template)]
#[template(path = "sitemap.xml")]
struct Sitemap<'a> {
    base: &'a str,
    urls: &'a [SitemapUrl],
}

#[derive(Template)]
#[template(path = "sitemap_index.xml")]
struct SitemapIndex<'a> {
    base: &'a str,
    parts: usize,
}

/// `sitemap.xml`: every address in one file, or, beyond the limit, in `sitemap-N.xml`
/// files named by `sitemap.xml` as an index. Holds one file's addresses at a time.
struct SitemapWriter {
    base: String,
    limit: usize,
    /// Whether the addresses need more than one file.
    split: bool,
    urls: Vec<SitemapUrl>,
    /// The parts written so far.
    parts: usize,
}

impl SitemapWriter {
    fn new(base: &str, total: usize, limit: usize) -> Self {
        let limit = limit.max(1);
        Self {
            base: base.to_owned(),
            limit,
            split: total > limit,
            urls: Vec::new(),
            parts: 0,
        }
    }

    fn push(&mut self, out: &Output, url: SitemapUrl) -> anyhow::Result<()> {
        self.urls.push(url);
        // (The site's own addresses come first, unchecked: more of them than the
        // limit make more than one part here.)
        while self.split && self.urls.len() >= self.limit {
            self.write_part(out)?;
        }
        Ok(())
    }

    /// Writes the next part: the first `limit` addresses held.
    fn write_part(&mut self, out: &Output) -> anyhow::Result<()> {
        self.parts += 1;
        let count = self.urls.len().min(self.limit);
        let xml = self.render_urls(&self.urls[..count]);
        out.write(&format!("sitemap-{}.xml", self.parts), xml.as_bytes())?;
        self.urls.drain(..count);
        Ok(())
    }

    fn render_urls(&self, urls: &[SitemapUrl]) -> String {
        render(&Sitemap {
            base: &self.base,
            urls,
        })
    }

    /// Writes the last file (and the index); returns how many files the sitemap has.
    fn finish(mut self, out: &Output) -> anyhow::Result<usize> {
        if !self.split {
            out.write("sitemap.xml", self.render_urls(&self.urls).as_bytes())?;
        } else {
            while !self.urls.is_empty() {
                self.write_part(out)?;
            }
            let index = render(&SitemapIndex {
                base: &self.base,
                parts: self.parts,
            });
            out.write("sitemap.xml", index.as_bytes())?;
        }
        let last = self.parts;
        out.remove_files("", |name| {
            name.strip_prefix("sitemap-")
                .and_then(|n| n.strip_suffix(".xml"))
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n > last || n == 0)
        })?;
        Ok(1 + self.parts)
    }
}

#[derive(Template)]
#[template(path = "feed.xml")]
struct Feed<'a> {
    site_name: &'a str,
    base: &'a str,
    /// The newest entry's `updated` (the epoch for an empty feed): never the time of
    /// the build, so that the same data gives the same file.
    updated: String,
    entries: &'a [&'a Profile],
}

/// Renders `feed.xml`: the [`FEED_ENTRIES`] newest of `people`.
pub(crate) fn render_feed(site_name: &str, public_url: &str, people: &[&Profile]) -> String {
    let entries = newest(people, FEED_ENTRIES);
    let updated = entries
        .iter()
        .map(|p| p.updated_at)
        .max()
        .unwrap_or_default()
        .format(W3C_TIME)
        .to_string();
    render(&Feed {
        site_name,
        base: public_url,
        updated,
        entries: &entries,
    })
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    site_name: &'a str,
    members: usize,
    newest: &'a [&'a Profile],
}

/// The order of "newest": by account creation, newest first, ties by username.
fn newer_first(a: &Profile, b: &Profile) -> std::cmp::Ordering {
    b.member_since
        .cmp(&a.member_since)
        .then_with(|| a.username.cmp(&b.username))
}

/// The `n` newest of `people` (see [`newer_first`]).
pub fn newest<'a>(people: &[&'a Profile], n: usize) -> Vec<&'a Profile> {
    let mut chosen = people.to_vec();
    chosen.sort_by(|a, b| newer_first(a, b));
    chosen.truncate(n);
    chosen
}

/// Renders the home page of a site with `members` public profiles, showing the
/// [`HOME_NEWEST`] newest of `newest`.
pub(crate) fn render_home(site_name: &str, members: usize, newest_members: &[&Profile]) -> String {
    render(&HomePage {
        site_name,
        members,
        newest: &newest(newest_members, HOME_NEWEST),
    })
}

/// The address of directory page `page` (1 is `/people/`).
fn directory_href(page: usize) -> String {
    if page == 1 {
        "/people/".to_owned()
    } else {
        format!("/people/page/{page}")
    }
}

/// The file of directory page `page`, relative to the output folder.
fn directory_file(page: usize) -> String {
    if page == 1 {
        "people/index.html".to_owned()
    } else {
        format!("people/page/{page}.html")
    }
}

#[derive(Template)]
#[template(path = "people.html")]
struct DirectoryPage<'a> {
    title: String,
    people: &'a [&'a Profile],
    page: usize,
    pages: usize,
    prev: Option<String>,
    next: Option<String>,
}

/// How many directory pages `count` profiles fill (one, saying nobody is there, for none).
pub fn directory_pages(count: usize, page_size: usize) -> usize {
    count.div_ceil(page_size.max(1)).max(1)
}

/// Renders directory page `page` of `pages`, listing `people`.
pub(crate) fn render_directory_page(
    site_name: &str,
    people: &[&Profile],
    page: usize,
    pages: usize,
) -> String {
    render(&DirectoryPage {
        title: format!("People of {site_name}"),
        people,
        page,
        pages,
        prev: (page > 1).then(|| directory_href(page - 1)),
        next: (page < pages).then(|| directory_href(page + 1)),
    })
}

/// Removes from `people/page/` every page past `last` (and any other stray file of
/// ours: a name that is no page number, a half-written `.tmp`).
fn remove_pages_after(out: &Output, last: usize) -> anyhow::Result<()> {
    out.remove_files("people/page", |name| {
        let kept = name
            .strip_suffix(".html")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| (2..=last).contains(&n) && name == format!("{n}.html"));
        !kept && (name.ends_with(".html") || name.ends_with(".tmp"))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// Writes the lists of `people` into `out` (served); returns how many directory
    /// pages and sitemap files there are.
    fn write_lists(out: &Path, people: &[&Profile], sitemap_limit: usize) -> (usize, usize) {
        let out = Output::served(out);
        let mut lists = Lists::new(&out, "x", "https://x.org", people.len(), sitemap_limit);
        for p in people {
            lists.push((*p).clone()).unwrap();
        }
        lists.finish().unwrap()
    }

    pub fn profile(username: &str) -> Profile {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 3)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        Profile {
            username: username.to_owned(),
            display_name: None,
            bio: None,
            member_since: t,
            updated_at: t,
        }
    }

    fn joined(username: &str, day: u32) -> Profile {
        let mut p = profile(username);
        p.member_since = chrono::NaiveDate::from_ymd_opt(2026, 10, day)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        p.updated_at = p.member_since;
        p
    }

    #[test]
    fn the_newest_come_first_and_ties_go_by_username() {
        let all = [
            joined("old", 1),
            joined("zed", 20),
            joined("amy", 20),
            joined("mid", 10),
        ];
        let people: Vec<&Profile> = all.iter().collect();
        let names = |n| -> Vec<String> {
            newest(&people, n)
                .iter()
                .map(|p| p.username.clone())
                .collect()
        };
        assert_eq!(names(10), ["amy", "zed", "mid", "old"]);
        assert_eq!(names(2), ["amy", "zed"]);
        assert!(names(0).is_empty());
    }

    #[test]
    fn the_home_page_counts_the_members_and_shows_the_ten_newest() {
        let all: Vec<Profile> = (1..=12).map(|d| joined(&format!("u{d:02}"), d)).collect();
        let people: Vec<&Profile> = all.iter().collect();
        let home = render_home("Ada & Co", 12, &people);
        assert!(home.contains("Welcome to Ada &amp; Co."), "{home}");
        assert!(home.contains("12 members have a public profile."), "{home}");
        assert_eq!(listed(&home), 10, "ten members: {home}");
        assert!(home.find("/people/u12").unwrap() < home.find("/people/u03").unwrap());
        assert!(!home.contains("/people/u02") && !home.contains("/people/u01\""));
        for link in ["/signup", "/login", "/people/"] {
            assert!(home.contains(&format!("href=\"{link}\"")), "{link}");
        }
        assert!(render_home("x", 1, &people[..1]).contains("1 member has a public profile."));
        let empty = render_home("x", 0, &[]);
        assert!(empty.contains("0 members have") && !empty.contains("Newest"));
    }

    #[test]
    fn lists_read_a_profile_at_a_time_pick_the_same_newest_as_the_whole_list() {
        let out = flotilla_testkit::TempDir::new("pages");
        // In username order, joined on days that jump about (two on each day).
        let all: Vec<Profile> = (0..60)
            .map(|i| joined(&format!("u{i:02}"), 1 + (i * 7 % 30) as u32))
            .collect();
        let people: Vec<&Profile> = all.iter().collect();
        assert_eq!(write_lists(out.path(), &people, SITEMAP_URLS), (2, 1));
        assert_eq!(
            read(out.path(), "index.html"),
            render_home("x", 60, &newest(&people, HOME_NEWEST))
        );
        assert_eq!(
            read(out.path(), "feed.xml"),
            render_feed("x", "https://x.org", &newest(&people, FEED_ENTRIES))
        );
        // A list other than the one counted is an error (the pass is tried again).
        let served = Output::served(out.path());
        let mut lists = Lists::new(&served, "x", "https://x.org", 1, SITEMAP_URLS);
        lists.push(all[0].clone()).unwrap();
        assert!(lists.push(all[1].clone()).is_err());
        let lists = Lists::new(&served, "x", "https://x.org", 2, SITEMAP_URLS);
        assert!(lists.finish().is_err());
    }

    #[test]
    fn robots_keeps_crawlers_off_the_services_and_names_the_sitemap() {
        let robots = robots("https://accounts.example.org");
        assert!(robots.starts_with("User-agent: *\nAllow: /\n"), "{robots}");
        for path in ["/login", "/signup", "/profile", "/admin", "/hello"] {
            assert!(robots.contains(&format!("\nDisallow: {path}\n")), "{path}");
        }
        assert!(robots.ends_with("\nSitemap: https://accounts.example.org/sitemap.xml\n"));
    }

    fn read(out: &Path, name: &str) -> String {
        std::fs::read_to_string(out.join(name)).unwrap()
    }

    #[test]
    fn the_sitemap_lists_the_site_and_every_profile_with_its_date() {
        let out = flotilla_testkit::TempDir::new("pages");
        let mut ada = joined("ada", 3);
        ada.updated_at = ada.member_since + chrono::TimeDelta::seconds(90);
        let odd = profile("a&b<c>");
        let people = [&odd, &ada];
        assert_eq!(write_lists(out.path(), &people, SITEMAP_URLS), (1, 1));
        let xml = read(out.path(), "sitemap.xml");
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset"));
        for page in ["/", "/people/"] {
            assert!(xml.contains(&format!("<url><loc>https://x.org{page}</loc></url>")));
        }
        assert!(xml.contains(
            "<url><loc>https://x.org/people/ada</loc><lastmod>2026-10-03T12:01:30Z</lastmod></url>"
        ));
        assert!(
            xml.contains("<loc>https://x.org/people/a&amp;b&lt;c&gt;</loc>"),
            "{xml}"
        );
        assert_eq!(xml.matches("<url>").count(), 4);
    }

    #[test]
    fn a_sitemap_past_the_limit_becomes_an_index_of_parts() {
        let out = flotilla_testkit::TempDir::new("pages");
        let all: Vec<Profile> = (0..5).map(|i| profile(&format!("u{i}"))).collect();
        let people: Vec<&Profile> = all.iter().collect();
        // 2 site pages and 5 profiles, 3 to a file: 3 parts.
        assert_eq!(write_lists(out.path(), &people, 3).1, 4);
        let index = read(out.path(), "sitemap.xml");
        assert!(index.contains("<sitemapindex"), "{index}");
        for n in 1..=3 {
            assert!(index.contains(&format!("<loc>https://x.org/sitemap-{n}.xml</loc>")));
        }
        assert!(read(out.path(), "sitemap-1.xml").contains("/people/u0<"));
        assert!(read(out.path(), "sitemap-2.xml").contains("/people/u1<"));
        let last = read(out.path(), "sitemap-3.xml");
        assert!(last.contains("/people/u4<") && last.matches("<url>").count() == 1);
        // Fewer: the parts past the last go; few enough: one file again.
        assert_eq!(write_lists(out.path(), &people[..3], 3).1, 3);
        assert!(!out.path().join("sitemap-3.xml").exists());
        assert_eq!(write_lists(out.path(), &[], 3).1, 1);
        assert!(!out.path().join("sitemap-1.xml").exists());
        assert!(read(out.path(), "sitemap.xml").contains("<urlset"));
        // More directory pages than a part holds: no part is longer than the limit.
        let many: Vec<Profile> = (0..120).map(|i| profile(&format!("v{i:03}"))).collect();
        let many: Vec<&Profile> = many.iter().collect();
        let files = write_lists(out.path(), &many, 2).1;
        assert_eq!(files, 1 + (1 + 3 + 120_usize).div_ceil(2));
        for n in 1..files {
            let part = read(out.path(), &format!("sitemap-{n}.xml"));
            assert!(part.matches("<url>").count() <= 2, "part {n}: {part}");
        }
    }

    #[test]
    fn the_feed_holds_the_twenty_newest_escaped_and_dated_by_them() {
        use flotilla_testkit::{MARKUP, MARKUP_ESCAPED};
        let mut all: Vec<Profile> = (1..=25).map(|d| joined(&format!("u{d:02}"), d)).collect();
        all[24].display_name = Some(MARKUP.into());
        all[3].updated_at = all[24].member_since + chrono::TimeDelta::days(3);
        let people: Vec<&Profile> = all.iter().collect();
        let feed = render_feed(MARKUP, "https://x.org", &people);
        assert!(feed.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
        assert!(feed.contains(&format!("<title>New members of {MARKUP_ESCAPED}</title>")));
        assert_eq!(feed.matches("<entry>").count(), 20);
        assert!(
            feed.contains(&format!("<title>{MARKUP_ESCAPED}</title>")),
            "{feed}"
        );
        assert!(feed.contains("<id>https://x.org/people/u25</id>"));
        assert!(feed.contains(
            "<link rel=\"alternate\" type=\"text/html\" href=\"https://x.org/people/u06\"/>"
        ));
        assert!(!feed.contains("/people/u05<") && !feed.contains("<script>"));
        assert!(feed.find("/people/u25<").unwrap() < feed.find("/people/u24<").unwrap());
        // The feed's date is its newest entry's (u04 left out, though changed later).
        assert!(
            feed.contains("<updated>2026-10-25T12:00:00Z</updated>\n<author>"),
            "{feed}"
        );
        let empty = render_feed("x", "https://x.org", &[]);
        assert!(
            empty.contains("<updated>1970-01-01T00:00:00Z</updated>") && !empty.contains("<entry>")
        );
    }

    /// The people a page lists (not the header's and footer's links).
    fn listed(html: &str) -> usize {
        let Some((_, list)) = html.split_once("<ul class=\"people\">") else {
            return 0;
        };
        list.split("</ul>").next().unwrap().matches("<li>").count()
    }

    #[test]
    fn pages_split_at_the_page_size() {
        for (count, pages) in [(0, 1), (1, 1), (50, 1), (51, 2), (100, 2), (101, 3)] {
            assert_eq!(directory_pages(count, PAGE_SIZE), pages, "{count}");
        }
    }

    #[test]
    fn each_page_links_its_neighbours_and_says_where_it_is() {
        let all: Vec<Profile> = (0..101).map(|i| profile(&format!("u{i:03}"))).collect();
        let people: Vec<&Profile> = all.iter().collect();
        let first = render_directory_page("x", &people[..50], 1, 3);
        assert_eq!(listed(&first), 50);
        assert!(first.contains("href=\"/people/u000\""));
        assert!(first.contains("href=\"/people/u049\"") && !first.contains("u050"));
        assert!(first.contains("<link rel=\"next\" href=\"/people/page/2\">"));
        assert!(first.contains("<a rel=\"next\" href=\"/people/page/2\">"));
        assert!(!first.contains("rel=\"prev\""));
        assert!(first.contains("Page 1 of 3"), "{first}");
        let second = render_directory_page("x", &people[50..100], 2, 3);
        assert_eq!(listed(&second), 50);
        assert!(second.contains("<link rel=\"prev\" href=\"/people/\">"));
        assert!(second.contains("<a rel=\"prev\" href=\"/people/\">"));
        assert!(second.contains("<link rel=\"next\" href=\"/people/page/3\">"));
        assert!(second.contains("Page 2 of 3"));
        let last = render_directory_page("x", &people[100..], 3, 3);
        assert_eq!(listed(&last), 1);
        assert!(last.contains("href=\"/people/u100\""));
        assert!(last.contains("<a rel=\"prev\" href=\"/people/page/2\">"));
        assert!(!last.contains("rel=\"next\""));
        // One page alone has no links and no count.
        let one = render_directory_page("x", &people[..50], 1, 1);
        assert!(
            !one.contains("rel=\"prev") && !one.contains("rel=\"next"),
            "{one}"
        );
        assert!(!one.contains("Page 1 of"), "{one}");
    }

    #[test]
    fn the_folder_holds_exactly_the_pages_of_the_list() {
        let out = flotilla_testkit::TempDir::new("pages");
        let dir = out.path().join("people");
        let all: Vec<Profile> = (0..101).map(|i| profile(&format!("u{i:03}"))).collect();
        let people: Vec<&Profile> = all.iter().collect();
        let files = || {
            let mut names: Vec<String> = std::fs::read_dir(dir.join("page"))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        assert_eq!(write_lists(out.path(), &people, SITEMAP_URLS).0, 3);
        assert_eq!(files(), ["2.html", "3.html"]);
        std::fs::write(dir.join("page/.3.html.9.tmp"), "half").unwrap();
        assert_eq!(write_lists(out.path(), &people[..51], SITEMAP_URLS).0, 2);
        assert_eq!(files(), ["2.html"]);
        assert_eq!(write_lists(out.path(), &people[..50], SITEMAP_URLS).0, 1);
        assert!(files().is_empty());
        assert_eq!(write_lists(out.path(), &[], SITEMAP_URLS).0, 1);
        let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
        assert!(index.contains("No one has made their profile public yet."));
    }
}
