//! The command line shared by the service binaries:
//!
//! ```text
//! flotilla-<service> [serve]   run the service (the default)
//! flotilla-<service> migrate   apply pending database migrations, then exit
//! flotilla-<service> openapi   print the service's OpenAPI 3.1 document
//! flotilla-<service> version   print the version
//! ```

use std::process::ExitCode;

use crate::app::{Application, Service};
use crate::config::{Config, ConfigError, Env};

/// Exit status for a configuration error (sysexits' EX_CONFIG): systemd units do not
/// restart on it, since restarting cannot help.
pub const EXIT_CONFIG: u8 = 78;
/// Exit status for a wrong command line (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// The whole `main` of a service binary.
pub fn main(service: &'static Service) -> ExitCode {
    crate::memory::tune_allocator();
    crate::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("serve");
    if let Some(own) = service.commands.iter().find(|c| c.name == command) {
        return report((own.run)(&args[1..]));
    }
    if args.len() > 1 {
        return usage(service, &format!("unexpected argument {:?}", args[1]));
    }
    match command {
        "serve" => {
            let config = match load_config(service) {
                Ok(config) => config,
                Err(code) => return code,
            };
            report(serve(service, config))
        }
        "migrate" => {
            let config = match load_config(service) {
                Ok(config) => config,
                Err(code) => return code,
            };
            report(migrate(&config.database))
        }
        "openapi" => openapi(service),
        "version" | "--version" | "-V" => {
            println!("{} {}", service.binary(), env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "help" | "--help" | "-h" => {
            print!("{}", help(service));
            ExitCode::SUCCESS
        }
        other => usage(service, &format!("unknown command {other:?}")),
    }
}

/// Prints the service's document.
fn openapi(service: &Service) -> ExitCode {
    match serde_json::to_string_pretty(&service.api().document()) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => report(Err(e.into())),
    }
}

fn help(service: &Service) -> String {
    let own: String = service
        .commands
        .iter()
        .map(|c| format!("  {:<9} {}\n", c.name, c.summary))
        .collect();
    let names: String = service
        .commands
        .iter()
        .map(|c| format!("|{}", c.name))
        .collect();
    format!(
        "usage: {0} [serve|migrate{names}|openapi|version|help]\n\n  \
         serve     run the service on FLOTILLA_{1}_LISTEN (default 127.0.0.1:{2})\n  \
         migrate   apply pending database migrations, then exit\n{own}  \
         openapi   print the service's OpenAPI 3.1 document\n  \
         version   print the version\n\n\
         Configuration comes from FLOTILLA_* variables and DATABASE_URL; see docs/configuration.md.\n",
        service.binary(),
        service.name.to_ascii_uppercase(),
        service.default_port
    )
}

fn usage(service: &Service, problem: &str) -> ExitCode {
    eprint!("{}: {problem}\n{}", service.binary(), help(service));
    ExitCode::from(EXIT_USAGE)
}

fn load_config(service: &Service) -> Result<Config, ExitCode> {
    let config = Config::from_env(&Env::from_process(), service.name, service.default_port)
        .map_err(|e| {
            log::error!("invalid configuration: {e}");
            ExitCode::from(EXIT_CONFIG)
        })?;
    crate::files::ensure_dir(&config.data_dir, crate::files::Access::Traverse).map_err(|e| {
        log::error!("invalid configuration: FLOTILLA_DATA_DIR: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    // A SQLite database holds password hashes: refused when other users may read it.
    if let Some(path) = config.database.url.sqlite_path().filter(|p| p.exists()) {
        crate::files::check_file(path).map_err(|e| {
            log::error!("invalid configuration: DATABASE_URL: {e}");
            ExitCode::from(EXIT_CONFIG)
        })?;
    }
    // The bus secret, checked (or, on one host, made) before anything starts.
    crate::config::bus(&Env::from_process()).map_err(|e| {
        log::error!("invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    Ok(config)
}

fn report(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A service's own variables, or a file or folder too open to other users: neither
        // heals by restarting.
        Err(e)
            if e.downcast_ref::<ConfigError>().is_some()
                || e.downcast_ref::<crate::files::Refusal>().is_some() =>
        {
            log::error!("invalid configuration: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(service: &'static Service, config: Config) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(service, config)?;
        app.run_until_stopped().await
    })
}

/// Applies pending migrations (under a lock, so concurrent runs are safe).
pub fn migrate(database: &flotilla_db::PoolConfig) -> anyhow::Result<()> {
    let mut conn = flotilla_db::open(database)?;
    let applied = flotilla_db::migrate(&mut conn, &database.url)?;
    if applied.is_empty() {
        log::info!("{}: the schema is already current", database.url.redacted());
    } else {
        log::info!(
            "{}: applied migrations {}",
            database.url.redacted(),
            applied.join(", ")
        );
    }
    Ok(())
}
