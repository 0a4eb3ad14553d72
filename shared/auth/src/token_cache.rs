//! The verified-token cache: what an EdDSA check would answer again, remembered.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::access_token::Claims;

/// Tokens seen and verified already, by SHA-256: a client sends the same token for
/// its whole life, and hashing it costs a few µs where an EdDSA check costs ~45.
/// `exp` and `nbf` are checked again on every hit and the deny-list always; the whole
/// cache is dropped when the keys change (a key withdrawn takes its tokens with it).
#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Claims>>,
}

/// At most this many tokens are remembered.
const VERIFIED_TOKENS: usize = 10_000;

impl VerifiedTokens {
    pub(crate) fn get(&self, digest: &[u8; 32], now: i64, leeway: i64) -> Option<Claims> {
        let entries = self.entries.lock().ok()?;
        let claims = entries.get(digest)?;
        (claims.exp + leeway > now && claims.nbf - leeway <= now).then(|| claims.clone())
    }

    pub(crate) fn insert(&self, digest: [u8; 32], claims: &Claims, now: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= VERIFIED_TOKENS {
                entries.retain(|_, c| c.exp > now);
                if entries.len() >= VERIFIED_TOKENS {
                    entries.clear();
                }
            }
            entries.insert(digest, claims.clone());
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_tokens_still_expire() {
        let cache = VerifiedTokens::default();
        let claims = |exp: i64| Claims {
            sub: "u".into(),
            sid: "s".into(),
            role: "user".into(),
            email_verified: true,
            email: "ada@example.org".into(),
            preferred_username: None,
            name: None,
            amr: vec!["pwd".to_owned()],
            csrf: "c".into(),
            iss: "i".into(),
            aud: "a".into(),
            iat: 0,
            nbf: 0,
            exp,
        };
        cache.insert([1; 32], &claims(100), 50);
        assert!(cache.get(&[1; 32], 90, 0).is_some());
        assert!(cache.get(&[1; 32], 100, 0).is_none(), "expired");
        assert!(cache.get(&[1; 32], 110, 30).is_some(), "within the leeway");
        assert!(cache.get(&[2; 32], 90, 0).is_none());
        for i in 0..VERIFIED_TOKENS as u32 + 5 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&i.to_le_bytes());
            cache.insert(digest, &claims(1_000), 50);
        }
        assert!(cache.entries.lock().unwrap().len() <= VERIFIED_TOKENS);
        cache.clear();
        assert!(cache.get(&[1; 32], 90, 0).is_none());
    }
}
