//! Property tests of what this crate reads from clients: passwords against the policy,
//! second-factor codes, access tokens, device cookies, sealed secrets and an
//! enrolment's hidden field, and the same-origin rule's headers. Whatever the input
//! (any Unicode, control characters, NUL, huge), each answers with its value or a
//! refusal and never panics; what it makes reads back; limits hold at the boundary.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::test::TestRequest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};

use crate::access_token::{self, Claims, TokenError, TokenSettings};
use crate::device::{self, DeviceEntry, MAX_ENTRIES};
use crate::factors::{FactorKey, TotpSecret, normalise_recovery_code};
use crate::keys::{KeyRing, SigningKey};
use crate::throttle::ThrottleSettings;
use crate::{Code, PasswordPolicy, Proof, SecondFactors, same_origin};

const CASES: u32 = 256;

/// Text a client could send: any characters, with white space, controls, dashes and
/// digits often enough to matter; now and then thousands long.
fn raw_text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            ' ', '\t', '\r', '\n', '\0', '\u{85}', '\u{a0}', '\u{2028}', '\u{feff}', '-', '.',
            '~', '@', '/', '\\', ':', '+', '=', '0', '7', 'a', 'Z', 'é', 'İ', 'K', '٣',
        ]),
        2 => prop::char::range('0', '9'),
        2 => prop::char::range('a', 'z'),
    ];
    prop_oneof![
        8 => prop::collection::vec(char.clone(), 0..40).prop_map(String::from_iter),
        1 => (prop::collection::vec(char, 1..8), 20..800usize)
            .prop_map(|(piece, times)| String::from_iter(piece).repeat(times)),
    ]
}

/// White space as typed around or inside a code.
fn spaces() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec![' ', '\t', '\n', '\u{a0}']), 0..3)
        .prop_map(String::from_iter)
}

/// A temporary key folder, removed at the end of the test that made it.
struct Ring {
    ring: KeyRing,
    dir: std::path::PathBuf,
}

impl Ring {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-proptest-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let (ring, _) = KeyRing::load_or_create(&dir).unwrap();
        Self { ring, dir }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A runner for the properties that share a key folder, keeping its failures beside
/// the others (the `proptest!` ones find their file by their source's name).
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/proptests-device.txt",
        ))),
        ..ProptestConfig::with_cases(cases)
    })
}

// ---------------------------------------------------------------- passwords

fn policy_messages(policy: &PasswordPolicy) -> [String; 5] {
    [
        format!("must be at least {} characters", policy.min_chars),
        format!("must be at most {} characters", policy.max_chars),
        "must not be only spaces".into(),
        "is one of the 10,000 most common passwords; choose another".into(),
        "must not contain the first part of your email address".into(),
    ]
}

/// Characters of a password that is not white space and not on the common list (whose
/// entries are all ASCII).
fn password_of(chars: &[char], length: usize) -> String {
    std::iter::once('🦀')
        .chain(chars.iter().copied())
        .take(length)
        .collect()
}

