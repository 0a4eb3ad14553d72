//! `POST /admin/users/{id}/{action}`: an admin acts on an account. Each action runs
//! one pipeline: the re-authentication rule; one write transaction that makes the
//! change and records its audit entry (actor, action, target, client address, request
//! id); then the wake-up of the worker for the mails and the purge it queued; then the
//! bus (`session.revoked` for the sessions it ended, `user.updated` / `user.deleted`
//! for the static site).
//!
//! Decisions:
//! - An action that changes nothing (enable an enabled account, promote an admin)
//!   answers 200 with `"changed": false` and writes no audit entry: a script may
//!   repeat a request safely, and the log holds only what happened.
//! - A closed account (waiting for its purge) takes no action: 409 `account_closed`;
//!   once purged it is unknown (404).
//! - The last admin who can act can be neither demoted, disabled nor deleted: 409
//!   `last_admin`, whoever asks (an admin acting on their own account included).
//! - `force-password-reset` also removes the password: the point of forcing a reset
//!   is a password that may be known to someone else, who could otherwise sign in
//!   again the moment the sessions end. The owner sets a new one with the link.
//! - `reset-factors` (the recovery procedure for a lost authenticator app) removes the
//!   app, the passkeys and every recovery code, ends every session (one signed in with
//!   the lost phone's codes included), records `factors.reset` among the account's auth events
//!   and mails the owner. Unlike `enable` on an enabled account, a reset of an account
//!   without factors is refused (409 `no_second_factor`): it would end sessions and
//!   mail the owner about a change that did not happen.
//! - A browser's form for `disable`, `force-password-reset`, `reset-factors` and
//!   `delete` must tick the box `confirm=yes` (no JavaScript needed); an API client's
//!   request is explicit already.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::NaiveDateTime;
use chrono::TimeDelta;
use flotilla_accounts::{
    FactorNotice, Factors, LinkMail, NewAuditEntry, Origin, RevokeReason, Role, User,
    revoke_user_sessions,
};
use flotilla_auth::{CarriesCsrf, ClientOrigin};
use flotilla_contracts::{AuditAction, AuthEventKind, Event, FactorChange};
use flotilla_db::diesel::QueryResult;
use flotilla_db::{AnyConnection, write_transaction};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::input::{Input, Then};
use flotilla_kit::middleware::RequestContext;
use flotilla_kit::work::blocking;
use flotilla_kit::{Error, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Admin;
use crate::account::{AccountJson, account_id, account_page, dossier};
use crate::docs;
use crate::errors::AdminError;
use crate::operator::{Operator, OperatorSubmission};

/// What an admin can do to an account: `disable` (ends every session; sign-in refused
/// until enabled), `enable`, `promote` (the admin role), `demote`, `revoke-sessions`,
/// `force-password-reset` (ends every session, removes the password, mails a reset
/// link), `resend-verification` (a new confirmation link), `reset-factors` (removes the
/// authenticator app, passkeys and recovery codes, ends every session, mails the owner),
/// `delete` (closes the account as its owner would; purged after the revocation hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Disable,
    Enable,
    Promote,
    Demote,
    RevokeSessions,
    ForcePasswordReset,
    ResendVerification,
    ResetFactors,
    Delete,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Self::Disable,
        Self::Enable,
        Self::Promote,
        Self::Demote,
        Self::RevokeSessions,
        Self::ForcePasswordReset,
        Self::ResendVerification,
        Self::ResetFactors,
        Self::Delete,
    ];

    /// Its name in the route.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Promote => "promote",
            Self::Demote => "demote",
            Self::RevokeSessions => "revoke-sessions",
            Self::ForcePasswordReset => "force-password-reset",
            Self::ResendVerification => "resend-verification",
            Self::ResetFactors => "reset-factors",
            Self::Delete => "delete",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == name)
    }

    /// What the form's button says.
    pub fn label(self) -> &'static str {
        match self {
            Self::Disable => "Disable",
            Self::Enable => "Enable",
            Self::Promote => "Make admin",
            Self::Demote => "Take the admin role back",
            Self::RevokeSessions => "End every session",
            Self::ForcePasswordReset => "Force a password reset",
            Self::ResendVerification => "Send a new confirmation link",
            Self::ResetFactors => "Reset second factors",
            Self::Delete => "Delete",
        }
    }

    /// What the action does, beside its button.
    pub fn explanation(self) -> &'static str {
        match self {
            Self::Disable => "Ends every session at once; sign-in is refused until enabled.",
            Self::Enable => "Sign-in works again.",
            Self::Promote => "Gives the admin role: this console.",
            Self::Demote => "Takes the admin role back (never from the last admin).",
            Self::RevokeSessions => "Signs the account out everywhere.",
            Self::ForcePasswordReset => {
                "Ends every session, removes the password and mails a reset link."
            }
            Self::ResendVerification => "Mails a new link that confirms the address.",
            Self::ResetFactors => {
                "Removes the authenticator app, passkeys and recovery codes; the person signs \
                 in with their password alone and can set up a new app. Use it only once you \
                 know it is them (the recovery procedure)."
            }
            Self::Delete => {
                "Closes the account as its owner would: sessions ended, personal data \
                 removed, everything purged after the revocation hold."
            }
        }
    }

    /// Whether a browser's form must tick `confirm`.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Self::Disable | Self::ForcePasswordReset | Self::ResetFactors | Self::Delete
        )
    }

    /// What the last-admin rule calls it, for the actions it forbids.
    fn last_admin_guard(self) -> Option<&'static str> {
        match self {
            Self::Demote => Some("demoted"),
            Self::Disable => Some("disabled"),
            Self::Delete => Some("deleted"),
            _ => None,
        }
    }

    fn audit(self) -> AuditAction {
        match self {
            Self::Disable => AuditAction::Disabled,
            Self::Enable => AuditAction::Enabled,
            Self::Promote => AuditAction::Promoted,
            Self::Demote => AuditAction::Demoted,
            Self::RevokeSessions => AuditAction::SessionsRevoked,
            Self::ForcePasswordReset => AuditAction::PasswordResetForced,
            Self::ResendVerification => AuditAction::VerificationResent,
            Self::ResetFactors => AuditAction::FactorsReset,
            Self::Delete => AuditAction::Deleted,
        }
    }
}

