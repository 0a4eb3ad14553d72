//! Property tests of the account fields and tokens that come from clients as text:
//! whatever the text (any Unicode, control characters, NUL, huge), each parser answers
//! with its value or one of its messages; what it accepts reads back the same; and its
//! length limits hold at the boundary exactly.

use chrono::DateTime;
use proptest::prelude::*;

use crate::directory::{Cursor, MAX_PREFIX, StatusFilter};
use crate::{EmailAddress, LinkPurpose, Origin, Role, Username, new_token, plausible_token};

/// Text a client could send: any characters, with the ones parsers split on or trim
/// (`@`, `.`, white space, controls) often enough to matter; now and then very long.
fn raw_text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '@', '.', '-', '_', '~', ' ', '\t', '\r', '\n', '\0', '\u{7f}', '\u{85}', '\u{a0}',
            '\u{200b}', '\u{2028}', '\u{feff}', '/', '\\', ':', '%', '<', '>', '"', 'a', 'Z',
            '0', 'é', 'İ', 'ß', '😀',
        ]),
        2 => prop::char::range('a', 'z'),
    ];
    prop_oneof![
        8 => prop::collection::vec(char.clone(), 0..80).prop_map(String::from_iter),
        // Long: a generated piece repeated (as cheap to make as a short one).
        1 => (prop::collection::vec(char, 1..8), 20..800usize)
            .prop_map(|(piece, times)| String::from_iter(piece).repeat(times)),
    ]
}

const EMAIL_MESSAGES: [&str; 5] = [
    "is required",
    "must be at most 254 characters",
    "must be an address like name@example.org",
    "must have 1 to 64 characters before the @",
    "must not contain spaces, @, < or > before the domain",
];
const DOMAIN_MESSAGE: &str = "must end in a domain name such as example.org";

/// A local part that is valid (RFC 5322's atext and dots, and some non-ASCII letters).
fn local_part(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(
                "abcXYZ019.!#$%&'*+/=?^_`{|}~-".chars().collect::<Vec<_>>()
            ),
            1 => prop::sample::select(vec!['é', 'ü', 'ø', 'ß', 'Д', '中']),
        ],
        1..=max,
    )
    .prop_map(|chars| {
        // At most 64 bytes: as many of the characters as fit.
        let mut local = String::new();
        for c in chars {
            if local.len() + c.len_utf8() > 64 {
                break;
            }
            local.push(c);
        }
        local
    })
}

/// A domain label: letters, digits, inner dashes, 1 to 63 characters, any case.
fn label() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
}

fn domain() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 2..5).prop_map(|labels| labels.join("."))
}

/// White space a form may carry around a field.
fn padding() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![' ', '\t', '\n', '\r', '\u{a0}']),
        0..3,
    )
    .prop_map(String::from_iter)
}

