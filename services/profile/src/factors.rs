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
use flotilla_accounts::{Challenge, ChallengePurpose, PasskeyRow, Session};
use flotilla_auth::factors::qr_svg_data_url;
use flotilla_auth::second_factor::{Attempt, challenge_json};
use flotilla_auth::{
    Authenticated, ClientOrigin, Code, CodeRefusal, Proof, SecondFactors, Submission,
};
use flotilla_contracts::AuthEventKind;
use flotilla_kit::api::ErrorBody;
use flotilla_kit::body::BodyFormat as Format;
use flotilla_kit::html::{page_or_json, respond as html, see_other};
use flotilla_kit::input::Input;
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Profile;
use crate::described;
use crate::domain::{Confirm, FactorChange, PasskeyAdd, TotpSetup};
use crate::errors::ProfileError;
use crate::handlers::{changed, check_identity, load, offer_for, refused};
use crate::pages::{self, FactorAction, Setup};
use crate::store::{self, Account, FactorsView};

// The typed answers below keep their fields in alphabetical order: the JSON is what
// `json!()` made before them (serde_json's map sorts its keys), byte for byte.

/// A new authenticator key, for an API client: `{"otpauth_url","pending","secret"}`.
#[derive(Serialize, ToSchema)]
pub struct TotpSetupView {
    /// The key as an `otpauth://totp/…` address (what the QR code holds).
    #[schema(
        example = "otpauth://totp/flotilla:ada%40example.org?secret=JBSWY3DPEHPK3PXP&issuer=flotilla"
    )]
    pub otpauth_url: String,
    /// The key sealed for this account, good for 30 minutes: what `POST /profile/totp`
    /// takes back. Nothing is stored yet.
    pub pending: String,
    /// The key in base32, for typing into the app.
    #[schema(example = "JBSWY3DPEHPK3PXP")]
    pub secret: String,
}

/// New recovery codes, shown once: `{"recovery_codes": […]}`, or `null` when the
/// account's codes stay as they were.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten codes (`xxxxx-xxxxx`), each good once.
    #[schema(required = true, example = json!(["abcde-12345"]))]
    pub recovery_codes: Option<Vec<String>>,
}

/// A passkey registration's challenge, for the page's script: the token to send back
/// as `credential_challenge`, and the options of `navigator.credentials.create`.
#[derive(ToSchema)]
#[allow(dead_code)] // Described only: the answer is flotilla-auth's `challenge_json`.
pub struct PasskeyRegistrationChallenge {
    /// What `POST /profile/passkeys` takes back as `credential_challenge`.
    challenge: String,
    /// WebAuthn's `PublicKeyCredentialCreationOptions` (binary fields in base64url):
    /// a discoverable passkey that asks for user verification, none the account has.
    #[schema(value_type = Object, rename = "publicKey")]
    public_key: serde_json::Value,
}

/// A signed-in browser's page, or 401 to an API client; an anonymous browser signs in
/// first and comes back to `path` (one of this module's, which need no encoding).
fn signed_in_first(req: &HttpRequest, path: &'static str) -> Result<HttpResponse, Error> {
    match wants_html(req.headers()) {
        true => Ok(see_other(&format!("/login?next={path}"))),
        false => Err(flotilla_auth::AuthError::NotAuthenticated.into()),
    }
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

/// A new authenticator key: its QR code, the key as text, and the form that turns it on.
///
/// JSON `{"otpauth_url","pending","secret"}` for an API client. Nothing is stored
/// until `POST /profile/totp` confirms the app's first code.
#[utoipa::path(get, path = "/profile/totp", tag = "profile",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A browser: the page (the QR code is an SVG drawn on \
            the server). An API client: the key.", content(
            (TotpSetupView = "application/json"),
            (String = "text/html"),
        )),
        (status = 303, description = "A browser without a valid session: on to \
            `/login?next=/profile/totp`; an account with an app already: back to \
            `/profile#two-step`.", headers(("Location" = String))),
        (status = 401, description = "An API client without a valid token: \
            `not_authenticated`; `account_gone` when the account was closed or disabled \
            meanwhile.", body = ErrorBody),
        (status = 409, description = "`totp_exists`: the account has an app already \
            (remove it first).", body = ErrorBody),
    ))]
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
    let offer = offer_for(&state, &account).await?;
    if offer.kinds.totp {
        return match wants_html(req.headers()) {
            true => Ok(see_other("/profile#two-step")),
            false => Err(ProfileError::TotpExists.into()),
        };
    }
    let setup = setup_of(&profile, &account, None);
    let body = TotpSetupView {
        otpauth_url: setup.url.clone(),
        pending: setup.pending.clone(),
        secret: setup.key.replace(' ', ""),
    };
    Ok(page_or_json(&req, &body, || {
        pages::totp_setup_page(&account, &who.claims.csrf, &setup, offer, None)
    }))
}

