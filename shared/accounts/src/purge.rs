//! Forgetting: deleting closed accounts and the rows that have served their time.
//! The worker runs these as jobs; they are safe to run again.

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_contracts::PurgeUser;
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::{
    auth_events, email_tokens, passkey_challenges, second_steps, sessions, users,
};
use flotilla_db::{AnyConnection, diesel};

/// Deletes a closed account: its row and, by cascade, its sessions, refresh tokens,
/// email links and auth events; then the attempts recorded under its address and the
/// mails to it that failed for good (dead jobs keep their payload: the address, its
/// links). Mails still pending are left to be sent, the confirmation of closing among
/// them; sent ones forgot their payload already. Only accounts their owner closed
/// (`deleted_at` set) are touched. Returns whether the row was there to delete.
pub fn purge_closed(conn: &mut AnyConnection, target: &PurgeUser) -> QueryResult<bool> {
    flotilla_db::write_transaction(conn, |conn| {
        let deleted = diesel::delete(
            users::table
                .filter(users::id.eq(&target.user_id))
                .filter(users::deleted_at.is_not_null()),
        )
        .execute(conn)?;
        diesel::delete(auth_events::table.filter(auth_events::login_key.eq(&target.login_key)))
            .execute(conn)?;
        if let Some(email) = &target.email {
            flotilla_jobs::purge_dead_mails_to(conn, email)?;
        }
        Ok(deleted > 0)
    })
}

/// What a [`cleanup`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    pub tokens: usize,
    pub sessions: usize,
    pub events: usize,
}

/// Deletes spent email links (used, or expired), ended sessions (a day after they
/// ended, once every service's deny-list is done with them), auth events older
/// than `events_days`, and sign-ins' second steps and passkey challenges that ended
/// unanswered (counted with the links).
pub fn cleanup(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    events_days: i64,
) -> QueryResult<Cleaned> {
    let day_ago = now - TimeDelta::days(1);
    let sessions = diesel::delete(
        sessions::table.filter(
            sessions::revoked_at
                .lt(day_ago)
                .or(sessions::expires_at.lt(day_ago))
                .or(sessions::idle_expires_at.lt(day_ago)),
        ),
    )
    .execute(conn)?;
    let events = diesel::delete(
        auth_events::table.filter(auth_events::created_at.lt(now - TimeDelta::days(events_days))),
    )
    .execute(conn)?;
    let tokens = diesel::delete(
        email_tokens::table.filter(
            email_tokens::used_at
                .is_not_null()
                .or(email_tokens::expires_at.lt(now)),
        ),
    )
    .execute(conn)?;
    let steps = diesel::delete(second_steps::table.filter(second_steps::expires_at.le(now)))
        .execute(conn)?;
    let challenges =
        diesel::delete(passkey_challenges::table.filter(passkey_challenges::expires_at.le(now)))
            .execute(conn)?;
    Ok(Cleaned {
        tokens: tokens + steps + challenges,
        sessions,
        events,
    })
}
