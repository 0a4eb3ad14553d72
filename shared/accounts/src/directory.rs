//! The admin console's account directory: [`UserQuery`] (a prefix of an address or a
//! username, a status, a role, a cursor) answered by one [`UserPage`], each page one
//! index range scan whatever the number of accounts.
//!
//! - Without a prefix: newest first, `ORDER BY created_at DESC, id DESC`, keyset on
//!   that pair (index `users_created_idx`); a rare filter (admins, disabled, closed,
//!   unverified) has a partial index of its own, whose terms the query writes as SQL
//!   text: SQLite uses a partial index only when the WHERE holds them literally.
//! - With a prefix, two phases: the accounts whose lower-cased address starts with it,
//!   in that order (the unique index on `lower(email)`), then those whose lower-cased
//!   username does and whose address does not, in username order. Each is a range
//!   `key >= prefix AND key < upper` (the prefix with its last character raised), in
//!   code-point order, which makes the range exactly the keys with that prefix:
//!   SQLite cannot use an expression index for a LIKE with a bound pattern, and
//!   PostgreSQL's planner, counting a LIKE's prefix a second time beside the range,
//!   expects so few rows that it sorts them all rather than walk the index in order.
//!   PostgreSQL compares and orders `COLLATE "C"` (indexes of migration 9): under a
//!   language's collation a range is not a prefix. The prefix is checked exactly on
//!   the rows read, too.
//!
//! New accounts never move a cursor: rows that existed when paging began are each
//! seen once. The cursor says the phase and the last key ([`Cursor`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDateTime;
use flotilla_contracts::AuthEventKind;
use flotilla_db::diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use flotilla_db::diesel::{QueryableByName, RunQueryDsl};
use flotilla_db::{AnyConnection, diesel, portable_sql};

use crate::{Role, UnknownValue};

/// Longest prefix searched (an address is at most 254 characters).
pub const MAX_PREFIX: usize = 254;
/// Most accounts on one page.
pub const MAX_PAGE: i64 = 100;

/// An account's state, as the directory filters on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Address confirmed, not closed.
    Verified,
    /// Address not confirmed, not closed.
    Unverified,
    /// Disabled by an admin, not closed.
    Disabled,
    /// Closed by its owner or an admin (waiting for its purge).
    Closed,
}

impl StatusFilter {
    pub const ALL: [StatusFilter; 4] = [
        StatusFilter::Verified,
        StatusFilter::Unverified,
        StatusFilter::Disabled,
        StatusFilter::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Unverified => "unverified",
            Self::Disabled => "disabled",
            Self::Closed => "closed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The SQL terms, fixed text (the partial indexes of migration 9 hold the same).
    fn sql(self) -> &'static str {
        match self {
            Self::Verified => "u.email_verified_at IS NOT NULL AND u.deleted_at IS NULL",
            Self::Unverified => "u.email_verified_at IS NULL AND u.deleted_at IS NULL",
            Self::Disabled => "u.disabled_at IS NOT NULL AND u.deleted_at IS NULL",
            Self::Closed => "u.deleted_at IS NOT NULL",
        }
    }
}

/// The rare filter (under 1% of accounts) of a query, if it has one: the name its
/// partial indexes of migration 9 share (`users_<name>_<key>_idx`).
fn rare_filter(query: &UserQuery) -> Option<&'static str> {
    match (query.status, query.role) {
        (Some(StatusFilter::Closed), _) => Some("closed"),
        (Some(StatusFilter::Disabled), _) => Some("disabled"),
        (_, Some(Role::Admin)) => Some("admins"),
        _ => None,
    }
}

fn role_sql(role: Role) -> &'static str {
    match role {
        Role::User => "u.role = 'user'",
        Role::Admin => "u.role = 'admin'",
    }
}

/// Where a page starts: after the last row of the page before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Newest first (no prefix): the last row's creation time and id.
    Newest {
        created_at: NaiveDateTime,
        id: String,
    },
    /// A prefix's first phase: the last lower-cased address.
    Email(String),
    /// A prefix's second phase: the last lower-cased username.
    Username(String),
}

const CURSOR_TIME: &str = "%Y-%m-%dT%H:%M:%S%.f";

impl Cursor {
    /// Opaque text for a query string (URL-safe base64, no `=`).
    pub fn encode(&self) -> String {
        let plain = match self {
            Self::Newest { created_at, id } => {
                format!("n{} {id}", created_at.format(CURSOR_TIME))
            }
            Self::Email(key) => format!("e{key}"),
            Self::Username(key) => format!("u{key}"),
        };
        URL_SAFE_NO_PAD.encode(plain)
    }

