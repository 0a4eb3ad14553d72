//! Every message on the bus is sealed with the fleet's shared secret
//! (`FLOTILLA_BUS_SECRET`): a last frame holding the time it was sent and an
//! HMAC-SHA256 over what it says. Receivers check the seal in constant time and drop,
//! and count, what fails ([`rejections`]), so a process that can reach the bus ports
//! can neither revoke sessions nor trigger work.
//!
//! The seal covers the kind of message (an event cannot pass for a wake-up), every
//! frame with its length, and the time. A message older (or newer) than [`MAX_AGE`] is
//! refused. A copy replayed within that bound repeats something harmless: a revocation
//! of a session already revoked, a page rebuilt from the database, a worker pass.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a message's time may be from the receiver's clock (the tokens' leeway).
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// The shortest secret accepted, in bytes (a SHA-256 block's worth of entropy halved).
pub const MIN_SECRET_BYTES: usize = 32;
const TIME_LEN: usize = 8;
const MAC_LEN: usize = 32;
pub(crate) const SEAL_LEN: usize = TIME_LEN + MAC_LEN;

/// The fleet's shared secret; cheap to clone, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BusSecret(Arc<[u8]>);

impl fmt::Debug for BusSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BusSecret(…)")
    }
}

/// The bytes a secret's hex digits stand for (surrounding white space ignored; either
/// case): what `openssl rand -hex N` writes. `None` for anything else.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    // Digits only: `from_str_radix` alone would take a sign ("+f").
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl BusSecret {
    /// A secret written as hex digits (`openssl rand -hex 32`): at least
    /// [`MIN_SECRET_BYTES`] bytes, so 64 digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = decode_hex(text)?;
        (bytes.len() >= MIN_SECRET_BYTES).then(|| Self(bytes.into()))
    }

    /// A secret from raw bytes, at least [`MIN_SECRET_BYTES`] of them.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_SECRET_BYTES).then(|| Self(bytes.into()))
    }

    fn mac(&self, kind: Kind, frames: &[&[u8]], millis: u64) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(kind.domain());
        mac.update(&(frames.len() as u32).to_be_bytes());
        for frame in frames {
            mac.update(&(frame.len() as u64).to_be_bytes());
            mac.update(frame);
        }
        mac.update(&millis.to_be_bytes());
        mac
    }

    /// The last frame to send after `frames`.
    pub(crate) fn seal(&self, kind: Kind, frames: &[&[u8]]) -> Vec<u8> {
        self.seal_at(kind, frames, now_millis())
    }

    fn seal_at(&self, kind: Kind, frames: &[&[u8]], millis: u64) -> Vec<u8> {
        let mut seal = millis.to_be_bytes().to_vec();
        seal.extend_from_slice(&self.mac(kind, frames, millis).finalize().into_bytes());
        seal
    }

    /// Checks the seal of a received message (`frames` without it); counts a failure.
    pub(crate) fn open(&self, kind: Kind, frames: &[&[u8]], seal: Option<&[u8]>) -> bool {
        match self.check(kind, frames, seal, now_millis()) {
            Ok(()) => true,
            Err(reason) => {
                count(kind, reason);
                false
            }
        }
    }

    fn check(
        &self,
        kind: Kind,
        frames: &[&[u8]],
        seal: Option<&[u8]>,
        now: u64,
    ) -> Result<(), Reason> {
        let seal = seal
            .filter(|s| s.len() == SEAL_LEN)
            .ok_or(Reason::Unsealed)?;
        let (time, tag) = seal.split_at(TIME_LEN);
        let mut millis = [0; TIME_LEN];
        millis.copy_from_slice(time);
        let millis = u64::from_be_bytes(millis);
        // The time is checked after the MAC, so that a forged time is a forgery.
        self.mac(kind, frames, millis)
            .verify_slice(tag)
            .map_err(|_| Reason::BadMac)?;
        if now.abs_diff(millis) > MAX_AGE.as_millis() as u64 {
            return Err(Reason::Stale);
        }
        Ok(())
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a message is; part of what its seal covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Wake,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Event, Kind::Wake];

    fn domain(self) -> &'static [u8] {
        match self {
            Kind::Event => b"flotilla.bus.event.v1\0",
            Kind::Wake => b"flotilla.bus.wake.v1\0",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Wake => "wake",
        }
    }
}

/// Why a message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No seal, or not the shape of one (a sender without the secret, an old release).
    Unsealed,
    /// A seal that does not match: another secret, or an altered message.
    BadMac,
    /// A genuine seal older or newer than [`MAX_AGE`]: a replay, or a clock far off.
    Stale,
}

