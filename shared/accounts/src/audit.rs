//! The admin console's audit log (`audit_log`): who did what to which account, when,
//! from where. Rows are only ever added; the database refuses UPDATE and DELETE on the
//! table (triggers of migration 8), so nothing here changes or removes one.

use chrono::NaiveDateTime;
use flotilla_contracts::AuditAction;
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::audit_log;
use flotilla_db::{AnyConnection, diesel, lower};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An admin signed in to the console.
    Admin { id: String, email: String },
    /// A sysadmin on a server, running `flotilla-admin promote|demote` as a Unix user.
    CommandLine { unix_user: String },
}

impl Actor {
    fn id(&self) -> Option<&str> {
        match self {
            Actor::Admin { id, .. } => Some(id),
            Actor::CommandLine { .. } => None,
        }
    }

    /// As the `actor` column shows it.
    pub fn describe(&self) -> String {
        match self {
            Actor::Admin { email, .. } => email.clone(),
            Actor::CommandLine { unix_user } => format!("command line ({unix_user})"),
        }
    }
}

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    pub actor: &'a Actor,
    pub action: AuditAction,
    /// The account acted on: its id and its address at the time (a job retried has
    /// none: `None` and an empty address).
    pub target: Option<(&'a str, &'a str)>,
    pub client_addr: &'a str,
    pub request_id: &'a str,
    /// What else the action needs said (a job's id), never a secret.
    pub detail: &'a str,
}

impl NewAuditEntry<'_> {
    /// Adds the entry as of `now`; inside the transaction of the change it records, so
    /// that there is no change without its entry, nor an entry without its change.
    pub fn record(&self, conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<()> {
        let (target_id, target) = match self.target {
            Some((id, email)) => (Some(id), email),
            None => (None, ""),
        };
        diesel::insert_into(audit_log::table)
            .values((
                audit_log::created_at.eq(now),
                audit_log::actor_id.eq(self.actor.id()),
                audit_log::actor.eq(self.actor.describe()),
                audit_log::action.eq(self.action.as_str()),
                audit_log::target_id.eq(target_id),
                audit_log::target.eq(target),
                audit_log::client_addr.eq(self.client_addr),
                audit_log::request_id.eq(self.request_id),
                audit_log::detail.eq(self.detail),
            ))
            .execute(conn)?;
        Ok(())
    }
}

/// Which entries to read ([`AuditEntry::search`]). `actor` and `target` each match an
/// account id or the address stored with the entry (as it was then; any case; for the
/// actor also `command line (<unix user>)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSearch {
    pub actor: Option<String>,
    pub target: Option<String>,
    pub action: Option<AuditAction>,
    /// Only entries older than this one (keyset pagination: the last id shown).
    pub before: Option<i64>,
}

/// An entry as stored (the table's columns, in order).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct AuditEntry {
    pub id: i64,
    pub created_at: NaiveDateTime,
    /// The admin's account id; `None` for the command line.
    pub actor_id: Option<String>,
    /// The admin's address then, or `command line (<unix user>)`.
    pub actor: String,
    /// The stored name: an [`AuditAction`]'s, or a newer release's, shown as stored
    /// (rolling deploys run two releases side by side, and the log is read whole).
    pub action: String,
    pub target_id: Option<String>,
    /// The account's address then.
    pub target: String,
    pub client_addr: String,
    pub request_id: String,
    pub detail: String,
}

impl AuditEntry {
    /// The entries that `search` matches, newest first, at most `limit`.
    pub fn search(
        conn: &mut AnyConnection,
        search: &AuditSearch,
        limit: i64,
    ) -> QueryResult<Vec<AuditEntry>> {
        let mut query = audit_log::table.into_boxed();
        if let Some(actor) = &search.actor {
            let address = lower(audit_log::actor).eq(actor.to_lowercase());
            query = query.filter(audit_log::actor_id.eq(actor).or(address));
        }
        if let Some(target) = &search.target {
            let address = lower(audit_log::target).eq(target.to_lowercase());
            query = query.filter(audit_log::target_id.eq(target).or(address));
        }
        if let Some(action) = search.action {
            query = query.filter(audit_log::action.eq(action.as_str()));
        }
        if let Some(before) = search.before {
            query = query.filter(audit_log::id.lt(before));
        }
        query
            .order(audit_log::id.desc())
            .limit(limit)
            .load::<AuditEntry>(conn)
    }

    /// The entries about one account, newest first.
    pub fn about(
        conn: &mut AnyConnection,
        target_id: &str,
        limit: i64,
    ) -> QueryResult<Vec<AuditEntry>> {
        audit_log::table
            .filter(audit_log::target_id.eq(target_id))
            .order(audit_log::id.desc())
            .limit(limit)
            .load::<AuditEntry>(conn)
    }
}