    /// A cursor given back by a client; `None` when it is not one [`Cursor::encode`]
    /// makes.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > 4 * MAX_PREFIX {
            return None;
        }
        let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let mut chars = plain.chars();
        let phase = chars.next()?;
        let rest = chars.as_str();
        match phase {
            'n' => {
                let (at, id) = rest.split_once(' ')?;
                let created_at = NaiveDateTime::parse_from_str(at, CURSOR_TIME).ok()?;
                (!id.is_empty()).then(|| Self::Newest {
                    created_at,
                    id: id.to_owned(),
                })
            }
            'e' if !rest.is_empty() => Some(Self::Email(rest.to_owned())),
            'u' if !rest.is_empty() => Some(Self::Username(rest.to_owned())),
            _ => None,
        }
    }
}

/// A search of the directory, its fields already checked (the handler parses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// A prefix of the address or the username, trimmed, not empty, at most
    /// [`MAX_PREFIX`] characters; matched whatever its case.
    pub prefix: Option<String>,
    pub status: Option<StatusFilter>,
    pub role: Option<Role>,
    pub after: Option<Cursor>,
    /// 1 to [`MAX_PAGE`].
    pub limit: i64,
}

/// A cursor that does not belong to the query it came with (a prefix's cursor without
/// the prefix, say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor belongs to another search")]
pub struct ForeignCursor;

/// One account as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUser {
    pub id: String,
    pub email: String,
    pub username: Option<String>,
    pub role: Role,
    pub email_verified_at: Option<NaiveDateTime>,
    pub disabled_at: Option<NaiveDateTime>,
    pub deleted_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    /// The latest `login.success` of the account.
    pub last_sign_in_at: Option<NaiveDateTime>,
}

/// A page of the directory and where the next one starts (`None`: the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPage {
    pub users: Vec<ListedUser>,
    pub next: Option<Cursor>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Nullable<Text>)]
    username: Option<String>,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Nullable<Timestamp>)]
    email_verified_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    disabled_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    deleted_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Timestamp)]
    created_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Timestamp>)]
    last_sign_in_at: Option<NaiveDateTime>,
    /// The phase's sort key (lower-cased address or username; the id without prefix).
    #[diesel(sql_type = Nullable<Text>)]
    sort_key: Option<String>,
}

impl Row {
    fn listed(self) -> QueryResult<(ListedUser, Option<String>)> {
        let role = Role::parse(&self.role).map_err(UnknownValue::into_diesel)?;
        Ok((
            ListedUser {
                id: self.id,
                email: self.email,
                username: self.username,
                role,
                email_verified_at: self.email_verified_at,
                disabled_at: self.disabled_at,
                deleted_at: self.deleted_at,
                created_at: self.created_at,
                last_sign_in_at: self.last_sign_in_at,
            },
            self.sort_key,
        ))
    }
}

type QueryResult<T> = diesel::QueryResult<T>;

/// The columns every shape selects (`u` is `users`); the last sign-in is one probe of
/// `auth_events_user_kind_idx` per row.
fn columns() -> String {
    format!(
        "u.id, u.email, u.username, u.role, u.email_verified_at, u.disabled_at, \
         u.deleted_at, u.created_at, (SELECT e.created_at FROM auth_events e \
         WHERE e.user_id = u.id AND e.kind = '{}' ORDER BY e.created_at DESC LIMIT 1) \
         AS last_sign_in_at",
        AuthEventKind::LoginSuccess.as_str()
    )
}

/// The filters' fixed SQL terms, each preceded by ` AND `.
fn filters(query: &UserQuery) -> String {
    let mut sql = String::new();
    for term in [
        query.status.map(StatusFilter::sql),
        query.role.map(role_sql),
    ]
    .into_iter()
    .flatten()
    {
        sql.push_str(" AND ");
        sql.push_str(term);
    }
    sql
}

impl UserQuery {
    /// The page this query asks for.
    pub fn run(&self, conn: &mut AnyConnection) -> QueryResult<Result<UserPage, ForeignCursor>> {
        match (&self.prefix, &self.after) {
            (None, None | Some(Cursor::Newest { .. })) => Ok(Ok(self.newest(conn)?)),
            (Some(prefix), None | Some(Cursor::Email(_) | Cursor::Username(_))) => {
                Ok(Ok(self.by_prefix(conn, prefix)?))
            }
            _ => Ok(Err(ForeignCursor)),
        }
    }

