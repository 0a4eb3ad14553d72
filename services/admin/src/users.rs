//! `GET /admin/users?q=&status=&role=&after=&limit=`: the accounts, searched by a
//! prefix of the address or the username and filtered by state and role, a page at a
//! time ([`flotilla_accounts::directory`] runs the queries). JSON for scripts; for
//! browsers a table with a search form and previous/next links that carry the query.

use actix_web::http::StatusCode;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use flotilla_accounts::Role;
use flotilla_accounts::directory::{
    Cursor, ListedUser, MAX_PAGE, MAX_PREFIX, StatusFilter, UserPage, UserQuery,
};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::html::SignedIn;
use flotilla_kit::html::{render, respond};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::read;
use flotilla_kit::{Error, FieldErrors, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::docs::{self, RoleName, UserStatus};
use crate::operator::Operator;

/// Rows per page when `limit` is not given.
const DEFAULT_PAGE: i64 = 50;
/// How many earlier pages the HTML pager remembers for "previous" (each is a cursor
/// in the link; a deeper trail would make the link too long for a request line).
const MAX_TRAIL: usize = 30;

/// The query string, checked: the directory's query and, for the HTML pager, the
/// cursors of the pages before this one (`trail`, dot-separated).
#[derive(Debug)]
struct ListRequest {
    query: UserQuery,
    trail: Vec<String>,
}

impl ListRequest {
    /// Every parameter at once: an unknown or repeated one is refused by name, as is
    /// each bad value; an empty value is the same as none (a form's "any").
    fn parse(query_string: &str) -> Result<Self, Error> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query_string).map_err(|e| Error::BadRequest {
                code: "malformed_query",
                message: format!("The query string is invalid: {e}."),
            })?;
        let mut errors = FieldErrors::new();
        let mut seen = Vec::new();
        let mut query = UserQuery {
            prefix: None,
            status: None,
            role: None,
            after: None,
            limit: DEFAULT_PAGE,
        };
        let mut trail = Vec::new();
        for (name, value) in &pairs {
            if seen.contains(&name.as_str()) {
                errors.insert(name.clone(), "is given more than once".into());
                continue;
            }
            seen.push(name.as_str());
            let value = value.trim();
            let problem = match name.as_str() {
                "q" if value.chars().count() > MAX_PREFIX => {
                    Some(format!("must be at most {MAX_PREFIX} characters"))
                }
                // No address or username has one, and PostgreSQL takes no NUL in text.
                "q" if value.chars().any(char::is_control) => {
                    Some("must not contain control characters".into())
                }
                "q" => {
                    query.prefix = (!value.is_empty()).then(|| value.to_owned());
                    None
                }
                _ if value.is_empty() => None,
                "status" => match StatusFilter::parse(value) {
                    Some(status) => {
                        query.status = Some(status);
                        None
                    }
                    None => Some("must be verified, unverified, disabled or closed".into()),
                },
                "role" => match Role::parse(value) {
                    Ok(role) => {
                        query.role = Some(role);
                        None
                    }
                    Err(_) => Some("must be user or admin".into()),
                },
                "limit" => match value.parse::<i64>() {
                    Ok(limit) if (1..=MAX_PAGE).contains(&limit) => {
                        query.limit = limit;
                        None
                    }
                    _ => Some(format!("must be 1 to {MAX_PAGE}")),
                },
                "after" => match Cursor::decode(value) {
                    Some(cursor) => {
                        query.after = Some(cursor);
                        None
                    }
                    None => Some("is not a cursor of this list (use the answer's next)".into()),
                },
                "trail" => {
                    trail = value.split('.').map(str::to_owned).collect();
                    let ok = trail.len() <= MAX_TRAIL
                        && trail.iter().all(|c| Cursor::decode(c).is_some());
                    (!ok).then(|| "is not a trail of cursors of this list".into())
                }
                _ => Some(
                    "is not a parameter of this list (q, status, role, after, limit, trail)".into(),
                ),
            };
            if let Some(problem) = problem {
                errors.insert(name.clone(), problem);
            }
        }
        if errors.is_empty() {
            Ok(Self { query, trail })
        } else {
            Err(Error::Invalid(errors))
        }
    }

    /// This list's URL with another cursor and trail; the empty parameters left out.
    fn link(&self, after: Option<&str>, trail: &[String]) -> String {
        let query = &self.query;
        let limit = (query.limit != DEFAULT_PAGE).then(|| query.limit.to_string());
        let trail = trail.join(".");
        let pairs = [
            ("q", query.prefix.as_deref()),
            ("status", query.status.map(StatusFilter::as_str)),
            ("role", query.role.map(Role::as_str)),
            ("limit", limit.as_deref()),
            ("after", after),
            ("trail", (!trail.is_empty()).then_some(trail.as_str())),
        ];
        let present: Vec<(&str, &str)> = pairs
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name, v)))
            .collect();
        let encoded = serde_urlencoded::to_string(present).unwrap_or_default();
        if encoded.is_empty() {
            "/admin/users".into()
        } else {
            format!("/admin/users?{encoded}")
        }
    }
}

