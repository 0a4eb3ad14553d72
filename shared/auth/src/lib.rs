//! Passwords, tokens and sessions for the flotilla services.
//!
//! - [`PasswordPolicy::check`] turns raw input into a [`Password`] or a message for the field.
//! - [`hash_password`] and [`verify_password`] use Argon2id; they are slow on purpose, so
//!   request handlers go through a [`HashPool`], which runs them off the async executor and
//!   answers [`PoolError::Busy`] instead of queueing without bound.
//! - [`new_token`] and [`token_hash`] (from `flotilla-accounts`) make the secrets sent in
//!   email links and refresh tokens; the database stores only the hash.
//! - [`keys`] and [`tokens`]: Ed25519 key files and EdDSA access tokens (login signs,
//!   everyone verifies).
//! - [`Auth`] and the extractors [`Authenticated`], [`Verified`], [`Admin`] and
//!   [`Submission`]: trusting a token on any service, with revocation and CSRF.
//! - [`RequestOrigin::of`]: where a request comes from, as sessions and auth events
//!   record it (the rows themselves are `flotilla-accounts`' models).
//! - [`throttle`]: growing waits after failed password checks, per key.

mod guard;
mod hashing;
pub mod keys;
mod origin;
mod password;
mod pool;
mod settings;
pub mod throttle;
pub mod tokens;

pub use flotilla_accounts::{new_token, token_hash};
pub use guard::{
    Admin, Auth, AuthConfig, Authenticated, CSRF_HEADER, CarriesCsrf, Credential, DenyList,
    KeySource, SESSION_REVOKED, Submission, Verified, parse_jwks, unauthorized,
};
pub use hashing::{HashError, HashParams, burn_time, hash_password, verify_password};
pub use origin::RequestOrigin;
pub use password::{Password, PasswordPolicy};
pub use pool::{HashPool, PoolError, default_workers};
pub use settings::PasswordSettings;
pub use tokens::{Claims, TokenError, TokenSettings};
