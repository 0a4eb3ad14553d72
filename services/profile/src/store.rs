//! Profile's database work: each public function is one transaction (or one read).

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DbError};
use flotilla_accounts::email_link::{self, Issued, Link};
use flotilla_accounts::{
    EmailAddress, LinkPurpose, ProfileChanges, RevokeReason, Session, User, Username,
};
// The handlers and the account page call the user row an account.
use flotilla_accounts::{Factors, PasskeyRow, RecoveryCodes, TotpFactor};
pub use flotilla_accounts::{Origin, User as Account};
use flotilla_auth::SecondFactors;
use flotilla_contracts::{AuthEventKind, FactorChange, Mail, Message};
use flotilla_db::schema::{auth_events, email_tokens, sessions as sessions_t};
use flotilla_db::{AnyConnection, diesel, write_transaction};
use flotilla_jobs::NewJob;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ProfileConfig;
use crate::domain::ProfilePatch;

const CHANGE_EMAIL: LinkPurpose = LinkPurpose::ChangeEmail;

fn iso(at: NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `GET /profile/me`: the account as its owner sees it, never the password hash.
#[derive(Serialize, ToSchema)]
pub struct Me<'a> {
    #[schema(example = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")]
    id: &'a str,
    #[schema(example = "ada@example.org")]
    email: &'a str,
    /// Whether the address is confirmed.
    email_verified: bool,
    #[schema(required = true, example = "ada")]
    username: Option<&'a str>,
    #[schema(required = true, example = "Ada Lovelace")]
    display_name: Option<&'a str>,
    #[schema(required = true)]
    bio: Option<&'a str>,
    /// Whether the static site publishes the profile (once it has a username).
    public: bool,
    /// `user` or `admin`.
    #[schema(example = "user")]
    role: &'a str,
    /// RFC 3339, to the second.
    #[schema(example = "2026-12-03T04:27:08Z")]
    created_at: String,
}

impl<'a> Me<'a> {
    pub fn of(account: &'a User) -> Self {
        Me {
            id: &account.id,
            email: &account.email,
            email_verified: account.is_verified(),
            username: account.username.as_deref(),
            display_name: account.display_name.as_deref(),
            bio: account.bio.as_deref(),
            public: account.public,
            role: account.role.as_str(),
            created_at: iso(account.created_at),
        }
    }
}

/// A live (not deleted, not disabled) account: [`User::find_active`], the read of
/// every authenticated page and `GET /profile/me`.
pub fn account(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<User>> {
    User::find_active(conn, user_id)
}

/// The address of an account, whatever its state (`NotFound` when there is none).
fn email_of(conn: &mut AnyConnection, user_id: &str) -> QueryResult<String> {
    Ok(User::find(conn, user_id)?.ok_or(DbError::NotFound)?.email)
}

pub enum Updated {
    Done(Box<User>),
    UsernameTaken,
    Gone,
}

fn is_unique_violation(e: &DbError) -> bool {
    matches!(
        e,
        DbError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Applies a patch; a username someone else has (whatever its case) is refused,
/// also when two changes race (the unique index decides).
pub fn update_profile(
    conn: &mut AnyConnection,
    user_id: &str,
    patch: &ProfilePatch,
) -> QueryResult<Updated> {
    let outcome = write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        if let Some(Some(username)) = &patch.username {
            // An account whose address is not confirmed does not keep a username.
            User::release_unconfirmed_username(conn, username.as_ref(), Some(user_id), now)?;
            if User::username_taken(conn, username.as_ref(), Some(user_id))? {
                return Ok(Updated::UsernameTaken);
            }
        }
        let changes = ProfileChanges {
            username: patch
                .username
                .as_ref()
                .map(|name| name.as_ref().map(Username::as_ref)),
            display_name: patch.display_name.as_ref().map(|name| name.as_deref()),
            bio: patch.bio.as_ref().map(|bio| bio.as_deref()),
            public: patch.public,
        };
        let changed = User::update_profile(conn, user_id, &changes, now)?;
        if changed == 0 {
            return Ok(Updated::Gone);
        }
        Ok(account(conn, user_id)?.map_or(Updated::Gone, |a| Updated::Done(Box::new(a))))
    });
    match outcome {
        Err(e) if is_unique_violation(&e) => Ok(Updated::UsernameTaken),
        other => other,
    }
}

/// Sets a new password (already checked and hashed), ends every other session,
/// mails a notice. Returns the sessions ended.
pub fn change_password(
    conn: &mut AnyConnection,
    config: &ProfileConfig,
    user_id: &str,
    keep_session: &str,
    password_hash: &str,
    origin: &Origin,
) -> QueryResult<Vec<String>> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        // A sign-in opening a session now commits it before the sessions are picked
        // below; one starting later sees the new password (login's `open_session`).
        User::lock(conn, user_id)?;
        let email = email_of(conn, user_id)?;
        User::set_password(conn, user_id, password_hash, now)?;
        let revoked = flotilla_accounts::revoke_user_sessions(
            conn,
            user_id,
            Some(keep_session),
            RevokeReason::PasswordChange,
            now,
        )?;
        // Links asked for by whoever knew the old password go with it.
        email_link::void(conn, user_id, CHANGE_EMAIL, now)?;
        email_link::void(conn, user_id, LinkPurpose::PasswordReset, now)?;
        let key = format!("{user_id}:{}", now.and_utc().timestamp_micros());
        flotilla_accounts::queue_password_changed_notice(
            conn,
            &email,
            origin,
            &config.public_url,
            &key,
            now,
        )?;
        origin
            .event(
                AuthEventKind::PasswordChanged,
                Some(user_id),
                None,
                Some(keep_session),
            )
            .record(conn, now)?;
        Ok(revoked)
    })
}

