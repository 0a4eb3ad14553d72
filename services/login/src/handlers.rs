//! Login's routes: each reads its input ([`Input`] for forms and JSON), checks it into
//! domain types (`domain`), acts in one transaction (`store`) and answers with a page
//! (`pages`) or JSON; its refusals are `errors::LoginError`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use flotilla_auth::second_factor::Attempt;
use flotilla_auth::{Auth, Authenticated, Claims, Credential, SecondFactors, Submission};
use flotilla_contracts::AuthEventKind;
use flotilla_kit::api::ErrorBody;
use flotilla_kit::body::{BodyFormat as Format, read_body};
use flotilla_kit::html::{respond as html, see_other};
use flotilla_kit::input::{Input, Then};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, RequestContext, State};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::answers::{Jwks, ResetSent, ResetStatus, SessionInfo, SignIn, Tokens};
use crate::domain::{
    ConfirmInput, ForgotInput, LoginInput, LogoutInput, RefreshInput, ResetInput, landing,
    plausible_token, safe_next,
};
use crate::errors::LoginError;
use crate::pages::{self, Banner};
use crate::store::{self, Origin, Refreshed, Reset, SessionGrant};
use crate::{Login, second_step};
use flotilla_accounts::email_link::Link;
use flotilla_accounts::{ChallengePurpose, User};
use flotilla_auth::device::{self, DeviceEntry};
use flotilla_auth::keys::SigningKey;
use flotilla_auth::{ClientOrigin, RequestOrigin};

/// Counts a sign-in outcome in `flotilla_logins_total{kind=…}`.
pub(crate) fn count(state: &State, outcome: &'static str) {
    state.metrics.count(
        "flotilla_logins_total",
        "Sign-in attempts by outcome.",
        outcome,
    );
}

/// What is busy when the hashing pool is full.
const BUSY: &str = "sign-ins are being checked";

pub(crate) fn origin(req: &HttpRequest, ctx: &RequestContext) -> Origin {
    Origin::of(req, ctx)
}

pub(crate) fn no_store(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
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
        email: grant.email.clone(),
        preferred_username: grant.username.clone(),
        name: grant.display_name.clone(),
        amr: grant.amr.split_whitespace().map(str::to_owned).collect(),
        csrf: grant.csrf.clone(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + settings.ttl_secs,
    };
    let token = with_signing_key(login, |key| {
        Ok(flotilla_auth::access_token::sign(key, &claims)?)
    })?;
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
        Format::Json => response.json(SignIn::Tokens(Tokens {
            access_token: token,
            expires_in: settings.ttl_secs,
            refresh_token: grant.refresh_token.clone(),
            token_type: "Bearer",
        })),
        Format::Form => response.finish(),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormQuery {
    /// Where to go after signing in: a path of this site (default `/profile`).
    next: Option<String>,
    /// `prompt=login` (any value) shows the form even with a live session (switching
    /// accounts).
    prompt: Option<String>,
    /// `reset`, `signed-out` or `closed`: the notice of what was just done.
    done: Option<String>,
}

/// The sign-in form, or straight on to `next` with a live refresh cookie.
#[utoipa::path(get, path = "/login", tag = "login",
    params(
        FormQuery,
        ("flotilla_refresh" = Option<String>, Cookie, description = "The refresh cookie \
            (`__Secure-flotilla_refresh` over https): a live one renews the session without \
            the form."),
    ),
    responses(
        (status = 200, description = "The form (with the cookies cleared when the refresh \
            cookie no longer works).", content_type = "text/html", body = String,
            headers(("Set-Cookie" = String, description = "Clears the access and refresh \
                cookies, when the refresh cookie no longer works."))),
        (status = 303, description = "A live refresh cookie, without `prompt`: the session \
            renewed, on to `next` (default `/profile`) with new cookies.",
            headers(
                ("Location" = String),
                ("Set-Cookie" = String, description = "The new access and refresh cookies."),
            )),
        (status = 400, description = "`malformed_query`.", body = ErrorBody),
    ))]
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
                let mut response = html(StatusCode::OK, page);
                login.auth.clear_cookies(&mut response);
                return Ok(response);
            }
        }
    }
    let notice = match query.done.as_deref() {
        Some("reset") => {
            Banner::Notice("Your password has been changed. Sign in with the new one.")
        }
        Some("signed-out") => Banner::Notice("You are signed out."),
        Some("closed") => Banner::Notice(
            "Your account is closed and you are signed out everywhere. A confirmation is on its way to your address.",
        ),
        _ => Banner::None,
    };
    Ok(html(
        StatusCode::OK,
        pages::login_form("", next.as_deref(), &notice, &FieldErrors::new()),
    ))
}

