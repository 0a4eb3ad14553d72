//! The account page: plain HTML forms that work without JavaScript, one template each
//! (`templates/`). Everything the person typed is escaped wherever it is shown.

use askama::Template;
use flotilla_kit::FieldErrors;
use flotilla_kit::html::render;

use flotilla_accounts::summarise_user_agent;

use flotilla_contracts::AuthEventKind;

use crate::store::{Account, EventRow, SessionRow};

pub struct View {
    pub account: Account,
    pub sessions: Vec<SessionRow>,
    pub activity: Vec<EventRow>,
    pub current_session: String,
    pub csrf: String,
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
        assert!(html.contains(&format!("rows=\"5\">{ESCAPED}</textarea>")));
        assert!(html.contains(&format!("name=\"csrf_token\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("action=\"/profile/sessions/s{ESCAPED}/revoke\"")));
        assert!(html.contains(&format!("<td>{ESCAPED}</td>")));
        assert!(html.contains(&format!(
            "<h2 id=\"email\">Email address</h2>\n<p class=\"field-error\" role=\"alert\">{ESCAPED}</p>"
        )));
        assert!(html.contains(&format!(
            "<li><strong>bad {ESCAPED}</strong> {ESCAPED}</li>"
        )));
        assert!(html.contains("role=\"status\">Your profile is saved.</p>"));
        assert!(html.contains("not confirmed yet — <a href=\"/signup/resend\">"));
        assert!(html.contains("name=\"public\" checked>"));
        assert!(html.contains("Member since 2026-11-03 10:04 UTC."));
    }
}