// The typed answers below keep their fields in alphabetical order: the JSON is what
// `json!()` made before them (serde_json's map sorts its keys), byte for byte.

/// The account's second factors (`GET /profile/factors`, the export): which, and when;
/// never a secret, a code or a credential.
#[derive(Serialize, ToSchema)]
pub struct FactorsView {
    /// Oldest first.
    pub passkeys: Vec<PasskeyView>,
    /// Unused recovery codes.
    #[schema(example = 10)]
    pub recovery_codes_left: i64,
    /// The authenticator app, or `null`.
    #[schema(required = true)]
    pub totp: Option<FactorDatesView>,
}

/// When the authenticator app was set up and last used.
#[derive(Serialize, ToSchema)]
pub struct FactorDatesView {
    /// RFC 3339, to the second.
    #[schema(example = "2026-12-03T04:27:08Z")]
    pub created_at: String,
    /// `null` when never used.
    #[schema(required = true)]
    pub last_used_at: Option<String>,
}

/// One of the account's passkeys.
#[derive(Serialize, ToSchema)]
pub struct PasskeyView {
    #[schema(example = "2026-12-03T04:27:08Z")]
    pub created_at: String,
    /// What `DELETE /profile/passkeys/{id}` takes.
    pub id: String,
    /// `null` when never used.
    #[schema(required = true)]
    pub last_used_at: Option<String>,
    #[schema(example = "Laptop")]
    pub name: String,
}

impl FactorsView {
    pub fn of(factors: &Factors) -> Self {
        Self {
            passkeys: factors
                .passkeys
                .iter()
                .map(|p| PasskeyView {
                    created_at: iso(p.created_at),
                    id: p.id.clone(),
                    last_used_at: p.last_used_at.map(iso),
                    name: p.name.clone(),
                })
                .collect(),
            recovery_codes_left: factors.recovery_codes_left,
            totp: factors.totp.map(|t| FactorDatesView {
                created_at: iso(t.created_at),
                last_used_at: t.last_used_at.map(iso),
            }),
        }
    }
}