/// Signs in with an address and a password.
#[utoipa::path(post, path = "/login", tag = "login",
    request_body(content(
        (LoginInput = "application/json"),
        (LoginInput = "application/x-www-form-urlencoded"),
    )),
    params(
        ("flotilla_device" = Option<String>, Cookie, description = "The device cookie \
            (`__Secure-flotilla_device` over https): a browser that signed in to the \
            account before counts its failures apart."),
    ),
    responses(
        (status = 200, description = "Signed in: the tokens, and the access, refresh and \
            device cookies. For an account with a second factor, `second_factor_required` \
            instead: no session yet, but a step to finish at `POST /login/second-step` (its \
            token, and its cookie).", body = SignIn,
            headers(("Set-Cookie" = String, description = "The access, refresh and device \
                cookies; or the second step's cookie (path `/login`)."))),
        (status = 303, description = "A form post: on to a same-site `next` (default \
            `/profile`) with the cookies; for an account with a second factor, to \
            `/login/second-step?next=…` with the step's cookie.",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "`invalid_credentials`: a wrong password, or an \
            address without an account (the same answer). A form post gets the form again.",
            body = ErrorBody),
        (status = 403, description = "`cross_origin_request`: a browser's post from another \
            site. With the right password: `email_not_verified` (the way to a new link) or \
            `account_disabled`.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `email` missing or not an address, \
            `password` missing or longer than 1024 characters (a form gets the form again).",
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many failures at this \
            address (counted apart for a browser that signed in to the account before), or \
            too many of its sign-ins being checked at once.", body = ErrorBody),
        (status = 503, description = "`busy`: too many passwords being checked; or the \
            database is unavailable.", body = ErrorBody),
    ))]
pub async fn login(
    input: Input<LoginInput>,
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    // Login CSRF: a browser must not be signed in to someone else's account by
    // another site's form.
    login.auth.check_same_origin_with(&req, false)?;
    let attempt = input.parse(LoginInput::check, pages::login_again)?;
    // Refused at once while the hashing threads are flooded, before the reads and the
    // wait for the account's turn that would come before the hash.
    login.hashes.check().map_err(|e| e.answer(BUSY))?;
    let refuse = |refusal: LoginError| input.refuse(refusal.into(), pages::login_again);
    let who = origin(&req, &ctx);
    let devices = devices(&req, &login);
    // A browser that signed in to this account before counts its own failures; every
    // other attempt at the address shares the address's count.
    let device = known_device(&state, &devices, &attempt.lookup).await?;
    let key = device.map_or_else(
        || flotilla_auth::token_hash(&attempt.lookup),
        DeviceEntry::key,
    );
    // Held until this attempt's outcome is recorded, on every path out.
    let Some((in_flight, others)) = login.attempts.begin(&key).await else {
        // Waited `TURN_TIMEOUT` for a turn: refused, and recorded like any throttling.
        throttled(&state, device, &key, &who).await?;
        return Err(refuse(LoginError::AttemptsInFlight));
    };
    let (wait, account) = throttle_and_find(&state, &login, &attempt.lookup, &key, others).await?;
    if let Some(wait_secs) = wait {
        // Refused without a check: not in flight any more.
        drop(in_flight);
        throttled(&state, device, &key, &who).await?;
        return Err(refuse(LoginError::TooManyFailures { wait_secs }));
    }
    let account = match password_matches(&login, account, &attempt.password).await? {
        Ok(account) => account,
        Err(user) => {
            record(&state, AuthEventKind::LoginFailure, user, &key, &who).await?;
            count(&state, "failure");
            return Err(refuse(LoginError::InvalidCredentials));
        }
    };
    // Only someone who knows the password learns the state of the account.
    if let Some((kind, refusal)) = refusal_of(&account) {
        record(&state, kind, Some(account.id.clone()), &key, &who).await?;
        count(&state, kind.as_str().trim_start_matches("login."));
        return Err(refuse(refusal));
    }
    let next = safe_next(input.raw().next.as_deref());
    let id = account.id.clone();
    let kinds = read(&state, move |conn| {
        flotilla_accounts::FactorKinds::of(conn, &id)
    })
    .await?;
    if kinds.any() {
        // Not a success yet: the throttle's count at `key` goes on until the second
        // step is done.
        let step = second_step::Step {
            account: &account,
            login_key: &key,
            kinds,
        };
        return second_step::begin(&state, &login, step, input.format(), next).await;
    }
    let opening = store::Opening::password();
    let grant = open_session(&state, &login, account, key, opening, who).await?;
    let Some(grant) = grant else {
        count(&state, "failure");
        return Err(refuse(LoginError::InvalidCredentials));
    };
    signed_in(
        &state,
        &login,
        &grant,
        &devices,
        input.format(),
        next.as_deref(),
    )
}

