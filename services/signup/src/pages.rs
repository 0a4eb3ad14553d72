//! The signup pages: plain HTML forms that work without JavaScript, one template each
//! (`templates/`), escaped by default.

use askama::Template;
use flotilla_kit::FieldErrors;
use flotilla_kit::html::render;

#[derive(Template)]
#[template(path = "signup_form.html")]
struct SignupForm<'a> {
    email: &'a str,
    username: &'a str,
    errors: &'a FieldErrors,
}

/// The signup form, with the values typed so far (never the password) and each error
/// next to its field.
pub fn signup_form(email: &str, username: &str, errors: &FieldErrors) -> String {
    render(&SignupForm {
        email,
        username,
        errors,
    })
}

#[derive(Template)]
#[template(path = "check_email.html")]
struct CheckEmail;

pub fn check_email() -> String {
    render(&CheckEmail)
}

#[derive(Template)]
#[template(path = "verified.html")]
struct Verified;

pub fn verified() -> String {
    render(&Verified)
}

pub fn link_problem(message: &str) -> String {
    flotilla_kit::html::link_problem(message, ("/signup/resend", "Ask for a new link"))
}

#[derive(Template)]
#[template(path = "resend_form.html")]
struct ResendForm<'a> {
    email: &'a str,
    error: Option<&'a str>,
}

pub fn resend_form(email: &str, error: Option<&str>) -> String {
    render(&ResendForm { email, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    use flotilla_testkit::{MARKUP as TYPED, MARKUP_ESCAPED as ESCAPED};

    #[test]
    fn the_form_escapes_what_was_typed_and_points_to_each_error() {
        let errors = FieldErrors::from([("email".to_owned(), format!("is {TYPED}"))]);
        let html = signup_form(TYPED, TYPED, &errors);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains(&format!("value=\"{ESCAPED}\" required")),
            "{html}"
        );
        assert!(html.contains(&format!("id=\"email-error\">Email is {ESCAPED}</p>")));
        assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"email-error\""));
        assert!(!html.contains("aria-describedby=\"password-error\""));
        assert!(
            html.contains("pattern=\"[a-z0-9][a-z0-9_\\-]{2,31}\""),
            "{html}"
        );
        assert!(html.contains("<title>Create an account · flotilla</title>"));
        assert!(html.contains("Please correct the fields below."));
        assert!(!signup_form("", "", &FieldErrors::new()).contains("Please correct"));
    }

    #[test]
    fn the_link_pages_escape_the_reason() {
        let html = link_problem(TYPED);
        assert!(html.contains(&format!("<p>{ESCAPED}</p>")), "{html}");
        assert!(html.contains("href=\"/signup/resend\""));
        let html = resend_form(TYPED, Some(TYPED));
        assert!(
            html.contains(&format!("id=\"email-error\">Email {ESCAPED}</p>")),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }
}