    fn newest(&self, conn: &mut AnyConnection) -> QueryResult<UserPage> {
        let after = match &self.after {
            Some(Cursor::Newest { created_at, id }) => Some((*created_at, id.as_str())),
            _ => None,
        };
        let sql = format!(
            "SELECT {}, NULL AS sort_key FROM users u WHERE 1 = 1{}{} \
             ORDER BY u.created_at DESC, u.id DESC LIMIT ?",
            columns(),
            filters(self),
            if after.is_some() {
                " AND (u.created_at, u.id) < (?, ?)"
            } else {
                ""
            },
        );
        let sql = portable_sql(conn, &sql);
        let rows: Vec<Row> = match after {
            Some((at, id)) => diesel::sql_query(sql)
                .bind::<Timestamp, _>(at)
                .bind::<Text, _>(id)
                .bind::<BigInt, _>(self.limit + 1)
                .load(conn)?,
            None => diesel::sql_query(sql)
                .bind::<BigInt, _>(self.limit + 1)
                .load(conn)?,
        };
        let mut users = rows
            .into_iter()
            .map(|row| row.listed().map(|(user, _)| user))
            .collect::<QueryResult<Vec<_>>>()?;
        let next = if users.len() as i64 > self.limit {
            users.truncate(self.limit as usize);
            users.last().map(|last| Cursor::Newest {
                created_at: last.created_at,
                id: last.id.clone(),
            })
        } else {
            None
        };
        Ok(UserPage { users, next })
    }

    fn by_prefix(&self, conn: &mut AnyConnection, prefix: &str) -> QueryResult<UserPage> {
        // The database's own lower(), as the indexes hold it (SQLite's lowers ASCII
        // only; PostgreSQL's follows the database's character classes).
        let lowered = diesel::sql_query(portable_sql(conn, "SELECT lower(?) AS v"))
            .bind::<Text, _>(prefix)
            .get_result::<Lowered>(conn)?
            .v;
        let Some(range) = PrefixRange::new(&lowered) else {
            return Ok(UserPage {
                users: Vec::new(),
                next: None,
            });
        };
        let mut users = Vec::new();
        if !matches!(self.after, Some(Cursor::Username(_))) {
            let after = match &self.after {
                Some(Cursor::Email(key)) => key.as_str(),
                _ => "",
            };
            let first = self.phase(conn, Phase::Email, &range, after, self.limit)?;
            let full = first.users.len() as i64 == self.limit;
            users = first.users;
            match first.last {
                // More addresses follow.
                Some(last) if full && first.more => {
                    return Ok(UserPage {
                        users,
                        next: Some(Cursor::Email(last)),
                    });
                }
                // The page is full with the last address: a next page only if
                // usernames follow (it starts the second phase at once).
                Some(last) if full => {
                    let second = self.phase(conn, Phase::Username, &range, "", 1)?;
                    let next = (!second.users.is_empty()).then_some(Cursor::Email(last));
                    return Ok(UserPage { users, next });
                }
                _ => {}
            }
        }
        let after = match &self.after {
            Some(Cursor::Username(key)) => key.as_str(),
            _ => "",
        };
        let room = self.limit - users.len() as i64;
        let second = self.phase(conn, Phase::Username, &range, after, room)?;
        users.extend(second.users);
        let next = second.last.filter(|_| second.more).map(Cursor::Username);
        Ok(UserPage { users, next })
    }

