//! Who may enter the console: [`Operator`], an extractor that a handler takes to run
//! only for a signed-in account that has the admin role *now* (read from the database
//! on every request: a demotion or a disable holds at once, whatever the token still
//! says), and [`OperatorSubmission`], the same with the request's body (the form token
//! read from its field). Anonymous: 401, or for a browser's page a redirect to
//! `/login?next=<the page>`; signed in without the role: 403 `admin_only`.
//!
//! Changes also need a recent proof of identity ([`Operator::require_recent_authentication`]):
//! the session's sign-in or a password confirmation at `/login/confirm` within
//! `FLOTILLA_ADMIN_REAUTH_SECS` (15 minutes), as GitHub's sudo mode; when the admin's
//! own account has a second factor, that proof must have included its code (the
//! session is multi-factor), or a stolen password alone would make changes.
//!
//! With `FLOTILLA_ADMIN_REQUIRE_MFA`, the door itself asks for the second factor: an
//! admin whose account has none gets 403 `second_factor_required` on every route (a
//! browser: a page that sends them to set one up); one whose session was not confirmed
//! with it is sent to `/login/confirm` (an API client: 403 `reauthentication_required`).

use flotilla_kit::html::SignedIn;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use askama::Template;
use chrono::NaiveDateTime;
use chrono::TimeDelta;
use flotilla_accounts::{Actor, Role, Session, User, has_second_factor};
use flotilla_auth::{AuthError, Authenticated, CarriesCsrf, Submission};
use flotilla_db::AnyConnection;
use flotilla_db::diesel::QueryResult;
use flotilla_kit::html::render;
use flotilla_kit::input::Input;
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::read;
use flotilla_kit::{Error, State};
use serde::de::DeserializeOwned;

use crate::Admin;
use crate::errors::AdminError;

/// A signed-in admin.
#[derive(Debug, Clone)]
pub struct Operator {
    pub who: Authenticated,
    /// The admin's account as the database has it now.
    pub account: User,
}

/// An admin's change with its body (JSON or form), CSRF-checked.
pub struct OperatorSubmission<T> {
    pub operator: Operator,
    pub input: Input<T>,
}

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, Error>>>>;

impl Operator {
    /// The audit log's actor.
    pub fn actor(&self) -> Actor {
        Actor::Admin {
            id: self.account.id.clone(),
            email: self.account.email.clone(),
        }
    }

    /// The form token of the admin's session, for the console's forms.
    pub fn csrf(&self) -> &str {
        &self.who.claims.csrf
    }

    /// The admin, as the console's header shows them.
    pub fn viewer(&self) -> SignedIn<'_> {
        SignedIn {
            name: SignedIn::name_of(
                self.account.display_name.as_deref(),
                self.account.username.as_deref(),
                &self.account.email,
            ),
            csrf: self.csrf(),
            admin: true,
        }
    }

    /// Passes when the session's sign-in, or a password confirmation in it, is within
    /// `window`, and, when the admin's account has a second factor, was made with its
    /// code; otherwise a browser is sent to confirm (`/login/confirm` asks for the code
    /// when the account has a factor) and come back to `back` (a path of the console),
    /// and an API client gets 403 `reauthentication_required`, saying whether the code
    /// is needed.
    pub async fn require_recent_authentication(
        &self,
        state: &web::Data<State>,
        window: TimeDelta,
        browser: bool,
        back: &str,
    ) -> Result<(), Error> {
        let now = flotilla_jobs::now();
        let sid = self.who.claims.sid.clone();
        let own = self.account.id.clone();
        let (session, has_factor) = read(state, move |conn| {
            let session = Session::find_live(conn, &sid, now)?;
            QueryResult::Ok((session, has_second_factor(conn, &own)?))
        })
        .await?;
        match (step_up(session.as_ref(), has_factor, window, now), browser) {
            (StepUp::Passed, _) => Ok(()),
            (StepUp::Needed { .. }, true) => Err(confirm_first(back)),
            (StepUp::Needed { with_code }, false) => {
                Err(AdminError::ReauthenticationRequired { with_code }.into())
            }
        }
    }
}

/// What the rule for changes says of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepUp {
    Passed,
    /// A confirmation first; `with_code`: it must include the second factor's code.
    Needed {
        with_code: bool,
    },
}

