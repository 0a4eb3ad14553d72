//! An account's second factors as rows: its authenticator app ([`TotpFactor`], the
//! secret sealed, never in clear) and its single-use recovery codes ([`RecoveryCodes`],
//! hashed), with [`Factors`], what an account has (never a secret), and
//! [`queue_factor_notice`], the mail to the owner when they change. Sealing and the
//! codes' arithmetic are `flotilla_auth::factors`'.

use chrono::NaiveDateTime;
use flotilla_contracts::{FactorChange, Mail, Message};
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::{passkey_challenges, passkeys, recovery_codes, totp_factors};
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

/// A `passkeys` row: the credential as webauthn-rs stores it (JSON, a public key and
/// its counter: nothing secret, but kept out of exports and views all the same).
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    /// base64url, unique across accounts.
    pub credential_id: String,
    pub name: String,
    pub credential: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

impl PasskeyRow {
    /// The account's passkeys, oldest first.
    pub fn of(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Vec<Self>> {
        passkeys::table
            .filter(passkeys::user_id.eq(user_id))
            .order((passkeys::created_at.asc(), passkeys::id.asc()))
            .load(conn)
    }

    /// The passkey of a credential id, whoever's it is.
    pub fn by_credential_id(
        conn: &mut AnyConnection,
        credential_id: &str,
    ) -> QueryResult<Option<Self>> {
        passkeys::table
            .filter(passkeys::credential_id.eq(credential_id))
            .first(conn)
            .optional()
    }

    /// Adds a passkey; `false` when its credential is registered already (to this
    /// account or another).
    pub fn add(conn: &mut AnyConnection, row: &Self) -> QueryResult<bool> {
        if Self::by_credential_id(conn, &row.credential_id)?.is_some() {
            return Ok(false);
        }
        Self::insert(conn, row)
    }

    /// Inserts `row` in a savepoint of its own: `false` when another account's request
    /// registered the credential since it was looked up (the unique index refuses it,
    /// and the transaction around goes on, also on PostgreSQL), not an error.
    pub(crate) fn insert(conn: &mut AnyConnection, row: &Self) -> QueryResult<bool> {
        let inserted = conn.transaction(|conn| {
            diesel::insert_into(passkeys::table)
                .values((
                    passkeys::id.eq(&row.id),
                    passkeys::user_id.eq(&row.user_id),
                    passkeys::credential_id.eq(&row.credential_id),
                    passkeys::name.eq(&row.name),
                    passkeys::credential.eq(&row.credential),
                    passkeys::created_at.eq(row.created_at),
                    passkeys::last_used_at.eq(row.last_used_at),
                ))
                .execute(conn)
        });
        match inserted {
            Ok(_) => Ok(true),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records a use: when, and the credential as it is now (its counter).
    pub fn used(
        conn: &mut AnyConnection,
        id: &str,
        credential: Option<&str>,
        now: NaiveDateTime,
    ) -> QueryResult<()> {
        let row = passkeys::table.filter(passkeys::id.eq(id));
        match credential {
            Some(credential) => diesel::update(row)
                .set((
                    passkeys::last_used_at.eq(Some(now)),
                    passkeys::credential.eq(credential),
                ))
                .execute(conn)?,
            None => diesel::update(row)
                .set(passkeys::last_used_at.eq(Some(now)))
                .execute(conn)?,
        };
        Ok(())
    }

    /// Removes one of the account's passkeys; its name when it was there.
    pub fn remove(
        conn: &mut AnyConnection,
        user_id: &str,
        id: &str,
    ) -> QueryResult<Option<String>> {
        let name: Option<String> = passkeys::table
            .filter(passkeys::user_id.eq(user_id))
            .filter(passkeys::id.eq(id))
            .select(passkeys::name)
            .first(conn)
            .optional()?;
        if name.is_some() {
            diesel::delete(
                passkeys::table
                    .filter(passkeys::user_id.eq(user_id))
                    .filter(passkeys::id.eq(id)),
            )
            .execute(conn)?;
        }
        Ok(name)
    }

    fn remove_all(conn: &mut AnyConnection, user_id: &str) -> QueryResult<usize> {
        diesel::delete(passkeys::table.filter(passkeys::user_id.eq(user_id))).execute(conn)
    }
}

/// What a WebAuthn challenge is for: each is taken only for its purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    Register,
    SecondStep,
    SignIn,
    Confirm,
}

impl ChallengePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::SecondStep => "second_step",
            Self::SignIn => "sign_in",
            Self::Confirm => "confirm",
        }
    }
}

/// How long a WebAuthn challenge may be answered.
pub const CHALLENGE_TTL: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A WebAuthn ceremony between its challenge and its answer.
pub struct Challenge;

