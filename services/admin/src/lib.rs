//! flotilla-admin: The admin console: users, jobs, audit. Admin role only.
//!
//! Mounted by nginx under `/admin`; the kit adds `/admin/health`, `/admin/ready` and
//! `/admin/metrics`.

use flotilla_kit::Service;

pub static SERVICE: Service = Service {
    name: "admin",
    default_port: 7104,
    setup: flotilla_kit::no_routes,
    background: None,
    commands: &[],
};
