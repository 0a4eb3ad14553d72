//! Property tests of the kit's reading of request bodies, query strings and paths:
//! whatever bytes and content type a client sends, the answer is the route's value or
//! a 4xx with a specific code (`{"error": …}`), never a panic or a 500; fields read
//! back as sent, as JSON and as a form; a field the route does not take is named.

use actix_web::body::to_bytes;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse, ResponseError, web};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};
use serde::{Deserialize, Serialize};

use crate::body::{BodyFormat, read_body};
use crate::error::{path_error, query_error};
use crate::input::{Input, Then};
use crate::{Error, FieldErrors};

const CASES: u32 = 256;
/// actix-web's body limit when the app sets none (the kit's apps set
/// `FLOTILLA_MAX_BODY_BYTES`, read in the same place).
const DEFAULT_LIMIT: usize = 262_144;

/// A route's raw fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    name: String,
    #[serde(default)]
    note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
}

const FIELDS: [&str; 3] = ["name", "note", "count"];

fn text() -> impl Strategy<Value = String> {
    let char = prop_oneof![
        3 => any::<char>(),
        1 => prop::sample::select(vec![
            '\0', '\r', '\n', '"', '\\', '&', '=', '+', '%', '`', ' ', ';', '{', '}', 'é', '😀',
        ]),
    ];
    prop::collection::vec(char, 0..30).prop_map(String::from_iter)
}

fn raw() -> impl Strategy<Value = Raw> {
    (text(), text(), prop::option::of(any::<u32>())).prop_map(|(name, note, count)| Raw {
        name,
        note,
        count,
    })
}

/// Content types: the two read, their variants (case, parameters, spaces), others,
/// and arbitrary bytes (possibly no text at all).
fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop_oneof![
        3 => prop::sample::select(vec![
            "application/json",
            "application/x-www-form-urlencoded",
            "Application/JSON; charset=utf-8",
            " application/x-www-form-urlencoded ; charset=UTF-8",
            "application/json;",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json-patch+json",
            "application/jsonx",
            ";application/json",
            "",
        ])
        .prop_map(|t| t.as_bytes().to_vec()),
        1 => any::<Vec<u8>>(),
        1 => text().prop_map(String::into_bytes),
    ])
}

/// Bodies: arbitrary bytes, JSON and forms of the fields (some with a field too many
/// or of the wrong type), fragments, now and then large.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => any::<Vec<u8>>(),
        2 => raw().prop_map(|r| serde_json::to_vec(&r).unwrap_or_default()),
        2 => raw().prop_map(|r| serde_urlencoded::to_string(&r).unwrap_or_default().into_bytes()),
        1 => (text(), text()).prop_map(|(k, v)| serde_json::json!({ k: v }).to_string().into_bytes()),
        1 => (text(), text()).prop_map(|(k, v)| {
            serde_urlencoded::to_string([(k, v)]).unwrap_or_default().into_bytes()
        }),
        1 => prop::sample::select(vec![
            "", "{", "}", "[]", "null", "1", "\"x\"", "{\"name\":1}", "{\"count\":-1}",
            "{\"count\":\"1\"}", "{\"name\":\"a\",\"name\":\"b\"}", "count=x", "count=-1",
            "name=%zz", "name=%FF%FE", "=&=&", "name", "a=1&a=2", "\u{feff}{}",
            "{\"name\":\"\\ud800\"}",
        ])
        .prop_map(|b| b.as_bytes().to_vec()),
        1 => (prop::collection::vec(any::<u8>(), 1..8), 1..2000usize)
            .prop_map(|(piece, times)| piece.repeat(times)),
    ]
}

fn request(content_type: &Option<Vec<u8>>) -> TestRequest {
    let req = TestRequest::post().uri("/");
    match content_type
        .as_ref()
        .and_then(|t| HeaderValue::from_bytes(t).ok())
    {
        Some(value) => req.insert_header((header::CONTENT_TYPE, value)),
        None => req,
    }
}

/// The format a content type asks for, as the kit reads it: the part before any `;`,
/// trimmed, in any case; `None` for anything else (or a value that is no text).
fn format_of(req: &actix_web::HttpRequest) -> Option<BodyFormat> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Some(BodyFormat::Json),
        "application/x-www-form-urlencoded" => Some(BodyFormat::Form),
        _ => None,
    }
}

