//! Signup's routes. Each turns its input into domain types first, then acts.

use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_kit::body::{BodyFormat as Format, read_body};
use flotilla_kit::html::{respond as html, see_other};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::blocking;
use flotilla_kit::{Error, FieldErrors, State};

use crate::domain::{EmailAddress, NewAccount, ResendInput, SignupInput};
use crate::store::{self, Registered, Verified};
use crate::{Signup, pages};

fn sent(format: Format) -> HttpResponse {
    match format {
        Format::Json => {
            HttpResponse::Accepted().json(serde_json::json!({"status": "verification_sent"}))
        }
        Format::Form => see_other("/signup/check-email"),
    }
}

/// What is busy when the hashing pool is full.
const BUSY: &str = "accounts are being created";

pub async fn form() -> HttpResponse {
    html(
        actix_web::http::StatusCode::OK,
        pages::signup_form("", "", &FieldErrors::new()),
    )
}

pub async fn check_email() -> HttpResponse {
    html(actix_web::http::StatusCode::OK, pages::check_email())
}

pub async fn create(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    signup: web::Data<Signup>,
) -> Result<HttpResponse, Error> {
    let (format, input): (_, SignupInput) = read_body(&req, &body)?;
    let account = match NewAccount::parse(&input, &signup.config.passwords.policy) {
        Ok(account) => account,
        Err(fields) if format == Format::Form => {
            let page = pages::signup_form(
                &input.email,
                input.username.as_deref().unwrap_or(""),
                &fields,
            );
            return Ok(html(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                page,
            ));
        }
        Err(fields) => return Err(Error::Invalid(fields)),
    };
    // Hashed whether or not the address is new, so both answers take as long.
    let password_hash = signup
        .hashes
        .hash(account.password.clone())
        .await
        .map_err(|e| e.answer(BUSY))?;
    let config = signup.config.clone();
    let username = account
        .username
        .as_ref()
        .map(|u| u.as_ref().to_owned())
        .unwrap_or_default();
    let registered = blocking(&state, move |conn| {
        store::register(conn, &config, &account, &password_hash)
    })
    .await?;
    match registered {
        Registered::New | Registered::Existing => {
            signup.wake.wake("email");
            Ok(sent(format))
        }
        Registered::UsernameTaken => {
            let fields =
                FieldErrors::from([("username".to_owned(), "is taken; choose another".to_owned())]);
            if format == Format::Form {
                let page = pages::signup_form(&input.email, &username, &fields);
                return Ok(html(actix_web::http::StatusCode::CONFLICT, page));
            }
            Err(Error::Conflict {
                code: "username_taken",
                fields,
            })
        }
    }
}

#[derive(serde::Deserialize)]
pub struct VerifyQuery {
    token: Option<String>,
}

pub async fn verify(
    req: HttpRequest,
    query: web::Query<VerifyQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let browser = wants_html(req.headers());
    let token = query.token.as_deref().map(str::trim).unwrap_or("");
    let outcome = if token.is_empty() || token.len() > 128 {
        Verified::Invalid
    } else {
        let hash = flotilla_auth::token_hash(token);
        blocking(&state, move |conn| store::verify(conn, &hash)).await?
    };
    let (code, message) = match outcome {
        Verified::Done if browser => {
            return Ok(html(actix_web::http::StatusCode::OK, pages::verified()));
        }
        Verified::Done => {
            return Ok(HttpResponse::Ok().json(serde_json::json!({"status": "verified"})));
        }
        Verified::Invalid => (
            "token_invalid",
            "This verification link is not valid: it may have been used already or mistyped. \
             Ask for a new one at /signup/resend.",
        ),
        Verified::Expired => (
            "token_expired",
            "This verification link has expired. Ask for a new one at /signup/resend.",
        ),
    };
    if browser {
        return Ok(html(
            actix_web::http::StatusCode::BAD_REQUEST,
            pages::link_problem(message),
        ));
    }
    Err(Error::BadRequest {
        code,
        message: message.to_owned(),
    })
}

pub async fn resend_form() -> HttpResponse {
    html(
        actix_web::http::StatusCode::OK,
        pages::resend_form("", None),
    )
}

pub async fn resend(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    signup: web::Data<Signup>,
) -> Result<HttpResponse, Error> {
    let (format, input): (_, ResendInput) = read_body(&req, &body)?;
    let email = match EmailAddress::parse(&input.email) {
        Ok(email) => email,
        Err(problem) if format == Format::Form => {
            let page = pages::resend_form(&input.email, Some(&problem));
            return Ok(html(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                page,
            ));
        }
        Err(problem) => return Err(Error::invalid("email", problem)),
    };
    let config = signup.config.clone();
    let queued = blocking(&state, move |conn| store::resend(conn, &config, &email)).await?;
    if queued {
        signup.wake.wake("email");
    }
    Ok(sent(format))
}
