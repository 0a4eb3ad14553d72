//! Jobs: rows of the `jobs` table, written by a service in the transaction that causes
//! them and run by the worker. The `kind` column holds a [`JobKind`], the `payload`
//! column the job's fields as JSON with their version (`"v"`), and a mail's address is
//! also kept in the `recipient` column, so the queue is searched by columns, never
//! inside JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::DecodeError;

/// The version this release writes. Version 1 (the first release, `v` absent) nested a
/// mail's fields under `params` and wrote times as text; [`Job::decode`] reads both.
const VERSION: u64 = 2;

/// The `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// A mail to send ([`Mail`]).
    Email,
    /// A closed account to delete with everything about it ([`PurgeUser`]).
    PurgeUser,
    /// The hourly clean-up of spent tokens, ended sessions and old rows.
    Cleanup,
    /// Does nothing: for tests and the queue benchmark.
    Noop,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [Self::Email, Self::PurgeUser, Self::Cleanup, Self::Noop];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::PurgeUser => "purge_user",
            Self::Cleanup => "cleanup",
            Self::Noop => "noop",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job, as its producer writes it and the worker reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Mail(Mail),
    PurgeUser(PurgeUser),
    Cleanup,
    Noop,
}

impl From<Mail> for Job {
    fn from(mail: Mail) -> Self {
        Self::Mail(mail)
    }
}

impl From<PurgeUser> for Job {
    fn from(purge: PurgeUser) -> Self {
        Self::PurgeUser(purge)
    }
}

impl Job {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Mail(_) => JobKind::Email,
            Self::PurgeUser(_) => JobKind::PurgeUser,
            Self::Cleanup => JobKind::Cleanup,
            Self::Noop => JobKind::Noop,
        }
    }

    /// The address a mail goes to (the `recipient` column).
    pub fn recipient(&self) -> Option<&str> {
        match self {
            Self::Mail(mail) => Some(&mail.to),
            _ => None,
        }
    }

    /// The `payload` column, in the current version.
    pub fn payload(&self) -> String {
        let fields = match self {
            Self::Mail(mail) => serde_json::to_value(mail),
            Self::PurgeUser(purge) => serde_json::to_value(purge),
            Self::Cleanup | Self::Noop => Ok(Value::Object(Map::new())),
        };
        crate::versioned(fields, VERSION)
    }

    /// Reads a row's `kind` and `payload`, of this version or an earlier one.
    pub fn decode(kind: &str, payload: &str) -> Result<Self, DecodeError> {
        let kind = JobKind::parse(kind).ok_or_else(|| DecodeError::Unknown {
            what: "job kind",
            name: kind.to_owned(),
        })?;
        let what = "job payload";
        let malformed = |cause| DecodeError::Malformed { what, cause };
        let (mut value, version) = crate::read_versioned(what, payload.as_bytes(), VERSION)?;
        Ok(match kind {
            JobKind::Email => {
                if version == 1 {
                    lift_params(&mut value);
                }
                Self::Mail(Mail::deserialize(value).map_err(malformed)?)
            }
            JobKind::PurgeUser => {
                Self::PurgeUser(PurgeUser::deserialize(value).map_err(malformed)?)
            }
            JobKind::Cleanup => Self::Cleanup,
            JobKind::Noop => Self::Noop,
        })
    }
}

/// A stored payload without the secrets it carried, for a job that will not run again
/// (dead, or failed for good): every link's `token` parameter is replaced by
/// [`ERASED`], wherever it sits and whatever the payload's version, so the row still
/// says which mail to whom and why it failed, but holds no live link. A payload that
/// is not JSON (this release cannot tell where its secrets are) becomes `{}`.
pub fn without_secrets(payload: &str) -> String {
    match serde_json::from_str::<Value>(payload) {
        Ok(mut value) => {
            erase_tokens(&mut value);
            value.to_string()
        }
        Err(_) => "{}".to_owned(),
    }
}

/// What an erased token reads as.
pub const ERASED: &str = "erased";

/// Whether a payload holds a link whose token was erased ([`without_secrets`]): such a
/// mail cannot be sent again, since its link would not work.
pub fn holds_erased_link(payload: &str) -> bool {
    fn erased(value: &Value) -> bool {
        match value {
            Value::String(text) => text.split_once('?').is_some_and(|(_, query)| {
                let query = query.split('#').next().unwrap_or_default();
                query.split('&').any(|pair| {
                    pair.split_once('=').is_some_and(|(key, value)| {
                        key.eq_ignore_ascii_case("token") && value == ERASED
                    })
                })
            }),
            Value::Array(items) => items.iter().any(erased),
            Value::Object(fields) => fields.values().any(erased),
            _ => false,
        }
    }
    serde_json::from_str::<Value>(payload).is_ok_and(|value| erased(&value))
}

fn erase_tokens(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Some(erased) = erase_token_params(text) {
                *text = erased;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(erase_tokens),
        Value::Object(fields) => fields.values_mut().for_each(erase_tokens),
        _ => {}
    }
}

