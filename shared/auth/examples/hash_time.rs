//! For `make bench`'s Argon2 ceiling, with the service's settings (`FLOTILLA_ARGON2_*`,
//! OWASP defaults), prints `median_ms parallel_per_s`: the median time of one hash
//! alone, and the hashes per second that one thread per core achieves together (the
//! cores share the memory bus, so this is below cores / one hash).
//!
//! `hash_time cold` prints `warm_ms cold_ms` instead: the median time of one hash on
//! memory kept from the hash before, and of one right after that memory was given back
//! (`release_spare_memory`), which makes it anew: what the first hash of a flood pays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use flotilla_auth::{HashParams, PasswordPolicy, hash_password, release_spare_memory};

fn var(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // As the services do: Argon2's memory is then a mapping of its own.
    flotilla_kit::memory::tune_allocator();
    let defaults = HashParams::default();
    let params = HashParams {
        memory_kib: var("FLOTILLA_ARGON2_MEMORY_KIB", defaults.memory_kib),
        iterations: var("FLOTILLA_ARGON2_ITERATIONS", defaults.iterations),
        parallelism: var("FLOTILLA_ARGON2_PARALLELISM", defaults.parallelism),
    };
    let password = PasswordPolicy::default()
        .check("correct horse battery staple", "bench@example.org")
        .unwrap();
    let median = |release: bool| {
        let mut times: Vec<f64> = (0..21)
            .map(|_| {
                if release {
                    release_spare_memory();
                }
                let started = Instant::now();
                hash_password(&params, &password).unwrap();
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    if std::env::args().nth(1).as_deref() == Some("cold") {
        let warm = median(false);
        println!("{warm:.3} {:.3}", median(true));
        return;
    }
    let alone = median(false);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = 20;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                for _ in 0..per_thread {
                    hash_password(&params, &password).unwrap();
                }
            });
        }
    });
    let parallel = (cores * per_thread) as f64 / started.elapsed().as_secs_f64();
    println!("{alone:.3} {parallel:.1}");
}