/// The rule for changes: a proof of identity within `window`, with the second factor
/// when the account has one. No live session (revoked a moment ago) passes nothing.
fn step_up(
    session: Option<&Session>,
    has_factor: bool,
    window: TimeDelta,
    now: NaiveDateTime,
) -> StepUp {
    let passed = session.is_some_and(|s| s.proven_within(window, now, has_factor));
    match passed {
        true => StepUp::Passed,
        false => StepUp::Needed {
            with_code: has_factor,
        },
    }
}

/// A browser sent to confirm who they are, and brought back to `back`.
fn confirm_first(back: &str) -> Error {
    Error::SeeOther {
        location: format!("/login/confirm?{}", next_query(back)),
    }
}

/// `next=<path>`, encoded for a query string.
pub fn next_query(path: &str) -> String {
    serde_urlencoded::to_string([("next", path)]).unwrap_or_default()
}

/// How a refusal at the door is answered: to a browser, with a page or a redirect
/// that comes back to `back` (a page of the console).
struct Caller {
    browser: bool,
    back: String,
}

impl Caller {
    /// A page's request: a browser's GET is redirected back to the very page.
    fn of_page(req: &HttpRequest) -> Self {
        Self {
            browser: req.method() == Method::GET && wants_html(req.headers()),
            back: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/admin".to_owned(), back_to),
        }
    }

    /// A change's request: a form comes back to the page it was posted from.
    fn of_submission<T>(req: &HttpRequest, input: &Input<T>) -> Self {
        Self {
            browser: input.is_form(),
            back: form_page(req.path()),
        }
    }
}

/// The longest address of a page that a browser is sent back to after signing in. In
/// `Location`, encoded once more, it grows up to threefold, and nginx takes at most
/// 4 KiB of an answer's headers: a longer one (a search for a very long text) was a
/// 502 from nginx.
const MAX_BACK: usize = 1024;

/// Where a browser comes back to from a page's address: the page with its query, or
/// without it when that is too long, or the console's first page.
fn back_to(page: &actix_web::http::uri::PathAndQuery) -> String {
    [page.as_str(), page.path()]
        .into_iter()
        .find(|back| back.len() <= MAX_BACK)
        .unwrap_or("/admin")
        .to_owned()
}

/// The console page whose form posts to `path` (where to come back after confirming):
/// an account's actions are on its page, a job's retry on the jobs page.
fn form_page(path: &str) -> String {
    let rest = path.strip_prefix("/admin/").unwrap_or_default();
    match rest.split('/').collect::<Vec<_>>()[..] {
        ["users", id, _action] if crate::account::account_id(id).is_ok() => {
            format!("/admin/users/{id}")
        }
        ["jobs", ..] => "/admin/jobs".to_owned(),
        _ => "/admin".to_owned(),
    }
}

/// What the door makes of the admin's second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// The console requires a second factor and the account has none.
    SetUpFactor,
    /// The console requires a second factor; the account has one, the session was
    /// not confirmed with it (signed in before it was set up, say).
    ConfirmWithCode,
}

fn admission(require_mfa: bool, has_factor: bool, multi_factor_session: bool) -> Admission {
    match (require_mfa, has_factor, multi_factor_session) {
        (false, _, _) | (true, true, true) => Admission::Admitted,
        (true, false, _) => Admission::SetUpFactor,
        (true, true, false) => Admission::ConfirmWithCode,
    }
}

/// The account if it is active, and what the door makes of its second factor: without
/// `require_mfa` (or for an account that is no admin, refused anyway) nothing more is
/// read; with it, whether the account has a factor and, only then, the session.
fn door(
    conn: &mut AnyConnection,
    user_id: &str,
    sid: &str,
    require_mfa: bool,
    now: NaiveDateTime,
) -> QueryResult<Option<(User, Admission)>> {
    let Some(account) = User::find_active(conn, user_id)? else {
        return Ok(None);
    };
    if !require_mfa || account.role != Role::Admin {
        return Ok(Some((account, Admission::Admitted)));
    }
    let has_factor = has_second_factor(conn, &account.id)?;
    let multi_factor =
        has_factor && Session::find_live(conn, sid, now)?.is_some_and(|s| s.is_multi_factor());
    Ok(Some((account, admission(true, has_factor, multi_factor))))
}

/// The page that keeps an admin without a second factor out of the console.
#[derive(Template)]
#[template(path = "second_factor_required.html")]
struct SecondFactorRequiredPage<'a> {
    title: &'a str,
    viewer: SignedIn<'a>,
}

