//! Profile's routes. Each checks its input first (the extractors check the token and,
//! for changes made with cookies, the CSRF rule), then acts.

use chrono::TimeDelta;
use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_accounts::{plausible_token, summarise_user_agent};
use flotilla_auth::{Authenticated, CarriesCsrf, ClientOrigin, RequestOrigin, Submission};
use flotilla_contracts::Event;
use flotilla_kit::api::ErrorBody;
use flotilla_kit::body::BodyFormat as Format;
use flotilla_kit::html::{respond as html, see_other};
use flotilla_kit::input::{Input, Then};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, RequestContext, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::described;
use crate::domain::{
    Confirm, Deletion, EmailChange, LinkToken, PasswordChange, ProfilePatch, Proof,
};
use crate::errors::ProfileError;
use crate::store::{self, Account, Confirmed, Me, Origin, Requested, Updated};
use crate::{Profile, pages};
use flotilla_accounts::email_link::Link;
use flotilla_auth::SecondFactors;
use flotilla_auth::second_factor::Attempt;
use flotilla_contracts::AuthEventKind;

/// What is busy when the hashing pool is full.
const BUSY: &str = "passwords are being checked";

fn origin(req: &HttpRequest, ctx: &RequestContext) -> Origin {
    Origin::of(req, ctx)
}

fn gone() -> Error {
    ProfileError::AccountGone.into()
}

/// The account of a token, or 401 when it was closed meanwhile.
pub(crate) async fn load(state: &web::Data<State>, who: &Authenticated) -> Result<Account, Error> {
    let user_id = who.claims.sub.clone();
    read(state, move |conn| store::account(conn, &user_id))
        .await?
        .ok_or_else(gone)
}

/// Checks the account's password (flotilla-auth's [`flotilla_auth::PasswordChecks`]:
/// 403 `wrong_password` recorded as `password.check_failed`, 429 after too many).
async fn check_password(
    state: &web::Data<State>,
    profile: &Profile,
    account: &Account,
    candidate: &str,
    from: &Origin,
) -> Result<(), Error> {
    let checks = &profile.checks;
    checks.check(state, account, None, candidate, from).await
}

/// What a form that asks who it is offers for the account's second factor.
pub(crate) async fn offer_for(
    state: &web::Data<State>,
    account: &Account,
) -> Result<pages::Offer, Error> {
    let id = account.id.clone();
    let kinds = read(state, move |conn| {
        flotilla_accounts::FactorKinds::of(conn, &id)
    })
    .await?;
    Ok(pages::Offer {
        kinds,
        passkeys_on: flotilla_auth::passkeys::available(&state.config.public_url),
    })
}

/// Checks who asks for a sensitive change: the account's password and, when it has a
/// second factor, its code (TOTP or a recovery code), each throttled per account. A
/// missing or malformed code is a 422 on `code` before anything is checked.
pub(crate) async fn check_identity<P: Proof>(
    state: &web::Data<State>,
    profile: &Profile,
    account: &Account,
    proof: &P,
    session_id: &str,
    from: &Origin,
) -> Result<(), Error> {
    let id = account.id.clone();
    let needs_code = read(state, move |conn| {
        flotilla_accounts::has_second_factor(conn, &id)
    })
    .await?;
    let code = match needs_code {
        true => Some(
            proof
                .second_factor()
                .map_err(|(field, problem)| Error::invalid(field, problem))?,
        ),
        false => None,
    };
    check_password(state, profile, account, proof.password(), from).await?;
    if let Some(code) = code {
        let attempt = Attempt {
            key: SecondFactors::step_up_key(&account.id),
            failure: AuthEventKind::SecondFactorCheckFailed,
            purpose: flotilla_accounts::ChallengePurpose::Confirm,
            session_id: Some(session_id.to_owned()),
            from: from.clone(),
        };
        profile.factors.check(state, account, code, attempt).await?;
        profile.wake.wake("email");
    }
    Ok(())
}

/// After a form post: back to the page with a notice.
fn done(notice: &str) -> HttpResponse {
    see_other(&format!("/profile?done={notice}"))
}

