//! `GET /admin`: the accounts (total, verified, disabled, new in 7 days; closed ones
//! apart), sign-ins and failed sign-ins per day for 30 days (a server-rendered SVG
//! chart with its figures as a table), the jobs by state and the fleet's state.
//!
//! The counts read small partial indexes (migration 9, shared with the user search), not the table: at a million
//! accounts they take milliseconds.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use flotilla_contracts::AuthEventKind;
use flotilla_db::diesel::prelude::*;
use flotilla_db::diesel::sql_types::{BigInt, Text, Timestamp};
use flotilla_db::{AnyConnection, diesel, portable_sql};
use flotilla_kit::api::ErrorBody;
use flotilla_kit::html::SignedIn;
use flotilla_kit::html::{page_or_json, render};
use flotilla_kit::tokio;
use flotilla_kit::work::blocking;
use flotilla_kit::{Error, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Admin;
use crate::docs;
use crate::fleet::FleetReport;
use crate::jobs::StateCounts;
use crate::operator::Operator;

/// Days the chart shows, today included.
pub const DAYS: usize = 30;

/// The accounts, closed ones apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, QueryableByName, ToSchema)]
pub struct AccountCounts {
    /// Open accounts (not closed by their owner or an admin).
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    /// Open accounts whose address is confirmed.
    #[diesel(sql_type = BigInt)]
    pub verified: i64,
    /// Open accounts disabled by an admin.
    #[diesel(sql_type = BigInt)]
    pub disabled: i64,
    /// Open accounts made in the last 7 days.
    #[diesel(sql_type = BigInt)]
    pub new_7_days: i64,
    /// Closed, waiting for their purge.
    #[diesel(sql_type = BigInt)]
    pub closed: i64,
}

impl AccountCounts {
    pub fn load(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<Self> {
        // The table's row count is the fast one; each other count reads a partial
        // index that holds only its rows.
        let sql = portable_sql(
            conn,
            "SELECT a.all_rows - c.closed AS total, \
             a.all_rows - c.closed - u.unverified AS verified, d.disabled, n.new_7_days, \
             c.closed FROM \
             (SELECT COUNT(*) AS all_rows FROM users) a, \
             (SELECT COUNT(*) AS closed FROM users WHERE deleted_at IS NOT NULL) c, \
             (SELECT COUNT(*) AS unverified FROM users \
               WHERE deleted_at IS NULL AND email_verified_at IS NULL) u, \
             (SELECT COUNT(*) AS disabled FROM users \
               WHERE deleted_at IS NULL AND disabled_at IS NOT NULL) d, \
             (SELECT COUNT(*) AS new_7_days FROM users \
               WHERE deleted_at IS NULL AND created_at >= ?) n",
        );
        diesel::sql_query(sql)
            .bind::<Timestamp, _>(now - TimeDelta::days(7))
            .get_result(conn)
    }
}

/// One day of the chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Day {
    /// `2026-12-01` (UTC).
    pub day: String,
    /// Sign-ins (`login.success`).
    pub sign_ins: i64,
    /// Failed sign-ins (`login.failure`).
    pub failed: i64,
}

/// Sign-ins and failed sign-ins per day, the `DAYS` days up to `now`'s, oldest first
/// (a day without any is there, with zeros).
pub fn sign_ins_per_day(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<Vec<Day>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        day: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let first: NaiveDate = now.date() - TimeDelta::days(DAYS as i64 - 1);
    let day = match conn {
        AnyConnection::Sqlite(_) => "strftime('%Y-%m-%d', created_at)",
        AnyConnection::Postgresql(_) => "to_char(created_at, 'YYYY-MM-DD')",
    };
    let sql = portable_sql(
        conn,
        &format!(
            "SELECT kind, {day} AS day, COUNT(*) AS n FROM auth_events \
             WHERE kind IN (?, ?) AND created_at >= ? GROUP BY 1, 2"
        ),
    );
    let rows: Vec<Row> = diesel::sql_query(sql)
        .bind::<Text, _>(AuthEventKind::LoginSuccess.as_str())
        .bind::<Text, _>(AuthEventKind::LoginFailure.as_str())
        .bind::<Timestamp, _>(first.and_time(chrono::NaiveTime::MIN))
        .load(conn)?;
    let mut days: Vec<Day> = (0..DAYS)
        .map(|i| Day {
            day: (first + TimeDelta::days(i as i64))
                .format("%Y-%m-%d")
                .to_string(),
            sign_ins: 0,
            failed: 0,
        })
        .collect();
    for row in rows {
        if let Some(day) = days.iter_mut().find(|d| d.day == row.day) {
            match AuthEventKind::parse(&row.kind) {
                Some(AuthEventKind::LoginSuccess) => day.sign_ins += row.n,
                Some(AuthEventKind::LoginFailure) => day.failed += row.n,
                _ => {}
            }
        }
    }
    Ok(days)
}

/// The chart's geometry, in the SVG's own units.
pub struct Chart {
    pub width: i64,
    pub height: i64,
    /// The y of the bars' foot.
    pub base: i64,
    pub max: i64,
    pub bars: Vec<Bars>,
    pub total_sign_ins: i64,
    pub total_failed: i64,
}

/// One day's two bars.
pub struct Bars {
    pub day: String,
    pub sign_ins: i64,
    pub failed: i64,
    pub x: i64,
    /// Left of the failed bar.
    pub x_failed: i64,
    pub y_ok: i64,
    pub h_ok: i64,
    pub y_failed: i64,
    pub h_failed: i64,
    /// The day's label under its bars (every 7th day, unless it is within four days
    /// of the last, and the last), if any.
    pub label: Option<String>,
}

const SLOT: i64 = 20;
const BAR: i64 = 8;
const PLOT: i64 = 120;
const TOP: i64 = 20;
const LEFT: i64 = 10;

impl Chart {
    pub fn of(days: &[Day]) -> Self {
        let max = days
            .iter()
            .map(|d| d.sign_ins.max(d.failed))
            .max()
            .unwrap_or(0)
            .max(1);
        let base = TOP + PLOT;
        // A day with any is at least 1 unit high, so it shows.
        let height = |n: i64| if n == 0 { 0 } else { (n * PLOT / max).max(1) };
        let last = days.len().saturating_sub(1);
        let bars = days
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let x = LEFT + i as i64 * SLOT + 1;
                let (h_ok, h_failed) = (height(d.sign_ins), height(d.failed));
                Bars {
                    day: d.day.clone(),
                    sign_ins: d.sign_ins,
                    failed: d.failed,
                    x,
                    x_failed: x + BAR + 1,
                    y_ok: base - h_ok,
                    h_ok,
                    y_failed: base - h_failed,
                    h_failed,
                    // A weekly label too close to the last day's would print over it.
                    label: ((i % 7 == 0 && last - i >= 4) || i == last)
                        .then(|| d.day[5..].to_owned()),
                }
            })
            .collect();
        Self {
            width: LEFT * 2 + days.len() as i64 * SLOT,
            height: base + 24,
            base,
            max,
            bars,
            total_sign_ins: days.iter().map(|d| d.sign_ins).sum(),
            total_failed: days.iter().map(|d| d.failed).sum(),
        }
    }
}