/// `text` with the value of each `token=` parameter of its query replaced, if it has
/// any.
fn erase_token_params(text: &str) -> Option<String> {
    let (base, query) = text.split_once('?')?;
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let mut erased = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("token") => {
                erased = true;
                format!("{key}={ERASED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    erased.then(|| {
        let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
        format!("{base}?{}{fragment}", pairs.join("&"))
    })
}

/// Version 1 kept a mail's fields in `params`; version 2 keeps them beside `to`.
fn lift_params(value: &mut Value) {
    if let Some(object) = value.as_object_mut()
        && let Some(Value::Object(params)) = object.remove("params")
    {
        for (name, field) in params {
            object.entry(name).or_insert(field);
        }
    }
}

/// A closed account to delete: its row (and by cascade its sessions, links and auth
/// events), the attempts recorded under its address, and the mails to it that failed
/// for good.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeUser {
    pub user_id: String,
    /// SHA-256 of its lower-cased address: the throttling key of its sign-in attempts.
    pub login_key: String,
    /// The address it had (absent in purge jobs of the first release).
    #[serde(default)]
    pub email: Option<String>,
}

impl std::fmt::Debug for PurgeUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeUser")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A mail: who it goes to and which message, with the message's own fields.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Mail {
    pub to: String,
    #[serde(flatten)]
    pub message: Message,
}

/// Its links carry single-use tokens: `Debug` shows the template only.
impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("template", &self.message.template())
            .finish_non_exhaustive()
    }
}

/// Every message the fleet sends, by template.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum Message {
    /// After signing up: confirm the address.
    VerifyEmail {
        link: String,
        #[serde(default = "hours_48")]
        valid_hours: i64,
    },
    /// Someone signed up with an address that has an account.
    SignupExisting { login_link: String },
    /// A password reset link.
    PasswordReset {
        link: String,
        #[serde(default = "minutes_60")]
        valid_minutes: i64,
        #[serde(default)]
        client_addr: Option<String>,
    },
    /// The password was changed or reset.
    PasswordChanged {
        #[serde(with = "when")]
        when: DateTime<Utc>,
        #[serde(default)]
        client_addr: Option<String>,
        reset_link: String,
    },
    /// A sign-in from a kind of browser the account had not used.
    NewDeviceLogin {
        /// "Firefox on Linux".
        device: String,
        #[serde(with = "when")]
        when: DateTime<Utc>,
        #[serde(default)]
        client_addr: Option<String>,
        reset_link: String,
    },
    /// Sent to a new address: confirm it.
    EmailChangeVerify {
        link: String,
        #[serde(default = "hours_24")]
        valid_hours: i64,
    },
    /// Sent to the old address: a change was asked for (the new one masked).
    EmailChangeNotice {
        new_email: String,
        #[serde(default)]
        client_addr: Option<String>,
        forgot_link: String,
    },
    /// Someone asked to move another account to this address, which has one.
    EmailChangeTaken { forgot_link: String },
    /// The account was closed.
    AccountDeleted {},
    /// A second factor was added, removed, reset or stood in for by a recovery code.
    SecondFactorChanged {
        change: FactorChange,
        #[serde(with = "when")]
        when: DateTime<Utc>,
        #[serde(default)]
        client_addr: Option<String>,
        /// Where the owner sees and manages their factors.
        security_link: String,
        /// Recovery codes left (after one was used).
        #[serde(default)]
        codes_left: Option<i64>,
    },
}

/// What happened to an account's second factors, for [`Message::SecondFactorChanged`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorChange {
    TotpAdded,
    TotpRemoved,
    PasskeyAdded,
    PasskeyRemoved,
    RecoveryCodeUsed,
    RecoveryCodesRegenerated,
    /// An admin removed them all.
    Reset,
}

fn hours_48() -> i64 {
    48
}

fn hours_24() -> i64 {
    24
}

fn minutes_60() -> i64 {
    60
}

impl Message {
    /// The template's name, as stored.
    pub fn template(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::SignupExisting { .. } => "signup_existing",
            Self::PasswordReset { .. } => "password_reset",
            Self::PasswordChanged { .. } => "password_changed",
            Self::NewDeviceLogin { .. } => "new_device_login",
            Self::EmailChangeVerify { .. } => "email_change_verify",
            Self::EmailChangeNotice { .. } => "email_change_notice",
            Self::EmailChangeTaken { .. } => "email_change_taken",
            Self::AccountDeleted {} => "account_deleted",
            Self::SecondFactorChanged { .. } => "second_factor_changed",
        }
    }
}