pub fn factors(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Factors> {
    Factors::of(conn, user_id)
}

/// A change of the second factors, recorded and mailed in its transaction.
fn factor_changed(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    account: &Account,
    (kind, change): (AuthEventKind, FactorChange),
    session_id: &str,
    origin: &Origin,
    now: NaiveDateTime,
) -> QueryResult<()> {
    origin
        .event(kind, Some(&account.id), None, Some(session_id))
        .record(conn, now)?;
    factors.notify(conn, account, change, None, origin, now)
}

/// A factor removed: the recovery codes go with the last one (they stand in for a
/// factor only), then it is recorded and mailed.
fn factor_removed(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    account: &Account,
    what: (AuthEventKind, FactorChange),
    session_id: &str,
    origin: &Origin,
    now: NaiveDateTime,
) -> QueryResult<()> {
    if !flotilla_accounts::has_second_factor(conn, &account.id)? {
        RecoveryCodes::replace(conn, &account.id, &[], now)?;
    }
    factor_changed(conn, factors, account, what, session_id, origin, now)
}

/// Sets up the account's authenticator app (its first code's `step` spent); as the
/// account's first second factor, with ten new recovery codes, returned to be shown
/// once (`Some(Some(codes))`); `None` when it has an app already, or was closed
/// meanwhile.
pub fn add_totp(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    account: &Account,
    sealed: &str,
    step: i64,
    session_id: &str,
    origin: &Origin,
) -> QueryResult<Option<Option<Vec<String>>>> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        User::lock(conn, &account.id)?;
        let first = !flotilla_accounts::has_second_factor(conn, &account.id)?;
        if User::find_active(conn, &account.id)?.is_none()
            || !TotpFactor::add(conn, &account.id, sealed, step, now)?
        {
            return Ok(None);
        }
        let codes = first_codes(conn, factors, &account.id, first, now)?;
        let what = (AuthEventKind::TotpAdded, FactorChange::TotpAdded);
        factor_changed(conn, factors, account, what, session_id, origin, now)?;
        Ok(Some(codes))
    })
}

/// The recovery codes that come with the account's first second factor (when it has
/// none left from before): made, to show once.
fn first_codes(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    user_id: &str,
    first: bool,
    now: NaiveDateTime,
) -> QueryResult<Option<Vec<String>>> {
    match first && RecoveryCodes::left(conn, user_id)? == 0 {
        true => factors.new_recovery_codes(conn, user_id, now).map(Some),
        false => Ok(None),
    }
}

/// Removes the authenticator app and the recovery codes; `false` when there was none.
pub fn remove_totp(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    account: &Account,
    session_id: &str,
    origin: &Origin,
) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        User::lock(conn, &account.id)?;
        if !TotpFactor::remove(conn, &account.id)? {
            return Ok(false);
        }
        let what = (AuthEventKind::TotpRemoved, FactorChange::TotpRemoved);
        factor_removed(conn, factors, account, what, session_id, origin, now)?;
        Ok(true)
    })
}

/// Adds a passkey, recorded and mailed; `None` when its credential is registered
/// already. The account's first second factor comes with ten recovery codes (to show
/// once): `Some(Some(codes))`.
pub fn add_passkey(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    account: &Account,
    row: &PasskeyRow,
    session_id: &str,
    origin: &Origin,
) -> QueryResult<Option<Option<Vec<String>>>> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        User::lock(conn, &account.id)?;
        let first = !flotilla_accounts::has_second_factor(conn, &account.id)?;
        if User::find_active(conn, &account.id)?.is_none() || !PasskeyRow::add(conn, row)? {
            return Ok(None);
        }
        let codes = first_codes(conn, factors, &account.id, first, now)?;
        let what = (AuthEventKind::PasskeyAdded, FactorChange::PasskeyAdded);
        factor_changed(conn, factors, account, what, session_id, origin, now)?;
        Ok(Some(codes))
    })
}

/// Removes one of the account's passkeys, recorded and mailed; `false` when it was not
/// there. The last second factor gone, the recovery codes go too.
pub fn remove_passkey(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    account: &Account,
    id: &str,
    session_id: &str,
    origin: &Origin,
) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        User::lock(conn, &account.id)?;
        if PasskeyRow::remove(conn, &account.id, id)?.is_none() {
            return Ok(false);
        }
        let what = (AuthEventKind::PasskeyRemoved, FactorChange::PasskeyRemoved);
        factor_removed(conn, factors, account, what, session_id, origin, now)?;
        Ok(true)
    })
}

/// Ten new recovery codes in place of the old ones; `None` without a second factor
/// (the codes stand in for one only).
pub fn regenerate_codes(
    conn: &mut AnyConnection,
    factors: &SecondFactors,
    account: &Account,
    session_id: &str,
    origin: &Origin,
) -> QueryResult<Option<Vec<String>>> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        User::lock(conn, &account.id)?;
        if !flotilla_accounts::has_second_factor(conn, &account.id)? {
            return Ok(None);
        }
        let codes = factors.new_recovery_codes(conn, &account.id, now)?;
        let what = (
            AuthEventKind::RecoveryCodesRegenerated,
            FactorChange::RecoveryCodesRegenerated,
        );
        factor_changed(conn, factors, account, what, session_id, origin, now)?;
        Ok(Some(codes))
    })
}

