//! Passwords: the policy a new one must pass (`policy`), Argon2id hashing (`hashing`),
//! the bounded pool that runs it off the async executor (`pool`) and the settings every
//! service reads the same way (`settings`).

mod hashing;
mod policy;
mod pool;
mod settings;

pub use hashing::{
    HashError, HashParams, burn_time, hash_password, release_spare_memory, verify_password,
};
pub use policy::{Password, PasswordPolicy};
pub use pool::{HashPool, PoolError, default_workers};
pub use settings::PasswordSettings;
