//! Login's database work: each public function is one transaction (or one read).

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use flotilla_accounts::email_link::{self, Link};
use flotilla_accounts::{LinkMail, LinkPurpose, RevokeReason, Session};
pub use flotilla_accounts::{Origin, User};
use flotilla_auth::device::DeviceEntry;
use flotilla_auth::throttle;
use flotilla_contracts::{AuthEventKind, Mail, Message};
use flotilla_db::schema::{
    auth_events, refresh_tokens, second_steps, sessions as sessions_t, users,
};
use flotilla_db::{AnyConnection, diesel, new_id, write_transaction};
use flotilla_jobs::NewJob;

use crate::LoginConfig;

const RESET: LinkPurpose = LinkPurpose::PasswordReset;

/// The open account of an address (`lookup`: lower-cased), as the sign-in checks it.
pub fn account_by_email(conn: &mut AnyConnection, lookup: &str) -> QueryResult<Option<User>> {
    User::by_email(conn, lookup)
}

/// Records one event on its own (failures, refusals).
pub fn record(
    conn: &mut AnyConnection,
    kind: AuthEventKind,
    user_id: Option<&str>,
    login_key: Option<&str>,
    origin: &Origin,
) -> QueryResult<()> {
    write_transaction(conn, |conn| {
        record_in(conn, kind, user_id, login_key, origin)
    })
}

/// [`record`] inside a transaction already begun.
fn record_in(
    conn: &mut AnyConnection,
    kind: AuthEventKind,
    user_id: Option<&str>,
    login_key: Option<&str>,
    origin: &Origin,
) -> QueryResult<()> {
    let user_id = still_there(conn, user_id)?;
    let event = origin.event(kind, user_id, login_key, None);
    event.record(conn, flotilla_jobs::now())
}

/// `user_id` if its account's row is still there, locked until the transaction ends
/// (PostgreSQL): a closed account is purged with its events, and an attempt at it
/// recorded meanwhile (its password checked before the close) keeps only its key.
fn still_there<'a>(
    conn: &mut AnyConnection,
    user_id: Option<&'a str>,
) -> QueryResult<Option<&'a str>> {
    let Some(id) = user_id else {
        return Ok(None);
    };
    User::lock(conn, id)?;
    Ok(User::find(conn, id)?.map(|_| id))
}

/// The password (and the second factor, when the account has one: `amr` says) confirmed
/// in a session (`/login/confirm`): its `authenticated_at` becomes `now` and its `amr`
/// the methods, and a `password.confirmed` event is recorded, in one transaction.
/// `false` when the session ended or its account closed or was disabled meanwhile.
pub fn confirm_password(
    conn: &mut AnyConnection,
    user_id: &str,
    session_id: &str,
    amr: &str,
    origin: &Origin,
) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        User::lock(conn, user_id)?;
        if User::find_active(conn, user_id)?.is_none() {
            return Ok(false);
        }
        let now = flotilla_jobs::now();
        let live = Session::find_live(conn, session_id, now)?
            .is_some_and(|session| session.user_id == user_id);
        if !live || !Session::confirm(conn, session_id, amr, now)? {
            return Ok(false);
        }
        let kind = AuthEventKind::PasswordConfirmed;
        let event = origin.event(kind, Some(user_id), None, Some(session_id));
        event.record(conn, now)?;
        Ok(true)
    })
}

/// How long an address must wait before its next sign-in attempt, if at all (see
/// [`flotilla_auth::throttle`]); `in_flight` other attempts at it are being checked.
pub fn throttle(
    conn: &mut AnyConnection,
    config: &LoginConfig,
    login_key: &str,
    in_flight: usize,
    now: NaiveDateTime,
) -> QueryResult<Option<i64>> {
    let attempts = throttle::Attempts {
        key: login_key,
        failure: AuthEventKind::LoginFailure,
        success: Some(AuthEventKind::LoginSuccess),
    };
    throttle::wait(conn, &config.throttle, attempts, in_flight, now)
}

/// How a session opened by a correct password was authenticated (RFC 8176).
pub const PASSWORD_AMR: &str = "pwd";

