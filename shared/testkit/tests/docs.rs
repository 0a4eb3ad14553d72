//! The documentation against the code, so that it stays true:
//!
//! - every `FLOTILLA_*` variable the code names is documented in
//!   `docs/configuration.md` (in a table row's first cell), and every one named there is
//!   still in the code; the tests' own variables sit in its section "For tests and
//!   benchmarks";
//! - every operation of `docs/openapi.json` is in `docs/routes.md`, written as
//!   `` `METHOD /path` `` in a table row's first cell, and every route written that way
//!   in `docs/routes.md` is an operation of the document or one of the few nginx serves
//!   itself ([`NOT_THE_SERVICES`]);
//! - every relative link of `README.md`, `CHANGELOG.md` and `docs/*.md` reaches a file,
//!   and an `#anchor` into a markdown file one of its headings (GitHub's slugs).
//!
//! Each failure names the variable, route or link and the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use flotilla_testkit::workspace_root;

/// Where the code that reads variables lives.
const SCANNED: &[&str] = &[
    "services", "shared", "scripts", "proxy", "Makefile", "systemd",
];

/// The section of `docs/configuration.md` that holds the tests' own variables.
const TEST_SECTION: &str = "For tests and benchmarks";

/// The routes `docs/routes.md` may write that are not the services': nginx serves them
/// from the static site.
const NOT_THE_SERVICES: &[&str] = &[
    "GET /",
    "GET /people/",
    "GET /people/page/{n}",
    "GET /people/{username}",
    "GET /api/",
    "GET /api/openapi.json",
    "GET /sitemap.xml",
    "GET /feed.xml",
    "GET /robots.txt",
];

/// What `/<svc>/` stands for in `docs/routes.md`: every HTTP service.
const SERVICES: &[&str] = &["signup", "login", "profile", "admin", "worker"];

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

