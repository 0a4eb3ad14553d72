//! Sessions: the `sessions` row, and what more than one service does with them:
//! revoking them (login, profile, admin) and reading revocations (every service's
//! deny-list).

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::sessions;
use flotilla_db::{AnyConnection, diesel};

use crate::REDACTED;

/// A signed-in browser or client (a `sessions` row). Its `Debug` hides the form token.
#[derive(Clone, PartialEq, Eq, Queryable)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// The form (CSRF) token of cookie sessions: a secret.
    pub csrf_token: String,
    pub user_agent: String,
    pub client_addr: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: NaiveDateTime,
    pub idle_expires_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
    /// A [`RevokeReason`]'s name, as stored.
    pub revoked_reason: Option<String>,
    /// When the owner last proved who they are in this session: the sign-in, or a
    /// password confirmation since ([`Session::confirm_password`]).
    pub authenticated_at: Option<NaiveDateTime>,
    /// How the owner proved who they are, as the access token's `amr` claim lists it
    /// (space-separated: `pwd`).
    pub amr: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("csrf_token", &format_args!("{REDACTED}"))
            .field("user_agent", &self.user_agent)
            .field("client_addr", &self.client_addr)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("idle_expires_at", &self.idle_expires_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("revoked_reason", &self.revoked_reason)
            .field("authenticated_at", &self.authenticated_at)
            .field("amr", &self.amr)
            .finish()
    }
}

impl Session {
    /// Stores a new session.
    pub fn insert(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        diesel::insert_into(sessions::table)
            .values((
                sessions::id.eq(&self.id),
                sessions::user_id.eq(&self.user_id),
                sessions::csrf_token.eq(&self.csrf_token),
                sessions::user_agent.eq(&self.user_agent),
                sessions::client_addr.eq(&self.client_addr),
                sessions::created_at.eq(self.created_at),
                sessions::last_used_at.eq(self.last_used_at),
                sessions::idle_expires_at.eq(self.idle_expires_at),
                sessions::expires_at.eq(self.expires_at),
                sessions::revoked_at.eq(self.revoked_at),
                sessions::revoked_reason.eq(&self.revoked_reason),
                sessions::authenticated_at.eq(self.authenticated_at),
                sessions::amr.eq(&self.amr),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// When the owner last proved who they are in this session (its sign-in when
    /// nothing since says otherwise).
    pub fn last_authenticated(&self) -> NaiveDateTime {
        self.authenticated_at.unwrap_or(self.created_at)
    }

    /// A live session by id.
    pub fn find_live(
        conn: &mut AnyConnection,
        id: &str,
        now: NaiveDateTime,
    ) -> QueryResult<Option<Session>> {
        let rows: Vec<Session> = sessions::table
            .filter(sessions::id.eq(id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::expires_at.gt(now))
            .filter(sessions::idle_expires_at.gt(now))
            .load(conn)?;
        Ok(rows.into_iter().next())
    }

    /// Whether the session's owner proved who they are with two factors (its `amr`
    /// says `mfa`), at sign-in or in a confirmation since.
    pub fn is_multi_factor(&self) -> bool {
        self.amr.split_whitespace().any(|m| m == "mfa")
    }

    /// Whether the owner proved who they are within `window` of `now` (a sign-in or a
    /// confirmation), with two factors when `second_factor`: the step-up rules' test.
    pub fn proven_within(
        &self,
        window: TimeDelta,
        now: NaiveDateTime,
        second_factor: bool,
    ) -> bool {
        self.last_authenticated() + window >= now && (!second_factor || self.is_multi_factor())
    }

    /// Records that the owner of a live session confirmed who they are in it now, with
    /// the methods `amr` (RFC 8176, space-separated): what the admin console's rule for
    /// changes (a sign-in or a confirmation within the last minutes, with the second
    /// factor when the account has one) reads. Returns whether the session was live.
    pub fn confirm(
        conn: &mut AnyConnection,
        id: &str,
        amr: &str,
        now: NaiveDateTime,
    ) -> QueryResult<bool> {
        let live = sessions::table
            .filter(sessions::id.eq(id))
            .filter(sessions::revoked_at.is_null());
        let changed = diesel::update(live)
            .set((sessions::authenticated_at.eq(now), sessions::amr.eq(amr)))
            .execute(conn)?;
        Ok(changed > 0)
    }
}

/// Why a session ended, as stored in `sessions.revoked_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    LogoutAll,
    RefreshReuse,
    PasswordReset,
    PasswordChange,
    Revoked,
    Disabled,
    Deleted,
}

impl RevokeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::LogoutAll => "logout_all",
            RevokeReason::RefreshReuse => "refresh_token_reused",
            RevokeReason::PasswordReset => "password_reset",
            RevokeReason::PasswordChange => "password_change",
            RevokeReason::Revoked => "revoked",
            RevokeReason::Disabled => "account_disabled",
            RevokeReason::Deleted => "account_deleted",
        }
    }
}

