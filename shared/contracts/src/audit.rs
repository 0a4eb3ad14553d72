//! The actions of the admin console's audit log (the `action` column of `audit_log`):
//! written by the console and by `flotilla-admin promote|demote`, read by the audit
//! page and its export.

stored_names! {
    /// What an admin did (the `action` column).
    AuditAction {
        Promoted = "account.promoted": "Given the admin role.",
        Demoted = "account.demoted": "The admin role taken back.",
        Disabled = "account.disabled": "Disabled: every session ended, sign-in refused.",
        Enabled = "account.enabled": "Enabled again.",
        SessionsRevoked = "account.sessions_revoked": "Every session of the account ended.",
        PasswordResetForced = "account.password_reset_forced": "Sessions ended and a reset link mailed.",
        VerificationResent = "account.verification_resent": "A new confirmation link mailed.",
        Deleted = "account.deleted": "Closed, as its owner closes it, and purged after.",
        FactorsReset = "account.factors_reset": "Second factors and recovery codes removed, every session ended.",
        JobRetried = "job.retried": "A dead job queued again.",
    }
}