/// A change of address is asked for at most once a minute.
const EMAIL_CHANGE_EVERY: TimeDelta = TimeDelta::minutes(1);

pub enum Requested {
    Sent,
    /// Asked less than a minute ago: wait this many seconds.
    TooSoon(i64),
}

/// The seconds until the account may ask for a change of address again, if it asked
/// less than [`EMAIL_CHANGE_EVERY`] ago.
fn next_change_in(
    conn: &mut AnyConnection,
    user_id: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    let last: Option<NaiveDateTime> = auth_events::table
        .filter(auth_events::user_id.eq(user_id))
        .filter(auth_events::kind.eq(AuthEventKind::EmailChangeRequested.as_str()))
        .filter(auth_events::created_at.gt(now - EMAIL_CHANGE_EVERY))
        .select(diesel::dsl::max(auth_events::created_at))
        .get_result(conn)?;
    Ok(last.map(|last| {
        let left = (last + EMAIL_CHANGE_EVERY - now).num_milliseconds();
        (left.max(1) + 999) / 1000
    }))
}

/// The seconds until the account may ask for a change of address again, if it asked
/// less than a minute ago: read before the password is checked, so that a flood of
/// requests costs no hash. [`request_email_change`] checks again in its transaction
/// (two requests racing).
pub fn email_change_wait(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<i64>> {
    next_change_in(conn, user_id, flotilla_jobs::now())
}

/// Starts a change of address. The address changes only when the link sent to the
/// new one is used; the old one is told. A new request voids the links of earlier
/// ones (a mistyped address stops mattering). If the new address is another
/// account's, the asker's account records the same pending link, whose token is
/// mailed nowhere (it could not be used anyway: confirming a taken address is
/// refused), and that account's owner is told instead: the answer, the notice to the
/// old address, the activity and the export are the same either way, and so is the
/// work done (a link issued, a mail queued).
pub fn request_email_change(
    conn: &mut AnyConnection,
    config: &ProfileConfig,
    user_id: &str,
    new_email: &EmailAddress,
    origin: &Origin,
) -> QueryResult<Requested> {
    write_transaction(conn, |conn| {
        // Two requests at once queue here, so that the second sees the first's event
        // (SQLite's BEGIN IMMEDIATE already queues writers).
        if let AnyConnection::Postgresql(pg) = conn {
            diesel::sql_query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind::<diesel::sql_types::Text, _>(user_id)
                .execute(pg)?;
        }
        let now = flotilla_jobs::now();
        if let Some(secs) = next_change_in(conn, user_id, now)? {
            return Ok(Requested::TooSoon(secs));
        }
        email_link::void(conn, user_id, CHANGE_EMAIL, now)?;
        let old = email_of(conn, user_id)?;
        let owner = User::by_email(conn, &new_email.as_ref().to_lowercase())?;
        let ttl = config.email_change_ttl;
        let Issued { token, hash } =
            email_link::issue(conn, user_id, CHANGE_EMAIL, new_email.as_ref(), ttl, now)?;
        match owner {
            Some(other) => tell_owner(conn, config, &other, now)?,
            None => send_change_link(conn, config, new_email, &token, &hash, ttl)?,
        }
        let mail = Mail {
            to: old.clone(),
            message: Message::EmailChangeNotice {
                new_email: mask(new_email.as_ref()),
                client_addr: Some(origin.client_addr.clone()),
                forgot_link: format!("{}/login/forgot", config.public_url),
            },
        };
        let job = NewJob::new(
            mail,
            format!(
                "email_change_notice:{user_id}:{}",
                // Milliseconds: requests within one second (where the once-a-minute
                // limit is lifted, as in the tests) each get their notice.
                now.and_utc().timestamp_millis()
            ),
        );
        flotilla_jobs::enqueue(conn, &job)?;
        origin
            .event(
                AuthEventKind::EmailChangeRequested,
                Some(user_id),
                None,
                None,
            )
            .record(conn, now)?;
        Ok(Requested::Sent)
    })
}

/// Tells the owner of an address someone asked to move another account to (at most
/// once per ten minutes).
fn tell_owner(
    conn: &mut AnyConnection,
    config: &ProfileConfig,
    owner: &User,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let slot = now.and_utc().timestamp() / 600;
    let mail = Mail {
        to: owner.email.clone(),
        message: Message::EmailChangeTaken {
            forgot_link: format!("{}/login/forgot", config.public_url),
        },
    };
    let key = format!("email_change_taken:{}:{slot}", owner.id);
    flotilla_jobs::enqueue(conn, &NewJob::new(mail, key))?;
    Ok(())
}

/// Mails the link that confirms a new address there.
fn send_change_link(
    conn: &mut AnyConnection,
    config: &ProfileConfig,
    new_email: &EmailAddress,
    token: &str,
    hash: &str,
    ttl: TimeDelta,
) -> QueryResult<()> {
    let mail = Mail {
        to: new_email.as_ref().to_owned(),
        message: Message::EmailChangeVerify {
            link: format!("{}/profile/email/confirm?token={token}", config.public_url),
            valid_hours: ttl.num_hours(),
        },
    };
    let key = format!("email_change_verify:{}", &hash[..32]);
    flotilla_jobs::enqueue(conn, &NewJob::new(mail, key))?;
    Ok(())
}

/// `ada.lovelace@example.org` → `a***e@example.org`: enough for the owner to
/// recognise, not enough to hand the new address to whoever reads the old mailbox.
fn mask(email: &str) -> String {
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
    let chars: Vec<char> = local.chars().collect();
    let shown = match chars.as_slice() {
        [] => String::new(),
        [one] => format!("{one}***"),
        [first, .., last] => format!("{first}***{last}"),
    };
    format!("{shown}@{domain}")
}

pub enum Confirmed {
    Done {
        user_id: String,
    },
    Invalid,
    Expired,
    /// Someone else took the address since the link was sent.
    Taken,
}

/// What a change-of-address token is worth, without using it (opening the link).
pub fn check_email_change_link(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Link> {
    email_link::check(conn, token_hash, CHANGE_EMAIL, flotilla_jobs::now())
}

pub fn confirm_email_change(
    conn: &mut AnyConnection,
    token_hash: &str,
    origin: &Origin,
) -> QueryResult<Confirmed> {
    let outcome = write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let (user_id, email) = match email_link::check(conn, token_hash, CHANGE_EMAIL, now)? {
            Link::Valid { user_id, email } => (user_id, email),
            Link::Invalid => return Ok(Confirmed::Invalid),
            Link::Expired => return Ok(Confirmed::Expired),
        };
        let holder = User::by_email_with_closed(conn, &email.to_lowercase())?;
        if holder.is_some_and(|other| other.id != user_id) {
            return Ok(Confirmed::Taken);
        }
        // Spent first: a link another request used meanwhile changes nothing.
        if !email_link::spend(conn, token_hash, now)? {
            return Ok(Confirmed::Invalid);
        }
        if User::change_email(conn, &user_id, &email, now)? == 0 {
            return Ok(Confirmed::Invalid);
        }
        // Links sent to the old address (a reset, other changes) stop working.
        email_link::void(conn, &user_id, CHANGE_EMAIL, now)?;
        email_link::void(conn, &user_id, LinkPurpose::PasswordReset, now)?;
        let event = origin.event(AuthEventKind::EmailChanged, Some(&user_id), None, None);
        event.record(conn, now)?;
        Ok(Confirmed::Done { user_id })
    });
    match outcome {
        Err(e) if is_unique_violation(&e) => Ok(Confirmed::Taken),
        other => other,
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct SessionRow {
    pub id: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: NaiveDateTime,
    pub client_addr: String,
    pub user_agent: String,
}

/// The user's live sessions, most recently used first.
pub fn live_sessions(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<SessionRow>> {
    let now = flotilla_jobs::now();
    sessions_t::table
        .filter(sessions_t::user_id.eq(user_id))
        .filter(sessions_t::revoked_at.is_null())
        .filter(sessions_t::idle_expires_at.gt(now))
        .filter(sessions_t::expires_at.gt(now))
        .order(sessions_t::last_used_at.desc())
        .select((
            sessions_t::id,
            sessions_t::created_at,
            sessions_t::last_used_at,
            sessions_t::client_addr,
            sessions_t::user_agent,
        ))
        .load(conn)
}

/// Ends one of the user's own sessions; false when it is not theirs or already ended.
pub fn revoke_own_session(
    conn: &mut AnyConnection,
    user_id: &str,
    session_id: &str,
    origin: &Origin,
) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let owned: i64 = sessions_t::table
            .filter(sessions_t::id.eq(session_id))
            .filter(sessions_t::user_id.eq(user_id))
            .count()
            .get_result(conn)?;
        if owned == 0
            || !flotilla_accounts::revoke_session(conn, session_id, RevokeReason::Revoked, now)?
        {
            return Ok(false);
        }
        origin
            .event(
                AuthEventKind::SessionRevoked,
                Some(user_id),
                None,
                Some(session_id),
            )
            .record(conn, now)?;
        Ok(true)
    })
}

