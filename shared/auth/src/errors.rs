//! The refusals of auth's extractors and checks, each with the stable code API clients
//! match on; every service that trusts tokens answers them alike.

use flotilla_kit::Error;

use crate::TokenError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// 401: no access token at all.
    NotAuthenticated,
    /// 401: a token that does not hold (expired, revoked, forged…).
    Token(TokenError),
    /// 403: a change a browser sent from another site.
    CrossOrigin,
    /// 403: a cookie-authenticated change without the session's form token.
    CsrfInvalid,
    /// 403: the route needs a confirmed address.
    EmailNotVerified,
    /// 403: the route needs the admin role.
    AdminOnly,
}

impl From<AuthError> for Error {
    fn from(refusal: AuthError) -> Self {
        let forbidden = |code, message: &str| Error::Forbidden {
            code,
            message: message.to_owned(),
        };
        match refusal {
            AuthError::NotAuthenticated => Error::Unauthorized {
                code: "not_authenticated",
                message: "Sign in first: send an access token as `Authorization: Bearer …` \
                          or the session cookie."
                    .into(),
            },
            AuthError::Token(e) => Error::Unauthorized {
                code: e.code(),
                message: match e {
                    TokenError::Expired => {
                        "The access token has expired: get a new one from /login/refresh."
                    }
                    TokenError::Revoked => "This session has been signed out: sign in again.",
                    _ => "The access token is not valid: sign in again.",
                }
                .into(),
            },
            AuthError::CrossOrigin => forbidden(
                "cross_origin_request",
                "This change must be made from this site's own pages.",
            ),
            AuthError::CsrfInvalid => forbidden(
                "csrf_token_invalid",
                "The form token is missing or out of date: reload the page and try again.",
            ),
            AuthError::EmailNotVerified => forbidden(
                "email_not_verified",
                "Confirm your email address first; a new link is at /signup/resend.",
            ),
            AuthError::AdminOnly => forbidden("admin_only", "Only administrators may do this."),
        }
    }
}
