//! The door for the site's other apps: nginx's `auth_request` asks `GET /login/auth`
//! whether the request it holds may pass, and sends the refused ones to
//! `/login/auth/refused` for their answer (the snippets in `proxy/flotilla/`).
//!
//! - `/login/auth` reads the access token (Bearer, else the cookie) and answers `204`
//!   with the person in `X-Flotilla-*` headers, `401` without a live session, or `403`
//!   when the location asks more (`X-Flotilla-Require`: `user`, `verified`,
//!   `role=NAME`, `optional`, comma-separated). Its refusals say why in
//!   `X-Flotilla-Auth-Error`. It reads no database: the verified-token cache and the
//!   deny-list answer, so a revoked session is refused as soon as this instance heard.
//! - `/login/auth/refused` turns a refusal into what the client expects: a browser
//!   without a session goes to `/login?next=<the address it asked for>` (which renews
//!   an expired token from the refresh cookie without a password), an API client gets
//!   the `401` JSON, and a person without the address or role the location needs gets
//!   the `403` page or JSON.
//!
//! nginx never routes either path from outside (`location /login/auth`, 404).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_auth::{Auth, AuthError, Claims, TokenError};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::middleware::wants_html;
use flotilla_kit::{Error, State};

/// What a location asks of the person, from `X-Flotilla-Require`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Requirement {
    /// Pass everyone; the person's headers only when there is one.
    optional: bool,
    verified: bool,
    role: Option<String>,
}

impl Requirement {
    /// `user` (the default), `optional`, `verified`, `role=NAME`, comma-separated; an
    /// unknown word is the operator's mistake, named.
    fn parse(value: &str) -> Result<Self, String> {
        let mut requirement = Self::default();
        for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "user" => {}
                "optional" => requirement.optional = true,
                "verified" => requirement.verified = true,
                _ => match word.strip_prefix("role=") {
                    Some(role) if !role.is_empty() => requirement.role = Some(role.to_owned()),
                    _ => return Err(format!("unknown requirement '{word}'")),
                },
            }
        }
        Ok(requirement)
    }

    /// Why `claims` do not meet it, if they do not.
    fn refusal(&self, claims: &Claims) -> Option<Refusal> {
        if self.verified && !claims.email_verified {
            return Some(Refusal::EmailNotVerified);
        }
        if self.role.as_deref().is_some_and(|role| role != claims.role) {
            return Some(Refusal::RoleRequired);
        }
        None
    }
}

/// Why the door stayed shut: the `X-Flotilla-Auth-Error` code and the metric's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotAuthenticated,
    Expired,
    Invalid,
    Revoked,
    EmailNotVerified,
    RoleRequired,
    /// The location's `X-Flotilla-Require` makes no sense (logged).
    Misconfigured,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Self::NotAuthenticated => "not_authenticated",
            Self::Expired => "token_expired",
            Self::Invalid => "token_invalid",
            Self::Revoked => "session_revoked",
            Self::EmailNotVerified => "email_not_verified",
            Self::RoleRequired => "role_required",
            Self::Misconfigured => "requirement_invalid",
        }
    }

    fn of_code(code: &str) -> Option<Self> {
        [
            Self::NotAuthenticated,
            Self::Expired,
            Self::Invalid,
            Self::Revoked,
            Self::EmailNotVerified,
            Self::RoleRequired,
            Self::Misconfigured,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    fn of_token(e: &TokenError) -> Self {
        match e {
            TokenError::Expired => Self::Expired,
            TokenError::Revoked => Self::Revoked,
            _ => Self::Invalid,
        }
    }

    /// No session at all (401), rather than a person the location does not admit (403).
    fn is_unauthenticated(self) -> bool {
        matches!(
            self,
            Self::NotAuthenticated | Self::Expired | Self::Invalid | Self::Revoked
        )
    }

    fn answer(self) -> HttpResponse {
        let mut answer = if self.is_unauthenticated() {
            HttpResponse::Unauthorized()
        } else {
            HttpResponse::Forbidden()
        };
        answer
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((ERROR_HEADER, self.code()))
            .finish()
    }
}

/// The header the location's requirement comes in.
pub const REQUIRE_HEADER: &str = "x-flotilla-require";
/// The header that names a refusal's reason (nginx hands it to `/login/auth/refused`).
pub const ERROR_HEADER: &str = "x-flotilla-auth-error";
/// The address the refused request asked for (`$request_uri`), set by nginx.
pub const ORIGINAL_URI_HEADER: &str = "x-flotilla-original-uri";

/// Counts a check in `flotilla_auth_requests_total{kind=…}`.
fn count(state: &State, outcome: &'static str) {
    state.metrics.count(
        "flotilla_auth_requests_total",
        "Checks for nginx's auth_request by outcome: allowed, anonymous (an optional \
         location without a session), or the refusal's code.",
        outcome,
    );
}

/// May this request pass, and as whom (`GET /login/auth`, for nginx).
#[utoipa::path(get, path = "/login/auth", tag = "login",
    operation_id = "auth",
    description = "nginx's `auth_request` for the site's other apps (never routed from \
        outside). Reads no database: the verified-token cache and the deny-list answer.",
    params(
        ("X-Flotilla-Require" = Option<String>, Header, description = "What the location \
            asks: `user` (the default), `verified`, `role=NAME`, `optional`, \
            comma-separated."),
    ),
    security(("bearer" = []), ("cookie" = []), ()),
    responses(
        (status = 404, description = "From outside, through nginx: refused. nginx asks it \
            only through its internal `/_flotilla/auth`.", content_type = "text/html", body = String),
        (status = 204, description = "Admitted, with the person in headers (empty ones left \
            out). `optional` admits anyone, with the headers only for a live session.",
            headers(
                ("x-flotilla-user-id" = String),
                ("x-flotilla-role" = String),
                ("x-flotilla-email-verified" = String, description = "`true` or `false`."),
                ("x-flotilla-session-id" = String),
                ("x-flotilla-csrf-token" = String, description = "The session's form token."),
                ("x-flotilla-amr" = String, description = "How the person signed in \
                    (RFC 8176 names, space-separated)."),
                ("x-flotilla-email" = String, description = "Percent-encoded beyond \
                    printable ASCII."),
                ("x-flotilla-username" = String, description = "Percent-encoded beyond \
                    printable ASCII."),
                ("x-flotilla-display-name" = String, description = "Percent-encoded \
                    beyond printable ASCII."),
            )),
        (status = 401, description = "No live session (no body): `X-Flotilla-Auth-Error` \
            says `not_authenticated`, `token_expired`, `token_invalid` or `session_revoked`.",
            headers(("x-flotilla-auth-error" = String))),
        (status = 403, description = "A person the location does not admit (no body): \
            `email_not_verified` or `role_required`; `requirement_invalid` (logged) for an \
            `X-Flotilla-Require` it cannot read.", headers(("x-flotilla-auth-error" = String))),
    ))]
