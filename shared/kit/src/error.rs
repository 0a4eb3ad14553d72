//! The error of the service kit's routes, and the shape every flotilla error takes on
//! the wire: `{"error":"snake_case_code","message":"…","fields":{…}}` for API clients,
//! an HTML page for browsers (chosen by `Accept` in the request middleware).
//!
//! Policy: bad input is a 4xx whose message says what is wrong; anything unexpected is
//! an `Internal` whose cause goes to the log (with the request id) and never to the
//! client, which sees a generic 500. Services define their own error enums for their
//! handler families and turn them into [`Error`] with `From`.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

/// Field name → what is wrong with it.
pub type FieldErrors = BTreeMap<String, String>;

#[derive(Debug)]
pub enum Error {
    /// 400: the request cannot be understood (malformed JSON, bad query string).
    BadRequest { code: &'static str, message: String },
    /// 422: well-formed, but fields are invalid.
    Invalid(FieldErrors),
    /// 409: the request conflicts with the current state (a name already taken).
    Conflict {
        code: &'static str,
        fields: FieldErrors,
    },
    /// 409: the current state forbids the change (the last admin cannot be demoted).
    Refused { code: &'static str, message: String },
    /// 401 with `WWW-Authenticate: Bearer`: no credentials, or credentials that do not
    /// hold (expired, revoked, wrong password).
    Unauthorized { code: &'static str, message: String },
    /// 403: who asks is known, and may not do this.
    Forbidden { code: &'static str, message: String },
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType { expected: &'static str },
    /// 429 with `Retry-After`: too many attempts; try again later.
    TooManyRequests {
        code: &'static str,
        message: String,
        retry_after_secs: u32,
    },
    /// 503 with `Retry-After`: a dependency is down or the service is overloaded.
    Unavailable {
        code: &'static str,
        message: String,
        retry_after_secs: u32,
    },
    /// 500: logged with its cause, shown to nobody.
    Internal(anyhow::Error),
    /// 303 to another page: a browser that must do something first (sign in, say)
    /// is sent there. Only for requests that accept HTML.
    SeeOther { location: String },
    /// Another error, answered to a browser's form post with the form shown again
    /// (`page`) rather than an error page; see [`crate::input::Input::refuse`].
    WithPage { error: Box<Error>, page: String },
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a FieldErrors>,
}

impl Error {
    pub fn invalid(field: &str, problem: impl Into<String>) -> Self {
        Self::Invalid(BTreeMap::from([(field.to_owned(), problem.into())]))
    }

    /// A body that is not the JSON the route expects; a field the route does not take
    /// (`deny_unknown_fields`) is named in a 422 instead.
    pub fn malformed_json(cause: impl fmt::Display) -> Self {
        let cause = cause.to_string();
        Self::unknown_field(&cause).unwrap_or_else(|| Self::BadRequest {
            code: "malformed_json",
            message: format!("The request body is not valid JSON for this address: {cause}."),
        })
    }

    /// A body that could not be read at all (the connection broke, say).
    pub fn unreadable_body(cause: impl fmt::Display) -> Self {
        Self::BadRequest {
            code: "unreadable_body",
            message: format!("The request body could not be read: {cause}."),
        }
    }

    /// Why actix could not read a request's body (its `Bytes` extractor): a 413 when
    /// the body is over the limit (the service's `max_body_bytes`; actix's own default
    /// in an app without the kit's state), else [`Error::unreadable_body`].
    pub fn unread_body(cause: actix_web::Error, req: &HttpRequest) -> Self {
        if cause.as_response_error().status_code() != StatusCode::PAYLOAD_TOO_LARGE {
            return Self::unreadable_body(cause);
        }
        let limit = req
            .app_data::<actix_web::web::Data<crate::State>>()
            .map_or(262_144, |state| state.config.max_body_bytes);
        Error::PayloadTooLarge { limit }
    }

    /// A form body that cannot be read into the route's fields; a field the route does
    /// not take is named in a 422 instead.
    pub fn malformed_form(cause: impl fmt::Display) -> Self {
        let cause = cause.to_string();
        Self::unknown_field(&cause).unwrap_or_else(|| Self::BadRequest {
            code: "malformed_form",
            message: format!("The form could not be read: {cause}."),
        })
    }

    /// serde's "unknown field `x`, expected …" (or "…, there are no fields") as a 422
    /// naming `x`, whatever `x` holds: a backtick in it does not end it.
    fn unknown_field(cause: &str) -> Option<Self> {
        let rest = cause.strip_prefix("unknown field `")?;
        let end = ["`, expected ", "`, there are no fields"]
            .into_iter()
            .filter_map(|after| rest.rfind(after))
            .max()?;
        Some(Self::invalid(
            &rest[..end],
            "is not a field of this request",
        ))
    }

    /// The seconds to wait before trying again, for the answers that have one.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Error::WithPage { error, .. } => error.retry_after_secs(),
            Error::Unavailable {
                retry_after_secs, ..
            }
            | Error::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Gives a page rendered for this error (a form shown again with it) the
    /// `Retry-After` its JSON answer would have.
    pub fn add_retry_after(&self, response: &mut HttpResponse) {
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }

    /// This error, answered to a form post with `page` (the form again, showing it).
    pub fn with_page(self, page: String) -> Self {
        match self {
            // A server fault gets the generic page, whatever the route would show.
            Error::Internal(_) => self,
            error => Error::WithPage {
                error: Box::new(error.without_page()),
                page,
            },
        }
    }

    /// This error, answered to a browser with `page` (rendered only then): a link
    /// that does not work, say, gets its own page rather than the error page.
    pub fn for_browser(self, browser: bool, page: impl FnOnce() -> String) -> Self {
        match browser {
            true => self.with_page(page()),
            false => self,
        }
    }

    /// The error itself, without a page it carries.
    fn without_page(self) -> Self {
        match self {
            Error::WithPage { error, .. } => *error,
            error => error,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::WithPage { error, .. } => error.code(),
            Error::BadRequest { code, .. }
            | Error::Unauthorized { code, .. }
            | Error::Forbidden { code, .. }
            | Error::TooManyRequests { code, .. }
            | Error::Unavailable { code, .. }
            | Error::Conflict { code, .. }
            | Error::Refused { code, .. } => code,
            Error::Invalid(_) => "invalid_input",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::UnsupportedMediaType { .. } => "unsupported_media_type",
            Error::Internal(_) => "internal_error",
            Error::SeeOther { .. } => "see_other",
        }
    }

    /// What the client is told. Never the cause of an internal error.
    pub fn public_message(&self) -> String {
        match self {
            Error::WithPage { error, .. } => error.public_message(),
            Error::BadRequest { message, .. }
            | Error::Unauthorized { message, .. }
            | Error::Forbidden { message, .. }
            | Error::Refused { message, .. }
            | Error::TooManyRequests { message, .. }
            | Error::Unavailable { message, .. } => message.clone(),
            Error::Conflict { .. } => "A value is already in use.".into(),
            Error::Invalid(fields) if fields.len() == 1 => "One field is invalid.".into(),
            Error::Invalid(fields) => format!("{} fields are invalid.", fields.len()),
            Error::NotFound => "There is nothing at this address.".into(),
            Error::MethodNotAllowed => "This address does not accept that method.".into(),
            Error::PayloadTooLarge { limit } => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            Error::UnsupportedMediaType { expected } => {
                format!("The request body must be sent as {expected}.")
            }
            Error::Internal(_) => {
                "Something went wrong on our side. It has been logged; please try again.".into()
            }
            Error::SeeOther { location } => format!("Continue at {location}."),
        }
    }

    pub fn fields(&self) -> Option<&FieldErrors> {
        match self {
            Error::WithPage { error, .. } => error.fields(),
            Error::Invalid(fields) | Error::Conflict { fields, .. } => Some(fields),
            _ => None,
        }
    }

    /// The HTML page for browsers.
    pub fn html_page(&self) -> String {
        if let Error::WithPage { page, .. } = self {
            return page.clone();
        }
        crate::html::error_page(self.status_code(), &self.public_message(), self.fields())
    }
}

impl fmt::Display for Error {
    /// For the log: the full cause of internal errors, the public message otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Internal(cause) => write!(f, "{cause:#}"),
            other => write!(f, "{}: {}", other.code(), other.public_message()),
        }
    }
}

impl std::error::Error for Error {}

/// Fields that failed their checks: a 422 naming each.
impl From<FieldErrors> for Error {
    fn from(fields: FieldErrors) -> Self {
        Error::Invalid(fields)
    }
}

impl From<anyhow::Error> for Error {
    fn from(cause: anyhow::Error) -> Self {
        Error::Internal(cause)
    }
}

impl From<flotilla_db::PoolError> for Error {
    fn from(_: flotilla_db::PoolError) -> Self {
        Error::Unavailable {
            code: "database_unavailable",
            message: "The database is busy or unreachable; please try again shortly.".into(),
            retry_after_secs: 1,
        }
    }
}

impl From<flotilla_db::diesel::result::Error> for Error {
    fn from(e: flotilla_db::diesel::result::Error) -> Self {
        Error::Internal(anyhow::Error::new(e).context("database work"))
    }
}

impl From<actix_web::error::BlockingError> for Error {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Error::Internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Conflict { .. } | Error::Refused { .. } => StatusCode::CONFLICT,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::WithPage { error, .. } => error.status_code(),
            Error::SeeOther { .. } => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Error::WithPage { page, .. } = self {
            // Made only for a form post: the page whatever the request accepts.
            let mut response = crate::html::respond(self.status_code(), page.clone());
            self.add_retry_after(&mut response);
            return response;
        }
        if let Error::SeeOther { location } = self {
            return crate::html::see_other(location);
        }
        let message = self.public_message();
        let mut response = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after_secs() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Error::Unauthorized { .. } = self {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"flotilla\""),
            ));
        }
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        response.json(Body {
            error: self.code(),
            message: &message,
            fields: self.fields(),
        })
    }
}

