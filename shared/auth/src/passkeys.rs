//! Passkeys (WebAuthn) with webauthn-rs: the ceremonies' two halves, with the state
//! between them kept as JSON in `passkey_challenges` (so any instance may take the
//! answer) and the credentials in `passkeys`.
//!
//! The relying party is `FLOTILLA_PUBLIC_URL`: its host is the RP ID and the URL the one
//! origin accepted. WebAuthn needs a domain name: on an IP address (the development
//! default `http://127.0.0.1:8080`) passkeys are off, the pages do not offer them and
//! their routes answer 409 `passkeys_unavailable`. Browsers allow `http://localhost`;
//! anything else must be https. The RP ID cannot change later without every passkey
//! stopping to work.
//!
//! Every passkey requires user verification (a PIN or a biometric), so a passkey is
//! two factors in itself: its `amr` is `hwk` (a device-bound key) or `swk` (a synced
//! one, which the authenticator says is backup-eligible), with `mfa`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder,
};

/// Why a passkey's answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyRefusal {
    /// The site's address is no domain name (or not a secure context).
    #[error("passkeys are not available on this site")]
    Unavailable,
    /// Not a credential's JSON at all.
    #[error("the passkey's answer is not readable")]
    Malformed,
    /// The authenticator's answer does not hold: a wrong signature, another site's, a
    /// challenge that ended or was used, an unknown credential.
    #[error("the passkey was not accepted")]
    Refused,
}

/// The site's passkeys: its relying party, when it can have one.
#[derive(Clone)]
pub struct Passkeys {
    webauthn: Option<Arc<Webauthn>>,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys")
            .field("enabled", &self.enabled())
            .finish()
    }
}

/// The `amr` (RFC 8176) of a passkey's use: a synced key is software-secured as far as
/// anyone can tell, one bound to its device hardware-secured.
pub fn amr_of(result: &AuthenticationResult) -> &'static str {
    if result.backup_eligible() {
        "swk"
    } else {
        "hwk"
    }
}

/// Whether a site at `public_url` can have passkeys (its host is a domain name).
pub fn available(public_url: &str) -> bool {
    Url::parse(public_url).is_ok_and(|url| url.domain().is_some())
}

/// A credential id as stored: base64url without padding.
pub fn credential_id_text(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

impl Passkeys {
    /// The relying party of `public_url`, or passkeys off (with why) when its host is
    /// no domain name.
    pub fn from_public_url(public_url: &str) -> (Self, Option<String>) {
        let off = |why: String| (Self { webauthn: None }, Some(why));
        let origin = match Url::parse(public_url) {
            Ok(origin) => origin,
            Err(e) => return off(format!("FLOTILLA_PUBLIC_URL is not a URL: {e}")),
        };
        let Some(rp_id) = origin.domain().map(str::to_owned) else {
            return off(format!(
                "passkeys are off: WebAuthn needs a domain name, and FLOTILLA_PUBLIC_URL ({public_url}) has an IP address (use http://localhost:… to try them locally)"
            ));
        };
        match WebauthnBuilder::new(&rp_id, &origin).and_then(|b| b.rp_name("flotilla").build()) {
            Ok(webauthn) => (
                Self {
                    webauthn: Some(Arc::new(webauthn)),
                },
                None,
            ),
            Err(e) => off(format!("passkeys are off: {e}")),
        }
    }

    pub fn enabled(&self) -> bool {
        self.webauthn.is_some()
    }

    fn webauthn(&self) -> Result<&Webauthn, PasskeyRefusal> {
        self.webauthn.as_deref().ok_or(PasskeyRefusal::Unavailable)
    }

    /// A registration's options for the browser (`{"publicKey":…}`) and its state: a
    /// discoverable credential (so it can sign in without a password), never one the
    /// account has already.
    pub fn start_registration(
        &self,
        user_id: &str,
        email: &str,
        display_name: &str,
        existing: &[Passkey],
    ) -> Result<(Value, String), PasskeyRefusal> {
        let webauthn = self.webauthn()?;
        let handle = Uuid::parse_str(user_id).map_err(|_| PasskeyRefusal::Refused)?;
        let exclude = existing.iter().map(|p| p.cred_id().clone()).collect();
        let (mut options, state) = webauthn
            .start_passkey_registration(handle, email, display_name, Some(exclude))
            .map_err(|_| PasskeyRefusal::Refused)?;
        // webauthn-rs asks for a credential that need not be discoverable; a passkey that
        // signs in without a password must be.
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Required);
        }
        Ok((to_value(&options)?, to_text(&state)?))
    }

    /// The credential a registration's answer made.
    pub fn finish_registration(
        &self,
        state: &str,
        answer: &str,
    ) -> Result<Passkey, PasskeyRefusal> {
        let webauthn = self.webauthn()?;
        let state: PasskeyRegistration = from_text(state)?;
        let answer: RegisterPublicKeyCredential = from_text(answer)?;
        webauthn
            .finish_passkey_registration(&answer, &state)
            .map_err(|_| PasskeyRefusal::Refused)
    }

    /// An assertion's options for one of `keys` (an account's), and its state.
    pub fn start_authentication(
        &self,
        keys: &[Passkey],
    ) -> Result<(Value, String), PasskeyRefusal> {
        let webauthn = self.webauthn()?;
        let (options, state) = webauthn
            .start_passkey_authentication(keys)
            .map_err(|_| PasskeyRefusal::Refused)?;
        Ok((to_value(&options)?, to_text(&state)?))
    }

    /// Checks an assertion against its state.
    pub fn finish_authentication(
        &self,
        state: &str,
        answer: &PublicKeyCredential,
    ) -> Result<AuthenticationResult, PasskeyRefusal> {
        let webauthn = self.webauthn()?;
        let state: PasskeyAuthentication = from_text(state)?;
        webauthn
            .finish_passkey_authentication(answer, &state)
            .map_err(|_| PasskeyRefusal::Refused)
    }

    /// A password-free sign-in's options (any discoverable passkey of this site; the
    /// browser offers them in the address field's autofill) and its state.
    pub fn start_sign_in(&self) -> Result<(Value, String), PasskeyRefusal> {
        let webauthn = self.webauthn()?;
        let (options, state) = webauthn
            .start_discoverable_authentication()
            .map_err(|_| PasskeyRefusal::Refused)?;
        Ok((to_value(&options)?, to_text(&state)?))
    }

    /// Whose passkey answered a password-free sign-in: the account's id and the
    /// credential's (as stored).
    pub fn identify(
        &self,
        answer: &PublicKeyCredential,
    ) -> Result<(String, String), PasskeyRefusal> {
        let webauthn = self.webauthn()?;
        let (user, credential) = webauthn
            .identify_discoverable_authentication(answer)
            .map_err(|_| PasskeyRefusal::Refused)?;
        Ok((
            user.hyphenated().to_string(),
            credential_id_text(credential),
        ))
    }

    /// Checks a password-free sign-in's assertion with the passkey it named.
    pub fn finish_sign_in(
        &self,
        state: &str,
        answer: &PublicKeyCredential,
        key: &Passkey,
    ) -> Result<AuthenticationResult, PasskeyRefusal> {
        let webauthn = self.webauthn()?;
        let state: DiscoverableAuthentication = from_text(state)?;
        webauthn
            .finish_discoverable_authentication_v2(answer, state, key)
            .map_err(|_| PasskeyRefusal::Refused)
    }
}

