//! Who may enter the console: [`Operator`], an extractor that a handler takes to run
//! only for a signed-in account that has the admin role *now* (read from the database
//! on every request: a demotion or a disable holds at once, whatever the token still
//! says), and [`OperatorSubmission`], the same with the request's body (the form token
//! read from its field). Anonymous: 401, or for a browser's page a redirect to
//! `/login?next=<the page>`; signed in without the role: 403 `admin_only`.
//!
//! Changes also need a recent proof of identity ([`Operator::require_recent_authentication`]):
//! the session's sign-in or a password confirmation at `/login/confirm` within
//! `FLOTILLA_ADMIN_REAUTH_SECS` (15 minutes), as GitHub's sudo mode.

use flotilla_kit::html::SignedIn;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use chrono::TimeDelta;
use flotilla_accounts::{Actor, Role, Session, User};
use flotilla_auth::{AuthError, Authenticated, CarriesCsrf, Submission};
use flotilla_kit::input::Input;
use flotilla_kit::middleware::wants_html;
use flotilla_kit::work::read;
use flotilla_kit::{Error, State};
use serde::de::DeserializeOwned;

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
    /// `window`; otherwise a browser is sent to confirm the password and come back to
    /// `back` (a path of the console), and an API client gets 403
    /// `reauthentication_required`.
    pub async fn require_recent_authentication(
        &self,
        state: &web::Data<State>,
        window: TimeDelta,
        browser: bool,
        back: &str,
    ) -> Result<(), Error> {
        let now = flotilla_jobs::now();
        let sid = self.who.claims.sid.clone();
        let session = read(state, move |conn| Session::find_live(conn, &sid, now)).await?;
        let recent = session.is_some_and(|s| s.last_authenticated() + window >= now);
        match (recent, browser) {
            (true, _) => Ok(()),
            (false, true) => Err(Error::SeeOther {
                location: format!("/login/confirm?{}", next_query(back)),
            }),
            (false, false) => Err(AdminError::ReauthenticationRequired.into()),
        }
    }
}

/// `next=<path>`, encoded for a query string.
pub fn next_query(path: &str) -> String {
    serde_urlencoded::to_string([("next", path)]).unwrap_or_default()
}

/// The account behind a verified token, if it is open, enabled and an admin.
async fn admit(req: &HttpRequest, who: Authenticated) -> Result<Operator, Error> {
    let state = req
        .app_data::<web::Data<State>>()
        .cloned()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the kit's State is missing")))?;
    let user_id = who.claims.sub.clone();
    let account = read(&state, move |conn| User::find_active(conn, &user_id))
        .await?
        .ok_or(AdminError::AccountGone)?;
    if account.role != Role::Admin {
        return Err(AuthError::AdminOnly.into());
    }
    Ok(Operator { who, account })
}

/// A browser asking for a page without a usable token is sent to sign in (which
/// renews the session from its refresh cookie when it can) and brought back.
fn sign_in_first(req: &HttpRequest, refused: Error) -> Error {
    let is_401 = matches!(refused, Error::Unauthorized { .. });
    if is_401 && req.method() == Method::GET && wants_html(req.headers()) {
        let page = req.uri().path_and_query().map_or("/admin", |p| p.as_str());
        return Error::SeeOther {
            location: format!("/login?{}", next_query(page)),
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
            admit(&req, who).await
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
            let operator = admit(&req, who).await?;
            Ok(OperatorSubmission { operator, input })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_encoded_for_a_query_string() {
        assert_eq!(next_query("/admin"), "next=%2Fadmin");
        assert_eq!(
            next_query("/admin/users?q=ada&status=disabled"),
            "next=%2Fadmin%2Fusers%3Fq%3Dada%26status%3Ddisabled"
        );
    }
}
