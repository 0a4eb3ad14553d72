//! Property tests of login's input: where a browser goes afterwards (`next`), the
//! sign-in, forgotten-password and confirmation fields, and the tokens sent back.
//! Whatever the text, each answers with its value or a field's message; a `next` it
//! keeps is always a path of this site, resolved as a browser resolves it.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use flotilla_auth::Proof;
use proptest::prelude::*;
use url::Url;

use crate::domain::{ConfirmInput, ForgotInput, LoginInput, landing, plausible_token, safe_next};

const SITE: &str = "https://accounts.example.org";

/// Text a client could send: any characters, with slashes, backslashes, colons, white
/// space and controls often enough to matter; now and then long.
fn raw_text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => any::<char>(),
        4 => prop::sample::select(vec![
            '/', '/', '\\', ':', '.', '@', '?', '#', '%', ' ', '\t', '\r', '\n', '\0', '\u{7f}',
            '\u{85}', '\u{a0}', '\u{2028}', '\u{3000}', '\u{feff}', '\u{ff0f}', 'a', 'Z', 'é',
        ]),
        2 => prop::char::range('a', 'z'),
    ];
    prop_oneof![
        8 => prop::collection::vec(char.clone(), 0..40).prop_map(String::from_iter),
        1 => (prop::collection::vec(char, 1..8), 20..300usize)
            .prop_map(|(piece, times)| String::from_iter(piece).repeat(times)),
    ]
}

/// A `next` as an attacker would try it: a way off the site, or a path, behind white
/// space and followed by anything.
fn hostile_next() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["", " ", "\t", "\u{a0}", "\u{3000}", "\n", "\0"]),
        prop::sample::select(vec![
            "//",
            "/\\",
            "\\\\",
            "\\/",
            "/\t/",
            "/\r\n/",
            "///",
            "/%2f/",
            "/./",
            "/../",
            "https:",
            "http://",
            "javascript:",
            "JaVaScRiPt:",
            "data:",
            "//@",
            "/ /",
            "/",
            "",
        ]),
        prop::sample::select(vec![
            "evil.example",
            "evil.example/x",
            "@evil",
            "",
            "profile",
        ]),
        raw_text(),
    )
        .prop_map(|(space, start, host, rest)| format!("{space}{start}{host}{rest}"))
}

