//! Password policy: length bounds, no common passwords, no email local part.
//! No composition rules (digits, symbols…): they push people to weaker patterns.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

/// The 10,000 most common passwords, lower-cased.
/// Source: zxcvbn frequency list, MIT.
static COMMON: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_lowercase)
        .collect()
});

/// A password that passed a [`PasswordPolicy`]. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Lengths are counted in Unicode scalar values (`chars()`), not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_chars: usize,
    pub max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 12,
            max_chars: 128,
        }
    }
}

impl PasswordPolicy {
    /// Accepts `candidate` for the account `email`, or says what is wrong with it.
    /// Length is checked first, then the other rules.
    pub fn check(&self, candidate: &str, email: &str) -> Result<Password, String> {
        let chars = candidate.chars().count();
        if chars < self.min_chars {
            return Err(format!("must be at least {} characters", self.min_chars));
        }
        if chars > self.max_chars {
            return Err(format!("must be at most {} characters", self.max_chars));
        }
        if candidate.trim().is_empty() {
            return Err("must not be only spaces".to_owned());
        }
        let lower = candidate.to_lowercase();
        if COMMON.contains(&lower) || COMMON.contains(lower.trim()) {
            return Err("is one of the 10,000 most common passwords; choose another".to_owned());
        }
        // The part before the last '@'; the whole string if there is none.
        let local = email.rsplit_once('@').map_or(email, |(local, _)| local);
        if local.chars().count() >= 3 && lower.contains(&local.to_lowercase()) {
            return Err("must not contain the first part of your email address".to_owned());
        }
        Ok(Password(candidate.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "jean.dupont@example.org";

    fn check(candidate: &str) -> Result<Password, String> {
        PasswordPolicy::default().check(candidate, EMAIL)
    }

    #[test]
    fn accepts_a_long_passphrase() {
        let password = check("correct horse battery staple").unwrap();
        assert_eq!(password.expose(), "correct horse battery staple");
    }

    #[test]
    fn refuses_too_short() {
        assert_eq!(
            check("short pass"),
            Err("must be at least 12 characters".to_owned())
        );
        assert_eq!(check(""), Err("must be at least 12 characters".to_owned()));
    }

    #[test]
    fn refuses_too_long() {
        let long = "a".repeat(129);
        assert_eq!(
            check(&long),
            Err("must be at most 128 characters".to_owned())
        );
        assert!(check(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn counts_chars_not_bytes() {
        // 11 'é' are 22 bytes but only 11 characters.
        assert_eq!(
            check(&"é".repeat(11)),
            Err("must be at least 12 characters".to_owned())
        );
        assert!(check(&"é".repeat(12)).is_ok());
        assert!(check(&"🦀".repeat(128)).is_ok());
        assert_eq!(
            check(&"🦀".repeat(129)),
            Err("must be at most 128 characters".to_owned())
        );
    }

    #[test]
    fn honours_custom_bounds() {
        let policy = PasswordPolicy {
            min_chars: 16,
            max_chars: 20,
        };
        assert_eq!(
            policy.check("fifteen chars!!", EMAIL),
            Err("must be at least 16 characters".to_owned())
        );
        assert_eq!(
            policy.check("twenty-one characters", EMAIL),
            Err("must be at most 20 characters".to_owned())
        );
    }

    #[test]
    fn length_is_checked_first() {
        // Common and too short: the length message wins.
        assert_eq!(
            check("password"),
            Err("must be at least 12 characters".to_owned())
        );
    }

    #[test]
    fn refuses_only_whitespace() {
        let message = Err("must not be only spaces".to_owned());
        assert_eq!(check(&" ".repeat(12)), message);
        assert_eq!(check(" \t\n \u{00a0}        "), message);
    }

    #[test]
    fn refuses_common_passwords_in_any_case_and_padded() {
        let message = Err("is one of the 10,000 most common passwords; choose another".to_owned());
        // Both are in common-passwords.txt.
        assert!(COMMON.contains("qwerty123456"));
        assert!(COMMON.contains("leavemealone"));
        assert_eq!(check("qwerty123456"), message);
        assert_eq!(check("QWERTY123456"), message);
        assert_eq!(check("LeaveMeAlone"), message);
        assert_eq!(check("  qwerty123456 "), message);
    }

    #[test]
    fn common_list_is_loaded() {
        assert_eq!(COMMON.len(), 10_000);
        assert!(COMMON.contains("123456"));
    }

    #[test]
    fn refuses_email_local_part() {
        let message = Err("must not contain the first part of your email address".to_owned());
        assert_eq!(check("my jean.dupont secret"), message);
        assert_eq!(check("MY JEAN.DUPONT SECRET"), message);
        // The part before the last '@' counts.
        assert_eq!(
            PasswordPolicy::default().check("xx \"a@b\"c-long-enough", "\"a@b\"c@example.org"),
            message
        );
        // The domain alone is fine.
        assert!(check("example.org is my home").is_ok());
    }

    #[test]
    fn ignores_short_email_local_part() {
        let policy = PasswordPolicy::default();
        assert!(
            policy
                .check("jo likes long walks", "jo@example.org")
                .is_ok()
        );
        assert_eq!(
            policy.check("joe likes long walks", "joe@example.org"),
            Err("must not contain the first part of your email address".to_owned())
        );
    }

    #[test]
    fn debug_does_not_leak() {
        let password = check("correct horse battery staple").unwrap();
        let shown = format!("{password:?} {:?}", Some(&password));
        assert!(!shown.contains("horse"), "{shown}");
        assert_eq!(format!("{password:?}"), "Password(***)");
    }
}
