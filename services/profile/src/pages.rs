//! The account page: plain HTML forms that work without JavaScript. Everything the
//! person typed is escaped wherever it is shown.

use flotilla_kit::FieldErrors;
use flotilla_kit::html::{escape, page};

use flotilla_accounts::summarise_user_agent;

use crate::domain::{MAX_BIO, MAX_DISPLAY_NAME};
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

fn when(at: chrono::NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn problem_in(problem: Option<&Problem>, section: &str) -> String {
    let Some(p) = problem.filter(|p| p.section == section) else {
        return String::new();
    };
    let mut out = format!(
        "<p class=\"field-error\" role=\"alert\">{}</p>\n",
        escape(&p.message)
    );
    if !p.fields.is_empty() {
        out.push_str("<ul class=\"errors\">\n");
        for (field, message) in &p.fields {
            out.push_str(&format!(
                "<li><strong>{}</strong> {}</li>\n",
                escape(&field.replace('_', " ")),
                escape(message)
            ));
        }
        out.push_str("</ul>\n");
    }
    out
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

fn kind_label(kind: &str) -> &str {
    match kind {
        "login.success" => "Signed in",
        "login.failure" => "Wrong password",
        "login.throttled" => "Attempt slowed down",
        "login.refused_unverified" => "Sign-in before confirming the address",
        "login.refused_disabled" => "Sign-in while disabled",
        "logout" => "Signed out",
        "logout_all" => "Signed out everywhere",
        "password.reset" => "Password reset by email",
        "password.reset_requested" => "Password reset asked for",
        "password.changed" => "Password changed",
        "email.change_requested" => "Change of address asked for",
        "email.changed" => "Address changed",
        "session.revoked" => "A session ended from this page",
        "session.revoked_others" => "Other sessions ended",
        "session.refresh_reuse" => "Session ended: a stolen token was used",
        other => other,
    }
}

pub fn account_page(view: &View, done: Option<&str>, problem: Option<&Problem>) -> String {
    let a = &view.account;
    let csrf = format!(
        "<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\n",
        escape(&view.csrf)
    );
    let mut body = String::new();
    let notice = notice(done);
    if !notice.is_empty() {
        body.push_str(&format!(
            "<p class=\"notice\" role=\"status\">{}</p>\n",
            escape(notice)
        ));
    }
    let verified = if a.email_verified_at.is_some() {
        "confirmed"
    } else {
        "not confirmed yet — <a href=\"/signup/resend\">send a new link</a>"
    };
    body.push_str(&format!(
        "<p>Signed in as <strong>{}</strong> ({verified}). Member since {}.</p>\n\
         <form method=\"post\" action=\"/login/logout\">{csrf}<button type=\"submit\">Sign out</button></form>\n",
        escape(&a.email),
        when(a.created_at),
    ));

    // Profile fields.
    let checked = if a.public { " checked" } else { "" };
    body.push_str(&format!(
        "<h2 id=\"profile\">Profile</h2>\n{}\
         <form method=\"post\" action=\"/profile/me\">\n{csrf}\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" value=\"{}\" maxlength=\"32\" pattern=\"[a-z0-9][a-z0-9_\\-]{{2,31}}\" autocomplete=\"username\">\n\
         <label for=\"display_name\">Display name</label>\n\
         <input id=\"display_name\" name=\"display_name\" value=\"{}\" maxlength=\"{MAX_DISPLAY_NAME}\">\n\
         <label for=\"bio\">About you</label>\n\
         <textarea id=\"bio\" name=\"bio\" maxlength=\"{MAX_BIO}\" rows=\"5\">{}</textarea>\n\
         <label><input type=\"checkbox\" name=\"public\"{checked}> Show my profile on the public site</label>\n\
         <p><button type=\"submit\">Save</button></p>\n</form>\n",
        problem_in(problem, "profile"),
        escape(a.username.as_deref().unwrap_or("")),
        escape(a.display_name.as_deref().unwrap_or("")),
        escape(a.bio.as_deref().unwrap_or("")),
    ));

    body.push_str(&format!(
        "<h2 id=\"password\">Password</h2>\n{}\
         <form method=\"post\" action=\"/profile/password\">\n{csrf}\
         <label for=\"current_password\">Current password</label>\n\
         <input id=\"current_password\" name=\"current_password\" type=\"password\" required autocomplete=\"current-password\">\n\
         <label for=\"new_password\">New password</label>\n\
         <input id=\"new_password\" name=\"new_password\" type=\"password\" required minlength=\"12\" maxlength=\"128\" autocomplete=\"new-password\">\n\
         <p>Your other devices will be signed out.</p>\n\
         <p><button type=\"submit\">Change the password</button></p>\n</form>\n",
        problem_in(problem, "password"),
    ));

    body.push_str(&format!(
        "<h2 id=\"email\">Email address</h2>\n{}\
         <form method=\"post\" action=\"/profile/email\">\n{csrf}\
         <label for=\"new_email\">New address</label>\n\
         <input id=\"new_email\" name=\"new_email\" type=\"email\" required maxlength=\"254\" autocomplete=\"email\">\n\
         <label for=\"email_password\">Password</label>\n\
         <input id=\"email_password\" name=\"password\" type=\"password\" required autocomplete=\"current-password\">\n\
         <p>We send a link to the new address; it replaces the current one when you follow it.</p>\n\
         <p><button type=\"submit\">Change the address</button></p>\n</form>\n",
        problem_in(problem, "email"),
    ));

    body.push_str("<h2 id=\"sessions\">Where you are signed in</h2>\n<table>\n<tr><th>Device</th><th>Address</th><th>Signed in</th><th>Last active</th><th></th></tr>\n");
    for s in &view.sessions {
        let action = if s.id == view.current_session {
            "This device".to_owned()
        } else {
            format!(
                "<form method=\"post\" action=\"/profile/sessions/{}/revoke\">{csrf}<button type=\"submit\">Sign out</button></form>",
                escape(&s.id)
            )
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>\n",
            escape(&summarise_user_agent(&s.user_agent)),
            escape(&s.client_addr),
            when(s.created_at),
            when(s.last_used_at),
        ));
    }
    body.push_str(&format!(
        "</table>\n<form method=\"post\" action=\"/profile/sessions/revoke-others\">{csrf}\
         <button type=\"submit\">Sign out everywhere else</button></form>\n"
    ));

    body.push_str("<h2 id=\"activity\">Recent activity</h2>\n<table>\n<tr><th>When</th><th>What</th><th>Address</th><th>Device</th></tr>\n");
    for e in &view.activity {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            when(e.created_at),
            escape(kind_label(&e.kind)),
            escape(&e.client_addr),
            escape(&summarise_user_agent(&e.user_agent)),
        ));
    }
    body.push_str("</table>\n");

    body.push_str(&format!(
        "<h2 id=\"data\">Your data</h2>\n<p><a href=\"/profile/export\">Download everything we store about you</a> (JSON).</p>\n\
         <h2 id=\"delete\">Close the account</h2>\n{}\
         <form method=\"post\" action=\"/profile/delete\">\n{csrf}\
         <p>This signs you out everywhere and deletes your data. It cannot be undone.</p>\n\
         <label for=\"delete_password\">Password</label>\n\
         <input id=\"delete_password\" name=\"password\" type=\"password\" required autocomplete=\"current-password\">\n\
         <p><button type=\"submit\">Close my account</button></p>\n</form>\n",
        problem_in(problem, "delete"),
    ));
    page("Your account", &body)
}

pub fn email_confirmed() -> String {
    page(
        "Address changed",
        "<p>Your new email address is confirmed and now signs you in.</p>\n<p><a href=\"/profile\">Your account</a></p>",
    )
}

pub fn link_problem(message: &str) -> String {
    page(
        "This link does not work",
        &format!(
            "<p>{}</p>\n<p><a href=\"/profile\">Your account</a></p>",
            escape(message)
        ),
    )
}