/// A change done: 204 to an API client; a form goes back to the page with `notice`.
pub(crate) fn changed<T>(input: &Input<T>, notice: &str) -> HttpResponse {
    match input.format() {
        Format::Json => HttpResponse::NoContent().finish(),
        Format::Form => done(notice),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The change just made, whose notice the page shows: `saved`, `password`, `email`,
    /// `revoked`, `revoked-others`, `totp-added`, `two-step-off`, `passkey-added`,
    /// `passkey-removed` (anything else shows none).
    done: Option<String>,
}

/// The account page.
///
/// Anonymous browsers are sent to sign in (which renews a session from its refresh
/// cookie without the password when it can).
#[utoipa::path(get, path = "/profile", tag = "profile",
    params(PageQuery),
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The account page (works without JavaScript).",
            content_type = "text/html", body = String),
        (status = 303, description = "No valid session: on to `/login?next=/profile`.",
            headers(("Location" = String))),
        (status = 400, description = "`malformed_query`.", body = ErrorBody),
        (status = 401, description = "`account_gone`: the token holds, but its account \
            was closed or disabled meanwhile.", body = ErrorBody),
    ))]
pub async fn page(
    who: Option<Authenticated>,
    query: web::Query<PageQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return Ok(see_other("/login?next=/profile"));
    };
    let view = page_view(&state, &who).await?;
    Ok(html(
        StatusCode::OK,
        pages::account_page(&view, query.done.as_deref(), None),
    ))
}

async fn page_view(state: &web::Data<State>, who: &Authenticated) -> Result<pages::View, Error> {
    let user_id = who.claims.sub.clone();
    let (account, sessions, activity, factors) = read(state, move |conn| {
        Ok::<_, Error>((
            store::account(conn, &user_id)?,
            store::live_sessions(conn, &user_id)?,
            store::activity(conn, &user_id, 20)?,
            store::factors(conn, &user_id)?,
        ))
    })
    .await?;
    Ok(pages::View {
        account: account.ok_or_else(gone)?,
        sessions,
        activity,
        factors,
        passkeys_on: flotilla_auth::passkeys::available(&state.config.public_url),
        current_session: who.claims.sid.clone(),
        csrf: who.claims.csrf.clone(),
    })
}

/// A change refused: the error to an API client; to a form, the account page again
/// with the problem in its `section` (with the error's status and `Retry-After`).
pub(crate) async fn refused<T>(
    state: &web::Data<State>,
    who: &Authenticated,
    input: &Input<T>,
    section: &'static str,
    error: Error,
) -> Error {
    if !input.is_form() {
        return error;
    }
    let view = match page_view(state, who).await {
        Ok(view) => view,
        Err(e) => return e,
    };
    let problem = pages::Problem {
        section,
        message: error.public_message(),
        fields: error.fields().cloned().unwrap_or_default(),
    };
    let page = match section {
        // Closing is refused on its own page, where it was asked.
        "delete" => {
            pages::close_account_page(&view.account, &view.csrf, view.offer(), Some(&problem))
        }
        "totp-remove" | "recovery-codes" => {
            let what = match section {
                "totp-remove" => pages::FactorAction::RemoveTotp,
                _ => pages::FactorAction::NewCodes,
            };
            let offer = view.offer();
            pages::factor_change_page(&view.account, &view.csrf, what, offer, Some(&problem))
        }
        "passkey-remove" => {
            // The passkey's own page: its id is the route's, and not known here.
            pages::account_page(&view, None, Some(&problem))
        }
        _ => pages::account_page(&view, None, Some(&problem)),
    };
    input.refuse(error, |_, _| page)
}

/// "Close your account": what closing does, and the form that does it.
///
/// The form posts to `POST /profile/delete`; a refused attempt comes back here.
#[utoipa::path(get, path = "/profile/delete", tag = "profile",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 303, description = "No valid session: on to `/login?next=/profile/delete`.",
            headers(("Location" = String))),
        (status = 401, description = "`account_gone`: the token holds, but its account \
            was closed or disabled meanwhile.", body = ErrorBody),
    ))]
pub async fn close_page(
    who: Option<Authenticated>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return Ok(see_other("/login?next=/profile/delete"));
    };
    let account = load(&state, &who).await?;
    let offer = offer_for(&state, &account).await?;
    Ok(html(
        StatusCode::OK,
        pages::close_account_page(&account, &who.claims.csrf, offer, None),
    ))
}

/// The page that asks before signing out everywhere else.
///
/// How many sessions would end, the button that ends them
/// (`POST /profile/sessions/revoke-others`), and the way back.
#[utoipa::path(get, path = "/profile/sessions/revoke-others", tag = "profile",
    security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 303, description = "No valid session: on to \
            `/login?next=/profile/sessions/revoke-others`.", headers(("Location" = String))),
        (status = 401, description = "`account_gone`: the token holds, but its account \
            was closed or disabled meanwhile.", body = ErrorBody),
    ))]