/// Turns actix's extractor errors into ours, so that a malformed body gets the same
/// clear JSON or HTML answer as any other bad input. Installed by the kit for JSON,
/// form, query and path extractors.
pub fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => {
            Error::PayloadTooLarge { limit }
        }
        E::ContentType => Error::UnsupportedMediaType {
            expected: "application/json",
        },
        E::Deserialize(e) => Error::malformed_json(e),
        other => Error::BadRequest {
            code: "malformed_body",
            message: format!("The request body could not be read: {other}."),
        },
    }
    .into()
}

pub fn form_error(err: actix_web::error::UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::UrlencodedError as E;
    match err {
        E::Overflow { limit, .. } => Error::PayloadTooLarge { limit },
        E::ContentType => Error::UnsupportedMediaType {
            expected: "application/x-www-form-urlencoded",
        },
        E::Parse(e) => Error::malformed_form(e),
        other => Error::malformed_form(other),
    }
    .into()
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    Error::BadRequest {
        code: "malformed_query",
        message: format!("The query string is invalid: {err}."),
    }
    .into()
}

/// A path segment that does not parse (e.g. a malformed id) names no resource.
pub fn path_error(_: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    Error::NotFound.into()
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    async fn body_of(err: Error) -> (StatusCode, serde_json::Value) {
        let response = err.error_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn invalid_input_names_each_field() {
        let mut fields = FieldErrors::new();
        fields.insert("email".into(), "must contain @".into());
        fields.insert("password".into(), "must be at least 12 characters".into());
        let (status, body) = body_of(Error::Invalid(fields)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"], "invalid_input");
        assert_eq!(body["fields"]["email"], "must contain @");
        assert_eq!(body["fields"]["password"], "must be at least 12 characters");
    }

    #[actix_web::test]
    async fn internal_errors_hide_their_cause() {
        let err = Error::Internal(anyhow::anyhow!("disk full at /secret/path"));
        assert!(
            err.to_string().contains("disk full"),
            "the log sees the cause"
        );
        let (status, body) = body_of(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal_error");
        assert!(!body.to_string().contains("disk full"));
    }

    #[actix_web::test]
    async fn unavailable_says_when_to_retry() {
        let response = Error::Unavailable {
            code: "database_unavailable",
            message: "try again".into(),
            retry_after_secs: 1,
        }
        .error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }

    #[test]
    fn html_pages_escape_what_they_show() {
        let page = Error::invalid("<b>name</b>", "has \"quotes\" & <tags>").html_page();
        assert!(page.contains("&lt;b&gt;name&lt;/b&gt;"));
        assert!(page.contains("has &quot;quotes&quot; &amp; &lt;tags&gt;"));
        assert!(!page.contains("<b>name"));
    }
}
