//! An account's second factors as rows: its authenticator app ([`TotpFactor`], the
//! secret sealed, never in clear) and its single-use recovery codes ([`RecoveryCodes`],
//! hashed), with [`Factors`], what an account has (never a secret), and
//! [`queue_factor_notice`], the mail to the owner when they change. Sealing and the
//! codes' arithmetic are `flotilla_auth::factors`'.

use chrono::NaiveDateTime;
use flotilla_contracts::{FactorChange, Mail, Message};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::{recovery_codes, totp_factors};
use flotilla_db::{AnyConnection, diesel};

use crate::{Origin, REDACTED};

/// A `totp_factors` row: the secret as stored (sealed, base64).
#[derive(Clone, Queryable)]
pub struct TotpFactor {
    pub user_id: String,
    pub secret: String,
    /// The time step of the last code used, if any: only a newer one is accepted.
    pub last_step: Option<i64>,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

impl std::fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpFactor")
            .field("user_id", &self.user_id)
            .field("secret", &REDACTED)
            .field("last_step", &self.last_step)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .finish()
    }
}

impl TotpFactor {
    /// The account's authenticator app, if it has one.
    pub fn of(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Option<Self>> {
        totp_factors::table.find(user_id).first(conn).optional()
    }

    /// Sets up the account's authenticator app with its first code's step already
    /// used; `false` when it has one (removing it comes first).
    pub fn add(
        conn: &mut AnyConnection,
        user_id: &str,
        sealed: &str,
        first_step: i64,
        now: NaiveDateTime,
    ) -> QueryResult<bool> {
        if Self::of(conn, user_id)?.is_some() {
            return Ok(false);
        }
        diesel::insert_into(totp_factors::table)
            .values((
                totp_factors::user_id.eq(user_id),
                totp_factors::secret.eq(sealed),
                totp_factors::last_step.eq(Some(first_step)),
                totp_factors::created_at.eq(now),
                totp_factors::last_used_at.eq(Some(now)),
            ))
            .execute(conn)?;
        Ok(true)
    }

    /// Spends the time step `step`: `true` only when it is newer than the last one
    /// used. One guarded statement, so two instances checking the same code at once
    /// cannot both accept it.
    pub fn spend_step(
        conn: &mut AnyConnection,
        user_id: &str,
        step: i64,
        now: NaiveDateTime,
    ) -> QueryResult<bool> {
        let changed = diesel::update(
            totp_factors::table
                .filter(totp_factors::user_id.eq(user_id))
                .filter(
                    totp_factors::last_step
                        .is_null()
                        .or(totp_factors::last_step.lt(step)),
                ),
        )
        .set((
            totp_factors::last_step.eq(Some(step)),
            totp_factors::last_used_at.eq(Some(now)),
        ))
        .execute(conn)?;
        Ok(changed == 1)
    }

    /// Removes the account's authenticator app; `false` when it had none.
    pub fn remove(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
        let removed = diesel::delete(totp_factors::table.filter(totp_factors::user_id.eq(user_id)))
            .execute(conn)?;
        Ok(removed > 0)
    }
}

/// An account's recovery codes, by hash.
pub struct RecoveryCodes;

impl RecoveryCodes {
    /// Replaces every code of the account with `hashes` (none: removes them all).
    pub fn replace(
        conn: &mut AnyConnection,
        user_id: &str,
        hashes: &[String],
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id)))
            .execute(conn)?;
        for hash in hashes {
            diesel::insert_into(recovery_codes::table)
                .values((
                    recovery_codes::user_id.eq(user_id),
                    recovery_codes::code_hash.eq(hash),
                    recovery_codes::created_at.eq(now),
                ))
                .execute(conn)?;
        }
        Ok(())
    }

    /// Spends the code of `hash`: `true` when it was the account's and unused.
    pub fn spend(conn: &mut AnyConnection, user_id: &str, hash: &str) -> QueryResult<bool> {
        let spent = diesel::delete(
            recovery_codes::table
                .filter(recovery_codes::user_id.eq(user_id))
                .filter(recovery_codes::code_hash.eq(hash)),
        )
        .execute(conn)?;
        Ok(spent == 1)
    }

    /// How many unused codes the account has.
    pub fn left(conn: &mut AnyConnection, user_id: &str) -> QueryResult<i64> {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .count()
            .get_result(conn)
    }
}

/// What second factors an account has, as its owner and admins see them: never a
/// secret, never a code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Factors {
    /// When the authenticator app was set up and last used, if there is one.
    pub totp: Option<FactorDates>,
    pub recovery_codes_left: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactorDates {
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

impl Factors {
    pub fn of(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Self> {
        let totp = TotpFactor::of(conn, user_id)?.map(|t| FactorDates {
            created_at: t.created_at,
            last_used_at: t.last_used_at,
        });
        Ok(Self {
            totp,
            recovery_codes_left: RecoveryCodes::left(conn, user_id)?,
        })
    }

    /// Whether signing in takes a second step (recovery codes alone do not count:
    /// they only stand in for a factor).
    pub fn any(&self) -> bool {
        self.totp.is_some()
    }

    /// Removes every factor and recovery code of the account (an admin's reset);
    /// whether there was anything to remove.
    pub fn remove_all(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
        let totp = TotpFactor::remove(conn, user_id)?;
        let codes = RecoveryCodes::left(conn, user_id)? > 0;
        RecoveryCodes::replace(conn, user_id, &[], chrono::Utc::now().naive_utc())?;
        Ok(totp || codes)
    }
}

/// Whether the account has a second factor: the sign-in's and the step-up's question.
pub fn has_second_factor(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
    Ok(TotpFactor::of(conn, user_id)?.is_some())
}

/// The mail that tells an account's owner their second factors changed, with when,
/// from where, and the link to their account's security section.
pub struct FactorNotice<'a> {
    pub to: &'a str,
    pub change: FactorChange,
    /// Recovery codes left, after one was used.
    pub codes_left: Option<i64>,
    pub public_url: &'a str,
    /// Makes the job unique.
    pub key: &'a str,
}

impl FactorNotice<'_> {
    pub fn queue(
        &self,
        conn: &mut AnyConnection,
        origin: &Origin,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let mail = Mail {
            to: self.to.to_owned(),
            message: Message::SecondFactorChanged {
                change: self.change,
                when: now.and_utc(),
                client_addr: Some(origin.client_addr.clone()),
                security_link: format!("{}/profile#security", self.public_url),
                codes_left: self.codes_left,
            },
        };
        let job = flotilla_jobs::NewJob::new(mail, format!("second_factor:{}", self.key));
        flotilla_jobs::enqueue(conn, &job)?;
        Ok(())
    }
}
