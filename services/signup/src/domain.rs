//! Signup input turned into domain types at the top of the handler; nothing below
//! checks it again.

pub use flotilla_accounts::{EmailAddress, Username, plausible_token};
use flotilla_auth::{Password, PasswordPolicy};
use flotilla_kit::FieldErrors;
use serde::Deserialize;
use utoipa::ToSchema;

/// What a signup form or JSON body carries.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupInput {
    /// The address the verification link goes to.
    #[serde(default)]
    #[schema(required, format = Email, max_length = 254, example = "ada@example.org")]
    pub email: String,
    /// 12 to 256 characters, not a common password, not the address.
    #[serde(default)]
    #[schema(
        required,
        min_length = 12,
        max_length = 256,
        example = "correct horse battery staple"
    )]
    pub password: String,
    /// Optional: 3 to 32 of `a-z 0-9 _ . -`, starting with a letter or digit.
    #[serde(default)]
    pub username: Option<String>,
}

/// A signup that passed every check.
#[derive(Debug)]
pub struct NewAccount {
    pub email: EmailAddress,
    pub password: Password,
    pub username: Option<Username>,
}

impl NewAccount {
    /// Checks every field and names each that is wrong.
    pub fn parse(input: &SignupInput, policy: &PasswordPolicy) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        let email = EmailAddress::parse(&input.email)
            .map_err(|e| errors.insert("email".into(), e))
            .ok();
        let password = if input.password.is_empty() {
            errors.insert("password".into(), "is required".into());
            None
        } else {
            policy
                .check(
                    &input.password,
                    email.as_ref().map(|e| e.as_ref()).unwrap_or(""),
                )
                .map_err(|e| errors.insert("password".into(), e))
                .ok()
        };
        let username = match input.username.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Username::parse(raw)
                .map_err(|e| errors.insert("username".into(), e))
                .ok(),
        };
        match (email, password) {
            (Some(email), Some(password)) if errors.is_empty() => Ok(Self {
                email,
                password,
                username,
            }),
            _ => Err(errors),
        }
    }
}

/// `{"email"}` of a resend request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendInput {
    #[serde(default)]
    #[schema(required, format = Email, max_length = 254, example = "ada@example.org")]
    pub email: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_named_at_once() {
        let input = SignupInput {
            email: "nope".into(),
            password: "short".into(),
            username: Some("A!".into()),
        };
        let errors = NewAccount::parse(&input, &PasswordPolicy::default()).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        let input = SignupInput {
            email: "ada@example.org".into(),
            password: "ada-correct-horse".into(),
            username: None,
        };
        let errors = NewAccount::parse(&input, &PasswordPolicy::default()).unwrap_err();
        assert!(errors["password"].contains("email"), "{errors:?}");
    }
}

/// What the verification page's form or a JSON client posts: the link's token.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    /// The token of the verification mail's link.
    #[serde(default)]
    #[schema(required)]
    pub token: String,
}

impl VerifyInput {
    /// The token, when it can be one (the hash of anything else matches nothing, but
    /// need not be looked up).
    pub fn token(&self) -> Option<&str> {
        plausible_token(&self.token)
    }
}
