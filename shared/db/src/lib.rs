//! The database of every flotilla binary: one diesel connection type over SQLite and
//! PostgreSQL (chosen by the URL scheme), an r2d2 pool that fails fast with the real
//! error, SQLite tuned for several processes, embedded migrations per backend and the
//! start-up check that the schema is the one this binary was built for.
//!
//! Error policy: start-up and maintenance functions return `anyhow::Error` with context;
//! model code returns `diesel::QueryResult`; request handlers map both to their own error
//! type (pool timeout → 503, not found → 404, unique violation → 409/422).

pub mod backup;
mod fault;
mod migrate;
pub mod page_builds;
pub mod schema;
mod url;

use std::time::Duration;

use anyhow::Context;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};

pub use diesel;
pub use fault::{Fault, note_lost_connection, suspicious};
pub use migrate::{SchemaStatus, migrate, migration_versions, newest_applied, schema_status};
pub use page_builds::{PageBuild, PageUpdate};
pub use url::{Backend, DatabaseUrl, LibpqTarget};

diesel::define_sql_function!(
    /// SQL `lower()`, for the case-insensitive unique indexes on addresses and names.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text
);
diesel::define_sql_function!(
    /// SQL `lower()` of a nullable column.
    #[sql_name = "lower"]
    fn lower_nullable(
        x: diesel::sql_types::Nullable<diesel::sql_types::Text>,
    ) -> diesel::sql_types::Nullable<diesel::sql_types::Text>
);

/// A random (version 4) UUID, as text: the ids of users and sessions.
pub fn new_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Runs a query on the concrete connection inside an [`AnyConnection`]: `$body` is
/// compiled once per backend with `$c` bound to that backend's connection. Through
/// the multi-backend connection diesel cannot key its statement cache by type and
/// builds the SQL text on every run (9.0 µs for a read by key on SQLite here, against
/// 4.7 µs on the connection itself): use this on hot paths.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::AnyConnection::Sqlite($c) => $body,
            $crate::AnyConnection::Postgresql($c) => $body,
        }
    };
}

/// A connection to either backend. Queries written against it run on both.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConnection = r2d2::PooledConnection<Manager>;
pub use r2d2::PoolError;

/// How to reach the database and how many connections to keep.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub url: DatabaseUrl,
    /// Most connections the pool opens.
    pub max_size: u32,
    /// How long a request waits for a free connection (and PostgreSQL for a connect).
    pub timeout: Duration,
    /// How long SQLite waits on a lock held by another connection or process.
    pub busy_timeout: Duration,
}

/// Opens connections for the pool: picks the backend from the URL itself (diesel's
/// derived `establish` would try each backend and keep only the last, misleading error)
/// and prepares every SQLite connection for several processes sharing the file.
#[derive(Debug)]
pub struct Manager {
    url: DatabaseUrl,
    connect_timeout: Duration,
    busy_timeout: Duration,
}

impl Manager {
    pub fn new(config: &PoolConfig) -> Self {
        Self {
            url: config.url.clone(),
            connect_timeout: config.timeout,
            busy_timeout: config.busy_timeout,
        }
    }

    pub fn connect_once(&self) -> ConnectionResult<AnyConnection> {
        match self.url.backend() {
            Backend::Postgres => {
                let url = self.url.postgres_url_with_timeout(self.connect_timeout);
                diesel::PgConnection::establish(&url).map(AnyConnection::Postgresql)
            }
            Backend::Sqlite => {
                let mut conn = diesel::SqliteConnection::establish(self.url.sqlite_target())?;
                // The busy timeout first, so that even switching to WAL waits for a
                // lock held by another process instead of failing at once. WAL lets
                // readers run beside one writer across processes.
                let pragmas = format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    self.busy_timeout.as_millis()
                );
                conn.batch_execute(&pragmas)
                    .map_err(ConnectionError::CouldntSetupConfiguration)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<AnyConnection, ConnectionError> {
        self.connect_once()
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), ConnectionError> {
        conn.ping()
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    /// Given back broken: by a panic, an unfinished transaction, or (while a lost
    /// connection keeps the process [`suspicious`]) a ping that fails, so that the
    /// connections a stopped server left behind are dropped rather than reused.
    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken() || (suspicious() && conn.ping().is_err())
    }
}

/// Opens the pool. One connection is made first, outside the pool, so that a wrong
/// URL, a missing server or a bad password is reported at once with the real reason
/// rather than after r2d2's timeout as "timed out waiting for connection".
pub fn connect(config: &PoolConfig) -> anyhow::Result<Pool> {
    open(config)?;
    let manager = Manager::new(config);
    let pool = r2d2::Pool::builder()
        .max_size(config.max_size)
        // Keep idle processes small: connections are opened as load needs them, and
        // closed 15 s after their last use (r2d2 looks every 30 s), each with its
        // SQLite page cache, so that a process comes back near its idle size after a
        // flood. Opening one again costs well under a millisecond on SQLite.
        .min_idle(Some(1))
        .idle_timeout(Some(Duration::from_secs(15)))
        .connection_timeout(config.timeout)
        .test_on_check_out(false)
        .error_handler(Box::new(QuietErrors))
        .build_unchecked(manager);
    Ok(pool)
}

/// r2d2 logs every failed connect as an error, several a second while a server is
/// down; the services say once that it is unreachable (flotilla-kit's `database`),
/// and its failed connects go to the debug log.
#[derive(Debug)]
struct QuietErrors;

impl r2d2::HandleError<ConnectionError> for QuietErrors {
    fn handle_error(&self, error: ConnectionError) {
        log::debug!("a database connection could not be opened: {error}");
    }
}

/// Opens one connection outside any pool (for `migrate` and the pool's first check),
/// creating the SQLite file's folder if needed.
pub fn open(config: &PoolConfig) -> anyhow::Result<AnyConnection> {
    if let Some(dir) = config.url.sqlite_dir() {
        // Others may pass through (nginx to the static site beside the database), never
        // list or write.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o711)
            .create(dir)
            .with_context(|| format!("cannot create the database folder {}", dir.display()))?;
    }
    if let Some(path) = config.url.sqlite_path() {
        create_private(path)?;
    }
    Manager::new(config)
        .connect_once()
        .with_context(|| format!("cannot open the database {}", config.url.redacted()))
}

/// Opens one connection that cannot write (`flotilla-worker status`, doctor): SQLite
/// through a read-only URI (a missing file is an error, never created), PostgreSQL
/// with every transaction read-only. Nothing is created or tuned: only the busy
/// timeout is set, so a read waits for a writer instead of failing.
pub fn open_read_only(config: &PoolConfig) -> anyhow::Result<AnyConnection> {
    let what = || format!("cannot open the database {}", config.url.redacted());
    match config.url.sqlite_path() {
        Some(path) => {
            if !path.exists() {
                anyhow::bail!("{}: {} does not exist", what(), path.display());
            }
            let mut conn =
                diesel::SqliteConnection::establish(&read_only_uri(path)).with_context(what)?;
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {};",
                config.busy_timeout.as_millis()
            ))
            .with_context(what)?;
            Ok(AnyConnection::Sqlite(conn))
        }
        None if config.url.backend() == Backend::Sqlite => {
            anyhow::bail!("{}: an in-memory database has nothing to read", what())
        }
        None => {
            let url = config.url.postgres_url_with_timeout(config.timeout);
            let mut conn = diesel::PgConnection::establish(&url).with_context(what)?;
            conn.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                .with_context(what)?;
            Ok(AnyConnection::Postgresql(conn))
        }
    }
}