/// Turns an authenticator app on, with its first code and the password.
///
/// The app's first code against the setup form's key (the drift is one step either
/// way; the step is spent), the password, and, when the account has passkeys already,
/// a recovery code or a passkey unless this session proved its second factor in the
/// last ten minutes. As the account's first second factor it comes with ten recovery
/// codes, shown once. Recorded (`totp.added`) and mailed.
#[utoipa::path(post, path = "/profile/totp", tag = "profile",
    request_body(content(
        (TotpSetup = "application/json"),
        (TotpSetup = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A form post, the account's first second factor: the \
            page that shows the recovery codes, once.", content_type = "text/html",
            body = String),
        (status = 201, description = "On: `{\"recovery_codes\":[…]}` as the account's \
            first second factor, else `{\"recovery_codes\":null}` (its codes kept). Never \
            stored by a cache.", body = RecoveryCodes),
        (status = 303, description = "A form post, the account's codes kept: on to \
            `/profile?done=totp-added#two-step`.", headers(("Location" = String))),
        (status = 400, description = "`setup_expired`: a setup form older than 30 minutes, \
            or another account's (a form post gets the setup page again, with a new key).",
            body = ErrorBody),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`; `wrong_code` or `passkey_refused` \
            (the account's passkey or recovery code); `cross_origin_request` or \
            `csrf_token_invalid` (a change made with the cookie). A form post gets the setup \
            page again.", body = ErrorBody),
        (status = 409, description = "`totp_exists`: the account has an app already.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: `code` missing or not the app's code \
            now, `password` missing, or `factor_code` (or `passkey_challenge`) needed or \
            malformed.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn setup(
    sub: Submission<TotpSetup>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let account = load(&state, &who).await?;
    let offer = offer_for(&state, &account).await?;
    let again = |error: Error| {
        let problem = pages::Problem {
            section: "totp",
            message: error.public_message(),
            fields: error.fields().cloned().unwrap_or_default(),
        };
        let setup = setup_of(&profile, &account, Some(&input.raw().pending));
        let page =
            pages::totp_setup_page(&account, &who.claims.csrf, &setup, offer, Some(&problem));
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
    // An account with a second factor already (passkeys) proves it for this one too:
    // else a stolen session and password would add a factor of their own.
    if offer.any() {
        let given = raw
            .factor_code
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
            || raw.passkey.as_deref().is_some_and(|p| !p.trim().is_empty());
        if given {
            let proof = Proof::read_as(
                "factor_code",
                raw.factor_code.as_deref(),
                raw.passkey.as_deref(),
                raw.passkey_challenge.as_deref(),
            )
            .map_err(|(field, problem)| again(Error::invalid(field, problem)))?;
            let attempt = Attempt {
                key: SecondFactors::step_up_key(&account.id),
                failure: AuthEventKind::SecondFactorCheckFailed,
                purpose: ChallengePurpose::Confirm,
                session_id: Some(who.claims.sid.clone()),
                from: who_from.clone(),
            };
            let checked = profile
                .factors
                .check(&state, &account, proof, attempt)
                .await;
            if let Err(error) = checked {
                return Err(again(error));
            }
        } else if !recently_proven(&state, &who).await? {
            let problem = "is required: your account has a passkey, so prove it is you with \
                           it (or type a recovery code) to add an app";
            return Err(again(Error::invalid("factor_code", problem)));
        }
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
    match codes {
        Some(codes) => Ok(codes_shown(&input, &account, &who, &codes, true)),
        // The account's recovery codes stay as they were.
        None => Ok(match input.format() {
            Format::Json => HttpResponse::Created()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(RecoveryCodes {
                    recovery_codes: None,
                }),
            Format::Form => see_other("/profile?done=totp-added#two-step"),
        }),
    }
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
            .json(RecoveryCodes {
                recovery_codes: Some(codes.to_vec()),
            }),
        Format::Form => {
            let page = pages::recovery_codes_page(account, &who.claims.csrf, codes, first);
            html(StatusCode::OK, page)
        }
    }
}

/// `GET /profile/totp/remove`, `GET /profile/recovery-codes` and
/// `GET /profile/passkeys/{id}/remove`: the page that asks for the password and the
/// second factor first. Nothing to change: back to the account page.
async fn change_page(
    who: Authenticated,
    state: &web::Data<State>,
    what: FactorAction,
) -> Result<HttpResponse, Error> {
    let account = load(state, &who).await?;
    let offer = offer_for(state, &account).await?;
    let possible = match &what {
        FactorAction::RemoveTotp => offer.kinds.totp,
        FactorAction::NewCodes => offer.any(),
        FactorAction::RemovePasskey { .. } => offer.kinds.passkeys,
    };
    if !possible {
        return Ok(see_other("/profile#two-step"));
    }
    let page = pages::factor_change_page(&account, &who.claims.csrf, what, offer, None);
    Ok(html(StatusCode::OK, page))
}

/// The page that asks for the password and the second factor before removing the app.
#[utoipa::path(get, path = "/profile/totp/remove", tag = "profile",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 303, description = "A browser without a valid session: on to \
            `/login?next=/profile/totp/remove`; an account without an app: back to \
            `/profile#two-step`.", headers(("Location" = String))),
        (status = 401, description = "An API client without a valid token: \
            `not_authenticated`; `account_gone` when the account was closed or disabled \
            meanwhile.", body = ErrorBody),
    ))]