/// How long the second step of a sign-in may take.
pub const SECOND_STEP_TTL: TimeDelta = TimeDelta::minutes(5);
/// Wrong codes one second step takes before it ends (the password is asked again).
pub const SECOND_STEP_TRIES: i32 = 5;

/// What the password step of a sign-in left for its second step.
pub struct SecondStep {
    pub user_id: String,
    /// Where the password step counted (the device, or the address).
    pub login_key: String,
    password_check: String,
}

impl SecondStep {
    /// Whether `account` still has the password that began this step.
    pub fn same_password(&self, account: &User) -> bool {
        account
            .password_hash
            .as_ref()
            .is_some_and(|h| password_check(h.expose()) == self.password_check)
    }
}

/// What a second step keeps of the password hash: enough to see it changed.
fn password_check(hash: &str) -> String {
    flotilla_auth::token_hash(&format!("second-step:{hash}"))
}

/// Begins the second step of a sign-in whose password was right: its token (kept
/// hashed). Steps of the account that ended by time are cleared on the way.
pub fn begin_second_step(
    conn: &mut AnyConnection,
    account: &User,
    login_key: &str,
) -> QueryResult<String> {
    let now = flotilla_jobs::now();
    let token = flotilla_auth::new_token();
    let check = account
        .password_hash
        .as_ref()
        .map(|h| password_check(h.expose()))
        .unwrap_or_default();
    write_transaction(conn, |conn| {
        diesel::delete(
            second_steps::table
                .filter(second_steps::user_id.eq(&account.id))
                .filter(second_steps::expires_at.le(now)),
        )
        .execute(conn)?;
        diesel::insert_into(second_steps::table)
            .values((
                second_steps::token_hash.eq(flotilla_auth::token_hash(&token)),
                second_steps::user_id.eq(&account.id),
                second_steps::login_key.eq(login_key),
                second_steps::password_check.eq(check),
                second_steps::created_at.eq(now),
                second_steps::expires_at.eq(now + SECOND_STEP_TTL),
            ))
            .execute(conn)?;
        Ok(token)
    })
}

/// The live second step of a token's hash, if any (not ended by time or by wrong
/// codes, not used).
pub fn second_step(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Option<SecondStep>> {
    let row: Option<(String, String, String)> = second_steps::table
        .filter(second_steps::token_hash.eq(token_hash))
        .filter(second_steps::expires_at.gt(flotilla_jobs::now()))
        .filter(second_steps::failures.lt(SECOND_STEP_TRIES))
        .select((
            second_steps::user_id,
            second_steps::login_key,
            second_steps::password_check,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(user_id, login_key, password_check)| SecondStep {
        user_id,
        login_key,
        password_check,
    }))
}

/// Counts a wrong code against a second step; `false` once it has taken its last.
pub fn second_step_failed(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        diesel::update(second_steps::table.filter(second_steps::token_hash.eq(token_hash)))
            .set(second_steps::failures.eq(second_steps::failures + 1))
            .execute(conn)?;
        let failures: Option<i32> = second_steps::table
            .filter(second_steps::token_hash.eq(token_hash))
            .select(second_steps::failures)
            .first(conn)
            .optional()?;
        Ok(failures.is_some_and(|f| f < SECOND_STEP_TRIES))
    })
}

/// How a session was opened: the methods (RFC 8176) and, after a second step, the
/// step's token hash, spent in the session's transaction (so a step opens one session
/// however many requests finish it at once).
pub struct Opening {
    pub amr: String,
    pub second_step: Option<String>,
}

impl Opening {
    /// A sign-in with a password alone.
    pub fn password() -> Self {
        Self {
            amr: PASSWORD_AMR.to_owned(),
            second_step: None,
        }
    }
}

/// A live session, as tokens need it. No `Debug`: it holds the form token and the
/// refresh token.
#[derive(Clone)]
pub struct SessionGrant {
    pub session_id: String,
    pub csrf: String,
    pub user_id: String,
    pub role: String,
    pub verified: bool,
    /// How the session's owner proved who they are (the session's `amr`).
    pub amr: String,
    /// The account's address, username and display name, for the token's claims.
    pub email: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
    /// The new refresh token (only its hash is stored).
    pub refresh_token: String,
    /// When the refresh token stops working (idle or absolute, the earlier).
    pub refresh_expires: NaiveDateTime,
    /// A mail was queued with the session (a sign-in from a new device).
    pub mailed: bool,
}

