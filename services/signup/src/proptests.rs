//! Property tests of signup's input: a sign-up names exactly the fields that are wrong
//! (each as its own parser says), a valid one is accepted as typed, and a
//! verification link's token is what `plausible_token` lets through.

use flotilla_auth::PasswordPolicy;
use proptest::prelude::*;

use crate::domain::{
    EmailAddress, NewAccount, SignupInput, Username, VerifyInput, plausible_token,
};

/// Text a client could send: any characters, with `@`, dots, white space and
/// controls often enough to matter; now and then long.
fn raw_text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '@', '.', '-', '_', ' ', '\t', '\n', '\0', '\u{a0}', '\u{feff}', 'a', 'Z', '0', 'é',
        ]),
        2 => prop::char::range('a', 'z'),
    ];
    prop_oneof![
        8 => prop::collection::vec(char.clone(), 0..40).prop_map(String::from_iter),
        1 => (prop::collection::vec(char, 1..8), 20..400usize)
            .prop_map(|(piece, times)| String::from_iter(piece).repeat(times)),
    ]
}

/// What a form sends: a valid value or anything.
fn field(valid: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    prop_oneof![valid, raw_text()]
}

fn valid_email() -> impl Strategy<Value = String> {
    "[a-z0-9._+-]{1,20}@[a-z0-9]{1,10}\\.(org|example|test)"
}

/// A password the default policy takes (not common, not white space) unless it holds
/// the address's local part.
fn valid_password() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 !?,.é]{11,60}".prop_map(|p| format!("🦀{p}"))
}

fn valid_username() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_-]{2,20}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_sign_up_names_exactly_the_fields_that_are_wrong(
        email in field(valid_email()),
        password in field(valid_password()),
        username in prop::option::of(field(valid_username())),
    ) {
        let policy = PasswordPolicy::default();
        let input = SignupInput { email, password, username };
        // Each field as its own parser sees it.
        let email = EmailAddress::parse(&input.email);
        let password = match input.password.is_empty() {
            true => Err("is required".to_owned()),
            false => {
                let address = email.as_ref().map_or("", |e| e.as_ref());
                policy.check(&input.password, address)
            }
        };
        let username = match input.username.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => Username::parse(raw).map(Some),
        };
        match NewAccount::parse(&input, &policy) {
            Ok(account) => {
                prop_assert_eq!(Ok(account.email), email);
                prop_assert_eq!(Ok(account.password), password);
                prop_assert_eq!(Ok(account.username), username);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                prop_assert_eq!(errors.get("email"), email.as_ref().err());
                prop_assert_eq!(errors.get("password"), password.as_ref().err());
                prop_assert_eq!(errors.get("username"), username.as_ref().err());
                prop_assert!(errors.len() <= 3, "{:?}", errors);
            }
        }
    }

    #[test]
    fn a_valid_sign_up_is_accepted_as_typed(
        email in valid_email(),
        password in valid_password(),
        username in prop::option::of(valid_username()),
        padding in "[ \t]{0,2}",
    ) {
        let local = email.split('@').next().unwrap_or_default().to_lowercase();
        prop_assume!(local.chars().count() < 3 || !password.to_lowercase().contains(&local));
        prop_assume!(username.as_deref().is_none_or(|u| Username::parse(u).is_ok()));
        let input = SignupInput {
            email: format!("{padding}{email}{padding}"),
            password: password.clone(),
            username: username.as_ref().map(|u| format!("{padding}{u}{padding}")),
        };
        let account = NewAccount::parse(&input, &PasswordPolicy::default());
        prop_assert!(account.is_ok(), "{:?}", account);
        let account = account.unwrap();
        prop_assert_eq!(account.email.as_ref(), email.as_str());
        prop_assert_eq!(account.password.expose(), password.as_str());
        prop_assert_eq!(account.username.as_ref().map(AsRef::as_ref), username.as_deref());
    }

    #[test]
    fn a_link_token_is_the_plausible_one(token in prop_oneof![raw_text(), "[A-Za-z0-9_-]{1,140}"]) {
        let input = VerifyInput { token: token.clone() };
        prop_assert_eq!(input.token(), plausible_token(&token));
        if let Some(kept) = input.token() {
            prop_assert_eq!(kept, token.trim());
            prop_assert!(kept.len() <= 128);
        }
    }
}