impl Reason {
    pub const ALL: [Reason; 3] = [Reason::Unsealed, Reason::BadMac, Reason::Stale];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Unsealed => "unsealed",
            Reason::BadMac => "bad_mac",
            Reason::Stale => "stale",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Messages dropped by this process, by kind and reason.
static REJECTED: [[AtomicU64; 3]; 2] = [
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
];

/// Counts a dropped message; logs the 1st, 2nd, 4th, 8th … of each kind and reason, so
/// that a flood of forgeries cannot flood the log (the metric has every one).
fn count(kind: Kind, reason: Reason) {
    let n = REJECTED[kind as usize][reason.index()].fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        log::warn!(
            "dropped a bus {} that failed its check ({}; {n} so far)",
            kind.label(),
            reason.label()
        );
    }
}

/// Every (kind, reason) with the number of messages this process dropped for it, for
/// `flotilla_bus_messages_rejected_total`.
pub fn rejections() -> Vec<(Kind, Reason, u64)> {
    Kind::ALL
        .iter()
        .flat_map(|kind| {
            Reason::ALL.iter().map(move |reason| {
                let n = REJECTED[*kind as usize][reason.index()].load(Ordering::Relaxed);
                (*kind, *reason, n)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> BusSecret {
        BusSecret::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_secret_is_64_hex_digits_or_more() {
        assert!(BusSecret::from_hex(&"ab".repeat(32)).is_some());
        assert!(BusSecret::from_hex(&format!(" {} \n", "0F".repeat(40))).is_some());
        assert!(BusSecret::from_hex(&"ab".repeat(31)).is_none());
        assert!(BusSecret::from_hex(&"zz".repeat(32)).is_none());
        assert!(BusSecret::from_hex(&format!("{}a", "ab".repeat(32))).is_none());
        assert!(BusSecret::from_bytes(&[1; 31]).is_none());
        assert_eq!(format!("{:?}", secret(1)), "BusSecret(…)");
    }

    #[test]
    fn a_seal_opens_with_its_secret_only_and_for_what_it_sealed() {
        let (key, other) = (secret(1), secret(2));
        let frames: [&[u8]; 2] = [b"session.revoked", b"{\"session_id\":\"s\"}"];
        let now = now_millis();
        let seal = key.seal_at(Kind::Event, &frames, now);
        assert_eq!(seal.len(), SEAL_LEN);
        assert_eq!(key.check(Kind::Event, &frames, Some(&seal), now), Ok(()));
        assert_eq!(
            other.check(Kind::Event, &frames, Some(&seal), now),
            Err(Reason::BadMac)
        );
        // Not a wake-up, not another payload, not the frames run together.
        assert_eq!(
            key.check(Kind::Wake, &frames, Some(&seal), now),
            Err(Reason::BadMac)
        );
        let altered: [&[u8]; 2] = [b"session.revoked", b"{\"session_id\":\"t\"}"];
        assert_eq!(
            key.check(Kind::Event, &altered, Some(&seal), now),
            Err(Reason::BadMac)
        );
        let shifted: [&[u8]; 2] = [b"session.revoked{", b"\"session_id\":\"s\"}"];
        assert_eq!(
            key.check(Kind::Event, &shifted, Some(&seal), now),
            Err(Reason::BadMac)
        );
        let mut flipped = seal.clone();
        flipped[SEAL_LEN - 1] ^= 1;
        assert_eq!(
            key.check(Kind::Event, &frames, Some(&flipped), now),
            Err(Reason::BadMac)
        );
        // A later time written over the real one is a forgery too.
        let mut retimed = seal.clone();
        retimed[..TIME_LEN].copy_from_slice(&(now + 1).to_be_bytes());
        assert_eq!(
            key.check(Kind::Event, &frames, Some(&retimed), now),
            Err(Reason::BadMac)
        );
        assert_eq!(
            key.check(Kind::Event, &frames, None, now),
            Err(Reason::Unsealed)
        );
        assert_eq!(
            key.check(Kind::Event, &frames, Some(&seal[1..]), now),
            Err(Reason::Unsealed)
        );
    }

    #[test]
    fn a_seal_is_good_for_max_age_either_way() {
        let key = secret(1);
        let frames: [&[u8]; 1] = [b"email"];
        let max = MAX_AGE.as_millis() as u64;
        let sent = 1_000_000_000_000;
        let seal = key.seal_at(Kind::Wake, &frames, sent);
        for now in [sent, sent + max, sent - max] {
            assert_eq!(key.check(Kind::Wake, &frames, Some(&seal), now), Ok(()));
        }
        for now in [sent + max + 1, sent - max - 1] {
            assert_eq!(
                key.check(Kind::Wake, &frames, Some(&seal), now),
                Err(Reason::Stale)
            );
        }
    }

    #[test]
    fn a_failed_check_is_counted_by_kind_and_reason() {
        let before = |kind, reason| {
            rejections()
                .into_iter()
                .find(|(k, r, _)| *k == kind && *r == reason)
                .map(|(_, _, n)| n)
                .unwrap()
        };
        let was = before(Kind::Wake, Reason::Unsealed);
        assert!(!secret(1).open(Kind::Wake, &[b"email"], None));
        assert!(before(Kind::Wake, Reason::Unsealed) > was);
        assert_eq!(rejections().len(), 6);
    }
}
