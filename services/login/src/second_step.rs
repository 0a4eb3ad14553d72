//! The second step of a sign-in, for an account with a second factor. The password
//! step ([`begin`]) opens no session: it leaves a short-lived, single-use step (a row
//! keyed by a token's hash; the browser holds the token in a cookie, an API client in
//! the answer's `second_step_token`). `POST /login/second-step` takes a code from the
//! authenticator app, or a recovery code, and opens the session with its `amr`
//! (`pwd otp mfa`, or `pwd rc mfa`).
//!
//! Wrong codes count like wrong passwords: per account and known device
//! ([`SecondFactors::sign_in_key`]), delayed after `FLOTILLA_LOGIN_MAX_FAILURES`; and a
//! step ends after [`store::SECOND_STEP_TRIES`] of them, or [`store::SECOND_STEP_TTL`],
//! so the password must be typed again.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_accounts::User;
use flotilla_accounts::{ChallengePurpose, FactorKinds};
use flotilla_auth::second_factor::Attempt;
use flotilla_auth::{FactorUsed, Proof, SecondFactors};
use flotilla_contracts::AuthEventKind;
use flotilla_kit::api::ErrorBody;
use flotilla_kit::body::BodyFormat as Format;
use flotilla_kit::html::{respond as html, see_other};
use flotilla_kit::input::Input;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, RequestContext, State};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::Login;
use crate::answers::{SecondFactorRequired, SignIn, Tokens};
use crate::domain::{SecondStepInput, plausible_token, safe_next};
use crate::errors::LoginError;
use crate::handlers::{count, devices, no_store, open_session, origin, refusal_of, signed_in};
use crate::pages;
use crate::store::{self, Opening};

/// Where a browser types its code.
pub const PATH: &str = "/login/second-step";

fn here(next: Option<&str>) -> String {
    match next {
        Some(next) => format!(
            "{PATH}?{}",
            serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
        ),
        None => PATH.to_owned(),
    }
}

/// A sign-in whose password was right, on an account with a second factor.
pub struct Step<'a> {
    pub account: &'a User,
    /// Where the password step counted.
    pub login_key: &'a str,
    /// The account's factors, as the password step read them.
    pub kinds: FactorKinds,
}

/// After a right password on an account with a second factor: the step's token, in a
/// cookie and (for an API client) the answer, and a browser sent to type its code.
pub async fn begin(
    state: &web::Data<State>,
    login: &Login,
    step: Step<'_>,
    format: Format,
    next: Option<String>,
) -> Result<HttpResponse, Error> {
    let (user, key, kinds) = (step.account.clone(), step.login_key.to_owned(), step.kinds);
    let token = blocking(state, move |conn| {
        store::begin_second_step(conn, &user, &key)
    })
    .await?;
    let mut methods = Vec::new();
    if kinds.totp {
        methods.push("totp");
    }
    if kinds.passkeys && login.factors.passkeys.enabled() {
        methods.push("passkey");
    }
    methods.push("recovery_code");
    count(state, "second_step");
    let ttl = store::SECOND_STEP_TTL.num_seconds();
    let cookie = login.auth.second_step_cookie(&token, ttl);
    let mut response =
        match format {
            Format::Json => no_store(HttpResponse::Ok()).cookie(cookie.clone()).json(
                SignIn::SecondFactorRequired(SecondFactorRequired {
                    expires_in: ttl,
                    methods,
                    second_step_token: token,
                    status: "second_factor_required",
                }),
            ),
            Format::Form => see_other(&here(next.as_deref())),
        };
    if format == Format::Form {
        // A cookie built here always has a valid header form.
        let _ = response.add_cookie(&cookie);
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(response)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormQuery {
    /// Where to go after signing in: a path of this site (default `/profile`).
    next: Option<String>,
}

/// The live step of the request's cookie, if any.
async fn step_of_cookie(
    req: &HttpRequest,
    state: &web::Data<State>,
    login: &Login,
) -> Result<Option<store::SecondStep>, Error> {
    let Some(cookie) = req.cookie(login.auth.second_step_cookie_name()) else {
        return Ok(None);
    };
    let token = cookie.value().to_owned();
    if !plausible_token(&token) {
        return Ok(None);
    }
    let hash = flotilla_auth::token_hash(&token);
    read(state, move |conn| store::second_step(conn, &hash)).await
}

/// The code form, while the browser has a live step; else back to the sign-in form.
#[utoipa::path(get, path = "/login/second-step", tag = "login",
    operation_id = "second_step_form",
    params(
        FormQuery,
        ("flotilla_second_step" = Option<String>, Cookie, description = "The step's cookie \
            (`__Secure-flotilla_second_step` over https), set by `POST /login`."),
    ),
    responses(
        (status = 200, description = "The code form (the authenticator app's six digits or \
            a recovery code) and, where the account has a passkey, \"Use a passkey\".",
            content_type = "text/html", body = String),
        (status = 303, description = "No live step: back to `/login` (with `next`).",
            headers(("Location" = String))),
        (status = 400, description = "`malformed_query`.", body = ErrorBody),
    ))]
