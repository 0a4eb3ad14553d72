//! The `users` row and the queries more than one crate runs on it.

use chrono::NaiveDateTime;
use flotilla_contracts::{Mail, Message};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::users;
use flotilla_db::{AnyConnection, diesel, lower, lower_nullable};

use crate::{Origin, REDACTED};

/// What an account may do (the `role` column, stored as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// The stored name (also the `role` claim of access tokens).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// A stored name; an unknown one is an error (a newer release's role, or a hand
    /// edit that the column's CHECK would refuse).
    pub fn parse(name: &str) -> Result<Self, UnknownValue> {
        match name {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownValue::new("role", other)),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored value this release cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {column} {value:?}")]
pub struct UnknownValue {
    pub column: &'static str,
    pub value: String,
}

impl UnknownValue {
    pub(crate) fn new(column: &'static str, value: impl ToString) -> Self {
        Self {
            column,
            value: value.to_string(),
        }
    }

    /// As diesel reports a row it cannot read.
    pub(crate) fn into_diesel(self) -> diesel::result::Error {
        diesel::result::Error::DeserializationError(Box::new(self))
    }
}

/// An Argon2id hash in PHC format. Its `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for checking a password against it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// An account (a `users` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    /// `None` once the account is closed.
    pub password_hash: Option<PasswordHash>,
    pub role: Role,
    /// Whether the owner made the profile public (`is_public`, 0 or 1).
    pub public: bool,
    pub email_verified_at: Option<NaiveDateTime>,
    pub disabled_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
}

/// The row as the database has it, in the table's column order.
#[derive(Queryable)]
struct UserRow {
    id: String,
    email: String,
    username: Option<String>,
    display_name: Option<String>,
    bio: Option<String>,
    password_hash: Option<String>,
    role: String,
    is_public: i32,
    email_verified_at: Option<NaiveDateTime>,
    disabled_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    deleted_at: Option<NaiveDateTime>,
}

/// `is_public` (an INTEGER on both backends) as a bool.
fn public_flag(stored: i32) -> Result<bool, UnknownValue> {
    match stored {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(UnknownValue::new("is_public", other)),
    }
}

impl TryFrom<UserRow> for User {
    type Error = UnknownValue;

    fn try_from(row: UserRow) -> Result<Self, UnknownValue> {
        Ok(User {
            role: Role::parse(&row.role)?,
            public: public_flag(row.is_public)?,
            id: row.id,
            email: row.email,
            username: row.username,
            display_name: row.display_name,
            bio: row.bio,
            password_hash: row.password_hash.map(PasswordHash),
            email_verified_at: row.email_verified_at,
            disabled_at: row.disabled_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        })
    }
}

/// The first of rows that hold at most one (a unique key): loaded without `.first()`,
/// whose bound `LIMIT ?` makes SQLite re-prepare the statement on every run.
fn one_of(rows: Vec<UserRow>) -> QueryResult<Option<User>> {
    rows.into_iter()
        .next()
        .map(|row| User::try_from(row).map_err(UnknownValue::into_diesel))
        .transpose()
}

