//! What the console's OpenAPI description shares beyond its handlers' attributes: the
//! names of values whose types live in shared crates (which derive no schema), and the
//! answers every route of the console gives at its door ([`crate::operator`]).
//!
//! The doc enums here only describe: the handlers read and answer the shared types, and
//! the tests below hold each list to the shared one.

use serde::Serialize;
use utoipa::ToSchema;

// `flotilla_accounts::Role`.
/// An account's role.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // described, never made (the tests make each)
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    User,
    Admin,
}

// `flotilla_jobs::inspect::JobState`.
/// Where a job is in its life: `running` is leased by a worker now, `dead` parked after
/// its last attempt or a permanent failure.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // described, never made (the tests make each)
#[serde(rename_all = "snake_case")]
pub enum JobStateName {
    Queued,
    Running,
    Done,
    Dead,
}

// `flotilla_jobs::JobKind`.
/// A job's kind: a mail, a closed account's purge, the hourly clean-up, or nothing
/// (tests and benchmarks).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // described, never made (the tests make each)
#[serde(rename_all = "snake_case")]
pub enum JobKindName {
    Email,
    PurgeUser,
    Cleanup,
    Noop,
}

// `flotilla_accounts::directory::StatusFilter`.
/// An account's state, as the user search filters it: each of the first three without
/// the closed accounts.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // described, never made (the tests make each)
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Verified,
    Unverified,
    Disabled,
    Closed,
}

/// The audit log's export format.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // described, never made (the tests make each)
#[serde(rename_all = "snake_case")]
pub enum AuditFormat {
    /// JSON lines, one entry a line.
    Jsonl,
}

/// 401 on a page's route.
pub const PAGE_UNAUTHORIZED: &str = "`not_authenticated` (no access token), `token_expired`, \
    `session_revoked` or `token_invalid` (a token that does not hold: a browser asking for the \
    page is sent to sign in instead, 303), or `account_unavailable` (the admin's account is \
    closed or disabled now).";

/// 303 on a page's route: a browser sent to sign in or to confirm, and brought back.
pub const PAGE_SEE_OTHER: &str = "A browser (`Accept: text/html`) without a usable token: \
    to `/login?next=<this page>` (which renews the session from its refresh cookie when it \
    can). With `FLOTILLA_ADMIN_REQUIRE_MFA`, a session not confirmed with the admin's second \
    factor: to `/login/confirm?next=<this page>`.";

/// 403 on a page's route.
pub const PAGE_FORBIDDEN: &str = "`admin_only`: the account has no admin role (now: read \
    from the database on every request). With `FLOTILLA_ADMIN_REQUIRE_MFA`: \
    `second_factor_required`, the admin's account has no second factor (a browser gets a page \
    that sends them to set one up); `reauthentication_required`, an API client whose session \
    was not confirmed with it.";

/// 401 on a change's route.
pub const CHANGE_UNAUTHORIZED: &str = "`not_authenticated` (no access token), \
    `token_expired`, `session_revoked` or `token_invalid` (a token that does not hold), or \
    `account_unavailable` (the admin's account is closed or disabled now).";

/// 403 on a change's route.
pub const CHANGE_FORBIDDEN: &str = "`cross_origin_request` or `csrf_token_invalid`: a change \
    made with the cookie from another site, or without the session's form token (the \
    `x-csrf-token` header or the form's `csrf_token`). `admin_only`: the account has no admin \
    role. `reauthentication_required` (an API client): no sign-in or password confirmation \
    within `FLOTILLA_ADMIN_REAUTH_SECS`, with the second factor's code when the admin's \
    account has one; confirm at `POST /login/confirm`, then repeat. \
    `second_factor_required`: with `FLOTILLA_ADMIN_REQUIRE_MFA`, the admin's account has no \
    second factor.";

/// 400 on a route that reads its query string.
pub const MALFORMED_QUERY: &str =
    "`malformed_query`: the query string does not parse (a parameter given twice, say).";

#[cfg(test)]
mod tests {
    use flotilla_accounts::Role;
    use flotilla_accounts::directory::StatusFilter;
    use flotilla_jobs::JobKind;
    use flotilla_jobs::inspect::JobState;
    use serde_json::{Value, json};

    use super::*;

    fn names<T: Serialize>(values: &[T]) -> Value {
        serde_json::to_value(values).unwrap()
    }

    #[test]
    fn the_doc_enums_name_what_the_shared_types_do() {
        assert_eq!(
            names(&[RoleName::User, RoleName::Admin]),
            json!([Role::User.as_str(), Role::Admin.as_str()])
        );
        let states = [
            JobStateName::Queued,
            JobStateName::Running,
            JobStateName::Done,
            JobStateName::Dead,
        ];
        assert_eq!(names(&states), names(&JobState::ALL));
        let kinds = [
            JobKindName::Email,
            JobKindName::PurgeUser,
            JobKindName::Cleanup,
            JobKindName::Noop,
        ];
        let shared: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names(&kinds), json!(shared));
        let statuses = [
            UserStatus::Verified,
            UserStatus::Unverified,
            UserStatus::Disabled,
            UserStatus::Closed,
        ];
        let shared: Vec<&str> = StatusFilter::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names(&statuses), json!(shared));
    }
}