fn unknown(field: &str) -> FieldErrors {
    FieldErrors::from([(
        field.to_owned(),
        "is not a field of this request".to_owned(),
    )])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn a_body_is_read_or_refused_with_a_4xx_and_its_code(
        content_type in content_type(),
        body in body(),
    ) {
        let req = request(&content_type).to_http_request();
        let format = format_of(&req);
        match read_body::<Raw>(&req, &body) {
            Ok((read, _)) => prop_assert_eq!(Some(read), format),
            Err(error) => {
                let expected = match format {
                    None => "unsupported_media_type",
                    Some(BodyFormat::Json) => "malformed_json",
                    Some(BodyFormat::Form) => "malformed_form",
                };
                match error.fields() {
                    // A field the route does not take: named, alone, in a 422.
                    Some(fields) => {
                        prop_assert_eq!(error.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
                        prop_assert_eq!(fields.len(), 1);
                        let (name, problem) = fields.iter().next().unwrap();
                        prop_assert!(!FIELDS.contains(&name.as_str()), "{:?}", name);
                        prop_assert_eq!(problem, "is not a field of this request");
                    }
                    None => prop_assert_eq!(error.code(), expected, "{}", error),
                }
                prop_assert!(error.status_code().is_client_error());
            }
        }
    }

    #[test]
    fn fields_read_back_as_json_and_as_a_form(raw in raw()) {
        for (content_type, body, format) in [
            ("application/json", serde_json::to_vec(&raw).unwrap(), BodyFormat::Json),
            (
                "application/x-www-form-urlencoded",
                serde_urlencoded::to_string(&raw).unwrap().into_bytes(),
                BodyFormat::Form,
            ),
        ] {
            let req = request(&Some(content_type.as_bytes().to_vec())).to_http_request();
            let read = read_body::<Raw>(&req, &body).map_err(|e| e.to_string());
            prop_assert_eq!(read, Ok((format, raw.clone())));
        }
    }

    #[test]
    fn a_field_the_route_does_not_take_is_named_in_a_422(
        raw in raw(),
        field in text().prop_filter("not a field", |f| !FIELDS.contains(&f.as_str())),
        value in text(),
    ) {
        let mut json = serde_json::to_value(&raw).unwrap();
        json[&field] = value.clone().into();
        let mut form: Vec<(String, String)> =
            serde_urlencoded::from_str(&serde_urlencoded::to_string(&raw).unwrap()).unwrap();
        form.push((field.clone(), value));
        for (content_type, body) in [
            ("application/json", json.to_string().into_bytes()),
            (
                "application/x-www-form-urlencoded",
                serde_urlencoded::to_string(&form).unwrap().into_bytes(),
            ),
        ] {
            let req = request(&Some(content_type.as_bytes().to_vec())).to_http_request();
            let error = read_body::<Raw>(&req, &body).err();
            prop_assert_eq!(
                error.as_ref().and_then(Error::fields),
                Some(&unknown(&field)),
                "{}: {:?}", content_type, error.as_ref().map(Error::to_string)
            );
        }
    }
}

// ------------------------------------------------------------- through an app

async fn route(input: Input<Raw>) -> Result<HttpResponse, Error> {
    let name = input.parse(
        |raw| match raw.name.trim() {
            "" => Err(Error::invalid("name", "is required")),
            name => Ok(name.to_owned()),
        },
        |raw, _| format!("form {:?}", raw.name),
    )?;
    Ok(input.reply(
        StatusCode::CREATED,
        &serde_json::json!({ "name": name }),
        || Then::Page(format!("hello {name}")),
    ))
}

#[derive(Deserialize)]
struct Search {
    #[allow(dead_code)]
    q: String,
    #[allow(dead_code)]
    limit: Option<u32>,
}

async fn search(_: web::Query<Search>) -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn item(id: web::Path<i64>) -> HttpResponse {
    HttpResponse::Ok().body(id.to_string())
}

async fn named(name: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().body(name.into_inner())
}

/// The codes an answer may carry, by status: every refusal is one of these.
fn code_for(status: StatusCode) -> &'static [&'static str] {
    match status.as_u16() {
        400 => &["malformed_json", "malformed_form", "malformed_query"],
        404 => &["not_found"],
        413 => &["payload_too_large"],
        415 => &["unsupported_media_type"],
        422 => &["invalid_input"],
        _ => &[],
    }
}

/// Runs `check` on `CASES` generated inputs, each on a fresh app with the kit's
/// extractor settings (as `Application::build` makes them, with actix's default body
/// limit).
fn through_the_app<S: Strategy>(
    strategy: S,
    check: impl Fn(S::Value) -> std::pin::Pin<Box<dyn Future<Output = Result<(), TestCaseError>>>>,
) {
    let system = actix_web::rt::System::new();
    let mut runner = TestRunner::new(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/proptests-app.txt",
        ))),
        ..ProptestConfig::with_cases(CASES)
    });
    let result = runner.run(&strategy, |value| system.block_on(check(value)));
    result.unwrap();
}

