//! The files made from the whole list of public profiles: the home page (how many, and
//! the newest), the directory (`/people/`, then `/people/page/2`, …), `sitemap.xml`
//! and `feed.xml` (Atom, the newest members); and `robots.txt`. A pass that changed the list renders all of them and
//! writes only those whose bytes changed ([`crate::write_atomically`] compares), so a
//! profile going public rewrites its own directory page and the later ones it shifts,
//! never the earlier ones. Nothing is kept between passes but the list itself.

use std::path::{Path, PathBuf};

use askama::Template;
use flotilla_kit::html::render;

use crate::people::Profile;
use crate::write_atomically;

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

#[derive(Template)]
#[template(path = "sitemap.xml")]
struct Sitemap<'a> {
    base: &'a str,
    /// Site pages without a date (the home page, the directory's).
    pages: &'a [String],
    people: &'a [&'a Profile],
}

#[derive(Template)]
#[template(path = "sitemap_index.xml")]
struct SitemapIndex<'a> {
    base: &'a str,
    parts: usize,
}

/// Writes `sitemap.xml`: the home page, the directory's `pages` and every profile in
/// `people`, in one file, or, beyond `limit` addresses, in `sitemap-N.xml` files named by
/// `sitemap.xml` as an index. Removes the parts no longer needed; returns how many
/// files the sitemap has.
pub fn write_sitemap(
    out: &Path,
    public_url: &str,
    directory_pages: usize,
    people: &[&Profile],
    limit: usize,
) -> anyhow::Result<usize> {
    let limit = limit.max(1);
    let site: Vec<String> = std::iter::once("/".to_owned())
        .chain((1..=directory_pages.max(1)).map(directory_href))
        .collect();
    let total = site.len() + people.len();
    // The addresses `from..to` of the list made of `site` then `people`.
    let part = |from: usize, to: usize| {
        let (s, p) = (site.len(), people.len());
        render(&Sitemap {
            base: public_url,
            pages: &site[from.min(s)..to.min(s)],
            people: &people[from.saturating_sub(s).min(p)..to.saturating_sub(s).min(p)],
        })
    };
    let parts = if total <= limit {
        write_atomically(&out.join("sitemap.xml"), part(0, total).as_bytes())?;
        0
    } else {
        let parts = total.div_ceil(limit);
        for n in 1..=parts {
            let xml = part((n - 1) * limit, n * limit);
            write_atomically(&out.join(format!("sitemap-{n}.xml")), xml.as_bytes())?;
        }
        let index = render(&SitemapIndex {
            base: public_url,
            parts,
        });
        write_atomically(&out.join("sitemap.xml"), index.as_bytes())?;
        parts
    };
    remove_sitemap_parts_after(out, parts)?;
    Ok(1 + parts)
}

/// Removes `sitemap-N.xml` for every N past `last`.
fn remove_sitemap_parts_after(out: &Path, last: usize) -> anyhow::Result<()> {
    crate::remove_files(out, |name| {
        name.strip_prefix("sitemap-")
            .and_then(|n| n.strip_suffix(".xml"))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > last || n == 0)
    })
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

/// Writes `feed.xml` into the output folder `out`.
pub fn write_feed(
    out: &Path,
    site_name: &str,
    public_url: &str,
    people: &[&Profile],
) -> anyhow::Result<()> {
    let xml = render_feed(site_name, public_url, people);
    write_atomically(&out.join("feed.xml"), xml.as_bytes())
}

/// How many of the newest members the home page shows.
pub const HOME_NEWEST: usize = 10;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    site_name: &'a str,
    members: usize,
    newest: &'a [&'a Profile],
}

