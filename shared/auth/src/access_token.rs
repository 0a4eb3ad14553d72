//! Access tokens: JWTs signed by `flotilla-login` with Ed25519 (`alg` EdDSA, `kid` in
//! the header) and verified everywhere with the public keys alone. Verification
//! allows EdDSA and nothing else, and checks `exp`, `nbf`, `iss` and `aud`.

use std::collections::HashSet;

use flotilla_kit::{ConfigError, Env};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::SigningKey;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 4096;

/// What an access token says. Its `Debug` hides the form token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The session the token was issued for (revocation is per session).
    pub sid: String,
    /// `user` or `admin`.
    pub role: String,
    pub email_verified: bool,
    /// The account's address (tokens issued before it was a claim have none).
    #[serde(default)]
    pub email: String,
    /// The account's username, when it has one (OpenID Connect's name for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The account's display name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How the person proved who they are in this session (RFC 8176): `pwd` for a
    /// password. Tokens issued before it was a claim have none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The session's form token: cookie-authenticated changes must send it back.
    pub csrf: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("sub", &self.sub)
            .field("sid", &self.sid)
            .field("role", &self.role)
            .field("email_verified", &self.email_verified)
            .field("email", &self.email)
            .field("preferred_username", &self.preferred_username)
            .field("name", &self.name)
            .field("amr", &self.amr)
            .field("csrf", &format_args!("[redacted]"))
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("iat", &self.iat)
            .field("nbf", &self.nbf)
            .field("exp", &self.exp)
            .finish()
    }
}

/// How tokens are issued and checked; the same on every service of a fleet.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `<FLOTILLA_PUBLIC_URL>/login`.
    pub issuer: String,
    /// `FLOTILLA_TOKEN_AUDIENCE` (default `flotilla`).
    pub audience: String,
    /// `FLOTILLA_ACCESS_TOKEN_TTL_SECS` (default 900: 15 minutes).
    pub ttl_secs: i64,
    /// Clock difference tolerated between servers (30 s).
    pub leeway_secs: u64,
}

impl TokenSettings {
    /// How long a revoked session stays denied: a token's life and the leeway, after
    /// which every token issued for it has expired anyway.
    pub fn revocation_hold_secs(&self) -> i64 {
        self.ttl_secs + self.leeway_secs as i64
    }

    pub fn from_env(env: &Env, public_url: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: format!("{public_url}/login"),
            audience: env.parse(
                "FLOTILLA_TOKEN_AUDIENCE",
                "flotilla".to_owned(),
                "a short name without spaces",
                |v| (!v.contains(char::is_whitespace) && v.len() <= 128).then(|| v.to_owned()),
            )?,
            ttl_secs: env.number("FLOTILLA_ACCESS_TOKEN_TTL_SECS", 900, 5..=86_400)?,
            leeway_secs: 30,
        })
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        validation.required_spec_claims =
            HashSet::from(["exp", "nbf", "iss", "aud", "sub"].map(str::to_owned));
        validation
    }
}

/// Signs `claims` with `key` (EdDSA, its `kid` in the header).
pub fn sign(key: &SigningKey, claims: &Claims) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, &key.encoding_key())
        .map_err(|e| anyhow::anyhow!("cannot sign an access token: {e}"))
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, not EdDSA, or without a `kid`.
    Malformed,
    /// Signed by a key this service does not know (after refreshing its keys).
    UnknownKey(String),
    Expired,
    /// Bad signature, wrong issuer or audience, not yet valid, missing claims.
    Invalid,
    /// Valid, but its session has been signed out.
    Revoked,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "token_expired",
            TokenError::Revoked => "session_revoked",
            _ => "token_invalid",
        }
    }
}

/// The `kid` of a token that claims EdDSA; anything else is malformed.
pub fn key_id(token: &str) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Malformed);
    }
    header.kid.ok_or(TokenError::Malformed)
}

/// A public key from a JWK's `x`, refusing anything that is not 32 bytes.
pub fn decoding_key(x: &str) -> Option<DecodingKey> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x)
        .ok()?;
    (bytes.len() == 32)
        .then(|| DecodingKey::from_ed_components(x).ok())
        .flatten()
}

