//! Where a request comes from, read from the HTTP request.

use actix_web::HttpMessage as _;
use flotilla_accounts::Origin;

/// Builds an [`Origin`] from a request: `Origin::of(&req, &ctx)` with this trait in
/// scope.
pub trait RequestOrigin {
    fn of(req: &actix_web::HttpRequest, ctx: &flotilla_kit::RequestContext) -> Self;
}

impl RequestOrigin for Origin {
    /// The client's address as the kit resolved it, and the `User-Agent` header (cut to
    /// [`flotilla_accounts::MAX_USER_AGENT`] characters).
    fn of(req: &actix_web::HttpRequest, ctx: &flotilla_kit::RequestContext) -> Self {
        let user_agent = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Origin::new(ctx.client.to_string(), user_agent)
    }
}

/// Where the request comes from, as a handler argument: `from: ClientOrigin`.
#[derive(Debug, Clone)]
pub struct ClientOrigin(pub Origin);

impl actix_web::FromRequest for ClientOrigin {
    type Error = flotilla_kit::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let context = req
            .extensions()
            .get::<flotilla_kit::RequestContext>()
            .map(|ctx| ClientOrigin(Origin::of(req, ctx)))
            .ok_or_else(|| {
                flotilla_kit::Error::Internal(anyhow::anyhow!("request context missing"))
            });
        std::future::ready(context)
    }
}
