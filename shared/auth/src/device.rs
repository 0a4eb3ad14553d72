//! Device cookies, as OWASP describes them against targeted lockout: at every password
//! sign-in login gives the browser a cookie naming the account and a random nonce of
//! this browser, signed with login's Ed25519 signing key (no other secret to share;
//! a rotated key keeps verifying the cookies it signed until it is pruned, and every
//! sign-in signs them again with the key that signs then). A sign-in that carries a valid entry for
//! the account of the address typed is throttled on that device's own failures
//! ([`DeviceEntry::key`]), so that nobody else's failures can delay it; and a refresh
//! token spent by a device is only "raced" (409) when the same device presents it
//! again.
//!
//! One cookie serves a browser used for several accounts: it holds up to
//! [`MAX_ENTRIES`] entries, `<user id>.<nonce>.<expires>.<kid>.<signature>` joined by
//! `~`, the most recent sign-in first. An entry whose signature, key or expiry does not
//! hold is ignored, as if the browser had none.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;

use crate::keys::{KeyRing, SigningKey};

/// Accounts one browser's cookie remembers (the older entries go first).
pub const MAX_ENTRIES: usize = 5;
/// How long an entry is good for after the last sign-in that signed it.
pub const LIFETIME: TimeDelta = TimeDelta::days(365);
/// Longer cookies are not read at all (5 entries take about 1 KB).
const MAX_COOKIE: usize = 2048;

/// One account's entry in a browser's device cookie.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub user_id: String,
    /// 128 random bits, base64url: this browser for this account.
    nonce: String,
    /// Unix seconds.
    pub expires: i64,
}

