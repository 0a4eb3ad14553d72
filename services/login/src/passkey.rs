//! Passkeys at login: the challenges the pages' script asks for (as the second step,
//! in "Confirm it's you", and for signing in without a password), and the password-free
//! sign-in itself. Each challenge is kept for its purpose and, but for the password-free
//! one, its account; it is taken once, within five minutes.
//!
//! A password-free sign-in opens a session with `amr` `hwk mfa` (or `swk mfa` for a
//! synced passkey): the passkey is something held, and its PIN or biometric, which
//! every passkey here must ask for, is the second factor.

use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_accounts::{Challenge, ChallengePurpose, PasskeyRow, User};
use flotilla_auth::second_factor::{challenge_json, passkey_used};
use flotilla_auth::{Authenticated, CodeRefusal};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::body::read_body;
use flotilla_kit::input::Input;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, RequestContext, State};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::Login;
use crate::answers::{PasskeyChallenge, Tokens};
use crate::domain::{plausible_token, safe_next};
use crate::errors::LoginError;
use crate::handlers::{count, devices, no_store, open_session, origin, refusal_of, signed_in};
use crate::pages;
use crate::store::{self, Opening};

/// What a challenge's request may carry: the form token (a signed-in page's), or an
/// API client's second step.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeInput {
    /// `POST /login/confirm/passkey`: the session's form token. Taken, but with the
    /// access cookie the `x-csrf-token` header is needed anyway (the session's
    /// extractor checks it before the body is read).
    #[serde(default)]
    pub csrf_token: Option<String>,
    /// `POST /login/second-step/passkey`: an API client's step (`POST /login`'s
    /// `second_step_token`); a browser's is its cookie.
    #[serde(default)]
    pub second_step_token: Option<String>,
}

fn challenge_input(req: &HttpRequest, body: &web::Bytes) -> Result<ChallengeInput, Error> {
    if body.is_empty() {
        return Ok(ChallengeInput::default());
    }
    Ok(read_body::<ChallengeInput>(req, body)?.1)
}

fn answer(body: serde_json::Value) -> HttpResponse {
    no_store(HttpResponse::Ok()).json(PasskeyChallenge(body))
}

/// A challenge for the passkeys of the account at its second step.
///
/// `POST /login/second-step/passkey`: the account whose sign-in is at its second step
/// (the browser's cookie, or `second_step_token`).
#[utoipa::path(post, path = "/login/second-step/passkey", tag = "login",
    request_body(description = "Optional: an API client's `second_step_token`.", content(
        (Option<ChallengeInput> = "application/json"),
        (Option<ChallengeInput> = "application/x-www-form-urlencoded"),
    )),
    params(
        ("flotilla_second_step" = Option<String>, Cookie, description = "The step's cookie \
            (`__Secure-flotilla_second_step` over https), when the body has no \
            `second_step_token`."),
    ),
    responses(
        (status = 200, description = "A challenge for the account's passkeys, for \
            `POST /login/second-step`'s `passkey_challenge`.", body = PasskeyChallenge),
        (status = 401, description = "`second_step_ended`: no live step: sign in again.",
            body = ErrorBody),
        (status = 403, description = "`cross_origin_request`: a browser's post from another \
            site.", body = ErrorBody),
        (status = 409, description = "`passkeys_unavailable` (the site's address is no \
            domain name) or `no_passkeys` (the account has none).", body = ErrorBody),
    ))]
pub async fn second_step_challenge(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    login.auth.check_same_origin_with(&req, false)?;
    let input = challenge_input(&req, &body)?;
    let token = input.second_step_token.or_else(|| {
        req.cookie(login.auth.second_step_cookie_name())
            .map(|c| c.value().to_owned())
    });
    let Some(token) = token.filter(|t| plausible_token(t)) else {
        return Err(LoginError::SecondStepEnded.into());
    };
    let hash = flotilla_auth::token_hash(&token);
    let step = read(&state, move |conn| store::second_step(conn, &hash)).await?;
    let step = step.ok_or(LoginError::SecondStepEnded)?;
    let purpose = ChallengePurpose::SecondStep;
    let body = login
        .factors
        .passkey_challenge(&state, &step.user_id, purpose)
        .await?;
    Ok(answer(body))
}

