//! What happened to an account's sign-ins, sessions and credentials (the
//! `auth_events` rows), and where the request that did it came from.

use chrono::NaiveDateTime;
use flotilla_contracts::AuthEventKind;
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::auth_events;
use flotilla_db::{AnyConnection, diesel};

/// At most this many characters of a user agent are kept.
pub const MAX_USER_AGENT: usize = 512;

/// Where a request comes from, as sessions and auth events record it. Built from an
/// HTTP request by `flotilla_auth::RequestOrigin::of`.
#[derive(Debug, Clone)]
pub struct Origin {
    pub client_addr: String,
    /// At most [`MAX_USER_AGENT`] characters of `User-Agent`.
    pub user_agent: String,
}

impl Origin {
    /// An origin; the user agent is cut to [`MAX_USER_AGENT`] characters.
    pub fn new(client_addr: String, user_agent: &str) -> Self {
        Self {
            client_addr,
            user_agent: user_agent.chars().take(MAX_USER_AGENT).collect(),
        }
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

/// An `auth_events` row to record: what happened, to whom (when known), from where.
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

impl AuthEvent<'_> {
    /// Stores the event as of `now`.
    pub fn record(&self, conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<()> {
        let user_agent: String = self.user_agent.chars().take(MAX_USER_AGENT).collect();
        diesel::insert_into(auth_events::table)
            .values((
                auth_events::kind.eq(self.kind.as_str()),
                auth_events::user_id.eq(self.user_id),
                auth_events::login_key.eq(self.login_key),
                auth_events::session_id.eq(self.session_id),
                auth_events::client_addr.eq(self.client_addr),
                auth_events::user_agent.eq(user_agent),
                auth_events::created_at.eq(now),
            ))
            .execute(conn)?;
        Ok(())
    }
}