pub async fn revoke_others_page(
    who: Option<Authenticated>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let Some(who) = who else {
        return Ok(see_other("/login?next=/profile/sessions/revoke-others"));
    };
    let (user_id, current) = (who.claims.sub.clone(), who.claims.sid.clone());
    let (account, others) = read(&state, move |conn| {
        let account = store::account(conn, &user_id)?;
        let sessions = store::live_sessions(conn, &user_id)?;
        let others = sessions.iter().filter(|s| s.id != current).count();
        Ok::<_, Error>((account, others))
    })
    .await?;
    let account = account.ok_or_else(gone)?;
    Ok(html(
        StatusCode::OK,
        pages::revoke_others_page(&account, &who.claims.csrf, others),
    ))
}

/// The signed-in account.
#[utoipa::path(get, path = "/profile/me", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The account as its owner sees it (never stored by a \
            cache).", body = Me),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
    ))]
pub async fn me(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let account = load(&state, &who).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Me::of(&account)))
}

/// A patch body: any JSON object (unknown fields are named in the 422) or the form.
/// Described as [`ProfileEdit`] (JSON) and [`ProfileEditForm`].
#[derive(Deserialize)]
#[serde(transparent)]
pub struct PatchBody(serde_json::Map<String, serde_json::Value>);

/// A change of the profile in JSON: each field present is set, `null` or `""` clears
/// it; any other field is named in the 422.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Described only: the body is read as a `PatchBody`.
pub struct ProfileEdit {
    /// 3 to 32 of `a-z 0-9 _ . -`, starting with a letter or digit; unique whatever
    /// the case (an account whose address is not confirmed does not keep one).
    #[schema(example = "ada")]
    username: Option<String>,
    /// At most 64 characters on one line, any Unicode.
    #[schema(example = "Ada Lovelace")]
    display_name: Option<String>,
    /// At most 2,000 characters; line breaks and tabs allowed.
    bio: Option<String>,
    /// Whether the static site publishes the profile at `/people/<username>`.
    #[schema(required = false)]
    public: bool,
    /// The session's form token, with the cookie (or the `x-csrf-token` header).
    csrf_token: Option<String>,
}

/// The account page's profile form: every field is sent; empty clears; an unticked
/// `public` is off.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Described only: the body is read as a `PatchBody`.
pub struct ProfileEditForm {
    /// 3 to 32 of `a-z 0-9 _ . -`, starting with a letter or digit.
    #[schema(required = false)]
    username: String,
    /// At most 64 characters on one line.
    #[schema(required = false)]
    display_name: String,
    /// At most 2,000 characters (a line break counts once).
    #[schema(required = false)]
    bio: String,
    /// `on` when ticked (absent: off).
    #[schema(required = false, example = "on")]
    public: String,
    /// The session's form token.
    #[schema(required = false)]
    csrf_token: String,
}

impl CarriesCsrf for PatchBody {
    fn csrf_token(&self) -> Option<&str> {
        self.0.get("csrf_token").and_then(|v| v.as_str())
    }
}

/// Changes the profile: username, display name, bio, public.
///
/// Publishes `user.updated`.
#[utoipa::path(patch, path = "/profile/me", tag = "profile",
    request_body(content(
        (ProfileEdit = "application/json"),
        (ProfileEditForm = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "Saved: the account as it is now.", body = Me),
        (status = 303, description = "A form post: on to `/profile?done=saved`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = described::CROSS_ORIGIN, body = ErrorBody),
        (status = 409, description = "`username_taken` (whatever its case; also when two \
            changes race). A form post gets the account page again.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: each bad value and each unknown \
            field named (a form post gets the account page again).", body = ErrorBody),
    ))]