/// The notice on the account page after a form's action (`?done=`).
pub fn notice(done: &str) -> &'static str {
    match Action::parse(done) {
        Some(Action::Disable) => "Disabled: every session ended, sign-in is refused.",
        Some(Action::Enable) => "Enabled: sign-in works again.",
        Some(Action::Promote) => "The account is an admin now.",
        Some(Action::Demote) => "The account is no longer an admin.",
        Some(Action::RevokeSessions) => "Every session ended.",
        Some(Action::ForcePasswordReset) => {
            "Every session ended, the password removed, a reset link mailed."
        }
        Some(Action::ResendVerification) => "A new confirmation link is mailed.",
        Some(Action::ResetFactors) => {
            "The second factors and recovery codes removed, every session ended, the owner \
             mailed."
        }
        Some(Action::Delete) => "Closed: it is purged after the revocation hold.",
        None if done == "unchanged" => "Nothing to change: the account was so already.",
        None => "",
    }
}

/// The body of an action: nothing for an API client (`{}` or empty); a form sends its
/// token, and for a destructive action its ticked box.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The session's form token (a form; or the `x-csrf-token` header). Not needed with
    /// a bearer token.
    #[serde(default)]
    pub csrf_token: Option<String>,
    /// `yes` when the form's box is ticked: a form for `disable`, `force-password-reset`,
    /// `reset-factors` or `delete` needs it. An API client's request is explicit already.
    #[serde(default)]
    #[schema(example = "yes")]
    pub confirm: Option<String>,
}

/// The answer of an action.
#[derive(Serialize, ToSchema)]
pub struct ActionDone<'a> {
    /// The account after the action.
    account: AccountJson<'a>,
    action: Action,
    /// `false`: the account was so already (enable an enabled account, say); nothing
    /// was recorded.
    changed: bool,
    /// How many sessions the action ended.
    sessions_ended: usize,
}

