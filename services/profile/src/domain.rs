//! Profile input, checked at the top of each handler into these types.

use std::collections::BTreeMap;

use flotilla_accounts::{EmailAddress, Username, plausible_token};
use flotilla_auth::CarriesCsrf;
use flotilla_kit::FieldErrors;
use serde::Deserialize;
use utoipa::ToSchema;

pub const MAX_DISPLAY_NAME: usize = 64;
pub const MAX_BIO: usize = 2000;

/// A partial change of the profile: each field present is set; `None` inside clears.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProfilePatch {
    pub username: Option<Option<Username>>,
    pub display_name: Option<Option<String>>,
    pub bio: Option<Option<String>>,
    pub public: Option<bool>,
}

impl ProfilePatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Reads a JSON object; every unknown field and every bad value is named.
    pub fn from_json(
        map: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, FieldErrors> {
        let mut patch = Self::default();
        let mut errors = FieldErrors::new();
        for (field, value) in map {
            let text = || match value {
                serde_json::Value::Null => Ok(None),
                serde_json::Value::String(s) => Ok(Some(s.clone())),
                _ => Err("must be a string or null".to_owned()),
            };
            let outcome = match field.as_str() {
                "username" => text().and_then(|v| patch.set_username(v.as_deref())),
                "display_name" => text().and_then(|v| patch.set_display_name(v.as_deref())),
                "bio" => text().and_then(|v| patch.set_bio(v.as_deref())),
                "public" => match value {
                    serde_json::Value::Bool(b) => {
                        patch.public = Some(*b);
                        Ok(())
                    }
                    _ => Err("must be true or false".to_owned()),
                },
                "csrf_token" => Ok(()),
                _ => Err(unknown_field()),
            };
            if let Err(problem) = outcome {
                errors.insert(field.clone(), problem);
            }
        }
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(errors)
        }
    }

    /// Reads the edit form: every field is present; an unticked box is `public` off.
    pub fn from_form(form: &BTreeMap<String, String>) -> Result<Self, FieldErrors> {
        let mut patch = Self::default();
        let mut errors = FieldErrors::new();
        for (field, value) in form {
            let outcome = match field.as_str() {
                "username" => patch.set_username(Some(value)),
                "display_name" => patch.set_display_name(Some(value)),
                "bio" => patch.set_bio(Some(value)),
                "public" => match value.as_str() {
                    "on" | "true" | "1" => Ok(()),
                    _ => Err("must be ticked or not".to_owned()),
                },
                "csrf_token" => Ok(()),
                _ => Err(unknown_field()),
            };
            if let Err(problem) = outcome {
                errors.insert(field.clone(), problem);
            }
        }
        patch.public = Some(form.contains_key("public"));
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(errors)
        }
    }

    fn set_username(&mut self, value: Option<&str>) -> Result<(), String> {
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        self.username = Some(value.map(Username::parse).transpose()?);
        Ok(())
    }

    fn set_display_name(&mut self, value: Option<&str>) -> Result<(), String> {
        self.display_name = Some(free_text(value, MAX_DISPLAY_NAME, false)?);
        Ok(())
    }

    fn set_bio(&mut self, value: Option<&str>) -> Result<(), String> {
        self.bio = Some(free_text(value, MAX_BIO, true)?);
        Ok(())
    }
}

fn unknown_field() -> String {
    "is not a field of the profile (username, display_name, bio, public)".to_owned()
}