pub async fn form(
    req: HttpRequest,
    query: web::Query<FormQuery>,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let next = safe_next(query.next.as_deref());
    let Some(step) = step_of_cookie(&req, &state, &login).await? else {
        let to = match &next {
            Some(next) => format!(
                "/login?{}",
                serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
            ),
            None => "/login".to_owned(),
        };
        return Ok(see_other(&to));
    };
    let passkeys = offers_passkeys(&state, &login, &step.user_id).await?;
    let page = pages::second_step_form(next.as_deref(), passkeys, None, &FieldErrors::new());
    Ok(html(StatusCode::OK, page))
}

/// Whether the page offers "Use a passkey": the site can have passkeys, and the
/// account has one.
async fn offers_passkeys(
    state: &web::Data<State>,
    login: &Login,
    user_id: &str,
) -> Result<bool, Error> {
    if !login.factors.passkeys.enabled() {
        return Ok(false);
    }
    let id = user_id.to_owned();
    let kinds = read(state, move |conn| FactorKinds::of(conn, &id)).await?;
    Ok(kinds.passkeys)
}

/// The session's `amr` after the password and `used`.
fn amr_after(used: FactorUsed) -> String {
    format!("{} {} mfa", store::PASSWORD_AMR, used.amr())
}

/// Finishes a sign-in with a code: the tokens (and the step spent), or the refusal.
#[utoipa::path(post, path = "/login/second-step", tag = "login",
    operation_id = "second_step",
    request_body(content(
        (SecondStepInput = "application/json"),
        (SecondStepInput = "application/x-www-form-urlencoded"),
    )),
    params(
        ("flotilla_second_step" = Option<String>, Cookie, description = "The step's cookie \
            (`__Secure-flotilla_second_step` over https), when the body has no \
            `second_step_token`."),
        ("flotilla_device" = Option<String>, Cookie, description = "The device cookie: a \
            browser that signed in to the account before counts its wrong codes apart."),
    ),
    responses(
        (status = 200, description = "Signed in, as `POST /login` answers: the tokens and \
            the cookies (the step's cleared); the session's `amr` `pwd otp mfa`, `pwd rc \
            mfa` (a recovery code) or `pwd hwk mfa`/`pwd swk mfa` (a passkey).",
            body = Tokens,
            headers(("Set-Cookie" = String, description = "The access, refresh and device \
                cookies; clears the step's."))),
        (status = 303, description = "A form post: on to a same-site `next` (default \
            `/profile`) with the cookies.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "`second_step_ended`: no step, or one older than five \
            minutes, used, at its fifth wrong code, or whose account changed its password or \
            was disabled: sign in again (a form gets the sign-in page).", body = ErrorBody),
        (status = 403, description = "`cross_origin_request`: a browser's post from another \
            site; `wrong_code`; `passkey_refused`: a passkey's answer that does not hold. A \
            form gets the form again.", body = ErrorBody),
        (status = 409, description = "`passkeys_unavailable`: a passkey's answer on a site \
            without passkeys.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: the code missing or malformed (or \
            `passkey` without `passkey_challenge`).", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many wrong codes for the \
            account (apart for a browser that signed in to it before), or too many being \
            checked at once; before any check.", body = ErrorBody),
    ))]