/// A challenge for the signed-in person's passkeys.
///
/// `POST /login/confirm/passkey`: for "Confirm it's you" (and profile's changes, which
/// ask the same).
#[utoipa::path(post, path = "/login/confirm/passkey", tag = "login",
    request_body(description = "Optional (the pages' script sends `{}`).", content(
        (Option<ChallengeInput> = "application/json"),
        (Option<ChallengeInput> = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A challenge for the signed-in person's passkeys, for \
            the `passkey_challenge` of `POST /login/confirm` (or of profile's changes).",
            body = PasskeyChallenge),
        (status = 401, description = "`not_authenticated`, `token_expired`, `token_invalid` \
            or `session_revoked`: no live access token.", body = ErrorBody),
        (status = 403, description = "`cross_origin_request` or `csrf_token_invalid`: the \
            access cookie without the form token in the `x-csrf-token` header, or from \
            another site.", body = ErrorBody),
        (status = 409, description = "`passkeys_unavailable` (the site's address is no \
            domain name) or `no_passkeys` (the account has none).", body = ErrorBody),
    ))]
pub async fn confirm_challenge(
    who: Authenticated,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    let input = challenge_input(&req, &body)?;
    login
        .auth
        .check_csrf(&req, &who, input.csrf_token.as_deref())?;
    let purpose = ChallengePurpose::Confirm;
    let body = login
        .factors
        .passkey_challenge(&state, &who.claims.sub, purpose)
        .await?;
    Ok(answer(body))
}

/// A challenge for signing in with a passkey, without a password.
///
/// `POST /login/passkey/options`: a challenge any of this site's passkeys may answer.
#[utoipa::path(post, path = "/login/passkey/options", tag = "login",
    responses(
        (status = 200, description = "A challenge any of the site's passkeys may answer \
            (`mediation` `conditional`: the address field's autofill), for `POST \
            /login/passkey`'s `passkey_challenge`.", body = PasskeyChallenge),
        (status = 403, description = "`cross_origin_request`: a browser's post from another \
            site.", body = ErrorBody),
        (status = 409, description = "`passkeys_unavailable`: the site's address is no \
            domain name.", body = ErrorBody),
    ))]
pub async fn sign_in_challenge(
    req: HttpRequest,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    login.auth.check_same_origin_with(&req, false)?;
    let passkeys = &login.factors.passkeys;
    let (options, kept) = passkeys
        .start_sign_in()
        .map_err(|_| Error::from(CodeRefusal::PasskeysUnavailable))?;
    let token = blocking(&state, move |conn| {
        let now = flotilla_jobs::now();
        Challenge::create(conn, ChallengePurpose::SignIn, None, &kept, now)
    })
    .await?;
    Ok(answer(challenge_json(token, options)))
}

/// `POST /login/passkey`: a passkey's answer signs in without a password.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySignIn {
    /// The passkey's answer (`PublicKeyCredential` JSON).
    #[serde(default)]
    pub passkey: String,
    /// The `challenge` of `POST /login/passkey/options`'s answer.
    #[serde(default)]
    pub passkey_challenge: String,
    /// Where a browser goes afterwards (a path of this site; default `/profile`).
    #[serde(default)]
    pub next: Option<String>,
}

/// The sign-in form again with `error` above it (a browser's refused passkey).
fn sign_in_again(typed: &PasskeySignIn, error: &Error) -> String {
    pages::sign_in_again(typed.next.as_deref(), error)
}