/// The account behind a verified token, if it is open, enabled and an admin (and, with
/// `FLOTILLA_ADMIN_REQUIRE_MFA`, has a second factor its session was confirmed with).
async fn admit(req: &HttpRequest, who: Authenticated, caller: Caller) -> Result<Operator, Error> {
    let state = req
        .app_data::<web::Data<State>>()
        .cloned()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the kit's State is missing")))?;
    let require_mfa = req
        .app_data::<web::Data<Admin>>()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("admin's state is missing")))?
        .config
        .require_mfa;
    let now = flotilla_jobs::now();
    let (user_id, sid) = (who.claims.sub.clone(), who.claims.sid.clone());
    let (account, admission) = read(&state, move |conn| {
        door(conn, &user_id, &sid, require_mfa, now)
    })
    .await?
    .ok_or(AdminError::AccountGone)?;
    if account.role != Role::Admin {
        return Err(AuthError::AdminOnly.into());
    }
    let operator = Operator { who, account };
    match admission {
        Admission::Admitted => Ok(operator),
        Admission::SetUpFactor => {
            let error = Error::from(AdminError::SecondFactorRequired);
            Err(error.for_browser(caller.browser, || {
                render(&SecondFactorRequiredPage {
                    title: "A second factor is needed",
                    viewer: operator.viewer(),
                })
            }))
        }
        Admission::ConfirmWithCode if caller.browser => Err(confirm_first(&caller.back)),
        Admission::ConfirmWithCode => {
            Err(AdminError::ReauthenticationRequired { with_code: true }.into())
        }
    }
}

/// A browser asking for a page without a usable token is sent to sign in (which
/// renews the session from its refresh cookie when it can) and brought back.
fn sign_in_first(req: &HttpRequest, refused: Error) -> Error {
    let is_401 = matches!(refused, Error::Unauthorized { .. });
    if is_401 && req.method() == Method::GET && wants_html(req.headers()) {
        let page = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/admin".to_owned(), back_to);
        return Error::SeeOther {
            location: format!("/login?{}", next_query(&page)),
        };
    }
    refused
}

impl FromRequest for Operator {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let who = Authenticated::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let who = who.await.map_err(|refused| sign_in_first(&req, refused))?;
            admit(&req, who, Caller::of_page(&req)).await
        })
    }
}

