//! `GET /admin/users/{id}`: one account as the console shows it: its fields (never the
//! password hash), its second factors (when the authenticator app and each passkey were
//! set up and last used, how many recovery codes are left: never a secret, a credential
//! or a code), its live
//! sessions, its recent auth events, the jobs about it (state and last error, never a
//! payload: a mail's may hold a link's token) and its audit entries; a form per action
//! that applies to it ([`crate::actions`]).

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDateTime;
use flotilla_accounts::{
    AuditEntry, FactorDates, Factors, PasskeyInfo, Role, User, summarise_user_agent,
};
use flotilla_contracts::AuthEventKind;
use flotilla_db::diesel::prelude::*;
use flotilla_db::schema::{auth_events, jobs, sessions};
use flotilla_db::{AnyConnection, diesel};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::html::SignedIn;
use flotilla_kit::html::{page_or_json, render};
use flotilla_kit::work::blocking;
use flotilla_kit::{Error, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actions::{self, Action};
use crate::docs::{self, RoleName};
use crate::errors::AdminError;
use crate::operator::Operator;

/// How many auth events, jobs and audit entries the page shows (the newest).
const RECENT: i64 = 50;

/// An account's id as a path gives it: what `new_id` makes (a UUID's 36 characters),
/// leniently: anything else names no account (404), without a lookup.
pub fn account_id(raw: &str) -> Result<String, Error> {
    let plausible = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match plausible {
        true => Ok(raw.to_owned()),
        false => Err(AdminError::UnknownAccount.into()),
    }
}

/// The console's timestamps: RFC 3339, UTC, to the second.
pub fn iso(at: NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A live session.
#[derive(Debug, Clone, Queryable)]
pub struct SessionLine {
    pub created_at: NaiveDateTime,
    pub last_used_at: NaiveDateTime,
    pub authenticated_at: Option<NaiveDateTime>,
    pub client_addr: String,
    pub user_agent: String,
}

/// An auth event.
#[derive(Debug, Clone, Queryable)]
pub struct EventLine {
    pub kind: String,
    pub created_at: NaiveDateTime,
    pub client_addr: String,
    pub user_agent: String,
}

/// A job about the account, without its payload.
#[derive(Debug, Clone, Queryable)]
pub struct JobLine {
    pub id: i64,
    pub kind: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub run_after: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
    pub done_at: Option<NaiveDateTime>,
    pub dead_at: Option<NaiveDateTime>,
}

impl JobLine {
    /// done, dead, running (claimed, its lease not run out) or pending.
    pub fn state(&self, now: NaiveDateTime) -> &'static str {
        if self.done_at.is_some() {
            "done"
        } else if self.dead_at.is_some() {
            "dead"
        } else if self.locked_until.is_some_and(|until| until > now) {
            "running"
        } else {
            "pending"
        }
    }
}

/// Everything the page shows about one account, read in one snapshot.
pub struct Dossier {
    pub account: User,
    pub last_sign_in_at: Option<NaiveDateTime>,
    pub factors: Factors,
    pub sessions: Vec<SessionLine>,
    pub events: Vec<EventLine>,
    pub jobs: Vec<JobLine>,
    pub audit: Vec<AuditEntry>,
    pub read_at: NaiveDateTime,
}

/// The account's last successful sign-in, if its auth events still have one.
fn last_sign_in(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<NaiveDateTime>> {
    auth_events::table
        .filter(auth_events::user_id.eq(id))
        .filter(auth_events::kind.eq(AuthEventKind::LoginSuccess.as_str()))
        .select(diesel::dsl::max(auth_events::created_at))
        .get_result(conn)
}

impl Dossier {
    pub fn load(conn: &mut AnyConnection, id: &str) -> QueryResult<Option<Dossier>> {
        flotilla_db::read_snapshot(conn, |conn| {
            let Some(account) = User::find(conn, id)? else {
                return Ok(None);
            };
            let now = flotilla_jobs::now();
            let sessions = sessions::table
                .filter(sessions::user_id.eq(id))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::idle_expires_at.gt(now))
                .filter(sessions::expires_at.gt(now))
                .order(sessions::last_used_at.desc())
                .select((
                    sessions::created_at,
                    sessions::last_used_at,
                    sessions::authenticated_at,
                    sessions::client_addr,
                    sessions::user_agent,
                ))
                .load(conn)?;
            let events = auth_events::table
                .filter(auth_events::user_id.eq(id))
                .order((auth_events::created_at.desc(), auth_events::id.desc()))
                .limit(RECENT)
                .select((
                    auth_events::kind,
                    auth_events::created_at,
                    auth_events::client_addr,
                    auth_events::user_agent,
                ))
                .load(conn)?;
            // Mails to its address (a job keeps its recipient until it is done), and
            // the jobs its closing queued, found by their keys.
            let keys = [format!("purge_user:{id}"), format!("account_deleted:{id}")];
            let jobs = jobs::table
                .filter(
                    jobs::recipient
                        .eq(&account.email)
                        .or(jobs::idempotency_key.eq_any(&keys)),
                )
                .order(jobs::id.desc())
                .limit(RECENT)
                .select((
                    jobs::id,
                    jobs::kind,
                    jobs::attempts,
                    jobs::max_attempts,
                    jobs::last_error,
                    jobs::created_at,
                    jobs::run_after,
                    jobs::locked_until,
                    jobs::done_at,
                    jobs::dead_at,
                ))
                .load(conn)?;
            Ok(Some(Dossier {
                last_sign_in_at: last_sign_in(conn, id)?,
                factors: Factors::of(conn, id)?,
                audit: AuditEntry::about(conn, id, RECENT)?,
                account,
                sessions,
                events,
                jobs,
                read_at: now,
            }))
        })
    }

    /// The actions that apply to the account as it is now (none once it is closed).
    pub fn actions(&self) -> Vec<Action> {
        let account = &self.account;
        if account.is_closed() {
            return Vec::new();
        }
        Action::ALL
            .iter()
            .copied()
            .filter(|action| match action {
                Action::Disable => !account.is_disabled(),
                Action::Enable => account.is_disabled(),
                Action::Promote => account.role != Role::Admin && !account.is_disabled(),
                Action::Demote => account.role == Role::Admin,
                Action::ResendVerification => !account.is_verified(),
                Action::ResetFactors => has_any_factor(&self.factors),
                Action::RevokeSessions | Action::ForcePasswordReset | Action::Delete => true,
            })
            .collect()
    }
}

/// Whether a reset of second factors would remove anything: a factor, or recovery codes
/// left over without one.
pub fn has_any_factor(factors: &Factors) -> bool {
    factors.any() || factors.recovery_codes_left > 0
}

// The JSON answers below keep the order of their fields as it always was (the
// alphabetical order of the `json!()` values they replace), so that they are the same
// bytes as before.

/// An account's second factors as the JSON answers show them: dates and a count, never
/// a secret, a credential or a code.
#[derive(Debug, Serialize, ToSchema)]
pub struct FactorsJson<'a> {
    /// Each passkey, by name.
    passkeys: Vec<PasskeyJson<'a>>,
    /// How many unused recovery codes are left.
    recovery_codes_left: i64,
    /// The authenticator app, if one is set up.
    totp: Option<TotpJson>,
}