pub fn revoke_other_sessions(
    conn: &mut AnyConnection,
    user_id: &str,
    keep: &str,
    origin: &Origin,
) -> QueryResult<Vec<String>> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let ended = flotilla_accounts::revoke_user_sessions(
            conn,
            user_id,
            Some(keep),
            RevokeReason::Revoked,
            now,
        )?;
        origin
            .event(
                AuthEventKind::SessionRevokedOthers,
                Some(user_id),
                None,
                Some(keep),
            )
            .record(conn, now)?;
        Ok(ended)
    })
}

#[derive(Debug, Clone, Queryable)]
pub struct EventRow {
    pub kind: String,
    pub created_at: NaiveDateTime,
    pub client_addr: String,
    pub user_agent: String,
}

/// The account's recent auth events, newest first.
pub fn activity(conn: &mut AnyConnection, user_id: &str, limit: i64) -> QueryResult<Vec<EventRow>> {
    auth_events::table
        .filter(auth_events::user_id.eq(user_id))
        .order((auth_events::created_at.desc(), auth_events::id.desc()))
        .limit(limit)
        .select((
            auth_events::kind,
            auth_events::created_at,
            auth_events::client_addr,
            auth_events::user_agent,
        ))
        .load(conn)
}

/// `GET /profile/export`: everything stored about the account, without secrets.
#[derive(Serialize, ToSchema)]
pub struct Export {
    pub account: ExportAccount,
    /// Every auth event of the account, newest first.
    pub activity: Vec<ExportEvent>,
    /// The links mailed for the account (their tokens never), newest first.
    pub email_links: Vec<ExportLink>,
    /// RFC 3339, to the second.
    #[schema(example = "2026-12-03T04:27:08Z")]
    pub exported_at: String,
    /// Which factors, never their secrets or codes.
    pub second_factors: FactorsView,
    /// Every session, ended ones too, newest first (the form token stays out, as every
    /// secret).
    pub sessions: Vec<ExportSession>,
}

