//! Where a request comes from, read from the HTTP request.

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