impl User {
    pub fn is_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }

    /// Closed by its owner: the row waits for its purge, without personal fields.
    pub fn is_closed(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// An account by id, whatever its state.
    pub fn find(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<User>> {
        one_of(users::table.filter(users::id.eq(id)).load(conn)?)
    }

    /// An account that is neither closed nor disabled. On every authenticated page
    /// and `GET /profile/me`, so it runs on the concrete connection (`on_backend!`)
    /// and without `.first()`, whose bound `LIMIT ?` makes SQLite re-prepare the
    /// statement on every run (26 µs instead of 9); the id is unique anyway.
    pub fn find_active(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<User>> {
        let query = users::table
            .filter(users::id.eq(id))
            .filter(users::deleted_at.is_null())
            .filter(users::disabled_at.is_null());
        let rows: Vec<UserRow> = flotilla_db::on_backend!(conn, |c| query.load(c)?);
        one_of(rows)
    }

    /// The open (not closed) account of an address, whatever its case: `lookup` is
    /// the address lower-cased, matched against `lower(email)` (the unique index).
    /// Every sign-in runs it, so it runs on the concrete connection (`on_backend!`).
    pub fn by_email(conn: &mut AnyConnection, lookup: &str) -> QueryResult<Option<User>> {
        let query = users::table
            .filter(lower(users::email).eq(lookup))
            .filter(users::deleted_at.is_null());
        // Not `.first()`: its bound `LIMIT ?` makes SQLite re-prepare the statement on
        // every run; the address is unique anyway.
        let rows: Vec<UserRow> = flotilla_db::on_backend!(conn, |c| query.load(c)?);
        one_of(rows)
    }

    /// [`User::by_email`], closed accounts included (their address is
    /// `deleted-<id>@deleted.invalid` until the purge).
    pub fn by_email_with_closed(
        conn: &mut AnyConnection,
        lookup: &str,
    ) -> QueryResult<Option<User>> {
        one_of(
            users::table
                .filter(lower(users::email).eq(lookup))
                .load(conn)?,
        )
    }

    /// Holds the account's row until the transaction ends, so that two transactions
    /// that change what a session may be (a sign-in opening one; a password reset or
    /// change ending them) run one after the other: on PostgreSQL `SELECT … FOR
    /// UPDATE` (READ COMMITTED: the statements after it see what the other one
    /// committed). On SQLite nothing is needed: a write transaction begins with `BEGIN
    /// IMMEDIATE` ([`flotilla_db::write_transaction`]), which holds the database's
    /// write lock from its start, so such transactions are serialised already.
    /// Call it inside a write transaction, before reading what it decides on.
    pub fn lock(conn: &mut AnyConnection, id: &str) -> QueryResult<()> {
        if let AnyConnection::Postgresql(pg) = conn {
            users::table
                .filter(users::id.eq(id))
                .select(users::id)
                .for_update()
                .load::<String>(pg)?;
        }
        Ok(())
    }

    /// Whether an account other than `except` has this username (already lower-case,
    /// as [`crate::Username`] is), whatever its case.
    pub fn username_taken(
        conn: &mut AnyConnection,
        username: &str,
        except: Option<&str>,
    ) -> QueryResult<bool> {
        let mut query = users::table
            .filter(lower_nullable(users::username).eq(username))
            .into_boxed();
        if let Some(except) = except {
            query = query.filter(users::id.ne(except));
        }
        let taken: i64 = query.count().get_result(conn)?;
        Ok(taken > 0)
    }

    /// Takes a username (already lower-case) from the accounts other than `except`
    /// whose address is not confirmed yet: a username is reserved once its account's
    /// address is confirmed. Otherwise an unconfirmed account would keep it from a
    /// later signup, and that refusal (or its absence) would tell whether the address
    /// of the earlier signup had an account already. Returns the accounts changed.
    pub fn release_unconfirmed_username(
        conn: &mut AnyConnection,
        username: &str,
        except: Option<&str>,
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        let held = users::table
            .filter(lower_nullable(users::username).eq(username))
            .filter(users::email_verified_at.is_null())
            .filter(users::id.ne(except.unwrap_or("")));
        diesel::update(held)
            .set((
                users::username.eq(None::<String>),
                users::updated_at.eq(now),
            ))
            .execute(conn)
    }
}

/// The fields of a new account; the rest take their defaults (role `user`, private).
pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub username: Option<&'a str>,
    pub password_hash: &'a str,
}

impl NewUser<'_> {
    pub fn insert(&self, conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<()> {
        diesel::insert_into(users::table)
            .values((
                users::id.eq(self.id),
                users::email.eq(self.email),
                users::username.eq(self.username),
                users::password_hash.eq(self.password_hash),
                users::created_at.eq(now),
                users::updated_at.eq(now),
            ))
            .execute(conn)?;
        Ok(())
    }
}

/// A change of the fields the owner edits on the profile: each `Some` is set, a
/// `Some(None)` clears.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfileChanges<'a> {
    pub username: Option<Option<&'a str>>,
    pub display_name: Option<Option<&'a str>>,
    pub bio: Option<Option<&'a str>>,
    pub public: Option<bool>,
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct ProfileChangeset<'a> {
    username: Option<Option<&'a str>>,
    display_name: Option<Option<&'a str>>,
    bio: Option<Option<&'a str>>,
    is_public: Option<i32>,
    updated_at: NaiveDateTime,
}