/// Opens the session of a sign-in that is done (see [`store::open_session`]).
pub(crate) async fn open_session(
    state: &web::Data<State>,
    login: &Login,
    account: User,
    key: String,
    opening: store::Opening,
    who: Origin,
) -> Result<Option<SessionGrant>, Error> {
    let config = login.config.clone();
    blocking(state, move |conn| {
        store::open_session(conn, &config, &account, &key, &opening, &who)
    })
    .await
}

/// The answer to a finished sign-in: the tokens ([`issue`]), the mail of a new device
/// woken, and the browser's device cookie renewed with this account in it.
pub(crate) fn signed_in(
    state: &State,
    login: &Login,
    grant: &SessionGrant,
    devices: &[DeviceEntry],
    format: Format,
    next: Option<&str>,
) -> Result<HttpResponse, Error> {
    count(state, "success");
    if grant.mailed {
        login.wake.wake("email");
    }
    let mut response = issue(login, grant, format, next)?;
    let device = with_signing_key(login, |key| {
        let now = chrono::Utc::now().timestamp();
        Ok(device::after_sign_in(devices, &grant.user_id, key, now))
    })?;
    // A cookie built here always has a valid header form.
    let _ = response.add_cookie(&login.auth.device_cookie(&device));
    Ok(response)
}

/// Runs `sign` with the key login signs with now (a new key only once it has been
/// published for `FLOTILLA_KEYS_PUBLISH_SECS`).
fn with_signing_key<T>(
    login: &Login,
    sign: impl FnOnce(&SigningKey) -> Result<T, Error>,
) -> Result<T, Error> {
    let keys = login
        .keys
        .read()
        .map_err(|_| Error::Internal(anyhow::anyhow!("the key ring lock is poisoned")))?;
    let key = keys
        .signing_at(chrono::Utc::now().naive_utc(), login.config.keys_publish)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("no signing key")))?;
    sign(key)
}

/// The valid entries of the request's device cookie: none without one, or with a
/// forged, altered or expired one.
pub(crate) fn devices(req: &HttpRequest, login: &Login) -> Vec<DeviceEntry> {
    let Some(cookie) = req.cookie(login.auth.device_cookie_name()) else {
        return Vec::new();
    };
    match login.keys.read() {
        Ok(ring) => device::read(cookie.value(), &ring, chrono::Utc::now().timestamp()),
        Err(_) => Vec::new(),
    }
}

/// The entry of `devices` for the account of the address typed, if it has one.
async fn known_device<'d>(
    state: &web::Data<State>,
    devices: &'d [DeviceEntry],
    lookup: &str,
) -> Result<Option<&'d DeviceEntry>, Error> {
    if devices.is_empty() {
        return Ok(None);
    }
    let lookup = lookup.to_owned();
    let account = blocking(state, move |conn| store::account_by_email(conn, &lookup)).await?;
    Ok(account.and_then(|a| devices.iter().find(|d| d.user_id == a.id)))
}

/// How long the address must wait (if at all), and else its account (if any).
async fn throttle_and_find(
    state: &web::Data<State>,
    login: &Login,
    lookup: &str,
    key: &str,
    others: usize,
) -> Result<(Option<i64>, Option<User>), Error> {
    let (config, lookup, key) = (login.config.clone(), lookup.to_owned(), key.to_owned());
    blocking(state, move |conn| {
        let wait = store::throttle(conn, &config, &key, others, flotilla_jobs::now())?;
        let account = match wait {
            Some(_) => None,
            None => store::account_by_email(conn, &lookup)?,
        };
        Ok::<_, Error>((wait, account))
    })
    .await
}

