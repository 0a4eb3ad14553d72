//! Bodies that may come as JSON (API clients) or as a form (browsers without
//! JavaScript) on the same route. Routes that take only JSON use `web::Json`, whose
//! errors the kit maps the same way.

use actix_web::HttpRequest;
use actix_web::http::header;
use serde::de::DeserializeOwned;

use crate::Error;

/// How the body came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Form,
}

/// Reads a JSON or urlencoded body into `T`: 415 for any other content type; a field
/// `T` refuses (`deny_unknown_fields`) is named in a 422; 400 with the parser's reason
/// for any other body that does not fit `T`.
pub fn read_body<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<(BodyFormat, T), Error> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/json" => serde_json::from_slice(body)
            .map(|v| (BodyFormat::Json, v))
            .map_err(Error::malformed_json),
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(body)
            .map(|v| (BodyFormat::Form, v))
            .map_err(Error::malformed_form),
        _ => Err(Error::UnsupportedMediaType {
            expected: "application/json or application/x-www-form-urlencoded",
        }),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Input {
        email: String,
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        #[allow(dead_code)]
        email: String,
    }

    #[test]
    fn a_field_the_route_does_not_take_is_named_in_a_422() {
        for (content_type, body) in [
            (
                "application/json",
                &br#"{"email":"a@b.c","role":"admin"}"#[..],
            ),
            (
                "application/x-www-form-urlencoded",
                b"email=a%40b.c&role=admin",
            ),
        ] {
            let req = TestRequest::default()
                .insert_header((header::CONTENT_TYPE, content_type))
                .to_http_request();
            let err = read_body::<Strict>(&req, body).unwrap_err();
            assert_eq!(err.code(), "invalid_input", "{content_type}");
            assert_eq!(
                err.fields().unwrap()["role"],
                "is not a field of this request"
            );
        }
    }

    #[test]
    fn json_and_forms_read_alike_and_anything_else_is_refused() {
        let req = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
            .to_http_request();
        let (format, input): (_, Input) = read_body(&req, br#"{"email":"a@b.c"}"#).unwrap();
        assert_eq!((format, input.email.as_str()), (BodyFormat::Json, "a@b.c"));
        assert_eq!(
            read_body::<Input>(&req, b"{").unwrap_err().code(),
            "malformed_json"
        );

        let req = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .to_http_request();
        let (format, input): (_, Input) = read_body(&req, b"email=a%40b.c").unwrap();
        assert_eq!((format, input.email.as_str()), (BodyFormat::Form, "a@b.c"));
        assert_eq!(
            read_body::<Input>(&req, b"nothing=1").unwrap_err().code(),
            "malformed_form"
        );

        let req = TestRequest::default()
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .to_http_request();
        assert_eq!(
            read_body::<Input>(&req, b"x").unwrap_err().code(),
            "unsupported_media_type"
        );
    }
}
