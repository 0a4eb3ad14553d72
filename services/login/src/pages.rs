//! The login pages: plain HTML forms that work without JavaScript.

use flotilla_kit::FieldErrors;
use flotilla_kit::html::{escape, page};

/// A message above a form: an error (`role="alert"`) or a notice.
pub enum Banner<'a> {
    None,
    Error(&'a str),
    /// An error with HTML already escaped by the caller (it holds a link).
    ErrorHtml(String),
    Notice(&'a str),
}

fn banner(banner: &Banner) -> String {
    match banner {
        Banner::None => String::new(),
        Banner::Error(text) => format!(
            "<p class=\"field-error\" role=\"alert\">{}</p>\n",
            escape(text)
        ),
        Banner::ErrorHtml(html) => format!("<p class=\"field-error\" role=\"alert\">{html}</p>\n"),
        Banner::Notice(text) => {
            format!("<p class=\"notice\" role=\"status\">{}</p>\n", escape(text))
        }
    }
}

fn field_error(errors: &FieldErrors, name: &str, label: &str) -> String {
    errors
        .get(name)
        .map(|e| {
            format!(
                "<p class=\"field-error\" id=\"{name}-error\">{} {}</p>\n",
                escape(label),
                escape(e)
            )
        })
        .unwrap_or_default()
}

/// The sign-in form; the address typed is kept, never the password.
pub fn login_form(
    email: &str,
    next: Option<&str>,
    message: &Banner,
    errors: &FieldErrors,
) -> String {
    let next = next
        .map(|n| {
            format!(
                "<input type=\"hidden\" name=\"next\" value=\"{}\">\n",
                escape(n)
            )
        })
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "{}<form method=\"post\" action=\"/login\">\n{next}\
             <label for=\"email\">Email</label>\n\
             <input id=\"email\" name=\"email\" type=\"email\" required autocomplete=\"username\" \
             maxlength=\"254\" value=\"{}\">\n{}\
             <label for=\"password\">Password</label>\n\
             <input id=\"password\" name=\"password\" type=\"password\" required \
             autocomplete=\"current-password\" maxlength=\"1024\">\n{}\
             <p><button type=\"submit\">Sign in</button></p>\n</form>\n\
             <p><a href=\"/login/forgot\">Forgot your password?</a> · \
             <a href=\"/signup\">Create an account</a></p>",
            banner(message),
            escape(email),
            field_error(errors, "email", "Email"),
            field_error(errors, "password", "Password"),
        ),
    )
}

pub fn forgot_form(email: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"field-error\" id=\"email-error\">Email {}</p>\n",
                escape(e)
            )
        })
        .unwrap_or_default();
    page(
        "Reset your password",
        &format!(
            "<p>Type the address of your account; we will email you a link to choose a new password.</p>\n\
             <form method=\"post\" action=\"/login/forgot\">\n<label for=\"email\">Email</label>\n\
             <input id=\"email\" name=\"email\" type=\"email\" required autocomplete=\"username\" \
             maxlength=\"254\" value=\"{}\">\n{error}\
             <p><button type=\"submit\">Send the link</button></p>\n</form>",
            escape(email)
        ),
    )
}

pub fn forgot_sent(valid_minutes: i64) -> String {
    page(
        "Check your email",
        &format!(
            "<p>If an account uses that address, a link to reset its password is on its way. \
             It works once and for {valid_minutes} minutes.</p>\n\
             <p><a href=\"/login\">Back to sign in</a></p>"
        ),
    )
}

pub fn reset_form(token: &str, errors: &FieldErrors) -> String {
    page(
        "Choose a new password",
        &format!(
            "<form method=\"post\" action=\"/login/reset\">\n\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\n\
             <label for=\"password\">New password</label>\n\
             <input id=\"password\" name=\"password\" type=\"password\" required \
             autocomplete=\"new-password\" minlength=\"12\" maxlength=\"128\">\n{}\
             <p>At least 12 characters. A few unrelated words make a good one. \
             Every device signed in to your account will be signed out.</p>\n\
             <p><button type=\"submit\">Set the password</button></p>\n</form>",
            escape(token),
            field_error(errors, "password", "Password"),
        ),
    )
}

pub fn link_problem(message: &str) -> String {
    page(
        "This link does not work",
        &format!(
            "<p>{}</p>\n<p><a href=\"/login/forgot\">Ask for a new link</a></p>",
            escape(message)
        ),
    )
}