pub async fn update(
    sub: Submission<PatchBody>,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let parsed = match input.format() {
        Format::Json => ProfilePatch::from_json(&input.raw().0),
        Format::Form => {
            let form: BTreeMap<String, String> = input
                .raw()
                .0
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            ProfilePatch::from_form(&form)
        }
    };
    let patch = match parsed {
        Ok(patch) => patch,
        Err(fields) => {
            return Err(refused(&state, &who, &input, "profile", Error::Invalid(fields)).await);
        }
    };
    let user_id = who.claims.sub.clone();
    let outcome = if patch.is_empty() {
        let id = user_id.clone();
        blocking(&state, move |conn| store::account(conn, &id))
            .await?
            .map_or(Updated::Gone, |a| Updated::Done(Box::new(a)))
    } else {
        let change = patch.clone();
        let id = user_id.clone();
        blocking(&state, move |conn| {
            store::update_profile(conn, &id, &change)
        })
        .await?
    };
    match outcome {
        Updated::Done(account) => {
            if !patch.is_empty() {
                profile.auth.publish(&Event::UserUpdated { id: user_id });
            }
            Ok(match input.format() {
                Format::Json => HttpResponse::Ok().json(Me::of(&account)),
                Format::Form => done("saved"),
            })
        }
        Updated::UsernameTaken => {
            let error = ProfileError::UsernameTaken.into();
            Err(refused(&state, &who, &input, "profile", error).await)
        }
        Updated::Gone => Err(gone()),
    }
}

/// The account page's profile form (`PATCH /profile/me` for a browser without script).
#[utoipa::path(post, path = "/profile/me", tag = "profile",
    request_body(content(
        (ProfileEditForm = "application/x-www-form-urlencoded"),
        (ProfileEdit = "application/json"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "JSON: saved, the account as it is now.", body = Me),
        (status = 303, description = "Saved: on to `/profile?done=saved`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = described::CROSS_ORIGIN, body = ErrorBody),
        (status = 409, description = "`username_taken`: the account page again.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: the account page again, each bad \
            value named beside its field.", body = ErrorBody),
    ))]
pub async fn update_form(
    sub: Submission<PatchBody>,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    update(sub, state, profile).await
}