impl<T: DeserializeOwned + CarriesCsrf + 'static> FromRequest for OperatorSubmission<T> {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let submission = Submission::<T>::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let Submission { who, input } = submission.await?;
            let operator = admit(&req, who, Caller::of_submission(&req, &input)).await?;
            Ok(OperatorSubmission { operator, input })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{account, each_backend, session, with_factors};

    fn signed_in(amr: &str, minutes_ago: i64, now: NaiveDateTime) -> Session {
        let at = now - TimeDelta::minutes(minutes_ago);
        Session {
            id: "s1".into(),
            user_id: "u1".into(),
            csrf_token: "t".into(),
            user_agent: String::new(),
            client_addr: String::new(),
            created_at: at,
            last_used_at: at,
            idle_expires_at: now + TimeDelta::hours(1),
            expires_at: now + TimeDelta::days(1),
            revoked_at: None,
            revoked_reason: None,
            authenticated_at: Some(at),
            amr: amr.into(),
        }
    }

    #[test]
    fn changes_need_a_recent_proof_with_the_code_when_there_is_a_factor() {
        let now = flotilla_jobs::now();
        let window = TimeDelta::minutes(15);
        let passed = |amr: &str, ago: i64, factor: bool| {
            step_up(Some(&signed_in(amr, ago, now)), factor, window, now)
        };
        let needed = |with_code| StepUp::Needed { with_code };
        // Without a factor: the password within the window, as before.
        assert_eq!(passed("pwd", 5, false), StepUp::Passed);
        assert_eq!(passed("pwd", 16, false), needed(false));
        // With one: the password alone is not enough, however recent.
        assert_eq!(passed("pwd", 0, true), needed(true));
        assert_eq!(passed("pwd otp mfa", 5, true), StepUp::Passed);
        assert_eq!(passed("pwd rc mfa", 5, true), StepUp::Passed);
        assert_eq!(passed("pwd otp mfa", 16, true), needed(true));
        // No live session: nothing passes.
        assert_eq!(step_up(None, false, window, now), needed(false));
        assert_eq!(step_up(None, true, window, now), needed(true));
    }

    #[test]
    fn the_door_asks_for_a_factor_only_when_the_console_requires_one() {
        for (factor, mfa) in [(false, false), (true, false), (true, true)] {
            assert_eq!(admission(false, factor, mfa), Admission::Admitted);
        }
        assert_eq!(admission(true, false, false), Admission::SetUpFactor);
        assert_eq!(admission(true, true, false), Admission::ConfirmWithCode);
        assert_eq!(admission(true, true, true), Admission::Admitted);
    }

    #[test]
    fn the_door_reads_the_factor_and_the_session_only_when_required() {
        each_backend(|db, conn| {
            let name = db.backend_name();
            let now = flotilla_jobs::now();
            account(conn, "u1", "root@example.org");
            db.execute("UPDATE users SET role = 'admin' WHERE id = 'u1'");
            session(conn, "plain", "u1", "pwd");
            session(conn, "strong", "u1", "pwd otp mfa");
            let door_of = |conn: &mut AnyConnection, sid: &str, require: bool| {
                door(conn, "u1", sid, require, now).unwrap().unwrap().1
            };
            assert_eq!(door_of(conn, "plain", false), Admission::Admitted, "{name}");
            assert_eq!(
                door_of(conn, "plain", true),
                Admission::SetUpFactor,
                "{name}"
            );
            // Recovery codes alone are no factor.
            with_factors(conn, "u1", false, 10);
            assert_eq!(
                door_of(conn, "plain", true),
                Admission::SetUpFactor,
                "{name}"
            );
            with_factors(conn, "u1", true, 10);
            assert_eq!(
                door_of(conn, "plain", true),
                Admission::ConfirmWithCode,
                "{name}"
            );
            assert_eq!(door_of(conn, "strong", true), Admission::Admitted, "{name}");
            assert_eq!(
                door_of(conn, "gone", true),
                Admission::ConfirmWithCode,
                "{name}"
            );
            assert!(
                door(conn, "nobody", "plain", true, now).unwrap().is_none(),
                "{name}"
            );
        });
    }

    #[test]
    fn a_form_comes_back_to_the_page_it_was_posted_from() {
        assert_eq!(
            form_page("/admin/users/ab-12/reset-factors"),
            "/admin/users/ab-12"
        );
        assert_eq!(form_page("/admin/jobs/17/retry"), "/admin/jobs");
        assert_eq!(form_page("/admin/users/a%2Fb/x"), "/admin");
        assert_eq!(form_page("/admin/elsewhere"), "/admin");
        assert_eq!(form_page("/other"), "/admin");
    }

    #[test]
    fn the_refusals_say_what_is_needed() {
        let code = Error::from(AdminError::ReauthenticationRequired { with_code: true });
        assert_eq!(code.code(), "reauthentication_required");
        assert!(code.public_message().contains("your second factor"));
        let plain = Error::from(AdminError::ReauthenticationRequired { with_code: false });
        assert!(!plain.public_message().contains("code"));
        let none = Error::from(AdminError::SecondFactorRequired);
        assert_eq!(none.code(), "second_factor_required");
        assert!(none.public_message().contains("/profile#two-step"));
    }

    #[test]
    fn the_page_without_a_factor_links_to_the_setup() {
        let page = render(&SecondFactorRequiredPage {
            title: "A second factor is needed",
            viewer: SignedIn {
                name: "root",
                csrf: "t",
                admin: true,
            },
        });
        assert!(page.contains("The console needs a second factor: set up an authenticator app or a passkey on your account page first"), "{page}");
        assert!(page.contains("href=\"/profile#two-step\""), "{page}");
    }

    #[test]
    fn a_page_too_long_to_come_back_to_loses_its_query_then_its_path() {
        let page = |s: &str| back_to(&s.parse().unwrap());
        assert_eq!(page("/admin/users?q=ada"), "/admin/users?q=ada");
        let long_query = format!("/admin/users?q={}", "%F0%A7%A0%86".repeat(250));
        assert_eq!(page(&long_query), "/admin/users");
        assert_eq!(
            page(&format!("/admin/users/{}", "a".repeat(2000))),
            "/admin"
        );
        assert!(next_query(&page(&long_query)).len() < 4096);
    }

    #[test]
    fn next_is_encoded_for_a_query_string() {
        assert_eq!(next_query("/admin"), "next=%2Fadmin");
        assert_eq!(
            next_query("/admin/users?q=ada&status=disabled"),
            "next=%2Fadmin%2Fusers%3Fq%3Dada%26status%3Ddisabled"
        );
    }
}
