//! The password settings every service that takes passwords reads the same way.

use std::time::Duration;

use flotilla_kit::{ConfigError, Env};

use crate::{HashParams, HashPool, PasswordPolicy};

#[derive(Debug, Clone)]
pub struct PasswordSettings {
    /// `FLOTILLA_PASSWORD_MIN_CHARS` (12) and `FLOTILLA_PASSWORD_MAX_CHARS` (128).
    pub policy: PasswordPolicy,
    /// `FLOTILLA_ARGON2_MEMORY_KIB` (19456), `FLOTILLA_ARGON2_ITERATIONS` (2),
    /// `FLOTILLA_ARGON2_PARALLELISM` (1): OWASP's Argon2id settings.
    pub hash: HashParams,
    /// `FLOTILLA_HASH_WORKERS` (default: the cores) hashes at once, and
    /// `FLOTILLA_HASH_QUEUE` (default 16 per worker) waiting; beyond, 503.
    pub hash_workers: usize,
    pub hash_queue: usize,
    /// `FLOTILLA_HASH_WAIT_MS` (default 25; 0 turns it off): while hashes are asked
    /// for faster than they are made, a request whose hash would wait longer than
    /// this for a thread is refused at once with 503 `busy`, rather than queued (see
    /// [`crate::HashPool`]). A burst after a quiet moment still queues.
    pub hash_wait: Option<Duration>,
}

impl PasswordSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let min_chars = env.number("FLOTILLA_PASSWORD_MIN_CHARS", 12, 8..=128)?;
        let max_chars = env.number("FLOTILLA_PASSWORD_MAX_CHARS", 128, min_chars.max(16)..=1024)?;
        let hash_workers =
            env.number("FLOTILLA_HASH_WORKERS", crate::default_workers(), 1..=256)?;
        Ok(Self {
            policy: PasswordPolicy {
                min_chars,
                max_chars,
            },
            hash: HashParams {
                memory_kib: env.number("FLOTILLA_ARGON2_MEMORY_KIB", 19_456, 8..=4_194_304)?,
                iterations: env.number("FLOTILLA_ARGON2_ITERATIONS", 2, 1..=100)?,
                parallelism: env.number("FLOTILLA_ARGON2_PARALLELISM", 1, 1..=64)?,
            },
            hash_workers,
            hash_queue: env.number("FLOTILLA_HASH_QUEUE", hash_workers * 16, 0..=100_000)?,
            hash_wait: match env.number("FLOTILLA_HASH_WAIT_MS", 25u64, 0..=60_000)? {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
        })
    }

    /// The bounded pool that hashes and verifies off the request threads.
    pub fn pool(&self) -> HashPool {
        HashPool::new(self.hash, self.hash_workers, self.hash_queue)
            .with_wait_target(self.hash_wait)
    }
}
