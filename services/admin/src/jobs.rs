//! `GET /admin/jobs?state=&kind=`: the queue by state and kind, and the jobs of one
//! state (dead by default) with their last error, attempts and times, never their
//! payload (a mail's holds its link). `POST /admin/jobs/{id}/retry`: a dead job queued
//! again, audited, the worker woken.
//!
//! A dead mail's link lost its token when the job was parked (`without_secrets`):
//! sent again, its link would not work, so such a retry is refused (409 `link_erased`)
//! and the worker, should one be queued all the same, parks it again unsent.

use flotilla_kit::html::SignedIn;
use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use flotilla_accounts::NewAuditEntry;
use flotilla_contracts::AuditAction;
use flotilla_jobs::JobKind;
use flotilla_jobs::inspect::{self, Count, JobState, JobSummary, Requeue};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::html::{page_or_json, render};
use flotilla_kit::input::Then;
use flotilla_kit::work::blocking;
use flotilla_kit::{Error, RequestContext, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::docs::{self, JobKindName, JobStateName};
use crate::errors::AdminError;
use crate::operator::{Operator, OperatorSubmission};
use crate::{Admin, utc};

/// Jobs listed at most.
const LIST_LIMIT: i64 = 100;

/// The query string as sent; an empty value is none.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// The jobs listed: those in this state (default `dead`).
    #[serde(default)]
    #[param(inline, value_type = Option<JobStateName>)]
    state: Option<String>,
    /// Only jobs of this kind (default: every kind).
    #[serde(default)]
    #[param(inline, value_type = Option<JobKindName>)]
    kind: Option<String>,
}

/// A query field, trimmed; empty is not given.
fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Which jobs to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFilter {
    pub state: JobState,
    pub kind: Option<JobKind>,
}

impl TryFrom<&JobsQuery> for JobFilter {
    type Error = Error;

    fn try_from(query: &JobsQuery) -> Result<Self, Error> {
        let state = match given(query.state.as_deref()) {
            None => JobState::Dead,
            Some(name) => JobState::parse(name).ok_or_else(|| {
                Error::invalid("state", "must be one of queued, running, done, dead")
            })?,
        };
        let kind = match given(query.kind.as_deref()) {
            None => None,
            Some(name) => Some(JobKind::parse(name).ok_or_else(|| {
                let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::invalid("kind", format!("must be one of {}", kinds.join(", ")))
            })?),
        };
        Ok(Self { state, kind })
    }
}

/// Jobs by state, every kind together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct StateCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
}

impl StateCounts {
    pub fn of(counts: &[Count]) -> Self {
        let mut total = Self::default();
        for count in counts {
            *match count.state {
                JobState::Queued => &mut total.queued,
                JobState::Running => &mut total.running,
                JobState::Done => &mut total.done,
                JobState::Dead => &mut total.dead,
            } += count.count;
        }
        total
    }
}

/// A job as the console shows it, never its payload. Times are RFC 3339, UTC.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    /// `email`, `purge_user`, `cleanup`, `noop` (or a newer release's kind).
    pub kind: String,
    #[schema(value_type = JobStateName)]
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    /// A mail's address, until it is done.
    pub recipient: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub run_after: String,
    pub done_at: Option<String>,
    pub dead_at: Option<String>,
}

impl JobView {
    fn of(job: JobSummary, state: JobState) -> Self {
        Self {
            id: job.id,
            kind: job.kind,
            state,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            last_error: job.last_error,
            recipient: job.recipient,
            created_at: utc(job.created_at),
            updated_at: utc(job.updated_at),
            run_after: utc(job.run_after),
            done_at: job.done_at.map(utc),
            dead_at: job.dead_at.map(utc),
        }
    }
}

/// Counts by kind and state, one row per kind.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KindCounts {
    pub kind: String,
    #[serde(flatten)]
    pub counts: StateCounts,
}

fn by_kind(counts: &[Count]) -> Vec<KindCounts> {
    let mut kinds: BTreeMap<&str, Vec<Count>> = BTreeMap::new();
    for count in counts {
        kinds.entry(&count.kind).or_default().push(count.clone());
    }
    kinds
        .into_iter()
        .map(|(kind, counts)| KindCounts {
            kind: kind.to_owned(),
            counts: StateCounts::of(&counts),
        })
        .collect()
}

/// The answer of `GET /admin/jobs`.
#[derive(Debug, Serialize, ToSchema)]
struct JobsAnswer {
    /// Every job, by state.
    counts: StateCounts,
    by_kind: Vec<KindCounts>,
    /// The state of the jobs listed.
    #[schema(value_type = JobStateName)]
    state: JobState,
    /// The kind of the jobs listed, `null` for every kind.
    #[schema(value_type = Option<JobKindName>)]
    kind: Option<&'static str>,
    /// The newest 100 jobs of `state` (and `kind`).
    jobs: Vec<JobView>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage<'a> {
    title: &'a str,
    viewer: SignedIn<'a>,
    answer: &'a JobsAnswer,
    states: [JobState; 4],
    kinds: [JobKind; 4],
    csrf: &'a str,
}