/// Changes the password; every other session ends.
///
/// Pending reset and change-of-address links are voided, and a notice is mailed.
#[utoipa::path(post, path = "/profile/password", tag = "profile",
    request_body(content(
        (PasswordChange = "application/json"),
        (PasswordChange = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Changed; every other session is ended."),
        (status = 303, description = "A form post: on to `/profile?done=password`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password` (the current password, recorded as \
            `password.check_failed`), `wrong_code` or `passkey_refused` (the second factor); \
            `cross_origin_request` or `csrf_token_invalid` (a change made with the cookie). \
            A form post gets the account page again.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `current_password` or `new_password` \
            missing, the new password against the policy, or the second factor's `code` \
            (or `passkey_challenge`) missing or malformed.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = "`busy`: too many passwords being hashed; or the \
            database is unavailable (`database_unavailable`) or the service overloaded \
            (`overloaded`).", body = ErrorBody),
    ))]
pub async fn password(
    sub: Submission<PasswordChange>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let mut fields = FieldErrors::new();
    if input.raw().current_password.is_empty() {
        fields.insert("current_password".into(), "is required".into());
    }
    if input.raw().new_password.is_empty() {
        fields.insert("new_password".into(), "is required".into());
    }
    if !fields.is_empty() {
        return Err(refused(&state, &who, &input, "password", Error::Invalid(fields)).await);
    }
    let account = load(&state, &who).await?;
    let new_password = match profile
        .config
        .passwords
        .policy
        .check(&input.raw().new_password, &account.email)
    {
        Ok(password) => password,
        Err(problem) => {
            let error = Error::invalid("new_password", problem);
            return Err(refused(&state, &who, &input, "password", error).await);
        }
    };
    let sid = &who.claims.sid;
    let checked = check_identity(&state, &profile, &account, input.raw(), sid, &who_from);
    if let Err(error) = checked.await {
        return Err(refused(&state, &who, &input, "password", error).await);
    }
    let hash = profile
        .hashes
        .hash(new_password)
        .await
        .map_err(|e| e.answer(BUSY))?;
    let config = profile.config.clone();
    let (user_id, keep) = (who.claims.sub.clone(), who.claims.sid.clone());
    let ended = blocking(&state, move |conn| {
        store::change_password(conn, &config, &user_id, &keep, &hash, &who_from)
    })
    .await?;
    profile.auth.announce_revoked(&ended);
    profile.wake.wake("email");
    Ok(changed(&input, "password"))
}

/// Asks to change the address: a link to the new one confirms it.
///
/// A notice (the new address masked) goes to the old one; the address changes only
/// when the link is used. A new request voids the links of earlier ones.
#[utoipa::path(post, path = "/profile/email", tag = "profile",
    request_body(content(
        (EmailChange = "application/json"),
        (EmailChange = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 202, description = "The link is on its way (if the address is another \
            account's, its owner is told instead).", body = EmailChangeSent),
        (status = 303, description = "A form post: on to `/profile?done=email`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid` (a change made with the cookie). \
            A form post gets the account page again.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `new_email` (malformed, or the \
            account's address already), `password` missing, or the second factor's `code` \
            missing or malformed.", body = ErrorBody),
        (status = 429, description = "`too_many_requests`: a change was asked for less than \
            a minute ago (checked before the password); `too_many_attempts`: too many wrong \
            passwords or codes.", body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn email(
    sub: Submission<EmailChange>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let new_email = match input.raw().check() {
        Ok(email) => email,
        Err(fields) => {
            return Err(refused(&state, &who, &input, "email", Error::Invalid(fields)).await);
        }
    };
    let account = load(&state, &who).await?;
    if account.email.eq_ignore_ascii_case(new_email.as_ref()) {
        let error = Error::invalid("new_email", "is already the address of this account");
        return Err(refused(&state, &who, &input, "email", error).await);
    }
    // Once a minute, checked before the password: a flood of requests costs no hash.
    let id = who.claims.sub.clone();
    if let Some(wait_secs) = read(&state, move |conn| store::email_change_wait(conn, &id)).await? {
        let error = ProfileError::EmailChangeTooSoon { wait_secs }.into();
        return Err(refused(&state, &who, &input, "email", error).await);
    }
    let sid = &who.claims.sid;
    let checked = check_identity(&state, &profile, &account, input.raw(), sid, &who_from);
    if let Err(error) = checked.await {
        return Err(refused(&state, &who, &input, "email", error).await);
    }
    let (config, user_id) = (profile.config.clone(), who.claims.sub.clone());
    let requested = blocking(&state, move |conn| {
        store::request_email_change(conn, &config, &user_id, &new_email, &who_from)
    })
    .await?;
    if let Requested::TooSoon(wait_secs) = requested {
        let error = ProfileError::EmailChangeTooSoon { wait_secs }.into();
        return Err(refused(&state, &who, &input, "email", error).await);
    }
    profile.wake.wake("email");
    Ok(match input.format() {
        Format::Json => HttpResponse::Accepted().json(EmailChangeSent {
            message: "Follow the link sent to the new address to confirm it; until then the \
                      address does not change.",
            status: "verification_sent",
        }),
        Format::Form => done("email"),
    })
}

// The typed answers below keep their fields in alphabetical order: the JSON is what
// `json!()` made before them (serde_json's map sorts its keys), byte for byte.

/// A change of address asked for: `{"message","status":"verification_sent"}`.
#[derive(Serialize, ToSchema)]
pub struct EmailChangeSent {
    /// What happens next, for a person.
    pub message: &'static str,
    #[schema(example = "verification_sent")]
    pub status: &'static str,
}

/// A change-of-address link: `{"status": …}`.
#[derive(Serialize, ToSchema)]
pub struct EmailLinkStatus {
    /// `valid` (a link that can be used), `email_changed` (it was used).
    #[schema(example = "valid")]
    pub status: &'static str,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token of the confirmation mail's link.
    token: Option<String>,
}

/// A link that does not work, as a page for a browser or an error for a client.
fn link_refused(refusal: ProfileError, browser: bool) -> Error {
    let page = || pages::link_problem(&refusal.message());
    Error::from(refusal).for_browser(browser, page)
}

/// Opens a change-of-address link: a page whose button uses it.
///
/// Or `200 {"status":"valid"}` to an API client. Nothing changes, so a mail scanner
/// that follows the link confirms nothing. No session is needed.
#[utoipa::path(get, path = "/profile/email/confirm", tag = "profile",
    params(TokenQuery),
    responses(
        (status = 200, description = "A browser: the page whose button posts the token. \
            An API client: `{\"status\":\"valid\"}`.", content(
            (EmailLinkStatus = "application/json"),
            (String = "text/html"),
        )),
        (status = 400, description = "`token_invalid` (used, unknown or missing) or \
            `token_expired` (a page for a browser); `malformed_query`.", body = ErrorBody),
    ))]
pub async fn confirm_email_page(
    req: HttpRequest,
    query: web::Query<TokenQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let browser = wants_html(req.headers());
    let Some(token) = query.token.as_deref().and_then(plausible_token) else {
        return Err(link_refused(ProfileError::LinkInvalid, browser));
    };
    let hash = flotilla_auth::token_hash(token);
    let link = read(&state, move |conn| {
        store::check_email_change_link(conn, &hash)
    })
    .await?;
    let refusal = match link {
        Link::Valid { .. } if browser => {
            return Ok(html(StatusCode::OK, pages::email_confirm_form(token)));
        }
        Link::Valid { .. } => {
            return Ok(HttpResponse::Ok().json(EmailLinkStatus { status: "valid" }));
        }
        Link::Invalid => ProfileError::LinkInvalid,
        Link::Expired => ProfileError::LinkExpired,
    };
    Err(link_refused(refusal, browser))
}

/// Uses a change-of-address link: the account's address becomes the new one.
///
/// The link's page posts its form here, or an API client `{"token"}`; only from this
/// site's pages (or a client that is no browser). Publishes `user.updated`.
#[utoipa::path(post, path = "/profile/email/confirm", tag = "profile",
    request_body(content(
        (LinkToken = "application/json"),
        (LinkToken = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "The address is changed: \
            `{\"status\":\"email_changed\"}`, or a page for the form.", content(
            (EmailLinkStatus = "application/json"),
            (String = "text/html"),
        )),
        (status = 400, description = "`token_invalid` (used, unknown or missing) or \
            `token_expired`.", body = ErrorBody),
        (status = 403, description = "`cross_origin_request`: a browser's post from \
            another site.", body = ErrorBody),
        (status = 409, description = "`email_taken`: the address became another account's \
            before the link was used.", body = ErrorBody),
    ))]
pub async fn confirm_email(
    input: Input<LinkToken>,
    req: HttpRequest,
    ctx: RequestContext,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    // Only this site's page (or a client that is no browser) spends a link.
    profile.auth.check_same_origin_with(&req, false)?;
    let outcome = match input.raw().token() {
        Some(token) => {
            let hash = flotilla_auth::token_hash(token);
            let from = origin(&req, &ctx);
            blocking(&state, move |conn| {
                store::confirm_email_change(conn, &hash, &from)
            })
            .await?
        }
        None => Confirmed::Invalid,
    };
    let refusal = match outcome {
        Confirmed::Done { user_id } => {
            profile.auth.publish(&Event::UserUpdated { id: user_id });
            let status = EmailLinkStatus {
                status: "email_changed",
            };
            return Ok(input.reply(StatusCode::OK, &status, || {
                Then::Page(pages::email_confirmed())
            }));
        }
        Confirmed::Invalid => ProfileError::LinkInvalid,
        Confirmed::Expired => ProfileError::LinkExpired,
        Confirmed::Taken => ProfileError::EmailTaken,
    };
    let page = |_: &LinkToken, _: &Error| pages::link_problem(&refusal.message());
    Err(input.refuse(refusal.into(), page))
}

/// The account's live sessions: `{"sessions":[…]}`.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Most recently used first.
    pub sessions: Vec<SessionView>,
}

