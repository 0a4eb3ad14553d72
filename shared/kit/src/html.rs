//! The HTML the services send. Every page is an askama template in its crate's
//! `templates/` folder that extends the one layout, `shared/kit/templates/base.html`
//! (`form.html` beside it holds the form-field macro). Each crate's `askama.toml` adds
//! that folder to its own and names [`Entities`] as the escaper of `.html` templates, so
//! every value a page shows is escaped unless a template says otherwise. Pages share one
//! stylesheet, [`STYLESHEET`], which flotilla-pages writes into the static site under a
//! name made from its bytes ([`stylesheet_href`]): nginx lets browsers keep it for a
//! year, and a changed stylesheet is a new address. (The Content-Security-Policy allows
//! no inline style.)

use std::fmt;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use askama::Template;

use crate::FieldErrors;

/// The stylesheet of every page, the services' and the static site's.
pub const STYLESHEET: &str = include_str!("../assets/site.css");

/// The site's one script, which every page loads (`defer`): it only enhances (the
/// password fields' Show button); every page works without it.
pub const SCRIPT: &str = include_str!("../assets/site.js");

/// The site's icon, which every page names (`<link rel="icon">`).
pub const ICON_SVG: &str = include_str!("../assets/icon.svg");

/// The same icon, 32 pixels square, as `/favicon.ico` (for what asks there without
/// reading the page).
pub const FAVICON_ICO: &[u8] = include_bytes!("../assets/favicon.ico");

/// The stylesheet's address: `/assets/site.<16 hex digits of its FNV-1a hash>.css`.
pub fn stylesheet_href() -> &'static str {
    static HREF: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| fingerprinted("site", "css", STYLESHEET.as_bytes()));
    &HREF
}

/// The script's address: `/assets/site.<hash>.js`.
pub fn script_href() -> &'static str {
    static HREF: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| fingerprinted("site", "js", SCRIPT.as_bytes()));
    &HREF
}

/// The icon's address: `/assets/icon.<hash>.svg`.
pub fn icon_href() -> &'static str {
    static HREF: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| fingerprinted("icon", "svg", ICON_SVG.as_bytes()));
    &HREF
}

/// `/assets/<name>.<16 hex digits of the FNV-1a hash of bytes>.<extension>`: a new
/// address whenever the bytes change, so nginx lets browsers keep each for a year.
fn fingerprinted(name: &str, extension: &str, bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("/assets/{name}.{hash:016x}.{extension}")
}

/// Who reads a page, for its header (`chrome.html`): the name shown, the form token
/// its "Sign out" button posts, and whether the admin console is theirs.
#[derive(Debug, Clone, Copy)]
pub struct SignedIn<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
    pub admin: bool,
}

impl<'a> SignedIn<'a> {
    /// The name a header shows: the display name, else the username, else the address.
    pub fn name_of(
        display_name: Option<&'a str>,
        username: Option<&'a str>,
        email: &'a str,
    ) -> &'a str {
        [display_name, username]
            .into_iter()
            .flatten()
            .find(|name| !name.trim().is_empty())
            .unwrap_or(email)
    }
}

/// A refused form's errors in the order of its fields (`order`: their names,
/// space-separated), then any the form does not name, by name.
pub fn errors_in_order<'a>(errors: &'a FieldErrors, order: &str) -> Vec<(&'a str, &'a str)> {
    let position = |field: &str| {
        order
            .split_whitespace()
            .position(|name| name == field)
            .unwrap_or(usize::MAX)
    };
    let mut listed: Vec<(&str, &str)> = errors
        .iter()
        .map(|(field, message)| (field.as_str(), message.as_str()))
        .collect();
    // Stable: fields the form does not name keep the map's (name) order.
    listed.sort_by_key(|(field, _)| position(field));
    listed
}

