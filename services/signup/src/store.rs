//! Signup's database work, each function one transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DbError};
use flotilla_accounts::email_link::{self, Link};
use flotilla_accounts::{LinkMail, LinkPurpose, NewUser, Origin, User};
use flotilla_contracts::{AuthEventKind, Mail, Message};
use flotilla_db::{AnyConnection, diesel, new_id, write_transaction};
use flotilla_jobs::NewJob;

use crate::SignupConfig;
use crate::domain::{EmailAddress, NewAccount};

const VERIFY: LinkPurpose = LinkPurpose::VerifyEmail;

pub enum Registered {
    /// A new account, with its verification email queued.
    New,
    /// The address had an account; its owner is told.
    Existing,
    /// The username belongs to someone else (checked before the address).
    UsernameTaken,
}

pub enum Verified {
    Done,
    Invalid,
    Expired,
}

/// Creates a token for `user_id` and queues the email that carries it.
fn send_verification(
    conn: &mut AnyConnection,
    config: &SignupConfig,
    user_id: &str,
    email: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let mail = LinkMail {
        public_url: &config.public_url,
        ttl: config.token_ttl,
    };
    mail.verification(conn, user_id, email, now)?;
    Ok(())
}

/// The account of an address, whatever its case (a closed one too, until its purge).
fn user_by_email(conn: &mut AnyConnection, email: &EmailAddress) -> QueryResult<Option<User>> {
    User::by_email_with_closed(conn, &email.as_ref().to_lowercase())
}

pub fn register(
    conn: &mut AnyConnection,
    config: &SignupConfig,
    account: &NewAccount,
    password_hash: &str,
) -> QueryResult<Registered> {
    let outcome = write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        // The username first, for every address: a taken one is refused the same way
        // whether or not the address has an account (usernames are public, so an
        // answer that depended on the address would tell whether it has one). Only a
        // confirmed account keeps one: unconfirmed ones let it go, whether or not
        // this signup goes on to create an account.
        if let Some(username) = &account.username {
            User::release_unconfirmed_username(conn, username.as_ref(), None, now)?;
            if User::username_taken(conn, username.as_ref(), None)? {
                return Ok(Registered::UsernameTaken);
            }
        }
        if let Some(User {
            id: user_id,
            email: address,
            ..
        }) = user_by_email(conn, &account.email)?
        {
            // At most one notice per account and ten minutes, however often it is tried.
            let slot = now.and_utc().timestamp() / 600;
            let mail = Mail {
                to: address.to_owned(),
                message: Message::SignupExisting {
                    login_link: format!("{}/login", config.public_url),
                },
            };
            let job = NewJob::new(mail, format!("signup_existing:{user_id}:{slot}"));
            flotilla_jobs::enqueue(conn, &job)?;
            return Ok(Registered::Existing);
        }
        let user_id = new_id();
        NewUser {
            id: &user_id,
            email: account.email.as_ref(),
            username: account.username.as_ref().map(|u| u.as_ref()),
            password_hash,
        }
        .insert(conn, now)?;
        send_verification(conn, config, &user_id, account.email.as_ref(), now)?;
        Ok(Registered::New)
    });
    match outcome {
        // Two signups raced: the unique indexes decided.
        Err(DbError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)) => {
            if info.message().contains("username")
                || info.constraint_name() == Some("users_username_key")
            {
                Ok(Registered::UsernameTaken)
            } else {
                Ok(Registered::Existing)
            }
        }
        other => other,
    }
}

/// What a verification token is worth, without using it (opening the link).
pub fn check(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Link> {
    email_link::check(conn, token_hash, VERIFY, flotilla_jobs::now())
}

/// Uses a verification token (the page's button, or a JSON client's post).
pub fn verify(conn: &mut AnyConnection, token_hash: &str) -> QueryResult<Verified> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let (user_id, email) = match email_link::check(conn, token_hash, VERIFY, now)? {
            Link::Valid { user_id, email } => (user_id, email),
            Link::Invalid => return Ok(Verified::Invalid),
            Link::Expired => return Ok(Verified::Expired),
        };
        if !email_link::spend(conn, token_hash, now)? {
            return Ok(Verified::Invalid);
        }
        // Only the address the link was sent to is verified.
        User::mark_verified(conn, &user_id, &email, now)?;
        Ok(Verified::Done)
    })
}

/// Sends a new link to an existing unverified account, at most once per interval.
/// Returns whether one was queued (the caller answers the same either way). Every
/// request is recorded (with the account, when the address has one), so that an
/// address without an account costs a write too and its answer takes as long.
pub fn resend(
    conn: &mut AnyConnection,
    config: &SignupConfig,
    email: &EmailAddress,
    origin: &Origin,
) -> QueryResult<bool> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let user = user_by_email(conn, email)?;
        let sent = match &user {
            Some(user) if !user.is_verified() => {
                let since = now - config.resend_interval;
                let recent = email_link::issued_since(conn, &user.id, VERIFY, since)? > 0;
                if !recent {
                    send_verification(conn, config, &user.id, &user.email, now)?;
                }
                !recent
            }
            _ => false,
        };
        // The address's sign-in key ties the row to it for the purge.
        let login_key = flotilla_auth::token_hash(&email.as_ref().to_lowercase());
        let user_id = user.as_ref().map(|u| u.id.as_str());
        let kind = AuthEventKind::VerificationRequested;
        let event = origin.event(kind, user_id, Some(&login_key), None);
        event.record(conn, now)?;
        Ok(sent)
    })
}