impl CarriesCsrf for ActionBody {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// An action to run, with what its transaction needs.
struct Request {
    action: Action,
    target: String,
    actor: flotilla_accounts::Actor,
    client_addr: String,
    request_id: String,
    origin: Origin,
    public_url: String,
    reset_ttl: TimeDelta,
    verify_ttl: TimeDelta,
    hold: TimeDelta,
}

/// What the transaction did.
struct Done {
    account: User,
    changed: bool,
    ended: Vec<String>,
    mailed: bool,
}

/// The action's one transaction: the change and its audit entry, or neither.
fn perform(conn: &mut AnyConnection, request: &Request) -> Result<Done, Error> {
    write_transaction(conn, |conn| {
        let now = flotilla_jobs::now();
        let id = request.target.as_str();
        // Sign-ins racing a disable, a reset or a close commit first (as for a
        // password change: login's `open_session`), so their sessions are ended here.
        User::lock(conn, id)?;
        let account = User::find(conn, id)?.ok_or(AdminError::UnknownAccount)?;
        if account.is_closed() {
            return Err(AdminError::AccountClosed.into());
        }
        if let Some(what) = request.action.last_admin_guard()
            && User::is_last_admin(conn, id)?
        {
            return Err(AdminError::LastAdmin { what }.into());
        }
        let links = |ttl| LinkMail {
            public_url: &request.public_url,
            ttl,
        };
        let mut ended = Vec::new();
        let mut removed = Factors::default();
        let mut mailed = false;
        let changed = match request.action {
            Action::Disable => {
                let changed = User::disable(conn, id, now)? > 0;
                if changed {
                    ended = revoke_user_sessions(conn, id, None, RevokeReason::Disabled, now)?;
                }
                changed
            }
            Action::Enable => User::enable(conn, id, now)? > 0,
            Action::Promote => {
                if account.is_disabled() {
                    return Err(AdminError::TargetDisabled.into());
                }
                User::set_role(conn, id, Role::Admin, now)? > 0
            }
            Action::Demote => User::set_role(conn, id, Role::User, now)? > 0,
            Action::RevokeSessions => {
                ended = revoke_user_sessions(conn, id, None, RevokeReason::Revoked, now)?;
                true
            }
            Action::ForcePasswordReset => {
                ended = revoke_user_sessions(conn, id, None, RevokeReason::PasswordReset, now)?;
                User::clear_password(conn, id, now)?;
                links(request.reset_ttl).password_reset(conn, id, &account.email, None, now)?;
                mailed = true;
                true
            }
            Action::ResendVerification => {
                if account.is_verified() {
                    return Err(AdminError::AlreadyVerified.into());
                }
                links(request.verify_ttl).verification(conn, id, &account.email, now)?;
                mailed = true;
                true
            }
            Action::ResetFactors => {
                let reset =
                    reset_factors(conn, &account, &request.origin, &request.public_url, now)?
                        .ok_or(AdminError::NoSecondFactor)?;
                ended = reset.ended;
                removed = reset.removed;
                mailed = true;
                true
            }
            Action::Delete => {
                let origin = &request.origin;
                ended = flotilla_accounts::close_account(conn, id, origin, request.hold, now)?;
                mailed = true;
                true
            }
        };
        if changed {
            let detail = match request.action {
                Action::Disable
                | Action::RevokeSessions
                | Action::ForcePasswordReset
                | Action::Delete => format!("{} sessions ended", ended.len()),
                Action::ResetFactors => reset_detail(&removed, ended.len()),
                _ => String::new(),
            };
            NewAuditEntry {
                actor: &request.actor,
                action: request.action.audit(),
                target: Some((id, &account.email)),
                client_addr: &request.client_addr,
                request_id: &request.request_id,
                detail: &detail,
            }
            .record(conn, now)?;
        }
        let account = User::find(conn, id)?.ok_or(AdminError::UnknownAccount)?;
        Ok(Done {
            account,
            changed,
            ended,
            mailed,
        })
    })
}

/// What a reset of second factors did.
pub(crate) struct FactorsReset {
    /// What the account had (dates and a count, never a secret).
    pub removed: Factors,
    /// The sessions it ended.
    pub ended: Vec<String>,
}

/// Removes every second factor and recovery code of `account`, ends every session (a
/// session signed in with the lost factor must not outlive it), records `factors.reset`
/// among its auth events and queues the owner's mail, in the caller's transaction (the
/// console's action and `flotilla-admin reset-factors` alike, each with its audit
/// entry). `None`, with nothing done, when the account had neither a factor nor a
/// recovery code.
pub(crate) fn reset_factors(
    conn: &mut AnyConnection,
    account: &User,
    origin: &Origin,
    public_url: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<FactorsReset>> {
    let id = account.id.as_str();
    let removed = Factors::of(conn, id)?;
    if !Factors::remove_all(conn, id)? {
        return Ok(None);
    }
    let ended = revoke_user_sessions(conn, id, None, RevokeReason::Revoked, now)?;
    origin
        .event(AuthEventKind::FactorsReset, Some(id), None, None)
        .record(conn, now)?;
    FactorNotice {
        to: &account.email,
        change: FactorChange::Reset,
        codes_left: None,
        public_url,
        key: &format!("{id}:{}", flotilla_accounts::new_token()),
    }
    .queue(conn, origin, now)?;
    Ok(Some(FactorsReset { removed, ended }))
}

/// The audit entry's detail of a reset: what was removed and how many sessions ended.
pub(crate) fn reset_detail(removed: &Factors, sessions_ended: usize) -> String {
    let counted = |n: usize, one: &str, many: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    };
    let mut what = Vec::new();
    if removed.totp.is_some() {
        what.push("authenticator app".to_owned());
    }
    if !removed.passkeys.is_empty() {
        what.push(counted(removed.passkeys.len(), "passkey", "passkeys"));
    }
    let codes = usize::try_from(removed.recovery_codes_left).unwrap_or_default();
    what.push(counted(codes, "recovery code", "recovery codes"));
    let last = what.pop().unwrap_or_default();
    let what = match what.is_empty() {
        true => last,
        false => format!("{} and {last}", what.join(", ")),
    };
    format!("{what} removed, {sessions_ended} sessions ended")
}

/// A refusal, answered to a form with the account page showing it.
async fn refused(
    state: &web::Data<State>,
    operator: &Operator,
    input: &Input<ActionBody>,
    id: &str,
    error: Error,
) -> Error {
    let shown = matches!(
        error,
        Error::Refused { .. } | Error::Invalid(_) | Error::Conflict { .. }
    );
    if !input.is_form() || !shown {
        return error;
    }
    match dossier(state, id.to_owned()).await {
        Ok(dossier) => {
            let mut message = error.public_message();
            if let Some(fields) = error.fields() {
                for (field, problem) in fields.iter() {
                    message.push_str(&format!(" {field}: {problem}."));
                }
            }
            let page = account_page(&dossier, operator.viewer(), None, Some(&message));
            error.with_page(page)
        }
        Err(_) => error,
    }
}

/// Acts on an account, with an audit entry in the same transaction; needs a recent
/// sign-in or password confirmation (with the second factor when the admin has one).
#[utoipa::path(post, path = "/admin/users/{id}/{action}", tag = "admin", operation_id = "act",
    params(
        ("id" = String, Path, description = "The account's id."),
        ("action" = inline(Action), Path, description = "What to do to the account."),
        ("x-csrf-token" = Option<String>, Header, description = "The session's form token, \
            for a change made with the cookie (or the body's `csrf_token`)."),
    ),
    request_body(description = "`{}` or nothing for an API client; the account page's \
        form for a browser.", content(
        (Option<ActionBody> = "application/json"),
        (Option<ActionBody> = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Done, or nothing to change (`\"changed\": false`, \
            nothing recorded).", body = ActionDone),
        (status = 303, description = "A form post: done, on to the account's page \
            `/admin/users/{id}?done=<action>` (`?done=unchanged` when nothing changed), \
            which shows a notice. Without a recent sign-in or confirmation (or, with \
            `FLOTILLA_ADMIN_REQUIRE_MFA`, in a session not confirmed with the second \
            factor): to `/login/confirm?next=/admin/users/{id}`.",
            headers(("Location" = String))),
        (status = 401, description = docs::CHANGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::CHANGE_FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no such action, or no account has this \
            id (or it was purged).", body = ErrorBody),
        (status = 409, description = "`account_closed` (closed, waiting for its purge: no \
            action applies), `last_admin` (demote, disable or delete the last admin who can \
            act), `account_disabled` (promote a disabled account), `already_verified` \
            (resend-verification to a confirmed address), `no_second_factor` (reset-factors \
            of an account without any). A form gets the account's page saying why.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: a form for `disable`, \
            `force-password-reset`, `reset-factors` or `delete` without `confirm=yes` (the \
            account's page says so), or a field the body does not take.", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn act(
    submission: OperatorSubmission<ActionBody>,
    path: web::Path<(String, String)>,
    context: RequestContext,
    ClientOrigin(origin): ClientOrigin,
    state: web::Data<State>,
    admin: web::Data<Admin>,
) -> Result<HttpResponse, Error> {
    let OperatorSubmission { operator, input } = submission;
    let (id, action) = path.into_inner();
    let action = Action::parse(&action).ok_or(Error::NotFound)?;
    let id = account_id(&id)?;
    let page = format!("/admin/users/{id}");
    let window = admin.config.reauth_window;
    operator
        .require_recent_authentication(&state, window, input.is_form(), &page)
        .await?;
    if input.is_form() && action.is_destructive() && input.raw().confirm.as_deref() != Some("yes") {
        let error = Error::invalid("confirm", "tick the box to confirm the action");
        return Err(refused(&state, &operator, &input, &id, error).await);
    }
    let request = Request {
        action,
        target: id.clone(),
        actor: operator.actor(),
        client_addr: context.client.to_string(),
        request_id: context.id.clone(),
        origin,
        public_url: admin.config.public_url.clone(),
        reset_ttl: admin.config.reset_ttl,
        verify_ttl: admin.config.verify_ttl,
        hold: TimeDelta::seconds(admin.auth.config().tokens.revocation_hold_secs()),
    };
    let done = match blocking(&state, move |conn| perform(conn, &request)).await {
        Ok(done) => done,
        Err(error) => return Err(refused(&state, &operator, &input, &id, error).await),
    };
    if done.mailed {
        admin.wake.wake("email");
    }
    admin.auth.announce_revoked(&done.ended);
    if done.changed {
        match action {
            Action::Delete => admin.auth.publish(&Event::UserDeleted { id: id.clone() }),
            Action::Disable | Action::Enable | Action::Promote | Action::Demote => {
                admin.auth.publish(&Event::UserUpdated { id: id.clone() })
            }
            _ => {}
        }
    }
    let json = ActionDone {
        account: AccountJson::of(&done.account),
        action,
        changed: done.changed,
        sessions_ended: done.ended.len(),
    };
    let done_as = if done.changed {
        action.as_str()
    } else {
        "unchanged"
    };
    Ok(input.reply(StatusCode::OK, &json, || {
        Then::SeeOther(format!("{page}?done={done_as}"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_reads_back_from_its_name() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(*action));
            // The answers and the description name it as the route does.
            assert_eq!(serde_json::json!(action), action.as_str());
            assert!(!notice(action.as_str()).is_empty(), "{action:?}");
        }
        assert_eq!(Action::parse("reset-factors"), Some(Action::ResetFactors));
    }

    #[test]
    fn a_reset_of_factors_is_confirmed_and_audited_as_such() {
        let reset = Action::ResetFactors;
        assert!(reset.is_destructive());
        assert_eq!(reset.audit(), AuditAction::FactorsReset);
        assert_eq!(reset.audit().as_str(), "account.factors_reset");
        assert_eq!(reset.last_admin_guard(), None);
        assert!(
            reset
                .explanation()
                .starts_with("Removes the authenticator app")
        );
    }

    #[test]
    fn the_audit_detail_says_what_was_removed() {
        let at = flotilla_jobs::now();
        let app = Some(flotilla_accounts::FactorDates {
            created_at: at,
            last_used_at: None,
        });
        let with = |totp, codes| Factors {
            totp,
            recovery_codes_left: codes,
            ..Factors::default()
        };
        assert_eq!(
            reset_detail(&with(app, 10), 2),
            "authenticator app and 10 recovery codes removed, 2 sessions ended"
        );
        assert_eq!(
            reset_detail(&with(app, 1), 0),
            "authenticator app and 1 recovery code removed, 0 sessions ended"
        );
        assert_eq!(
            reset_detail(&with(None, 3), 1),
            "3 recovery codes removed, 1 sessions ended"
        );
        let key = |name: &str| flotilla_accounts::PasskeyInfo {
            id: name.into(),
            name: name.into(),
            created_at: at,
            last_used_at: None,
        };
        let keys = Factors {
            passkeys: vec![key("laptop"), key("phone")],
            ..with(app, 0)
        };
        assert_eq!(
            reset_detail(&keys, 1),
            "authenticator app, 2 passkeys and 0 recovery codes removed, 1 sessions ended"
        );
    }

    #[test]
    fn no_factor_is_refused_as_a_conflict_that_says_so() {
        let error = Error::from(AdminError::NoSecondFactor);
        assert_eq!(error.code(), "no_second_factor");
        assert_eq!(
            actix_web::ResponseError::status_code(&error),
            StatusCode::CONFLICT
        );
        assert!(error.public_message().contains("nothing to reset"));
    }
}
