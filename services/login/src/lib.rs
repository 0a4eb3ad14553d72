//! flotilla-login: Sign-in: sessions, tokens and the JWKS, password reset.
//!
//! Mounted by nginx under `/login`; the kit adds `/login/health`, `/login/ready` and
//! `/login/metrics`.

use flotilla_kit::Service;

pub static SERVICE: Service = Service {
    name: "login",
    default_port: 7102,
    setup: flotilla_kit::no_routes,
    background: None,
};
