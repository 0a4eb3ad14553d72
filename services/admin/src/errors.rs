//! Admin's own refusals, each with the stable code API clients match on. A missing or
//! refused token is flotilla-auth's 401, a signed-in account without the admin role
//! its 403 (`admin_only`), bad fields the kit's 422.

use flotilla_kit::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// 401: the token is valid, but its account is closed or disabled now.
    AccountGone,
    /// 403: a change needs a sign-in or a password confirmation within the window
    /// (`FLOTILLA_ADMIN_REAUTH_SECS`); confirm at `/login/confirm`, then repeat.
    /// `with_code`: the admin's account has a second factor, so the confirmation takes
    /// its code too (a session confirmed with the password alone is not enough).
    ReauthenticationRequired { with_code: bool },
    /// 403: `FLOTILLA_ADMIN_REQUIRE_MFA` is on and the admin's account has no second
    /// factor: the console stays shut until they set one up.
    SecondFactorRequired,
    /// 404: no account has this id.
    UnknownAccount,
    /// 409: the change would leave no admin who can act (`what`: demote, disable,
    /// delete).
    LastAdmin { what: &'static str },
    /// 404: no job has this id.
    UnknownJob,
    /// 409 `not_dead`: only a dead job can be retried (`state`: what it is now).
    JobNotDead { state: &'static str },
    /// 409 `link_erased`: a dead mail whose link's token was erased cannot be sent
    /// again (its link would not work).
    LinkErased,
    /// 409: the account is closed (waiting for its purge): no action applies.
    AccountClosed,
    /// 409: a confirmation link for an address already confirmed.
    AlreadyVerified,
    /// 409: a disabled account cannot be made admin; enable it first.
    TargetDisabled,
    /// 409: a reset of second factors for an account that has none (no authenticator
    /// app, passkey or recovery code): nothing would change.
    NoSecondFactor,
}

impl AdminError {
    pub fn message(&self) -> String {
        match self {
            Self::AccountGone => "Your account is closed or disabled.".into(),
            Self::ReauthenticationRequired { with_code: false } => {
                "Confirm your password first (changes need a sign-in or a confirmation \
                 within the last minutes): POST /login/confirm, then repeat the request."
                    .into()
            }
            Self::ReauthenticationRequired { with_code: true } => {
                "Confirm your password and your second factor first (your account has one, \
                 so changes need a sign-in or a confirmation with it within the last \
                 minutes): POST /login/confirm with a code or a passkey, then repeat the \
                 request."
                    .into()
            }
            Self::SecondFactorRequired => {
                "The console needs a second factor: set up an authenticator app or a passkey \
                 on your account page first (/profile#two-step)."
                    .into()
            }
            Self::UnknownAccount => "No account has this id.".into(),
            Self::LastAdmin { what } => format!(
                "This is the last admin who can act: it cannot be {what}. Promote another \
                 account first."
            ),
            Self::UnknownJob => "No job has this id.".into(),
            Self::JobNotDead { state } => {
                format!("Only a dead job can be retried; this one is {state}.")
            }
            Self::LinkErased => "This mail's link was erased when it failed for good, so sent \
                 again it would not work. Have a new link sent instead (resend the \
                 verification, or a password reset)."
                .into(),
            Self::AccountClosed => {
                "This account is closed and waits for its purge: nothing more can be done \
                 to it."
                    .into()
            }
            Self::AlreadyVerified => "This account's address is confirmed already.".into(),
            Self::TargetDisabled => {
                "This account is disabled: enable it before making it an admin.".into()
            }
            Self::NoSecondFactor => {
                "This account has no second factor (no authenticator app, passkey or \
                 recovery code): there is nothing to reset."
                    .into()
            }
        }
    }
}

impl From<AdminError> for Error {
    fn from(refusal: AdminError) -> Self {
        let message = refusal.message();
        match refusal {
            AdminError::AccountGone => Error::Unauthorized {
                code: "account_unavailable",
                message,
            },
            AdminError::ReauthenticationRequired { .. } => Error::Forbidden {
                code: "reauthentication_required",
                message,
            },
            AdminError::SecondFactorRequired => Error::Forbidden {
                code: "second_factor_required",
                message,
            },
            AdminError::UnknownAccount => Error::NotFound,
            AdminError::LastAdmin { .. } => Error::Refused {
                code: "last_admin",
                message,
            },
            AdminError::UnknownJob => Error::NotFound,
            AdminError::JobNotDead { .. } => Error::Refused {
                code: "not_dead",
                message,
            },
            AdminError::LinkErased => Error::Refused {
                code: "link_erased",
                message,
            },
            AdminError::AccountClosed => Error::Refused {
                code: "account_closed",
                message,
            },
            AdminError::AlreadyVerified => Error::Refused {
                code: "already_verified",
                message,
            },
            AdminError::TargetDisabled => Error::Refused {
                code: "account_disabled",
                message,
            },
            AdminError::NoSecondFactor => Error::Refused {
                code: "no_second_factor",
                message,
            },
        }
    }
}
