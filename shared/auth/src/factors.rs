//! Second factors' building blocks (issue 17; not wired into sign-in yet):
//! - [`FactorKey`]: the fleet's key for secrets kept at rest (ChaCha20-Poly1305), each
//!   sealed with what it belongs to as associated data, so that a sealed secret copied
//!   onto another account's row does not open;
//! - [`TotpSecret`]: an authenticator app's secret (RFC 6238: SHA-1, 6 digits, 30 s, one
//!   step of clock drift either way), its `otpauth://` address and the check that
//!   refuses a code whose time step is not newer than the last one used (no replay);
//! - [`qr_svg_data_url`]: that address as a QR code, an SVG `data:` URL an `<img>` shows
//!   without JavaScript (the CSP allows `img-src data:`);
//! - [`recovery_codes`]: ten single-use codes, stored like every other token, hashed.

use std::fmt;

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use totp_rs::{Algorithm, Builder, Secret, Totp};

type HmacSha256 = Hmac<Sha256>;

/// The version byte that starts every sealed secret (the layout below; a later key
/// scheme gets another).
const SEALED_V1: u8 = 1;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// A sealed secret could not be opened (wrong key, other owner, altered, or not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the secret cannot be opened with this key for this owner")]
pub struct Unsealable;

/// The fleet's key for second-factor secrets at rest: 32 bytes, written as 64 hex digits
/// (`openssl rand -hex 32`), the same on every instance that reads the factors. Its
/// `Debug` shows nothing of it.
pub struct FactorKey {
    cipher: ChaCha20Poly1305,
    /// HMAC-SHA256 key of the recovery codes' hashes, derived from the key (never the
    /// key itself), so a database alone cannot test guesses at a code.
    mac: [u8; 32],
}

impl fmt::Debug for FactorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FactorKey(…)")
    }
}

impl FactorKey {
    /// The key from exactly 64 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = flotilla_bus::decode_hex(text).filter(|b| b.len() == 32)?;
        let cipher = ChaCha20Poly1305::new_from_slice(&bytes).ok()?;
        let mut derive = <HmacSha256 as Mac>::new_from_slice(&bytes).ok()?;
        derive.update(b"flotilla recovery codes v1");
        let mac = derive.finalize().into_bytes().into();
        Some(Self { cipher, mac })
    }

    /// How a recovery code (normalised) of `owner` is stored: HMAC-SHA256 under a key
    /// derived from this one, in hex.
    pub fn recovery_hash(&self, owner: &str, normal: &str) -> String {
        let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(&self.mac) else {
            return String::new();
        };
        mac.update(owner.as_bytes());
        mac.update(b":");
        mac.update(normal.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// `plaintext` sealed for `owner` (e.g. `totp:<account id>`): the version byte, a
    /// random 96-bit nonce, the ciphertext and its tag.
    pub fn seal(&self, plaintext: &[u8], owner: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let payload = Payload {
            msg: plaintext,
            aad: owner,
        };
        // Encryption fails only past the cipher's length limit (256 GiB).
        let sealed = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_BYTES + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// What [`FactorKey::seal`] sealed for the same `owner`.
    pub fn open(&self, sealed: &[u8], owner: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < 1 + NONCE_BYTES + TAG_BYTES || sealed[0] != SEALED_V1 {
            return Err(Unsealable);
        }
        let nonce = Nonce::try_from(&sealed[1..=NONCE_BYTES]).map_err(|_| Unsealable)?;
        let payload = Payload {
            msg: &sealed[1 + NONCE_BYTES..],
            aad: owner,
        };
        self.cipher.decrypt(&nonce, payload).map_err(|_| Unsealable)
    }
}

/// The bytes of a new TOTP secret (160 bits, RFC 4226's recommendation).
const TOTP_SECRET_BYTES: usize = 20;

/// An authenticator app's secret. Its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        Self(rand::random::<[u8; TOTP_SECRET_BYTES]>().to_vec())
    }

    /// A secret as stored (opened): at least 128 bits, as RFC 4226 requires.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        (bytes.len() >= 16).then_some(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A secret typed as an app takes it (base32, spaces and case ignored): what a
    /// client that shows no QR code reads (and the tests, to compute codes).
    pub fn from_base32(text: &str) -> Option<Self> {
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let secret = Secret::try_from_base32(compact).ok()?;
        Self::from_bytes(secret.as_ref().to_vec())
    }

    /// The secret as apps take it typed in: base32 (RFC 4648, no padding), in groups of
    /// four for reading.
    pub fn base32_grouped(&self) -> String {
        let text = Secret::from(self.0.clone()).to_base32();
        let chars: Vec<char> = text.chars().collect();
        chars
            .chunks(4)
            .map(|group| group.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn totp(&self, account: &str) -> Option<Totp> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_step_duration(30)
            .with_skew(1)
            .with_secret(self.0.clone())
            .with_issuer(Some("flotilla"))
            // ':' separates issuer and account in the label: not allowed inside either.
            .with_account_name(account.replace(':', " "))
            .build()
            .ok()
    }

    /// The `otpauth://totp/…` address an app reads from the QR code: issuer
    /// `flotilla`, `account` (the address) as the label.
    pub fn provisioning_url(&self, account: &str) -> Option<String> {
        self.totp(account)?.to_url().ok()
    }

    /// The code an app shows at `unix` seconds (for tests and benchmarks).
    pub fn code_at(&self, unix: u64) -> String {
        self.totp("")
            .map_or_else(String::new, |t| t.generate(unix).to_string())
    }

    /// The time step `code` belongs to when it is right at `unix` (one step of drift
    /// either way) and newer than `last_step`, the step of the last code accepted:
    /// a code is used once, and an older one never after a newer. Spaces in the code
    /// are ignored ("123 456").
    pub fn check(&self, code: &str, unix: u64, last_step: Option<u64>) -> Option<u64> {
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let step = self.totp("")?.check(&code, unix)?;
        match last_step {
            Some(last) if step <= last => None,
            _ => Some(step),
        }
    }
}

/// `text` as a QR code (medium error correction, black on white whatever the page's
/// colours), as a `data:image/svg+xml;base64,…` URL for an `<img>`.
pub fn qr_svg_data_url(text: &str) -> Option<String> {
    use base64::Engine as _;
    use qrcode::render::svg;
    use qrcode::{EcLevel, QrCode};
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(image)
    ))
}