pub async fn check(
    req: HttpRequest,
    state: web::Data<State>,
    auth: web::Data<Auth>,
) -> HttpResponse {
    let required = req
        .headers()
        .get(REQUIRE_HEADER)
        .map(|v| v.to_str().map_err(|_| "not ASCII".to_owned()))
        .transpose()
        .and_then(|v| Requirement::parse(v.unwrap_or("")));
    let required = match required {
        Ok(required) => required,
        Err(problem) => {
            log::error!(
                "{REQUIRE_HEADER} from nginx: {problem}: check the location's flotilla include"
            );
            count(&state, Refusal::Misconfigured.code());
            return Refusal::Misconfigured.answer();
        }
    };
    let verified = match auth.token_of(&req) {
        None => Err(Refusal::NotAuthenticated),
        Some((token, _)) => auth.verify(&token).await.map_err(|e| Refusal::of_token(&e)),
    };
    let outcome = verified.and_then(|claims| match required.refusal(&claims) {
        Some(refusal) => Err(refusal),
        None => Ok(claims),
    });
    match outcome {
        Ok(claims) => {
            count(&state, "allowed");
            admitted(&claims)
        }
        Err(_) if required.optional => {
            count(&state, "anonymous");
            HttpResponse::NoContent()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        Err(refusal) => {
            count(&state, refusal.code());
            refusal.answer()
        }
    }
}

/// `204` with the person's headers, as the snippets pass them to the app.
fn admitted(claims: &Claims) -> HttpResponse {
    let mut answer = HttpResponse::NoContent();
    answer.insert_header((header::CACHE_CONTROL, "no-store"));
    let verified = if claims.email_verified {
        "true"
    } else {
        "false"
    };
    // How the person proved who they are: the claim's methods, space-separated
    // (RFC 8176 names are plain ASCII; anything else in a token would be dropped below).
    let amr = claims.amr.join(" ");
    let plain: [(&'static str, &str); 6] = [
        ("x-flotilla-user-id", &claims.sub),
        ("x-flotilla-role", &claims.role),
        ("x-flotilla-email-verified", verified),
        ("x-flotilla-session-id", &claims.sid),
        ("x-flotilla-csrf-token", &claims.csrf),
        ("x-flotilla-amr", &amr),
    ];
    let text: [(&'static str, Option<&str>); 3] = [
        ("x-flotilla-email", Some(claims.email.as_str())),
        ("x-flotilla-username", claims.preferred_username.as_deref()),
        ("x-flotilla-display-name", claims.name.as_deref()),
    ];
    let values = plain
        .into_iter()
        .map(|(name, value)| (name, value.to_owned()))
        .chain(
            text.into_iter()
                .filter_map(|(name, value)| Some((name, header_text(value?)))),
        );
    for (name, value) in values.filter(|(_, value)| !value.is_empty()) {
        // Every value is visible ASCII by now: ids and codes are, text is encoded.
        if let Ok(value) = HeaderValue::from_str(&value) {
            answer.insert_header((HeaderName::from_static(name), value));
        }
    }
    answer.finish()
}

/// Free text as a header value: UTF-8 with `%`, control characters and every byte
/// outside ASCII percent-encoded (so `urllib.parse.unquote`, `decodeURIComponent` or
/// `url.PathUnescape` give it back); an address or a plain name passes unchanged.
fn header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte == b'%' || !(b' '..=b'~').contains(&byte) {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push(byte as char);
        }
    }
    out
}

/// The answer to a request the door refused (`/login/auth/refused`, for nginx).
#[utoipa::path(get, path = "/login/auth/refused", tag = "login",
    operation_id = "auth_refused",
    description = "What nginx answers a request `/login/auth` refused (never routed from \
        outside).",
    params(
        ("X-Flotilla-Auth-Error" = Option<String>, Header, description = "The refusal's \
            code, from `/login/auth` (default `not_authenticated`)."),
        ("X-Flotilla-Original-Uri" = Option<String>, Header, description = "The address \
            the refused request asked for (`$request_uri`)."),
    ),
    responses(
        (status = 404, description = "From outside, through nginx: refused. nginx asks it \
            only through its internal `/_flotilla/refused`.", content_type = "text/html", body = String),
        (status = 303, description = "A browser without a session: to `/login?next=<the \
            address it asked for>`, which renews the session from the refresh cookie when \
            it can.", headers(("Location" = String))),
        (status = 401, description = "`not_authenticated`, `token_expired`, `token_invalid` \
            or `session_revoked`, for an API client.", body = ErrorBody),
        (status = 403, description = "`email_not_verified`, `role_required` or \
            `requirement_invalid`: the page or JSON.", body = ErrorBody),
    ))]