impl Challenge {
    /// Keeps `state` for its answer: the token the browser sends back (stored hashed).
    /// Challenges that ended are cleared on the way.
    pub fn create(
        conn: &mut AnyConnection,
        purpose: ChallengePurpose,
        user_id: Option<&str>,
        state: &str,
        now: NaiveDateTime,
    ) -> QueryResult<String> {
        let token = crate::new_token();
        diesel::delete(passkey_challenges::table.filter(passkey_challenges::expires_at.le(now)))
            .execute(conn)?;
        diesel::insert_into(passkey_challenges::table)
            .values((
                passkey_challenges::token_hash.eq(crate::token_hash(&token)),
                passkey_challenges::purpose.eq(purpose.as_str()),
                passkey_challenges::user_id.eq(user_id),
                passkey_challenges::state.eq(state),
                passkey_challenges::created_at.eq(now),
                passkey_challenges::expires_at.eq(now + CHALLENGE_TTL),
            ))
            .execute(conn)?;
        Ok(token)
    }

    /// Takes the live challenge of `token` for `purpose` (and `user_id`, when given):
    /// its account and state, once; a second take finds nothing.
    pub fn take(
        conn: &mut AnyConnection,
        token: &str,
        purpose: ChallengePurpose,
        user_id: Option<&str>,
        now: NaiveDateTime,
    ) -> QueryResult<Option<(Option<String>, String)>> {
        let hash = crate::token_hash(token);
        let row: Option<(Option<String>, String)> = passkey_challenges::table
            .filter(passkey_challenges::token_hash.eq(&hash))
            .filter(passkey_challenges::purpose.eq(purpose.as_str()))
            .filter(passkey_challenges::expires_at.gt(now))
            .select((passkey_challenges::user_id, passkey_challenges::state))
            .first(conn)
            .optional()?;
        let Some((owner, state)) = row else {
            return Ok(None);
        };
        if user_id.is_some() && owner.as_deref() != user_id {
            return Ok(None);
        }
        let taken = diesel::delete(
            passkey_challenges::table.filter(passkey_challenges::token_hash.eq(&hash)),
        )
        .execute(conn)?;
        Ok((taken == 1).then_some((owner, state)))
    }
}

/// A passkey as its owner and admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyInfo {
    pub id: String,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

/// What second factors an account has, as its owner and admins see them: never a
/// secret, never a code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Factors {
    /// When the authenticator app was set up and last used, if there is one.
    pub totp: Option<FactorDates>,
    pub passkeys: Vec<PasskeyInfo>,
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
        let passkeys = PasskeyRow::of(conn, user_id)?
            .into_iter()
            .map(|p| PasskeyInfo {
                id: p.id,
                name: p.name,
                created_at: p.created_at,
                last_used_at: p.last_used_at,
            })
            .collect();
        Ok(Self {
            totp,
            passkeys,
            recovery_codes_left: RecoveryCodes::left(conn, user_id)?,
        })
    }

    /// Whether signing in takes a second step (recovery codes alone do not count:
    /// they only stand in for a factor).
    pub fn any(&self) -> bool {
        self.totp.is_some() || !self.passkeys.is_empty()
    }

    /// Removes every factor and recovery code of the account (an admin's reset);
    /// whether there was anything to remove.
    pub fn remove_all(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
        let totp = TotpFactor::remove(conn, user_id)?;
        let keys = PasskeyRow::remove_all(conn, user_id)? > 0;
        let codes = RecoveryCodes::left(conn, user_id)? > 0;
        RecoveryCodes::replace(conn, user_id, &[], chrono::Utc::now().naive_utc())?;
        Ok(totp || keys || codes)
    }
}

/// Which second factors an account has, cheaply: the sign-in's and the step-up's
/// question.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FactorKinds {
    pub totp: bool,
    pub passkeys: bool,
}

impl FactorKinds {
    pub fn of(conn: &mut AnyConnection, user_id: &str) -> QueryResult<Self> {
        let totp = totp_factors::table
            .filter(totp_factors::user_id.eq(user_id))
            .count()
            .get_result::<i64>(conn)?
            > 0;
        let passkeys = passkeys::table
            .filter(passkeys::user_id.eq(user_id))
            .count()
            .get_result::<i64>(conn)?
            > 0;
        Ok(Self { totp, passkeys })
    }

    pub fn any(self) -> bool {
        self.totp || self.passkeys
    }
}

/// Whether the account has a second factor.
pub fn has_second_factor(conn: &mut AnyConnection, user_id: &str) -> QueryResult<bool> {
    Ok(FactorKinds::of(conn, user_id)?.any())
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