/// The jobs by state and kind, and the newest 100 of one state (dead by default) with
/// their last error, never their payload.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", operation_id = "jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "The jobs: JSON for an API client, the page (a retry \
            form per dead job) for a browser.", content(
            (JobsAnswer = "application/json"),
            (String = "text/html"),
        ), links(
            ("retry_first" = (operation_id = "admin_retry_job",
                parameters(("id" = "$response.body#/jobs/0/id")),
                description = "Queue the first job listed again (a dead one by default).")),
        )),
        (status = 303, description = docs::PAGE_SEE_OTHER, headers(("Location" = String))),
        (status = 400, description = "`malformed_query`: a parameter other than `state` and \
            `kind`, or one given twice.", body = ErrorBody),
        (status = 401, description = docs::PAGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::PAGE_FORBIDDEN, body = ErrorBody),
        (status = 422, description = "`invalid_input`: `state` or `kind` is not one of \
            its values.", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn list(
    operator: Operator,
    req: HttpRequest,
    query: web::Query<JobsQuery>,
    state: web::Data<State>,
) -> Result<HttpResponse, Error> {
    let filter = JobFilter::try_from(&query.into_inner())?;
    let now = flotilla_jobs::now();
    let (counts, jobs) = blocking(&state, move |conn| {
        let counts = inspect::census(conn, now)?;
        let jobs = inspect::list(conn, filter.state, filter.kind, now, LIST_LIMIT)?;
        Ok::<_, flotilla_db::diesel::result::Error>((counts, jobs))
    })
    .await?;
    let answer = JobsAnswer {
        counts: StateCounts::of(&counts),
        by_kind: by_kind(&counts),
        state: filter.state,
        kind: filter.kind.map(JobKind::as_str),
        jobs: jobs
            .into_iter()
            .map(|job| JobView::of(job, filter.state))
            .collect(),
    };
    Ok(page_or_json(&req, &answer, || {
        render(&JobsPage {
            title: "Jobs",
            viewer: operator.viewer(),
            answer: &answer,
            states: JobState::ALL,
            kinds: JobKind::ALL,
            csrf: operator.csrf(),
        })
    }))
}

/// The retry form's body: only its form token (`{}` or nothing for an API client).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryForm {
    /// The session's form token (a form; or the `x-csrf-token` header). Not needed with
    /// a bearer token.
    #[serde(default)]
    csrf_token: Option<String>,
}

impl flotilla_auth::CarriesCsrf for RetryForm {
    fn csrf_token(&self) -> Option<&str> {
        self.csrf_token.as_deref()
    }
}

/// The answer of a retry.
#[derive(Debug, Serialize, ToSchema)]
struct Retried<'a> {
    id: i64,
    kind: &'a str,
    /// Always `queued`.
    #[schema(value_type = JobStateName)]
    state: JobState,
}

/// Queues a dead job again (attempts from zero, due now) and wakes the worker, audited
/// as `job.retried`; needs a recent sign-in or password confirmation.
#[utoipa::path(post, path = "/admin/jobs/{id}/retry", tag = "admin", operation_id = "retry_job",
    params(
        ("id" = i64, Path, description = "The job's id."),
        ("x-csrf-token" = Option<String>, Header, description = "The session's form token, \
            for a change made with the cookie (or the body's `csrf_token`)."),
    ),
    request_body(description = "`{}` or nothing for an API client; the jobs page's form \
        for a browser.", content(
        (Option<RetryForm> = "application/json"),
        (Option<RetryForm> = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Queued again.", body = Retried),
        (status = 303, description = "A form post: queued, on to `/admin/jobs?state=queued`. \
            Without a recent sign-in or confirmation (or, with `FLOTILLA_ADMIN_REQUIRE_MFA`, \
            in a session not confirmed with the second factor): to \
            `/login/confirm?next=/admin/jobs`.", headers(("Location" = String))),
        (status = 401, description = docs::CHANGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::CHANGE_FORBIDDEN, body = ErrorBody),
        (status = 404, description = "`not_found`: no job has this id (or it is no \
            number).", body = ErrorBody),
        (status = 409, description = "`not_dead`: only a dead job can be retried; \
            `link_erased`: a dead mail whose link lost its token when it died (sent again \
            it would not work: have a new link sent instead).", body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn retry(
    submission: OperatorSubmission<RetryForm>,
    path: web::Path<i64>,
    context: RequestContext,
    state: web::Data<State>,
    admin: web::Data<Admin>,
) -> Result<HttpResponse, Error> {
    let OperatorSubmission { operator, input } = submission;
    let id = path.into_inner();
    operator
        .require_recent_authentication(
            &state,
            admin.config.reauth_window,
            input.is_form(),
            "/admin/jobs",
        )
        .await?;
    let actor = operator.actor();
    let now = flotilla_jobs::now();
    let outcome = blocking(&state, move |conn| {
        flotilla_db::write_transaction(conn, |conn| {
            let outcome = inspect::requeue_dead(conn, id, now)?;
            if let Requeue::Queued { kind } = &outcome {
                NewAuditEntry {
                    actor: &actor,
                    action: AuditAction::JobRetried,
                    target: None,
                    client_addr: &context.client.to_string(),
                    request_id: &context.id,
                    detail: &format!("job {id} ({kind})"),
                }
                .record(conn, now)?;
            }
            Ok::<_, flotilla_db::diesel::result::Error>(outcome)
        })
    })
    .await?;
    let kind = match outcome {
        Requeue::Queued { kind } => kind,
        Requeue::Unknown => return Err(AdminError::UnknownJob.into()),
        Requeue::NotDead { state } => {
            return Err(AdminError::JobNotDead {
                state: state.as_str(),
            }
            .into());
        }
        Requeue::LinkErased { .. } => return Err(AdminError::LinkErased.into()),
    };
    admin.wake.wake(&kind);
    log::info!("job {id} ({kind}) queued again by an admin");
    Ok(input.reply(
        StatusCode::OK,
        &Retried {
            id,
            kind: &kind,
            state: JobState::Queued,
        },
        || Then::SeeOther("/admin/jobs?state=queued".into()),
    ))
}
