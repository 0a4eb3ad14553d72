//! Profile's routes. Each checks its input first (the extractors check the token and,
//! for changes made with cookies, the CSRF rule), then acts.

use chrono::TimeDelta;
use std::collections::BTreeMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use flotilla_accounts::{plausible_token, summarise_user_agent};
use flotilla_auth::{Authenticated, CarriesCsrf, ClientOrigin, RequestOrigin, Submission};
use flotilla_contracts::Event;
use flotilla_kit::body::BodyFormat as Format;
use flotilla_kit::html::{respond as html, see_other};
use flotilla_kit::input::{Input, Then};
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::{blocking, read};
use flotilla_kit::{Error, FieldErrors, RequestContext, State};
use serde::Deserialize;

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

#[derive(Deserialize)]
pub struct PageQuery {
    done: Option<String>,
}

/// The account page; anonymous browsers are sent to sign in (which renews a session
/// from its refresh cookie without the password when it can).
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

/// `GET /profile/delete`: what closing the account does, and the form that does it.
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

/// `GET /profile/sessions/revoke-others`: how many sessions would end, and the button
/// that ends them.
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

pub async fn me(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let account = load(&state, &who).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Me::of(&account)))
}

/// A patch body: any JSON object (unknown fields are named in the 422) or the form.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct PatchBody(serde_json::Map<String, serde_json::Value>);

impl CarriesCsrf for PatchBody {
    fn csrf_token(&self) -> Option<&str> {
        self.0.get("csrf_token").and_then(|v| v.as_str())
    }
}

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
        Format::Json => HttpResponse::Accepted().json(serde_json::json!({
            "status": "verification_sent",
            "message": "Follow the link sent to the new address to confirm it; until then the address does not change.",
        })),
        Format::Form => done("email"),
    })
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// A link that does not work, as a page for a browser or an error for a client.
fn link_refused(refusal: ProfileError, browser: bool) -> Error {
    let page = || pages::link_problem(&refusal.message());
    Error::from(refusal).for_browser(browser, page)
}

/// Opening a change-of-address link: a page with a button that posts the token (or
/// `200 {"status":"valid"}`); nothing changes, so a mail scanner that follows the
/// link confirms nothing.
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
            return Ok(HttpResponse::Ok().json(serde_json::json!({"status": "valid"})));
        }
        Link::Invalid => ProfileError::LinkInvalid,
        Link::Expired => ProfileError::LinkExpired,
    };
    Err(link_refused(refusal, browser))
}

/// Uses a change-of-address link's token: the page's form, or JSON `{"token"}`.
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
            let status = serde_json::json!({"status": "email_changed"});
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

pub async fn sessions(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let user_id = who.claims.sub.clone();
    let rows = read(&state, move |conn| store::live_sessions(conn, &user_id)).await?;
    let list: Vec<_> = rows
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id,
                "created_at": s.created_at.and_utc().to_rfc3339(),
                "last_used_at": s.last_used_at.and_utc().to_rfc3339(),
                "client_addr": s.client_addr,
                "user_agent": summarise_user_agent(&s.user_agent),
                "current": s.id == who.claims.sid,
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "sessions": list })))
}

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

pub async fn activity(who: Authenticated, state: web::Data<State>) -> Result<HttpResponse, Error> {
    let user_id = who.claims.sub.clone();
    let rows = read(&state, move |conn| store::activity(conn, &user_id, 100)).await?;
    let list: Vec<_> = rows
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "kind": e.kind,
                "at": e.created_at.and_utc().to_rfc3339(),
                "client_addr": e.client_addr,
                "user_agent": summarise_user_agent(&e.user_agent),
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "events": list })))
}

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