/// The writes to a user row: each returns how many rows changed (0 or 1).
impl User {
    /// Applies a profile change to an open account.
    pub fn update_profile(
        conn: &mut AnyConnection,
        id: &str,
        changes: &ProfileChanges,
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        let changeset = ProfileChangeset {
            username: changes.username,
            display_name: changes.display_name,
            bio: changes.bio,
            is_public: changes.public.map(i32::from),
            updated_at: now,
        };
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(users::deleted_at.is_null()),
        )
        .set(changeset)
        .execute(conn)
    }

    /// A new password hash (already checked and hashed).
    pub fn set_password(
        conn: &mut AnyConnection,
        id: &str,
        password_hash: &str,
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        diesel::update(users::table.filter(users::id.eq(id)))
            .set((
                users::password_hash.eq(password_hash),
                users::updated_at.eq(now),
            ))
            .execute(conn)
    }

    /// Counts `email` as confirmed, if it is still the account's address (whatever
    /// its case) and was not confirmed before.
    pub fn mark_verified(
        conn: &mut AnyConnection,
        id: &str,
        email: &str,
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(lower(users::email).eq(email.to_lowercase()))
                .filter(users::email_verified_at.is_null()),
        )
        .set((users::email_verified_at.eq(now), users::updated_at.eq(now)))
        .execute(conn)
    }

    /// A new, confirmed address for an open account.
    pub fn change_email(
        conn: &mut AnyConnection,
        id: &str,
        email: &str,
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(users::deleted_at.is_null()),
        )
        .set((
            users::email.eq(email),
            users::email_verified_at.eq(now),
            users::updated_at.eq(now),
        ))
        .execute(conn)
    }

    /// Gives an account a role. Returns the rows changed (0: no such account, or it
    /// had the role already).
    pub fn set_role(
        conn: &mut AnyConnection,
        id: &str,
        role: Role,
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(users::role.ne(role.as_str())),
        )
        .set((users::role.eq(role.as_str()), users::updated_at.eq(now)))
        .execute(conn)
    }

    /// Whether `id` is the only admin who can still act: open, not disabled, role
    /// admin. Demoting, disabling or deleting such an account would leave the console
    /// without anyone. Call it inside a write transaction before the change: on
    /// PostgreSQL it holds every admin row until the transaction ends (`FOR UPDATE`),
    /// so two admins demoting each other at once run one after the other, and the
    /// second sees the first's change; on SQLite the write transaction's lock does it.
    pub fn is_last_admin(conn: &mut AnyConnection, id: &str) -> QueryResult<bool> {
        let active_admins = users::table
            .filter(users::role.eq(Role::Admin.as_str()))
            .filter(users::deleted_at.is_null())
            .filter(users::disabled_at.is_null());
        let ids: Vec<String> = match conn {
            AnyConnection::Postgresql(pg) => {
                active_admins.select(users::id).for_update().load(pg)?
            }
            AnyConnection::Sqlite(_) => active_admins.select(users::id).load(conn)?,
        };
        Ok(ids.iter().all(|admin| admin == id) && ids.iter().any(|admin| admin == id))
    }

    /// Disables an open account (sign-in refused, `find_active` no longer finds it).
    /// Returns the rows changed (0: no such open account, or it was disabled already).
    pub fn disable(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> QueryResult<usize> {
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(users::deleted_at.is_null())
                .filter(users::disabled_at.is_null()),
        )
        .set((users::disabled_at.eq(now), users::updated_at.eq(now)))
        .execute(conn)
    }

    /// Enables a disabled open account again. Returns the rows changed (0: no such
    /// open account, or it was not disabled).
    pub fn enable(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> QueryResult<usize> {
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(users::deleted_at.is_null())
                .filter(users::disabled_at.is_not_null()),
        )
        .set((
            users::disabled_at.eq(None::<NaiveDateTime>),
            users::updated_at.eq(now),
        ))
        .execute(conn)
    }

    /// Removes the password of an open account: no password signs in to it until a
    /// reset link sets a new one.
    pub fn clear_password(
        conn: &mut AnyConnection,
        id: &str,
        now: NaiveDateTime,
    ) -> QueryResult<usize> {
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(users::deleted_at.is_null()),
        )
        .set((
            users::password_hash.eq(None::<String>),
            users::updated_at.eq(now),
        ))
        .execute(conn)
    }

    /// Closes an account: the personal fields and the password go, the address is
    /// freed (replaced by `deleted-<id>@deleted.invalid`), and the row waits, disabled
    /// and marked deleted, for [`crate::purge_closed`].
    pub fn close(conn: &mut AnyConnection, id: &str, now: NaiveDateTime) -> QueryResult<usize> {
        diesel::update(users::table.filter(users::id.eq(id)))
            .set((
                users::email.eq(format!("deleted-{id}@deleted.invalid")),
                users::username.eq(None::<String>),
                users::display_name.eq(None::<String>),
                users::bio.eq(None::<String>),
                users::is_public.eq(i32::from(false)),
                users::password_hash.eq(None::<String>),
                users::disabled_at.eq(now),
                users::deleted_at.eq(now),
                users::updated_at.eq(now),
            ))
            .execute(conn)
    }
}

