//! `GET /admin/audit?actor=&target=&action=&before=&limit=`: the audit log, newest
//! first, for operators only; read-only (no route changes it, and the database refuses
//! UPDATE and DELETE on it). JSON `{"entries":[…],"next":id|null}` (`next` is the
//! `before` of the following page), a page with filters and paging that work without
//! JavaScript, or the whole filtered log as JSON lines (`format=jsonl` or `Accept:
//! application/x-ndjson`), streamed in bounded batches.

use flotilla_kit::html::SignedIn;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use flotilla_accounts::{AuditEntry, AuditSearch};
use flotilla_contracts::AuditAction;
use flotilla_kit::api::ErrorBody;
use flotilla_kit::html::{page_or_json, render};
use flotilla_kit::work::read;
use flotilla_kit::{Error, FieldErrors, State};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::docs::{self, AuditFormat};
use crate::operator::Operator;

/// The default page size, and the largest.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;
/// Entries read at once for the export; at most two batches wait for the client.
const EXPORT_BATCH: i64 = 500;
/// Longest `actor` or `target` (an address is at most 254; the command line's actor
/// adds its Unix user).
const MAX_PARTY: usize = 320;
const NDJSON: &str = "application/x-ndjson";

/// The query string as sent; an empty value (a filter form left blank) is no filter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Who acted: an account id, or the address stored with the entry (as it was then,
    /// any case; the command line's actor is `command line (<unix user>)`).
    #[param(max_length = 320)]
    actor: Option<String>,
    /// The account acted on: an id or the address stored with the entry.
    #[param(max_length = 320)]
    target: Option<String>,
    /// One of the audit actions: `account.promoted`, `account.demoted`,
    /// `account.disabled`, …
    #[param(example = "account.promoted")]
    action: Option<String>,
    /// Only entries older than this entry id: the answer's `next` (keyset paging).
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
    /// Entries per page, 1 to 200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `jsonl`: the whole filtered log as JSON lines, a download (as `Accept:
    /// application/x-ndjson`).
    #[param(inline, value_type = Option<AuditFormat>)]
    format: Option<String>,
}

/// The query checked: what to read, how much, and whether it is the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub search: AuditSearch,
    pub limit: i64,
    pub export: bool,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn party(value: Option<&str>) -> Result<Option<String>, &'static str> {
    match value {
        None => Ok(None),
        Some(v) if v.chars().count() > MAX_PARTY || v.chars().any(char::is_control) => {
            Err("must be an account id or an email address")
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

impl AuditQuery {
    /// The filter, or a 422 naming each field that is wrong.
    pub fn check(&self, accept: Option<&str>) -> Result<AuditFilter, Error> {
        let mut errors = FieldErrors::new();
        let mut wrong = |field: &str, problem: String| {
            errors.insert(field.to_owned(), problem);
        };
        let actor = party(given(&self.actor)).unwrap_or_else(|p| {
            wrong("actor", p.into());
            None
        });
        let target = party(given(&self.target)).unwrap_or_else(|p| {
            wrong("target", p.into());
            None
        });
        let action = given(&self.action).and_then(|name| {
            let action = AuditAction::parse(name);
            if action.is_none() {
                let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
                wrong("action", format!("must be one of {}", names.join(", ")));
            }
            action
        });
        let before = given(&self.before).and_then(|id| match id.parse::<i64>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                wrong(
                    "before",
                    "must be an entry id (a whole number above 0)".into(),
                );
                None
            }
        });
        let limit = match given(&self.limit).map(str::parse::<i64>) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                wrong("limit", format!("must be 1 to {MAX_LIMIT}"));
                DEFAULT_LIMIT
            }
        };
        let export = match given(&self.format) {
            Some("jsonl") => true,
            Some(_) => {
                wrong("format", "must be jsonl (the export) or left out".into());
                false
            }
            None => accept.is_some_and(|a| a.contains(NDJSON)),
        };
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        Ok(AuditFilter {
            search: AuditSearch {
                actor,
                target,
                action,
                before,
            },
            limit,
            export,
        })
    }
}

/// One entry as the JSON answer and the export show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    id: i64,
    /// RFC 3339, UTC.
    at: String,
    /// The admin's address then, or `command line (<unix user>)`.
    actor: String,
    /// The admin's account id; `null` for the command line.
    actor_id: Option<String>,
    /// The audit action (`account.disabled`, `job.retried`, …).
    action: String,
    /// The account's address then (empty when the action had no account).
    target: String,
    target_id: Option<String>,
    client_addr: String,
    request_id: String,
    detail: String,
}