/// The `n` newest of `people`: by account creation, newest first, ties by username.
/// In time linear in the list (a partial selection, then a sort of the `n`).
pub fn newest<'a>(people: &[&'a Profile], n: usize) -> Vec<&'a Profile> {
    let order = |a: &&Profile, b: &&Profile| {
        b.member_since
            .cmp(&a.member_since)
            .then_with(|| a.username.cmp(&b.username))
    };
    let mut chosen = people.to_vec();
    if n == 0 {
        return Vec::new();
    }
    if chosen.len() > n {
        chosen.select_nth_unstable_by(n - 1, order);
        chosen.truncate(n);
    }
    chosen.sort_by(order);
    chosen
}

/// Renders the home page of a site whose public profiles are `people`.
pub(crate) fn render_home(site_name: &str, people: &[&Profile]) -> String {
    render(&HomePage {
        site_name,
        members: people.len(),
        newest: &newest(people, HOME_NEWEST),
    })
}

/// Writes the home page, `index.html` in the output folder `out`.
pub fn write_home(out: &Path, site_name: &str, people: &[&Profile]) -> anyhow::Result<()> {
    let html = render_home(site_name, people);
    write_atomically(&out.join("index.html"), html.as_bytes())
}

/// The address of directory page `page` (1 is `/people/`).
fn directory_href(page: usize) -> String {
    if page == 1 {
        "/people/".to_owned()
    } else {
        format!("/people/page/{page}")
    }
}

