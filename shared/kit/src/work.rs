//! Database work from a request handler, off or (for short SQLite reads) on the
//! request's thread; a fault of the database itself is answered 503 (see
//! [`crate::database`]).

use actix_web::web;
use anyhow::Context as _;
use flotilla_db::{AnyConnection, Backend};

use crate::{Error, State};

/// Runs database work on the blocking pool, so a slow query or a wait for a lock never
/// holds up the request threads.
pub async fn blocking<T, E>(
    state: &web::Data<State>,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, Error>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    state.database.admit()?;
    let state = state.clone();
    web::block(move || -> Result<T, Error> {
        let health = &state.database;
        let mut conn = health.checkout(&state.pool)?;
        health.judge_result(work(&mut conn).map_err(Into::into))
    })
    .await?
}

/// Runs database work of a background task on an actix runtime (the worker) on the
/// blocking pool. Its errors stay `anyhow`, with their causes, for the task's log.
pub async fn background<T: Send + 'static>(
    pool: &flotilla_db::Pool,
    work: impl FnOnce(&mut AnyConnection) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let pool = pool.clone();
    web::block(move || {
        let mut conn = pool.get().context("no database connection")?;
        work(&mut conn)
    })
    .await
    .context("the blocking task failed")?
}

/// Runs a short read (a lookup by key, a small list). On SQLite, when a pooled
/// connection is free at once, it runs right here: such a read takes microseconds,
/// less than handing it to the blocking pool and back (two thread wake-ups, which
/// made `GET /profile/me` three times the cost of a bare route). On PostgreSQL, whose
/// reads wait on the network, or when no connection is free, it goes to the blocking
/// pool like any other work. Never use it for writes: they may wait for a lock.
pub async fn read<T, E>(
    state: &web::Data<State>,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
) -> Result<T, Error>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    if state.config.database.url.backend() == Backend::Sqlite
        && let Some(mut conn) = state.pool.try_get()
    {
        return state
            .database
            .judge_result(work(&mut conn).map_err(Into::into));
    }
    blocking(state, work).await
}