pub async fn remove_page(
    who: Option<Authenticated>,
    req: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return signed_in_first(&req, "/profile/totp/remove");
    };
    change_page(who, &state, FactorAction::RemoveTotp).await
}

/// The page that asks for the password and the second factor before new recovery codes.
#[utoipa::path(get, path = "/profile/recovery-codes", tag = "profile",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 303, description = "A browser without a valid session: on to \
            `/login?next=/profile/recovery-codes`; an account without a second factor: back \
            to `/profile#two-step`.", headers(("Location" = String))),
        (status = 401, description = "An API client without a valid token: \
            `not_authenticated`; `account_gone` when the account was closed or disabled \
            meanwhile.", body = ErrorBody),
    ))]
pub async fn codes_page(
    who: Option<Authenticated>,
    req: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return signed_in_first(&req, "/profile/recovery-codes");
    };
    change_page(who, &state, FactorAction::NewCodes).await
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
    let offer = offer_for(state, &account).await?;
    let needed = match section {
        "totp-remove" => offer.kinds.totp,
        _ => offer.any(),
    };
    if !needed {
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

/// Removes the authenticator app, with the password and a code (or a passkey).
///
/// The recovery codes go with the last second factor. Recorded and mailed.
#[utoipa::path(delete, path = "/profile/totp", tag = "profile",
    request_body(content(
        (FactorChange = "application/json"),
        (FactorChange = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 303, description = "A form post: on to `/profile?done=two-step-off`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid` (a change made with the cookie). \
            A form post gets the page that asked again.", body = ErrorBody),
        (status = 409, description = "`no_totp`: the account has no authenticator app.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing, or `code` (or \
            `passkey_challenge`) missing or malformed.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
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

/// Ten new recovery codes in place of the old ones, shown once.
///
/// With the password and a code (or a passkey). Recorded and mailed.
#[utoipa::path(post, path = "/profile/recovery-codes", tag = "profile",
    request_body(content(
        (FactorChange = "application/json"),
        (FactorChange = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A form post: the page that shows the new codes, once.",
            content_type = "text/html", body = String),
        (status = 201, description = "The new codes (the old ones are void); never stored by \
            a cache.", body = RecoveryCodes),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid` (a change made with the cookie). \
            A form post gets the page that asked again.", body = ErrorBody),
        (status = 409, description = "`no_totp`: the account has no second factor.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing, or `code` (or \
            `passkey_challenge`) missing or malformed.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
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

/// The account's second factors: the authenticator app's dates, passkeys, codes left.
///
/// Never a secret, a code or a credential.
#[utoipa::path(get, path = "/profile/factors", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Which second factors the account has, and when.",
            body = FactorsView, links(
                ("remove_passkey" = (operation_id = "profile_remove_passkey",
                    parameters(("id" = "$response.body#/passkeys/0/id")),
                    description = "Removes a passkey (here the first).")),
            )),
        (status = 401, description = described::SIGNED_OUT, body = ErrorBody),
    ))]
pub async fn list(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let user_id = who.claims.sub.clone();
    let factors = read(&state, move |conn| store::factors(conn, &user_id)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(FactorsView::of(&factors)))
}

/// A registration challenge for a new passkey, for the page's script.
///
/// `{"challenge","publicKey"}` for `navigator.credentials.create`: a discoverable
/// passkey that asks for user verification, none the account has.
#[utoipa::path(post, path = "/profile/passkeys/options", tag = "profile",
    request_body(description = "May be empty (read as `{}`).", content(
        (Confirm = "application/json"),
        (Confirm = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The challenge (never stored by a cache).",
            body = PasskeyRegistrationChallenge),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = described::CROSS_ORIGIN, body = ErrorBody),
        (status = 409, description = "`passkeys_unavailable`: the site's address is no \
            domain name.", body = ErrorBody),
    ))]
pub async fn passkey_options(
    sub: Submission<Confirm>,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, .. } = sub;
    let passkeys = profile.factors.passkeys.clone();
    if !passkeys.enabled() {
        return Err(CodeRefusal::PasskeysUnavailable.into());
    }
    let account = load(&state, &who).await?;
    let body = blocking(&state, move |conn| {
        let existing = flotilla_auth::passkeys::keys_of(&PasskeyRow::of(conn, &account.id)?);
        let display = account
            .display_name
            .clone()
            .or_else(|| account.username.clone())
            .unwrap_or_else(|| account.email.clone());
        let (options, kept) = passkeys
            .start_registration(&account.id, &account.email, &display, &existing)
            .map_err(|_| Error::from(CodeRefusal::PasskeysUnavailable))?;
        let now = flotilla_jobs::now();
        let purpose = ChallengePurpose::Register;
        let token = Challenge::create(conn, purpose, Some(&account.id), &kept, now)?;
        Ok::<_, Error>(challenge_json(token, options))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// How recently a confirmation with the second factor lets a passkey be added without
/// asking for the factor again (a passkey cannot answer in the form that makes one).
const RECENT_PROOF: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Whether this session's owner proved who they are with two factors within
/// [`RECENT_PROOF`] (signing in, or "Confirm it's you").
async fn recently_proven(state: &web::Data<State>, who: &Authenticated) -> Result<bool, Error> {
    let sid = who.claims.sid.clone();
    let now = flotilla_jobs::now();
    let session = read(state, move |conn| Session::find_live(conn, &sid, now)).await?;
    Ok(session.is_some_and(|s| s.proven_within(RECENT_PROOF, now, true)))
}

/// Adds a passkey: the browser's new credential, its name, and the password.
///
/// The browser's `credential` answers `credential_challenge`; when the account has a
/// second factor, a code too (or a sign-in or confirmation with it in the last ten
/// minutes). The account's first second factor comes with ten recovery codes, shown
/// once. Recorded (`passkey.added`) and mailed.
#[utoipa::path(post, path = "/profile/passkeys", tag = "profile",
    request_body(content(
        (PasskeyAdd = "application/json"),
        (PasskeyAdd = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "A form post, the account's first second factor: the \
            page that shows the recovery codes, once.", content_type = "text/html",
            body = String),
        (status = 201, description = "Added. As the account's first second factor with \
            `{\"recovery_codes\":[…]}` (never stored by a cache); else no body.",
            body = RecoveryCodes),
        (status = 303, description = "A form post: on to \
            `/profile?done=passkey-added#passkeys`.", headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`passkey_refused`: the new credential does not hold \
            or its challenge was used (or the passkey given as second factor was refused); \
            `wrong_password`, `wrong_code`; `cross_origin_request` or `csrf_token_invalid` \
            (a change made with the cookie). A form post gets the account page again.",
            body = ErrorBody),
        (status = 409, description = "`passkey_known`: the passkey is registered already \
            (to this account or another).", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `name` too long or not one line, \
            `password` or `credential` missing, or the second factor's `code` (or \
            `passkey_challenge`) missing or malformed.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn add_passkey(
    sub: Submission<PasskeyAdd>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let section = "passkeys";
    let raw = input.raw();
    let name = match raw.checked() {
        Ok(name) => name,
        Err(fields) => {
            return Err(refused(&state, &who, &input, section, Error::Invalid(fields)).await);
        }
    };
    let account = load(&state, &who).await?;
    let offer = offer_for(&state, &account).await?;
    let sid = who.claims.sid.clone();
    let skip_factor = offer.any()
        && raw.code.as_deref().is_none_or(|c| c.trim().is_empty())
        && raw.passkey.as_deref().is_none_or(|p| p.trim().is_empty())
        && recently_proven(&state, &who).await?;
    let checked = match skip_factor {
        true => {
            let checks = &profile.checks;
            checks
                .check(&state, &account, Some(&sid), &raw.password, &who_from)
                .await
        }
        false => check_identity(&state, &profile, &account, raw, &sid, &who_from).await,
    };
    if let Err(error) = checked {
        return Err(refused(&state, &who, &input, section, error).await);
    }
    let passkeys = &profile.factors.passkeys;
    let (challenge, answer) = (raw.credential_challenge.clone(), raw.credential.clone());
    let user_id = account.id.clone();
    let kept = blocking(&state, move |conn| {
        let now = flotilla_jobs::now();
        let purpose = ChallengePurpose::Register;
        Challenge::take(conn, challenge.trim(), purpose, Some(&user_id), now)
    })
    .await?;
    let made = kept.and_then(|(_, kept)| passkeys.finish_registration(&kept, &answer).ok());
    let Some(key) = made else {
        let error = Error::from(CodeRefusal::PasskeyRefused);
        return Err(refused(&state, &who, &input, section, error).await);
    };
    let Ok(credential) = flotilla_auth::passkeys::passkey_text(&key) else {
        let error = Error::from(CodeRefusal::PasskeyRefused);
        return Err(refused(&state, &who, &input, section, error).await);
    };
    let now = flotilla_jobs::now();
    let row = PasskeyRow {
        id: flotilla_db::new_id(),
        user_id: account.id.clone(),
        credential_id: flotilla_auth::passkeys::credential_id_text(key.cred_id().as_ref()),
        name,
        credential,
        created_at: now,
        last_used_at: None,
    };
    let (factors, user) = (profile.factors.clone(), account.clone());
    let added = blocking(&state, move |conn| {
        store::add_passkey(conn, &factors, &user, &row, &sid, &who_from)
    })
    .await?;
    let Some(codes) = added else {
        let error = ProfileError::PasskeyKnown.into();
        return Err(refused(&state, &who, &input, section, error).await);
    };
    profile.wake.wake("email");
    match codes {
        Some(codes) => Ok(codes_shown(&input, &account, &who, &codes, true)),
        None => Ok(match input.format() {
            Format::Json => HttpResponse::Created().finish(),
            Format::Form => see_other("/profile?done=passkey-added#passkeys"),
        }),
    }
}

/// The page that asks for the password and the second factor before removing a passkey.
#[utoipa::path(get, path = "/profile/passkeys/{id}/remove", tag = "profile",
    params(("id" = String, Path, description = "The passkey's `id` (`GET /profile/factors`).")),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 303, description = "A browser without a valid session: on to \
            `/login?next=/profile#passkeys`; a passkey that is not the account's: back to \
            `/profile#passkeys`.", headers(("Location" = String))),
        (status = 401, description = "An API client without a valid token: \
            `not_authenticated`; `account_gone` when the account was closed or disabled \
            meanwhile.", body = ErrorBody),
    ))]
pub async fn remove_passkey_page(
    who: Option<Authenticated>,
    path: web::Path<String>,
    req: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return signed_in_first(&req, "/profile#passkeys");
    };
    let Some(name) = passkey_name(&state, &who, &path).await? else {
        return Ok(see_other("/profile#passkeys"));
    };
    let what = FactorAction::RemovePasskey {
        id: path.into_inner(),
        name,
    };
    change_page(who, &state, what).await
}

/// The name of one of the account's passkeys, if it is the account's.
async fn passkey_name(
    state: &web::Data<State>,
    who: &Authenticated,
    id: &str,
) -> Result<Option<String>, Error> {
    let (user_id, id) = (who.claims.sub.clone(), id.to_owned());
    read(state, move |conn| {
        let rows = PasskeyRow::of(conn, &user_id)?;
        Ok::<_, Error>(rows.into_iter().find(|r| r.id == id).map(|r| r.name))
    })
    .await
}

/// Removes one of the account's passkeys, with the password and the second factor.
///
/// This passkey may answer for itself. Recorded and mailed.
#[utoipa::path(delete, path = "/profile/passkeys/{id}", tag = "profile",
    params(("id" = String, Path, description = "The passkey's `id` (`GET /profile/factors`).")),
    request_body(content(
        (FactorChange = "application/json"),
        (FactorChange = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Removed."),
        (status = 303, description = "A form post: on to `/profile?done=passkey-removed`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid` (a change made with the cookie). \
            A form post gets the page that asked again.", body = ErrorBody),
        (status = 404, description = "`not_found`: not one of the account's passkeys.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing, or `code` (or \
            `passkey_challenge`) missing or malformed.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn remove_passkey(
    sub: Submission<FactorChange>,
    path: web::Path<String>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let id = path.into_inner();
    let Some(name) = passkey_name(&state, &who, &id).await? else {
        return Err(Error::NotFound);
    };
    let account = load(&state, &who).await?;
    let again = |error: Error| async {
        let offer = match offer_for(&state, &account).await {
            Ok(offer) => offer,
            Err(e) => return e,
        };
        let problem = pages::Problem {
            section: "passkey-remove",
            message: error.public_message(),
            fields: error.fields().cloned().unwrap_or_default(),
        };
        let what = FactorAction::RemovePasskey {
            id: id.clone(),
            name: name.clone(),
        };
        let page =
            pages::factor_change_page(&account, &who.claims.csrf, what, offer, Some(&problem));
        input.refuse(error, |_, _| page)
    };
    if input.raw().password.is_empty() {
        return Err(again(Error::invalid("password", "is required")).await);
    }
    let sid = who.claims.sid.clone();
    let checked = check_identity(&state, &profile, &account, input.raw(), &sid, &who_from).await;
    if let Err(error) = checked {
        return Err(again(error).await);
    }
    let (factors, user, key) = (profile.factors.clone(), account.clone(), id.clone());
    let removed = blocking(&state, move |conn| {
        store::remove_passkey(conn, &factors, &user, &key, &sid, &who_from)
    })
    .await?;
    if !removed {
        return Err(Error::NotFound);
    }
    profile.wake.wake("email");
    Ok(changed(&input, "passkey-removed"))
}

/// The page's form that removes the authenticator app (`DELETE /profile/totp`).
#[utoipa::path(post, path = "/profile/totp/remove", tag = "profile",
    request_body(content(
        (FactorChange = "application/x-www-form-urlencoded"),
        (FactorChange = "application/json"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "JSON: removed."),
        (status = 303, description = "Removed: on to `/profile?done=two-step-off`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid`: the page that asked, again.",
            body = ErrorBody),
        (status = 409, description = "`no_totp`: the account has no authenticator app.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing, or `code` missing \
            or malformed: the page that asked, again.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn remove_form(
    sub: Submission<FactorChange>,
    from: ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    remove(sub, from, state, profile).await
}

/// The page's form that removes a passkey (`DELETE /profile/passkeys/{id}`).
#[utoipa::path(post, path = "/profile/passkeys/{id}/remove", tag = "profile",
    params(("id" = String, Path, description = "The passkey's `id`.")),
    request_body(content(
        (FactorChange = "application/x-www-form-urlencoded"),
        (FactorChange = "application/json"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "JSON: removed."),
        (status = 303, description = "Removed: on to `/profile?done=passkey-removed`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid`: the page that asked, again.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: not one of the account's passkeys.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing, or `code` (or \
            `passkey_challenge`) missing or malformed: the page that asked, again.",
            body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn remove_passkey_form(
    sub: Submission<FactorChange>,
    path: web::Path<String>,
    from: ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    remove_passkey(sub, path, from, state, profile).await
}