/// The account if the password is its own; else the id of the account tried, if any.
/// The same work whether or not the account exists: a hash is checked either way.
async fn password_matches(
    login: &Login,
    account: Option<User>,
    password: &str,
) -> Result<Result<User, Option<String>>, Error> {
    let hashes = &login.hashes;
    let correct = match account.as_ref().and_then(|a| a.password_hash.as_ref()) {
        Some(hash) => {
            hashes
                .verify(hash.expose().to_owned(), password.to_owned())
                .await
        }
        None => hashes.burn_time(password.to_owned()).await.map(|()| false),
    }
    .map_err(|e| e.answer(BUSY))?;
    Ok(match account {
        Some(account) if correct => Ok(account),
        other => Err(other.map(|a| a.id)),
    })
}

/// Why an account that gave its right password may not sign in, if it may not.
pub(crate) fn refusal_of(account: &User) -> Option<(AuthEventKind, LoginError)> {
    if account.is_disabled() {
        let refusal = LoginError::AccountDisabled { at_refresh: false };
        Some((AuthEventKind::LoginRefusedDisabled, refusal))
    } else if !account.is_verified() {
        Some((
            AuthEventKind::LoginRefusedUnverified,
            LoginError::EmailNotVerified,
        ))
    } else {
        None
    }
}

/// Records one attempt's outcome at the address `key`.
async fn record(
    state: &web::Data<State>,
    kind: AuthEventKind,
    user: Option<String>,
    key: &str,
    who: &Origin,
) -> Result<(), Error> {
    let (key, who) = (key.to_owned(), who.clone());
    blocking(state, move |conn| {
        store::record(conn, kind, user.as_deref(), Some(&key), &who)
    })
    .await
}

/// An attempt refused before its password was checked (too many failures, or no turn
/// among the attempts in flight): a `login.throttled` event under the key it counts
/// at, with the account of its device entry when it has one, and the metric.
async fn throttled(
    state: &web::Data<State>,
    device: Option<&DeviceEntry>,
    key: &str,
    who: &Origin,
) -> Result<(), Error> {
    let user = device.map(|d| d.user_id.clone());
    record(state, AuthEventKind::LoginThrottled, user, key, who).await?;
    count(state, "throttled");
    Ok(())
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
    let devices = devices(req, login);
    let outcome = blocking(state, move |conn| {
        store::refresh(conn, &config, &hash, &devices, &who)
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

/// Exchanges a refresh token (its cookie, or `refresh_token`) for a new pair.
#[utoipa::path(post, path = "/login/refresh", tag = "login",
    request_body(description = "Optional: without a body (or without `refresh_token`), \
        the refresh cookie is used.", content(
        (Option<RefreshInput> = "application/json"),
        (Option<RefreshInput> = "application/x-www-form-urlencoded"),
    )),
    params(
        ("flotilla_refresh" = Option<String>, Cookie, description = "The refresh cookie \
            (`__Secure-flotilla_refresh` over https), when the body has no token."),
        ("flotilla_device" = Option<String>, Cookie, description = "The device cookie: a \
            spent token that comes back with the cookie of the browser that spent it, \
            within 10 s, is a race of its tabs (`409`), not a theft."),
    ),
    responses(
        (status = 200, description = "A new pair (the refresh token sent is spent), also \
            as cookies.", body = Tokens,
            headers(("Set-Cookie" = String, description = "The new access and refresh cookies."))),
        (status = 401, description = "`not_authenticated`: no refresh token. The others \
            also clear the cookies: `token_invalid` (unknown or revoked), \
            `refresh_token_reused` (spent already: the session has ended), \
            `session_expired`, `account_disabled` (the session ends).", body = ErrorBody,
            headers(("Set-Cookie" = String, description = "Clears the access and refresh \
                cookies."))),
        (status = 403, description = "`cross_origin_request`: the refresh cookie, sent from \
            another site.", body = ErrorBody),
        (status = 409, description = "`refresh_conflict`: another request of this browser \
            exchanged the token a moment ago; its answer has the new cookies (none touched \
            here, the session kept).", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `refresh_token` is not a refresh \
            token.", body = ErrorBody),
    ))]
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
            let cookie = req
                .cookie(login.auth.refresh_cookie_name())
                .ok_or(LoginError::NoRefreshToken)?;
            // A cookie rides along with any request: only this site may use it.
            login.auth.check_same_origin(&req)?;
            cookie.value().to_owned()
        }
    };
    if !plausible_token(&token) {
        return Err(Error::invalid("refresh_token", "is not a refresh token"));
    }
    let refusal = match renew(&req, &ctx, &state, &login, &token).await? {
        Refreshed::Renewed(grant) => return issue(&login, &grant, Format::Json, None),
        // Not an error of the session: the cookies another request just received
        // stay where they are.
        Refreshed::Raced => return Err(LoginError::RefreshConflict.into()),
        Refreshed::Invalid => LoginError::RefreshInvalid,
        Refreshed::Disabled { .. } => LoginError::AccountDisabled { at_refresh: true },
        Refreshed::Expired => LoginError::SessionExpired,
        Refreshed::Reused { .. } => LoginError::RefreshReused,
    };
    let mut response = actix_web::ResponseError::error_response(&Error::from(refusal));
    login.auth.clear_cookies(&mut response);
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