/// How many recovery codes an enrolment gives.
pub const RECOVERY_CODES: usize = 10;

/// The letters of recovery codes: lower-case base32 without the look-alikes' trouble
/// (RFC 4648's alphabet has no 0, 1 or 8).
const RECOVERY_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Ten new recovery codes, `xxxxx-xxxxx` (50 random bits each), to show once; store
/// [`crate::token_hash`] of each [`normalise_recovery_code`].
pub fn recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let letters: String = rand::random::<[u8; 10]>()
                .iter()
                .map(|b| char::from(RECOVERY_ALPHABET[usize::from(b % 32)]))
                .collect();
            format!("{}-{}", &letters[..5], &letters[5..])
        })
        .collect()
}

/// A recovery code as typed, in the form it was issued: lower case, spaces and dashes
/// dropped, the dash put back in the middle (anything else is left to not match).
pub fn normalise_recovery_code(typed: &str) -> String {
    let letters: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    match (letters.len(), letters.get(..5), letters.get(5..)) {
        (10, Some(head), Some(tail)) => format!("{head}-{tail}"),
        _ => letters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FactorKey {
        FactorKey::from_hex(&"0f".repeat(32)).unwrap()
    }

    #[test]
    fn a_key_is_64_hex_digits() {
        assert!(FactorKey::from_hex(&format!(" {}\n", "aB".repeat(32))).is_some());
        assert!(FactorKey::from_hex(&"ab".repeat(31)).is_none());
        assert!(FactorKey::from_hex(&"ab".repeat(33)).is_none());
        assert!(FactorKey::from_hex(&"zz".repeat(32)).is_none());
        assert_eq!(format!("{:?}", key()), "FactorKey(…)");
    }

    #[test]
    fn a_sealed_secret_opens_for_its_owner_only() {
        let sealed = key().seal(b"the secret", b"totp:ada");
        assert_eq!(sealed[0], SEALED_V1);
        assert!(!sealed.windows(10).any(|w| w == b"the secret"));
        assert_eq!(key().open(&sealed, b"totp:ada").unwrap(), b"the secret");
        assert_eq!(key().open(&sealed, b"totp:grace"), Err(Unsealable));
        let other = FactorKey::from_hex(&"1e".repeat(32)).unwrap();
        assert_eq!(other.open(&sealed, b"totp:ada"), Err(Unsealable));
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key().open(&altered, b"totp:ada"), Err(Unsealable));
        assert_eq!(key().open(&sealed[..20], b"totp:ada"), Err(Unsealable));
        // Two seals of one secret differ (a fresh nonce each).
        assert_ne!(sealed, key().seal(b"the secret", b"totp:ada"));
    }

    #[test]
    fn a_code_is_right_once_within_a_step_of_drift() {
        // RFC 6238's test secret (SHA-1) and vector: 94287082 at 59 s, 287082 in 6 digits.
        let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(secret.code_at(59), "287082");
        let now = 1_796_200_000;
        let step = now / 30;
        let code = secret.code_at(now);
        assert_eq!(secret.check(&code, now, None), Some(step));
        assert_eq!(
            secret.check(&format!("{} {}", &code[..3], &code[3..]), now, None),
            Some(step)
        );
        // Used: refused, and so is the code before it.
        assert_eq!(secret.check(&code, now, Some(step)), None);
        assert_eq!(
            secret.check(&secret.code_at(now - 30), now, Some(step)),
            None
        );
        // A step of drift either way is fine, two are not.
        assert_eq!(
            secret.check(&secret.code_at(now - 30), now, None),
            Some(step - 1)
        );
        assert_eq!(
            secret.check(&secret.code_at(now + 30), now, Some(step)),
            Some(step + 1)
        );
        assert_eq!(secret.check(&secret.code_at(now - 90), now, None), None);
        for wrong in ["", "12345", "1234567", "abcdef", "+12345"] {
            assert_eq!(secret.check(wrong, now, None), None, "{wrong}");
        }
        assert!(TotpSecret::from_bytes(vec![1; 15]).is_none());
        assert_eq!(format!("{secret:?}"), "TotpSecret(…)");
    }

    #[test]
    fn an_app_reads_the_secret_from_the_address_or_the_qr_code() {
        let secret = TotpSecret::generate();
        assert_eq!(secret.as_bytes().len(), 20);
        let url = secret.provisioning_url("ada:x@example.org").unwrap();
        assert!(
            url.starts_with("otpauth://totp/flotilla:ada%20x%40example.org?"),
            "{url}"
        );
        assert!(url.contains("issuer=flotilla"), "{url}");
        let typed = secret.base32_grouped();
        assert_eq!(typed.len(), 32 + 7, "{typed}");
        assert!(
            url.contains(&format!("secret={}", typed.replace(' ', ""))),
            "{url}"
        );
        // Typed back in, however spaced or cased, it is the same secret.
        assert_eq!(TotpSecret::from_base32(&typed).as_ref(), Some(&secret));
        assert_eq!(
            TotpSecret::from_base32(&typed.to_lowercase()).as_ref(),
            Some(&secret)
        );
        assert!(TotpSecret::from_base32("not base32!").is_none());
        assert!(TotpSecret::from_base32("MZXW6").is_none(), "too short");
        let qr = qr_svg_data_url(&url).unwrap();
        assert!(qr.starts_with("data:image/svg+xml;base64,"));
        use base64::Engine as _;
        let svg = base64::engine::general_purpose::STANDARD
            .decode(&qr["data:image/svg+xml;base64,".len()..])
            .unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("<svg"));
    }

    #[test]
    fn recovery_codes_are_ten_different_and_read_back_however_typed() {
        let codes = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: std::collections::BTreeSet<&String> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 11);
            assert_eq!(normalise_recovery_code(code), *code);
            let sloppy = format!(" {} ", code.to_uppercase().replace('-', " "));
            assert_eq!(normalise_recovery_code(&sloppy), *code);
        }
        assert_eq!(normalise_recovery_code("abc"), "abc");
    }
}