/// One live session.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    /// The address it was opened from.
    #[schema(example = "192.0.2.7")]
    pub client_addr: String,
    /// RFC 3339.
    #[schema(example = "2026-12-03T04:27:08+00:00")]
    pub created_at: String,
    /// Whether it is the session of this request.
    pub current: bool,
    /// What `DELETE /profile/sessions/{id}` takes.
    pub id: String,
    /// RFC 3339.
    #[schema(example = "2026-12-03T04:27:08+00:00")]
    pub last_used_at: String,
    /// The browser and system, summarised.
    #[schema(example = "Firefox on Linux")]
    pub user_agent: String,
}

/// The account's live sessions.
#[utoipa::path(get, path = "/profile/sessions", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The live sessions, most recently used first.",
            body = SessionList, links(
                ("revoke" = (operation_id = "profile_revoke",
                    parameters(("id" = "$response.body#/sessions/0/id")),
                    description = "Ends one of them (here the first).")),
            )),
        (status = 401, description = described::SIGNED_OUT, body = ErrorBody),
    ))]
pub async fn sessions(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let user_id = who.claims.sub.clone();
    let rows = read(&state, move |conn| store::live_sessions(conn, &user_id)).await?;
    let sessions = rows
        .into_iter()
        .map(|s| SessionView {
            current: s.id == who.claims.sid,
            created_at: s.created_at.and_utc().to_rfc3339(),
            last_used_at: s.last_used_at.and_utc().to_rfc3339(),
            user_agent: summarise_user_agent(&s.user_agent),
            client_addr: s.client_addr,
            id: s.id,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SessionList { sessions }))
}