fn signed_out(auth: &Auth, format: Format, next: Option<&str>) -> HttpResponse {
    let mut response = match format {
        Format::Json => no_store(HttpResponse::NoContent()).finish(),
        Format::Form => match safe_next(next) {
            Some(next) => see_other(&next),
            None => see_other("/login?done=signed-out"),
        },
    };
    auth.clear_cookies(&mut response);
    response
}

/// Ends the session of the request.
///
/// The access token's `sid` (Bearer or cookie), or, when the access token has expired,
/// the session of the refresh token.
#[utoipa::path(post, path = "/login/logout", tag = "login",
    request_body(description = "Optional: a form sends its `csrf_token` (and `next`); an \
        API client may name the session by its `refresh_token`.", content(
        (Option<LogoutInput> = "application/json"),
        (Option<LogoutInput> = "application/x-www-form-urlencoded"),
    )),
    params(
        ("flotilla_refresh" = Option<String>, Cookie, description = "The refresh cookie: \
            names the session once the access token expired."),
    ),
    security(("bearer" = []), ("cookie" = []), ()),
    responses(
        (status = 204, description = "Signed out (JSON, or an empty body from a client that \
            is no browser): the session ended, the cookies cleared.",
            headers(("Set-Cookie" = String, description = "Clears the access and refresh \
                cookies."))),
        (status = 303, description = "A form (or an empty post from a browser): on to a \
            same-site `next`, else `/login?done=signed-out`; the cookies cleared.",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "`not_authenticated`: no session to end (no live \
            access token, and no refresh token naming one).", body = ErrorBody),
        (status = 403, description = "`cross_origin_request` or `csrf_token_invalid`: the \
            access cookie without the form token, or a cookie sent from another site.",
            body = ErrorBody),
    ))]
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
        return Err(LoginError::NoSession.into());
    };
    let who = origin(&req, &ctx);
    let ended = blocking(&state, move |conn| {
        store::sign_out(conn, &user_id, Some(&session_id), &who)
    })
    .await?;
    auth.announce_revoked(&ended);
    Ok(signed_out(auth, format, input.next.as_deref()))
}

/// Ends every session of the access token's user.
#[utoipa::path(post, path = "/login/logout-all", tag = "login",
    request_body(description = "Optional: a form sends its `csrf_token` (and `next`).",
        content(
            (Option<LogoutInput> = "application/json"),
            (Option<LogoutInput> = "application/x-www-form-urlencoded"),
        )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Every session of the user ended (JSON, an empty body \
            from a client that is no browser, or any request with a bearer token); the \
            cookies cleared.",
            headers(("Set-Cookie" = String, description = "Clears the access and refresh \
                cookies."))),
        (status = 303, description = "A form with the access cookie: as `POST \
            /login/logout`.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = "`not_authenticated`, `token_expired`, `token_invalid` \
            or `session_revoked`: no live access token.", body = ErrorBody),
        (status = 403, description = "`cross_origin_request` or `csrf_token_invalid`: the \
            access cookie without the form token, or from another site.", body = ErrorBody),
    ))]
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
    Ok(signed_out(auth, format, input.next.as_deref()))
}

/// The form that asks for a reset link.
#[utoipa::path(get, path = "/login/forgot", tag = "login",
    responses((status = 200, description = "The form.", content_type = "text/html", body = String)))]
pub async fn forgot_form() -> HttpResponse {
    html(StatusCode::OK, pages::forgot_form("", None))
}

/// Mails a reset link, if an account uses the address (the same answer either way).
#[utoipa::path(post, path = "/login/forgot", tag = "login",
    request_body(content(
        (ForgotInput = "application/json"),
        (ForgotInput = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 202, description = "The same whether or not the address has an account, \
            and no sooner: a link valid an hour is mailed when it has one (at most one a \
            minute). A form gets the \"check your email\" page.", content(
            (ResetSent = "application/json"),
            (String = "text/html"),
        )),
        (status = 403, description = "`cross_origin_request`: a browser's post from another \
            site.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `email` missing or not an address \
            (a form gets the form again).", body = ErrorBody),
    ))]
