use std::process::ExitCode;

use flotilla_kit::Env;
use flotilla_kit::cli::{EXIT_CONFIG, EXIT_USAGE};

const HELP: &str = "usage: flotilla-pages [build|watch|migrate|openapi FILE...|version|help]

  build     write the static site, public profiles included, into a fresh folder
            under FLOTILLA_PAGES_OUT.builds/ and point the symlink FLOTILLA_PAGES_OUT
            (default var/www) at it, then exit; the default
  watch     build, then keep the public profiles current as accounts change (events
            on FLOTILLA_BUS_EVENTS_OUT, and a catch-up every FLOTILLA_PAGES_CATCHUP_SECS)
  migrate   apply pending database migrations, then exit
  openapi FILE...
            merge the services' OpenAPI documents (`flotilla-<service> openapi`)
            into the fleet's, printed (`make openapi` writes docs/openapi.json)
  version   print the version
";

fn main() -> ExitCode {
    flotilla_kit::memory::tune_allocator();
    flotilla_kit::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = Env::from_process();
    match (
        args.first().map(String::as_str).unwrap_or("build"),
        args.len() > 1,
    ) {
        ("build", false) => match flotilla_pages::PagesConfig::from_env(&env) {
            Err(e) => config_error(e),
            Ok(config) => match flotilla_pages::build(&config) {
                Ok(profiles) => {
                    log::info!(
                        "wrote the site into {} with {profiles} public profiles",
                        config.out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    log::error!("{e:#}");
                    ExitCode::FAILURE
                }
            },
        },
        ("watch", false) => match flotilla_pages::PagesConfig::from_env(&env) {
            Err(e) => config_error(e),
            Ok(config) => match flotilla_pages::watch(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e:#}");
                    ExitCode::FAILURE
                }
            },
        },
        ("migrate", false) => {
            let database = flotilla_kit::config::data_dir(&env)
                .and_then(|dir| flotilla_kit::config::database(&env, &dir));
            match database {
                Err(e) => config_error(e),
                Ok(database) => match flotilla_kit::cli::migrate(&database) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        log::error!("{e:#}");
                        ExitCode::FAILURE
                    }
                },
            }
        }
        ("openapi", true) => match flotilla_pages::merge_documents(&args[1..]) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                log::error!("{e:#}");
                ExitCode::FAILURE
            }
        },
        ("version" | "--version" | "-V", false) => {
            println!("flotilla-pages {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ("help" | "--help" | "-h", false) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        (other, _) => {
            eprint!("flotilla-pages: unexpected arguments starting at {other:?}\n{HELP}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn config_error(e: flotilla_kit::ConfigError) -> ExitCode {
    log::error!("invalid configuration: {e}");
    ExitCode::from(EXIT_CONFIG)
}