/// The authenticator app: when it was set up and last used.
#[derive(Debug, Serialize, ToSchema)]
struct TotpJson {
    /// `2026-12-02T10:05:00Z`.
    created_at: String,
    /// `null`: never used.
    last_used_at: Option<String>,
}

/// A passkey: its name and dates, never its credential.
#[derive(Debug, Serialize, ToSchema)]
struct PasskeyJson<'a> {
    created_at: String,
    /// `null`: never used.
    last_used_at: Option<String>,
    /// The name its owner gave it.
    name: &'a str,
}

impl<'a> FactorsJson<'a> {
    pub fn of(factors: &'a Factors) -> Self {
        FactorsJson {
            totp: factors.totp.map(|t| TotpJson {
                created_at: iso(t.created_at),
                last_used_at: t.last_used_at.map(iso),
            }),
            passkeys: factors
                .passkeys
                .iter()
                .map(|p| PasskeyJson {
                    name: &p.name,
                    created_at: iso(p.created_at),
                    last_used_at: p.last_used_at.map(iso),
                })
                .collect(),
            recovery_codes_left: factors.recovery_codes_left,
        }
    }
}

/// An account's fields as the JSON answers show them: never the password hash (only
/// whether there is one). Times are RFC 3339, UTC (`2026-12-02T10:05:00Z`).
#[derive(Serialize, ToSchema)]
pub struct AccountJson<'a> {
    bio: Option<&'a str>,
    /// Closed (by its owner or an admin) and waiting for its purge.
    closed: bool,
    created_at: String,
    /// When it was closed.
    deleted_at: Option<String>,
    disabled: bool,
    disabled_at: Option<String>,
    display_name: Option<&'a str>,
    email: &'a str,
    email_verified: bool,
    email_verified_at: Option<String>,
    /// Whether it has a password (never the password or its hash).
    has_password: bool,
    id: &'a str,
    /// Only in the answer of `GET /admin/users/{id}`: the account's last successful
    /// sign-in (`login.success`) its auth events still hold, `null` for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false)]
    last_sign_in_at: Option<Option<String>>,
    /// Whether its profile page is public.
    public: bool,
    #[schema(value_type = RoleName)]
    role: &'static str,
    updated_at: String,
    username: Option<&'a str>,
}

