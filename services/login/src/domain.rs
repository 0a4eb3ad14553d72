//! Login input, checked at the top of each handler.

#[cfg(test)]
use flotilla_auth::Code;
use flotilla_auth::{CarriesCsrf, Proof};
use flotilla_kit::FieldErrors;
use serde::Deserialize;
use utoipa::ToSchema;

/// Longest address accepted (RFC 5321).
const MAX_EMAIL: usize = 254;
/// Longer passwords are refused before hashing (the policy's ceiling is lower).
const MAX_PASSWORD: usize = 1024;

/// A sign-in with a password: the form's fields or a JSON body.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    /// The account's address (any case).
    #[serde(default)]
    #[schema(example = "ada@example.org")]
    pub email: String,
    /// At most 1024 characters.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// Where a browser goes afterwards (a path of this site; default `/profile`).
    #[serde(default)]
    #[schema(example = "/profile")]
    pub next: Option<String>,
}

/// A sign-in attempt that is worth checking.
pub struct Attempt {
    /// Lower-cased: how accounts are looked up.
    pub lookup: String,
    pub password: String,
}

impl LoginInput {
    pub fn check(&self) -> Result<Attempt, FieldErrors> {
        let mut errors = FieldErrors::new();
        let email = self.email.trim();
        if email.is_empty() {
            errors.insert("email".into(), "is required".into());
        } else if email.chars().count() > MAX_EMAIL || !email.contains('@') {
            errors.insert(
                "email".into(),
                "must be an address like name@example.org".into(),
            );
        }
        if self.password.is_empty() {
            errors.insert("password".into(), "is required".into());
        } else if self.password.chars().count() > MAX_PASSWORD {
            errors.insert(
                "password".into(),
                format!("must be at most {MAX_PASSWORD} characters"),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Attempt {
            lookup: email.to_lowercase(),
            password: self.password.clone(),
        })
    }
}

/// A `next` that stays on this site: a path, not `//host` or `/\host`, no scheme.
pub fn safe_next(next: Option<&str>) -> Option<String> {
    let next = next?.trim();
    let safe = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 512
        && !next.chars().any(|c| c.is_control() || c == '\\');
    safe.then(|| next.to_owned())
}

/// Where a browser goes after signing in.
pub fn landing(next: Option<&str>) -> String {
    safe_next(next).unwrap_or_else(|| "/profile".to_owned())
}

/// `POST /login/confirm`: the signed-in person's password again.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmInput {
    /// The account's password (at most 1024 characters).
    #[serde(default)]
    pub password: String,
    /// The second factor's code, asked for when the account has one (six digits from
    /// the authenticator app, or a recovery code); or a passkey's answer to
    /// `passkey_challenge`.
    #[serde(default)]
    pub code: Option<String>,
    /// A passkey's answer (`PublicKeyCredential` JSON) to `passkey_challenge`, instead
    /// of `code`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The `challenge` of `POST /login/confirm/passkey`'s answer.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// Where a browser goes afterwards (same site only; default `/profile`).
    #[serde(default)]
    pub next: Option<String>,
    /// The session's form token (the `csrf` claim), for a post with the access cookie
    /// (or the `x-csrf-token` header instead).
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for ConfirmInput {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

impl ConfirmInput {
    /// The password to check (no policy: it is the one set) and, when `needs_code`
    /// (the account has a second factor), the code; or what is wrong with them.
    pub fn check(&self, needs_code: bool) -> Result<(String, Option<Proof>), flotilla_kit::Error> {
        let mut errors = FieldErrors::new();
        if self.password.is_empty() {
            errors.insert("password".into(), "is required".into());
        } else if self.password.chars().count() > MAX_PASSWORD {
            errors.insert(
                "password".into(),
                format!("must be at most {MAX_PASSWORD} characters"),
            );
        }
        let code = match needs_code {
            false => None,
            true => match Proof::read(
                self.code.as_deref(),
                self.passkey.as_deref(),
                self.passkey_challenge.as_deref(),
            ) {
                Ok(proof) => Some(proof),
                Err((field, problem)) => {
                    errors.insert(field.into(), problem.into());
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(flotilla_kit::Error::Invalid(errors));
        }
        Ok((self.password.clone(), code))
    }
}

/// `POST /login/second-step`: a code for the sign-in begun with a password.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondStepInput {
    /// Six digits from the authenticator app, or a recovery code.
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: String,
    /// Or a passkey's answer (`PublicKeyCredential` JSON) to `passkey_challenge`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The `challenge` of `POST /login/second-step/passkey`'s answer.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// An API client's step (`POST /login`'s `second_step_token`); a browser's is its
    /// cookie.
    #[serde(default)]
    pub second_step_token: Option<String>,
    /// Where a browser goes afterwards (a path of this site; default `/profile`).
    #[serde(default)]
    pub next: Option<String>,
}

/// `POST /login/refresh`: the refresh token, when it does not come as its cookie.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshInput {
    /// The refresh token of the last sign-in or refresh (used once).
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// Logout and logout-all: a form sends its token; an API client may name the
/// session by its refresh token.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutInput {
    /// The session's form token (the `csrf` claim), for a post with the access cookie
    /// (or the `x-csrf-token` header instead).
    #[serde(default)]
    pub csrf_token: Option<String>,
    /// `POST /login/logout` without a live access token: the session of this refresh
    /// token (else of the refresh cookie) ends.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Where a form goes afterwards (a path of this site; else the sign-in page with
    /// "You are signed out"), e.g. back to the app whose Sign out button it was.
    #[serde(default)]
    pub next: Option<String>,
}

impl CarriesCsrf for LogoutInput {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// `POST /login/forgot`: the address to mail a reset link to.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotInput {
    #[serde(default)]
    #[schema(example = "ada@example.org")]
    pub email: String,
}

impl ForgotInput {
    /// The lower-cased address, or what is wrong with it.
    pub fn check(&self) -> Result<String, String> {
        let email = self.email.trim();
        if email.is_empty() {
            return Err("is required".into());
        }
        if email.chars().count() > MAX_EMAIL || !email.contains('@') {
            return Err("must be an address like name@example.org".into());
        }
        Ok(email.to_lowercase())
    }
}

/// `POST /login/reset`: a reset link's token and the new password.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetInput {
    /// The token of the reset mail's link.
    #[serde(default)]
    pub token: String,
    /// The new password, by the signup rules: long enough (12 characters by default),
    /// not a common password, not containing the address's first part.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

/// A refresh or reset token exactly as sent (untrimmed): base64url, at most 128
/// characters ([`flotilla_accounts::plausible_token`]'s rule).
pub fn plausible_token(token: &str) -> bool {
    flotilla_accounts::plausible_token(token) == Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/profile")), Some("/profile".into()));
        assert_eq!(
            safe_next(Some("/profile?tab=sessions")),
            Some("/profile?tab=sessions".into())
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "profile",
            "/a\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(landing(None), "/profile");
        assert_eq!(landing(Some("//evil")), "/profile");
    }

    #[test]
    fn a_login_names_each_missing_field() {
        let errors = LoginInput::default().check().err().unwrap();
        assert_eq!(errors["email"], "is required");
        assert_eq!(errors["password"], "is required");
        let input = LoginInput {
            email: "  Ada@Example.org ".into(),
            password: "x".into(),
            next: None,
        };
        let attempt = input.check().ok().unwrap();
        assert_eq!(attempt.lookup, "ada@example.org");
        let long = LoginInput {
            email: "a@b.c".into(),
            password: "p".repeat(2000),
            next: None,
        };
        assert!(long.check().err().unwrap().contains_key("password"));
    }

    #[test]
    fn a_confirmation_needs_a_password_of_sane_length() {
        let refused = |input: ConfirmInput| input.check(false).err().unwrap().fields().cloned();
        let missing = refused(ConfirmInput::default()).unwrap();
        assert_eq!(missing["password"], "is required");
        let long = ConfirmInput {
            password: "p".repeat(1025),
            ..ConfirmInput::default()
        };
        assert!(refused(long).unwrap()["password"].contains("at most 1024"));
        let fine = ConfirmInput {
            password: " spaces count ".into(),
            ..ConfirmInput::default()
        };
        assert_eq!(fine.check(false).ok().unwrap().0, " spaces count ");
        // With a second factor, its code too: required, and a code's shape.
        let fields = ConfirmInput {
            code: Some("12345".into()),
            ..fine
        }
        .check(true)
        .err()
        .unwrap();
        let fields = fields.fields().unwrap();
        assert!(fields["code"].contains("6-digit"), "{fields:?}");
        let both = ConfirmInput {
            password: "pw".into(),
            code: Some("123 456".into()),
            ..ConfirmInput::default()
        };
        let (_, code) = both.check(true).ok().unwrap();
        assert_eq!(code, Some(Proof::Code(Code::Totp("123456".into()))));
        let fields = ConfirmInput::default().check(true).err().unwrap();
        let fields = fields.fields().unwrap();
        assert_eq!(fields["code"], "is required");
    }

    #[test]
    fn tokens_are_short_base64url() {
        assert!(plausible_token("abc-DEF_123"));
        assert!(!plausible_token(""));
        assert!(!plausible_token("a b"));
        assert!(!plausible_token(&"a".repeat(200)));
    }
}