pub async fn forgot(
    input: Input<ForgotInput>,
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let even = flotilla_auth::EvenTime::start();
    login.auth.check_same_origin_with(&req, false)?;
    let lookup = input.parse(
        |raw| {
            raw.check()
                .map_err(|problem| Error::invalid("email", problem))
        },
        pages::forgot_again,
    )?;
    let (config, who) = (login.config.clone(), origin(&req, &ctx));
    blocking(&state, move |conn| {
        store::request_reset(conn, &config, &lookup, &who)
    })
    .await?;
    // The worker is woken whether or not a mail was queued (a pass that finds nothing
    // is cheap), so that its work next to this answer does not tell either.
    login.wake.wake("email");
    // The same answer whether or not the address has an account, no sooner either.
    even.finish().await;
    let status = ResetSent {
        message: "If an account uses this address, a reset link is on its way.",
        status: "reset_sent",
    };
    let minutes = login.config.reset_ttl.num_minutes();
    let page = || Then::Page(pages::forgot_sent(minutes));
    Ok(input.reply(StatusCode::ACCEPTED, &status, page))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResetQuery {
    /// The token of the reset mail's link.
    token: Option<String>,
}

/// Why a reset link does not work (used, unknown, mistyped or expired).
fn link_refusal(expired: bool) -> LoginError {
    match expired {
        true => LoginError::ResetLinkExpired,
        false => LoginError::ResetLinkInvalid,
    }
}

/// Opening a reset link: the new-password form (or `{"status":"valid"}`), spending nothing.
#[utoipa::path(get, path = "/login/reset", tag = "login",
    params(ResetQuery),
    responses(
        (status = 200, description = "The link works: a browser gets the new-password form, \
            an API client `{\"status\":\"valid\"}`. Nothing is spent.", content(
            (ResetStatus = "application/json"),
            (String = "text/html"),
        )),
        (status = 400, description = "`token_invalid` (used, unknown or mistyped) or \
            `token_expired`, a page for a browser; `malformed_query`.", body = ErrorBody),
    ))]
pub async fn reset_form(
    req: HttpRequest,
    query: web::Query<ResetQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let browser = wants_html(req.headers());
    let token = query.token.as_deref().map_or("", str::trim).to_owned();
    let refusal = if plausible_token(&token) {
        let hash = flotilla_auth::token_hash(&token);
        match blocking(&state, move |conn| store::check_reset_token(conn, &hash)).await? {
            Link::Valid { .. } if browser => {
                let page = pages::reset_form(&token, &FieldErrors::new());
                return Ok(html(StatusCode::OK, page));
            }
            Link::Valid { .. } => {
                return Ok(HttpResponse::Ok().json(ResetStatus { status: "valid" }));
            }
            Link::Invalid => link_refusal(false),
            Link::Expired => link_refusal(true),
        }
    } else {
        link_refusal(false)
    };
    let page = || pages::link_problem(&refusal.message());
    Err(Error::from(refusal).for_browser(browser, page))
}

/// Sets a new password with a reset link's token; every session ends.
#[utoipa::path(post, path = "/login/reset", tag = "login",
    request_body(content(
        (ResetInput = "application/json"),
        (ResetInput = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "`{\"status\":\"password_changed\"}`: the link spent, \
            the account's other links void, every session ended, the address confirmed, a \
            notice mailed; the cookies cleared.", body = ResetStatus,
            headers(("Set-Cookie" = String, description = "Clears the access and refresh \
                cookies."))),
        (status = 303, description = "A form: to `/login?done=reset`, the cookies cleared.",
            headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 400, description = "`token_invalid` (used, unknown or mistyped) or \
            `token_expired` (a form gets the form again).", body = ErrorBody),
        (status = 403, description = "`cross_origin_request`: a browser's post from another \
            site.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: the password does not follow the \
            signup rules.", body = ErrorBody),
        (status = 503, description = "`busy`: too many passwords being hashed; or the \
            database is unavailable.", body = ErrorBody),
    ))]
