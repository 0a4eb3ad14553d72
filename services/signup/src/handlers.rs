//! Signup's routes: each reads its input ([`Input`]), checks it into domain types
//! (`domain`), acts in one transaction (`store`) and answers with a page (`pages`) or
//! JSON; refusals are `errors::SignupError`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_auth::{ClientOrigin, EvenTime};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::html::respond as html;
use flotilla_kit::input::{Input, Then};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    EmailAddress, NewAccount, ResendInput, SignupInput, VerifyInput, plausible_token,
};
use crate::errors::SignupError;
use crate::store::{self, Registered, Verified};
use crate::{Signup, pages};
use flotilla_accounts::email_link::Link;

/// What is busy when the hashing pool is full.
const BUSY: &str = "accounts are being created";

/// What became of a request: `{"status": …}`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `verification_sent` (a signup or resend, whatever became of it), `valid` (a
    /// link that can be used), `verified` (the link was used).
    #[schema(example = "verification_sent")]
    pub status: &'static str,
}

/// The answer to a signup or a resend, whatever became of it.
fn sent<T>(input: &Input<T>) -> HttpResponse {
    let status = Status {
        status: "verification_sent",
    };
    let then = || Then::SeeOther("/signup/check-email".into());
    input.reply(StatusCode::ACCEPTED, &status, then)
}

/// The signup form.
#[utoipa::path(get, path = "/signup", tag = "signup",
    responses((status = 200, description = "The signup form.", content_type = "text/html", body = String)))]
pub async fn form() -> HttpResponse {
    html(
        StatusCode::OK,
        pages::signup_form(&SignupInput::default(), &FieldErrors::new()),
    )
}

/// "Check your email", where a signup's form post lands.
#[utoipa::path(get, path = "/signup/check-email", tag = "signup",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)))]
pub async fn check_email() -> HttpResponse {
    html(StatusCode::OK, pages::check_email())
}

/// Creates an account and mails its verification link. An address that already has
/// an account gets the same answer, and its owner a mail saying someone tried.
#[utoipa::path(post, path = "/signup", tag = "signup",
    request_body(content(
        (SignupInput = "application/json"),
        (SignupInput = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 202, description = "The link is on its way (or the address's owner is told).", body = Status),
        (status = 303, description = "A form post: on to `/signup/check-email`.",
            headers(("Location" = String))),
        (status = 409, description = "`username_taken`.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: each wrong field named (a form \
            post gets the form again).", body = ErrorBody),
        (status = 429, description = "`rate_limited`, from nginx: too many signups and \
            sign-in attempts from this address (`FLOTILLA_PROXY_AUTH_RATE`).",
            body = ErrorBody),
        (status = 503, description = "`busy`: too many passwords being hashed, or the \
            database is unavailable.", body = ErrorBody),
    ))]
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

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// The token of the verification mail's link.
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
#[utoipa::path(get, path = "/signup/verify", tag = "signup",
    params(VerifyQuery),
    responses(
        (status = 200, description = "A browser: the page whose button uses the link. \
            An API client: `{\"status\":\"valid\"}`.", content(
            (Status = "application/json"),
            (String = "text/html"),
        )),
        (status = 400, description = "`token_invalid` or `token_expired` (a page for \
            a browser).", body = ErrorBody),
    ))]
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
        Link::Valid { .. } => return Ok(HttpResponse::Ok().json(Status { status: "valid" })),
        Link::Invalid => SignupError::LinkInvalid,
        Link::Expired => SignupError::LinkExpired,
    };
    Err(link_refused(refusal, browser))
}

/// Uses a verification link's token: the page's form, or JSON `{"token"}`.
#[utoipa::path(post, path = "/signup/verify", tag = "signup",
    request_body(content(
        (VerifyInput = "application/json"),
        (VerifyInput = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The address is verified: `{\"status\":\"verified\"}`, \
            or a page for the form.", content(
            (Status = "application/json"),
            (String = "text/html"),
        )),
        (status = 400, description = "`token_invalid` or `token_expired`.", body = ErrorBody),
        (status = 403, description = "`cross_origin`: a browser's post from another site.",
            body = ErrorBody),
    ))]
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
            let status = Status { status: "verified" };
            return Ok(input.reply(StatusCode::OK, &status, || Then::Page(pages::verified())));
        }
        Verified::Invalid => SignupError::LinkInvalid,
        Verified::Expired => SignupError::LinkExpired,
    };
    let page = |_: &VerifyInput, _: &Error| pages::link_problem(refusal.message());
    Err(input.refuse(refusal.into(), page))
}

/// The form that asks for a new verification link.
#[utoipa::path(get, path = "/signup/resend", tag = "signup",
    responses((status = 200, description = "The form.", content_type = "text/html", body = String)))]
pub async fn resend_form() -> HttpResponse {
    html(StatusCode::OK, pages::resend_form("", None))
}

/// A new verification link for an unverified address, at most one a minute; the same
/// answer whether or not the address has an account.
#[utoipa::path(post, path = "/signup/resend", tag = "signup",
    request_body(content(
        (ResendInput = "application/json"),
        (ResendInput = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 202, description = "A link is on its way if the address is waiting for one.",
            body = Status),
        (status = 303, description = "A form post: on to `/signup/check-email`.",
            headers(("Location" = String))),
        (status = 422, description = "`invalid_input`: the address.", body = ErrorBody),
    ))]
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
