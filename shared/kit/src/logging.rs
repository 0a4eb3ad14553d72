//! Logs go to standard error, one line each, through env_logger. `FLOTILLA_LOG` sets
//! the filter (default `info`; e.g. `info,access=warn` hides the per-request lines).
//! Nothing logs a password, a token, a cookie or a query string.

pub fn init() {
    let env = env_logger::Env::new()
        .filter_or("FLOTILLA_LOG", "info")
        .write_style("FLOTILLA_LOG_STYLE");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}
