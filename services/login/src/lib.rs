//! flotilla-login: Sign-in: sessions, tokens and the JWKS, password reset.
//!
//! Mounted by nginx under `/login`; the kit adds `/login/health`, `/login/ready` and
//! `/login/metrics`.

use flotilla_kit::Service;
use flotilla_kit::actix_web::web;

pub static SERVICE: Service = Service {
    name: "login",
    default_port: 7102,
    routes,
    background: None,
};

/// The service's own routes, relative to `/login`. None yet beyond the kit's: the
/// capability arrives with its issue.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