fn new_refresh_token(
    conn: &mut AnyConnection,
    session_id: &str,
    now: NaiveDateTime,
) -> QueryResult<String> {
    let token = flotilla_auth::new_token();
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(flotilla_auth::token_hash(&token)),
            refresh_tokens::session_id.eq(session_id),
            refresh_tokens::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(token)
}

/// Opens a session after a correct password, with its first refresh token and the
/// `login.success` event. `None` when the account changed since its password was
/// checked (a reset or change committed meanwhile, or it was disabled or closed): a
/// sign-in racing a reset must not outlive it.
pub fn open_session(
    conn: &mut AnyConnection,
    config: &LoginConfig,
    account: &User,
    login_key: &str,
    opening: &Opening,
    origin: &Origin,
) -> QueryResult<Option<SessionGrant>> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        if let Some(step) = &opening.second_step {
            let spent =
                diesel::delete(second_steps::table.filter(second_steps::token_hash.eq(step)))
                    .execute(conn)?;
            if spent == 0 {
                return Ok(None);
            }
        }
        // A reset or password change holding the row commits first, and is seen below;
        // one coming later waits for this session, and ends it.
        User::lock(conn, &account.id)?;
        let current = account_by_email(conn, &account.email.to_lowercase())?;
        let unchanged = current.is_some_and(|c| {
            c.id == account.id && c.password_hash == account.password_hash && !c.is_disabled()
        });
        if !unchanged {
            // The password changed (a reset) while this one was being checked, or the
            // account was closed (and perhaps purged already).
            let user_id = still_there(conn, Some(&account.id))?;
            let event = origin.event(AuthEventKind::LoginFailure, user_id, Some(login_key), None);
            event.record(conn, now)?;
            return Ok(None);
        }
        let session_id = new_id();
        let csrf = flotilla_auth::new_token();
        let expires = now + config.session_max;
        let idle = (now + config.session_idle).min(expires);
        Session {
            id: session_id.clone(),
            user_id: account.id.clone(),
            csrf_token: csrf.clone(),
            user_agent: origin.user_agent.clone(),
            client_addr: origin.client_addr.clone(),
            created_at: now,
            last_used_at: now,
            idle_expires_at: idle,
            expires_at: expires,
            revoked_at: None,
            revoked_reason: None,
            authenticated_at: Some(now),
            amr: opening.amr.clone(),
        }
        .insert(conn)?;
        let refresh_token = new_refresh_token(conn, &session_id, now)?;
        let mailed = config.new_device_email
            && notify_new_device(conn, config, account, &session_id, origin, now)?;
        let event = origin.event(
            AuthEventKind::LoginSuccess,
            Some(&account.id),
            Some(login_key),
            Some(&session_id),
        );
        event.record(conn, now)?;
        Ok(Some(SessionGrant {
            session_id,
            csrf,
            user_id: account.id.clone(),
            role: account.role.as_str().to_owned(),
            verified: account.is_verified(),
            amr: opening.amr.clone(),
            email: account.email.clone(),
            username: account.username.clone(),
            display_name: account.display_name.clone(),
            refresh_token,
            refresh_expires: idle,
            mailed,
        }))
    })
}

/// Queues a "new sign-in" mail when the account has signed in before, but never from
/// this kind of browser: its summary ("Firefox on Linux"), so that a browser's update
/// is not news, compared with the sign-ins still in the history
/// (`FLOTILLA_AUTH_EVENTS_DAYS`). The very first sign-in is not news either. Returns
/// whether a mail was queued.
fn notify_new_device(
    conn: &mut AnyConnection,
    config: &LoginConfig,
    account: &User,
    session_id: &str,
    origin: &Origin,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let device = flotilla_accounts::summarise_user_agent(&origin.user_agent);
    let earlier: Vec<String> = auth_events::table
        .filter(auth_events::user_id.eq(&account.id))
        .filter(auth_events::kind.eq(AuthEventKind::LoginSuccess.as_str()))
        .select(auth_events::user_agent)
        .distinct()
        .load(conn)?;
    if earlier.is_empty()
        || earlier
            .iter()
            .any(|seen| flotilla_accounts::summarise_user_agent(seen) == device)
    {
        return Ok(false);
    }
    let mail = Mail {
        to: account.email.clone(),
        message: Message::NewDeviceLogin {
            device,
            client_addr: Some(origin.client_addr.clone()),
            when: now.and_utc(),
            reset_link: format!("{}/login/forgot", config.public_url),
        },
    };
    let job = NewJob::new(mail, format!("new_device_login:{session_id}"));
    flotilla_jobs::enqueue(conn, &job)?;
    Ok(true)
}