#[test]
fn every_variable_is_documented_and_every_documented_one_is_read() {
    let root = workspace_root();
    let mut in_code: BTreeMap<String, PathBuf> = BTreeMap::new();
    let this_file = root.join("shared/testkit/tests/docs.rs");
    for top in SCANNED {
        for file in files_under(&root.join(top)) {
            if file == this_file {
                continue;
            }
            let Some(text) = read_text(&file) else {
                continue;
            };
            for name in variables(&text) {
                in_code
                    .entry(name)
                    .or_insert_with(|| file.strip_prefix(&root).unwrap().to_owned());
            }
        }
    }
    assert!(
        in_code.contains_key("FLOTILLA_DATA_DIR"),
        "the scan of {SCANNED:?} found no FLOTILLA_DATA_DIR: is it looking in the right place?"
    );

    let doc_path = "docs/configuration.md";
    let doc = fs::read_to_string(root.join(doc_path)).unwrap();
    let mentioned: BTreeSet<String> = variables(&doc).into_iter().collect();
    // Documented: named in the first cell of a table row, with the section it is in.
    let mut documented: BTreeMap<String, String> = BTreeMap::new();
    for (section, line) in lines_with_sections(&doc) {
        if let Some(first) = first_cell(line) {
            for name in variables(first) {
                documented.insert(name, section.clone());
            }
        }
    }

    let mut problems = Vec::new();
    for (name, file) in &in_code {
        match documented.get(name) {
            None => problems.push(format!(
                "{name} (read in {}) is not documented in {doc_path}: add a row for it",
                file.display()
            )),
            Some(section) if is_test_variable(name) && section != TEST_SECTION => {
                problems.push(format!(
                    "{name} is a test's variable: {doc_path} should document it under \
                     \"{TEST_SECTION}\", not \"{section}\""
                ))
            }
            Some(_) => {}
        }
    }
    for name in &mentioned {
        if !in_code.contains_key(name) {
            problems.push(format!(
                "{name} is named in {doc_path} but no file under {SCANNED:?} reads it: \
                 remove it, or fix its spelling"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_route_is_in_routes_md_and_every_route_there_exists() {
    let root = workspace_root();
    let spec: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(root.join("docs/openapi.json")).unwrap()).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"]
        .as_object()
        .expect("docs/openapi.json has paths")
    {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if METHODS.contains(&method.as_str()) {
                operations.insert(format!("{method} {path}"));
            }
        }
    }
    assert!(
        operations.len() > 50,
        "docs/openapi.json has {} operations",
        operations.len()
    );

    let doc_path = "docs/routes.md";
    let doc = fs::read_to_string(root.join(doc_path)).unwrap();
    let mut in_tables = BTreeSet::new();
    let mut written = BTreeSet::new();
    for (_, line) in lines_with_sections(&doc) {
        for route in routes(line) {
            written.insert(route);
        }
        if let Some(first) = first_cell(line) {
            in_tables.extend(routes(first));
        }
    }

    let mut problems = Vec::new();
    for operation in &operations {
        if !in_tables.contains(operation) {
            problems.push(format!(
                "`{operation}` is in docs/openapi.json but not in {doc_path}: add it to its \
                 service's table, written as `{operation}` in the first column"
            ));
        }
    }
    for route in &written {
        if !operations.contains(route) && !NOT_THE_SERVICES.contains(&route.as_str()) {
            problems.push(format!(
                "`{route}` is written in {doc_path} but is no operation of docs/openapi.json \
                 (run `make openapi`?) nor one of the routes nginx serves itself"
            ));
        }
    }
    for route in NOT_THE_SERVICES {
        if !in_tables.contains(*route) {
            problems.push(format!(
                "`{route}` is listed in NOT_THE_SERVICES (shared/testkit/tests/docs.rs) but \
                 not in a table of {doc_path}"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_relative_link_resolves() {
    let root = workspace_root();
    let mut pages = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);

    let mut problems = Vec::new();
    for page in pages.iter().filter(|page| page.exists()) {
        let shown = page.strip_prefix(&root).unwrap().display().to_string();
        let text = fs::read_to_string(page).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            if !file.exists() {
                problems.push(format!("{shown}: the link ({target}) reaches no file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if file.extension().is_none_or(|ext| ext != "md") {
                continue;
            }
            let headings = slugs(&fs::read_to_string(&file).unwrap());
            if !headings.contains(anchor) {
                problems.push(format!(
                    "{shown}: the link ({target}) names no heading of {} (it has: {})",
                    file.strip_prefix(&root).unwrap_or(&file).display(),
                    headings.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The tests' own variables, which belong in the section for tests.
fn is_test_variable(name: &str) -> bool {
    name.starts_with("FLOTILLA_TEST_")
        || name.starts_with("FLOTILLA_FUZZ_")
        || name == "FLOTILLA_KEEP_TEST_DIRS"
}

/// Every `FLOTILLA_*` name in `text`, in full. A prefix (`FLOTILLA_ARGON2_`,
/// `FLOTILLA_BUS_{socket}`, `FLOTILLA_<SVC>_LISTEN`: a name made by a format string or
/// standing for a family) ends in `_` where the name stops, and is left out.
fn variables(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("FLOTILLA_") {
        let start = from + at;
        let mut end = start + "FLOTILLA_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let glued =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let name = &text[start..end];
        if !glued && !name.ends_with('_') {
            found.push(name.to_owned());
        }
        from = end;
    }
    found
}

/// The lines of a markdown text outside fenced code, each with the `## ` section it is in.
fn lines_with_sections(text: &str) -> Vec<(String, &str)> {
    let mut section = String::new();
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_owned();
        }
        lines.push((section.clone(), line));
    }
    lines
}

/// The first cell of a table row (not of its header's rule).
fn first_cell(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('|')?;
    let cell = rest.split('|').next()?;
    (!cell.trim_start().starts_with("---")).then_some(cell)
}

/// The routes written as `` `METHOD /path` `` in a line, a query string left out and
/// `/<svc>/` expanded to every service.
fn routes(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, span) in line.split('`').enumerate() {
        if i % 2 == 0 {
            continue; // outside backticks
        }
        let Some((method, path)) = span.split_once(' ') else {
            continue;
        };
        if !METHODS.contains(&method) || !path.starts_with('/') || path.contains(' ') {
            continue;
        }
        let path = path.split('?').next().unwrap();
        if path.contains("<svc>") {
            for service in SERVICES {
                found.push(format!("{method} {}", path.replace("<svc>", service)));
            }
        } else {
            found.push(format!("{method} {path}"));
        }
    }
    found
}

/// The targets of a markdown text's inline links and images, outside code.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (_, line) in lines_with_sections(text) {
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                found.push(target.trim_matches(|c| c == '<' || c == '>').to_owned());
            }
            rest = &rest[end..];
        }
    }
    found
}

/// The anchors GitHub gives a markdown text's headings: lower case, punctuation
/// dropped, spaces as hyphens, `-1`, `-2`… after a repeated one.
fn slugs(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut slugs = BTreeSet::new();
    for (_, line) in lines_with_sections(text) {
        let trimmed = line.trim_start_matches('#');
        if trimmed.len() == line.len() || !trimmed.starts_with(' ') {
            continue;
        }
        let slug: String = trimmed
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        slugs.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    slugs
}

/// Every file under `path` (or `path` itself), build output and version control left out.
fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(path) else {
        return files;
    };
    let mut entries: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).collect();
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if entry.is_dir() {
            if name != "target" && name != ".git" && name != "node_modules" {
                files.extend(files_under(&entry));
            }
        } else {
            files.push(entry);
        }
    }
    files
}

/// A file's text, or `None` for a binary file.
fn read_text(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    if bytes.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