impl<'a> AccountJson<'a> {
    pub fn of(account: &'a User) -> Self {
        AccountJson {
            id: &account.id,
            email: &account.email,
            username: account.username.as_deref(),
            display_name: account.display_name.as_deref(),
            bio: account.bio.as_deref(),
            public: account.public,
            role: account.role.as_str(),
            has_password: account.password_hash.is_some(),
            email_verified: account.is_verified(),
            email_verified_at: account.email_verified_at.map(iso),
            disabled: account.is_disabled(),
            disabled_at: account.disabled_at.map(iso),
            closed: account.is_closed(),
            deleted_at: account.deleted_at.map(iso),
            created_at: iso(account.created_at),
            updated_at: iso(account.updated_at),
            last_sign_in_at: None,
        }
    }
}

/// A live session of the account.
#[derive(Serialize, ToSchema)]
struct SessionJson {
    /// Its last sign-in or password confirmation.
    authenticated_at: Option<String>,
    client_addr: String,
    created_at: String,
    /// The browser and system, from its user agent (`Firefox on Linux`).
    device: String,
    last_used_at: String,
}

/// An auth event of the account.
#[derive(Serialize, ToSchema)]
struct EventJson<'a> {
    at: String,
    client_addr: &'a str,
    device: String,
    /// `login.success`, `login.failure`, `password.changed`, …
    kind: &'a str,
}

/// A job about the account, without its payload.
#[derive(Serialize, ToSchema)]
struct AccountJobJson<'a> {
    attempts: i32,
    created_at: String,
    id: i64,
    /// `email`, `purge_user`, …
    kind: &'a str,
    last_error: Option<&'a str>,
    max_attempts: i32,
    run_after: String,
    /// `pending`, `running` (leased by a worker), `done` or `dead`.
    #[schema(example = "pending")]
    state: &'static str,
}

/// An audit entry about the account.
#[derive(Serialize, ToSchema)]
struct AuditJson<'a> {
    /// An audit action: `account.disabled`, `account.promoted`, …
    action: &'a str,
    /// The admin's address then, or `command line (<unix user>)`.
    actor: &'a str,
    at: String,
    client_addr: &'a str,
    detail: &'a str,
    id: i64,
    request_id: &'a str,
}

/// The answer of `GET /admin/users/{id}`.
#[derive(Serialize, ToSchema)]
pub struct DossierJson<'a> {
    account: AccountJson<'a>,
    /// The actions that apply to the account now (none once it is closed).
    actions: Vec<Action>,
    /// Its newest 50 audit entries.
    audit: Vec<AuditJson<'a>>,
    /// Its newest 50 auth events.
    auth_events: Vec<EventJson<'a>>,
    /// Its newest 50 jobs: mails to its address, its closing's mail and purge.
    jobs: Vec<AccountJobJson<'a>>,
    second_factors: FactorsJson<'a>,
    /// Its live sessions, the most recently used first.
    sessions: Vec<SessionJson>,
}

impl Dossier {
    fn json(&self) -> DossierJson<'_> {
        let now = self.read_at;
        let account = AccountJson {
            last_sign_in_at: Some(self.last_sign_in_at.map(iso)),
            ..AccountJson::of(&self.account)
        };
        DossierJson {
            account,
            second_factors: FactorsJson::of(&self.factors),
            sessions: self
                .sessions
                .iter()
                .map(|s| SessionJson {
                    device: summarise_user_agent(&s.user_agent),
                    client_addr: s.client_addr.clone(),
                    created_at: iso(s.created_at),
                    last_used_at: iso(s.last_used_at),
                    authenticated_at: s.authenticated_at.map(iso),
                })
                .collect(),
            auth_events: self
                .events
                .iter()
                .map(|e| EventJson {
                    kind: &e.kind,
                    at: iso(e.created_at),
                    client_addr: &e.client_addr,
                    device: summarise_user_agent(&e.user_agent),
                })
                .collect(),
            jobs: self
                .jobs
                .iter()
                .map(|j| AccountJobJson {
                    id: j.id,
                    kind: &j.kind,
                    state: j.state(now),
                    attempts: j.attempts,
                    max_attempts: j.max_attempts,
                    last_error: j.last_error.as_deref(),
                    created_at: iso(j.created_at),
                    run_after: iso(j.run_after),
                })
                .collect(),
            audit: self
                .audit
                .iter()
                .map(|a| AuditJson {
                    id: a.id,
                    at: iso(a.created_at),
                    actor: &a.actor,
                    action: &a.action,
                    client_addr: &a.client_addr,
                    request_id: &a.request_id,
                    detail: &a.detail,
                })
                .collect(),
            actions: self.actions(),
        }
    }
}