/// The file of directory page `page` under the people folder.
fn directory_file(dir: &Path, page: usize) -> PathBuf {
    if page == 1 {
        dir.join("index.html")
    } else {
        dir.join("page").join(format!("{page}.html"))
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

/// Renders directory page `page` of `people` (sorted by username).
pub(crate) fn render_directory_page(
    site_name: &str,
    people: &[&Profile],
    page_size: usize,
    page: usize,
) -> String {
    let page_size = page_size.max(1);
    let pages = directory_pages(people.len(), page_size);
    let start = ((page - 1) * page_size).min(people.len());
    let end = (start + page_size).min(people.len());
    render(&DirectoryPage {
        title: format!("People of {site_name}"),
        people: &people[start..end],
        page,
        pages,
        prev: (page > 1).then(|| directory_href(page - 1)),
        next: (page < pages).then(|| directory_href(page + 1)),
    })
}

/// Writes every directory page of `people` (sorted by username) into the people folder
/// `dir` and removes the pages past the last; returns how many pages there are.
pub fn write_directory(
    dir: &Path,
    site_name: &str,
    page_size: usize,
    people: &[&Profile],
) -> anyhow::Result<usize> {
    let pages = directory_pages(people.len(), page_size);
    for page in 1..=pages {
        let html = render_directory_page(site_name, people, page_size, page);
        write_atomically(&directory_file(dir, page), html.as_bytes())?;
    }
    remove_pages_after(&dir.join("page"), pages)?;
    Ok(pages)
}

/// Removes from `people/page/` every page past `last` (and any other stray file of
/// ours: a name that is no page number, a half-written `.tmp`).
fn remove_pages_after(folder: &Path, last: usize) -> anyhow::Result<()> {
    crate::remove_files(folder, |name| {
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
        let home = render_home("Ada & Co", &people);
        assert!(home.contains("Welcome to Ada &amp; Co."), "{home}");
        assert!(home.contains("12 members have a public profile."), "{home}");
        assert_eq!(listed(&home), 10 + 4, "ten members and four links: {home}");
        assert!(home.find("/people/u12").unwrap() < home.find("/people/u03").unwrap());
        assert!(!home.contains("/people/u02") && !home.contains("/people/u01\""));
        for link in ["/signup", "/login", "/people/"] {
            assert!(home.contains(&format!("href=\"{link}\"")), "{link}");
        }
        assert!(render_home("x", &people[..1]).contains("1 member has a public profile."));
        let empty = render_home("x", &[]);
        assert!(empty.contains("0 members have") && !empty.contains("Newest"));
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
        let people = [&ada, &odd];
        let files = write_sitemap(out.path(), "https://x.org", 2, &people, SITEMAP_URLS);
        assert_eq!(files.unwrap(), 1);
        let xml = read(out.path(), "sitemap.xml");
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset"));
        for page in ["/", "/people/", "/people/page/2"] {
            assert!(xml.contains(&format!("<url><loc>https://x.org{page}</loc></url>")));
        }
        assert!(xml.contains(
            "<url><loc>https://x.org/people/ada</loc><lastmod>2026-10-03T12:01:30Z</lastmod></url>"
        ));
        assert!(
            xml.contains("<loc>https://x.org/people/a&amp;b&lt;c&gt;</loc>"),
            "{xml}"
        );
        assert_eq!(xml.matches("<url>").count(), 5);
    }

    #[test]
    fn a_sitemap_past_the_limit_becomes_an_index_of_parts() {
        let out = flotilla_testkit::TempDir::new("pages");
        let all: Vec<Profile> = (0..5).map(|i| profile(&format!("u{i}"))).collect();
        let people: Vec<&Profile> = all.iter().collect();
        // 2 site pages and 5 profiles, 3 to a file: 3 parts.
        assert_eq!(
            write_sitemap(out.path(), "https://x.org", 1, &people, 3).unwrap(),
            4
        );
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
        assert_eq!(
            write_sitemap(out.path(), "https://x.org", 1, &people[..3], 3).unwrap(),
            3
        );
        assert!(!out.path().join("sitemap-3.xml").exists());
        assert_eq!(
            write_sitemap(out.path(), "https://x.org", 1, &[], 3).unwrap(),
            1
        );
        assert!(!out.path().join("sitemap-1.xml").exists());
        assert!(read(out.path(), "sitemap.xml").contains("<urlset"));
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

    fn listed(html: &str) -> usize {
        html.matches("<li>").count()
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
        let first = render_directory_page("x", &people, PAGE_SIZE, 1);
        assert_eq!(listed(&first), 50);
        assert!(first.contains("href=\"/people/u000\""));
        assert!(first.contains("href=\"/people/u049\"") && !first.contains("u050"));
        assert!(first.contains("<link rel=\"next\" href=\"/people/page/2\">"));
        assert!(first.contains("<a rel=\"next\" href=\"/people/page/2\">"));
        assert!(!first.contains("rel=\"prev\""));
        assert!(first.contains("Page 1 of 3"), "{first}");
        let second = render_directory_page("x", &people, PAGE_SIZE, 2);
        assert_eq!(listed(&second), 50);
        assert!(second.contains("<link rel=\"prev\" href=\"/people/\">"));
        assert!(second.contains("<a rel=\"prev\" href=\"/people/\">"));
        assert!(second.contains("<link rel=\"next\" href=\"/people/page/3\">"));
        assert!(second.contains("Page 2 of 3"));
        let last = render_directory_page("x", &people, PAGE_SIZE, 3);
        assert_eq!(listed(&last), 1);
        assert!(last.contains("href=\"/people/u100\""));
        assert!(last.contains("<a rel=\"prev\" href=\"/people/page/2\">"));
        assert!(!last.contains("rel=\"next\""));
        // One page alone has no links and no count.
        let one = render_directory_page("x", &people[..50], PAGE_SIZE, 1);
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
        assert_eq!(write_directory(&dir, "x", PAGE_SIZE, &people).unwrap(), 3);
        assert_eq!(files(), ["2.html", "3.html"]);
        std::fs::write(dir.join("page/.3.html.9.tmp"), "half").unwrap();
        assert_eq!(
            write_directory(&dir, "x", PAGE_SIZE, &people[..51]).unwrap(),
            2
        );
        assert_eq!(files(), ["2.html"]);
        assert_eq!(
            write_directory(&dir, "x", PAGE_SIZE, &people[..50]).unwrap(),
            1
        );
        assert!(files().is_empty());
        assert_eq!(write_directory(&dir, "x", PAGE_SIZE, &[]).unwrap(), 1);
        let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
        assert!(index.contains("No one has made their profile public yet."));
    }
}