pub async fn finish(
    input: Input<SecondStepInput>,
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    login.auth.check_same_origin_with(&req, false)?;
    // A step that ended is begun again at the sign-in form.
    let ended = || {
        let error: Error = LoginError::SecondStepEnded.into();
        input.refuse(error, |typed: &SecondStepInput, error: &Error| {
            pages::sign_in_again(typed.next.as_deref(), error)
        })
    };
    let token = match input.raw().second_step_token.clone() {
        Some(token) => Some(token),
        None => req
            .cookie(login.auth.second_step_cookie_name())
            .map(|c| c.value().to_owned()),
    };
    let Some(token) = token.filter(|t| plausible_token(t)) else {
        return Err(ended());
    };
    let hash = flotilla_auth::token_hash(&token);
    let lookup = hash.clone();
    let step = read(&state, move |conn| store::second_step(conn, &lookup)).await?;
    let Some(step) = step else {
        return Err(ended());
    };
    let id = step.user_id.clone();
    let account = read(&state, move |conn| User::find_active(conn, &id)).await?;
    // Closed, disabled or given a new password since the password step.
    let Some(account) = account.filter(|a| step.same_password(a) && refusal_of(a).is_none()) else {
        return Err(ended());
    };
    let passkeys = offers_passkeys(&state, &login, &account.id).await?;
    let again =
        |typed: &SecondStepInput, error: &Error| pages::second_step_again(typed, passkeys, error);
    let refuse = |error: Error| input.refuse(error, again);
    let proof = input.parse(
        |raw| {
            Proof::read(
                Some(&raw.code),
                raw.passkey.as_deref(),
                raw.passkey_challenge.as_deref(),
            )
            .map_err(|(field, problem)| Error::invalid(field, problem))
        },
        again,
    )?;
    let who = origin(&req, &ctx);
    let devices = devices(&req, &login);
    let device = devices.iter().find(|d| d.user_id == account.id);
    let attempt = Attempt {
        key: SecondFactors::sign_in_key(&account.id, device.map(|d| d.key()).as_deref()),
        failure: AuthEventKind::LoginSecondFactorFailed,
        purpose: ChallengePurpose::SecondStep,
        session_id: None,
        from: who.clone(),
    };
    let used = match login.factors.check(&state, &account, proof, attempt).await {
        Ok(used) => used,
        Err(error) => {
            count(&state, "second_step_failure");
            if matches!(error.code(), "wrong_code" | "passkey_refused") {
                let spent = hash.clone();
                let alive =
                    blocking(&state, move |conn| store::second_step_failed(conn, &spent)).await?;
                if !alive {
                    return Err(ended());
                }
            }
            return Err(refuse(error));
        }
    };
    let opening = Opening {
        amr: amr_after(used),
        second_step: Some(hash),
    };
    let grant = open_session(&state, &login, account, step.login_key, opening, who).await?;
    let Some(grant) = grant else {
        // Finished by another request meanwhile, or the account changed.
        return Err(ended());
    };
    let next = safe_next(input.raw().next.as_deref());
    let mut response = signed_in(
        &state,
        &login,
        &grant,
        &devices,
        input.format(),
        next.as_deref(),
    )?;
    let _ = response.add_cookie(&login.auth.second_step_cookie("", 0));
    Ok(response)
}
