//! The kinds of the rows in `auth_events`: what happened to an account's sign-ins,
//! sessions and credentials. Written by login and profile, counted by the throttle,
//! shown in the account's activity, deleted by the worker's clean-up.

stored_names! {
    /// What an auth event records (the `kind` column).
    AuthEventKind {
        LoginSuccess = "login.success": "A sign-in that opened a session.",
        LoginFailure = "login.failure": "A wrong password, or an address without an account.",
        LoginThrottled = "login.throttled": "An attempt refused before its password was checked.",
        LoginRefusedUnverified = "login.refused_unverified": "The right password, before the address was confirmed.",
        LoginRefusedDisabled = "login.refused_disabled": "The right password, on a disabled account.",
        Logout = "logout": "A session signed out.",
        LogoutAll = "logout_all": "Every session of the account signed out.",
        PasswordResetRequested = "password.reset_requested": "A reset link was asked for.",
        VerificationRequested = "email.verification_requested": "A new confirmation link was asked for (signup's resend).",
        PasswordReset = "password.reset": "The password was reset with a link.",
        PasswordChanged = "password.changed": "The password was changed by its owner.",
        PasswordCheckFailed = "password.check_failed": "A wrong current password on a route that asks for it.",
        PasswordConfirmed = "password.confirmed": "The owner of a session confirmed their password in it (login's confirmation).",
        EmailChangeRequested = "email.change_requested": "A change of address was asked for.",
        EmailChanged = "email.changed": "The address changed (its link was used).",
        SessionRevoked = "session.revoked": "A session ended from the account page.",
        SessionRevokedOthers = "session.revoked_others": "Every other session ended from the account page.",
        SessionRefreshReuse = "session.refresh_reuse": "A spent refresh token came back: the session ended.",
        AccountDeleted = "account.deleted": "The owner closed the account.",
        LoginSecondFactorFailed = "login.second_factor_failed": "A wrong code at a sign-in's second step.",
        SecondFactorCheckFailed = "second_factor.check_failed": "A wrong code on a route that asks for the second factor.",
        TotpAdded = "totp.added": "An authenticator app was set up.",
        TotpRemoved = "totp.removed": "The authenticator app was removed.",
        PasskeyAdded = "passkey.added": "A passkey was added.",
        PasskeyRemoved = "passkey.removed": "A passkey was removed.",
        RecoveryCodeUsed = "recovery_code.used": "A recovery code was used in place of the authenticator app.",
        RecoveryCodesRegenerated = "recovery_codes.regenerated": "New recovery codes were made; the old ones stopped working.",
        FactorsReset = "factors.reset": "An admin removed every second factor of the account.",
    }
}
