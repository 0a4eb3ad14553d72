//! flotilla-signup: Account creation: the signup form and API, email verification.
//!
//! Mounted by nginx under `/signup`; the kit adds `/signup/health`, `/signup/ready` and
//! `/signup/metrics`.

use flotilla_kit::Service;
use flotilla_kit::actix_web::web;

pub static SERVICE: Service = Service {
    name: "signup",
    default_port: 7101,
    routes,
    background: None,
};

/// The service's own routes, relative to `/signup`. None yet beyond the kit's: the
/// capability arrives with its issue.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