/// A browser's assertion, as its form field or JSON holds it.
pub fn read_assertion(text: &str) -> Result<PublicKeyCredential, PasskeyRefusal> {
    from_text(text)
}

/// A stored credential.
pub fn read_passkey(text: &str) -> Result<Passkey, PasskeyRefusal> {
    from_text(text)
}

/// An account's stored passkeys as webauthn-rs takes them (one this release cannot
/// read is left out).
pub fn keys_of(rows: &[flotilla_accounts::PasskeyRow]) -> Vec<Passkey> {
    rows.iter()
        .filter_map(|row| read_passkey(&row.credential).ok())
        .collect()
}

/// A credential to store.
pub fn passkey_text(key: &Passkey) -> Result<String, PasskeyRefusal> {
    to_text(key)
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, PasskeyRefusal> {
    serde_json::to_value(value).map_err(|_| PasskeyRefusal::Malformed)
}

fn to_text<T: serde::Serialize>(value: &T) -> Result<String, PasskeyRefusal> {
    serde_json::to_string(value).map_err(|_| PasskeyRefusal::Malformed)
}

fn from_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, PasskeyRefusal> {
    serde_json::from_str(text).map_err(|_| PasskeyRefusal::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkeys_need_a_domain_name() {
        let (off, why) = Passkeys::from_public_url("http://127.0.0.1:8080");
        assert!(!off.enabled());
        assert!(why.unwrap().contains("IP address"));
        assert_eq!(
            off.start_sign_in().unwrap_err(),
            PasskeyRefusal::Unavailable
        );
        let (on, why) = Passkeys::from_public_url("http://localhost:8080");
        assert!(on.enabled(), "{why:?}");
        let (on, _) = Passkeys::from_public_url("https://accounts.example.org");
        assert!(on.enabled());
        assert!(available("http://localhost:8080") && !available("http://[::1]:8080"));
    }

    #[test]
    fn a_registration_asks_for_a_discoverable_verified_credential() {
        let (passkeys, _) = Passkeys::from_public_url("https://accounts.example.org");
        let (options, state) = passkeys
            .start_registration(
                "6c0f7d3e-0000-4000-8000-000000000001",
                "ada@example.org",
                "Ada",
                &[],
            )
            .unwrap();
        let selection = &options["publicKey"]["authenticatorSelection"];
        assert_eq!(selection["residentKey"], "required", "{options}");
        assert_eq!(selection["userVerification"], "required", "{options}");
        assert_eq!(options["publicKey"]["rp"]["id"], "accounts.example.org");
        // Its state reads back, and a made-up answer is refused, not a panic.
        assert_eq!(
            passkeys.finish_registration(&state, "{}").unwrap_err(),
            PasskeyRefusal::Malformed
        );
        assert!(passkeys.finish_registration("not json", "{}").is_err());
        // Not a UUID: no handle to give the authenticator.
        assert!(
            passkeys
                .start_registration("ada", "a@b.c", "A", &[])
                .is_err()
        );
    }
}