/// The account page.
#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    title: &'a str,
    viewer: SignedIn<'a>,
    dossier: &'a Dossier,
    actions: Vec<Action>,
    csrf: &'a str,
    notice: &'static str,
    problem: Option<&'a str>,
}

/// What the template calls.
impl AccountPage<'_> {
    fn when(&self, at: &NaiveDateTime) -> String {
        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    }

    fn maybe(&self, at: &Option<NaiveDateTime>) -> String {
        at.as_ref()
            .map_or_else(|| "—".to_owned(), |at| self.when(at))
    }

    /// The authenticator app's line: when it was set up and last used, or "none".
    fn totp(&self, totp: &Option<FactorDates>) -> String {
        match totp {
            None => "none".to_owned(),
            Some(t) => self.set_up(&t.created_at, &t.last_used_at),
        }
    }

    /// A passkey's line: its name, when it was set up and last used.
    fn passkey(&self, key: &PasskeyInfo) -> String {
        format!(
            "{}: {}",
            key.name,
            self.set_up(&key.created_at, &key.last_used_at)
        )
    }

    fn set_up(&self, created_at: &NaiveDateTime, last_used_at: &Option<NaiveDateTime>) -> String {
        let used = last_used_at
            .as_ref()
            .map_or_else(|| "never".to_owned(), |at| self.when(at));
        format!("set up {}, last used {used}", self.when(created_at))
    }

    fn device(&self, user_agent: &str) -> String {
        summarise_user_agent(user_agent)
    }

    fn state(&self, job: &JobLine) -> &'static str {
        job.state(self.dossier.read_at)
    }
}

/// The page of one account, with what the last action did (`done`) or why it was
/// refused (`problem`).
pub fn account_page(
    dossier: &Dossier,
    viewer: SignedIn,
    done: Option<&str>,
    problem: Option<&str>,
) -> String {
    render(&AccountPage {
        title: &dossier.account.email,
        actions: dossier.actions(),
        dossier,
        csrf: viewer.csrf,
        viewer,
        notice: done.map_or("", actions::notice),
        problem,
    })
}

/// Reads the account of `id`; 404 when there is none.
pub async fn dossier(state: &web::Data<State>, id: String) -> Result<Dossier, Error> {
    blocking(state, move |conn| Dossier::load(conn, &id))
        .await?
        .ok_or_else(|| AdminError::UnknownAccount.into())
}

/// The account page's query string.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Shown {
    /// The action a form post just did (after its redirect), or `unchanged`: the page
    /// shows a notice saying so.
    #[serde(default)]
    #[param(example = "disable")]
    done: Option<String>,
}

