//! The account page: plain HTML forms that work without JavaScript, one template each
//! (`templates/`). Everything the person typed is escaped wherever it is shown.

use askama::Template;
use flotilla_kit::FieldErrors;
use flotilla_kit::html::{SignedIn, render};

use flotilla_accounts::{FactorKinds, Factors, summarise_user_agent};

use flotilla_contracts::AuthEventKind;

use crate::store::{Account, EventRow, SessionRow};

pub struct View {
    pub account: Account,
    pub sessions: Vec<SessionRow>,
    pub activity: Vec<EventRow>,
    pub factors: Factors,
    /// The site can use passkeys (its address is a domain name).
    pub passkeys_on: bool,
    pub current_session: String,
    pub csrf: String,
}

impl View {
    /// What the page's forms ask for as the second factor.
    pub fn offer(&self) -> Offer {
        Offer {
            kinds: FactorKinds {
                totp: self.factors.totp.is_some(),
                passkeys: !self.factors.passkeys.is_empty(),
            },
            passkeys_on: self.passkeys_on,
        }
    }

    /// The header's reader.
    fn viewer(&self) -> SignedIn<'_> {
        viewer(&self.account, &self.csrf)
    }
}

fn viewer<'a>(account: &'a Account, csrf: &'a str) -> SignedIn<'a> {
    SignedIn {
        name: SignedIn::name_of(
            account.display_name.as_deref(),
            account.username.as_deref(),
            &account.email,
        ),
        csrf,
        admin: account.role == flotilla_accounts::Role::Admin,
    }
}

/// A failed form post, shown in its section.
pub struct Problem {
    pub section: &'static str,
    pub message: String,
    pub fields: FieldErrors,
}

fn notice(done: Option<&str>) -> &'static str {
    match done {
        Some("saved") => "Your profile is saved.",
        Some("password") => "Your password is changed; your other devices are signed out.",
        Some("email") => {
            "Follow the link sent to the new address to confirm it; until then your address stays as it is."
        }
        Some("revoked") => "Signed out there.",
        Some("revoked-others") => {
            "You are signed out everywhere else; this device stays signed in."
        }
        Some("totp-added") => "The authenticator app is set up: signing in asks for its code.",
        Some("passkey-added") => "The passkey is added: it signs you in from now on.",
        Some("passkey-removed") => "The passkey is removed.",
        Some("two-step-off") => "The authenticator app is removed.",
        _ => "",
    }
}

/// What an auth event is called on the page; a kind this release does not know (a
/// newer one's), and the two without a label yet, show as stored.
fn kind_label(kind: &str) -> &str {
    use AuthEventKind as K;
    let Some(known) = K::parse(kind) else {
        return kind;
    };
    match known {
        K::LoginSuccess => "Signed in",
        K::LoginFailure => "Wrong password",
        K::LoginThrottled => "Attempt slowed down",
        K::LoginRefusedUnverified => "Sign-in before confirming the address",
        K::LoginRefusedDisabled => "Sign-in while disabled",
        K::Logout => "Signed out",
        K::LogoutAll => "Signed out everywhere",
        K::PasswordReset => "Password reset by email",
        K::PasswordResetRequested => "Password reset asked for",
        K::VerificationRequested => "New confirmation link asked for",
        K::PasswordChanged => "Password changed",
        K::EmailChangeRequested => "Change of address asked for",
        K::EmailChanged => "Address changed",
        K::SessionRevoked => "A session ended from this page",
        K::SessionRevokedOthers => "Other sessions ended",
        K::SessionRefreshReuse => "Session ended: a stolen token was used",
        K::PasswordConfirmed => "Password confirmed",
        K::LoginSecondFactorFailed => "Wrong code at sign-in",
        K::SecondFactorCheckFailed => "Wrong code for a change",
        K::TotpAdded => "Authenticator app set up",
        K::TotpRemoved => "Authenticator app removed",
        K::PasskeyAdded => "Passkey added",
        K::PasskeyRemoved => "Passkey removed",
        K::RecoveryCodeUsed => "Recovery code used",
        K::RecoveryCodesRegenerated => "New recovery codes made",
        K::FactorsReset => "Second factors reset by an administrator",
        K::PasswordCheckFailed | K::AccountDeleted => kind,
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    view: &'a View,
    notice: &'static str,
    problem: Option<&'a Problem>,
}

/// What the template calls.
impl AccountPage<'_> {
    /// The failed post of `section`, if that is where it was.
    fn problem_for(&self, section: &str) -> Option<&Problem> {
        self.problem.filter(|p| p.section == section)
    }

    /// Where a failed post's section starts on the page (the password's heading: the
    /// address form has a field named `password`).
    fn anchor<'s>(&self, section: &'s str) -> &'s str {
        match section {
            "password" => "password-change",
            other => other,
        }
    }

    /// What was wrong with `field` in the failed post of `section`.
    fn field_error(&self, section: &str, field: &str) -> Option<&str> {
        self.problem_for(section)
            .and_then(|p| p.fields.get(field))
            .map(String::as_str)
    }

    fn when(&self, at: &chrono::NaiveDateTime) -> String {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }

    fn device(&self, user_agent: &str) -> String {
        summarise_user_agent(user_agent)
    }

    fn kind_label<'k>(&self, kind: &'k str) -> &'k str {
        kind_label(kind)
    }
}