/// Ends one of the account's own sessions.
///
/// Refused everywhere within a second.
#[utoipa::path(delete, path = "/profile/sessions/{id}", tag = "profile",
    params(("id" = String, Path, description = "The session's `id` (`GET /profile/sessions`).")),
    request_body(description = "May be empty (read as `{}`).", content(
        (Confirm = "application/json"),
        (Confirm = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Ended."),
        (status = 303, description = "A form post: on to `/profile?done=revoked`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT, body = ErrorBody),
        (status = 403, description = described::CROSS_ORIGIN, body = ErrorBody),
        (status = 404, description = "`not_found`: another person's session, or one ended \
            already.", body = ErrorBody),
    ))]
pub async fn revoke(
    sub: Submission<Confirm>,
    path: web::Path<String>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let session_id = path.into_inner();
    if session_id.len() > 64 {
        return Err(Error::NotFound);
    }
    let (user_id, sid, who_from) = (who.claims.sub.clone(), session_id.clone(), who_from);
    let ended = blocking(&state, move |conn| {
        store::revoke_own_session(conn, &user_id, &sid, &who_from)
    })
    .await?;
    if !ended {
        return Err(Error::NotFound);
    }
    profile.auth.announce_revoked(&[session_id]);
    Ok(changed(&input, "revoked"))
}

/// The account page's "Sign out" of one session (`DELETE /profile/sessions/{id}`).
#[utoipa::path(post, path = "/profile/sessions/{id}/revoke", tag = "profile",
    params(("id" = String, Path, description = "The session's `id`.")),
    request_body(description = "May be empty (read as `{}`).", content(
        (Confirm = "application/x-www-form-urlencoded"),
        (Confirm = "application/json"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "JSON: ended."),
        (status = 303, description = "Ended: on to `/profile?done=revoked`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT, body = ErrorBody),
        (status = 403, description = described::CROSS_ORIGIN, body = ErrorBody),
        (status = 404, description = "`not_found`: another person's session, or one ended \
            already.", body = ErrorBody),
    ))]
pub async fn revoke_form(
    sub: Submission<Confirm>,
    path: web::Path<String>,
    from: ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    revoke(sub, path, from, state, profile).await
}

/// Ends every session of the account but this one.
#[utoipa::path(post, path = "/profile/sessions/revoke-others", tag = "profile",
    request_body(description = "May be empty (read as `{}`).", content(
        (Confirm = "application/json"),
        (Confirm = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Every other session is ended (fleet-wide within a \
            second)."),
        (status = 303, description = "A form post: on to `/profile?done=revoked-others`.",
            headers(("Location" = String))),
        (status = 401, description = described::SIGNED_OUT, body = ErrorBody),
        (status = 403, description = described::CROSS_ORIGIN, body = ErrorBody),
    ))]
pub async fn revoke_others(
    sub: Submission<Confirm>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    let (user_id, keep, who_from) = (who.claims.sub.clone(), who.claims.sid.clone(), who_from);
    let ended = blocking(&state, move |conn| {
        store::revoke_other_sessions(conn, &user_id, &keep, &who_from)
    })
    .await?;
    profile.auth.announce_revoked(&ended);
    Ok(changed(&input, "revoked-others"))
}

/// The account's recent activity: `{"events":[…]}`.
#[derive(Serialize, ToSchema)]
pub struct ActivityList {
    /// The last 100, newest first.
    pub events: Vec<ActivityEvent>,
}

/// A sign-in, a failure, a sign-out, a change.
#[derive(Serialize, ToSchema)]
pub struct ActivityEvent {
    /// RFC 3339.
    #[schema(example = "2026-12-03T04:27:08+00:00")]
    pub at: String,
    #[schema(example = "192.0.2.7")]
    pub client_addr: String,
    /// The event's kind, as stored (`login.succeeded`, `password.changed`, …).
    #[schema(example = "login.succeeded")]
    pub kind: String,
    /// The browser and system, summarised.
    #[schema(example = "Firefox on Linux")]
    pub user_agent: String,
}

/// The account's recent sign-ins, failures, sign-outs and changes.
#[utoipa::path(get, path = "/profile/activity", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The last 100 events, newest first.", body = ActivityList),
        (status = 401, description = described::SIGNED_OUT, body = ErrorBody),
    ))]
pub async fn activity(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let user_id = who.claims.sub.clone();
    let rows = read(&state, move |conn| store::activity(conn, &user_id, 100)).await?;
    let events = rows
        .into_iter()
        .map(|e| ActivityEvent {
            at: e.created_at.and_utc().to_rfc3339(),
            user_agent: summarise_user_agent(&e.user_agent),
            client_addr: e.client_addr,
            kind: e.kind,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ActivityList { events }))
}

