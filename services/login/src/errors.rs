//! Login's own refusals, each with the stable code API clients match on. Bad fields
//! are the kit's 422 (`invalid_input`), a cross-site post is flotilla-auth's 403, and a
//! full hashing pool is [`flotilla_auth::PoolError::answer`].

use flotilla_kit::{Error, FieldErrors};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// 401: a wrong password, or an address without an account (the same answer).
    InvalidCredentials,
    /// 403: the right password, before the address was confirmed.
    EmailNotVerified,
    /// 403 (sign-in) or 401 (refresh): the account is disabled.
    AccountDisabled { at_refresh: bool },
    /// 429: too many failures at this address; wait this many seconds.
    TooManyFailures { wait_secs: i64 },
    /// 429: the address's free attempts are all being checked right now.
    AttemptsInFlight,
    /// 401: a refresh without a refresh token.
    NoRefreshToken,
    /// 401: a sign-out without a session to end.
    NoSession,
    /// 409: another request of the same browser exchanged the token a moment ago.
    RefreshConflict,
    /// 401: an unknown or revoked refresh token.
    RefreshInvalid,
    /// 401: the session ended by time.
    SessionExpired,
    /// 401: a spent refresh token came back; the session was ended.
    RefreshReused,
    /// 400: a reset link used already, or never issued.
    ResetLinkInvalid,
    /// 400.
    ResetLinkExpired,
    /// 401: a password confirmation in a session that ended, or of an account closed
    /// or disabled meanwhile.
    SessionEnded,
    /// 401: a second step that ended (by time, by too many wrong codes, used, or its
    /// account changed): sign in again.
    SecondStepEnded,
}

impl LoginError {
    /// The link pages (for browsers) show this too.
    pub fn message(self) -> String {
        match self {
            Self::InvalidCredentials => "The email address or the password is not right.".into(),
            Self::EmailNotVerified => "Your email address is not confirmed yet: follow the link \
                                       we sent, or ask for a new one at /signup/resend."
                .into(),
            Self::AccountDisabled { .. } => {
                "This account has been disabled. Contact the site's administrators.".into()
            }
            Self::TooManyFailures { wait_secs } => format!(
                "Too many failed sign-ins for this address: wait {wait_secs} seconds and try again."
            ),
            Self::AttemptsInFlight => "Too many sign-ins for this address are being checked: \
                                       try again in a moment."
                .into(),
            Self::NoRefreshToken => {
                "Send the refresh token as {\"refresh_token\": …} or its cookie.".into()
            }
            Self::NoSession => {
                "There is no session to sign out of: send its access or refresh token.".into()
            }
            Self::RefreshConflict => "A value is already in use.".into(),
            Self::RefreshInvalid => "This refresh token is not valid: sign in again.".into(),
            Self::SessionExpired => "This session has expired: sign in again.".into(),
            Self::RefreshReused => "This refresh token was already used, so the session has \
                                    been ended for safety: sign in again."
                .into(),
            Self::ResetLinkInvalid => "This reset link is not valid: it may have been used \
                                       already or mistyped. Ask for a new one at /login/forgot."
                .into(),
            Self::ResetLinkExpired => {
                "This reset link has expired. Ask for a new one at /login/forgot.".into()
            }
            Self::SessionEnded => {
                "This session has ended, or its account is closed or disabled: sign in again."
                    .into()
            }
            Self::SecondStepEnded => "This sign-in has ended (it took more than five minutes, \
                                      had too many wrong codes, or was finished already): \
                                      sign in again."
                .into(),
        }
    }
}

impl From<LoginError> for Error {
    fn from(refusal: LoginError) -> Self {
        let message = refusal.message();
        let unauthorized = |code| Error::Unauthorized {
            code,
            message: message.clone(),
        };
        match refusal {
            LoginError::InvalidCredentials => unauthorized("invalid_credentials"),
            LoginError::NoRefreshToken | LoginError::NoSession => unauthorized("not_authenticated"),
            LoginError::RefreshInvalid => unauthorized("token_invalid"),
            LoginError::SessionExpired => unauthorized("session_expired"),
            LoginError::RefreshReused => unauthorized("refresh_token_reused"),
            LoginError::SessionEnded => unauthorized("session_revoked"),
            LoginError::SecondStepEnded => unauthorized("second_step_ended"),
            LoginError::AccountDisabled { at_refresh: true } => unauthorized("account_disabled"),
            LoginError::AccountDisabled { at_refresh: false } => Error::Forbidden {
                code: "account_disabled",
                message,
            },
            LoginError::EmailNotVerified => Error::Forbidden {
                code: "email_not_verified",
                message,
            },
            LoginError::TooManyFailures { wait_secs } => Error::TooManyRequests {
                code: "too_many_attempts",
                message,
                retry_after_secs: u32::try_from(wait_secs).unwrap_or(u32::MAX),
            },
            LoginError::AttemptsInFlight => Error::TooManyRequests {
                code: "too_many_attempts",
                message,
                retry_after_secs: 1,
            },
            LoginError::RefreshConflict => Error::Conflict {
                code: "refresh_conflict",
                fields: FieldErrors::from([(
                    "refresh_token".to_owned(),
                    "was exchanged a moment ago by another request of yours: use the tokens \
                     that request received"
                        .to_owned(),
                )]),
            },
            LoginError::ResetLinkInvalid => Error::BadRequest {
                code: "token_invalid",
                message,
            },
            LoginError::ResetLinkExpired => Error::BadRequest {
                code: "token_expired",
                message,
            },
        }
    }
}