/// Whose passkey answered, checked: the account and how the check went.
enum Checked {
    Yes(Box<User>, &'static str),
    No,
}

/// Signs in with a passkey alone (its PIN or biometric is the second factor).
#[utoipa::path(post, path = "/login/passkey", tag = "login",
    request_body(content(
        (PasskeySignIn = "application/json"),
        (PasskeySignIn = "application/x-www-form-urlencoded"),
    )),
    params(
        ("flotilla_device" = Option<String>, Cookie, description = "The device cookie, \
            renewed with this account in it."),
    ),
    responses(
        (status = 200, description = "Signed in, as `POST /login` answers: the tokens and \
            the cookies; the session's `amr` `hwk mfa` (or `swk mfa`, a synced passkey).",
            body = Tokens,
            headers(("Set-Cookie" = String, description = "The access, refresh and device \
                cookies."))),
        (status = 303, description = "A form post: on to a same-site `next` (default \
            `/profile`) with the cookies.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 403, description = "`cross_origin_request`: a browser's post from another \
            site; `passkey_refused`: an answer that does not hold, or a challenge used or \
            ended; `email_not_verified` or `account_disabled`: an account that may not sign \
            in. A form gets the sign-in page.", body = ErrorBody),
        (status = 409, description = "`passkeys_unavailable`: the site's address is no \
            domain name.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `passkey` or `passkey_challenge` \
            missing.", body = ErrorBody),
    ))]
pub async fn sign_in(
    input: Input<PasskeySignIn>,
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<State>,
    login: web::Data<Login>,
) -> Result<HttpResponse, Error> {
    login.auth.check_same_origin_with(&req, false)?;
    let refused = || {
        let error: Error = CodeRefusal::PasskeyRefused.into();
        input.refuse(error, sign_in_again)
    };
    let raw = input.raw();
    let mut fields = FieldErrors::new();
    if raw.passkey.trim().is_empty() {
        fields.insert("passkey".into(), "is required".into());
    }
    if raw.passkey_challenge.trim().is_empty() {
        fields.insert("passkey_challenge".into(), "is required".into());
    }
    if !fields.is_empty() {
        return Err(input.refuse(Error::Invalid(fields), sign_in_again));
    }
    let passkeys = login.factors.passkeys.clone();
    if !passkeys.enabled() {
        let error: Error = CodeRefusal::PasskeysUnavailable.into();
        return Err(input.refuse(error, sign_in_again));
    }
    let Ok(answer) = flotilla_auth::passkeys::read_assertion(&raw.passkey) else {
        return Err(refused());
    };
    let Ok((user_id, credential_id)) = passkeys.identify(&answer) else {
        return Err(refused());
    };
    let challenge = raw.passkey_challenge.trim().to_owned();
    let checked = blocking(&state, move |conn| {
        flotilla_db::write_transaction(conn, |conn| {
            let now = flotilla_jobs::now();
            let purpose = ChallengePurpose::SignIn;
            let Some((_, kept)) = Challenge::take(conn, &challenge, purpose, None, now)? else {
                return Ok::<_, Error>(Checked::No);
            };
            let Some(row) = PasskeyRow::by_credential_id(conn, &credential_id)?
                .filter(|row| row.user_id == user_id)
            else {
                return Ok(Checked::No);
            };
            let Ok(key) = flotilla_auth::passkeys::read_passkey(&row.credential) else {
                return Ok(Checked::No);
            };
            let Ok(result) = passkeys.finish_sign_in(&kept, &answer, &key) else {
                return Ok(Checked::No);
            };
            let Some(account) = User::find_active(conn, &user_id)? else {
                return Ok(Checked::No);
            };
            passkey_used(conn, &row, &result, now)?;
            let amr = flotilla_auth::passkeys::amr_of(&result);
            Ok(Checked::Yes(Box::new(account), amr))
        })
    })
    .await?;
    let Checked::Yes(account, amr) = checked else {
        count(&state, "passkey_refused");
        return Err(refused());
    };
    if let Some((_, refusal)) = refusal_of(&account) {
        return Err(input.refuse(refusal.into(), sign_in_again));
    }
    let key = flotilla_auth::token_hash(&account.email.to_lowercase());
    let opening = Opening {
        amr: format!("{amr} mfa"),
        second_step: None,
    };
    let who = origin(&req, &ctx);
    let grant = open_session(&state, &login, *account, key, opening, who).await?;
    let Some(grant) = grant else {
        return Err(refused());
    };
    let devices = devices(&req, &login);
    let next = safe_next(raw.next.as_deref());
    signed_in(
        &state,
        &login,
        &grant,
        &devices,
        input.format(),
        next.as_deref(),
    )
}