impl From<AuditEntry> for EntryView {
    fn from(e: AuditEntry) -> Self {
        EntryView {
            id: e.id,
            at: crate::utc(e.created_at),
            actor: e.actor,
            actor_id: e.actor_id,
            action: e.action,
            target: e.target,
            target_id: e.target_id,
            client_addr: e.client_addr,
            request_id: e.request_id,
            detail: e.detail,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Serialize, ToSchema)]
struct Listing {
    entries: Vec<EntryView>,
    /// The `before` of the next (older) page; `null` on the last one.
    next: Option<i64>,
}

/// A page of the log and the `before` of the next one, if there is more.
async fn page_of(
    state: &web::Data<State>,
    filter: &AuditFilter,
) -> Result<(Vec<AuditEntry>, Option<i64>), Error> {
    let (search, limit) = (filter.search.clone(), filter.limit);
    // One more than shown: whether an older page exists, without a count.
    let mut entries = read(state, move |conn| {
        AuditEntry::search(conn, &search, limit + 1)
    })
    .await?;
    let more = entries.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = more.then(|| entries.last().map(|e| e.id)).flatten();
    Ok((entries, next))
}

/// The audit log, newest first, filtered and a page at a time, or whole as JSON lines.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", operation_id = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the log: JSON for an API client, a table \
            with filters and older/newest links for a browser. The export (`format=jsonl` \
            or `Accept: application/x-ndjson`): the whole filtered log, one `EntryView` a \
            line, newest first, streamed as a download.", content(
            (Listing = "application/json"),
            (String = "text/html"),
            (String = "application/x-ndjson"),
        ), headers(
            ("Content-Disposition" = String, description = "The export only: \
                `attachment; filename=\"flotilla-audit.jsonl\"`."),
        ), links(
            ("older_page" = (operation_id = "admin_audit",
                parameters(("before" = "$response.body#/next")),
                description = "The older page: `next` as `before`, with the same filters \
                    and `limit`.")),
        )),
        (status = 303, description = docs::PAGE_SEE_OTHER, headers(("Location" = String))),
        (status = 400, description = docs::MALFORMED_QUERY, body = ErrorBody),
        (status = 401, description = docs::PAGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::PAGE_FORBIDDEN, body = ErrorBody),
        (status = 422, description = "`invalid_input`, naming each filter that is wrong \
            (`actor`, `target`, `action`, `before`, `limit`, `format`).", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn audit(
    operator: Operator,
    req: HttpRequest,
    query: web::Query<AuditQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let filter = query.check(accept)?;
    if filter.export {
        return Ok(export(state, filter.search));
    }
    let (entries, next) = page_of(&state, &filter).await?;
    let listing = Listing {
        entries: entries.iter().cloned().map(EntryView::from).collect(),
        next,
    };
    Ok(page_or_json(&req, &listing, || {
        render(&AuditPage::new(
            &query,
            &filter,
            entries,
            next,
            operator.viewer(),
        ))
    }))
}

/// The whole filtered log, newest first, one JSON object a line: read `EXPORT_BATCH`
/// entries at a time by keyset, each batch sent before the next is read (at most two
/// wait in the channel), so that memory stays bounded whatever the log's size.
fn export(state: web::Data<State>, mut search: AuditSearch) -> HttpResponse {
    let (lines, body) = mpsc::channel::<Result<web::Bytes, Error>>(2);
    actix_web::rt::spawn(async move {
        loop {
            let batch = search.clone();
            let entries = read(&state, move |conn| {
                AuditEntry::search(conn, &batch, EXPORT_BATCH)
            })
            .await;
            let entries = match entries {
                Ok(entries) => entries,
                Err(error) => {
                    // The status is sent already: the body ends short, and the log says why.
                    log::error!("the audit export stopped: {error}");
                    let _ = lines.send(Err(error)).await;
                    return;
                }
            };
            let Some(last) = entries.last().map(|e| e.id) else {
                return;
            };
            let full = entries.len() == usize::try_from(EXPORT_BATCH).unwrap_or(usize::MAX);
            let mut chunk = Vec::new();
            for entry in entries {
                if serde_json::to_writer(&mut chunk, &EntryView::from(entry)).is_err() {
                    return;
                }
                chunk.push(b'\n');
            }
            if lines.send(Ok(chunk.into())).await.is_err() || !full {
                // The client went away, or that was the oldest batch.
                return;
            }
            search.before = Some(last);
        }
    });
    HttpResponse::Ok()
        .content_type(NDJSON)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"flotilla-audit.jsonl\"",
        ))
        .body(Lines(body))
}

/// A streamed body fed by the export's task.
struct Lines(mpsc::Receiver<Result<web::Bytes, Error>>);

impl MessageBody for Lines {
    type Error = Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<web::Bytes, Error>>> {
        self.0.poll_recv(cx)
    }
}

/// A row of the page's table.
struct Row {
    entry: AuditEntry,
    at: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    title: &'static str,
    viewer: SignedIn<'a>,
    rows: Vec<Row>,
    actor: String,
    target: String,
    action: String,
    limit: i64,
    actions: &'static [AuditAction],
    /// The query of the older page, the newest page and the export (filters kept).
    older: Option<String>,
    newest: Option<String>,
    export: String,
}