/// Text stored as typed (trimmed), any Unicode, without control characters other than
/// line breaks and tabs in multi-line text; empty means none. A textarea sends line
/// breaks as CRLF: they are stored (and counted) as one `\n`, as the form's
/// `maxlength` counts them.
fn free_text(value: Option<&str>, max: usize, multiline: bool) -> Result<Option<String>, String> {
    let value = value.map(|v| v.replace("\r\n", "\n"));
    let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let length = value.chars().count();
    if length > max {
        return Err(format!(
            "must be at most {max} characters (it has {length})"
        ));
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
    if !value.chars().all(allowed) {
        return Err(if multiline {
            "must not contain control characters other than line breaks and tabs".into()
        } else {
            "must be one line without control characters".into()
        });
    }
    Ok(Some(value.to_owned()))
}

/// `POST /profile/password`: the current password, the new one, and the second factor
/// when the account has one.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Required.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub current_password: String,
    /// Required: 12 to 256 characters, not a common password, not the address.
    #[serde(default)]
    #[schema(example = "a new horse battery staple")]
    pub new_password: String,
    /// The second factor's code, when the account has one: the authenticator app's six
    /// digits or an unused recovery code (`xxxxx-xxxxx`).
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// Instead of `code`: a passkey's answer (`PublicKeyCredential` JSON) to
    /// `passkey_challenge`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The challenge token (`POST /login/confirm/passkey`) that `passkey` answers.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// The session's form token (a form post with the cookie; or the `x-csrf-token`
    /// header). Not needed with a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for PasswordChange {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// `POST /profile/email`: the new address, the password, and the second factor when
/// the account has one.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChange {
    /// Required: where the confirmation link goes (not the account's address now).
    #[serde(default)]
    #[schema(example = "ada@example.net")]
    pub new_email: String,
    /// Required: the account's password.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// The second factor's code, when the account has one: the authenticator app's six
    /// digits or an unused recovery code (`xxxxx-xxxxx`).
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// Instead of `code`: a passkey's answer (`PublicKeyCredential` JSON) to
    /// `passkey_challenge`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The challenge token (`POST /login/confirm/passkey`) that `passkey` answers.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// The session's form token (a form post with the cookie; or the `x-csrf-token`
    /// header). Not needed with a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for EmailChange {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

impl EmailChange {
    pub fn check(&self) -> Result<EmailAddress, FieldErrors> {
        let mut errors = FieldErrors::new();
        let email = EmailAddress::parse(&self.new_email)
            .map_err(|e| errors.insert("new_email".into(), e))
            .ok();
        if self.password.is_empty() {
            errors.insert("password".into(), "is required".into());
        }
        match email {
            Some(email) if errors.is_empty() => Ok(email),
            _ => Err(errors),
        }
    }
}

/// A request that only needs the form token (revoke, revoke-others). The body may be
/// empty.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    /// The session's form token (a form post with the cookie; or the `x-csrf-token`
    /// header). Not needed with a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for Confirm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// What the change-of-address page's form or a JSON client posts: the link's token.
/// No session is needed: the link proves the address.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkToken {
    /// The token of the confirmation mail's link.
    #[serde(default)]
    pub token: String,
}

impl LinkToken {
    /// The token, when it can be one: trimmed, at most 128 URL-safe characters.
    pub fn token(&self) -> Option<&str> {
        plausible_token(&self.token)
    }
}

/// Closing the account: the password again (and the second factor when the account has
/// one).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deletion {
    /// Required: the account's password.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// The second factor's code, when the account has one: the authenticator app's six
    /// digits or an unused recovery code (`xxxxx-xxxxx`).
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// Instead of `code`: a passkey's answer (`PublicKeyCredential` JSON) to
    /// `passkey_challenge`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The challenge token (`POST /login/confirm/passkey`) that `passkey` answers.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// The session's form token (a form post with the cookie; or the `x-csrf-token`
    /// header). Not needed with a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for Deletion {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// `POST /profile/totp`: the first code of a new authenticator app, its setup form's
/// sealed secret, and the password.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpSetup {
    /// Required: `pending` of `GET /profile/totp` (the new key sealed for this account,
    /// good for 30 minutes).
    #[serde(default)]
    pub pending: String,
    /// Required: the six digits the app shows now for the new key.
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: String,
    /// Required: the account's password.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// When the account has a second factor already (passkeys): a recovery code, or a
    /// passkey's answer, or else a confirmation with it in the last ten minutes.
    #[serde(default)]
    pub factor_code: Option<String>,
    /// Instead of `factor_code`: a passkey's answer (`PublicKeyCredential` JSON) to
    /// `passkey_challenge`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The challenge token (`POST /login/confirm/passkey`) that `passkey` answers.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// The session's form token (a form post with the cookie; or the `x-csrf-token`
    /// header). Not needed with a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for TotpSetup {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// A change of the second factors themselves (removing the app or a passkey, new
/// recovery codes): the password and a code (or a passkey's answer).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FactorChange {
    /// Required: the account's password.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// The second factor's code, when the account has one: the authenticator app's six
    /// digits or an unused recovery code (`xxxxx-xxxxx`).
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// Instead of `code`: a passkey's answer (`PublicKeyCredential` JSON) to
    /// `passkey_challenge`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The challenge token (`POST /login/confirm/passkey`) that `passkey` answers.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// The session's form token (a form post with the cookie; or the `x-csrf-token`
    /// header). Not needed with a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for FactorChange {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// `POST /profile/passkeys`: a new passkey (the browser's answer to a registration
/// challenge), its name, and who asks (the password, and the second factor when the
/// account has one).
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAdd {
    /// At most 64 characters on one line; "Passkey" when empty.
    #[serde(default)]
    #[schema(example = "Laptop")]
    pub name: String,
    /// Required: the browser's new credential (`PublicKeyCredential` JSON from
    /// `navigator.credentials.create`).
    #[serde(default)]
    pub credential: String,
    /// Required: `challenge` of `POST /profile/passkeys/options`, which `credential`
    /// answers.
    #[serde(default)]
    pub credential_challenge: String,
    /// Required: the account's password.
    #[serde(default)]
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// The second factor's code, when the account has one (unless this session signed
    /// in or confirmed with it in the last ten minutes): the authenticator app's six
    /// digits or an unused recovery code (`xxxxx-xxxxx`).
    #[serde(default)]
    #[schema(example = "123456")]
    pub code: Option<String>,
    /// Instead of `code`: a passkey's answer (`PublicKeyCredential` JSON) to
    /// `passkey_challenge`.
    #[serde(default)]
    pub passkey: Option<String>,
    /// The challenge token (`POST /login/confirm/passkey`) that `passkey` answers.
    #[serde(default)]
    pub passkey_challenge: Option<String>,
    /// The session's form token (a form post with the cookie; or the `x-csrf-token`
    /// header). Not needed with a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
}