/// A spent refresh token presented again within this long by the device that spent it
/// (its device cookie, which a copied token does not carry) is a race of the legitimate
/// client (two tabs), not a theft.
const REUSE_GRACE: TimeDelta = TimeDelta::seconds(10);

pub enum Refreshed {
    /// Boxed: a grant is far larger than the other answers.
    Renewed(Box<SessionGrant>),
    /// Unknown or revoked.
    Invalid,
    /// Spent a moment ago by another request of the same client: the session goes on
    /// with the tokens that request received.
    Raced,
    /// The account was disabled: the session is revoked now.
    Disabled { session_id: String },
    /// The session ended by time.
    Expired,
    /// A token already exchanged came back: the session is revoked (theft).
    Reused { session_id: String },
}

/// Marks a refresh token spent, by `device` if the request carried one; false when a
/// concurrent request spent it first.
fn spend_refresh_token(
    conn: &mut AnyConnection,
    token_hash: &str,
    device: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let marked = diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(token_hash))
            .filter(refresh_tokens::used_at.is_null()),
    )
    .set((
        refresh_tokens::used_at.eq(now),
        refresh_tokens::spent_by_device.eq(device),
    ))
    .execute(conn)?;
    Ok(marked > 0)
}

/// Records a session's use: when, from where, and its new idle deadline.
fn mark_used(
    conn: &mut AnyConnection,
    session_id: &str,
    idle: NaiveDateTime,
    origin: &Origin,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::update(sessions_t::table.filter(sessions_t::id.eq(session_id)))
        .set((
            sessions_t::last_used_at.eq(now),
            sessions_t::idle_expires_at.eq(idle),
            sessions_t::client_addr.eq(&origin.client_addr),
            sessions_t::user_agent.eq(&origin.user_agent),
        ))
        .execute(conn)?;
    Ok(())
}

/// The device that spent a refresh token (the winner of a race has committed it).
fn spent_by(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Option<String>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select(refresh_tokens::spent_by_device)
        .first(conn)
}

/// Whether a spent token comes back from the device that spent it: both known and equal.
fn same_device(spent_by: Option<&str>, device: Option<&str>) -> bool {
    spent_by.is_some() && spent_by == device
}

/// The account a session is of, as a refresh needs it: id, role, verified at,
/// disabled at.
/// The session's account: id, role, verified and disabled times, address, username and
/// display name.
type Holder = (
    String,
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    String,
    Option<String>,
    Option<String>,
);

/// A refresh token's spending (when, by which device), its session and the session's
/// account.
type Spending = (Option<NaiveDateTime>, Option<String>);