/// What the static site reads of an account: the fields a public page shows and the
/// state that decides whether it has one; never the address or the password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteAccount {
    pub id: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub public: bool,
    pub email_verified_at: Option<NaiveDateTime>,
    pub disabled_at: Option<NaiveDateTime>,
    pub deleted_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A public profile as the site's lists show it (no bio: only its own page shows that).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct ListedProfile {
    pub username: String,
    pub display_name: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable)]
struct SiteRow {
    id: String,
    username: Option<String>,
    display_name: Option<String>,
    bio: Option<String>,
    is_public: i32,
    email_verified_at: Option<NaiveDateTime>,
    disabled_at: Option<NaiveDateTime>,
    deleted_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// The accounts that have a public profile (see [`SiteAccount::has_public_profile`]),
/// less the reserved name `index`. The terms are those of `users_public_username_idx`,
/// `is_public = 1` written out, not bound: a planner proves a partial index applies
/// from literal terms (PostgreSQL's generic plans never see a bound value).
macro_rules! public_filter {
    () => {
        users::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "users.is_public = 1",
            ))
            .filter(users::username.is_not_null())
            .filter(users::username.ne("index"))
            .filter(users::email_verified_at.is_not_null())
            .filter(users::disabled_at.is_null())
            .filter(users::deleted_at.is_null())
    };
}

/// `columns` of the public profiles whose username sorts after `after` (an
/// `Option<&str>`), in username order, at most `limit`.
macro_rules! public_after {
    ($columns:expr, $after:expr, $limit:expr) => {{
        let mut query = public_filter!()
            .select($columns)
            .order(users::username.asc())
            .limit($limit)
            .into_boxed();
        if let Some(after) = $after {
            query = query.filter(users::username.gt(after.to_owned()));
        }
        query
    }};
}

/// The columns of a [`SiteRow`], in its order.
macro_rules! site_columns {
    () => {
        (
            users::id,
            users::username,
            users::display_name,
            users::bio,
            users::is_public,
            users::email_verified_at,
            users::disabled_at,
            users::deleted_at,
            users::created_at,
            users::updated_at,
        )
    };
}

