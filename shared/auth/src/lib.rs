//! Passwords, tokens and sessions for the flotilla services.
//!
//! Passwords (`password/`):
//! - [`PasswordPolicy::check`] turns raw input into a [`Password`] or a message for the field.
//! - [`hash_password`] and [`verify_password`] use Argon2id; they are slow on purpose, so
//!   request handlers go through a [`HashPool`], which runs them off the async executor and
//!   answers [`PoolError::Busy`] instead of queueing without bound; [`PasswordSettings`]
//!   reads both from the environment.
//!
//! Tokens:
//! - [`new_token`] and [`token_hash`] (from `flotilla-accounts`) make the secrets sent in
//!   email links and refresh tokens; the database stores only the hash.
//! - [`keys`] and [`access_token`]: Ed25519 key files and EdDSA access tokens (login signs,
//!   everyone verifies).
//!
//! Trusting a token on any service, one module per concern:
//! - `config`: [`AuthConfig`] and [`KeySource`], read from the environment.
//! - `auth`: [`Auth`], the handle that ties the rest together and verifies tokens.
//! - `key_refresh`: the public keys from login's JWKS or a file ([`parse_jwks`]), kept
//!   current on the auth thread.
//! - `revocation` and `deny_list`: the [`DenyList`] of revoked sessions, filled from
//!   `session.revoked` events (`flotilla_bus::Event`) and a catch-up from the database;
//!   [`Auth::announce_revoked`] tells the fleet.
//! - `token_cache`: tokens verified already, so the EdDSA check runs once per token.
//! - `cookies`: the access and refresh cookies ([`Auth::access_cookie`] and friends).
//! - [`device`]: login's signed device cookies (throttling apart, the refresh grace).
//! - `csrf`: the same-origin and form-token rule ([`Auth::check_csrf`], [`CSRF_HEADER`]).
//! - `extractors`: what handlers take: [`Authenticated`], [`Verified`], [`Admin`] and
//!   [`Submission`] (with [`CarriesCsrf`]).
//!
//! Requests and accounts:
//! - [`RequestOrigin::of`]: where a request comes from, as sessions and auth events
//!   record it (the rows themselves are `flotilla-accounts`' models).
//! - [`throttle`]: growing waits after failed password checks, per key.
//! - [`password_check`]: a signed-in person's password asked again ([`PasswordChecks`]),
//!   throttled per account: profile's changes and login's confirmation share it.
//! - [`even_time`]: a floor under answers that must not tell whether an address has
//!   an account.
//! - [`factors`]: second factors' parts (the key for secrets at rest, TOTP, QR codes,
//!   recovery codes); not wired into sign-in yet.

pub mod access_token;
mod auth;
mod config;
mod cookies;
mod csrf;
mod deny_list;
pub mod device;
mod errors;
pub mod even_time;
mod extractors;
pub mod factors;
mod key_refresh;
pub mod keys;
mod origin;
pub mod passkeys;
mod password;
pub mod password_check;
#[cfg(test)]
mod proptests;
mod revocation;
pub mod second_factor;
pub mod throttle;
mod token_cache;

pub use access_token::{Claims, TokenError, TokenSettings};
pub use auth::Auth;
pub use config::{AuthConfig, KeySource, reset_link_ttl, verify_link_ttl};
pub use csrf::{CSRF_HEADER, same_origin};
pub use deny_list::DenyList;
pub use errors::AuthError;
pub use even_time::EvenTime;
pub use extractors::{
    Admin, Authenticated, CarriesCsrf, Credential, Submission, Verified, unauthorized,
};
pub use flotilla_accounts::{new_token, token_hash};
pub use key_refresh::{KEY_REFRESH, parse_jwks};
pub use origin::{ClientOrigin, RequestOrigin};
pub use password::{
    HashError, HashParams, HashPool, Password, PasswordPolicy, PasswordSettings, PoolError,
    burn_time, default_workers, hash_password, release_spare_memory, verify_password,
};
pub use password_check::{CheckRefusal, PasswordChecks};
pub use second_factor::{Code, CodeRefusal, FactorUsed, Proof, SecondFactors};
