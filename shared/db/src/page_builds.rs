//! The static site's full builds (`page_builds`): flotilla-pages records one at the end
//! of each `build`, and the admin console shows the last (the page generator listens
//! on no port to be asked); and its last incremental update on each host
//! (`page_updates`, by `watch`).

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::AnyConnection;
use crate::schema::{page_builds, page_updates};

/// Rows kept: the last `KEEP_LAST` builds, and none older than `KEEP_DAYS` days
/// (the newest always stays).
pub const KEEP_LAST: i64 = 100;
pub const KEEP_DAYS: i64 = 30;

/// A full build of the site.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = page_builds)]
pub struct PageBuild {
    #[diesel(skip_insertion)]
    pub id: i64,
    /// The machine that built it.
    pub host: String,
    /// The version of flotilla-pages that built it.
    pub version: String,
    pub started_at: NaiveDateTime,
    pub finished_at: NaiveDateTime,
    /// Files written: the fixed pages, the public profiles and their lists.
    pub pages: i64,
}

impl PageBuild {
    /// How long it took.
    pub fn duration(&self) -> TimeDelta {
        self.finished_at - self.started_at
    }

    /// Records the build, then forgets builds beyond the last [`KEEP_LAST`] or older
    /// than [`KEEP_DAYS`] days.
    pub fn record(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        crate::write_transaction(conn, |conn| {
            diesel::insert_into(page_builds::table)
                .values(self)
                .execute(conn)?;
            let newest: i64 = page_builds::table
                .select(diesel::dsl::max(page_builds::id))
                .first::<Option<i64>>(conn)?
                .unwrap_or(0);
            let before = self.finished_at - TimeDelta::days(KEEP_DAYS);
            diesel::delete(
                page_builds::table
                    .filter(page_builds::id.ne(newest))
                    .filter(
                        page_builds::id
                            .le(newest - KEEP_LAST)
                            .or(page_builds::finished_at.lt(before)),
                    ),
            )
            .execute(conn)?;
            Ok(())
        })
    }

    /// The last build recorded, if any.
    pub fn last(conn: &mut AnyConnection) -> QueryResult<Option<PageBuild>> {
        page_builds::table
            .order(page_builds::id.desc())
            .first(conn)
            .optional()
    }
}

/// The last incremental update of the site by `flotilla-pages watch` on one host.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable, AsChangeset)]
#[diesel(table_name = page_updates)]
pub struct PageUpdate {
    pub host: String,
    /// The version of flotilla-pages that made it.
    pub version: String,
    pub at: NaiveDateTime,
    pub duration_ms: i64,
    /// The accounts it looked at.
    pub changed: i64,
}

impl PageUpdate {
    /// Records the update as its host's last.
    pub fn record(&self, conn: &mut AnyConnection) -> QueryResult<()> {
        crate::write_transaction(conn, |conn| {
            let replaced = diesel::update(page_updates::table.find(&self.host))
                .set(self)
                .execute(conn)?;
            if replaced == 0 {
                diesel::insert_into(page_updates::table)
                    .values(self)
                    .execute(conn)?;
            }
            Ok(())
        })
    }

    /// The latest update on any host, if any.
    pub fn last(conn: &mut AnyConnection) -> QueryResult<Option<PageUpdate>> {
        page_updates::table
            .order(page_updates::at.desc())
            .first(conn)
            .optional()
    }
}
