//! The signup pages: plain HTML forms that work without JavaScript.

use flotilla_kit::FieldErrors;
use flotilla_kit::html::{escape, page};

/// The signup form, with the values typed so far (never the password) and each error
/// next to its field.
pub fn signup_form(email: &str, username: &str, errors: &FieldErrors) -> String {
    let field = |name: &str, label: &str, kind: &str, value: &str, extra: &str| {
        let error = errors
            .get(name)
            .map(|e| {
                format!(
                    "<p class=\"field-error\" id=\"{name}-error\">{} {}</p>",
                    escape(label),
                    escape(e)
                )
            })
            .unwrap_or_default();
        let described = if errors.contains_key(name) {
            format!(" aria-invalid=\"true\" aria-describedby=\"{name}-error\"")
        } else {
            String::new()
        };
        format!(
            "<label for=\"{name}\">{label}</label>\n<input id=\"{name}\" name=\"{name}\" type=\"{kind}\" \
             value=\"{}\"{extra}{described}>\n{error}\n",
            escape(value)
        )
    };
    let mut body = String::new();
    if !errors.is_empty() {
        body.push_str("<p class=\"field-error\">Please correct the fields below.</p>\n");
    }
    body.push_str("<form method=\"post\" action=\"/signup\">\n");
    body.push_str(&field(
        "email",
        "Email",
        "email",
        email,
        " required autocomplete=\"email\" maxlength=\"254\"",
    ));
    body.push_str(&field(
        "password",
        "Password",
        "password",
        "",
        " required autocomplete=\"new-password\" minlength=\"12\" maxlength=\"128\"",
    ));
    body.push_str("<p>At least 12 characters. A few unrelated words make a good one.</p>\n");
    body.push_str(&field(
        "username",
        "Username (optional)",
        "text",
        username,
        " autocomplete=\"username\" maxlength=\"32\" pattern=\"[a-z0-9][a-z0-9_\\-]{2,31}\"",
    ));
    body.push_str("<p><button type=\"submit\">Create account</button></p>\n</form>\n");
    body.push_str("<p>Already have an account? <a href=\"/login\">Sign in</a>.</p>");
    page("Create an account", &body)
}

pub fn check_email() -> String {
    page(
        "Check your email",
        "<p>We have sent a link to confirm your address. It works once and expires in 48 hours.</p>\n\
         <p>Nothing arrived? Look in your spam folder, or <a href=\"/signup/resend\">ask for a new link</a>.</p>",
    )
}

pub fn verified() -> String {
    page(
        "Address confirmed",
        "<p>Your email address is confirmed.</p>\n<p><a href=\"/login\">Sign in</a></p>",
    )
}

pub fn link_problem(message: &str) -> String {
    page(
        "This link does not work",
        &format!(
            "<p>{}</p>\n<p><a href=\"/signup/resend\">Ask for a new link</a></p>",
            escape(message)
        ),
    )
}

pub fn resend_form(email: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"field-error\" id=\"email-error\">Email {}</p>",
                escape(e)
            )
        })
        .unwrap_or_default();
    page(
        "Send a new link",
        &format!(
            "<form method=\"post\" action=\"/signup/resend\">\n<label for=\"email\">Email</label>\n\
             <input id=\"email\" name=\"email\" type=\"email\" required value=\"{}\">\n{error}\n\
             <p><button type=\"submit\">Send a new link</button></p>\n</form>",
            escape(email)
        ),
    )
}