pub async fn reset(
    input: Input<ResetInput>,
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    login.auth.check_same_origin_with(&req, false)?;
    let refuse = |refusal: LoginError| input.refuse(refusal.into(), pages::reset_again);
    let token = input.raw().token.trim().to_owned();
    if !plausible_token(&token) {
        return Err(refuse(link_refusal(false)));
    }
    let hash = flotilla_auth::token_hash(&token);
    let lookup = hash.clone();
    let email = match blocking(&state, move |conn| store::check_reset_token(conn, &lookup)).await? {
        Link::Valid { email, .. } => email,
        Link::Invalid => return Err(refuse(link_refusal(false))),
        Link::Expired => return Err(refuse(link_refusal(true))),
    };
    let policy = &login.config.passwords.policy;
    let password = input.parse(
        |raw| {
            policy
                .check(&raw.password, &email)
                .map_err(|p| Error::invalid("password", p))
        },
        pages::reset_again,
    )?;
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
    let revoked = match outcome {
        Reset::Done { revoked } => revoked,
        Reset::Invalid => return Err(refuse(link_refusal(false))),
        Reset::Expired => return Err(refuse(link_refusal(true))),
    };
    login.auth.announce_revoked(&revoked);
    login.wake.wake("email");
    let mut response = match input.format() {
        Format::Json => no_store(HttpResponse::Ok()).json(ResetStatus {
            status: "password_changed",
        }),
        Format::Form => see_other("/login?done=reset"),
    };
    login.auth.clear_cookies(&mut response);
    Ok(response)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmQuery {
    /// Where to go once confirmed: a path of this site (default `/profile`).
    next: Option<String>,
}

/// `key=value`, encoded for a query string.
fn query_pair(key: &str, value: &str) -> String {
    serde_urlencoded::to_string([(key, value)]).unwrap_or_default()
}

/// "Confirm it's you": the form that asks the signed-in person's password again.
///
/// As GitHub's sudo mode. An anonymous browser signs in first (or has its session
/// renewed from the refresh cookie) and comes back here.
#[utoipa::path(get, path = "/login/confirm", tag = "login",
    params(ConfirmQuery),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The form: the account's address, a password field \
            and, when the account has a second factor, its code (and \"Use a passkey\"), \
            with the form token and `next`.", content_type = "text/html", body = String),
        (status = 303, description = "An anonymous browser: to \
            `/login?next=/login/confirm%3Fnext%3D…`, which renews the session from the \
            refresh cookie when it can, and comes back.", headers(("Location" = String))),
        (status = 400, description = "`malformed_query`.", body = ErrorBody),
        (status = 401, description = "`not_authenticated`: an API client without a live \
            access token; `session_revoked`: the session's account was closed or disabled.",
            body = ErrorBody),
    ))]
pub async fn confirm_form(
    who: Option<Authenticated>,
    req: HttpRequest,
    query: web::Query<ConfirmQuery>,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let next = safe_next(query.next.as_deref());
    let Some(who) = who else {
        if !wants_html(req.headers()) {
            return Err(flotilla_auth::AuthError::NotAuthenticated.into());
        }
        let here = match &next {
            Some(next) => format!("/login/confirm?{}", query_pair("next", next)),
            None => "/login/confirm".to_owned(),
        };
        return Ok(see_other(&format!("/login?{}", query_pair("next", &here))));
    };
    let (account, factors) = account_and_factor(&state, &login, &who.claims.sub).await?;
    let page = pages::confirm_form(
        &account.email,
        next.as_deref(),
        &who.claims.csrf,
        factors,
        None,
        &FieldErrors::new(),
    );
    // `html` answers are never stored by a cache.
    Ok(html(StatusCode::OK, page))
}

/// The session's open account, and its second factors (which a confirmation then
/// asks for too).
async fn account_and_factor(
    state: &web::Data<State>,
    login: &Login,
    user_id: &str,
) -> Result<(User, pages::Factors), Error> {
    let user_id = user_id.to_owned();
    let found = read(state, move |conn| {
        let Some(account) = User::find_active(conn, &user_id)? else {
            return Ok::<_, Error>(None);
        };
        let kinds = flotilla_accounts::FactorKinds::of(conn, &user_id)?;
        Ok(Some((account, kinds)))
    })
    .await?;
    let (account, kinds) = found.ok_or(LoginError::SessionEnded)?;
    let passkeys_on = login.factors.passkeys.enabled();
    Ok((account, pages::Factors { kinds, passkeys_on }))
}

