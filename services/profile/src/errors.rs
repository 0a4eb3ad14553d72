//! Profile's own refusals, each with the stable code API clients match on. Bad fields
//! are the kit's 422 (`invalid_input`), a missing or refused token and a cross-site
//! change are flotilla-auth's 401/403, a wrong or throttled password check its
//! [`flotilla_auth::CheckRefusal`], and a full hashing pool is
//! [`flotilla_auth::PoolError::answer`].

use flotilla_kit::{Error, FieldErrors};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileError {
    /// 401: the token is valid, but its account is closed or disabled.
    AccountGone,
    /// 409: another account has the name (whatever its case).
    UsernameTaken,
    /// 429: a change of address was asked for less than a minute ago.
    EmailChangeTooSoon { wait_secs: i64 },
    /// 400: a change-of-address link used already, or never issued.
    LinkInvalid,
    /// 400.
    LinkExpired,
    /// 409: the address became another account's before the link was used.
    EmailTaken,
    /// 409: the account has an authenticator app already (remove it first).
    TotpExists,
    /// 409: the account has no authenticator app (to remove, or to make codes for).
    NoTotp,
    /// 400: an authenticator app's setup form older than half an hour, or another
    /// account's.
    SetupExpired,
    /// 409: the new passkey is registered already (to this account or another).
    PasskeyKnown,
}

impl ProfileError {
    /// What the person is told (also on the page of a link that does not work).
    pub fn message(self) -> String {
        match self {
            Self::AccountGone => "This account is closed or disabled.".into(),
            Self::UsernameTaken => "A value is already in use.".into(),
            Self::EmailChangeTooSoon { wait_secs } => format!(
                "A change of address was asked for less than a minute ago: wait {wait_secs} \
                 seconds and ask again (the new request replaces the earlier one)."
            ),
            Self::LinkInvalid => {
                "This link is not valid: it may have been used already or mistyped.".into()
            }
            Self::LinkExpired => {
                "This link has expired: ask for the change again from your account page.".into()
            }
            Self::EmailTaken => {
                "Another account uses this address now, so it cannot become yours.".into()
            }
            Self::TotpExists => "This account has an authenticator app already: remove it \
                                 first to set up another."
                .into(),
            Self::NoTotp => "This account has no second factor to change.".into(),
            Self::PasskeyKnown => "This passkey is registered already.".into(),
            Self::SetupExpired => "This setup form has expired (after half an hour): start \
                                   again, and scan the new code."
                .into(),
        }
    }
}

impl From<ProfileError> for Error {
    fn from(refusal: ProfileError) -> Self {
        let message = refusal.message();
        let taken = |code, field: &str, problem: &str| Error::Conflict {
            code,
            fields: FieldErrors::from([(field.to_owned(), problem.to_owned())]),
        };
        let wait = |secs: i64, default| u32::try_from(secs).unwrap_or(default);
        match refusal {
            ProfileError::AccountGone => Error::Unauthorized {
                code: "account_gone",
                message,
            },
            ProfileError::EmailChangeTooSoon { wait_secs } => Error::TooManyRequests {
                code: "too_many_requests",
                message,
                retry_after_secs: wait(wait_secs, 60),
            },
            ProfileError::UsernameTaken => {
                taken("username_taken", "username", "is taken; choose another")
            }
            ProfileError::EmailTaken => taken("email_taken", "new_email", "is taken"),
            ProfileError::LinkInvalid => Error::BadRequest {
                code: "token_invalid",
                message,
            },
            ProfileError::LinkExpired => Error::BadRequest {
                code: "token_expired",
                message,
            },
            ProfileError::TotpExists => Error::Refused {
                code: "totp_exists",
                message,
            },
            ProfileError::NoTotp => Error::Refused {
                code: "no_totp",
                message,
            },
            ProfileError::PasskeyKnown => Error::Refused {
                code: "passkey_known",
                message,
            },
            ProfileError::SetupExpired => Error::BadRequest {
                code: "setup_expired",
                message,
            },
        }
    }
}
