//! Secrets for email links and refresh tokens: 256 random bits sent to the user, their
//! SHA-256 stored. Send the secret, store its hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 256 random bits, base64url without padding (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A link's token as typed or pasted, if it can be one: trimmed, at most 128 URL-safe
/// characters (the hash of anything else matches nothing, but need not be looked up).
pub fn plausible_token(token: &str) -> Option<&str> {
    let token = token.trim();
    let plausible = !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plausible.then_some(token)
}

/// Lowercase hex SHA-256 of `token` (64 characters): what the database stores.
pub fn token_hash(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        let token = new_token();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, new_token());
    }

    #[test]
    fn hash_shape_and_determinism() {
        let token = new_token();
        let hash = token_hash(&token);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{hash}"
        );
        assert_eq!(hash, token_hash(&token));
        assert_ne!(hash, token_hash(&new_token()));
    }

    #[test]
    fn hash_known_value() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