fn refresh_token_of(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> QueryResult<Option<(Spending, Session, Holder)>> {
    let rows = refresh_tokens::table
        .inner_join(sessions_t::table.inner_join(users::table))
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((
            (refresh_tokens::used_at, refresh_tokens::spent_by_device),
            sessions_t::all_columns,
            (
                users::id,
                users::role,
                users::email_verified_at,
                users::disabled_at,
                users::email,
                users::username,
                users::display_name,
            ),
        ))
        .load(conn)?;
    Ok(rows.into_iter().next())
}

/// Exchanges a refresh token for the next one. A token works once: the second use
/// ends the whole session, whoever presents it, unless the device that spent it
/// presents it again within seconds. `devices`: the valid entries of the request's
/// device cookie.
pub fn refresh(
    conn: &mut AnyConnection,
    config: &LoginConfig,
    token_hash: &str,
    devices: &[DeviceEntry],
    origin: &Origin,
) -> QueryResult<Refreshed> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let Some((
            (used, spender),
            session,
            (user_id, role, verified, disabled, email, username, display_name),
        )) = refresh_token_of(conn, token_hash)?
        else {
            return Ok(Refreshed::Invalid);
        };
        let device = devices
            .iter()
            .find(|d| d.user_id == user_id)
            .map(DeviceEntry::key);
        let device = device.as_deref();
        if session.revoked_at.is_some() {
            return Ok(Refreshed::Invalid);
        }
        let session_id = session.id;
        let reused = |conn: &mut AnyConnection, session_id: String| {
            flotilla_accounts::revoke_session(conn, &session_id, RevokeReason::RefreshReuse, now)?;
            let event = origin.event(
                AuthEventKind::SessionRefreshReuse,
                Some(&user_id),
                None,
                Some(&session_id),
            );
            event.record(conn, now)?;
            Ok(Refreshed::Reused { session_id })
        };
        if let Some(used_at) = used {
            // Two tabs (or an app's parallel calls) refreshing with the same token
            // within seconds, from the device that spent it: the later one is refused,
            // the session kept. Without that device's cookie, or later, it is a copy:
            // theft.
            if now - used_at < REUSE_GRACE && same_device(spender.as_deref(), device) {
                return Ok(Refreshed::Raced);
            }
            return reused(conn, session_id);
        }
        let expires = session.expires_at;
        if now >= session.idle_expires_at || now >= expires {
            return Ok(Refreshed::Expired);
        }
        if disabled.is_some() {
            flotilla_accounts::revoke_session(conn, &session_id, RevokeReason::Disabled, now)?;
            return Ok(Refreshed::Disabled { session_id });
        }
        // Two refreshes with the same token at once: one wins, the other is reuse.
        if !spend_refresh_token(conn, token_hash, device, now)? {
            // The same token spent by a concurrent request a moment ago (PostgreSQL;
            // SQLite's writers queue): its winner has committed, so the token now
            // shows which device spent it.
            if same_device(spent_by(conn, token_hash)?.as_deref(), device) {
                return Ok(Refreshed::Raced);
            }
            return reused(conn, session_id);
        }
        let refresh_token = new_refresh_token(conn, &session_id, now)?;
        let idle = (now + config.session_idle).min(expires);
        mark_used(conn, &session_id, idle, origin, now)?;
        Ok(Refreshed::Renewed(Box::new(SessionGrant {
            session_id,
            csrf: session.csrf_token,
            user_id,
            role,
            verified: verified.is_some(),
            amr: session.amr,
            email,
            username,
            display_name,
            refresh_token,
            refresh_expires: idle,
            mailed: false,
        })))
    })
}

/// The session a refresh token belongs to (used or not), for logging out with it.
pub fn session_of_refresh_token(
    conn: &mut AnyConnection,
    token_hash: &str,
) -> QueryResult<Option<(String, String)>> {
    refresh_tokens::table
        .inner_join(sessions_t::table)
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .filter(refresh_tokens::used_at.is_null())
        .select((sessions_t::id, sessions_t::user_id))
        .first(conn)
        .optional()
}

/// Ends one session (`logout`) or all of a user's (`logout_all`); returns the ids.
pub fn sign_out(
    conn: &mut AnyConnection,
    user_id: &str,
    session_id: Option<&str>,
    origin: &Origin,
) -> QueryResult<Vec<String>> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let (kind, ended) = match session_id {
            Some(sid) => {
                let ended =
                    flotilla_accounts::revoke_session(conn, sid, RevokeReason::Logout, now)?;
                (
                    AuthEventKind::Logout,
                    if ended {
                        vec![sid.to_owned()]
                    } else {
                        Vec::new()
                    },
                )
            }
            None => (
                AuthEventKind::LogoutAll,
                flotilla_accounts::revoke_user_sessions(
                    conn,
                    user_id,
                    None,
                    RevokeReason::LogoutAll,
                    now,
                )?,
            ),
        };
        let event = origin.event(kind, Some(user_id), None, session_id);
        event.record(conn, now)?;
        Ok(ended)
    })
}

