//! Account fields every service checks the same way: email addresses and usernames,
//! turned into these types at the top of a handler; nothing below checks them again.

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

/// Names that would mislead other people or collide with the site's paths
/// (`/people/index` is the list of public profiles).
const RESERVED: [&str; 13] = [
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
    "index",
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
}
