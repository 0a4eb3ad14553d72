//! The login pages: plain HTML forms that work without JavaScript, one template each
//! (`templates/`), escaped by default.

use askama::Template;
use flotilla_kit::html::render;
use flotilla_kit::{Error, FieldErrors};

use crate::domain::{
    ConfirmInput, ForgotInput, LoginInput, ResetInput, SecondStepInput, safe_next,
};

/// The second factors a confirmation asks for: those the account has, and whether
/// the site can use passkeys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factors {
    pub kinds: flotilla_accounts::FactorKinds,
    pub passkeys_on: bool,
}

/// A message above a form: an error (`role="alert"`) or a notice.
pub enum Banner<'a> {
    None,
    Error(&'a str),
    /// The address is not confirmed yet: an error with a link to a new confirmation.
    EmailNotVerified,
    Notice(&'a str),
}

#[derive(Template)]
#[template(path = "login_form.html")]
struct LoginForm<'a> {
    email: &'a str,
    next: Option<&'a str>,
    banner: &'a Banner<'a>,
    errors: &'a FieldErrors,
}

/// The sign-in form; the address typed is kept, never the password.
pub fn login_form(
    email: &str,
    next: Option<&str>,
    message: &Banner,
    errors: &FieldErrors,
) -> String {
    render(&LoginForm {
        email,
        next,
        banner: message,
        errors,
    })
}

/// The sign-in form again, refused with `error`: its message above the form (with the
/// way to a new link when the address is not confirmed), each field's beside it.
pub fn login_again(typed: &LoginInput, error: &Error) -> String {
    let message = error.public_message();
    let banner = match error.code() {
        "email_not_verified" => Banner::EmailNotVerified,
        _ => Banner::Error(&message),
    };
    let next = safe_next(typed.next.as_deref());
    let errors = error.fields().cloned().unwrap_or_default();
    login_form(typed.email.trim(), next.as_deref(), &banner, &errors)
}

/// The sign-in form, empty, with `error` above it: a sign-in to begin again (a second
/// step that ended, a passkey refused).
pub fn sign_in_again(next: Option<&str>, error: &Error) -> String {
    let next = safe_next(next);
    let message = error.public_message();
    login_form(
        "",
        next.as_deref(),
        &Banner::Error(&message),
        &FieldErrors::new(),
    )
}

#[derive(Template)]
#[template(path = "confirm_form.html")]
struct ConfirmForm<'a> {
    email: &'a str,
    next: Option<&'a str>,
    csrf_token: &'a str,
    /// The account's second factors, asked for too: a code, or (where `passkey`) a
    /// passkey.
    needs_code: bool,
    totp: bool,
    passkey: bool,
    problem: Option<&'a str>,
    errors: &'a FieldErrors,
}

impl ConfirmForm<'_> {
    /// The header's reader: the page knows the address and the form token, not the
    /// role, so it offers no console link (the console's own pages do).
    fn viewer(&self) -> flotilla_kit::html::SignedIn<'_> {
        flotilla_kit::html::SignedIn {
            name: self.email,
            csrf: self.csrf_token,
            admin: false,
        }
    }
}

/// "Confirm it's you": the account's address, one password field, the session's form
/// token and where to go afterwards.
pub fn confirm_form(
    email: &str,
    next: Option<&str>,
    csrf_token: &str,
    factors: Factors,
    problem: Option<&str>,
    errors: &FieldErrors,
) -> String {
    render(&ConfirmForm {
        email,
        next,
        csrf_token,
        needs_code: factors.kinds.any(),
        totp: factors.kinds.totp,
        passkey: factors.kinds.passkeys && factors.passkeys_on,
        problem,
        errors,
    })
}

/// The confirmation form again, refused with `error` (a wrong password, a wait).
pub fn confirm_again(
    email: &str,
    csrf_token: &str,
    factors: Factors,
    typed: &ConfirmInput,
    error: &Error,
) -> String {
    let next = safe_next(typed.next.as_deref());
    let errors = error.fields().cloned().unwrap_or_default();
    let problem = errors.is_empty().then(|| error.public_message());
    confirm_form(
        email,
        next.as_deref(),
        csrf_token,
        factors,
        problem.as_deref(),
        &errors,
    )
}

#[derive(Template)]
#[template(path = "second_step.html")]
struct SecondStepForm<'a> {
    next: Option<&'a str>,
    /// The account has a passkey, and the site can use it: the page's script offers it.
    passkeys: bool,
    problem: Option<&'a str>,
    errors: &'a FieldErrors,
}

/// The sign-in's second step: one field for the authenticator app's code or a
/// recovery code, and (with the script, where the site has passkeys) a passkey.
pub fn second_step_form(
    next: Option<&str>,
    passkeys: bool,
    problem: Option<&str>,
    errors: &FieldErrors,
) -> String {
    render(&SecondStepForm {
        next,
        passkeys,
        problem,
        errors,
    })
}

