//! Asking a signed-in person for their password again: profile before a change of
//! password, address or the closing of the account, login's confirmation
//! (`/login/confirm`, the admin console's sudo mode). One implementation, one count:
//! the failures are `password.check_failed` events under a key per account, so a
//! stolen session cannot guess at the hashing pool's speed by spreading its guesses
//! over several routes or services.

use actix_web::web;
use flotilla_accounts::{Origin, User};
use flotilla_contracts::AuthEventKind;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, State};

use crate::HashPool;
use crate::throttle::{self, InFlight, ThrottleSettings};

/// What is busy when the hashing pool is full.
const BUSY: &str = "passwords are being checked";

const FAILED: AuthEventKind = AuthEventKind::PasswordCheckFailed;

/// Why a password check did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckRefusal {
    /// 403 `wrong_password`.
    WrongPassword,
    /// 429: the account's free checks are all under way.
    ChecksInFlight,
    /// 429: too many wrong passwords; wait this many seconds.
    TooManyFailures { wait_secs: i64 },
}

impl CheckRefusal {
    pub fn message(self) -> String {
        match self {
            Self::WrongPassword => "The password is not right.".into(),
            Self::ChecksInFlight => "Too many password checks for this account are under way: \
                                     try again in a moment."
                .into(),
            Self::TooManyFailures { wait_secs } => format!(
                "Too many wrong passwords for this account: wait {wait_secs} seconds and try again."
            ),
        }
    }
}

impl From<CheckRefusal> for Error {
    fn from(refusal: CheckRefusal) -> Self {
        let message = refusal.message();
        match refusal {
            CheckRefusal::WrongPassword => Error::Forbidden {
                code: "wrong_password",
                message,
            },
            CheckRefusal::ChecksInFlight => Error::TooManyRequests {
                code: "too_many_attempts",
                message,
                retry_after_secs: 1,
            },
            CheckRefusal::TooManyFailures { wait_secs } => Error::TooManyRequests {
                code: "too_many_attempts",
                message,
                retry_after_secs: u32::try_from(wait_secs).unwrap_or(u32::MAX),
            },
        }
    }
}

/// The throttle key of an account's password checks (`auth_events.login_key`).
pub fn check_key(user_id: &str) -> String {
    crate::token_hash(&format!("password-check:{user_id}"))
}

/// What a service needs to check passwords again: its hashing pool, its checks in
/// flight (at most the free failures at once per account, [`InFlight`]) and the
/// sign-in throttle's settings.
#[derive(Debug, Clone)]
pub struct PasswordChecks {
    hashes: HashPool,
    in_flight: InFlight,
    settings: ThrottleSettings,
}

impl PasswordChecks {
    pub fn new(hashes: HashPool, settings: ThrottleSettings) -> Self {
        Self {
            hashes,
            in_flight: InFlight::new(settings.max_failures),
            settings,
        }
    }

    /// Checks `candidate` against the account's password on the hashing pool: `Ok`
    /// when right; 403 `wrong_password` when wrong, recorded as `password.check_failed`
    /// (with the session, when given); after too many failures 429 with `Retry-After`
    /// before any hash is computed. A full pool is 503 with `Retry-After`.
    pub async fn check(
        &self,
        state: &web::Data<State>,
        account: &User,
        session_id: Option<&str>,
        candidate: &str,
        from: &Origin,
    ) -> Result<(), Error> {
        let key = check_key(&account.id);
        let Some((_in_flight, others)) = self.in_flight.begin(&key).await else {
            return Err(CheckRefusal::ChecksInFlight.into());
        };
        let (settings, throttle_key) = (self.settings, key.clone());
        let wait = read(state, move |conn| {
            let attempts = throttle::Attempts {
                key: &throttle_key,
                failure: FAILED,
                success: None,
            };
            throttle::wait(conn, &settings, attempts, others, now())
        })
        .await?;
        if let Some(wait_secs) = wait {
            return Err(CheckRefusal::TooManyFailures { wait_secs }.into());
        }
        let correct = match &account.password_hash {
            Some(hash) => self
                .hashes
                .verify(hash.expose().to_owned(), candidate.to_owned())
                .await
                .map_err(|e| e.answer(BUSY))?,
            None => false,
        };
        if correct {
            return Ok(());
        }
        let (user_id, session_id, from) = (
            account.id.clone(),
            session_id.map(str::to_owned),
            from.clone(),
        );
        blocking(state, move |conn| {
            let event = from.event(FAILED, Some(&user_id), Some(&key), session_id.as_deref());
            event.record(conn, now())
        })
        .await?;
        Err(CheckRefusal::WrongPassword.into())
    }
}

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}
