//! Login's routes. Each checks its input first, then acts.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use flotilla_auth::{Auth, Authenticated, Claims, Credential};
use flotilla_contracts::AuthEventKind;
use flotilla_kit::body::{BodyFormat as Format, read_body};
use flotilla_kit::html::{respond as html, see_other};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::blocking;
use flotilla_kit::{Error, FieldErrors, RequestContext, State};
use serde::Deserialize;

use crate::Login;
use crate::domain::{
    ForgotInput, LoginInput, LogoutInput, RefreshInput, ResetInput, landing, plausible_token,
    safe_next,
};
use crate::pages::{self, Banner};
use crate::store::{self, Origin, Refreshed, Reset, SessionGrant};
use flotilla_accounts::email_link::Link;
use flotilla_auth::RequestOrigin;

/// Counts a sign-in outcome in `flotilla_logins_total{kind=…}`.
fn count(state: &State, outcome: &'static str) {
    state.metrics.count(
        "flotilla_logins_total",
        "Sign-in attempts by outcome.",
        outcome,
    );
}

/// What is busy when the hashing pool is full.
const BUSY: &str = "sign-ins are being checked";

fn origin(req: &HttpRequest, ctx: &RequestContext) -> Origin {
    Origin::of(req, ctx)
}

fn no_store(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder.insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

/// Signs an access token for a session and answers with both tokens: JSON for API
/// clients, a redirect for a form; cookies either way.
fn issue(
    login: &Login,
    grant: &SessionGrant,
    format: Format,
    next: Option<&str>,
) -> Result<HttpResponse, Error> {
    let settings = login.auth.settings();
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: grant.user_id.clone(),
        sid: grant.session_id.clone(),
        role: grant.role.clone(),
        email_verified: grant.verified,
        csrf: grant.csrf.clone(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + settings.ttl_secs,
    };
    let token = {
        let keys = login
            .keys
            .read()
            .map_err(|_| Error::Internal(anyhow::anyhow!("the key ring lock is poisoned")))?;
        let key = keys
            .current()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no signing key")))?;
        flotilla_auth::access_token::sign(key, &claims)?
    };
    let refresh_age = (grant.refresh_expires.and_utc().timestamp() - now).max(0);
    let mut response = match format {
        Format::Json => no_store(HttpResponse::Ok()),
        Format::Form => {
            let mut builder = no_store(HttpResponse::SeeOther());
            builder.insert_header((header::LOCATION, landing(next)));
            builder
        }
    };
    response
        .cookie(login.auth.access_cookie(&token))
        .cookie(login.auth.refresh_cookie(&grant.refresh_token, refresh_age));
    Ok(match format {
        Format::Json => response.json(serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": settings.ttl_secs,
            "refresh_token": grant.refresh_token,
        })),
        Format::Form => response.finish(),
    })
}