pub fn account_page(view: &View, done: Option<&str>, problem: Option<&Problem>) -> String {
    render(&AccountPage {
        view,
        notice: notice(done),
        problem,
    })
}

/// "Close your account": what closing does, and the form that does it (the password,
/// the danger button, and the way back). Refused, it shows why.
#[derive(Template)]
#[template(path = "close_account.html")]
struct CloseAccount<'a> {
    email: &'a str,
    viewer: SignedIn<'a>,
    /// The second factors the form asks for (none: the password alone).
    offer: Offer,
    message: &'a str,
    errors: &'a FieldErrors,
}

pub fn close_account_page(
    account: &Account,
    csrf: &str,
    offer: Offer,
    problem: Option<&Problem>,
) -> String {
    let none = FieldErrors::new();
    render(&CloseAccount {
        email: &account.email,
        viewer: viewer(account, csrf),
        offer,
        message: problem_parts(problem, &none).0,
        errors: problem_parts(problem, &none).1,
    })
}

/// "Sign out everywhere else": how many other sessions end, and the button that ends
/// them.
#[derive(Template)]
#[template(path = "revoke_others.html")]
struct RevokeOthers<'a> {
    others: usize,
    viewer: SignedIn<'a>,
}

pub fn revoke_others_page(account: &Account, csrf: &str, others: usize) -> String {
    render(&RevokeOthers {
        others,
        viewer: viewer(account, csrf),
    })
}

/// What a form that asks for the second factor offers: a code field when the account
/// has an app (or recovery codes stand in), a passkey button when it has passkeys and
/// the site can use them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offer {
    pub kinds: FactorKinds,
    pub passkeys_on: bool,
}

impl Offer {
    pub fn any(self) -> bool {
        self.kinds.any()
    }

    /// A passkey may answer.
    pub fn passkey(self) -> bool {
        self.kinds.passkeys && self.passkeys_on
    }
}

/// A problem's message (when it names no field) and its fields' errors.
fn problem_parts<'a>(
    problem: Option<&'a Problem>,
    none: &'a FieldErrors,
) -> (&'a str, &'a FieldErrors) {
    (
        problem
            .filter(|p| p.fields.is_empty())
            .map_or("", |p| p.message.as_str()),
        problem.map_or(none, |p| &p.fields),
    )
}

/// What the authenticator app's setup page shows: the key as a QR code and as text,
/// and the sealed key its form sends back.
pub struct Setup {
    pub qr: String,
    pub key: String,
    /// The `otpauth://` address the QR code holds.
    pub url: String,
    pub pending: String,
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct TotpSetupPage<'a> {
    email: &'a str,
    viewer: SignedIn<'a>,
    /// The account's factors: with one already, it is asked for too.
    offer: Offer,
    qr: &'a str,
    key: &'a str,
    pending: &'a str,
    message: &'a str,
    errors: &'a FieldErrors,
}

pub fn totp_setup_page(
    account: &Account,
    csrf: &str,
    setup: &Setup,
    offer: Offer,
    problem: Option<&Problem>,
) -> String {
    let none = FieldErrors::new();
    let (message, errors) = problem_parts(problem, &none);
    render(&TotpSetupPage {
        email: &account.email,
        viewer: viewer(account, csrf),
        offer,
        qr: &setup.qr,
        key: &setup.key,
        pending: &setup.pending,
        message,
        errors,
    })
}