/// The common passwords the length bounds let through.
static COMMON_LONG: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    include_str!("password/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| (12..=120).contains(&line.chars().count()))
        .collect()
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn a_password_is_accepted_as_typed_or_refused_with_its_message(
        candidate in raw_text(),
        email in raw_text(),
        min_chars in 0usize..20,
        more in 0usize..200,
    ) {
        for policy in [
            PasswordPolicy::default(),
            PasswordPolicy { min_chars, max_chars: min_chars + more },
        ] {
            match policy.check(&candidate, &email) {
                Ok(password) => {
                    prop_assert_eq!(password.expose(), candidate.as_str());
                    let chars = candidate.chars().count();
                    prop_assert!((policy.min_chars..=policy.max_chars).contains(&chars));
                    prop_assert!(!candidate.trim().is_empty());
                    let shown = format!("{password:?}");
                    prop_assert_eq!(shown, "Password(***)");
                }
                Err(message) => prop_assert!(
                    policy_messages(&policy).contains(&message),
                    "unexpected message {:?}", message
                ),
            }
        }
    }

    #[test]
    fn password_lengths_hold_at_their_bounds_in_characters(
        min_chars in 1usize..40,
        more in 0usize..100,
        chars in prop::collection::vec(
            prop_oneof![prop::char::range('!', '~'), prop::sample::select(vec!['é', '中', '🦀'])],
            200,
        ),
    ) {
        let policy = PasswordPolicy { min_chars, max_chars: min_chars + more };
        let [too_short, too_long, ..] = policy_messages(&policy);
        for (length, expected) in [
            (policy.min_chars - 1, Err(too_short)),
            (policy.min_chars, Ok(())),
            (policy.max_chars, Ok(())),
            (policy.max_chars + 1, Err(too_long)),
        ] {
            let candidate = password_of(&chars, length);
            prop_assert_eq!(candidate.chars().count(), length);
            prop_assert_eq!(policy.check(&candidate, "").map(|_| ()), expected, "{}", length);
        }
    }

    #[test]
    fn a_common_password_is_refused_however_cased_and_padded(
        index in any::<prop::sample::Index>(),
        upper in prop::collection::vec(any::<bool>(), 128),
        before in spaces(),
        after in spaces(),
    ) {
        let common = index.get(&COMMON_LONG);
        let cased: String = common
            .chars()
            .zip(&upper)
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let candidate = format!("{before}{cased}{after}");
        prop_assert_eq!(
            PasswordPolicy::default().check(&candidate, "someone@example.org").map(|_| ()),
            Err("is one of the 10,000 most common passwords; choose another".to_owned())
        );
    }

    #[test]
    fn a_password_that_holds_the_address_local_part_is_refused(
        local in "[a-z0-9._-]{3,20}",
        upper in prop::collection::vec(any::<bool>(), 20),
        before in "[a-z ]{0,10}",
        after in "[a-z ]{0,10}",
    ) {
        let cased: String = local
            .chars()
            .zip(&upper)
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let candidate = format!("🦀 {before}{cased}{after} long enough");
        let email = format!("{local}@example.org");
        prop_assert_eq!(
            PasswordPolicy::default().check(&candidate, &email).map(|_| ()),
            Err("must not contain the first part of your email address".to_owned())
        );
    }
}

// ---------------------------------------------------------------- codes

/// A recovery code as issued.
fn recovery_code() -> impl Strategy<Value = String> {
    "[a-z2-7]{5}-[a-z2-7]{5}"
}

/// `code` as a person may type it: any case, spaces and dashes anywhere.
fn sloppy(code: &str) -> impl Strategy<Value = String> + use<> {
    let letters: Vec<char> = code.chars().filter(|c| *c != '-').collect();
    let n = letters.len();
    (
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec(
            prop::sample::select(vec!["", "", "", " ", "-", " - ", "\t", "--"]),
            n + 1,
        ),
    )
        .prop_map(move |(upper, gaps)| {
            let mut typed = gaps[0].to_owned();
            for ((c, up), gap) in letters.iter().zip(upper).zip(&gaps[1..]) {
                typed.push(if up { c.to_ascii_uppercase() } else { *c });
                typed.push_str(gap);
            }
            typed
        })
}