/// `2026-12-02T10:00:00Z`.
fn iso(at: NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An account in the list. Times are RFC 3339, UTC.
#[derive(Serialize, ToSchema)]
struct UserJson<'a> {
    id: &'a str,
    email: &'a str,
    username: Option<&'a str>,
    email_verified: bool,
    disabled: bool,
    #[schema(value_type = RoleName)]
    role: &'static str,
    created_at: String,
    /// Its latest `login.success`, `null` for none.
    last_sign_in_at: Option<String>,
}

impl<'a> From<&'a ListedUser> for UserJson<'a> {
    fn from(user: &'a ListedUser) -> Self {
        Self {
            id: &user.id,
            email: &user.email,
            username: user.username.as_deref(),
            email_verified: user.email_verified_at.is_some(),
            disabled: user.disabled_at.is_some(),
            role: user.role.as_str(),
            created_at: iso(user.created_at),
            last_sign_in_at: user.last_sign_in_at.map(iso),
        }
    }
}

/// A page of the accounts.
#[derive(Serialize, ToSchema)]
struct UserList<'a> {
    users: Vec<UserJson<'a>>,
    /// The `after` of the next page; `null` on the last one.
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage<'a> {
    title: &'a str,
    viewer: SignedIn<'a>,
    q: &'a str,
    status: &'a str,
    role: &'a str,
    limit: Option<String>,
    statuses: [&'static str; 4],
    users: &'a [ListedUser],
    first: Option<String>,
    previous: Option<String>,
    next: Option<String>,
}

impl UsersPage<'_> {
    fn when(&self, at: &NaiveDateTime) -> String {
        at.format("%Y-%m-%d %H:%M").to_string()
    }

    fn state(&self, user: &ListedUser) -> &'static str {
        if user.deleted_at.is_some() {
            "closed"
        } else if user.disabled_at.is_some() {
            "disabled"
        } else if user.email_verified_at.is_some() {
            "verified"
        } else {
            "unverified"
        }
    }
}

