//! The service kit: what every flotilla HTTP service shares, so that each `main.rs` is
//! a few lines. Configuration, logging, errors, the request middleware (request id,
//! client address, admission control, access log, metrics), health/ready/metrics routes,
//! and the command line (`serve`, `migrate`).

// The kit's own templates name it as the services' do (`flotilla_kit::html::…`).
extern crate self as flotilla_kit;

pub mod admission;
pub mod api;
mod app;
pub mod body;
pub mod cli;
pub mod config;
pub mod database;
pub mod error;
pub mod files;
pub mod html;
pub mod input;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod middleware;
#[cfg(test)]
mod proptests;
pub mod work;

pub use api::{Api, AppData};
pub use app::{
    Application, Background, Command, Provide, ReadyCheck, Service, Setup, State, no_state,
};
pub use config::{Config, ConfigError, Env};
pub use error::{Error, FieldErrors};
pub use middleware::RequestContext;

/// The kit's own dependencies, for services that need the same versions.
pub use {actix_web, anyhow, flotilla_db as db, log, tokio, utoipa};