/// Everything stored about the account, as a JSON download.
///
/// Without any password hash, factor secret, recovery code, passkey credential, token
/// or token hash.
#[utoipa::path(get, path = "/profile/export", tag = "profile",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The export (indented JSON), as a download.",
            body = store::Export, headers(
                ("Content-Disposition" = String,
                    description = "`attachment; filename=\"flotilla-account.json\"`"),
            )),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
    ))]
pub async fn export(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let user_id = who.claims.sub.clone();
    // One snapshot of everything, on either backend.
    let data = blocking(&state, move |conn| {
        flotilla_db::read_snapshot(conn, |conn| store::export(conn, &user_id))
    })
    .await?
    .ok_or_else(gone)?;
    let body = serde_json::to_string_pretty(&data).map_err(|e| Error::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"flotilla-account.json\"",
        ))
        .body(body))
}

/// Closes the account, at once.
///
/// Every session ends; the account is closed in the same transaction (address freed,
/// personal fields emptied, public flag off), a confirmation is mailed, and the row is
/// purged once the access tokens it ended could no longer be live. Publishes
/// `user.deleted`.
#[utoipa::path(delete, path = "/profile/me", tag = "profile",
    request_body(content(
        (Deletion = "application/json"),
        (Deletion = "application/x-www-form-urlencoded"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "Closed; the session cookies are cleared.",
            headers(("Set-Cookie" = String, description = "The access and refresh cookies, \
                emptied."))),
        (status = 303, description = "A form post: on to `/login?done=closed`, the cookies \
            cleared.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid` (a change made with the cookie). \
            A form post gets the closing page again.", body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing, or the second \
            factor's `code` (or `passkey_challenge`) missing or malformed.", body = ErrorBody),
        (status = 429, description = described::TOO_MANY_ATTEMPTS, body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn delete(
    sub: Submission<Deletion>,
    ClientOrigin(who_from): ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    let Submission { who, input } = sub;
    if input.raw().password.is_empty() {
        let error = Error::invalid("password", "is required to close the account");
        return Err(refused(&state, &who, &input, "delete", error).await);
    }
    let account = load(&state, &who).await?;
    let sid = &who.claims.sid;
    let checked = check_identity(&state, &profile, &account, input.raw(), sid, &who_from);
    if let Err(error) = checked.await {
        return Err(refused(&state, &who, &input, "delete", error).await);
    }
    let user_id = who.claims.sub.clone();
    let hold = TimeDelta::seconds(profile.auth.config().tokens.revocation_hold_secs());
    let ended = blocking(&state, move |conn| {
        store::close_account(conn, &user_id, &who_from, hold)
    })
    .await?;
    profile.auth.announce_revoked(&ended);
    profile.auth.publish(&Event::UserDeleted {
        id: who.claims.sub.clone(),
    });
    profile.wake.wake("email");
    let mut response = match input.format() {
        Format::Json => HttpResponse::NoContent().finish(),
        Format::Form => see_other("/login?done=closed"),
    };
    profile.auth.clear_cookies(&mut response);
    Ok(response)
}

/// The closing page's form (`DELETE /profile/me` for a browser without script).
#[utoipa::path(post, path = "/profile/delete", tag = "profile",
    request_body(content(
        (Deletion = "application/x-www-form-urlencoded"),
        (Deletion = "application/json"),
    )),
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "JSON: closed; the session cookies are cleared.",
            headers(("Set-Cookie" = String))),
        (status = 303, description = "Closed: on to `/login?done=closed`, the cookies \
            cleared.", headers(("Location" = String), ("Set-Cookie" = String))),
        (status = 401, description = described::SIGNED_OUT_OR_GONE, body = ErrorBody),
        (status = 403, description = "`wrong_password`, `wrong_code` or `passkey_refused`; \
            `cross_origin_request` or `csrf_token_invalid`: the closing page again.",
            body = ErrorBody),
        (status = 422, description = "`invalid_input`: `password` missing, or the second \
            factor's `code` missing or malformed: the closing page again.", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many wrong passwords or codes \
            for this account: the closing page again.", body = ErrorBody),
        (status = 503, description = described::BUSY_OR_UNAVAILABLE, body = ErrorBody),
    ))]
pub async fn delete_form(
    sub: Submission<Deletion>,
    from: ClientOrigin,
    state: web::Data<State>,
    profile: web::Data<Profile>,
) -> Result<HttpResponse, Error> {
    delete(sub, from, state, profile).await
}