/// Times in mails: RFC 3339 (version 2), or version 1's `2026-11-22 10:05 UTC`.
mod when {
    use chrono::{DateTime, NaiveDateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M UTC").map(|at| at.and_utc())
            })
            .map_err(|_| serde::de::Error::custom(format!("not a time: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify() -> Job {
        Job::Mail(Mail {
            to: "ada@example.org".into(),
            message: Message::VerifyEmail {
                link: "http://x/signup/verify?token=t".into(),
                valid_hours: 48,
            },
        })
    }

    #[test]
    fn every_job_reads_back_what_it_wrote() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T10:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let jobs = [
            verify(),
            Job::Mail(Mail {
                to: "b@example.org".into(),
                message: Message::NewDeviceLogin {
                    device: "Firefox on Linux".into(),
                    when: at,
                    client_addr: None,
                    reset_link: "http://x/login/forgot".into(),
                },
            }),
            Job::Mail(Mail {
                to: "c@example.org".into(),
                message: Message::AccountDeleted {},
            }),
            Job::PurgeUser(PurgeUser {
                user_id: "u1".into(),
                login_key: "k".into(),
                email: Some("c@example.org".into()),
            }),
            Job::Cleanup,
            Job::Noop,
        ];
        for job in jobs {
            let payload = job.payload();
            assert!(payload.contains(r#""v":2"#), "{payload}");
            assert_eq!(Job::decode(job.kind().as_str(), &payload).unwrap(), job);
        }
    }

    #[test]
    fn first_release_rows_are_still_read() {
        // Exactly as the first release's signup and profile wrote them.
        let v1 = r#"{"template":"verify_email","to":"ada@example.org","params":{"link":"http://x/signup/verify?token=t","valid_hours":48}}"#;
        assert_eq!(Job::decode("email", v1).unwrap(), verify());
        let v1 = r#"{"template":"password_changed","to":"ada@example.org","params":{"when":"2026-11-22 10:05 UTC","client_addr":"10.0.0.1","reset_link":"http://x/login/forgot"}}"#;
        let Job::Mail(Mail {
            message: Message::PasswordChanged { when, .. },
            ..
        }) = Job::decode("email", v1).unwrap()
        else {
            panic!("not a password_changed mail");
        };
        assert_eq!(when.to_rfc3339(), "2026-11-22T10:05:00+00:00");
        let v1 = r#"{"template":"account_deleted","to":"ada@example.org","params":{}}"#;
        assert_eq!(
            Job::decode("email", v1).unwrap().recipient(),
            Some("ada@example.org")
        );
        let v1 = r#"{"user_id":"u1","login_key":"k"}"#;
        assert!(matches!(
            Job::decode("purge_user", v1).unwrap(),
            Job::PurgeUser(PurgeUser { email: None, .. })
        ));
        assert_eq!(Job::decode("cleanup", "{}").unwrap(), Job::Cleanup);
    }

    #[test]
    fn what_cannot_be_read_is_an_error_that_says_why() {
        let cases = [
            ("fax", "{}", "unknown job kind \"fax\""),
            ("email", "{", "malformed job payload"),
            (
                "email",
                r#"{"template":"nope","to":"a@b.c"}"#,
                "unknown variant",
            ),
            (
                "email",
                r#"{"template":"verify_email","to":"a@b.c"}"#,
                "missing field `link`",
            ),
            ("noop", r#"{"v":3}"#, "version 3 is newer"),
        ];
        for (kind, payload, expected) in cases {
            let error = Job::decode(kind, payload).unwrap_err().to_string();
            assert!(error.contains(expected), "{kind} {payload}: {error}");
        }
    }

    #[test]
    fn a_payload_without_secrets_keeps_everything_but_the_tokens() {
        let secret = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg";
        let reset = Job::Mail(Mail {
            to: "ada@example.org".into(),
            message: Message::PasswordReset {
                link: format!("http://x/login/reset?token={secret}"),
                valid_minutes: 60,
                client_addr: None,
            },
        });
        let v1 = format!(
            r#"{{"template":"verify_email","to":"ada@example.org","params":{{"link":"http://x/signup/verify?a=1&token={secret}#top","valid_hours":48}}}}"#
        );
        for (kind, payload) in [("email", reset.payload()), ("email", v1)] {
            let erased = without_secrets(&payload);
            assert!(!erased.contains(secret), "{erased}");
            assert!(erased.contains("token=erased"), "{erased}");
            // Still readable for whoever looks into the failure.
            let Job::Mail(mail) = Job::decode(kind, &erased).unwrap() else {
                panic!("not a mail: {erased}");
            };
            assert_eq!(mail.to, "ada@example.org");
        }
        assert!(without_secrets(&format!(
            r#"{{"template":"verify_email","to":"a@b.c","params":{{"link":"http://x/signup/verify?a=1&token={secret}#top"}}}}"#
        ))
        .contains("verify?a=1&token=erased#top"));
        // Nothing to erase: the payload reads the same.
        let plain = Job::Mail(Mail {
            to: "ada@example.org".into(),
            message: Message::EmailChangeTaken {
                forgot_link: "http://x/login/forgot".into(),
            },
        });
        let erased = without_secrets(&plain.payload());
        assert_eq!(Job::decode("email", &erased).unwrap(), plain);
        assert!(!holds_erased_link(&erased), "no token, nothing erased");
        assert!(!holds_erased_link(&reset.payload()), "a live link");
        assert!(holds_erased_link(&without_secrets(&reset.payload())));
        assert_eq!(without_secrets(&format!("not json {secret}")), "{}");
    }

    #[test]
    fn debug_shows_no_link() {
        let shown = format!("{:?}", verify());
        assert!(shown.contains("verify_email"), "{shown}");
        assert!(!shown.contains("token"), "{shown}");
    }
}