/// The account as `GET /profile/me` shows it, with two dates more.
#[derive(Serialize, ToSchema)]
pub struct ExportAccount {
    #[schema(required = true)]
    pub bio: Option<String>,
    pub created_at: String,
    #[schema(required = true)]
    pub display_name: Option<String>,
    pub email: String,
    pub email_verified: bool,
    /// `null` while the address is not confirmed.
    #[schema(required = true)]
    pub email_verified_at: Option<String>,
    pub id: String,
    pub public: bool,
    pub role: String,
    pub updated_at: String,
    #[schema(required = true)]
    pub username: Option<String>,
}

/// An auth event, with the browser's whole `User-Agent`.
#[derive(Serialize, ToSchema)]
pub struct ExportEvent {
    pub at: String,
    pub client_addr: String,
    #[schema(example = "login.succeeded")]
    pub kind: String,
    pub user_agent: String,
}

/// A link mailed for the account.
#[derive(Serialize, ToSchema)]
pub struct ExportLink {
    pub created_at: String,
    /// Where it went.
    pub email: String,
    pub expires_at: String,
    /// `verify_email`, `password_reset`, `change_email`.
    pub purpose: String,
    /// `null` when not used.
    #[schema(required = true)]
    pub used_at: Option<String>,
}

/// A session, live or ended.
#[derive(Serialize, ToSchema)]
pub struct ExportSession {
    pub client_addr: String,
    pub created_at: String,
    pub expires_at: String,
    pub id: String,
    pub last_used_at: String,
    #[schema(required = true)]
    pub revoked_at: Option<String>,
    /// Why it ended, when it was signed out.
    #[schema(required = true)]
    pub revoked_reason: Option<String>,
    pub user_agent: String,
}