/// Where a browser on `base` goes for a `Location` of `location`.
fn resolve(location: &str) -> Option<Url> {
    Url::parse(&format!("{SITE}/login"))
        .ok()?
        .join(location)
        .ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_kept_next_is_a_path_of_this_site(next in prop_oneof![raw_text(), hostile_next()]) {
        let Some(kept) = safe_next(Some(&next)) else {
            // Refused: the landing page instead.
            prop_assert_eq!(landing(Some(&next)), "/profile");
            return Ok(());
        };
        prop_assert_eq!(kept.as_str(), next.trim());
        prop_assert!(kept.starts_with('/') && !kept.starts_with("//"), "{:?}", kept);
        prop_assert!(!kept.contains(['\\', '\r', '\n', '\t', '\0']), "{:?}", kept);
        prop_assert!(kept.len() <= 512);
        // Stable: what was kept is kept again.
        prop_assert_eq!(safe_next(Some(&kept)), Some(kept.clone()));
        prop_assert_eq!(landing(Some(&next)), kept.clone());
        // A browser sent there stays on this site.
        let to = resolve(&kept);
        prop_assert!(to.is_some(), "{:?}", kept);
        let to = to.unwrap();
        prop_assert_eq!(to.origin().ascii_serialization(), SITE, "{:?} -> {}", kept, to);
        prop_assert!(to.username().is_empty() && to.password().is_none());
        // And the redirect is a 303 with that Location, never a 500.
        let response = flotilla_kit::html::see_other(&kept);
        prop_assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = HeaderValue::from_str(&kept).ok();
        prop_assert_eq!(response.headers().get(header::LOCATION), location.as_ref());
    }

    #[test]
    fn a_path_is_kept_up_to_512_bytes(
        path in "(/[a-zA-Z0-9._~%-]{1,20}){1,10}(\\?[a-z]{1,8}=[a-z0-9%]{0,8})?",
        filler in prop::sample::select(vec!["a", "é", "中", "😀"]),
    ) {
        prop_assert_eq!(safe_next(Some(&path)), Some(path.clone()));
        // Padded to 512 bytes it is kept; a byte more and it is not.
        let mut long = format!("{path}/");
        while long.len() + filler.len() <= 512 {
            long.push_str(filler);
        }
        long.push_str(&"b".repeat(512 - long.len()));
        prop_assert_eq!(long.len(), 512);
        prop_assert_eq!(safe_next(Some(&long)), Some(long.clone()));
        long.push('c');
        prop_assert_eq!(safe_next(Some(&long)), None);
    }

    #[test]
    fn a_sign_in_is_checked_or_each_wrong_field_named(
        email in prop_oneof![raw_text(), "[a-zA-Z0-9.]{1,20}@[a-zA-Z]{1,10}\\.org"],
        password in raw_text(),
    ) {
        let input = LoginInput { email: email.clone(), password: password.clone(), next: None };
        let trimmed = email.trim();
        let email_ok = !trimmed.is_empty() && trimmed.chars().count() <= 254 && trimmed.contains('@');
        let password_ok = !password.is_empty() && password.chars().count() <= 1024;
        match input.check() {
            Ok(attempt) => {
                prop_assert!(email_ok && password_ok);
                prop_assert_eq!(attempt.lookup, trimmed.to_lowercase());
                prop_assert_eq!(attempt.password, password);
            }
            Err(errors) => {
                prop_assert_eq!(errors.contains_key("email"), !email_ok);
                prop_assert_eq!(errors.contains_key("password"), !password_ok);
                prop_assert!(errors.keys().all(|k| k == "email" || k == "password"));
            }
        }
        let forgot = ForgotInput { email: email.clone() }.check();
        prop_assert_eq!(forgot.is_ok(), email_ok);
        if let Ok(lookup) = forgot {
            prop_assert_eq!(lookup, trimmed.to_lowercase());
        }
    }

    #[test]
    fn sign_in_lengths_hold_at_their_bounds_in_characters(
        filler in prop::sample::select(vec!["a", "é", "中", "😀"]),
    ) {
        for (length, fits) in [(254, true), (255, false)] {
            let email = format!("{}@example.org", filler.repeat(length - 12));
            prop_assert_eq!(email.chars().count(), length);
            let input = LoginInput { email: email.clone(), password: "p".into(), next: None };
            prop_assert_eq!(input.check().is_ok(), fits, "{}", length);
            prop_assert_eq!(ForgotInput { email }.check().is_ok(), fits, "{}", length);
        }
        for (length, fits) in [(1024, true), (1025, false)] {
            let password = filler.repeat(length);
            let input = LoginInput { email: "a@b.c".into(), password: password.clone(), next: None };
            prop_assert_eq!(input.check().is_ok(), fits, "{}", length);
            let confirm = ConfirmInput { password, ..ConfirmInput::default() };
            prop_assert_eq!(confirm.check(false).is_ok(), fits, "{}", length);
        }
    }

    #[test]
    fn a_confirmation_is_its_password_and_proof_or_its_fields(
        password in raw_text(),
        code in prop::option::of(prop_oneof![raw_text(), "[0-9 ]{6,8}", "[a-z2-7]{5}-[a-z2-7]{5}"]),
        passkey in prop::option::of(raw_text()),
        challenge in prop::option::of(raw_text()),
        needs_code in any::<bool>(),
    ) {
        let input = ConfirmInput {
            password: password.clone(),
            code: code.clone(),
            passkey: passkey.clone(),
            passkey_challenge: challenge.clone(),
            next: None,
            csrf_token: None,
        };
        let password_ok = !password.is_empty() && password.chars().count() <= 1024;
        let proof = Proof::read(code.as_deref(), passkey.as_deref(), challenge.as_deref());
        match input.check(needs_code) {
            Ok((kept, read)) => {
                prop_assert!(password_ok);
                prop_assert_eq!(kept, password);
                match needs_code {
                    true => prop_assert_eq!(read.as_ref(), proof.as_ref().ok()),
                    false => prop_assert_eq!(read, None),
                }
            }
            Err(error) => {
                prop_assert_eq!(error.code(), "invalid_input");
                let fields = error.fields().cloned().unwrap_or_default();
                prop_assert_eq!(fields.contains_key("password"), !password_ok);
                let proof_field = proof.err().filter(|_| needs_code).map(|(field, _)| field);
                for field in ["code", "passkey_challenge"] {
                    prop_assert_eq!(fields.contains_key(field), proof_field == Some(field));
                }
            }
        }
    }

    #[test]
    fn a_token_sent_back_is_taken_exactly_as_sent(
        token in prop_oneof![raw_text(), "[A-Za-z0-9_-]{1,140}"],
        padding in prop::sample::select(vec![" ", "\t", "\n", "\u{a0}"]),
    ) {
        let plausible = plausible_token(&token);
        prop_assert_eq!(
            plausible,
            (1..=128).contains(&token.len())
                && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        // Refresh and reset tokens are not trimmed: padded, they are not one.
        let padded = format!("{padding}{token}");
        prop_assert!(!plausible_token(&padded));
    }
}