/// The accounts, searched by a prefix of the address or username and filtered by state
/// and role, a page at a time (keyset-paginated).
#[utoipa::path(get, path = "/admin/users", tag = "admin", operation_id = "users",
    params(
        ("q" = Option<String>, Query, max_length = 254, description = "The accounts whose \
            address starts with it (any case), in address order, then those whose username \
            does, in username order; trimmed, without control characters. Without it, \
            newest first."),
        ("status" = inline(Option<UserStatus>), Query, description = "Only the accounts in \
            this state; an empty value is no filter."),
        ("role" = inline(Option<RoleName>), Query, description = "Only the accounts with \
            this role; an empty value is no filter."),
        ("after" = Option<String>, Query, description = "The `next` of the page before \
            (a cursor of the same search)."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Rows per \
            page (default 50)."),
        ("trail" = Option<String>, Query, description = "The pages' pager: the cursors of \
            the pages before this one, dot-separated (at most 30), for the page's \
            \"previous\" link."),
    ),
    responses(
        (status = 200, description = "A page of accounts: JSON for an API client, a table \
            with a search form and first/previous/next links for a browser.", content(
            (UserList = "application/json"),
            (String = "text/html"),
        ), links(
            ("next_page" = (operation_id = "admin_users",
                parameters(("after" = "$response.body#/next")),
                description = "The next page: `next` as `after`, with the same `q`, \
                    `status`, `role` and `limit`.")),
            ("first_account" = (operation_id = "admin_account",
                parameters(("id" = "$response.body#/users/0/id")),
                description = "The first account listed, whole.")),
            ("act_on_first" = (operation_id = "admin_act",
                parameters(("id" = "$response.body#/users/0/id")),
                description = "An action on the first account listed.")),
        )),
        (status = 303, description = docs::PAGE_SEE_OTHER, headers(("Location" = String))),
        (status = 400, description = "`malformed_query`: the query string does not parse.",
            body = ErrorBody),
        (status = 401, description = docs::PAGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::PAGE_FORBIDDEN, body = ErrorBody),
        (status = 422, description = "`invalid_input`, naming each parameter that is wrong: \
            a bad value, an `after` from another search, or a parameter unknown or given \
            twice.", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(
    operator: Operator,
    req: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let request = ListRequest::parse(req.query_string())?;
    let query = request.query.clone();
    let page: UserPage = read(&state, move |conn| {
        query.run(conn)?.map_err(|_| {
            Error::invalid(
                "after",
                "belongs to another search (a cursor keeps its q, status and role)",
            )
        })
    })
    .await?;
    let next = page.next.as_ref().map(Cursor::encode);
    if !wants_html(req.headers()) {
        return Ok(HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(UserList {
                users: page.users.iter().map(UserJson::from).collect(),
                next,
            }));
    }
    let query = &request.query;
    let current = query.after.as_ref().map(Cursor::encode);
    let (previous, next_link) = {
        let trail = &request.trail;
        let previous = current.as_ref().map(|_| match trail.split_last() {
            Some((last, before)) => request.link(Some(last), before),
            None => request.link(None, &[]),
        });
        let next_link = next.as_deref().map(|next| {
            let mut longer = trail.clone();
            longer.extend(current.clone());
            let skip = longer.len().saturating_sub(MAX_TRAIL);
            request.link(Some(next), &longer[skip..])
        });
        (previous, next_link)
    };
    let body = render(&UsersPage {
        title: "Users",
        viewer: operator.viewer(),
        q: query.prefix.as_deref().unwrap_or(""),
        status: query.status.map_or("", StatusFilter::as_str),
        role: query.role.map_or("", Role::as_str),
        limit: (query.limit != DEFAULT_PAGE).then(|| query.limit.to_string()),
        statuses: StatusFilter::ALL.map(StatusFilter::as_str),
        users: &page.users,
        first: current.as_ref().map(|_| request.link(None, &[])),
        previous,
        next: next_link,
    });
    Ok(respond(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_error(query: &str) -> FieldErrors {
        match ListRequest::parse(query) {
            Err(Error::Invalid(fields)) => fields,
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn each_bad_parameter_is_named() {
        assert!(field_error("limit=0").contains_key("limit"));
        assert!(field_error("limit=101").contains_key("limit"));
        assert!(field_error("limit=x").contains_key("limit"));
        assert!(field_error("status=gone").contains_key("status"));
        assert!(field_error("role=root").contains_key("role"));
        assert!(field_error("after=%21%21").contains_key("after"));
        assert!(field_error("page=2").contains_key("page"));
        assert!(field_error("q=a&q=b").contains_key("q"));
        assert!(field_error(&format!("q={}", "a".repeat(255))).contains_key("q"));
        assert!(field_error("q=a%00b").contains_key("q"));
        assert!(field_error("q=a%0Ab").contains_key("q"));
    }

    #[test]
    fn empty_values_are_no_filter_and_q_is_trimmed() {
        let request = ListRequest::parse("q=+Ada+&status=&role=&after=&limit=").unwrap();
        assert_eq!(request.query.prefix.as_deref(), Some("Ada"));
        assert_eq!(request.query.status, None);
        assert_eq!(request.query.role, None);
        assert_eq!(request.query.limit, DEFAULT_PAGE);
        assert_eq!(request.link(None, &[]), "/admin/users?q=Ada");
    }
}
