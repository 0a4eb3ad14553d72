//! Signup's routes: each reads its input ([`Input`]), checks it into domain types
//! (`domain`), acts in one transaction (`store`) and answers with a page (`pages`) or
//! JSON; refusals are `errors::SignupError`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_auth::{ClientOrigin, EvenTime};
use flotilla_kit::html::respond as html;
use flotilla_kit::input::{Input, Then};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, State};
use serde_json::json;

use crate::domain::{
    EmailAddress, NewAccount, ResendInput, SignupInput, VerifyInput, plausible_token,
};
use crate::errors::SignupError;
use crate::store::{self, Registered, Verified};
use crate::{Signup, pages};
use flotilla_accounts::email_link::Link;

/// What is busy when the hashing pool is full.
const BUSY: &str = "accounts are being created";

/// The answer to a signup or a resend, whatever became of it.
fn sent<T>(input: &Input<T>) -> HttpResponse {
    let status = json!({"status": "verification_sent"});
    let then = || Then::SeeOther("/signup/check-email".into());
    input.reply(StatusCode::ACCEPTED, &status, then)
}

pub async fn form() -> HttpResponse {
    html(
        StatusCode::OK,
        pages::signup_form(&SignupInput::default(), &FieldErrors::new()),
    )
}

pub async fn check_email() -> HttpResponse {
    html(StatusCode::OK, pages::check_email())
}

pub async fn create(
    input: Input<SignupInput>,
    state: web::Data<State>,
    signup: web::Data<Signup>,
) -> Result<HttpResponse, Error> {
    let policy = &signup.config.passwords.policy;
    let account = input.parse(|raw| NewAccount::parse(raw, policy), pages::signup_again)?;
    // Hashed whether or not the address is new, so both answers take as long.
    let password = account.password.clone();
    let password_hash = signup
        .hashes
        .hash(password)
        .await
        .map_err(|e| e.answer(BUSY))?;
    let config = signup.config.clone();
    let registered = blocking(&state, move |conn| {
        store::register(conn, &config, &account, &password_hash)
    })
    .await?;
    match registered {
        Registered::New | Registered::Existing => {
            signup.wake.wake("email");
            Ok(sent(&input))
        }
        Registered::UsernameTaken => {
            Err(input.refuse(SignupError::UsernameTaken.into(), pages::signup_again))
        }
    }
}

#[derive(serde::Deserialize)]
pub struct VerifyQuery {
    token: Option<String>,
}

/// A link that does not work, as a page for a browser or an error for a client.
fn link_refused(refusal: SignupError, browser: bool) -> Error {
    let page = || pages::link_problem(refusal.message());
    Error::from(refusal).for_browser(browser, page)
}

/// Opening a verification link: a page with a button that posts the token (or `200
/// {"status":"valid"}`); nothing is spent, so a mail scanner that follows the link
/// confirms nothing.
pub async fn verify_page(
    req: HttpRequest,
    query: web::Query<VerifyQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let browser = wants_html(req.headers());
    let Some(token) = query.token.as_deref().and_then(plausible_token) else {
        return Err(link_refused(SignupError::LinkInvalid, browser));
    };
    let hash = flotilla_auth::token_hash(token);
    let refusal = match read(&state, move |conn| store::check(conn, &hash)).await? {
        Link::Valid { .. } if browser => {
            return Ok(html(StatusCode::OK, pages::verify_form(token)));
        }
        Link::Valid { .. } => return Ok(HttpResponse::Ok().json(json!({"status": "valid"}))),
        Link::Invalid => SignupError::LinkInvalid,
        Link::Expired => SignupError::LinkExpired,
    };
    Err(link_refused(refusal, browser))
}

/// Uses a verification link's token: the page's form, or JSON `{"token"}`.
pub async fn verify(
    input: Input<VerifyInput>,
    req: HttpRequest,
    state: web::Data<State>,
    signup: web::Data<Signup>,
) -> Result<HttpResponse, Error> {
    // Only this site's page (or a client that is no browser) spends a link.
    flotilla_auth::same_origin(&signup.config.public_url, &req, false)?;
    let outcome = match input.raw().token() {
        Some(token) => {
            let hash = flotilla_auth::token_hash(token);
            blocking(&state, move |conn| store::verify(conn, &hash)).await?
        }
        None => Verified::Invalid,
    };
    let refusal = match outcome {
        Verified::Done => {
            let status = json!({"status": "verified"});
            return Ok(input.reply(StatusCode::OK, &status, || Then::Page(pages::verified())));
        }
        Verified::Invalid => SignupError::LinkInvalid,
        Verified::Expired => SignupError::LinkExpired,
    };
    let page = |_: &VerifyInput, _: &Error| pages::link_problem(refusal.message());
    Err(input.refuse(refusal.into(), page))
}

pub async fn resend_form() -> HttpResponse {
    html(StatusCode::OK, pages::resend_form("", None))
}

pub async fn resend(
    input: Input<ResendInput>,
    ClientOrigin(from): ClientOrigin,
    state: web::Data<State>,
    signup: web::Data<Signup>,
) -> Result<HttpResponse, Error> {
    let even = EvenTime::start();
    let email = input.parse(
        |raw| EmailAddress::parse(&raw.email).map_err(|problem| Error::invalid("email", problem)),
        pages::resend_again,
    )?;
    let config = signup.config.clone();
    blocking(&state, move |conn| {
        store::resend(conn, &config, &email, &from)
    })
    .await?;
    // The worker is woken whether or not a mail was queued (a pass that finds nothing
    // is cheap), so that its work next to this answer does not tell either.
    signup.wake.wake("email");
    // No sooner whether or not the address has an account.
    even.finish().await;
    Ok(sent(&input))
}
