//! The account's second factors, managed by their owner: setting up an authenticator
//! app (a QR code drawn on the server, so no script is needed, and the key as text),
//! confirmed by its first code and the password; the ten recovery codes it comes with,
//! shown once; new codes; removing the app. Each change asks for the password and a
//! code ([`crate::handlers::check_identity`]), is recorded in the account's activity
//! and mailed to its owner.
//!
//! Nothing is stored while an app is being set up: the setup form carries the new key
//! sealed with `FLOTILLA_FACTOR_KEY` for this account, good for half an hour.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_auth::factors::qr_svg_data_url;
use flotilla_auth::{Authenticated, ClientOrigin, Code, Submission};
use flotilla_kit::body::BodyFormat as Format;
use flotilla_kit::html::{page_or_json, respond as html, see_other};
use flotilla_kit::input::Input;
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, State};
use serde_json::json;

use crate::Profile;
use crate::domain::{FactorChange, TotpSetup};
use crate::errors::ProfileError;
use crate::handlers::{changed, check_identity, load, refused};
use crate::pages::{self, FactorAction, Setup};
use crate::store::{self, Account};

/// A signed-in browser's page, or 401 to an API client; an anonymous browser signs in
/// first and comes back to `path` (one of this module's, which need no encoding).
fn signed_in_first(req: &HttpRequest, path: &'static str) -> Result<HttpResponse, Error> {
    match wants_html(req.headers()) {
        true => Ok(see_other(&format!("/login?next={path}"))),
        false => Err(flotilla_auth::AuthError::NotAuthenticated.into()),
    }
}

async fn has_totp(state: &web::Data<State>, account: &Account) -> Result<bool, Error> {
    let id = account.id.clone();
    read(state, move |conn| {
        flotilla_accounts::has_second_factor(conn, &id)
    })
    .await
}

/// The setup page's parts for a new key, or for the key a refused form carried.
fn setup_of(profile: &Profile, account: &Account, pending: Option<&str>) -> Setup {
    let now = flotilla_jobs::now();
    let (secret, pending) = match pending.and_then(|p| {
        let secret = profile.factors.pending_secret(&account.id, p, now)?;
        Some((secret, p.to_owned()))
    }) {
        Some(kept) => kept,
        None => {
            let enrolment = profile.factors.begin_enrolment(&account.id, now);
            (enrolment.secret, enrolment.pending)
        }
    };
    let url = secret.provisioning_url(&account.email).unwrap_or_default();
    Setup {
        qr: qr_svg_data_url(&url).unwrap_or_default(),
        key: secret.base32_grouped(),
        url,
        pending,
    }
}

/// `GET /profile/totp`: a new key as a QR code and as text, and the form that turns it
/// on; JSON `{"secret","otpauth_url","pending"}` for an API client. An account that
/// has an app is sent back to its page (409 `totp_exists` to a client).
pub async fn setup_page(
    who: Option<Authenticated>,
    req: HttpRequest,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return signed_in_first(&req, "/profile/totp");
    };
    let account = load(&state, &who).await?;
    if has_totp(&state, &account).await? {
        return match wants_html(req.headers()) {
            true => Ok(see_other("/profile#two-step")),
            false => Err(ProfileError::TotpExists.into()),
        };
    }
    let setup = setup_of(&profile, &account, None);
    let secret = setup.key.replace(' ', "");
    let body = json!({"secret": secret, "otpauth_url": setup.url, "pending": setup.pending});
    Ok(page_or_json(&req, &body, || {
        pages::totp_setup_page(&account, &who.claims.csrf, &setup, None)
    }))
}

/// `POST /profile/totp`: the app's first code, the setup form's key and the password.
/// The recovery codes, shown once (a page, or 201 `{"recovery_codes"}`).
pub async fn setup(
    sub: Submission<TotpSetup>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let account = load(&state, &who).await?;
    let again = |error: Error| {
        let problem = pages::Problem {
            section: "totp",
            message: error.public_message(),
            fields: error.fields().cloned().unwrap_or_default(),
        };
        let setup = setup_of(&profile, &account, Some(&input.raw().pending));
        let page = pages::totp_setup_page(&account, &who.claims.csrf, &setup, Some(&problem));
        input.refuse(error, |_, _| page)
    };
    let raw = input.raw();
    let now = flotilla_jobs::now();
    let Some(secret) = profile
        .factors
        .pending_secret(&account.id, &raw.pending, now)
    else {
        return Err(again(ProfileError::SetupExpired.into()));
    };
    let mut fields = FieldErrors::new();
    let digits = match Code::parse(&raw.code) {
        Ok(Code::Totp(digits)) => Some(digits),
        Ok(Code::Recovery(_)) | Err(_) if raw.code.trim().is_empty() => {
            fields.insert("code".into(), "is required".into());
            None
        }
        _ => {
            fields.insert(
                "code".into(),
                "must be the 6 digits your app shows for flotilla".into(),
            );
            None
        }
    };
    if raw.password.is_empty() {
        fields.insert("password".into(), "is required".into());
    }
    if !fields.is_empty() {
        return Err(again(Error::Invalid(fields)));
    }
    let unix = u64::try_from(now.and_utc().timestamp()).unwrap_or(0);
    let Some(step) = digits.and_then(|d| secret.check(&d, unix, None)) else {
        let problem = "is not the code your app shows now: check that the phone's clock is \
                       right, and type the newest code";
        return Err(again(Error::invalid("code", problem)));
    };
    let checks = &profile.checks;
    if let Err(error) = checks
        .check(&state, &account, None, &raw.password, &who_from)
        .await
    {
        return Err(again(error));
    }
    let sealed = profile.factors.seal_secret(&account.id, &secret);
    let (factors, user, sid) = (
        profile.factors.clone(),
        account.clone(),
        who.claims.sid.clone(),
    );
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let codes = blocking(&state, move |conn| {
        store::add_totp(conn, &factors, &user, &sealed, step, &sid, &who_from)
    })
    .await?;
    let Some(codes) = codes else {
        return Err(again(ProfileError::TotpExists.into()));
    };
    profile.wake.wake("email");
    Ok(codes_shown(&input, &account, &who, &codes, true))
}

