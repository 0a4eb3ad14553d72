//! The actions of the admin console's audit log (the `action` column of `audit_log`):
//! written by the console and by `flotilla-admin promote|demote`, read by the audit
//! page and its export.

use serde::{Deserialize, Serialize};

macro_rules! actions {
    ($($variant:ident = $name:literal: $doc:literal,)*) => {
        /// What an admin did (the `action` column).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AuditAction {
            $(#[doc = $doc] #[serde(rename = $name)] $variant,)*
        }

        impl AuditAction {
            pub const ALL: &'static [AuditAction] = &[$(Self::$variant,)*];

            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    Promoted = "account.promoted": "Given the admin role.",
    Demoted = "account.demoted": "The admin role taken back.",
    Disabled = "account.disabled": "Disabled: every session ended, sign-in refused.",
    Enabled = "account.enabled": "Enabled again.",
    SessionsRevoked = "account.sessions_revoked": "Every session of the account ended.",
    PasswordResetForced = "account.password_reset_forced": "Sessions ended and a reset link mailed.",
    VerificationResent = "account.verification_resent": "A new confirmation link mailed.",
    Deleted = "account.deleted": "Closed, as its owner closes it, and purged after.",
    JobRetried = "job.retried": "A dead job queued again.",
}

impl AuditAction {
    /// A stored name; `None` for an action this release does not know (a newer one's).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_read_back() {
        let mut seen = std::collections::HashSet::new();
        for action in AuditAction::ALL {
            assert!(seen.insert(action.as_str()), "{action} twice");
            assert_eq!(AuditAction::parse(action.as_str()), Some(*action));
            let json = serde_json::to_string(action).unwrap();
            assert_eq!(json, format!("\"{action}\""));
        }
        assert_eq!(AuditAction::parse("account.teleported"), None);
    }
}