/// Checks a token with the key it names.
pub fn verify(
    settings: &TokenSettings,
    token: &str,
    key: &DecodingKey,
) -> Result<Claims, TokenError> {
    use jsonwebtoken::errors::ErrorKind;
    jsonwebtoken::decode::<Claims>(token, key, &settings.validation())
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => {
                TokenError::Malformed
            }
            _ => TokenError::Invalid,
        })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "http://127.0.0.1:8080/login".into(),
            audience: "flotilla".into(),
            ttl_secs: 900,
            leeway_secs: 30,
        }
    }

    fn claims(exp_in: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: "u1".into(),
            sid: "s1".into(),
            role: "user".into(),
            email_verified: true,
            email: "ada@example.org".into(),
            preferred_username: Some("ada".into()),
            name: None,
            amr: vec!["pwd".to_owned()],
            csrf: "c".into(),
            iss: settings().issuer,
            aud: "flotilla".into(),
            iat: now,
            nbf: now,
            exp: now + exp_in,
        }
    }

    fn public(key: &SigningKey) -> DecodingKey {
        decoding_key(&key.public_x()).unwrap()
    }

    #[test]
    fn claims_hide_their_form_token() {
        let mut secret = claims(900);
        secret.csrf = "the-form-token".into();
        let printed = format!("{secret:?}");
        assert!(printed.contains("csrf: [redacted]"), "{printed}");
        assert!(!printed.contains("the-form-token"), "{printed}");
    }

    #[test]
    fn a_signed_token_verifies_with_its_public_key_only() {
        let key = SigningKey::generate();
        let token = sign(&key, &claims(900)).unwrap();
        assert_eq!(key_id(&token).unwrap(), key.kid);
        assert_eq!(
            verify(&settings(), &token, &public(&key)).unwrap(),
            claims(900)
        );
        let other = SigningKey::generate();
        assert_eq!(
            verify(&settings(), &token, &public(&other)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn a_token_from_before_the_amr_claim_still_verifies_without_one() {
        let key = SigningKey::generate();
        let mut older = claims(900);
        older.amr.clear();
        let token = sign(&key, &older).unwrap();
        let payload = URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap();
        assert!(!String::from_utf8(payload).unwrap().contains("amr"));
        let verified = verify(&settings(), &token, &public(&key)).unwrap();
        assert!(verified.amr.is_empty());
        let current = sign(&key, &claims(900)).unwrap();
        assert_eq!(
            verify(&settings(), &current, &public(&key)).unwrap().amr,
            ["pwd"]
        );
    }

    #[test]
    fn expired_altered_and_foreign_tokens_are_refused() {
        let key = SigningKey::generate();
        let expired = sign(&key, &claims(-120)).unwrap();
        assert_eq!(
            verify(&settings(), &expired, &public(&key)),
            Err(TokenError::Expired)
        );
        // The payload changed, the signature kept.
        let token = sign(&key, &claims(900)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["role"] = "admin".into();
        let altered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(
            verify(&settings(), &altered, &public(&key)),
            Err(TokenError::Invalid)
        );
        // Another audience or issuer.
        let mut wrong = settings();
        wrong.audience = "other".into();
        assert!(verify(&wrong, &token, &public(&key)).is_err());
        let mut wrong = settings();
        wrong.issuer = "https://elsewhere/login".into();
        assert!(verify(&wrong, &token, &public(&key)).is_err());
    }

    #[test]
    fn only_eddsa_with_a_key_id_is_considered() {
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims(900)).unwrap());
        assert_eq!(
            key_id(&format!("{none_header}.{body}.")),
            Err(TokenError::Malformed)
        );
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(900),
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(key_id(&hs), Err(TokenError::Malformed));
        assert_eq!(key_id("garbage"), Err(TokenError::Malformed));
        assert_eq!(key_id(&"a".repeat(5000)), Err(TokenError::Malformed));
        assert!(decoding_key("AAAA").is_none(), "short keys are refused");
    }
}
