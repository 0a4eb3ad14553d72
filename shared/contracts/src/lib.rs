//! What crosses a process boundary, defined once: the jobs a service queues for the
//! worker ([`Job`]), the events published on the bus ([`Event`]) and the kinds of the
//! auth events recorded in the database ([`AuthEventKind`]) and the admin actions of
//! the audit log ([`AuditAction`]). Writers and readers both use these types, so a
//! producer cannot write a shape its consumer does not read.
//!
//! # Versions
//!
//! Rolling deploys run two releases side by side, and rows outlive the release that
//! wrote them, so every stored or sent shape follows two rules:
//!
//! - **Additive changes only within a version.** A field may be added with a default
//!   (older readers ignore it, newer readers fill it in for older writers); a field is
//!   never renamed, retyped or removed.
//! - **A breaking change is a new version**, written with its number (`"v"` in a job's
//!   payload, in an event's payload), and the reader keeps decoding the previous one
//!   for at least one release. [`Job::decode`] still reads the first release's jobs
//!   (`v` absent: a mail's fields nested under `params`, times as text).
//!
//! Decoding never panics: a shape that cannot be read is a [`DecodeError`], which the
//! worker turns into a dead job with the reason, and a subscriber into a warning.

/// A closed set of names stored in a column (or sent) as an enum: one variant per
/// name, with `ALL`, `as_str`, `parse` (`None` for a name this release does not know,
/// a newer one's), `Display`, and serde by name.
macro_rules! stored_names {
    ($(#[$meta:meta])* $enum:ident { $($variant:ident = $name:literal: $doc:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $enum {
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl $enum {
            pub const ALL: &'static [$enum] = &[$(Self::$variant,)*];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            /// A stored name; `None` for one this release does not know (a newer one's).
            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|k| k.as_str() == name)
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod audit;
mod auth_events;
mod events;
mod jobs;

pub use audit::AuditAction;
pub use auth_events::AuthEventKind;
pub use events::{Event, EventTopic};
pub use jobs::{
    FactorChange, Job, JobKind, Mail, Message, PurgeUser, holds_erased_link, without_secrets,
};

/// A stored or sent shape this release cannot read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown {what} {name:?}")]
    Unknown { what: &'static str, name: String },
    #[error("malformed {what}: {cause}")]
    Malformed {
        what: &'static str,
        cause: serde_json::Error,
    },
    #[error("{what} version {version} is newer than this release reads")]
    TooNew { what: &'static str, version: u64 },
}

/// Serialised `fields` (an object) with the version they are written in, as `"v"`.
fn versioned(fields: serde_json::Result<serde_json::Value>, version: u64) -> String {
    // Structs of strings and numbers always serialise to an object.
    let mut object = match fields {
        Ok(serde_json::Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    };
    object.insert("v".into(), version.into());
    serde_json::Value::Object(object).to_string()
}

/// A versioned payload (no `"v"`: version 1) and its version, refused when it is newer
/// than `current`.
fn read_versioned(
    what: &'static str,
    payload: &[u8],
    current: u64,
) -> Result<(serde_json::Value, u64), DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|cause| DecodeError::Malformed { what, cause })?;
    let version = value
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    if version > current {
        return Err(DecodeError::TooNew { what, version });
    }
    Ok((value, version))
}

#[cfg(test)]
mod stored_names_tests {
    use super::*;

    /// Each name once, read back by `parse`, and serde's name the stored one.
    fn read_back<T>(all: &[T], parse: fn(&str) -> Option<T>, unknown: &str)
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + serde::Serialize,
    {
        let mut seen = std::collections::HashSet::new();
        for name in all {
            let text = name.to_string();
            assert!(seen.insert(text.clone()), "{text} twice");
            assert_eq!(parse(&text), Some(*name));
            assert_eq!(serde_json::to_string(name).unwrap(), format!("\"{text}\""));
        }
        assert_eq!(parse(unknown), None);
    }

    #[test]
    fn names_are_unique_and_read_back() {
        read_back(AuthEventKind::ALL, AuthEventKind::parse, "login.teleported");
        read_back(AuditAction::ALL, AuditAction::parse, "account.teleported");
    }
}
