//! The signup pages: plain HTML forms that work without JavaScript, one template each
//! (`templates/`), escaped by default.

use askama::Template;
use flotilla_kit::{Error, FieldErrors};

use crate::domain::{ResendInput, SignupInput};
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
pub fn signup_form(typed: &SignupInput, errors: &FieldErrors) -> String {
    render(&SignupForm {
        email: &typed.email,
        username: typed.username.as_deref().unwrap_or(""),
        errors,
    })
}

/// The signup form again, refused with `error`.
pub fn signup_again(typed: &SignupInput, error: &Error) -> String {
    signup_form(typed, error.fields().unwrap_or(&FieldErrors::new()))
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

/// What opening a verification link shows: a button that posts its token (opening it
/// confirms nothing, so a mail scanner following links cannot).
pub fn verify_form(token: &str) -> String {
    flotilla_kit::html::LinkConfirm {
        title: "Confirm your address",
        action: "/signup/verify",
        token,
        message: "Confirm that this address is yours to finish creating your account.",
        button: "Confirm my address",
    }
    .render()
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

/// The resend form again, refused with `error` (about the address).
pub fn resend_again(typed: &ResendInput, error: &Error) -> String {
    let problem = error.fields().and_then(|f| f.get("email"));
    resend_form(&typed.email, problem.map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    use flotilla_testkit::{MARKUP as TYPED, MARKUP_ESCAPED as ESCAPED};

    #[test]
    fn the_form_escapes_what_was_typed_and_points_to_each_error() {
        let errors = FieldErrors::from([("email".to_owned(), format!("is {TYPED}"))]);
        let typed = SignupInput {
            email: TYPED.into(),
            password: TYPED.into(),
            username: Some(TYPED.into()),
        };
        let html = signup_form(&typed, &errors);
        assert!(
            !html.contains(&format!(
                "value=\"{ESCAPED}\" required autocomplete=\"new-password\""
            )),
            "never the password"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains(&format!("value=\"{ESCAPED}\" required")),
            "{html}"
        );
        assert!(html.contains(&format!("id=\"email-error\">Email is {ESCAPED}</p>")));
        assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"email-error email-help\""));
        assert!(html.contains("aria-describedby=\"password-help\""));
        assert!(html.contains(&format!(
            "<li><a href=\"#email\">Email is {ESCAPED}</a></li>"
        )));
        assert!(
            html.contains("pattern=\"[a-z0-9][a-z0-9_\\-]{2,31}\""),
            "{html}"
        );
        assert!(html.contains("<title>Create an account — flotilla</title>"));
        assert!(html.contains("<h2 id=\"error-summary-title\">There is a problem</h2>"));
        let empty = signup_form(&SignupInput::default(), &FieldErrors::new());
        assert!(!empty.contains("error-summary"));
        // Password managers: the address is what signs in, the password is new, the
        // handle is not a sign-in name.
        for (field, token) in [
            ("email", "username"),
            ("password", "new-password"),
            ("username", "nickname"),
        ] {
            let input = empty
                .split(&format!("<input id=\"{field}\""))
                .nth(1)
                .and_then(|rest| rest.split('>').next())
                .unwrap();
            assert!(
                input.contains(&format!("autocomplete=\"{token}\"")),
                "{field}: {input}"
            );
        }
    }

    #[test]
    fn the_verification_page_posts_the_token_and_escapes_it() {
        let html = verify_form(TYPED);
        assert!(html.contains(r#"<form method="post" action="/signup/verify">"#));
        assert!(
            html.contains(&format!(
                r#"<input type="hidden" name="token" value="{ESCAPED}">"#
            )),
            "{html}"
        );
        assert!(!html.contains("<script>"));
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