fn cleared(auth: &Auth, mut response: HttpResponseBuilder) -> HttpResponseBuilder {
    for cookie in auth.clearing_cookies() {
        response.cookie(cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct FormQuery {
    next: Option<String>,
    /// `prompt=login` shows the form even with a live session (switching accounts).
    prompt: Option<String>,
    /// Set after a password reset or a sign-out, for the notice.
    done: Option<String>,
}

/// The form. A browser with a live refresh cookie goes straight on to `next`.
pub async fn form(
    req: HttpRequest,
    query: web::Query<FormQuery>,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let next = safe_next(query.next.as_deref());
    let cookie = req
        .cookie(login.auth.refresh_cookie_name())
        .map(|c| c.value().to_owned())
        .filter(|t| plausible_token(t));
    if let (Some(token), None) = (cookie, query.prompt.as_deref()) {
        match renew(&req, &ctx, &state, &login, &token).await? {
            Refreshed::Renewed(grant) => {
                return issue(&login, &grant, Format::Form, next.as_deref());
            }
            // Another tab renewed the session this moment and its answer carries the
            // new cookies: keep them, and offer the form meanwhile (below).
            Refreshed::Raced => {}
            _ => {
                let page =
                    pages::login_form("", next.as_deref(), &Banner::None, &FieldErrors::new());
                return Ok(cleared(&login.auth, no_store(HttpResponse::Ok()))
                    .content_type("text/html; charset=utf-8")
                    .body(page));
            }
        }
    }
    let notice = match query.done.as_deref() {
        Some("reset") => {
            Banner::Notice("Your password has been changed. Sign in with the new one.")
        }
        Some("signed-out") => Banner::Notice("You are signed out."),
        _ => Banner::None,
    };
    Ok(html(
        StatusCode::OK,
        pages::login_form("", next.as_deref(), &notice, &FieldErrors::new()),
    ))
}

/// A refusal of a sign-in: JSON error, or the form again with the message.
fn refuse(
    format: Format,
    email: &str,
    next: Option<&str>,
    error: Error,
) -> Result<HttpResponse, Error> {
    if format == Format::Json {
        return Err(error);
    }
    let status = actix_web::ResponseError::status_code(&error);
    let message = error.public_message();
    let banner = match &error {
        Error::Forbidden {
            code: "email_not_verified",
            ..
        } => Banner::EmailNotVerified,
        _ => Banner::Error(&message),
    };
    let fields = error.fields().cloned().unwrap_or_default();
    let mut response = html(status, pages::login_form(email, next, &banner, &fields));
    error.add_retry_after(&mut response);
    Ok(response)
}

/// Too many sign-ins at one address are being checked, for longer than their turn.
fn wait_your_turn() -> Error {
    Error::TooManyRequests {
        code: "too_many_attempts",
        message: "Too many sign-ins for this address are being checked: try again in a moment."
            .into(),
        retry_after_secs: 1,
    }
}

pub async fn login(
    req: HttpRequest,
    body: web::Bytes,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let (format, input): (_, LoginInput) = read_body(&req, &body)?;
    // Login CSRF: a browser must not be signed in to someone else's account by
    // another site's form.
    login.auth.check_same_origin_with(&req, false)?;
    let next = safe_next(input.next.as_deref());
    let attempt = match input.check() {
        Ok(attempt) => attempt,
        Err(fields) => {
            return refuse(
                format,
                input.email.trim(),
                next.as_deref(),
                Error::Invalid(fields),
            );
        }
    };
    let who = origin(&req, &ctx);
    let key = flotilla_auth::token_hash(&attempt.lookup);
    // Held until this attempt's outcome is recorded, on every path out.
    let Some((in_flight, others)) = login.attempts.begin(&key).await else {
        count(&state, "throttled");
        return refuse(format, &attempt.email, next.as_deref(), wait_your_turn());
    };
    let (config, lookup, throttle_key) =
        (login.config.clone(), attempt.lookup.clone(), key.clone());
    let (wait, account) = blocking(&state, move |conn| {
        let wait = store::throttle(conn, &config, &throttle_key, others, flotilla_jobs::now())?;
        let account = match wait {
            Some(_) => None,
            None => store::account_by_email(conn, &lookup)?,
        };
        Ok::<_, Error>((wait, account))
    })
    .await?;
    if let Some(secs) = wait {
        // Refused without a check: not in flight any more.
        drop(in_flight);
        let (k, o) = (key.clone(), who.clone());
        blocking(&state, move |conn| {
            store::record(conn, AuthEventKind::LoginThrottled, None, Some(&k), &o)
        })
        .await?;
        count(&state, "throttled");
        let error = Error::TooManyRequests {
            code: "too_many_attempts",
            message: format!(
                "Too many failed sign-ins for this address: wait {secs} seconds and try again."
            ),
            retry_after_secs: u32::try_from(secs).unwrap_or(u32::MAX),
        };
        return refuse(format, &attempt.email, next.as_deref(), error);
    }
    // The same work whether or not the account exists: a hash is checked either way.
    let correct = match account.as_ref().and_then(|a| a.password_hash.as_ref()) {
        Some(hash) => login
            .hashes
            .verify(hash.expose().to_owned(), attempt.password.clone())
            .await
            .map_err(|e| e.answer(BUSY))?,
        None => {
            login
                .hashes
                .burn_time(attempt.password.clone())
                .await
                .map_err(|e| e.answer(BUSY))?;
            false
        }
    };
    let account = match account {
        Some(account) if correct => account,
        other => {
            let (k, o, user) = (key.clone(), who.clone(), other.map(|a| a.id));
            blocking(&state, move |conn| {
                store::record(
                    conn,
                    AuthEventKind::LoginFailure,
                    user.as_deref(),
                    Some(&k),
                    &o,
                )
            })
            .await?;
            count(&state, "failure");
            let error = Error::Unauthorized {
                code: "invalid_credentials",
                message: "The email address or the password is not right.".into(),
            };
            return refuse(format, &attempt.email, next.as_deref(), error);
        }
    };
    // Only someone who knows the password learns the state of the account.
    let refusal = if account.is_disabled() {
        Some((
            AuthEventKind::LoginRefusedDisabled,
            Error::Forbidden {
                code: "account_disabled",
                message: "This account has been disabled. Contact the site's administrators."
                    .into(),
            },
        ))
    } else if !account.is_verified() {
        Some((
            AuthEventKind::LoginRefusedUnverified,
            Error::Forbidden {
                code: "email_not_verified",
                message:
                    "Your email address is not confirmed yet: follow the link we sent, or ask \
                      for a new one at /signup/resend."
                        .into(),
            },
        ))
    } else {
        None
    };
    if let Some((kind, error)) = refusal {
        let (k, o, user) = (key.clone(), who.clone(), account.id.clone());
        blocking(&state, move |conn| {
            store::record(conn, kind, Some(&user), Some(&k), &o)
        })
        .await?;
        count(&state, kind.as_str().trim_start_matches("login."));
        return refuse(format, &attempt.email, next.as_deref(), error);
    }
    let config = login.config.clone();
    let grant = blocking(&state, move |conn| {
        store::open_session(conn, &config, &account, &key, &who)
    })
    .await?;
    let Some(grant) = grant else {
        count(&state, "failure");
        let error = Error::Unauthorized {
            code: "invalid_credentials",
            message: "The email address or the password is not right.".into(),
        };
        return refuse(format, &attempt.email, next.as_deref(), error);
    };
    count(&state, "success");
    if grant.mailed {
        login.wake.wake("email");
    }
    issue(&login, &grant, format, next.as_deref())
}

async fn renew(
    req: &HttpRequest,
    ctx: &RequestContext,
    state: &web::Data<State>,
    login: &web::Data<Login>,
    token: &str,
) -> Result<Refreshed, Error> {
    let (config, hash, who) = (
        login.config.clone(),
        flotilla_auth::token_hash(token),
        origin(req, ctx),
    );
    let outcome = blocking(state, move |conn| {
        store::refresh(conn, &config, &hash, &who)
    })
    .await?;
    if let Refreshed::Reused { session_id } | Refreshed::Disabled { session_id } = &outcome {
        if matches!(outcome, Refreshed::Reused { .. }) {
            log::warn!("a used refresh token came back: session {session_id} ended");
        }
        login
            .auth
            .announce_revoked(std::slice::from_ref(session_id));
    }
    Ok(outcome)
}

pub async fn refresh(
    req: HttpRequest,
    body: web::Bytes,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let input: RefreshInput = if body.is_empty() {
        RefreshInput::default()
    } else {
        read_body(&req, &body)?.1
    };
    let token = match input.refresh_token {
        Some(token) => token,
        None => {
            let cookie =
                req.cookie(login.auth.refresh_cookie_name())
                    .ok_or(Error::Unauthorized {
                        code: "not_authenticated",
                        message: "Send the refresh token as {\"refresh_token\": …} or its cookie."
                            .into(),
                    })?;
            // A cookie rides along with any request: only this site may use it.
            login.auth.check_same_origin(&req)?;
            cookie.value().to_owned()
        }
    };
    if !plausible_token(&token) {
        return Err(Error::invalid("refresh_token", "is not a refresh token"));
    }
    let (code, message) = match renew(&req, &ctx, &state, &login, &token).await? {
        Refreshed::Renewed(grant) => return issue(&login, &grant, Format::Json, None),
        Refreshed::Raced => {
            // Not an error of the session: the cookies another request just received
            // stay where they are.
            return Err(Error::Conflict {
                code: "refresh_conflict",
                fields: FieldErrors::from([(
                    "refresh_token".to_owned(),
                    "was exchanged a moment ago by another request of yours: use the tokens \
                     that request received"
                        .to_owned(),
                )]),
            });
        }
        Refreshed::Invalid => (
            "token_invalid",
            "This refresh token is not valid: sign in again.",
        ),
        Refreshed::Disabled { .. } => (
            "account_disabled",
            "This account has been disabled. Contact the site's administrators.",
        ),
        Refreshed::Expired => (
            "session_expired",
            "This session has expired: sign in again.",
        ),
        Refreshed::Reused { .. } => (
            "refresh_token_reused",
            "This refresh token was already used, so the session has been ended for safety: \
             sign in again.",
        ),
    };
    let error = Error::Unauthorized {
        code,
        message: message.into(),
    };
    let mut response = actix_web::ResponseError::error_response(&error);
    for cookie in login.auth.clearing_cookies() {
        let _ = response.add_cookie(&cookie);
    }
    Ok(response)
}

/// Reads an optional body of a sign-out.
fn logout_input(req: &HttpRequest, body: &web::Bytes) -> Result<(Format, LogoutInput), Error> {
    if body.is_empty() {
        let format = if wants_html(req.headers()) {
            Format::Form
        } else {
            Format::Json
        };
        return Ok((format, LogoutInput::default()));
    }
    read_body(req, body)
}

fn signed_out(auth: &Auth, format: Format) -> HttpResponse {
    match format {
        Format::Json => cleared(auth, no_store(HttpResponse::NoContent())).finish(),
        Format::Form => {
            let mut response = see_other("/login?done=signed-out");
            for cookie in auth.clearing_cookies() {
                let _ = response.add_cookie(&cookie);
            }
            response
        }
    }
}

/// Ends the session of the request: the access token's `sid` (Bearer or cookie), or,
/// when the access token has expired, the session of the refresh token.
pub async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let (format, input) = logout_input(&req, &body)?;
    let auth = &login.auth;
    let session = match auth.authenticate(&req).await {
        Ok(who) => {
            auth.check_csrf(&req, &who, input.csrf_token.as_deref())?;
            Some((who.claims.sid, who.claims.sub))
        }
        Err(_) => {
            let token = match input.refresh_token.clone() {
                Some(token) => Some(token),
                None => match req.cookie(auth.refresh_cookie_name()) {
                    Some(cookie) => {
                        auth.check_same_origin(&req)?;
                        Some(cookie.value().to_owned())
                    }
                    None => None,
                },
            };
            match token.filter(|t| plausible_token(t)) {
                Some(token) => {
                    let hash = flotilla_auth::token_hash(&token);
                    blocking(&state, move |conn| {
                        store::session_of_refresh_token(conn, &hash)
                    })
                    .await?
                }
                None => None,
            }
        }
    };
    let Some((session_id, user_id)) = session else {
        return Err(Error::Unauthorized {
            code: "not_authenticated",
            message: "There is no session to sign out of: send its access or refresh token.".into(),
        });
    };
    let who = origin(&req, &ctx);
    let ended = blocking(&state, move |conn| {
        store::sign_out(conn, &user_id, Some(&session_id), &who)
    })
    .await?;
    auth.announce_revoked(&ended);
    Ok(signed_out(auth, format))
}

pub async fn logout_all(
    req: HttpRequest,
    body: web::Bytes,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let (format, input) = logout_input(&req, &body)?;
    let auth = &login.auth;
    let who: Authenticated = auth.authenticate(&req).await?;
    auth.check_csrf(&req, &who, input.csrf_token.as_deref())?;
    let origin = origin(&req, &ctx);
    let user_id = who.claims.sub.clone();
    let ended = blocking(&state, move |conn| {
        store::sign_out(conn, &user_id, None, &origin)
    })
    .await?;
    auth.announce_revoked(&ended);
    let format = if who.via == Credential::Bearer {
        Format::Json
    } else {
        format
    };
    Ok(signed_out(auth, format))
}

pub async fn forgot_form() -> HttpResponse {
    html(StatusCode::OK, pages::forgot_form("", None))
}

pub async fn forgot(
    req: HttpRequest,
    body: web::Bytes,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let (format, input): (_, ForgotInput) = read_body(&req, &body)?;
    login.auth.check_same_origin_with(&req, false)?;
    let lookup = match input.check() {
        Ok(lookup) => lookup,
        Err(problem) if format == Format::Form => {
            return Ok(html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::forgot_form(&input.email, Some(&problem)),
            ));
        }
        Err(problem) => return Err(Error::invalid("email", problem)),
    };
    let (config, who) = (login.config.clone(), origin(&req, &ctx));
    let queued = blocking(&state, move |conn| {
        store::request_reset(conn, &config, &lookup, &who)
    })
    .await?;
    if queued {
        login.wake.wake("email");
    }
    // The same answer whether or not the address has an account.
    Ok(match format {
        Format::Json => HttpResponse::Accepted().json(serde_json::json!({
            "status": "reset_sent",
            "message": "If an account uses this address, a reset link is on its way.",
        })),
        Format::Form => html(
            StatusCode::ACCEPTED,
            pages::forgot_sent(login.config.reset_ttl.num_minutes()),
        ),
    })
}

#[derive(Deserialize)]
pub struct ResetQuery {
    token: Option<String>,
}

fn token_problem(expired: bool) -> (&'static str, &'static str) {
    if expired {
        (
            "token_expired",
            "This reset link has expired. Ask for a new one at /login/forgot.",
        )
    } else {
        (
            "token_invalid",
            "This reset link is not valid: it may have been used already or mistyped. \
             Ask for a new one at /login/forgot.",
        )
    }
}

fn link_refused(browser: bool, expired: bool) -> Result<HttpResponse, Error> {
    let (code, message) = token_problem(expired);
    if browser {
        return Ok(html(StatusCode::BAD_REQUEST, pages::link_problem(message)));
    }
    Err(Error::BadRequest {
        code,
        message: message.into(),
    })
}

pub async fn reset_form(
    req: HttpRequest,
    query: web::Query<ResetQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let browser = wants_html(req.headers());
    let token = query
        .token
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .to_owned();
    if !plausible_token(&token) {
        return link_refused(browser, false);
    }
    let hash = flotilla_auth::token_hash(&token);
    match blocking(&state, move |conn| store::check_reset_token(conn, &hash)).await? {
        Link::Valid { .. } if browser => Ok(html(
            StatusCode::OK,
            pages::reset_form(&token, &FieldErrors::new()),
        )),
        Link::Valid { .. } => Ok(HttpResponse::Ok().json(serde_json::json!({"status": "valid"}))),
        Link::Invalid => link_refused(browser, false),
        Link::Expired => link_refused(browser, true),
    }
}

pub async fn reset(
    req: HttpRequest,
    body: web::Bytes,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let (format, input): (_, ResetInput) = read_body(&req, &body)?;
    login.auth.check_same_origin_with(&req, false)?;
    let browser = format == Format::Form;
    let token = input.token.trim().to_owned();
    if !plausible_token(&token) {
        return link_refused(browser, false);
    }
    let hash = flotilla_auth::token_hash(&token);
    let lookup = hash.clone();
    let email = match blocking(&state, move |conn| store::check_reset_token(conn, &lookup)).await? {
        Link::Valid { email, .. } => email,
        Link::Invalid => return link_refused(browser, false),
        Link::Expired => return link_refused(browser, true),
    };
    let password = match login.config.passwords.policy.check(&input.password, &email) {
        Ok(password) => password,
        Err(problem) if browser => {
            let fields = FieldErrors::from([("password".to_owned(), problem)]);
            return Ok(html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::reset_form(&token, &fields),
            ));
        }
        Err(problem) => return Err(Error::invalid("password", problem)),
    };
    let password_hash = login
        .hashes
        .hash(password)
        .await
        .map_err(|e| e.answer(BUSY))?;
    let (config, who) = (login.config.clone(), origin(&req, &ctx));
    let outcome = blocking(&state, move |conn| {
        store::reset_password(conn, &config, &hash, &password_hash, &who)
    })
    .await?;
    match outcome {
        Reset::Done { revoked } => {
            login.auth.announce_revoked(&revoked);
            login.wake.wake("email");
            Ok(match format {
                Format::Json => cleared(&login.auth, no_store(HttpResponse::Ok()))
                    .json(serde_json::json!({"status": "password_changed"})),
                Format::Form => {
                    let mut response = see_other("/login?done=reset");
                    for cookie in login.auth.clearing_cookies() {
                        let _ = response.add_cookie(&cookie);
                    }
                    response
                }
            })
        }
        Reset::Invalid => link_refused(browser, false),
        Reset::Expired => link_refused(browser, true),
    }
}

/// Who the access token is, for clients that cannot read it: `401` once the session
/// ended (the deny-list), like every other service would answer.
pub async fn session(who: Authenticated) -> HttpResponse {
    let claims = &who.claims;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "session_id": claims.sid,
            "user_id": claims.sub,
            "role": claims.role,
            "email_verified": claims.email_verified,
            "expires_at": chrono::DateTime::from_timestamp(claims.exp, 0).map(|t| t.to_rfc3339()),
        }))
}

pub async fn jwks(login: web::Data<Login>) -> Result<HttpResponse, Error> {
    let jwks = login
        .keys
        .read()
        .map_err(|_| Error::Internal(anyhow::anyhow!("the key ring lock is poisoned")))?
        .jwks();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(jwks))
}