/// Sends a reset link to the account of `lookup`, if there is one that may sign in and
/// none was sent in the last minute. Returns whether one was queued.
pub fn request_reset(
    conn: &mut AnyConnection,
    config: &LoginConfig,
    lookup: &str,
    origin: &Origin,
) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let account = account_by_email(conn, lookup)?;
        let sent = match &account {
            Some(account) => send_reset_link(conn, config, account, origin, now)?,
            None => false,
        };
        // Every request is recorded (with the account, when the address has one), so
        // that an address without an account costs a write too and its answer takes
        // as long; the address's sign-in key ties the row to it for the purge.
        let login_key = flotilla_auth::token_hash(lookup);
        let user_id = account.as_ref().map(|a| a.id.as_str());
        let kind = AuthEventKind::PasswordResetRequested;
        record_in(conn, kind, user_id, Some(&login_key), origin)?;
        Ok(sent)
    })
}

/// Issues a reset link and queues its mail, unless the account is disabled or had
/// one less than a minute ago. Returns whether it did.
fn send_reset_link(
    conn: &mut AnyConnection,
    config: &LoginConfig,
    account: &User,
    origin: &Origin,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    if account.is_disabled() {
        return Ok(false);
    }
    if email_link::issued_since(conn, &account.id, RESET, now - TimeDelta::minutes(1))? > 0 {
        return Ok(false);
    }
    let mail = LinkMail {
        public_url: &config.public_url,
        ttl: config.reset_ttl,
    };
    let asked_by = Some(origin.client_addr.clone());
    mail.password_reset(conn, &account.id, &account.email, asked_by, now)?;
    Ok(true)
}

/// What a reset token is worth, without using it.
pub fn check_reset_token(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Link> {
    email_link::check(conn, token_hash, RESET, flotilla_jobs::now())
}

pub enum Reset {
    /// Done; these sessions were ended.
    Done {
        revoked: Vec<String>,
    },
    Invalid,
    Expired,
}

/// Uses a reset token: the new password, every session ended, the other reset links
/// voided, a notice to the owner, and the address counted as confirmed (the link
/// proved it).
pub fn reset_password(
    conn: &mut AnyConnection,
    config: &LoginConfig,
    token_hash: &str,
    password_hash: &str,
    origin: &Origin,
) -> QueryResult<Reset> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let (user_id, email) = match email_link::check(conn, token_hash, RESET, now)? {
            Link::Valid { user_id, email } => (user_id, email),
            Link::Invalid => return Ok(Reset::Invalid),
            Link::Expired => return Ok(Reset::Expired),
        };
        // A sign-in opening a session now commits it before the sessions are picked
        // below; one starting later sees the new password (see `open_session`).
        User::lock(conn, &user_id)?;
        // A link sent to an address the account no longer has is void.
        let current = User::find(conn, &user_id)?.filter(|u| !u.is_closed());
        if !current.is_some_and(|u| u.email.eq_ignore_ascii_case(&email)) {
            return Ok(Reset::Invalid);
        }
        if !email_link::spend(conn, token_hash, now)? {
            return Ok(Reset::Invalid);
        }
        // Every other link of the account goes too: a pending change of address
        // asked for by whoever knew the old password must not survive the reset.
        email_link::void(conn, &user_id, RESET, now)?;
        email_link::void(conn, &user_id, LinkPurpose::ChangeEmail, now)?;
        User::set_password(conn, &user_id, password_hash, now)?;
        // Sets `updated_at` to the `now` the new password set already.
        User::mark_verified(conn, &user_id, &email, now)?;
        let revoked = flotilla_accounts::revoke_user_sessions(
            conn,
            &user_id,
            None,
            RevokeReason::PasswordReset,
            now,
        )?;
        flotilla_accounts::queue_password_changed_notice(
            conn,
            &email,
            origin,
            &config.public_url,
            &token_hash[..32],
            now,
        )?;
        record_in(
            conn,
            AuthEventKind::PasswordReset,
            Some(&user_id),
            None,
            origin,
        )?;
        Ok(Reset::Done { revoked })
    })
}
