//! Closing an account, as its owner does it (`DELETE /profile/me`) and as an admin
//! does it (`POST /admin/users/{id}/delete`): one implementation for both.

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_contracts::{AuthEventKind, Mail, Message, PurgeUser};
use flotilla_db::AnyConnection;
use flotilla_db::diesel::QueryResult;
use flotilla_db::diesel::result::Error as DbError;
use flotilla_jobs::NewJob;

use crate::{Origin, RevokeReason, User, email_link};

/// Closes the account at once: every session ended, the personal fields and the
/// address removed from the row (the address is freed), a confirmation mailed to it,
/// and a `purge_user` job queued that deletes the row and everything about it once
/// `hold` has passed: the ended sessions' rows stay until then, so that a service
/// that missed the `session.revoked` event (bus down, or started later) still denies
/// their tokens from its catch-up until they expire. `origin` is where the closing
/// came from (the owner, or the admin who closed it), for the account's auth events.
///
/// Runs inside the caller's write transaction (with whatever else the caller records
/// there: an admin's audit entry). Returns the sessions ended: the account's row is
/// locked first, as for a password change, so that no sign-in racing the close keeps
/// a session. `NotFound` when there is no such account.
pub fn close_account(
    conn: &mut AnyConnection,
    user_id: &str,
    origin: &Origin,
    hold: TimeDelta,
    now: NaiveDateTime,
) -> QueryResult<Vec<String>> {
    // A sign-in opening a session now commits it before the sessions are picked
    // below; one starting later finds the account closed (login's `open_session`).
    User::lock(conn, user_id)?;
    let email = User::find(conn, user_id)?.ok_or(DbError::NotFound)?.email;
    let ended = crate::revoke_user_sessions(conn, user_id, None, RevokeReason::Deleted, now)?;
    User::close(conn, user_id, now)?;
    email_link::delete_all_of(conn, user_id)?;
    let mail = Mail {
        to: email.clone(),
        message: Message::AccountDeleted {},
    };
    flotilla_jobs::enqueue(
        conn,
        &NewJob::new(mail, format!("account_deleted:{user_id}")),
    )?;
    let purge = PurgeUser {
        user_id: user_id.to_owned(),
        login_key: crate::token_hash(&email.to_lowercase()),
        email: Some(email.clone()),
    };
    let purge = NewJob {
        run_after: now + hold,
        ..NewJob::new(purge, format!("purge_user:{user_id}"))
    };
    flotilla_jobs::enqueue(conn, &purge)?;
    origin
        .event(AuthEventKind::AccountDeleted, Some(user_id), None, None)
        .record(conn, now)?;
    Ok(ended)
}