fn site_accounts(rows: Vec<SiteRow>) -> QueryResult<Vec<SiteAccount>> {
    rows.into_iter()
        .map(|row| {
            Ok(SiteAccount {
                public: public_flag(row.is_public).map_err(UnknownValue::into_diesel)?,
                id: row.id,
                username: row.username,
                display_name: row.display_name,
                bio: row.bio,
                email_verified_at: row.email_verified_at,
                disabled_at: row.disabled_at,
                deleted_at: row.deleted_at,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
        })
        .collect()
}

/// The reads of the static site.
impl SiteAccount {
    /// Whether the site shows a page for it: public, confirmed, open, with a name
    /// (the filter of [`SiteAccount::public_profiles_after`]).
    pub fn has_public_profile(&self) -> bool {
        self.public
            && self.username.is_some()
            && self.email_verified_at.is_some()
            && self.disabled_at.is_none()
            && self.deleted_at.is_none()
    }

    /// The accounts with a public profile (see [`SiteAccount::has_public_profile`])
    /// whose username sorts after `after` (from the first when `None`), in the
    /// database's order of usernames, at most `limit`: the whole list read a chunk at a
    /// time, with memory for one chunk. (`index`, the directory's own page, reserved
    /// since, is left out, though an older account may hold it.)
    pub fn public_profiles_after(
        conn: &mut AnyConnection,
        after: Option<&str>,
        limit: i64,
    ) -> QueryResult<Vec<SiteAccount>> {
        site_accounts(public_after!(site_columns!(), after, limit).load(conn)?)
    }

    /// What the lists show of the same profiles as
    /// [`SiteAccount::public_profiles_after`], read from the index alone.
    pub fn listed_after(
        conn: &mut AnyConnection,
        after: Option<&str>,
        limit: i64,
    ) -> QueryResult<Vec<ListedProfile>> {
        let columns = (
            users::username.assume_not_null(),
            users::display_name,
            users::created_at,
            users::updated_at,
        );
        public_after!(columns, after, limit).load(conn)
    }

    /// How many accounts [`SiteAccount::public_profiles_after`] lists.
    pub fn count_public_profiles(conn: &mut AnyConnection) -> QueryResult<i64> {
        public_filter!().count().get_result(conn)
    }

    /// The accounts with these ids that still exist.
    pub fn with_ids(conn: &mut AnyConnection, ids: &[&str]) -> QueryResult<Vec<SiteAccount>> {
        let query = users::table.filter(users::id.eq_any(ids));
        site_accounts(query.select(site_columns!()).load(conn)?)
    }

    /// The accounts whose `updated_at` is at or after `since`.
    pub fn changed_since(
        conn: &mut AnyConnection,
        since: NaiveDateTime,
    ) -> QueryResult<Vec<SiteAccount>> {
        let query = users::table.filter(users::updated_at.ge(since));
        site_accounts(query.select(site_columns!()).load(conn)?)
    }

    /// The latest `updated_at` of any account.
    pub fn latest_change(conn: &mut AnyConnection) -> QueryResult<Option<NaiveDateTime>> {
        users::table
            .select(diesel::dsl::max(users::updated_at))
            .first(conn)
    }
}

/// Queues the "your password was changed" mail (after a reset or a change), with when,
/// from where, and the way to reset it if it was not the owner. `key` makes the job
/// unique (the reset link's hash, or the change's time).
pub fn queue_password_changed_notice(
    conn: &mut AnyConnection,
    to: &str,
    origin: &Origin,
    public_url: &str,
    key: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let mail = Mail {
        to: to.to_owned(),
        message: Message::PasswordChanged {
            when: now.and_utc(),
            client_addr: Some(origin.client_addr.clone()),
            reset_link: format!("{public_url}/login/forgot"),
        },
    };
    let job = flotilla_jobs::NewJob::new(mail, format!("password_changed:{key}"));
    flotilla_jobs::enqueue(conn, &job)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_and_an_unknown_one_is_an_error() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            assert_eq!(role.to_string(), role.as_str());
        }
        let err = Role::parse("superuser").unwrap_err();
        assert_eq!(err.to_string(), "unknown role \"superuser\"");
    }

    #[test]
    fn the_public_flag_is_0_or_1() {
        assert_eq!(public_flag(0), Ok(false));
        assert_eq!(public_flag(1), Ok(true));
        assert_eq!(public_flag(2).unwrap_err().column, "is_public");
    }

    #[test]
    fn a_password_hash_never_prints() {
        let hash = PasswordHash::new("$argon2id$v=19$secret".into());
        assert_eq!(format!("{hash:?}"), "[redacted]");
        assert_eq!(hash.expose(), "$argon2id$v=19$secret");
    }
}