/// The second step again, refused with `error` (a wrong code, a wait).
pub fn second_step_again(typed: &SecondStepInput, passkeys: bool, error: &Error) -> String {
    let next = safe_next(typed.next.as_deref());
    let errors = error.fields().cloned().unwrap_or_default();
    let problem = errors.is_empty().then(|| error.public_message());
    second_step_form(next.as_deref(), passkeys, problem.as_deref(), &errors)
}

#[derive(Template)]
#[template(path = "forgot_form.html")]
struct ForgotForm<'a> {
    email: &'a str,
    error: Option<&'a str>,
}

pub fn forgot_form(email: &str, error: Option<&str>) -> String {
    render(&ForgotForm { email, error })
}

/// The forgotten-password form again, refused with `error` (about the address).
pub fn forgot_again(typed: &ForgotInput, error: &Error) -> String {
    let problem = error.fields().and_then(|f| f.get("email"));
    forgot_form(&typed.email, problem.map(String::as_str))
}

#[derive(Template)]
#[template(path = "forgot_sent.html")]
struct ForgotSent {
    valid_minutes: i64,
}

pub fn forgot_sent(valid_minutes: i64) -> String {
    render(&ForgotSent { valid_minutes })
}

#[derive(Template)]
#[template(path = "reset_form.html")]
struct ResetForm<'a> {
    token: &'a str,
    errors: &'a FieldErrors,
}

pub fn reset_form(token: &str, errors: &FieldErrors) -> String {
    render(&ResetForm { token, errors })
}

/// The new-password form again, refused with `error`; a link that does not work (a
/// 400) gets its own page instead.
pub fn reset_again(typed: &ResetInput, error: &Error) -> String {
    match error.fields() {
        Some(fields) => reset_form(typed.token.trim(), fields),
        None => link_problem(&error.public_message()),
    }
}

pub fn link_problem(message: &str) -> String {
    flotilla_kit::html::link_problem(message, ("/login/forgot", "Ask for a new link"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use flotilla_testkit::{MARKUP as TYPED, MARKUP_ESCAPED as ESCAPED};

    #[test]
    fn the_sign_in_form_escapes_what_was_typed() {
        let errors = FieldErrors::from([("password".to_owned(), format!("is {TYPED}"))]);
        let html = login_form(TYPED, Some(TYPED), &Banner::Error(TYPED), &errors);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains(&format!("There is a problem</h2>\n<p>{ESCAPED}</p>")),
            "{html}"
        );
        assert!(html.contains(&format!(
            "<li><a href=\"#password\">Password is {ESCAPED}</a></li>"
        )));
        assert!(html.contains(&format!("name=\"next\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("maxlength=\"254\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("id=\"password-error\">Password is {ESCAPED}</p>")));
        assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"password-error\""));
        let notice = login_form("", None, &Banner::Notice(TYPED), &FieldErrors::new());
        assert!(
            notice.contains(&format!("role=\"status\">{ESCAPED}</p>")),
            "{notice}"
        );
        assert!(!notice.contains("name=\"next\""));
    }

    #[test]
    fn the_confirmation_form_escapes_the_address_and_where_to_go() {
        let errors = FieldErrors::new();
        let html = confirm_form(
            TYPED,
            Some(TYPED),
            TYPED,
            Factors::default(),
            Some(TYPED),
            &errors,
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains(&format!("<strong>{ESCAPED}</strong>")),
            "{html}"
        );
        assert!(html.contains(&format!("name=\"next\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("name=\"csrf_token\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("There is a problem</h2>\n<p>{ESCAPED}</p>")));
        assert!(html.contains("autocomplete=\"current-password\""));
        // The password, the form token, `next`, and the address for password managers
        // (hidden, not sent); the header's "Sign out" form has its own token.
        assert_eq!(html.matches("<input").count(), 5, "{html}");
        assert!(html.contains(&format!(
            "<input type=\"email\" value=\"{ESCAPED}\" autocomplete=\"username\" hidden>"
        )));
        // An account with a second factor is asked for its code as well.
        let app = Factors {
            kinds: flotilla_accounts::FactorKinds {
                totp: true,
                passkeys: false,
            },
            passkeys_on: true,
        };
        let html = confirm_form(TYPED, None, TYPED, app, None, &errors);
        assert!(html.contains("name=\"code\""), "{html}");
        assert!(html.contains("autocomplete=\"one-time-code\""), "{html}");
    }

    #[test]
    fn an_unconfirmed_address_gets_a_link_to_a_new_confirmation() {
        let html = login_form("", None, &Banner::EmailNotVerified, &FieldErrors::new());
        assert!(html.contains("role=\"alert\""), "{html}");
        assert!(html.contains(
            "<p>Follow the link we mailed you, or <a href=\"/signup/resend\">send a new link</a>.</p>"
        ));
    }

    #[test]
    fn the_reset_pages_escape_the_token_and_the_reason() {
        let html = reset_form(TYPED, &FieldErrors::new());
        assert!(
            html.contains(&format!("name=\"token\" value=\"{ESCAPED}\"")),
            "{html}"
        );
        let html = link_problem(TYPED);
        assert!(html.contains(&format!("<p>{ESCAPED}</p>")), "{html}");
        assert!(html.contains("href=\"/login/forgot\""));
    }
}