pub async fn refused(req: HttpRequest) -> Result<HttpResponse, Error> {
    let code = req
        .headers()
        .get(ERROR_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let refusal = Refusal::of_code(code).unwrap_or(Refusal::NotAuthenticated);
    if refusal.is_unauthenticated() && wants_html(req.headers()) {
        let back = req
            .headers()
            .get(ORIGINAL_URI_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|uri| crate::domain::safe_next(Some(uri)));
        let location = match back {
            Some(uri) => serde_urlencoded::to_string([("next", uri)])
                .map_or_else(|_| "/login".to_owned(), |query| format!("/login?{query}")),
            None => "/login".to_owned(),
        };
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish());
    }
    Err(match refusal {
        Refusal::NotAuthenticated => AuthError::NotAuthenticated.into(),
        Refusal::Expired => AuthError::Token(TokenError::Expired).into(),
        Refusal::Invalid => AuthError::Token(TokenError::Invalid).into(),
        Refusal::Revoked => AuthError::Token(TokenError::Revoked).into(),
        Refusal::EmailNotVerified => AuthError::EmailNotVerified.into(),
        Refusal::RoleRequired => Error::Forbidden {
            code: "role_required",
            message: "This page is not open to your account's role.".into(),
        },
        Refusal::Misconfigured => Error::Forbidden {
            code: "requirement_invalid",
            message: "This page's protection is misconfigured: tell the site's administrators."
                .into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: &str, verified: bool) -> Claims {
        Claims {
            sub: "u1".into(),
            sid: "s1".into(),
            role: role.into(),
            email_verified: verified,
            email: "ada@example.org".into(),
            preferred_username: None,
            name: None,
            amr: vec!["pwd".to_owned()],
            csrf: "c".into(),
            iss: "i".into(),
            aud: "a".into(),
            iat: 0,
            nbf: 0,
            exp: 0,
        }
    }

    #[test]
    fn requirements_read_as_nginx_sends_them() {
        assert_eq!(Requirement::parse("").unwrap(), Requirement::default());
        assert_eq!(Requirement::parse("user").unwrap(), Requirement::default());
        let both = Requirement::parse("verified, role=admin").unwrap();
        assert!(both.verified && both.role.as_deref() == Some("admin") && !both.optional);
        assert!(Requirement::parse("optional").unwrap().optional);
        assert_eq!(
            Requirement::parse("role=").unwrap_err(),
            "unknown requirement 'role='"
        );
        assert!(Requirement::parse("admin").is_err());
    }

    #[test]
    fn each_requirement_admits_exactly_whom_it_names() {
        let admin = Requirement::parse("role=admin").unwrap();
        assert_eq!(admin.refusal(&claims("admin", true)), None);
        assert_eq!(
            admin.refusal(&claims("user", true)),
            Some(Refusal::RoleRequired)
        );
        let verified = Requirement::parse("verified").unwrap();
        assert_eq!(verified.refusal(&claims("user", true)), None);
        assert_eq!(
            verified.refusal(&claims("admin", false)),
            Some(Refusal::EmailNotVerified)
        );
        assert_eq!(Requirement::default().refusal(&claims("user", false)), None);
    }

    #[test]
    fn free_text_becomes_a_safe_header_value() {
        assert_eq!(header_text("ada+news@example.org"), "ada+news@example.org");
        assert_eq!(header_text("Ada Lovelace"), "Ada Lovelace");
        assert_eq!(header_text("Adà 100%"), "Ad%C3%A0 100%25");
        assert_eq!(header_text("a\r\nX-Evil: 1"), "a%0D%0AX-Evil: 1");
        for code in ["token_expired", "role_required", "not_authenticated"] {
            assert_eq!(Refusal::of_code(code).unwrap().code(), code);
        }
    }
}