async fn call(req: TestRequest) -> (StatusCode, serde_json::Value, String) {
    let app = test::init_service(
        App::new()
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .route("/", web::post().to(route))
            .route("/search", web::get().to(search))
            .route("/items/{id}", web::get().to(item))
            .route("/names/{name}", web::get().to(named))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(Error::NotFound)
            })),
    )
    .await;
    let res = test::call_service(&app, req.to_request()).await;
    let status = res.status();
    let bytes = to_bytes(res.into_body()).await.unwrap_or_default();
    let json = serde_json::from_slice(&bytes).unwrap_or_default();
    (status, json, String::from_utf8_lossy(&bytes).into_owned())
}

/// A body at the limit or past it: a piece repeated to `DEFAULT_LIMIT - 1 + more`
/// bytes (made in the test, so that a failure prints the piece, not the body).
fn large() -> impl Strategy<Value = Option<(Vec<u8>, usize)>> {
    prop::option::weighted(0.1, (prop::collection::vec(any::<u8>(), 1..8), 0usize..3))
}

#[test]
fn a_route_answers_any_body_with_its_value_or_a_4xx_and_its_code() {
    through_the_app(
        (content_type(), body(), large()),
        |(content_type, body, large)| {
            let body = match large {
                Some((piece, more)) => {
                    let mut body = piece.repeat(DEFAULT_LIMIT / piece.len() + 1);
                    body.truncate(DEFAULT_LIMIT - 1 + more);
                    body
                }
                None => body,
            };
            Box::pin(async move {
                let format = format_of(&request(&content_type).to_http_request());
                let size = body.len();
                let req = request(&content_type).set_payload(body);
                let (status, json, text) = call(req).await;
                if status == StatusCode::CREATED {
                    prop_assert!(format.is_some() && size <= DEFAULT_LIMIT);
                    return Ok(());
                }
                prop_assert!(status.is_client_error(), "{} {}", status, text);
                if size > DEFAULT_LIMIT {
                    prop_assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", text);
                    prop_assert!(text.contains("262144 bytes"), "{}", text);
                }
                // The route's refusal of a form's fields is the form again; what the body
                // reader refuses, before any check, is JSON.
                if format == Some(BodyFormat::Form)
                    && status == StatusCode::UNPROCESSABLE_ENTITY
                    && text.starts_with("form ")
                {
                    return Ok(());
                }
                let code = json["error"].as_str().unwrap_or_default();
                prop_assert!(code_for(status).contains(&code), "{} {}", status, text);
                Ok(())
            })
        },
    );
}

/// `bytes` as a URL's path segment or query value: unreserved characters as they are,
/// the rest percent-encoded, except (now and then) a `%`, `&`, `=` or `+` left raw.
fn url_part() -> impl Strategy<Value = String> {
    let byte = prop_oneof![
        6 => any::<u8>().prop_map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        }),
        1 => prop::sample::select(vec!["%", "%z", "&", "=", "+", "-", "1", "9"])
            .prop_map(str::to_owned),
        2 => prop::char::range('0', '9').prop_map(String::from),
    ];
    prop::collection::vec(byte, 0..30).prop_map(|parts| parts.concat())
}

#[test]
fn query_strings_and_paths_are_read_or_refused_with_their_code() {
    let strategy = (
        url_part(),
        url_part(),
        url_part(),
        prop::collection::vec(url_part(), 0..3),
    );
    through_the_app(strategy, |(q, limit, id, extra)| {
        Box::pin(async move {
            let mut query = format!("q={q}&limit={limit}");
            for pair in extra {
                query.push('&');
                query.push_str(&pair);
            }
            for uri in [
                format!("/search?{query}"),
                format!("/items/{id}"),
                format!("/names/{id}"),
            ] {
                prop_assume!(uri.parse::<actix_web::http::Uri>().is_ok());
                let (status, json, text) = call(TestRequest::get().uri(&uri)).await;
                if status == StatusCode::OK {
                    continue;
                }
                let expected = match uri.starts_with("/search") {
                    true => StatusCode::BAD_REQUEST,
                    false => StatusCode::NOT_FOUND,
                };
                prop_assert_eq!(status, expected, "{} {}", uri, text);
                let code = json["error"].as_str().unwrap_or_default();
                prop_assert!(
                    code_for(status).contains(&code),
                    "{} {} {}",
                    uri,
                    status,
                    text
                );
            }
            Ok(())
        })
    });
}