    /// One phase's rows after the key `after` (`""`: from the start), at most
    /// `limit`; with the last row's key and whether more follow.
    fn phase(
        &self,
        conn: &mut AnyConnection,
        phase: Phase,
        range: &PrefixRange,
        after: &str,
        limit: i64,
    ) -> QueryResult<PhaseRows> {
        let postgres = matches!(conn, AnyConnection::Postgresql(_));
        let key = |column: &str| {
            if postgres {
                format!("lower(u.{column}) COLLATE \"C\"")
            } else {
                format!("lower(u.{column})")
            }
        };
        let k = key(phase.key());
        // Not already listed in the first phase: the address outside the range.
        let not_email = match phase {
            Phase::Email => String::new(),
            Phase::Username => {
                let e = key("email");
                format!(" AND NOT ({e} >= ? AND {e} < ?)")
            }
        };
        // One lower bound (SQLite would take either of two for the range and filter
        // on the other): the cursor's key when it is past the prefix itself.
        let (from, start) = if after > range.lower.as_str() {
            (">", after)
        } else {
            (">=", range.lower.as_str())
        };
        // A prefix with a rare filter: SQLite, without statistics, would walk the
        // prefix's range (a tenth of all accounts for one letter) to find the few
        // admins in it. The rare filter's own partial index of this phase's key holds
        // only its accounts, in prefix order: a range of it is the page, unsorted.
        // PostgreSQL's planner weighs the indexes itself.
        let indexed_by = match (postgres, rare_filter(self)) {
            (false, Some(name)) => format!(" INDEXED BY users_{name}_{}_idx", phase.key()),
            _ => String::new(),
        };
        let sql = format!(
            "SELECT {}, {k} AS sort_key FROM users u{indexed_by} WHERE {k} {from} ? AND {k} < ?\
             {not_email}{} ORDER BY {k} LIMIT ?",
            columns(),
            filters(self),
        );
        let sql = portable_sql(conn, &sql);
        let query = diesel::sql_query(sql)
            .bind::<Text, _>(start)
            .bind::<Text, _>(&range.upper);
        let rows: Vec<Row> = match phase {
            Phase::Email => query.bind::<BigInt, _>(limit + 1).load(conn)?,
            Phase::Username => query
                .bind::<Text, _>(&range.lower)
                .bind::<Text, _>(&range.upper)
                .bind::<BigInt, _>(limit + 1)
                .load(conn)?,
        };
        let mut listed = rows
            .into_iter()
            .map(Row::listed)
            .collect::<QueryResult<Vec<_>>>()?;
        let more = listed.len() as i64 > limit;
        listed.truncate(limit as usize);
        let last = listed.last().and_then(|(_, key)| key.clone());
        // The exact prefix check, beside the range that makes it one index scan.
        let users = listed
            .into_iter()
            .filter(|(_, key)| key.as_deref().is_some_and(|k| k.starts_with(&range.lower)))
            .map(|(user, _)| user)
            .collect();
        Ok(PhaseRows { users, last, more })
    }
}

/// A phase's page: its rows, the last one's key, whether more follow.
struct PhaseRows {
    users: Vec<ListedUser>,
    last: Option<String>,
    more: bool,
}

#[derive(QueryableByName)]
struct Lowered {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Email,
    Username,
}

impl Phase {
    /// The column whose prefix the phase reads.
    fn key(self) -> &'static str {
        match self {
            Phase::Email => "email",
            Phase::Username => "username",
        }
    }
}

/// The keys that start with `lower`: `lower <= key < upper`, in code-point order
/// (UTF-8 byte order is the same). `upper` is `lower` with its last character raised
/// by one (dropped first when it is the highest, U+10FFFF).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrefixRange {
    lower: String,
    upper: String,
}

impl PrefixRange {
    /// `None` for a prefix of U+10FFFF only, a noncharacter no address or username
    /// holds.
    fn new(lower: &str) -> Option<Self> {
        let mut chars: Vec<char> = lower.chars().collect();
        while let Some(last) = chars.pop() {
            let raised = match last as u32 {
                0xD7FF => Some('\u{E000}'),
                n => char::from_u32(n + 1),
            };
            if let Some(raised) = raised {
                chars.push(raised);
                return Some(Self {
                    lower: lower.to_owned(),
                    upper: chars.into_iter().collect(),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_raises_the_last_character() {
        let upper = |lower: &str| PrefixRange::new(lower).map(|r| r.upper);
        assert_eq!(upper("ab").as_deref(), Some("ac"));
        assert_eq!(upper("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(upper("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(upper("\u{10FFFF}"), None);
    }

    #[test]
    fn cursors_travel_as_opaque_text() {
        let at = NaiveDateTime::parse_from_str("2026-01-02T03:04:05.123456", CURSOR_TIME).unwrap();
        for cursor in [
            Cursor::Newest {
                created_at: at,
                id: "0b6c-id".into(),
            },
            Cursor::Email("ada@example.org".into()),
            Cursor::Username("ada lovelace".into()),
        ] {
            let text = cursor.encode();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(Cursor::decode(&text), Some(cursor));
        }
        for bad in [
            "",
            "!!",
            "eA",
            &URL_SAFE_NO_PAD.encode("x1"),
            &URL_SAFE_NO_PAD.encode("nnot-a-time id"),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