/// A domain of exactly `length` characters (at least 3), in labels of at most 63.
fn domain_of_length(length: usize) -> String {
    let mut labels = Vec::new();
    let mut left = length;
    while left > 63 {
        // A full label and its dot, keeping at least one character for the last one.
        let take = 63.min(left - 2);
        labels.push("d".repeat(take));
        left -= take + 1;
    }
    labels.push("e".repeat(left));
    if labels.len() == 1 {
        // One label is no domain name: split it.
        let whole = labels.remove(0);
        labels = vec![whole[..1].to_owned(), whole[2..].to_owned()];
    }
    labels.join(".")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_address_is_parsed_or_refused_with_its_message(raw in raw_text()) {
        match EmailAddress::parse(&raw) {
            Ok(email) => {
                let text = email.as_ref();
                // Stable: what was accepted reads back the same.
                prop_assert_eq!(EmailAddress::parse(text), Ok(email.clone()));
                prop_assert_eq!(text, lowercase_domain(raw.trim()));
                prop_assert!(text.chars().count() <= 254);
                let (local, domain) = text.rsplit_once('@').unwrap_or_default();
                prop_assert_eq!(email.local_part(), local);
                prop_assert!(!local.is_empty() && local.len() <= 64);
                prop_assert!(!local.chars().any(|c| c.is_whitespace() || c.is_control()
                    || matches!(c, '@' | '<' | '>')));
                prop_assert!(domain.contains('.'));
                prop_assert!(domain.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit() || b == b'-' || b == b'.'));
            }
            Err(message) => prop_assert!(
                EMAIL_MESSAGES.contains(&message.as_str()) || message == DOMAIN_MESSAGE,
                "unexpected message {:?}", message
            ),
        }
    }

    #[test]
    fn a_valid_address_is_accepted_trimmed_with_its_domain_lower_cased(
        local in local_part(64),
        domain in domain(),
        before in padding(),
        after in padding(),
    ) {
        let address = format!("{local}@{domain}");
        prop_assume!(address.chars().count() <= 254);
        let email = EmailAddress::parse(&format!("{before}{address}{after}"));
        let expected = format!("{local}@{}", domain.to_ascii_lowercase());
        prop_assert_eq!(email.as_ref().map(AsRef::as_ref), Ok(expected.as_str()));
        prop_assert_eq!(EmailAddress::parse(&expected), email);
    }

    #[test]
    fn an_address_is_at_most_254_characters(local_length in 1usize..=64) {
        for (total, fits) in [(254, true), (255, false)] {
            let address = format!(
                "{}@{}",
                "l".repeat(local_length),
                domain_of_length(total - local_length - 1)
            );
            prop_assert_eq!(address.chars().count(), total);
            let parsed = EmailAddress::parse(&address);
            if fits {
                prop_assert!(parsed.is_ok(), "{:?}", parsed);
            } else {
                prop_assert_eq!(parsed, Err("must be at most 254 characters".to_owned()));
            }
        }
    }

    #[test]
    fn a_local_part_is_1_to_64_octets(local in local_part(64), domain in domain()) {
        prop_assume!(66 + domain.len() <= 254);
        let address = format!("{local}@{domain}");
        prop_assert!(EmailAddress::parse(&address).is_ok());
        // Padded past 64 octets (RFC 5321's limit: bytes, not characters).
        let long = format!("{local}{}", "x".repeat(65 - local.len()));
        prop_assert_eq!(
            EmailAddress::parse(&format!("{long}@{domain}")),
            Err("must have 1 to 64 characters before the @".to_owned())
        );
        prop_assert_eq!(
            EmailAddress::parse(&format!("@{domain}")),
            Err("must have 1 to 64 characters before the @".to_owned())
        );
    }

    #[test]
    fn a_domain_label_is_at_most_63_characters(local in local_part(8), other in label()) {
        for (length, fits) in [(63, true), (64, false)] {
            let address = format!("{local}@{}.{other}", "b".repeat(length));
            let parsed = EmailAddress::parse(&address);
            if fits {
                prop_assert!(parsed.is_ok(), "{:?}", parsed);
            } else {
                prop_assert_eq!(parsed, Err(DOMAIN_MESSAGE.to_owned()));
            }
        }
    }

    #[test]
    fn a_username_is_parsed_or_refused_with_its_message(raw in raw_text()) {
        match Username::parse(&raw) {
            Ok(name) => {
                let text = name.as_ref();
                prop_assert_eq!(text, raw.trim());
                prop_assert_eq!(Username::parse(text), Ok(name.clone()));
                prop_assert!((3..=32).contains(&text.len()));
                prop_assert!(text.starts_with(|c: char| c.is_ascii_alphanumeric()));
                prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()
                    || b == b'_' || b == b'-'));
            }
            Err(message) => prop_assert!(
                [
                    "must be 3 to 32 characters",
                    "may contain only lower-case letters a-z, digits, _ and -",
                    "must start with a letter or a digit",
                    "is reserved; choose another",
                ]
                .contains(&message.as_str()),
                "unexpected message {:?}", message
            ),
        }
    }

    #[test]
    fn a_valid_username_is_accepted_trimmed(
        name in "[a-z0-9][a-z0-9_-]{2,31}",
        before in padding(),
        after in padding(),
    ) {
        let parsed = Username::parse(&format!("{before}{name}{after}"));
        if RESERVED.contains(&name.as_str()) {
            prop_assert_eq!(parsed, Err("is reserved; choose another".to_owned()));
        } else {
            prop_assert_eq!(parsed.as_ref().map(AsRef::as_ref), Ok(name.as_str()));
        }
    }

    #[test]
    fn a_username_is_3_to_32_characters(
        chars in prop::collection::vec(
            prop_oneof![prop::char::range('a', 'z'), any::<char>()], 0..40
        ),
    ) {
        // Counted in characters, white space around it not counted.
        let name: String = chars.into_iter().filter(|c| !c.is_whitespace()).collect();
        let length = name.chars().count();
        if !(3..=32).contains(&length) {
            prop_assert_eq!(
                Username::parse(&name),
                Err("must be 3 to 32 characters".to_owned())
            );
        }
    }

    #[test]
    fn a_plausible_token_is_the_trimmed_text_when_short_and_url_safe(raw in raw_text()) {
        match plausible_token(&raw) {
            Some(token) => {
                prop_assert_eq!(token, raw.trim());
                prop_assert!((1..=128).contains(&token.len()));
                prop_assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()
                    || b == b'-' || b == b'_'));
            }
            None => {
                let trimmed = raw.trim();
                prop_assert!(
                    trimmed.is_empty() || trimmed.len() > 128
                        || !trimmed.bytes().all(|b| b.is_ascii_alphanumeric()
                            || b == b'-' || b == b'_')
                );
            }
        }
    }

    #[test]
    fn a_token_of_up_to_128_url_safe_characters_is_plausible(
        token in "[A-Za-z0-9_-]{1,128}",
        before in padding(),
        after in padding(),
        more in "[A-Za-z0-9_-]{1,8}",
    ) {
        let padded = format!("{before}{token}{after}");
        prop_assert_eq!(plausible_token(&padded), Some(token.as_str()));
        let padded = format!("{token}{}", more.repeat(128));
        prop_assert_eq!(plausible_token(&padded[..128]), Some(&padded[..128]));
        prop_assert_eq!(plausible_token(&padded[..129]), None);
    }

    #[test]
    fn stored_names_read_back_and_nothing_else_does(raw in raw_text()) {
        let purposes = LinkPurpose::ALL.map(LinkPurpose::as_str);
        prop_assert_eq!(LinkPurpose::parse(&raw).is_ok(), purposes.contains(&raw.as_str()));
        let statuses = StatusFilter::ALL.map(StatusFilter::as_str);
        prop_assert_eq!(StatusFilter::parse(&raw).is_some(), statuses.contains(&raw.as_str()));
        prop_assert_eq!(Role::parse(&raw).is_ok(), ["user", "admin"].contains(&raw.as_str()));
        for purpose in LinkPurpose::ALL {
            prop_assert_eq!(LinkPurpose::parse(purpose.as_str()).ok(), Some(purpose));
        }
    }

    #[test]
    fn a_cursor_from_a_client_decodes_or_is_refused(raw in raw_text(), bytes in any::<Vec<u8>>()) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        for text in [raw.as_str(), encoded.as_str()] {
            if let Some(cursor) = Cursor::decode(text) {
                // What decodes is a cursor the directory makes: it encodes back.
                prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
            }
        }
        prop_assert_eq!(Cursor::decode(&"A".repeat(4 * MAX_PREFIX + 1)), None);
    }

    #[test]
    fn a_cursor_round_trips(cursor in cursor()) {
        prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }

    #[test]
    fn a_user_agent_is_cut_to_its_first_512_characters(raw in raw_text()) {
        let origin = Origin::new("203.0.113.9".into(), &raw);
        let kept: String = raw.chars().take(crate::MAX_USER_AGENT).collect();
        prop_assert_eq!(origin.user_agent, kept);
        prop_assert!(!crate::summarise_user_agent(&raw).is_empty());
    }
}

