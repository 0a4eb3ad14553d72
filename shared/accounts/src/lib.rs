//! The account models: the rows of `users`, `sessions`, `email_tokens` and
//! `auth_events` as typed values, with the queries that more than one crate runs on
//! them. A service's own transactions stay in its `store.rs` and are built from these.
//!
//! - [`User`] (a `users` row: [`Role`], `public: bool`, the password hash as a
//!   [`PasswordHash`] that never prints) and its queries: by id, by address, public
//!   profiles, disabling, closing ([`close_account`], the owner's and an admin's)
//!   and purging an account.
//! - [`Session`] and the revocations every service reads ([`revoked_since`]).
//! - [`email_link`]: the single-use links sent by email ([`EmailLink`]); [`LinkMail`]
//!   issues a reset or confirmation link and queues its mail.
//! - [`TotpFactor`], [`RecoveryCodes`] and [`Factors`]: an account's second factors
//!   (the secret sealed, the codes hashed) and what an owner or admin sees of them.
//! - [`AuthEvent`]: what happened to an account, from which [`Origin`].
//! - [`NewAuditEntry`] and [`AuditEntry`]: the admin console's append-only audit log,
//!   by an [`Actor`].
//! - [`directory`]: the admin console's search of accounts ([`directory::UserQuery`]).
//! - [`EmailAddress`] and [`Username`]: account fields parsed once at the top of a
//!   handler.
//! - [`new_token`] and [`token_hash`]: the secrets of links and refresh tokens; the
//!   database stores only the hash.
//!
//! No `Debug` here prints a secret: password hashes, token hashes and form tokens show
//! as `[redacted]`.
//!
//! Error policy: model code returns `diesel::QueryResult`; a stored value this release
//! cannot read (an unknown role, say) is a `DeserializationError`, never a panic.

mod audit;
mod auth_event;
mod closing;
pub mod directory;
pub mod email_link;
mod factors;
mod fields;
mod link_mail;
mod purge;
mod secrets;
mod session;
mod user;

pub use audit::{Actor, AuditEntry, AuditSearch, NewAuditEntry};
pub use auth_event::{AuthEvent, MAX_USER_AGENT, Origin};
pub use closing::close_account;
pub use email_link::{EmailLink, LinkPurpose};
pub use factors::{
    CHALLENGE_TTL, Challenge, ChallengePurpose, FactorDates, FactorKinds, FactorNotice, Factors,
    PasskeyInfo, PasskeyRow, RecoveryCodes, TotpFactor, has_second_factor,
};
pub use fields::{EmailAddress, Username};
pub use link_mail::LinkMail;
pub use purge::{Cleaned, cleanup, purge_closed};
pub use secrets::{new_token, plausible_token, token_hash};
pub use session::{
    RevokeReason, Session, revoke_session, revoke_user_sessions, revoked_since,
    summarise_user_agent,
};
pub use user::{
    ListedProfile, NewUser, PasswordHash, ProfileChanges, Role, SiteAccount, UnknownValue, User,
    queue_password_changed_notice,
};

/// `[redacted]` in place of a secret in `Debug` output.
pub(crate) const REDACTED: &str = "[redacted]";

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
