//! The life of a route that answers forms and JSON alike, in three steps:
//!
//! 1. [`Input<T>`] (an extractor) reads the body, JSON or urlencoded, into the route's
//!    raw fields `T` (415 for another content type, 400 for a body that does not
//!    parse, 422 naming a field the route does not take);
//! 2. [`Input::parse`] turns the raw fields into the route's domain type with the
//!    route's own check; each field that is wrong is named in a 422, and a browser
//!    sees its form again with each message beside its field. [`Input::refuse`] does
//!    the same for any later refusal (a wrong password, a name taken);
//! 3. [`Input::reply`] answers success: JSON for API clients, a page or a redirect for
//!    a form.
//!
//! A handler thus reads top to bottom: its input, its checks, its one transaction, its
//! answer; the form-or-JSON branching lives here.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::body::{BodyFormat, read_body};

/// A request body read as JSON or as a form, before any check.
#[derive(Debug)]
pub struct Input<T> {
    format: BodyFormat,
    raw: T,
}

/// What a form post is answered with on success.
#[derive(Debug)]
pub enum Then {
    /// `303 See Other` to this address (post, redirect, get).
    SeeOther(String),
    /// A page, with the reply's status.
    Page(String),
}

impl<T> Input<T> {
    pub fn new(format: BodyFormat, raw: T) -> Self {
        Self { format, raw }
    }

    pub fn format(&self) -> BodyFormat {
        self.format
    }

    /// The fields as sent.
    pub fn raw(&self) -> &T {
        &self.raw
    }

    /// Whether a browser's form sent it (it is answered with pages).
    pub fn is_form(&self) -> bool {
        self.format == BodyFormat::Form
    }

    /// The route's domain value, or the 422 that names each wrong field; a form is shown
    /// again by `form` (given the raw fields and the error).
    pub fn parse<V, E>(
        &self,
        check: impl FnOnce(&T) -> Result<V, E>,
        form: impl FnOnce(&T, &Error) -> String,
    ) -> Result<V, Error>
    where
        E: Into<Error>,
    {
        check(&self.raw).map_err(|e| self.refuse(e.into(), form))
    }

    /// `error` as the answer: as it is to an API client; to a form, the form again
    /// (`form`, given the raw fields and the error) with the error's status and
    /// `Retry-After`.
    pub fn refuse(&self, error: Error, form: impl FnOnce(&T, &Error) -> String) -> Error {
        match self.format {
            BodyFormat::Json => error,
            BodyFormat::Form => {
                let page = form(&self.raw, &error);
                error.with_page(page)
            }
        }
    }

    /// Success: `json` with `status` to an API client; to a form, what `then` says
    /// (called only for a form, so an API client's answer renders no page).
    pub fn reply(
        &self,
        status: StatusCode,
        json: &impl Serialize,
        then: impl FnOnce() -> Then,
    ) -> HttpResponse {
        match self.format {
            BodyFormat::Json => HttpResponse::build(status).json(json),
            BodyFormat::Form => match then() {
                Then::SeeOther(location) => crate::html::see_other(&location),
                Then::Page(page) => crate::html::respond(status, page),
            },
        }
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Input<T> {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|e| Error::unread_body(e, &req))?;
            let (format, raw) = read_body(&req, &body)?;
            Ok(Self { format, raw })
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;
    use actix_web::http::header;
    use actix_web::test::TestRequest;
    use actix_web::{App, ResponseError, web};

    use super::*;
    use crate::FieldErrors;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(default)]
        name: String,
    }

    fn named(raw: &Raw) -> Result<String, Error> {
        match raw.name.trim() {
            "" => Err(Error::invalid("name", "is required")),
            name => Ok(name.to_owned()),
        }
    }

    fn form(raw: &Raw, error: &Error) -> String {
        let empty = FieldErrors::new();
        format!("form {:?} {:?}", raw.name, error.fields().unwrap_or(&empty))
    }

    async fn route(input: Input<Raw>) -> Result<HttpResponse, Error> {
        let name = input.parse(named, form)?;
        if name == "taken" {
            let taken = Error::Conflict {
                code: "name_taken",
                fields: FieldErrors::from([("name".into(), "is taken".into())]),
            };
            return Err(input.refuse(taken, form));
        }
        let page = format!("hello {name}");
        Ok(input.reply(
            StatusCode::CREATED,
            &serde_json::json!({ "name": name }),
            || Then::Page(page),
        ))
    }

    async fn call(content_type: &str, body: &'static str) -> (StatusCode, String) {
        let app = actix_web::test::init_service(App::new().route("/", web::post().to(route))).await;
        let req = TestRequest::post()
            .uri("/")
            .insert_header((header::CONTENT_TYPE, content_type))
            .set_payload(body)
            .to_request();
        let res = actix_web::test::call_service(&app, req).await;
        let status = res.status();
        let body = to_bytes(res.into_body()).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[actix_web::test]
    async fn json_gets_json_and_a_form_gets_its_page_again() {
        const JSON: &str = "application/json";
        const FORM: &str = "application/x-www-form-urlencoded";
        let (status, body) = call(JSON, r#"{"name":"ada"}"#).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::CREATED, r#"{"name":"ada"}"#)
        );
        let (status, body) = call(FORM, "name=ada").await;
        assert_eq!((status, body.as_str()), (StatusCode::CREATED, "hello ada"));

        let (status, body) = call(JSON, r#"{"name":" "}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains(r#""fields":{"name":"is required"}"#),
            "{body}"
        );
        let (status, body) = call(FORM, "name=+").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body, r#"form " " {"name": "is required"}"#);

        let (status, body) = call(FORM, "name=taken").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, r#"form "taken" {"name": "is taken"}"#);

        // What the body reader refuses is refused before any check, pages or not.
        let (status, body) = call(FORM, "name=ada&role=admin").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains(r#""role":"is not a field of this request""#),
            "{body}"
        );
        assert_eq!(
            call("text/plain", "x").await.0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn a_page_carries_the_status_and_retry_after_of_its_error() {
        let error = Error::TooManyRequests {
            code: "too_many_attempts",
            message: "wait".into(),
            retry_after_secs: 7,
        }
        .with_page("again".into());
        assert_eq!(error.code(), "too_many_attempts");
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "7");
        assert!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(error.html_page(), "again");
        // A fault of ours is never dressed as the form.
        let fault = Error::Internal(anyhow::anyhow!("disk full")).with_page("form".into());
        assert_eq!(fault.code(), "internal_error");
    }
}