/// A field's name as a person reads it: `new_password` is "New password".
pub fn field_label(name: &str) -> String {
    let words = name.replace(['_', '-'], " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// An HTML answer.
pub fn respond(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::html())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// The answer of a read served to both: `page()` for a browser (`Accept: text/html`),
/// `json` for an API client; neither stored by caches (what it shows is private).
pub fn page_or_json<T: serde::Serialize>(
    req: &actix_web::HttpRequest,
    json: &T,
    page: impl FnOnce() -> String,
) -> HttpResponse {
    if crate::middleware::wants_html(req.headers()) {
        return respond(StatusCode::OK, page());
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json)
}

/// `303 See Other` to `location` (after a form post).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// The escaper of every `.html` template: text for element content and quoted
/// attribute values, with the named entities (askama's own writes numeric ones).
#[derive(Debug, Clone, Copy, Default)]
pub struct Entities;

impl askama::filters::Escaper for Entities {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            dest.write_str(&rest[..at])?;
            dest.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        dest.write_str(rest)
    }
}

/// A page as HTML. Templates write into a String and call no fallible filter, so this
/// does not fail; should a value's `Display` fail all the same, the log says so.
pub fn render(page: &impl Template) -> String {
    page.render().unwrap_or_else(|e| {
        log::error!("a page could not be rendered: {e}");
        String::new()
    })
}

/// A page that says one thing: `message`, what is wrong with which field if any, and
/// one link on (`(href, text)`). Error pages and links that no longer work.
#[derive(Template)]
#[template(path = "message.html")]
struct Message<'a> {
    title: &'a str,
    message: &'a str,
    fields: Option<&'a FieldErrors>,
    link: (&'a str, &'a str),
}

/// The page of an error: titled by its status, with a link home.
pub fn error_page(status: StatusCode, message: &str, fields: Option<&FieldErrors>) -> String {
    render(&Message {
        title: status.canonical_reason().unwrap_or("Error"),
        message,
        fields,
        link: ("/", "Home"),
    })
}

/// The page of an emailed link that does not work (expired, used, unknown): `message`
/// says why, `again` (`(href, text)`) where to go from there.
pub fn link_problem(message: &str, again: (&str, &str)) -> String {
    render(&Message {
        title: "This link does not work",
        message,
        fields: None,
        link: again,
    })
}

/// What opening an emailed link shows: `message` and a button that posts the link's
/// token to `action`. Opening a link spends nothing, so a mail scanner that follows it
/// confirms nothing; the person's click does.
#[derive(Template)]
#[template(path = "link_confirm.html")]
pub struct LinkConfirm<'a> {
    pub title: &'a str,
    pub action: &'a str,
    pub token: &'a str,
    pub message: &'a str,
    pub button: &'a str,
}

impl LinkConfirm<'_> {
    pub fn render(&self) -> String {
        render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(text: &str) -> String {
        use askama::filters::Escaper;
        let mut out = String::new();
        Entities.write_escaped_str(&mut out, text).unwrap();
        out
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href='x'>\"&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn pages_escape_what_they_show() {
        let page = link_problem("<script>\"'&", ("/x", "Again"));
        assert!(page.contains("<title>This link does not work — flotilla</title>"));
        assert!(page.contains("<h1>This link does not work</h1>"));
        assert!(
            page.contains("<p>&lt;script&gt;&quot;&#39;&amp;</p>"),
            "{page}"
        );
        assert!(page.contains("<a class=\"button secondary\" href=\"/x\">Again</a>"));
        assert!(page.contains("<a class=\"skip-link\" href=\"#main\">"));
        assert!(page.contains("<main id=\"main\""));
        assert!(page.contains(&format!("href=\"{}\"", stylesheet_href())));
        assert!(page.contains(&format!(
            "<link rel=\"icon\" href=\"{}\" type=\"image/svg+xml\">",
            icon_href()
        )));
    }

    #[test]
    fn a_refused_form_lists_its_errors_in_the_order_of_its_fields() {
        let errors = FieldErrors::from([
            ("username".to_owned(), "is taken".to_owned()),
            ("email".to_owned(), "is not an address".to_owned()),
            ("zz_other".to_owned(), "is odd".to_owned()),
            ("password".to_owned(), "is too short".to_owned()),
        ]);
        let listed = errors_in_order(&errors, "email password username");
        let fields: Vec<&str> = listed.iter().map(|(field, _)| *field).collect();
        assert_eq!(fields, ["email", "password", "username", "zz_other"]);
        assert_eq!(field_label("new_password"), "New password");
        assert_eq!(field_label("email"), "Email");
        assert_eq!(field_label(""), "");
    }

    #[test]
    fn a_header_names_the_reader_by_what_they_chose() {
        assert_eq!(SignedIn::name_of(Some("Ada"), Some("ada"), "a@x"), "Ada");
        assert_eq!(SignedIn::name_of(Some(" "), Some("ada"), "a@x"), "ada");
        assert_eq!(SignedIn::name_of(None, None, "a@x"), "a@x");
    }
}
