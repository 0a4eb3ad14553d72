//! The descriptions of answers many of profile's routes give alike, written once
//! for their `#[utoipa::path]` attributes.

/// A `401` to an API client whose token does not hold, or whose account went meanwhile.
pub const SIGNED_OUT_OR_GONE: &str = "`not_authenticated`, `token_invalid`, `token_expired` \
    or `session_revoked`; `account_gone` when the account was closed or disabled \
    meanwhile.";

/// A `503` of a route that checks a password.
pub const BUSY_OR_UNAVAILABLE: &str = "`busy`: too many passwords being checked; or the \
    database is unavailable (`database_unavailable`) or the service overloaded \
    (`overloaded`).";

/// A `429` of a route that checks a password or a code.
pub const TOO_MANY_ATTEMPTS: &str = "`too_many_attempts`: too many wrong passwords or codes \
    for this account, or too many being checked.";

/// A `401` to an API client whose token does not hold.
pub const SIGNED_OUT: &str = "`not_authenticated`, `token_invalid`, `token_expired` \
    or `session_revoked`.";

/// A `403` of a change made with the cookie that fails the same-origin or CSRF check.
pub const CROSS_ORIGIN: &str = "`cross_origin_request` or `csrf_token_invalid`: a \
    change made with the cookie from another site, or without the form token.";
