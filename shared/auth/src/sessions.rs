//! The database side of sessions that more than one service touches: revoking them
//! (login, profile, admin), reading revocations (every service's deny-list), and the
//! auth events that record what happened to an account.

use chrono::NaiveDateTime;
use flotilla_contracts::{AuthEventKind, Mail, Message};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::{auth_events, sessions};
use flotilla_db::{AnyConnection, diesel};

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

/// Where a request comes from, as sessions and auth events record it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub client_addr: String,
    /// At most [`MAX_USER_AGENT`] characters of `User-Agent`.
    pub user_agent: String,
}

impl Origin {
    pub fn of(req: &actix_web::HttpRequest, ctx: &flotilla_kit::RequestContext) -> Self {
        Self {
            client_addr: ctx.client.to_string(),
            user_agent: req
                .headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(MAX_USER_AGENT)
                .collect(),
        }
    }

    /// Whether a session last used from `client_addr` with `user_agent` was used from
    /// here (the same address and the same browser).
    pub fn matches(&self, client_addr: &str, user_agent: &str) -> bool {
        self.client_addr == client_addr && self.user_agent == user_agent
    }

    /// An event of this origin.
    pub fn event<'a>(
        &'a self,
        kind: AuthEventKind,
        user_id: Option<&'a str>,
        login_key: Option<&'a str>,
        session_id: Option<&'a str>,
    ) -> AuthEvent<'a> {
        AuthEvent {
            kind,
            user_id,
            login_key,
            session_id,
            client_addr: &self.client_addr,
            user_agent: &self.user_agent,
        }
    }
}

/// What happened, to whom (when known), from where.
#[derive(Debug, Clone)]
pub struct AuthEvent<'a> {
    pub kind: AuthEventKind,
    pub user_id: Option<&'a str>,
    /// SHA-256 of the lower-cased address typed at sign-in (throttling key).
    pub login_key: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub client_addr: &'a str,
    pub user_agent: &'a str,
}

/// At most this much of a user agent is kept.
const MAX_USER_AGENT: usize = 512;

pub fn record_event(
    conn: &mut AnyConnection,
    event: &AuthEvent,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let user_agent: String = event.user_agent.chars().take(MAX_USER_AGENT).collect();
    diesel::insert_into(auth_events::table)
        .values((
            auth_events::kind.eq(event.kind.as_str()),
            auth_events::user_id.eq(event.user_id),
            auth_events::login_key.eq(event.login_key),
            auth_events::session_id.eq(event.session_id),
            auth_events::client_addr.eq(event.client_addr),
            auth_events::user_agent.eq(user_agent),
            auth_events::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
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
