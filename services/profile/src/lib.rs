//! flotilla-profile: Self-service for a signed-in person: profile, password, email, sessions.
//!
//! Mounted by nginx under `/profile`; the kit adds `/profile/health`, `/profile/ready` and
//! `/profile/metrics`.

use flotilla_kit::Service;
use flotilla_kit::actix_web::web;

pub static SERVICE: Service = Service {
    name: "profile",
    default_port: 7103,
    routes,
    background: None,
};

/// The service's own routes, relative to `/profile`. None yet beyond the kit's: the
/// capability arrives with its issue.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
