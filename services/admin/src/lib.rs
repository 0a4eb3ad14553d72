//! flotilla-admin: The admin console: users, jobs, audit. Admin role only.
//!
//! Mounted by nginx under `/admin`; the kit adds `/admin/health`, `/admin/ready` and
//! `/admin/metrics`.

use flotilla_kit::Service;
use flotilla_kit::actix_web::web;

pub static SERVICE: Service = Service {
    name: "admin",
    default_port: 7104,
    routes,
    background: None,
};

/// The service's own routes, relative to `/admin`. None yet beyond the kit's: the
/// capability arrives with its issue.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