/// Revokes one session if it is live; returns whether it was.
pub fn revoke_session(
    conn: &mut AnyConnection,
    sid: &str,
    reason: RevokeReason,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let changed = diesel::update(
        sessions::table
            .filter(sessions::id.eq(sid))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(now),
        sessions::revoked_reason.eq(reason.as_str()),
    ))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Revokes every live session of a user but `keep`; returns the ids revoked.
pub fn revoke_user_sessions(
    conn: &mut AnyConnection,
    user_id: &str,
    keep: Option<&str>,
    reason: RevokeReason,
    now: NaiveDateTime,
) -> QueryResult<Vec<String>> {
    let mut live = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .select(sessions::id)
        .into_boxed();
    if let Some(keep) = keep {
        live = live.filter(sessions::id.ne(keep));
    }
    let ids: Vec<String> = live.load(conn)?;
    if ids.is_empty() {
        return Ok(ids);
    }
    diesel::update(
        sessions::table
            .filter(sessions::id.eq_any(&ids))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(now),
        sessions::revoked_reason.eq(reason.as_str()),
    ))
    .execute(conn)?;
    Ok(ids)
}

/// Sessions revoked at or after `since`, with when.
pub fn revoked_since(
    conn: &mut AnyConnection,
    since: NaiveDateTime,
) -> QueryResult<Vec<(String, NaiveDateTime)>> {
    let rows: Vec<(String, Option<NaiveDateTime>)> = sessions::table
        .filter(sessions::revoked_at.ge(since))
        .select((sessions::id, sessions::revoked_at))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, at)| at.map(|at| (id, at)))
        .collect())
}

/// "Firefox on Linux" from a User-Agent header, or "Unknown browser".
pub fn summarise_user_agent(agent: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("reqwest", "reqwest"),
    ]
    .iter()
    .find(|(marker, _)| agent.contains(marker))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| agent.contains(marker))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(s)) => format!("A browser on {s}"),
        (None, None) => "Unknown browser".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_hides_its_form_token() {
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap().naive_utc();
        let session = Session {
            id: "s1".into(),
            user_id: "u1".into(),
            csrf_token: "the-form-token".into(),
            user_agent: "curl/8".into(),
            client_addr: "127.0.0.1".into(),
            created_at: at,
            last_used_at: at,
            idle_expires_at: at,
            expires_at: at,
            revoked_at: None,
            revoked_reason: None,
            authenticated_at: Some(at),
            amr: "pwd".into(),
        };
        let printed = format!("{session:?}");
        assert!(printed.contains("csrf_token: [redacted],"), "{printed}");
        assert!(!printed.contains("the-form-token"), "{printed}");
    }

    #[test]
    fn user_agents_are_summarised() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        assert_eq!(summarise_user_agent(firefox), "Firefox on Linux");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        assert_eq!(summarise_user_agent(chrome), "Chrome on Windows");
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(summarise_user_agent(safari), "Safari on iOS");
        assert_eq!(summarise_user_agent(""), "Unknown browser");
    }
}