/// Everything stored about the account, without secrets: no password hash, no token
/// or token hash, no form token.
pub fn export(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<Export>> {
    let Some(account) = account(conn, user_id)? else {
        return Ok(None);
    };
    let sessions: Vec<Session> = sessions_t::table
        .filter(sessions_t::user_id.eq(user_id))
        .order(sessions_t::created_at.desc())
        .load(conn)?;
    let events = auth_events::table
        .filter(auth_events::user_id.eq(user_id))
        .order(auth_events::created_at.desc())
        .select((
            auth_events::kind,
            auth_events::created_at,
            auth_events::client_addr,
            auth_events::user_agent,
        ))
        .load::<EventRow>(conn)?;
    let links: Vec<(
        String,
        String,
        NaiveDateTime,
        NaiveDateTime,
        Option<NaiveDateTime>,
    )> = email_tokens::table
        .filter(email_tokens::user_id.eq(user_id))
        .order(email_tokens::created_at.desc())
        .select((
            email_tokens::purpose,
            email_tokens::email,
            email_tokens::created_at,
            email_tokens::expires_at,
            email_tokens::used_at,
        ))
        .load(conn)?;
    let factors = Factors::of(conn, user_id)?;
    let me = Me::of(&account);
    let account = ExportAccount {
        bio: me.bio.map(str::to_owned),
        created_at: me.created_at.clone(),
        display_name: me.display_name.map(str::to_owned),
        email: me.email.to_owned(),
        email_verified: me.email_verified,
        email_verified_at: account.email_verified_at.map(iso),
        id: me.id.to_owned(),
        public: me.public,
        role: me.role.to_owned(),
        updated_at: iso(account.updated_at),
        username: me.username.map(str::to_owned),
    };
    Ok(Some(Export {
        account,
        activity: events
            .into_iter()
            .map(|e| ExportEvent {
                at: iso(e.created_at),
                client_addr: e.client_addr,
                kind: e.kind,
                user_agent: e.user_agent,
            })
            .collect(),
        email_links: links
            .into_iter()
            .map(|(purpose, email, created, expires, used)| ExportLink {
                created_at: iso(created),
                email,
                expires_at: iso(expires),
                purpose,
                used_at: used.map(iso),
            })
            .collect(),
        exported_at: iso(flotilla_jobs::now()),
        second_factors: FactorsView::of(&factors),
        sessions: sessions
            .into_iter()
            .map(|s| ExportSession {
                client_addr: s.client_addr,
                created_at: iso(s.created_at),
                expires_at: iso(s.expires_at),
                id: s.id,
                last_used_at: iso(s.last_used_at),
                revoked_at: s.revoked_at.map(iso),
                revoked_reason: s.revoked_reason,
                user_agent: s.user_agent,
            })
            .collect(),
    }))
}

/// Closes the account at once ([`flotilla_accounts::close_account`], which an admin's
/// deletion shares): every session ended, the row emptied, the confirmation mailed and
/// the purge queued after `hold`. Returns the sessions ended.
pub fn close_account(
    conn: &mut AnyConnection,
    user_id: &str,
    origin: &Origin,
    hold: TimeDelta,
) -> QueryResult<Vec<String>> {
    write_transaction(conn, |conn| {
        flotilla_accounts::close_account(conn, user_id, origin, hold, flotilla_jobs::now())
    })
}

/// A confirmation link lasts this long unless configured.
pub fn default_email_change_ttl() -> TimeDelta {
    TimeDelta::hours(24)
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_masked_for_the_old_mailbox() {
        assert_eq!(super::mask("ada.lovelace@example.org"), "a***e@example.org");
        assert_eq!(super::mask("a@example.org"), "a***@example.org");
    }
}