/// The answer of `GET /admin`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    pub accounts: AccountCounts,
    /// The last 30 days (UTC), oldest first, today included; a day without any is
    /// there with zeros.
    pub sign_ins: Vec<Day>,
    /// Every job, by state.
    pub jobs: StateCounts,
    pub fleet: FleetReport,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    title: &'a str,
    viewer: SignedIn<'a>,
    overview: &'a Overview,
    chart: Chart,
    fleet: &'a FleetReport,
}

/// The overview: accounts, sign-ins per day for 30 days, jobs by state, the fleet.
#[utoipa::path(get, path = "/admin", tag = "admin", operation_id = "overview",
    responses(
        (status = 200, description = "The overview: JSON for an API client, the page (the \
            sign-ins as an SVG chart and a table) for a browser.", content(
            (Overview = "application/json"),
            (String = "text/html"),
        )),
        (status = 303, description = docs::PAGE_SEE_OTHER, headers(("Location" = String))),
        (status = 401, description = docs::PAGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::PAGE_FORBIDDEN, body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn show(
    operator: Operator,
    req: HttpRequest,
    state: web::Data<State>,
    admin: web::Data<Admin>,
) -> Result<HttpResponse, Error> {
    let now = flotilla_jobs::now();
    let figures = blocking(&state, move |conn| {
        let accounts = AccountCounts::load(conn, now)?;
        let days = sign_ins_per_day(conn, now)?;
        let jobs = flotilla_jobs::inspect::census(conn, now)?;
        Ok::<_, diesel::result::Error>((accounts, days, jobs))
    });
    // The fleet is asked meanwhile: a service down costs the timeout at most.
    let (figures, fleet) = tokio::join!(figures, admin.fleet.report(&state));
    let (accounts, sign_ins, jobs) = figures?;
    let overview = Overview {
        accounts,
        sign_ins,
        jobs: StateCounts::of(&jobs),
        fleet: fleet?,
    };
    Ok(page_or_json(&req, &overview, || {
        render(&OverviewPage {
            title: "Overview",
            viewer: operator.viewer(),
            chart: Chart::of(&overview.sign_ins),
            overview: &overview,
            fleet: &overview.fleet,
        })
    }))
}

/// The overview, at `/admin/` too.
#[utoipa::path(get, path = "/admin/", tag = "admin", operation_id = "overview_slash",
    responses(
        (status = 200, description = "As `GET /admin`.", content(
            (Overview = "application/json"),
            (String = "text/html"),
        )),
        (status = 303, description = docs::PAGE_SEE_OTHER, headers(("Location" = String))),
        (status = 401, description = docs::PAGE_UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = docs::PAGE_FORBIDDEN, body = ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = [])))]
pub async fn show_slash(
    operator: Operator,
    req: HttpRequest,
    state: web::Data<State>,
    admin: web::Data<Admin>,
) -> Result<HttpResponse, Error> {
    show(operator, req, state, admin).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_scales_to_the_busiest_day_and_shows_every_day() {
        let mut days: Vec<Day> = (1..=30)
            .map(|i| Day {
                day: format!("2026-11-{i:02}"),
                sign_ins: 0,
                failed: 0,
            })
            .collect();
        days[3].sign_ins = 240;
        days[3].failed = 1;
        days[29].sign_ins = 60;
        let chart = Chart::of(&days);
        assert_eq!(chart.bars.len(), 30);
        assert_eq!(chart.max, 240);
        assert_eq!((chart.bars[3].h_ok, chart.bars[3].y_ok), (PLOT, TOP));
        assert_eq!(chart.bars[3].h_failed, 1, "one failure still shows");
        assert_eq!(chart.bars[29].h_ok, PLOT / 4);
        assert_eq!(chart.bars[0].h_ok, 0);
        assert_eq!((chart.total_sign_ins, chart.total_failed), (300, 1));
        assert_eq!(chart.bars[0].label.as_deref(), Some("11-01"));
        assert_eq!(chart.bars[29].label.as_deref(), Some("11-30"));
        assert_eq!(
            chart.bars[28].label, None,
            "it would print over the last day's"
        );
        assert_eq!(chart.bars[21].label.as_deref(), Some("11-22"));
        assert!(chart.bars.iter().all(|b| b.x + 2 * BAR < chart.width));
    }
}
