//! Events on the bus: published after a change commits, for the other services to
//! react within milliseconds. No event is needed for correctness (every consumer also
//! catches up from the database), only for speed. A message is a ZeroMQ topic
//! ([`EventTopic`]) and a JSON payload with its version (`"v"`, absent in the first
//! release's events, which had the same fields).

use serde::{Deserialize, Serialize};

use crate::DecodeError;

const VERSION: u64 = 1;

/// The topic a message is published under; subscribers filter by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventTopic {
    SessionRevoked,
    UserUpdated,
    UserDeleted,
}

impl EventTopic {
    pub const ALL: [EventTopic; 3] = [Self::SessionRevoked, Self::UserUpdated, Self::UserDeleted];
    /// The prefix of every event about an account (updated, deleted).
    pub const USER_PREFIX: &'static str = "user.";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionRevoked => "session.revoked",
            Self::UserUpdated => "user.updated",
            Self::UserDeleted => "user.deleted",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// An event, as its publisher sends it and its subscribers read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Sessions ended (sign-out, password change, theft, disabling): deny their tokens.
    SessionRevoked { sids: Vec<String> },
    /// An account's profile, address, visibility or state changed.
    UserUpdated { id: String },
    /// An account was closed.
    UserDeleted { id: String },
}

#[derive(Serialize, Deserialize)]
struct Sessions {
    sids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct User {
    id: String,
}

impl Event {
    pub fn topic(&self) -> EventTopic {
        match self {
            Self::SessionRevoked { .. } => EventTopic::SessionRevoked,
            Self::UserUpdated { .. } => EventTopic::UserUpdated,
            Self::UserDeleted { .. } => EventTopic::UserDeleted,
        }
    }

    /// The account an event is about, for the events that name one.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::UserUpdated { id } | Self::UserDeleted { id } => Some(id),
            Self::SessionRevoked { .. } => None,
        }
    }

    /// The payload, in the current version.
    pub fn encode(&self) -> Vec<u8> {
        let fields = match self {
            Self::SessionRevoked { sids } => serde_json::to_value(Sessions { sids: sids.clone() }),
            Self::UserUpdated { id } | Self::UserDeleted { id } => {
                serde_json::to_value(User { id: id.clone() })
            }
        };
        crate::versioned(fields, VERSION).into_bytes()
    }

    /// Reads a message of this version or an earlier one.
    pub fn decode(topic: &str, payload: &[u8]) -> Result<Self, DecodeError> {
        let topic = EventTopic::parse(topic).ok_or_else(|| DecodeError::Unknown {
            what: "event topic",
            name: topic.to_owned(),
        })?;
        let what = "event payload";
        let malformed = |cause| DecodeError::Malformed { what, cause };
        let (value, _) = crate::read_versioned(what, payload, VERSION)?;
        Ok(match topic {
            EventTopic::SessionRevoked => Self::SessionRevoked {
                sids: Sessions::deserialize(value).map_err(malformed)?.sids,
            },
            EventTopic::UserUpdated => Self::UserUpdated {
                id: User::deserialize(value).map_err(malformed)?.id,
            },
            EventTopic::UserDeleted => Self::UserDeleted {
                id: User::deserialize(value).map_err(malformed)?.id,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_what_it_wrote() {
        for event in [
            Event::SessionRevoked {
                sids: vec!["s1".into(), "s2".into()],
            },
            Event::UserUpdated { id: "u1".into() },
            Event::UserDeleted { id: "u2".into() },
        ] {
            let payload = event.encode();
            let decoded = Event::decode(event.topic().as_str(), &payload).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn first_release_events_are_still_read() {
        assert_eq!(
            Event::decode("session.revoked", br#"{"sids":["s1"]}"#).unwrap(),
            Event::SessionRevoked {
                sids: vec!["s1".into()]
            }
        );
        let event = Event::decode("user.deleted", br#"{"id":"u7"}"#).unwrap();
        assert_eq!(event.user_id(), Some("u7"));
        // A later release may add fields: they are ignored.
        let event = Event::decode("user.updated", br#"{"v":1,"id":"u8","fields":["bio"]}"#);
        assert_eq!(event.unwrap().user_id(), Some("u8"));
    }

    #[test]
    fn what_cannot_be_read_is_an_error() {
        for (topic, payload) in [
            ("user.renamed", &br#"{"id":"u"}"#[..]),
            ("user.updated", b"u-42"),
            ("user.updated", br#"{"uid":"u"}"#),
            ("session.revoked", br#"{"v":2,"sids":[]}"#),
        ] {
            assert!(Event::decode(topic, payload).is_err(), "{topic}");
        }
    }
}