#[test]
fn a_username_of_3_or_32_characters_fits_and_2_or_33_do_not() {
    for (length, fits) in [(2, false), (3, true), (32, true), (33, false)] {
        let name = format!("a{}", "b".repeat(length - 1));
        assert_eq!(Username::parse(&name).is_ok(), fits, "{length}");
    }
}

/// New tokens are what [`plausible_token`] expects (not a generated input: 64 draws).
#[test]
fn new_tokens_are_plausible() {
    for _ in 0..64 {
        let token = new_token();
        assert_eq!(token.len(), 43);
        assert_eq!(plausible_token(&token), Some(token.as_str()));
    }
}

/// The reserved names (as `fields.rs` lists them), which a generated name may hit.
const RESERVED: [&str; 13] = [
    "admin",
    "administrator",
    "root",
    "support",
    "help",
    "flotilla",
    "system",
    "signup",
    "login",
    "profile",
    "people",
    "security",
    "index",
];

/// `address` with the part after its last `@` lower-cased (ASCII).
fn lowercase_domain(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => address.to_owned(),
    }
}

fn cursor() -> impl Strategy<Value = Cursor> {
    let key = prop::collection::vec(any::<char>(), 1..100).prop_map(String::from_iter);
    let time = (0i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
        DateTime::from_timestamp(secs, nanos)
            .unwrap_or_default()
            .naive_utc()
    });
    prop_oneof![
        (time, key.clone()).prop_map(|(created_at, id)| Cursor::Newest { created_at, id }),
        key.clone().prop_map(Cursor::Email),
        key.prop_map(Cursor::Username),
    ]
}
