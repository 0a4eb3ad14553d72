//! Property tests of the profile's edit (JSON or the form): whatever the fields and
//! values, the patch holds each field as its rule reads it or each wrong field is
//! named; free text is kept trimmed, one line or many, and its length limits (64 and
//! 2000 characters, a CRLF counted once) hold at the boundary.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::domain::{MAX_BIO, MAX_DISPLAY_NAME, ProfilePatch};

const FIELDS: [&str; 5] = ["username", "display_name", "bio", "public", "csrf_token"];

/// Text a client could send: any characters, with line breaks, tabs and controls
/// often enough to matter; now and then long.
fn raw_text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '\r', '\n', '\t', '\0', '\u{7f}', '\u{85}', ' ', '\u{a0}', '\u{2028}', 'é', '😀',
        ]),
        3 => prop::char::range('a', 'z'),
    ];
    prop_oneof![
        8 => prop::collection::vec(char.clone(), 0..40).prop_map(String::from_iter),
        1 => (prop::collection::vec(char, 1..8), 20..800usize)
            .prop_map(|(piece, times)| String::from_iter(piece).repeat(times)),
    ]
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
        1 => raw_text(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => raw_text().prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(serde_json::json!(["a"])),
        1 => Just(serde_json::json!({"a": 1})),
    ]
}

/// Free text as the rule keeps it: CRLF as LF, trimmed, empty as none; or why not.
fn free_text(value: &str, max: usize, multiline: bool) -> Result<Option<String>, ()> {
    let value = value.replace("\r\n", "\n");
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
    match value.chars().count() <= max && value.chars().all(allowed) {
        true => Ok(Some(value.to_owned())),
        false => Err(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_json_edit_is_its_patch_or_names_each_wrong_field(
        fields in prop::collection::btree_map(field_name(), json_value(), 0..6),
    ) {
        let map: Map<String, Value> = fields.clone().into_iter().collect();
        match ProfilePatch::from_json(&map) {
            Ok(patch) => {
                for (field, value) in &fields {
                    let text = value.as_str();
                    match field.as_str() {
                        "display_name" => prop_assert_eq!(
                            patch.display_name.clone(),
                            Some(text.and_then(|t| free_text(t, MAX_DISPLAY_NAME, false).ok().flatten()))
                        ),
                        "bio" => prop_assert_eq!(
                            patch.bio.clone(),
                            Some(text.and_then(|t| free_text(t, MAX_BIO, true).ok().flatten()))
                        ),
                        "public" => prop_assert_eq!(patch.public, value.as_bool()),
                        "username" => prop_assert!(patch.username.is_some()),
                        "csrf_token" => {}
                        other => prop_assert!(false, "{:?} accepted", other),
                    }
                }
                prop_assert_eq!(patch.public.is_some(), fields.contains_key("public"));
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for (field, problem) in &errors {
                    prop_assert!(fields.contains_key(field), "{:?}", field);
                    prop_assert!(!problem.is_empty());
                }
                for field in fields.keys().filter(|f| !FIELDS.contains(&f.as_str())) {
                    prop_assert!(errors.contains_key(field), "{:?} not named", field);
                }
            }
        }
    }

    #[test]
    fn a_form_edit_is_its_patch_or_names_each_wrong_field(
        fields in prop::collection::btree_map(field_name(), raw_text(), 0..6),
    ) {
        let form: BTreeMap<String, String> = fields.clone();
        match ProfilePatch::from_form(&form) {
            Ok(patch) => {
                // An unticked box is `public` off.
                prop_assert_eq!(patch.public, Some(fields.contains_key("public")));
                if let Some(name) = fields.get("display_name") {
                    prop_assert_eq!(
                        patch.display_name.clone(),
                        Some(free_text(name, MAX_DISPLAY_NAME, false).ok().flatten())
                    );
                }
                if let Some(bio) = fields.get("bio") {
                    prop_assert_eq!(patch.bio.clone(), Some(free_text(bio, MAX_BIO, true).ok().flatten()));
                }
                prop_assert!(fields.keys().all(|f| FIELDS.contains(&f.as_str())));
            }
            Err(errors) => {
                prop_assert!(errors.keys().all(|f| fields.contains_key(f)));
                if let Some(name) = fields.get("display_name") {
                    let refused = free_text(name, MAX_DISPLAY_NAME, false).is_err();
                    prop_assert_eq!(errors.contains_key("display_name"), refused);
                }
                if let Some(bio) = fields.get("bio") {
                    let refused = free_text(bio, MAX_BIO, true).is_err();
                    prop_assert_eq!(errors.contains_key("bio"), refused);
                }
            }
        }
    }

    #[test]
    fn free_text_lengths_hold_at_their_bounds_in_characters(
        filler in prop::sample::select(vec!["a", "é", "中", "😀"]),
        breaks in 0usize..5,
    ) {
        for (max, field, multiline) in [
            (MAX_DISPLAY_NAME, "display_name", false),
            (MAX_BIO, "bio", true),
        ] {
            for (length, fits) in [(max, true), (max + 1, false)] {
                // In a bio, some characters are line breaks sent as CRLF (one each).
                let breaks = if multiline { breaks } else { 0 };
                let text = format!("{}{}x", filler.repeat(length - 1 - breaks), "\r\n".repeat(breaks));
                let map = Map::from_iter([(field.to_owned(), Value::String(text.clone()))]);
                let patch = ProfilePatch::from_json(&map);
                prop_assert_eq!(patch.is_ok(), fits, "{} of {}", field, length);
                if let Err(errors) = patch {
                    let expected = format!("must be at most {max} characters (it has {length})");
                    prop_assert_eq!(errors.get(field), Some(&expected));
                }
            }
        }
    }
}
