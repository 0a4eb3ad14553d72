//! What handlers take: [`Authenticated`] (a live session's valid token, CSRF-checked
//! when it came by cookie), [`Verified`] and [`Admin`] on top of it, and
//! [`Submission`] (the same with its body, the form token read from a field).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use flotilla_kit::Error;
use flotilla_kit::body::{BodyFormat, read_body};
use flotilla_kit::input::Input;
use serde::de::DeserializeOwned;

use crate::Auth;
use crate::access_token::{Claims, TokenError};
use crate::errors::AuthError;

/// How the token came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    Cookie,
}

impl Auth {
    /// The access token of a request: `Authorization: Bearer`, else the cookie.
    pub fn token_of(&self, req: &HttpRequest) -> Option<(String, Credential)> {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let value = value.to_str().ok()?;
            let (scheme, token) = value.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| (token.trim().to_owned(), Credential::Bearer));
        }
        req.cookie(self.access_cookie_name())
            .map(|c| (c.value().to_owned(), Credential::Cookie))
            .filter(|(t, _)| !t.is_empty())
    }

    /// The verified identity of a request, or the 401 that says why not.
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Authenticated, Error> {
        let Some((token, via)) = self.token_of(req) else {
            return Err(AuthError::NotAuthenticated.into());
        };
        match self.verify(&token).await {
            Ok(claims) => Ok(Authenticated { claims, via }),
            Err(e) => Err(unauthorized(&e)),
        }
    }
}

/// The 401 for a refused token.
pub fn unauthorized(e: &TokenError) -> Error {
    AuthError::Token(e.clone()).into()
}

fn auth_of(req: &HttpRequest) -> Result<Auth, Error> {
    req.app_data::<web::Data<Auth>>()
        .map(|a| a.get_ref().clone())
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("the auth extractor needs web::Data<Auth>")))
}

type Pending<T> = Pin<Box<dyn Future<Output = Result<T, Error>>>>;

/// A request with a valid access token of a live session. A change authenticated by
/// cookie must also pass the CSRF rule, with the token in `X-CSRF-Token` (use
/// [`Submission`] to accept it as a form field).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub claims: Claims,
    pub via: Credential,
}

impl Authenticated {
    pub fn user_id(&self) -> &str {
        &self.claims.sub
    }

    pub fn session_id(&self) -> &str {
        &self.claims.sid
    }
}

impl FromRequest for Authenticated {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let auth = auth_of(&req)?;
            let who = auth.authenticate(&req).await?;
            auth.check_csrf(&req, &who, None)?;
            Ok(who)
        })
    }
}

/// [`Authenticated`], then `admit`: the narrower extractors ([`Verified`], [`Admin`]).
fn narrowed<T: 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    admit: fn(Authenticated) -> Result<T, Error>,
) -> Pending<T> {
    let who = Authenticated::from_request(req, payload);
    Box::pin(async move { admit(who.await?) })
}

/// [`Authenticated`] with a confirmed email address (403 otherwise).
#[derive(Debug, Clone)]
pub struct Verified(pub Authenticated);

impl FromRequest for Verified {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        narrowed(req, payload, |who| {
            if !who.claims.email_verified {
                return Err(AuthError::EmailNotVerified.into());
            }
            Ok(Verified(who))
        })
    }
}

/// [`Authenticated`] with the admin role (403 for anyone else).
#[derive(Debug, Clone)]
pub struct Admin(pub Authenticated);

impl FromRequest for Admin {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        narrowed(req, payload, |who| {
            if who.claims.role != "admin" {
                return Err(AuthError::AdminOnly.into());
            }
            Ok(Admin(who))
        })
    }
}

/// A body that may carry the form token.
pub trait CarriesCsrf {
    fn csrf_token(&self) -> Option<&str>;
}

/// An authenticated change with its body (JSON or form), the CSRF rule applied with
/// the form field `csrf_token` or the header. An empty body reads as `{}`.
pub struct Submission<T> {
    pub who: Authenticated,
    /// The body, for the route's checks and its answer (`flotilla_kit::input`).
    pub input: Input<T>,
}

impl<T: DeserializeOwned + CarriesCsrf + 'static> FromRequest for Submission<T> {
    type Error = Error;
    type Future = Pending<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let auth = auth_of(&req)?;
            let who = auth.authenticate(&req).await?;
            let body = body.await.map_err(|e| Error::unread_body(e, &req))?;
            let (format, input): (BodyFormat, T) = if body.is_empty() {
                let input = serde_json::from_str("{}").map_err(Error::malformed_json)?;
                (BodyFormat::Json, input)
            } else {
                read_body(&req, &body)?
            };
            auth.check_csrf(&req, &who, input.csrf_token())?;
            Ok(Submission {
                who,
                input: Input::new(format, input),
            })
        })
    }
}