/// The recovery codes, shown once: after the app's setup (`first`) or new ones.
#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage<'a> {
    viewer: SignedIn<'a>,
    codes: &'a [String],
    first: bool,
}

pub fn recovery_codes_page(account: &Account, csrf: &str, codes: &[String], first: bool) -> String {
    render(&RecoveryCodesPage {
        viewer: viewer(account, csrf),
        codes,
        first,
    })
}

/// A change of the second factors that asks who it is first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactorAction {
    RemoveTotp,
    NewCodes,
    RemovePasskey { id: String, name: String },
}

impl FactorAction {
    pub fn title(&self) -> String {
        match self {
            Self::RemoveTotp => "Remove the authenticator app".into(),
            Self::NewCodes => "Make new recovery codes".into(),
            Self::RemovePasskey { name, .. } => format!("Remove the passkey “{name}”"),
        }
    }

    pub fn explanation(&self) -> &'static str {
        match self {
            Self::RemoveTotp => {
                "Signing in will no longer ask for the app's code; with no passkey either, it \
                 asks only for your password again, and your recovery codes stop working. \
                 Type your password and prove it is you with your second factor to go on."
            }
            Self::NewCodes => {
                "You get ten new recovery codes, and the ones you have stop working. Type \
                 your password and prove it is you with your second factor to go on."
            }
            Self::RemovePasskey { .. } => {
                "The passkey will no longer sign you in. Remove it from the device too (its \
                 passwords or passkeys settings). Type your password and prove it is you with \
                 your second factor to go on."
            }
        }
    }

    pub fn action(&self) -> String {
        match self {
            Self::RemoveTotp => "/profile/totp/remove".into(),
            Self::NewCodes => "/profile/recovery-codes".into(),
            Self::RemovePasskey { id, .. } => format!("/profile/passkeys/{id}/remove"),
        }
    }

    pub fn button(&self) -> &'static str {
        match self {
            Self::RemoveTotp => "Remove the app",
            Self::NewCodes => "Make new codes",
            Self::RemovePasskey { .. } => "Remove the passkey",
        }
    }

    pub fn is_destructive(&self) -> bool {
        *self != Self::NewCodes
    }
}

#[derive(Template)]
#[template(path = "factor_change.html")]
struct FactorChangePage<'a> {
    email: &'a str,
    viewer: SignedIn<'a>,
    what: FactorAction,
    /// Which second factors the form asks for.
    offer: Offer,
    message: &'a str,
    errors: &'a FieldErrors,
}

pub fn factor_change_page(
    account: &Account,
    csrf: &str,
    what: FactorAction,
    offer: Offer,
    problem: Option<&Problem>,
) -> String {
    let none = FieldErrors::new();
    let (message, errors) = problem_parts(problem, &none);
    render(&FactorChangePage {
        email: &account.email,
        viewer: viewer(account, csrf),
        what,
        offer,
        message,
        errors,
    })
}

#[derive(Template)]
#[template(path = "email_confirmed.html")]
struct EmailConfirmed;

pub fn email_confirmed() -> String {
    render(&EmailConfirmed)
}

/// What opening a change-of-address link shows: a button that posts its token
/// (opening it changes nothing, so a mail scanner following links cannot).
pub fn email_confirm_form(token: &str) -> String {
    flotilla_kit::html::LinkConfirm {
        title: "Confirm your new address",
        action: "/profile/email/confirm",
        token,
        message: "Confirm that this address is yours: from then on it signs you in, and mail \
                  about your account goes to it.",
        button: "Confirm the new address",
    }
    .render()
}

