//! Single-use links sent by email (address verification, password reset, change of
//! address). The token goes out in the link; the database keeps its SHA-256 with the
//! account, the purpose, the address it was sent to and its lifetime.

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::email_tokens;
use flotilla_db::{AnyConnection, diesel};

/// A new link's token (for the email) and its hash (for the job's idempotency key).
pub struct Issued {
    pub token: String,
    pub hash: String,
}

/// Stores a new link for `user_id` sent to `email`.
pub fn issue(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: &str,
    email: &str,
    ttl: TimeDelta,
    now: NaiveDateTime,
) -> QueryResult<Issued> {
    let token = crate::new_token();
    let hash = crate::token_hash(&token);
    diesel::insert_into(email_tokens::table)
        .values((
            email_tokens::token_hash.eq(&hash),
            email_tokens::user_id.eq(user_id),
            email_tokens::purpose.eq(purpose),
            email_tokens::email.eq(email),
            email_tokens::created_at.eq(now),
            email_tokens::expires_at.eq(now + ttl),
        ))
        .execute(conn)?;
    Ok(Issued { token, hash })
}

/// What a link is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Unused and in time: whose it is and the address it was sent to.
    Valid {
        user_id: String,
        email: String,
    },
    /// Unknown, of another purpose, or used already.
    Invalid,
    Expired,
}

/// Looks a link up without using it.
pub fn check(
    conn: &mut AnyConnection,
    token_hash: &str,
    purpose: &str,
    now: NaiveDateTime,
) -> QueryResult<Link> {
    let rows: Vec<(String, String, NaiveDateTime, Option<NaiveDateTime>)> = email_tokens::table
        .filter(email_tokens::token_hash.eq(token_hash))
        .filter(email_tokens::purpose.eq(purpose))
        .select((
            email_tokens::user_id,
            email_tokens::email,
            email_tokens::expires_at,
            email_tokens::used_at,
        ))
        .load(conn)?;
    Ok(match rows.into_iter().next() {
        None | Some((_, _, _, Some(_))) => Link::Invalid,
        Some((_, _, expires, None)) if expires <= now => Link::Expired,
        Some((user_id, email, _, None)) => Link::Valid { user_id, email },
    })
}

/// Marks a link used; false when another request used it first.
pub fn spend(conn: &mut AnyConnection, token_hash: &str, now: NaiveDateTime) -> QueryResult<bool> {
    let changed = diesel::update(
        email_tokens::table
            .filter(email_tokens::token_hash.eq(token_hash))
            .filter(email_tokens::used_at.is_null()),
    )
    .set(email_tokens::used_at.eq(now))
    .execute(conn)?;
    Ok(changed > 0)
}

/// Voids every unused link of `purpose` of a user (a newer one was used).
pub fn void(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user_id))
            .filter(email_tokens::purpose.eq(purpose))
            .filter(email_tokens::used_at.is_null()),
    )
    .set(email_tokens::used_at.eq(now))
    .execute(conn)
}

/// How many links of `purpose` a user was sent since `since` (rate limits).
pub fn issued_since(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: &str,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    email_tokens::table
        .filter(email_tokens::user_id.eq(user_id))
        .filter(email_tokens::purpose.eq(purpose))
        .filter(email_tokens::created_at.gt(since))
        .count()
        .get_result(conn)
}