fn is_normal_recovery_code(code: &str) -> bool {
    code.len() == 11
        && code.bytes().enumerate().all(|(i, b)| match i {
            5 => b == b'-',
            _ => b.is_ascii_lowercase() || b.is_ascii_digit(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn a_code_is_six_digits_or_a_recovery_code_or_refused(typed in raw_text()) {
        let compact: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
        match Code::parse(&typed) {
            Ok(Code::Totp(digits)) => {
                prop_assert_eq!(&digits, &compact);
                prop_assert!(digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()));
            }
            Ok(Code::Recovery(normal)) => {
                prop_assert!(is_normal_recovery_code(&normal), "{:?}", normal);
                prop_assert_eq!(normalise_recovery_code(&normal), normal.clone());
                prop_assert_eq!(normalise_recovery_code(&typed), normal);
            }
            Err(problem) if compact.is_empty() => prop_assert_eq!(problem, "is required"),
            Err(problem) => prop_assert_eq!(
                problem,
                "is not a 6-digit code from your authenticator app or a recovery code"
            ),
        }
    }

    #[test]
    fn six_digits_however_spaced_are_an_apps_code(
        digits in "[0-9]{5,7}",
        gaps in prop::collection::vec(spaces(), 8),
    ) {
        let typed: String = digits
            .chars()
            .zip(&gaps)
            .flat_map(|(d, gap)| std::iter::once(d).chain(gap.chars()))
            .collect();
        let expected = match digits.len() {
            6 => Ok(Code::Totp(digits.clone())),
            _ => Err("is not a 6-digit code from your authenticator app or a recovery code"),
        };
        prop_assert_eq!(Code::parse(&format!("{}{typed}", gaps[7])), expected);
    }

    #[test]
    fn a_recovery_code_reads_back_however_typed(
        (code, typed) in recovery_code().prop_flat_map(|code| {
            let typed = sloppy(&code);
            (Just(code), typed)
        }),
    ) {
        prop_assert_eq!(normalise_recovery_code(&typed), code.clone());
        prop_assert_eq!(Code::parse(&typed), Ok(Code::Recovery(code)));
    }

    #[test]
    fn normalising_a_recovery_code_twice_changes_nothing(typed in raw_text()) {
        let once = normalise_recovery_code(&typed);
        prop_assert_eq!(normalise_recovery_code(&once), once);
    }

    #[test]
    fn a_proof_is_a_passkey_answer_or_a_code(
        code in prop::option::of(raw_text()),
        passkey in prop::option::of(raw_text()),
        challenge in prop::option::of(raw_text()),
    ) {
        let answer = passkey.as_deref().map(str::trim).filter(|p| !p.is_empty());
        let token = challenge.as_deref().map(str::trim).filter(|c| !c.is_empty());
        let read = Proof::read(code.as_deref(), passkey.as_deref(), challenge.as_deref());
        match (answer, token) {
            (Some(answer), Some(token)) => prop_assert_eq!(
                read,
                Ok(Proof::Passkey { challenge: token.to_owned(), answer: answer.to_owned() })
            ),
            (Some(_), None) => {
                prop_assert_eq!(read, Err(("passkey_challenge", "is required with a passkey")));
            }
            (None, _) => prop_assert_eq!(
                read,
                Code::parse(code.as_deref().unwrap_or_default())
                    .map(Proof::Code)
                    .map_err(|problem| ("code", problem))
            ),
        }
    }
}

// ---------------------------------------------------------------- TOTP and sealing

/// Seconds since 1970 from well after the epoch to well after 2100.
fn unix() -> impl Strategy<Value = u64> {
    1_000_000u64..5_000_000_000
}

fn secret() -> impl Strategy<Value = TotpSecret> {
    prop::collection::vec(any::<u8>(), 16..64).prop_map(|b| TotpSecret::from_bytes(b).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn an_apps_code_is_right_once_within_a_step_either_way(
        secret in secret(),
        at in unix(),
        drift in -1i64..=1,
        gaps in prop::collection::vec(spaces(), 7),
    ) {
        let shown_at = at.saturating_add_signed(drift * 30);
        let code = secret.code_at(shown_at);
        let typed: String = gaps[0].chars().chain(code.chars().zip(&gaps[1..])
            .flat_map(|(d, gap)| std::iter::once(d).chain(gap.chars()))).collect();
        let step = secret.check(&typed, at, None);
        // The step of the code (or, once in a million, a neighbour's with the same code).
        let Some(step) = step else {
            return Err(TestCaseError::fail(format!("{typed:?} refused at {at}")));
        };
        prop_assert!(step.abs_diff(at / 30) <= 1);
        prop_assert_eq!(secret.code_at(step * 30), code.clone());
        // Used: refused from then on.
        prop_assert_eq!(secret.check(&code, at, Some(step)), None);
        prop_assert_eq!(secret.check(&code, at, Some(at / 30 + 1)), None);
    }

    #[test]
    fn any_code_is_refused_or_names_a_step_within_the_drift(
        secret in secret(),
        typed in prop_oneof![raw_text(), "[0-9]{6}"],
        at in unix(),
        last in prop::option::of(unix().prop_map(|t| t / 30)),
    ) {
        if let Some(step) = secret.check(&typed, at, last) {
            prop_assert!(step.abs_diff(at / 30) <= 1);
            prop_assert!(last.is_none_or(|last| step > last));
            let compact: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
            prop_assert_eq!(secret.code_at(step * 30), compact);
        }
    }

    #[test]
    fn a_secret_typed_in_base32_reads_back(
        secret in secret(),
        lower in any::<bool>(),
        gaps in spaces(),
    ) {
        let grouped = secret.base32_grouped();
        let typed = match lower {
            true => grouped.to_lowercase(),
            false => grouped.replace(' ', &gaps),
        };
        prop_assert_eq!(TotpSecret::from_base32(&typed), Some(secret));
    }

    #[test]
    fn a_typed_secret_is_at_least_128_bits_or_refused(typed in raw_text()) {
        if let Some(secret) = TotpSecret::from_base32(&typed) {
            prop_assert!(secret.as_bytes().len() >= 16);
        }
    }

    #[test]
    fn a_factor_key_is_exactly_64_hex_digits(
        typed in prop_oneof![
            raw_text(),
            // A key with a few of its digit pairs changed (a sign, a space, a letter past
            // f, a non-ASCII character, one digit less or more), in white space.
            (
                spaces(),
                "[0-9a-fA-F]{64}",
                prop::collection::vec(
                    (
                        0usize..32,
                        prop::sample::select(vec!["+a", "-a", " a", "a ", "zz", "é", "a", "abc"]),
                    ),
                    0..3,
                ),
                spaces(),
            )
                .prop_map(|(before, key, changes, after)| {
                    let mut pairs: Vec<String> =
                        key.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).into()).collect();
                    for (at, with) in changes {
                        pairs[at] = with.to_owned();
                    }
                    format!("{before}{}{after}", pairs.concat())
                }),
        ],
    ) {
        let trimmed = typed.trim();
        let hex = trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit());
        prop_assert_eq!(FactorKey::from_hex(&typed).is_some(), hex, "{:?}", typed);
    }

    #[test]
    fn a_sealed_secret_opens_for_its_owner_only_and_unchanged(
        plaintext in prop::collection::vec(any::<u8>(), 0..200),
        owner in raw_text(),
        other in raw_text(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        junk in prop::collection::vec(any::<u8>(), 0..100),
    ) {
        let key = FactorKey::from_hex(&"0f".repeat(32)).unwrap();
        let sealed = key.seal(&plaintext, owner.as_bytes());
        prop_assert_eq!(key.open(&sealed, owner.as_bytes()), Ok(plaintext));
        if other != owner {
            prop_assert!(key.open(&sealed, other.as_bytes()).is_err());
        }
        let mut altered = sealed.clone();
        altered[flip.index(sealed.len())] ^= 1 << bit;
        prop_assert!(key.open(&altered, owner.as_bytes()).is_err());
        prop_assert!(key.open(&junk, owner.as_bytes()).is_err());
    }

    #[test]
    fn an_enrolment_form_is_read_only_as_it_was_made(
        user in raw_text(),
        pending in prop_oneof![raw_text(), any::<Vec<u8>>().prop_map(|b| {
            base64::engine::general_purpose::STANDARD.encode(b)
        })],
    ) {
        let now = chrono::Utc::now().naive_utc();
        // A hidden field as a client may send it back: anything but what was made.
        prop_assert_eq!(FACTORS.pending_secret(&user, &pending, now), None);
        let enrolment = FACTORS.begin_enrolment(&user, now);
        let back = FACTORS.pending_secret(&user, &enrolment.pending, now);
        prop_assert_eq!(back, Some(enrolment.secret));
    }
}

static FACTORS: LazyLock<SecondFactors> = LazyLock::new(|| {
    let key = FactorKey::from_hex(&"ab".repeat(32)).unwrap();
    let settings = ThrottleSettings {
        max_failures: 5,
        window: chrono::TimeDelta::seconds(900),
        max_delay_secs: 900,
    };
    SecondFactors::new(key, "http://example.test", settings)
});

// ---------------------------------------------------------------- access tokens

fn settings() -> TokenSettings {
    TokenSettings {
        issuer: "http://127.0.0.1:8080/login".into(),
        audience: "flotilla".into(),
        ttl_secs: 900,
        leeway_secs: 30,
    }
}

static TOKEN_KEY: LazyLock<SigningKey> = LazyLock::new(SigningKey::generate);

fn claims() -> impl Strategy<Value = Claims> {
    let text = || prop::collection::vec(any::<char>(), 0..30).prop_map(String::from_iter);
    (
        (text(), text(), text(), any::<bool>(), text()),
        (prop::option::of(text()), prop::option::of(text())),
        (prop::collection::vec(text(), 0..3), text()),
    )
        .prop_map(
            |((sub, sid, role, email_verified, email), (preferred_username, name), (amr, csrf))| {
                let now = chrono::Utc::now().timestamp();
                Claims {
                    sub,
                    sid,
                    role,
                    email_verified,
                    email,
                    preferred_username,
                    name,
                    amr,
                    csrf,
                    iss: settings().issuer,
                    aud: settings().audience,
                    iat: now,
                    nbf: now,
                    exp: now + 900,
                }
            },
        )
}

/// Text shaped like a JWT: three base64url parts of JSON-ish or arbitrary bytes.
fn jwt_shaped() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        any::<Vec<u8>>(),
        Just(br#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#.to_vec()),
        Just(br#"{"alg":"none"}"#.to_vec()),
        Just(br#"{"alg":"HS256","kid":"k1"}"#.to_vec()),
        Just(br#"{"alg":"EdDSA","kid":1}"#.to_vec()),
        Just(br#"{"sub":"u1","exp":99999999999,"aud":"flotilla"}"#.to_vec()),
    ];
    (part.clone(), part.clone(), part, any::<bool>()).prop_map(|(h, c, s, dots)| {
        let mut token = [h, c, s].map(|p| URL_SAFE_NO_PAD.encode(p)).join(".");
        if dots {
            token.push('.');
        }
        token
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_token_text_is_refused_without_a_panic(
        token in prop_oneof![raw_text(), jwt_shaped()],
    ) {
        let public = access_token::decoding_key(&TOKEN_KEY.public_x()).unwrap();
        if access_token::key_id(&token).is_ok() {
            prop_assert!(token.len() <= 4096);
        }
        prop_assert!(access_token::verify(&settings(), &token, &public).is_err());
        if access_token::decoding_key(&token).is_some() {
            prop_assert_eq!(URL_SAFE_NO_PAD.decode(&token).map(|b| b.len()).ok(), Some(32));
        }
    }

}

proptest! {
    // Each case signs and verifies (Ed25519, slow unoptimised): fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_signed_token_verifies_to_its_claims_and_any_change_is_refused(
        claims in claims(),
        at in any::<prop::sample::Index>(),
        with in prop::sample::select(
            "ABCabc019-_.=+/ ".chars().collect::<Vec<_>>()
        ),
    ) {
        let token = access_token::sign(&TOKEN_KEY, &claims).unwrap();
        let public = access_token::decoding_key(&TOKEN_KEY.public_x()).unwrap();
        prop_assert_eq!(access_token::key_id(&token), Ok(TOKEN_KEY.kid.clone()));
        prop_assert_eq!(access_token::verify(&settings(), &token, &public), Ok(claims));
        let mut changed: Vec<char> = token.chars().collect();
        let i = at.index(changed.len());
        prop_assume!(changed[i] != with);
        changed[i] = with;
        let changed: String = changed.into_iter().collect();
        let verified = access_token::verify(&settings(), &changed, &public);
        prop_assert!(verified.is_err(), "{:?} at {}: {:?}", with, i, verified);
    }
}

#[test]
fn a_token_past_4096_bytes_is_not_read() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#);
    for (length, read) in [(4095, true), (4096, true), (4097, false), (100_000, false)] {
        let payload = "A".repeat(length - header.len() - 2);
        let token = format!("{header}.{payload}.");
        assert_eq!(token.len(), length);
        let expected = match read {
            true => Ok("k1".to_owned()),
            false => Err(TokenError::Malformed),
        };
        assert_eq!(access_token::key_id(&token), expected, "{length}");
    }
}

// ---------------------------------------------------------------- device cookies

fn user_id() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,40}"
}

#[test]
fn a_device_cookie_from_a_client_reads_as_no_entry_or_valid_ones() {
    let ring = Ring::new("device-junk");
    let now = 1_800_000_000;
    let mut runner = runner(CASES);
    let result = runner.run(&raw_text(), |value| {
        // Only a signature of the ring makes an entry; junk has none.
        let entries = device::read(&value, &ring.ring, now);
        prop_assert!(entries.is_empty(), "{:?} read from {:?}", entries, value);
        Ok(())
    });
    result.unwrap();
}

#[test]
fn a_browser_keeps_its_newest_accounts_and_a_changed_cookie_forges_none() {
    let ring = Ring::new("device-accounts");
    let key = ring.ring.newest().unwrap();
    let now = 1_800_000_000;
    let strategy = (
        prop::collection::vec(user_id(), 1..8),
        any::<prop::sample::Index>(),
        prop::sample::select("~.-_0aZ".chars().collect::<Vec<_>>()),
    );
    // Each case signs and verifies dozens of entries (Ed25519, slow unoptimised).
    let mut runner = runner(16);
    let result = runner.run(&strategy, |(sign_ins, at, with)| {
        let mut entries: Vec<DeviceEntry> = Vec::new();
        let mut value = String::new();
        for (n, user) in sign_ins.iter().enumerate() {
            value = device::after_sign_in(&entries, user, key, now + n as i64);
            entries = device::read(&value, &ring.ring, now);
        }
        // The accounts signed in to, newest first, each once, at most MAX_ENTRIES.
        let mut expected: Vec<&str> = Vec::new();
        for user in sign_ins.iter().rev() {
            if !expected.contains(&user.as_str()) {
                expected.push(user);
            }
        }
        expected.truncate(MAX_ENTRIES);
        let read: Vec<&str> = entries.iter().map(|e| e.user_id.as_str()).collect();
        prop_assert_eq!(read, expected);
        // One character changed: what still reads is an entry that was there.
        let mut changed: Vec<char> = value.chars().collect();
        let i = at.index(changed.len());
        changed[i] = with;
        let changed: String = changed.into_iter().collect();
        for entry in device::read(&changed, &ring.ring, now) {
            prop_assert!(entries.contains(&entry), "{:?} forged", entry);
        }
        // Long cookies are not read at all.
        let long = format!(
            "{value}~{}",
            "x".repeat(2048usize.saturating_sub(value.len()))
        );
        prop_assert!(device::read(&long, &ring.ring, now).is_empty());
        Ok(())
    });
    result.unwrap();
}

// ---------------------------------------------------------------- same origin

const SITE: &str = "https://accounts.example.org";

/// A header value a client may send: readable text near the expected ones, or bytes
/// that are no text at all.
fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        Just(SITE.as_bytes().to_vec()),
        Just(b"same-origin".to_vec()),
        Just(b"same-site".to_vec()),
        Just(b"none".to_vec()),
        Just(b"http://127.0.0.1:8080".to_vec()),
        Just(b"https://127.0.0.1:8080".to_vec()),
        Just(b"127.0.0.1:8080".to_vec()),
        Just(b"https".to_vec()),
        Just(b"null".to_vec()),
        raw_text().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..20),
        any::<Vec<u8>>().prop_map(|b| [SITE.as_bytes(), &b].concat()),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn only_this_sites_pages_pass_the_same_origin_rule(
        site in header_value(),
        origin in header_value(),
        host in header_value(),
        forwarded_host in header_value(),
        forwarded_proto in header_value(),
        strict in any::<bool>(),
    ) {
        let mut req = TestRequest::post().uri("/login");
        let mut sent = |name: &'static str, value: &Option<Vec<u8>>| {
            let value = value.as_ref().and_then(|v| HeaderValue::from_bytes(v).ok());
            if let Some(value) = &value {
                req = std::mem::take(&mut req).insert_header((name, value.clone()));
            }
            value
        };
        let site = sent("sec-fetch-site", &site);
        let origin = sent(header::ORIGIN.as_str(), &origin);
        let host = sent(header::HOST.as_str(), &host);
        let forwarded_host = sent("x-forwarded-host", &forwarded_host);
        let proto = sent("x-forwarded-proto", &forwarded_proto);
        let req = req.to_http_request();
        let allowed = same_origin(SITE, &req, strict).is_ok();
        // The rule, from the header values as bytes: a header sent must be right.
        let site_ok = site.as_ref().is_none_or(|s| s.as_bytes() == b"same-origin");
        let proxy_origin = forwarded_host.as_ref().or(host.as_ref()).map(|host| {
            // The proxy's own header: the default when it is no text.
            let proto = proto.as_ref().and_then(|p| p.to_str().ok()).unwrap_or("http");
            let proto = proto.as_bytes();
            [proto, b"://", host.as_bytes()].concat()
        });
        let origin_ok = origin.as_ref().is_none_or(|o| {
            o.as_bytes() == SITE.as_bytes()
                || proxy_origin.as_deref() == Some(o.as_bytes())
        });
        let expected = site_ok && origin_ok && (site.is_some() || origin.is_some() || !strict);
        prop_assert_eq!(allowed, expected, "{:?}", req.headers());
    }
}