/// New recovery codes, shown once: 201 `{"recovery_codes"}` to an API client, the
/// page to a form; never stored by a cache.
fn codes_shown<T>(
    input: &Input<T>,
    account: &Account,
    who: &Authenticated,
    codes: &[String],
    first: bool,
) -> HttpResponse {
    match input.format() {
        Format::Json => HttpResponse::Created()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"recovery_codes": codes})),
        Format::Form => {
            let page = pages::recovery_codes_page(account, &who.claims.csrf, codes, first);
            html(StatusCode::OK, page)
        }
    }
}

/// `GET /profile/totp/remove` and `GET /profile/recovery-codes`: the page that asks
/// for the password and a code first.
async fn change_page(
    who: Option<Authenticated>,
    req: HttpRequest,
    state: web::Data<State>,
    what: FactorAction,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return signed_in_first(&req, what.action());
    };
    let account = load(&state, &who).await?;
    if !has_totp(&state, &account).await? {
        return Ok(see_other("/profile#two-step"));
    }
    let page = pages::factor_change_page(&account, &who.claims.csrf, what, None);
    Ok(html(StatusCode::OK, page))
}

pub async fn remove_page(
    who: Option<Authenticated>,
    req: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    change_page(who, req, state, FactorAction::RemoveTotp).await
}

pub async fn codes_page(
    who: Option<Authenticated>,
    req: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    change_page(who, req, state, FactorAction::NewCodes).await
}

/// Checks the password and the code of a change of the factors; the account, or the
/// refusal (shown on the change's page to a form).
async fn proven(
    state: &web::Data<State>,
    profile: &Profile,
    who: &Authenticated,
    input: &Input<FactorChange>,
    from: &store::Origin,
    section: &'static str,
) -> Result<Account, Error> {
    let account = load(state, who).await?;
    if !has_totp(state, &account).await? {
        return Err(refused(state, who, input, section, ProfileError::NoTotp.into()).await);
    }
    if input.raw().password.is_empty() {
        let error = Error::invalid("password", "is required");
        return Err(refused(state, who, input, section, error).await);
    }
    let sid = &who.claims.sid;
    let checked = check_identity(state, profile, &account, input.raw(), sid, from).await;
    if let Err(error) = checked {
        return Err(refused(state, who, input, section, error).await);
    }
    Ok(account)
}

/// `POST /profile/totp/remove` (a form) or `DELETE /profile/totp`: removes the app and
/// its recovery codes.
pub async fn remove(
    sub: Submission<FactorChange>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let section = "totp-remove";
    let account = proven(&state, &profile, &who, &input, &who_from, section).await?;
    let (factors, sid) = (profile.factors.clone(), who.claims.sid.clone());
    let removed = blocking(&state, move |conn| {
        store::remove_totp(conn, &factors, &account, &sid, &who_from)
    })
    .await?;
    if !removed {
        return Err(refused(&state, &who, &input, section, ProfileError::NoTotp.into()).await);
    }
    profile.wake.wake("email");
    Ok(changed(&input, "two-step-off"))
}

/// `POST /profile/recovery-codes`: ten new codes in place of the old ones, shown once.
pub async fn regenerate(
    sub: Submission<FactorChange>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let section = "recovery-codes";
    let account = proven(&state, &profile, &who, &input, &who_from, section).await?;
    let (factors, user, sid) = (
        profile.factors.clone(),
        account.clone(),
        who.claims.sid.clone(),
    );
    let codes = blocking(&state, move |conn| {
        store::regenerate_codes(conn, &factors, &user, &sid, &who_from)
    })
    .await?;
    let Some(codes) = codes else {
        return Err(refused(&state, &who, &input, section, ProfileError::NoTotp.into()).await);
    };
    profile.wake.wake("email");
    Ok(codes_shown(&input, &account, &who, &codes, false))
}

/// `GET /profile/factors`: which second factors the account has (never a secret).
pub async fn list(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let user_id = who.claims.sub.clone();
    let factors = read(&state, move |conn| store::factors(conn, &user_id)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(store::factors_json(&factors)))
}
