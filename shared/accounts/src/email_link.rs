//! Single-use links sent by email (address verification, password reset, change of
//! address). The token goes out in the link; the database keeps its SHA-256 with the
//! account, the purpose, the address it was sent to and its lifetime.

use chrono::{NaiveDateTime, TimeDelta};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::email_tokens;
use flotilla_db::{AnyConnection, diesel};

use crate::REDACTED;
use crate::user::UnknownValue;

/// What a link is for (the `purpose` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkPurpose {
    /// Confirms the address given at sign-up (signup).
    VerifyEmail,
    /// Sets a new password (login).
    PasswordReset,
    /// Confirms a new address (profile).
    ChangeEmail,
}

impl LinkPurpose {
    pub const ALL: [LinkPurpose; 3] = [Self::VerifyEmail, Self::PasswordReset, Self::ChangeEmail];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::ChangeEmail => "change_email",
        }
    }

    /// A stored name; an unknown one is an error.
    pub fn parse(name: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| UnknownValue::new("purpose", name))
    }
}

/// A link as stored (an `email_tokens` row). Its `Debug` hides the token's hash.
#[derive(Clone, PartialEq, Eq)]
pub struct EmailLink {
    pub token_hash: String,
    pub user_id: String,
    pub purpose: LinkPurpose,
    /// The address the link was sent to.
    pub email: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

impl std::fmt::Debug for EmailLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailLink")
            .field("token_hash", &format_args!("{REDACTED}"))
            .field("user_id", &self.user_id)
            .field("purpose", &self.purpose)
            .field("email", &self.email)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish()
    }
}

type LinkRow = (
    String,
    String,
    String,
    String,
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
);

impl TryFrom<LinkRow> for EmailLink {
    type Error = UnknownValue;

    fn try_from(row: LinkRow) -> Result<Self, UnknownValue> {
        let (token_hash, user_id, purpose, email, created_at, expires_at, used_at) = row;
        Ok(EmailLink {
            token_hash,
            user_id,
            purpose: LinkPurpose::parse(&purpose)?,
            email,
            created_at,
            expires_at,
            used_at,
        })
    }
}

/// A new link's token (for the email) and its hash (for the job's idempotency key).
pub struct Issued {
    pub token: String,
    pub hash: String,
}

/// Stores a new link for `user_id` sent to `email`.
pub fn issue(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: LinkPurpose,
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
            email_tokens::purpose.eq(purpose.as_str()),
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
    purpose: LinkPurpose,
    now: NaiveDateTime,
) -> QueryResult<Link> {
    let rows: Vec<LinkRow> = email_tokens::table
        .filter(email_tokens::token_hash.eq(token_hash))
        .filter(email_tokens::purpose.eq(purpose.as_str()))
        .load(conn)?;
    let link = rows
        .into_iter()
        .next()
        .map(EmailLink::try_from)
        .transpose()
        .map_err(UnknownValue::into_diesel)?;
    Ok(match link {
        None => Link::Invalid,
        Some(link) if link.used_at.is_some() => Link::Invalid,
        Some(link) if link.expires_at <= now => Link::Expired,
        Some(link) => Link::Valid {
            user_id: link.user_id,
            email: link.email,
        },
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
    purpose: LinkPurpose,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user_id))
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::used_at.is_null()),
    )
    .set(email_tokens::used_at.eq(now))
    .execute(conn)
}

/// How many links of `purpose` a user was sent since `since` (rate limits).
pub fn issued_since(
    conn: &mut AnyConnection,
    user_id: &str,
    purpose: LinkPurpose,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    email_tokens::table
        .filter(email_tokens::user_id.eq(user_id))
        .filter(email_tokens::purpose.eq(purpose.as_str()))
        .filter(email_tokens::created_at.gt(since))
        .count()
        .get_result(conn)
}

/// Deletes every link of a user (the account is closed).
pub fn delete_all_of(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
    diesel::delete(email_tokens::table.filter(email_tokens::user_id.eq(user_id))).execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_read_back_and_an_unknown_one_is_an_error() {
        for purpose in LinkPurpose::ALL {
            assert_eq!(LinkPurpose::parse(purpose.as_str()), Ok(purpose));
        }
        assert_eq!(
            LinkPurpose::parse("teleport").unwrap_err().column,
            "purpose"
        );
    }
}
