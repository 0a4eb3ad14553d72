//! Passwords, password hashes and secret tokens for the flotilla services.
//!
//! - [`PasswordPolicy::check`] turns raw input into a [`Password`] or a message for the field.
//! - [`hash_password`] and [`verify_password`] use Argon2id; they are slow on purpose, so
//!   request handlers go through a [`HashPool`], which runs them off the async executor and
//!   answers [`PoolError::Busy`] instead of queueing without bound.
//! - [`new_token`] and [`token_hash`] make the secrets sent in email links; the database
//!   stores only the hash.

mod hashing;
mod password;
mod pool;
mod token;

pub use hashing::{HashError, HashParams, burn_time, hash_password, verify_password};
pub use password::{Password, PasswordPolicy};
pub use pool::{HashPool, PoolError, default_workers};
pub use token::{new_token, token_hash};