/// Confirms the signed-in person's password (and second factor) again.
///
/// Checks the password of the session's account (throttled per account, with
/// profile's checks), and its second factor's code when it has one, and records the
/// confirmation: the session's `authenticated_at` becomes now and its `amr` the
/// methods used. A form goes on to `next` (default `/profile`); JSON gets 204.
#[utoipa::path(post, path = "/login/confirm", tag = "login",
    request_body(content(
        (ConfirmInput = "application/json"),
        (ConfirmInput = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Confirmed: the session's `authenticated_at` is now, \
            its `amr` what was given (`pwd`, or e.g. `pwd otp mfa`)."),
        (status = 303, description = "A form: on to a same-site `next` (default \
            `/profile`).", headers(("Location" = String))),
        (status = 401, description = "`not_authenticated`, `token_expired`, `token_invalid` \
            or `session_revoked`: no live session, or its account was closed or disabled \
            meanwhile.", body = ErrorBody),
        (status = 403, description = "`cross_origin_request` or `csrf_token_invalid` (the \
            access cookie without the form token); `wrong_password`; `wrong_code` or \
            `passkey_refused` (the second factor). A form gets the form again.",
            body = ErrorBody),
        (status = 409, description = "`passkeys_unavailable`: a passkey's answer on a site \
            without passkeys.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing or too long; for \
            an account with a second factor, `code` (or `passkey` with \
            `passkey_challenge`) missing or malformed.", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many wrong passwords \
            (counted with profile's checks) or wrong codes for this account, or too many \
            being checked at once.", body = ErrorBody),
        (status = 503, description = "`busy`: too many passwords being checked; or the \
            database is unavailable.", body = ErrorBody),
    ))]
pub async fn confirm(
    sub: Submission<ConfirmInput>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let user_id = who.claims.sub.clone();
    let (account, factors) = account_and_factor(&state, &login, &user_id).await?;
    let csrf = who.claims.csrf.clone();
    let again = |typed: &ConfirmInput, error: &Error| {
        pages::confirm_again(&account.email, &csrf, factors, typed, error)
    };
    let (password, code) = input.parse(|raw| raw.check(factors.kinds.any()), again)?;
    let session_id = who.claims.sid.clone();
    let checked = login
        .checks
        .check(&state, &account, Some(&session_id), &password, &who_from)
        .await;
    if let Err(error) = checked {
        return Err(input.refuse(error, again));
    }
    let mut amr = store::PASSWORD_AMR.to_owned();
    if let Some(code) = code {
        let attempt = Attempt {
            key: SecondFactors::step_up_key(&account.id),
            failure: AuthEventKind::SecondFactorCheckFailed,
            purpose: ChallengePurpose::Confirm,
            session_id: Some(session_id.clone()),
            from: who_from.clone(),
        };
        match login.factors.check(&state, &account, code, attempt).await {
            Ok(used) => amr = format!("{amr} {} mfa", used.amr()),
            Err(error) => return Err(input.refuse(error, again)),
        }
    }
    let confirmed = blocking(&state, move |conn| {
        store::confirm_password(conn, &user_id, &session_id, &amr, &who_from)
    })
    .await?;
    if !confirmed {
        return Err(input.refuse(LoginError::SessionEnded.into(), again));
    }
    Ok(match input.format() {
        Format::Json => no_store(HttpResponse::NoContent()).finish(),
        Format::Form => see_other(&landing(input.raw().next.as_deref())),
    })
}

/// The session of an access token.
///
/// Who the access token is, for clients that cannot read it: `401` once the session
/// ended (the deny-list), like every other service would answer.
#[utoipa::path(get, path = "/login/session", tag = "login",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The access token's session.", body = SessionInfo),
        (status = 401, description = "`not_authenticated`, `token_expired`, `token_invalid`, \
            or `session_revoked` once the session ended.", body = ErrorBody),
    ))]
pub async fn session(who: Authenticated) -> HttpResponse {
    let claims = &who.claims;
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SessionInfo {
            email_verified: claims.email_verified,
            expires_at: chrono::DateTime::from_timestamp(claims.exp, 0).map(|t| t.to_rfc3339()),
            role: claims.role.clone(),
            session_id: claims.sid.clone(),
            user_id: claims.sub.clone(),
        })
}

/// The public keys that check login's access tokens (JWKS).
#[utoipa::path(get, path = "/login/.well-known/jwks.json", tag = "login",
    responses(
        (status = 200, description = "The public keys (`kty` OKP, `crv` Ed25519, `kid`); \
            cached up to five minutes.", body = Jwks,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
    ))]
pub async fn jwks(login: web::Data<Login>) -> Result<HttpResponse, Error> {
    let jwks = login
        .keys
        .read()
        .map_err(|_| Error::Internal(anyhow::anyhow!("the key ring lock is poisoned")))?
        .jwks();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(Jwks(jwks)))
}