impl std::fmt::Debug for DeviceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceEntry")
            .field("user_id", &self.user_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl DeviceEntry {
    /// A new device of `user_id`, good for [`LIFETIME`] from `now` (Unix seconds).
    pub fn new(user_id: &str, now: i64) -> Self {
        let nonce: [u8; 16] = rand::random();
        Self {
            user_id: user_id.to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            expires: now + LIFETIME.num_seconds(),
        }
    }

    /// The same device, good for [`LIFETIME`] from `now` again.
    pub fn renewed(&self, now: i64) -> Self {
        Self {
            expires: now + LIFETIME.num_seconds(),
            ..self.clone()
        }
    }

    /// What the device is known by in the database (a hash of its nonce): the
    /// `auth_events.login_key` its sign-in attempts are counted under, and the
    /// `refresh_tokens.spent_by_device` of the tokens it spent.
    pub fn key(&self) -> String {
        crate::token_hash(&format!("device:{}", self.nonce))
    }

    fn message(&self) -> String {
        format!(
            "flotilla-device/1|{}|{}|{}",
            self.user_id, self.nonce, self.expires
        )
    }

    fn render(&self, key: &SigningKey) -> String {
        let signature = URL_SAFE_NO_PAD.encode(key.sign(self.message().as_bytes()));
        format!(
            "{}.{}.{}.{}.{signature}",
            self.user_id, self.nonce, self.expires, key.kid
        )
    }

    fn parse(entry: &str, ring: &KeyRing, now: i64) -> Option<Self> {
        let mut parts = entry.split('.');
        let (user_id, nonce, expires, kid, signature) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() || user_id.is_empty() || user_id.len() > 64 {
            return None;
        }
        let parsed = Self {
            user_id: user_id.to_owned(),
            nonce: nonce.to_owned(),
            expires: expires.parse().ok()?,
        };
        if parsed.expires <= now || URL_SAFE_NO_PAD.decode(nonce).ok()?.len() != 16 {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        ring.find(kid)?
            .verify(parsed.message().as_bytes(), &signature)
            .then_some(parsed)
    }
}

/// The valid, unexpired entries of a cookie's value (signed by a key of `ring`), at
/// most one per account.
pub fn read(value: &str, ring: &KeyRing, now: i64) -> Vec<DeviceEntry> {
    if value.len() > MAX_COOKIE {
        return Vec::new();
    }
    let mut entries: Vec<DeviceEntry> = Vec::new();
    for entry in value.split('~').take(MAX_ENTRIES) {
        if let Some(entry) = DeviceEntry::parse(entry, ring, now)
            && !entries.iter().any(|e| e.user_id == entry.user_id)
        {
            entries.push(entry);
        }
    }
    entries
}

/// The cookie's value after a sign-in of `user_id` on this browser: its entry (the
/// same nonce if it had one, else a new one) first and renewed, the other accounts'
/// after it, all signed with `key`.
pub fn after_sign_in(entries: &[DeviceEntry], user_id: &str, key: &SigningKey, now: i64) -> String {
    let own = entries
        .iter()
        .find(|e| e.user_id == user_id)
        .map_or_else(|| DeviceEntry::new(user_id, now), |e| e.renewed(now));
    std::iter::once(&own)
        .chain(entries.iter().filter(|e| e.user_id != user_id))
        .take(MAX_ENTRIES)
        .map(|e| e.render(key))
        .collect::<Vec<_>>()
        .join("~")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(dir_name: &str) -> (KeyRing, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-device-{dir_name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (ring, _) = KeyRing::load_or_create(&dir).unwrap();
        (ring, dir)
    }

    #[test]
    fn an_entry_reads_back_only_while_signed_unexpired_and_untouched() {
        let (ring, dir) = ring_with("read");
        let key = ring.newest().unwrap();
        let now = 1_800_000_000;
        let value = after_sign_in(&[], "user-a", key, now);
        let entries = read(&value, &ring, now);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].user_id, "user-a");
        assert_eq!(entries[0].expires, now + LIFETIME.num_seconds());
        // Expired.
        assert!(read(&value, &ring, now + LIFETIME.num_seconds()).is_empty());
        // Another account's id, another expiry, another nonce: the signature fails.
        for (at, with) in [(0, "user-b"), (2, "1999999999")] {
            let mut parts: Vec<String> = value.split('.').map(str::to_owned).collect();
            parts[at] = with.to_owned();
            assert!(read(&parts.join("."), &ring, now).is_empty(), "{at}");
        }
        let mut parts: Vec<String> = value.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode([7u8; 16]);
        assert!(read(&parts.join("."), &ring, now).is_empty());
        // A key the ring does not have.
        let other = SigningKey::generate();
        assert!(read(&after_sign_in(&[], "user-a", &other, now), &ring, now).is_empty());
        for junk in ["", "~", "a.b.c.d.e", &"x".repeat(5000)] {
            assert!(read(junk, &ring, now).is_empty(), "{junk}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_browser_keeps_one_entry_per_account_newest_first() {
        let (ring, dir) = ring_with("accounts");
        let key = ring.newest().unwrap();
        let now = 1_800_000_000;
        let first = read(&after_sign_in(&[], "user-a", key, now), &ring, now);
        let both = read(&after_sign_in(&first, "user-b", key, now + 5), &ring, now);
        assert_eq!(
            both.iter().map(|e| e.user_id.as_str()).collect::<Vec<_>>(),
            ["user-b", "user-a"]
        );
        // Signing in to A again keeps A's nonce (its failures stay its own).
        let again = read(&after_sign_in(&both, "user-a", key, now + 9), &ring, now);
        assert_eq!(again[0].user_id, "user-a");
        assert_eq!(again[0].key(), first[0].key());
        assert_eq!(again[0].expires, now + 9 + LIFETIME.num_seconds());
        assert_ne!(again[0].key(), again[1].key());
        // At most MAX_ENTRIES accounts: the oldest goes.
        let mut entries = again;
        for n in 0..MAX_ENTRIES {
            entries = read(
                &after_sign_in(&entries, &format!("user-{n}"), key, now),
                &ring,
                now,
            );
        }
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert!(!entries.iter().any(|e| e.user_id == "user-b"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
