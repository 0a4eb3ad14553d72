//! Prints the median time of one Argon2id hash with the service's settings
//! (`FLOTILLA_ARGON2_*`, OWASP defaults), for `make bench`'s Argon2 ceiling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use flotilla_auth::{HashParams, PasswordPolicy, hash_password};

fn var(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let defaults = HashParams::default();
    let params = HashParams {
        memory_kib: var("FLOTILLA_ARGON2_MEMORY_KIB", defaults.memory_kib),
        iterations: var("FLOTILLA_ARGON2_ITERATIONS", defaults.iterations),
        parallelism: var("FLOTILLA_ARGON2_PARALLELISM", defaults.parallelism),
    };
    let password = PasswordPolicy::default()
        .check("correct horse battery staple", "bench@example.org")
        .unwrap();
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let started = Instant::now();
            hash_password(&params, &password).unwrap();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{:.3}", times[times.len() / 2]);
}
