//! Signup's own refusals, each with the stable code API clients match on. Bad fields
//! are the kit's 422 (`invalid_input`); a full hashing pool is
//! [`flotilla_auth::PoolError::answer`].

use flotilla_kit::{Error, FieldErrors};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupError {
    /// 409 `username_taken`: another account has the name (whatever its case).
    UsernameTaken,
    /// 400 `token_invalid`: a verification link used already, or never issued.
    LinkInvalid,
    /// 400 `token_expired`.
    LinkExpired,
}

impl SignupError {
    /// What the person is told (also on the page of a link that does not work).
    pub fn message(self) -> &'static str {
        match self {
            Self::UsernameTaken => "A value is already in use.",
            Self::LinkInvalid => {
                "This verification link is not valid: it may have been used already or \
                 mistyped. Ask for a new one at /signup/resend."
            }
            Self::LinkExpired => {
                "This verification link has expired. Ask for a new one at /signup/resend."
            }
        }
    }
}

impl From<SignupError> for Error {
    fn from(refusal: SignupError) -> Self {
        match refusal {
            SignupError::UsernameTaken => Error::Conflict {
                code: "username_taken",
                fields: FieldErrors::from([(
                    "username".to_owned(),
                    "is taken; choose another".to_owned(),
                )]),
            },
            SignupError::LinkInvalid => Error::BadRequest {
                code: "token_invalid",
                message: refusal.message().to_owned(),
            },
            SignupError::LinkExpired => Error::BadRequest {
                code: "token_expired",
                message: refusal.message().to_owned(),
            },
        }
    }
}