/// `file:` URI of a SQLite file opened read-only; `%`, `?` and `#` escaped, which a
/// URI would otherwise read as its own.
fn read_only_uri(path: &std::path::Path) -> String {
    let mut uri = String::from("file:");
    for c in path.display().to_string().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// Creates the SQLite file empty with mode 0600 before SQLite opens it, unless it
/// exists: SQLite would make it 0644 (less the umask), and its `-wal` and `-shm` files
/// take the database file's mode, so none of the three is readable by other users.
fn create_private(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create the database {}", path.display())),
    }
}

/// Runs `f` in a write transaction. On SQLite it starts with `BEGIN IMMEDIATE`, taking
/// the write lock up front: a deferred transaction that reads and then writes can fail
/// with SQLITE_BUSY at the upgrade, whatever the busy timeout. On PostgreSQL it is an
/// ordinary transaction.
pub fn write_transaction<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        AnyConnection::Sqlite(inner) => {
            AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN IMMEDIATE")?
        }
        AnyConnection::Postgresql(inner) => AnsiTransactionManager::begin_transaction(inner)?,
    }
    // The multi-backend transaction manager keeps its state in the inner connection,
    // so commit and rollback below see the transaction begun above.
    let result = f(conn);
    finish(conn, result)
}

/// Whether a write could begin now: on SQLite, takes the write lock (waiting up to the
/// busy timeout for another process's) and lets go at once; a PostgreSQL server that
/// answers takes writes.
pub fn check_writable(conn: &mut AnyConnection) -> QueryResult<()> {
    use diesel::result::Error::RollbackTransaction;
    if let AnyConnection::Postgresql(_) = conn {
        return Ok(());
    }
    match write_transaction(conn, |_| Err::<(), _>(RollbackTransaction)) {
        Ok(()) | Err(RollbackTransaction) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `f` in a read-only transaction that sees one snapshot of the database for all
/// its statements: on PostgreSQL `REPEATABLE READ READ ONLY` (its default, READ
/// COMMITTED, gives each statement fresh data); on SQLite a deferred transaction,
/// whose first read fixes what the rest see (WAL).
pub fn read_snapshot<T, E, F>(conn: &mut AnyConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        AnyConnection::Sqlite(inner) => AnsiTransactionManager::begin_transaction(inner)?,
        AnyConnection::Postgresql(inner) => AnsiTransactionManager::begin_transaction_sql(
            inner,
            "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?,
    }
    let result = f(conn);
    finish(conn, result)
}

/// Commits a transaction begun by hand after `result` is `Ok`, else rolls it back.
fn finish<T, E>(conn: &mut AnyConnection, result: Result<T, E>) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    match result {
        Ok(value) => {
            <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(e)
        }
    }
}

/// `text` as a LIKE pattern that matches it literally, with a backslash as the escape
/// character (use `.escape('\\')`): `%`, `_` and the backslash lose their meaning.
pub fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Raw SQL written with `?` placeholders, as the connection's backend wants it
/// (PostgreSQL numbers them: `$1`, `$2`, …). The SQL must hold no literal `?`.
pub fn portable_sql(conn: &AnyConnection, sql: &str) -> String {
    match conn {
        AnyConnection::Sqlite(_) => sql.to_owned(),
        AnyConnection::Postgresql(_) => {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// The pool's numbers, for `/metrics`.
pub fn pool_state(pool: &Pool) -> (u32, u32, u32) {
    let state = pool.state();
    (state.connections, state.idle_connections, pool.max_size())
}

#[cfg(test)]
mod tests;