impl CarriesCsrf for PasskeyAdd {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// The longest name of a passkey.
pub const MAX_PASSKEY_NAME: usize = 64;

impl PasskeyAdd {
    /// The passkey's name ("Passkey" when none is given), or what is wrong.
    pub fn checked(&self) -> Result<String, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim();
        if name.chars().count() > MAX_PASSKEY_NAME {
            errors.insert(
                "name".into(),
                format!("must be at most {MAX_PASSKEY_NAME} characters"),
            );
        } else if name.chars().any(char::is_control) {
            errors.insert("name".into(), "must be one line of text".into());
        }
        if self.password.is_empty() {
            errors.insert("password".into(), "is required".into());
        }
        if self.credential.trim().is_empty() || self.credential_challenge.trim().is_empty() {
            errors.insert(
                "credential".into(),
                "is required: the passkey your browser made (this needs JavaScript)".into(),
            );
        }
        match errors.is_empty() {
            true if name.is_empty() => Ok("Passkey".into()),
            true => Ok(name.to_owned()),
            false => Err(errors),
        }
    }
}

/// What a route that asks who it is reads: the password and (with a second factor)
/// its code or a passkey's answer.
pub trait Proof {
    fn password(&self) -> &str;
    /// The second factor, or the field that is wrong and why.
    fn second_factor(&self) -> Result<flotilla_auth::Proof, (&'static str, &'static str)>;
}

macro_rules! proof {
    ($type:ty, $password:ident) => {
        impl Proof for $type {
            fn password(&self) -> &str {
                &self.$password
            }
            fn second_factor(&self) -> Result<flotilla_auth::Proof, (&'static str, &'static str)> {
                flotilla_auth::Proof::read(
                    self.code.as_deref(),
                    self.passkey.as_deref(),
                    self.passkey_challenge.as_deref(),
                )
            }
        }
    };
}

proof!(PasswordChange, current_password);
proof!(EmailChange, password);
proof!(Deletion, password);
proof!(FactorChange, password);
proof!(PasskeyAdd, password);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(value: serde_json::Value) -> Result<ProfilePatch, FieldErrors> {
        ProfilePatch::from_json(value.as_object().unwrap())
    }

    #[test]
    fn a_patch_sets_only_what_it_names() {
        let p = patch(json!({"display_name": "  Ada ✨ Lovelace ", "public": true})).unwrap();
        assert_eq!(p.display_name, Some(Some("Ada ✨ Lovelace".into())));
        assert_eq!(p.public, Some(true));
        assert_eq!(p.username, None);
        assert_eq!(p.bio, None);
        let p = patch(json!({"bio": null, "username": ""})).unwrap();
        assert_eq!(p.bio, Some(None));
        assert_eq!(p.username, Some(None));
        assert!(patch(json!({})).unwrap().is_empty());
    }

    #[test]
    fn every_bad_or_unknown_field_is_named() {
        let errors = patch(json!({
            "username": "Not Valid",
            "display_name": "x".repeat(65),
            "bio": "b".repeat(2001),
            "public": "yes",
            "role": "admin",
        }))
        .unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors["role"].contains("not a field"));
        assert!(errors["display_name"].contains("64"));
        assert!(errors["bio"].contains("2000"));
        let errors = patch(json!({"display_name": "a\u{0}b", "username": 3})).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(patch(json!({"bio": "line one\nline two\ttab"})).is_ok());
    }

    #[test]
    fn a_textarea_s_line_breaks_count_once() {
        let full = "x\r\n".repeat(999);
        assert_eq!(
            free_text(Some(&full), MAX_BIO, true)
                .unwrap()
                .unwrap()
                .chars()
                .filter(|c| *c == '\r')
                .count(),
            0
        );
        assert!(
            free_text(Some(&format!("{full}yz")), MAX_BIO, true).is_ok(),
            "2,000 characters once CRLF is one"
        );
    }

    #[test]
    fn the_form_turns_an_unticked_box_into_private() {
        let form = BTreeMap::from([
            ("display_name".to_owned(), "Ada".to_owned()),
            ("username".to_owned(), "ada".to_owned()),
            ("bio".to_owned(), String::new()),
            ("csrf_token".to_owned(), "t".to_owned()),
        ]);
        let p = ProfilePatch::from_form(&form).unwrap();
        assert_eq!(p.public, Some(false));
        assert_eq!(p.bio, Some(None));
    }
}