impl<'a> AuditPage<'a> {
    fn new(
        query: &AuditQuery,
        filter: &AuditFilter,
        entries: Vec<AuditEntry>,
        next: Option<i64>,
        viewer: SignedIn<'a>,
    ) -> Self {
        let typed = |v: &Option<String>| given(v).unwrap_or("").to_owned();
        let (actor, target, action) = (
            typed(&query.actor),
            typed(&query.target),
            typed(&query.action),
        );
        let link = |extra: &[(&str, String)]| {
            let mut pairs: Vec<(&str, String)> = [
                ("actor", actor.clone()),
                ("target", target.clone()),
                ("action", action.clone()),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
            if filter.limit != DEFAULT_LIMIT {
                pairs.push(("limit", filter.limit.to_string()));
            }
            pairs.extend(extra.iter().cloned());
            format!(
                "/admin/audit?{}",
                serde_urlencoded::to_string(pairs).unwrap_or_default()
            )
        };
        let older = next.map(|id| link(&[("before", id.to_string())]));
        let newest = filter.search.before.map(|_| link(&[]));
        let export = link(&[("format", "jsonl".to_owned())]);
        let rows = entries
            .into_iter()
            .map(|entry| Row {
                at: entry.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                entry,
            })
            .collect();
        AuditPage {
            title: "Audit log",
            viewer,
            rows,
            actor,
            target,
            action,
            limit: filter.limit,
            actions: AuditAction::ALL,
            older,
            newest,
            export,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> AuditQuery {
        let text = serde_urlencoded::to_string(pairs).unwrap();
        serde_urlencoded::from_str(&text).unwrap()
    }

    fn problems(q: AuditQuery) -> FieldErrors {
        match q.check(None) {
            Err(Error::Invalid(fields)) => fields,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_wrong_filter_is_named() {
        let fields = problems(query(&[
            ("action", "account.teleported"),
            ("before", "-3"),
            ("limit", "201"),
            ("format", "csv"),
            ("actor", "a\u{7}b"),
        ]));
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(names, ["action", "actor", "before", "format", "limit"]);
        assert!(fields["action"].contains("account.promoted"));
        assert_eq!(fields["limit"], "must be 1 to 200");
        assert!(problems(query(&[("limit", "0")])).contains_key("limit"));
        assert!(problems(query(&[("before", "x")])).contains_key("before"));
    }

    #[test]
    fn blank_filters_are_no_filters_and_the_export_is_asked_two_ways() {
        let filter = query(&[("actor", " "), ("target", ""), ("action", "")])
            .check(None)
            .unwrap();
        assert_eq!(filter.search, AuditSearch::default());
        assert_eq!((filter.limit, filter.export), (50, false));
        let filter = query(&[
            ("actor", " Root@Example.org "),
            ("action", "account.promoted"),
            ("before", "42"),
            ("limit", "200"),
        ])
        .check(None)
        .unwrap();
        assert_eq!(filter.search.actor.as_deref(), Some("Root@Example.org"));
        assert_eq!(filter.search.action, Some(AuditAction::Promoted));
        assert_eq!((filter.search.before, filter.limit), (Some(42), 200));
        assert!(query(&[("format", "jsonl")]).check(None).unwrap().export);
        assert!(
            query(&[])
                .check(Some("application/x-ndjson"))
                .unwrap()
                .export
        );
    }

    #[test]
    fn the_page_escapes_what_it_shows_and_keeps_the_filters_in_its_links() {
        use flotilla_testkit::{MARKUP, MARKUP_ESCAPED};
        let q = query(&[("actor", MARKUP), ("limit", "10")]);
        let filter = q.check(None).unwrap();
        let entry = AuditEntry {
            id: 7,
            created_at: chrono::DateTime::from_timestamp(0, 0).unwrap().naive_utc(),
            actor_id: Some("a1".into()),
            actor: MARKUP.into(),
            action: AuditAction::Disabled.to_string(),
            target_id: Some("u1".into()),
            target: MARKUP.into(),
            client_addr: "127.0.0.1".into(),
            request_id: MARKUP.into(),
            detail: MARKUP.into(),
        };
        let viewer = SignedIn {
            name: "Ada",
            csrf: "t",
            admin: true,
        };
        let html = render(&AuditPage::new(&q, &filter, vec![entry], Some(7), viewer));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(MARKUP_ESCAPED), "{html}");
        assert!(html.contains("1970-01-01 00:00:00 UTC"), "{html}");
        assert!(html.contains("before=7"), "{html}");
        assert!(html.contains("limit=10"), "{html}");
        assert!(html.contains("format=jsonl"), "{html}");
        assert!(
            html.contains("<option value=\"account.disabled\">"),
            "{html}"
        );
    }
}
