//! The login pages: plain HTML forms that work without JavaScript, one template each
//! (`templates/`), escaped by default.

use askama::Template;
use flotilla_kit::FieldErrors;
use flotilla_kit::html::render;

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

#[derive(Template)]
#[template(path = "forgot_form.html")]
struct ForgotForm<'a> {
    email: &'a str,
    error: Option<&'a str>,
}

pub fn forgot_form(email: &str, error: Option<&str>) -> String {
    render(&ForgotForm { email, error })
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
            html.contains(&format!("role=\"alert\">{ESCAPED}</p>")),
            "{html}"
        );
        assert!(html.contains(&format!("name=\"next\" value=\"{ESCAPED}\"")));
        assert!(html.contains(&format!("maxlength=\"254\" value=\"{ESCAPED}\">")));
        assert!(html.contains(&format!("id=\"password-error\">Password is {ESCAPED}</p>")));
        let notice = login_form("", None, &Banner::Notice(TYPED), &FieldErrors::new());
        assert!(
            notice.contains(&format!("role=\"status\">{ESCAPED}</p>")),
            "{notice}"
        );
        assert!(!notice.contains("name=\"next\""));
    }

    #[test]
    fn an_unconfirmed_address_gets_a_link_to_a_new_confirmation() {
        let html = login_form("", None, &Banner::EmailNotVerified, &FieldErrors::new());
        assert!(html.contains(
            "<p class=\"field-error\" role=\"alert\">Your email address is not confirmed yet. \
             <a href=\"/signup/resend\">Send a new link</a>.</p>"
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