/// One account: its fields, second factors, sessions, auth events, jobs and audit
/// entries, and the actions that apply to it now.
#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin", operation_id = "account",
    params(
        ("id" = String, Path, description = "The account's id."),
        Shown,
    ),
    responses(
        (status = 200, description = "The account: JSON for an API client, the page (a \
            form per action) for a browser.", content(
            (DossierJson = "application/json"),
            (String = "text/html"),
        )),
        (status = 303, description = docs::PAGE_SEE_OTHER, headers(("Location" = String))),
        (status = 400, description = docs::MALFORMED_QUERY, body = ErrorBody),
        (status = 401, description = docs::PAGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::PAGE_FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no account has this id (or it was \
            purged).", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn show(
    operator: Operator,
    path: web::Path<String>,
    query: web::Query<Shown>,
    req: HttpRequest,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let id = account_id(&path)?;
    let dossier = dossier(&state, id).await?;
    Ok(page_or_json(&req, &dossier.json(), || {
        account_page(&dossier, operator.viewer(), query.done.as_deref(), None)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{account, each_backend, with_factors};

    fn viewer() -> SignedIn<'static> {
        SignedIn {
            name: "root",
            csrf: "form-token",
            admin: true,
        }
    }

    #[test]
    fn the_page_and_the_json_show_the_factors_never_a_secret() {
        each_backend(|db, conn| {
            let name = db.backend_name();
            account(conn, "u1", "ada@example.org");
            with_factors(conn, "u1", true, 7);
            let key = flotilla_accounts::PasskeyRow {
                id: "k1".into(),
                user_id: "u1".into(),
                credential_id: "cred-id".into(),
                name: "Ada's <laptop>".into(),
                credential: "{\"public-key\":\"stand-in\"}".into(),
                created_at: flotilla_jobs::now(),
                last_used_at: None,
            };
            assert!(flotilla_accounts::PasskeyRow::add(conn, &key).unwrap());
            let dossier = Dossier::load(conn, "u1").unwrap().unwrap();
            let set_up = dossier.factors.totp.unwrap().created_at;
            let key_set_up = key.created_at.format("%Y-%m-%d %H:%M:%S UTC");

            let json = serde_json::to_value(dossier.json()).unwrap();
            let factors = &json["second_factors"];
            assert_eq!(factors["recovery_codes_left"], 7, "{name}: {json}");
            assert_eq!(factors["totp"]["created_at"], iso(set_up), "{name}: {json}");
            assert_eq!(
                factors["totp"]["last_used_at"],
                iso(set_up),
                "{name}: {json}"
            );
            assert!(
                json["actions"]
                    .as_array()
                    .unwrap()
                    .contains(&"reset-factors".into())
            );

            let page = account_page(&dossier, viewer(), None, None);
            let when = set_up.format("%Y-%m-%d %H:%M:%S UTC");
            let app = format!(
                "<th scope=\"row\">Authenticator app</th><td>set up {when}, last used {when}</td>"
            );
            assert!(page.contains(&app), "{name}: {page}");
            assert!(page.contains("<th scope=\"row\">Recovery codes left</th><td>7</td>"));
            let passkey = format!("Ada&#39;s &lt;laptop&gt;: set up {key_set_up}, last used never");
            assert!(page.contains(&passkey), "{name}: {page}");
            assert_eq!(
                factors["passkeys"][0]["name"], "Ada's <laptop>",
                "{name}: {json}"
            );
            assert!(
                page.contains("action=\"/admin/users/u1/reset-factors\""),
                "{page}"
            );
            assert!(page.contains("id=\"confirm-reset-factors\""), "{page}");
            for secret in ["sealed-stand-in", "hash-u1-", "cred-id", "stand-in\""] {
                assert!(!page.contains(secret) && !json.to_string().contains(secret));
            }
        });
    }

    #[test]
    fn an_account_without_factors_says_none_and_offers_no_reset() {
        each_backend(|db, conn| {
            let name = db.backend_name();
            account(conn, "u1", "ada@example.org");
            let dossier = Dossier::load(conn, "u1").unwrap().unwrap();
            let json = serde_json::to_value(dossier.json()).unwrap();
            assert_eq!(
                json["second_factors"],
                serde_json::json!({"totp": null, "passkeys": [], "recovery_codes_left": 0}),
                "{name}"
            );
            assert!(!dossier.actions().contains(&Action::ResetFactors), "{name}");
            let page = account_page(&dossier, viewer(), None, None);
            assert!(page.contains("<th scope=\"row\">Authenticator app</th><td>none</td>"));
            assert!(!page.contains("reset-factors"), "{page}");

            // Codes left over without an app can be reset (they would still sign in).
            with_factors(conn, "u1", false, 2);
            let dossier = Dossier::load(conn, "u1").unwrap().unwrap();
            assert!(dossier.actions().contains(&Action::ResetFactors), "{name}");
        });
    }

    #[test]
    fn a_factor_never_used_says_so() {
        let at = chrono::DateTime::from_timestamp(1_796_000_000, 0)
            .unwrap()
            .naive_utc();
        let factors = Factors {
            totp: Some(FactorDates {
                created_at: at,
                last_used_at: None,
            }),
            ..Factors::default()
        };
        let json = serde_json::to_value(FactorsJson::of(&factors)).unwrap();
        assert_eq!(json["totp"]["last_used_at"], serde_json::Value::Null);
        assert!(has_any_factor(&factors));
        assert!(!has_any_factor(&Factors::default()));
    }
}
