//! flotilla-profile: Self-service for a signed-in person: profile, password, email, sessions.
//!
//! Mounted by nginx under `/profile`; the kit adds `/profile/health`, `/profile/ready` and
//! `/profile/metrics`.

use flotilla_kit::Service;

pub static SERVICE: Service = Service {
    name: "profile",
    default_port: 7103,
    setup: flotilla_kit::no_routes,
    background: None,
};
