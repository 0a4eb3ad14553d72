//! Signup input turned into domain types at the top of the handler; nothing below
//! checks it again.

use flotilla_auth::{Password, PasswordPolicy};
use flotilla_kit::FieldErrors;
use serde::Deserialize;

/// An address that passed the checks, trimmed, with its domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("is required".into());
        }
        if trimmed.chars().count() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err("must be an address like name@example.org".into());
        };
        if local.is_empty() || local.len() > 64 {
            return Err("must have 1 to 64 characters before the @".into());
        }
        if local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == '<' || c == '>')
        {
            return Err("must not contain spaces, @, < or > before the domain".into());
        }
        let domain = domain.to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err("must end in a domain name such as example.org".into());
        }
        Ok(Self(format!("{local}@{domain}")))
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A username: 3 to 32 of a-z, 0-9, `_` and `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

/// Names that would mislead other people or collide with the site's paths.
const RESERVED: [&str; 12] = [
    "admin",
    "administrator",
    "root",
    "support",
    "help",
    "flotilla",
    "system",
    "signup",
    "login",
    "profile",
    "people",
    "security",
];

impl Username {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        let length = name.chars().count();
        if !(3..=32).contains(&length) {
            return Err("must be 3 to 32 characters".into());
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err("may contain only lower-case letters a-z, digits, _ and -".into());
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("must start with a letter or a digit".into());
        }
        if RESERVED.contains(&name) {
            return Err("is reserved; choose another".into());
        }
        Ok(Self(name.to_owned()))
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What a signup form or JSON body carries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupInput {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendInput {
    #[serde(default)]
    pub email: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_their_domain_lower_cased() {
        let email = EmailAddress::parse("  Ada.Lovelace@Example.ORG ").unwrap();
        assert_eq!(email.as_ref(), "Ada.Lovelace@example.org");
        assert_eq!(email.local_part(), "Ada.Lovelace");
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (raw, problem) in [
            ("", "is required"),
            ("ada", "must be an address"),
            ("@example.org", "before the @"),
            ("ada@localhost", "domain name"),
            ("ada@exa mple.org", "domain name"),
            ("ada@-example.org", "domain name"),
            ("a da@example.org", "must not contain spaces"),
        ] {
            let err = EmailAddress::parse(raw).unwrap_err();
            assert!(err.contains(problem), "{raw:?}: {err}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert!(EmailAddress::parse(&long).unwrap_err().contains("254"));
    }

    #[test]
    fn usernames_follow_the_rules() {
        assert!(Username::parse("ada_l-1").is_ok());
        assert!(Username::parse("ab").unwrap_err().contains("3 to 32"));
        assert!(Username::parse("Ada").unwrap_err().contains("lower-case"));
        assert!(Username::parse("_ada").unwrap_err().contains("start with"));
        assert!(Username::parse("admin").unwrap_err().contains("reserved"));
    }

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