pub fn link_problem(message: &str) -> String {
    flotilla_kit::html::link_problem(message, ("/profile", "Your account"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use flotilla_testkit::{MARKUP as TYPED, MARKUP_ESCAPED as ESCAPED};

    fn view() -> View {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 3)
            .unwrap()
            .and_hms_opt(10, 4, 0)
            .unwrap();
        let typed = || Some(TYPED.to_owned());
        View {
            account: Account {
                id: "1".into(),
                email: format!("ada{TYPED}@example.org"),
                email_verified_at: None,
                username: typed(),
                display_name: typed(),
                bio: typed(),
                public: true,
                role: flotilla_accounts::Role::User,
                created_at: t,
                updated_at: t,
                password_hash: None,
                disabled_at: None,
                deleted_at: None,
            },
            sessions: vec![SessionRow {
                id: format!("s{TYPED}"),
                created_at: t,
                last_used_at: t,
                client_addr: TYPED.into(),
                user_agent: TYPED.into(),
            }],
            activity: vec![EventRow {
                kind: TYPED.into(),
                created_at: t,
                client_addr: TYPED.into(),
                user_agent: "curl/8".into(),
            }],
            current_session: "other".into(),
            csrf: TYPED.into(),
            factors: Factors::default(),
            passkeys_on: false,
        }
    }

    #[test]
    fn the_change_of_address_page_posts_the_token_and_escapes_it() {
        let html = email_confirm_form(TYPED);
        assert!(html.contains(r#"<form method="post" action="/profile/email/confirm">"#));
        assert!(
            html.contains(&format!(
                r#"<input type="hidden" name="token" value="{ESCAPED}">"#
            )),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn the_account_page_escapes_everything_typed_and_stored() {
        let fields = FieldErrors::from([(format!("bad_{TYPED}"), TYPED.to_owned())]);
        let problem = Problem {
            section: "email",
            message: TYPED.into(),
            fields,
        };
        let html = account_page(&view(), Some("saved"), Some(&problem));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains(&format!("<strong>ada{ESCAPED}@example.org</strong>")));
        assert!(html.contains(&format!("name=\"username\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!(
            "aria-describedby=\"bio-help\">{ESCAPED}</textarea>"
        )));
        assert!(html.contains(&format!("name=\"csrf_token\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("action=\"/profile/sessions/s{ESCAPED}/revoke\"")));
        assert!(html.contains(&format!("<td data-label=\"Address\">{ESCAPED}</td>")));
        // The summary at the top links to the section and to each field.
        assert!(html.contains(&format!("<p><a href=\"#email\">{ESCAPED}</a></p>")));
        assert!(html.contains(&format!(
            "<li><a href=\"#bad_{ESCAPED}\">Bad {ESCAPED} {ESCAPED}</a></li>"
        )));
        assert!(html.contains(&format!(
            "<h3 id=\"email\">Email address</h3>\n<p class=\"field-error\">{ESCAPED}</p>"
        )));
        assert!(html.contains("role=\"status\">Your profile is saved.</p>"));
        assert!(html.contains("not confirmed yet</span> <a href=\"/signup/resend\">"));
        assert!(
            html.contains(
                "id=\"public\" name=\"public\" aria-describedby=\"public-help\" checked>"
            )
        );
        // The header names the reader and signs out with the form token.
        assert!(html.contains(&format!("Signed in as <strong>{ESCAPED}</strong></li>")));
        assert!(html.contains("Member since 2026-11-03 10:04 UTC."));
    }

    #[test]
    fn a_field_in_error_is_marked_and_described() {
        let problem = Problem {
            section: "password",
            message: "Check the fields".into(),
            fields: FieldErrors::from([("new_password".to_owned(), "is too short".to_owned())]),
        };
        let html = account_page(&view(), None, Some(&problem));
        assert!(
            html.contains(
                "aria-invalid=\"true\" aria-describedby=\"new_password-error new_password-help\">"
            ),
            "{html}"
        );
        assert!(html.contains("id=\"new_password-error\">Password is too short</p>"));
        assert!(html.contains("<li><a href=\"#new_password\">New password is too short</a></li>"));
    }

    #[test]
    fn closing_and_signing_out_elsewhere_ask_first() {
        let view = view();
        let html = close_account_page(&view.account, TYPED, Offer::default(), None);
        assert!(html.contains("<form method=\"post\" action=\"/profile/delete\">"));
        assert!(html.contains(
            "<button type=\"submit\" class=\"danger\">Close my account for good</button>"
        ));
        assert!(html.contains(&format!("name=\"csrf_token\" value=\"{ESCAPED}\"")));
        assert!(!html.contains("error-summary"));
        let problem = Problem {
            section: "delete",
            message: "wrong password".into(),
            fields: FieldErrors::new(),
        };
        let refused = close_account_page(&view.account, TYPED, Offer::default(), Some(&problem));
        assert!(refused.contains("There is a problem</h2>\n<p>wrong password</p>"));
        let one = revoke_others_page(&view.account, TYPED, 1);
        assert!(one.contains("Sign out 1 other session</button>"), "{one}");
        let none = revoke_others_page(&view.account, TYPED, 0);
        assert!(!none.contains("<form method=\"post\" action=\"/profile/sessions"));
    }
}
