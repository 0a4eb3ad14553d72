//! What login's routes answer in JSON, typed so that each route's description names
//! its body. They replace `json!()` values, whose keys serde_json writes in
//! alphabetical order: the fields here are declared in that order, so the bytes on
//! the wire stay the same.

use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

/// A session's tokens: what a finished sign-in and a refresh answer (the same two are
/// set as cookies).
#[derive(Serialize, ToSchema)]
pub struct Tokens {
    /// An EdDSA JWT, for `Authorization: Bearer …` (also the access cookie).
    pub access_token: String,
    /// Seconds the access token is valid for (`FLOTILLA_ACCESS_TOKEN_TTL_SECS`, 900).
    #[schema(example = 900)]
    pub expires_in: i64,
    /// Exchanged, once, at `POST /login/refresh` for a new pair (also the refresh
    /// cookie, path `/login`).
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
}

/// The right password of an account with a second factor: no session yet, a step to
/// finish at `POST /login/second-step` within `expires_in` seconds.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorRequired {
    /// Seconds the step lives (300).
    #[schema(example = 300)]
    pub expires_in: i64,
    /// What the step takes: `totp` (the account has an authenticator app), `passkey`
    /// (it has a passkey, and the site can have them), and always `recovery_code`.
    #[schema(example = json!(["totp", "recovery_code"]))]
    pub methods: Vec<&'static str>,
    /// For `POST /login/second-step` (a browser has it as a cookie too).
    pub second_step_token: String,
    /// Always `second_factor_required`.
    #[schema(example = "second_factor_required")]
    pub status: &'static str,
}

/// What a sign-in with a password answers an API client: the session's tokens, or,
/// for an account with a second factor, the step that remains.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SignIn {
    Tokens(Tokens),
    SecondFactorRequired(SecondFactorRequired),
}

/// The session of an access token.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    pub email_verified: bool,
    /// When the access token expires (RFC 3339).
    #[schema(example = "2026-01-01T12:15:00+00:00")]
    pub expires_at: Option<String>,
    /// `user` or `admin`.
    #[schema(example = "user")]
    pub role: String,
    pub session_id: String,
    pub user_id: String,
}

/// The answer to a reset request, whatever became of it.
#[derive(Serialize, ToSchema)]
pub struct ResetSent {
    /// "If an account uses this address, a reset link is on its way."
    pub message: &'static str,
    /// Always `reset_sent`.
    #[schema(example = "reset_sent")]
    pub status: &'static str,
}

/// What became of a reset link: `{"status": …}`.
#[derive(Serialize, ToSchema)]
pub struct ResetStatus {
    /// `valid` (the link can be used) or `password_changed` (it was).
    #[schema(example = "password_changed")]
    pub status: &'static str,
}

/// A passkey challenge for `navigator.credentials.get`, as the kit's passkeys make it
/// (`{"challenge", "publicKey", "mediation"?}`), passed on as it is.
#[derive(Serialize)]
#[serde(transparent)]
pub struct PasskeyChallenge(pub serde_json::Value);

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

impl PartialSchema for PasskeyChallenge {
    fn schema() -> RefOr<Schema> {
        let public_key = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "WebAuthn's `PublicKeyCredentialRequestOptions` (`challenge`, `timeout`, \
             `rpId`, `allowCredentials`, `userVerification`, base64url for the bytes): \
             `navigator.credentials.get({publicKey})`.",
            ));
        ObjectBuilder::new()
            .description(Some(
                "A challenge for one of the passkeys it names (any of the site's, for a \
                 sign-in without a password), taken once within five minutes.",
            ))
            .property(
                "challenge",
                string(
                    "Sent back with the passkey's answer, as `passkey_challenge` (it names \
                     the challenge kept here).",
                ),
            )
            .required("challenge")
            .property(
                "mediation",
                string("`conditional` for a sign-in without a password (address autofill)."),
            )
            .property("publicKey", public_key)
            .required("publicKey")
            .into()
    }
}

impl ToSchema for PasskeyChallenge {}

/// The public keys of login's signing keys (RFC 7517), as `KeyRing::jwks` writes them.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Jwks(pub serde_json::Value);

impl PartialSchema for Jwks {
    fn schema() -> RefOr<Schema> {
        let constant = |value: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([value]))
        };
        let key = ObjectBuilder::new()
            .description(Some("An Ed25519 public key; never a private part."))
            .property("kty", constant("OKP"))
            .required("kty")
            .property("crv", constant("Ed25519"))
            .required("crv")
            .property("alg", constant("EdDSA"))
            .required("alg")
            .property("use", constant("sig"))
            .required("use")
            .property(
                "kid",
                string("The key's id, as in the `kid` header of the tokens it signs."),
            )
            .required("kid")
            .property(
                "x",
                string("The public key, base64url without padding.")
                    .format(Some(SchemaFormat::Custom("base64url".into()))),
            )
            .required("x");
        ObjectBuilder::new()
            .description(Some(
                "Every key in login's key folder: the one that signs, a newer one \
                 published before it signs, and older ones until they are pruned.",
            ))
            .property("keys", ArrayBuilder::new().items(key))
            .required("keys")
            .into()
    }
}

impl ToSchema for Jwks {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn same(typed: impl Serialize, before: serde_json::Value) {
        let typed = serde_json::to_string(&typed).unwrap();
        assert_eq!(typed, serde_json::to_string(&before).unwrap());
    }

    #[test]
    fn the_typed_answers_write_the_bytes_the_json_values_did() {
        let tokens = Tokens {
            access_token: "a.b.c".into(),
            expires_in: 900,
            refresh_token: "r".into(),
            token_type: "Bearer",
        };
        same(
            SignIn::Tokens(tokens),
            json!({
                "access_token": "a.b.c",
                "token_type": "Bearer",
                "expires_in": 900,
                "refresh_token": "r",
            }),
        );
        let step = SecondFactorRequired {
            expires_in: 300,
            methods: vec!["totp", "recovery_code"],
            second_step_token: "s".into(),
            status: "second_factor_required",
        };
        same(
            SignIn::SecondFactorRequired(step),
            json!({
                "status": "second_factor_required",
                "second_step_token": "s",
                "methods": ["totp", "recovery_code"],
                "expires_in": 300,
            }),
        );
        for expires_at in [Some("2026-01-01T00:00:00+00:00".to_owned()), None] {
            let session = SessionInfo {
                email_verified: true,
                expires_at: expires_at.clone(),
                role: "user".into(),
                session_id: "s1".into(),
                user_id: "u1".into(),
            };
            let before = json!({
                "session_id": "s1",
                "user_id": "u1",
                "role": "user",
                "email_verified": true,
                "expires_at": expires_at,
            });
            same(session, before);
        }
        let sent = ResetSent {
            message: "If an account uses this address, a reset link is on its way.",
            status: "reset_sent",
        };
        let before = json!({
            "status": "reset_sent",
            "message": "If an account uses this address, a reset link is on its way.",
        });
        same(sent, before);
        same(ResetStatus { status: "valid" }, json!({"status": "valid"}));
        let challenge = json!({"challenge": "c", "publicKey": {"rpId": "example.org"}});
        same(PasskeyChallenge(challenge.clone()), challenge);
        let keys = json!({"keys": [{"kty": "OKP", "kid": "k1"}]});
        same(Jwks(keys.clone()), keys);
    }
}
