use diesel::prelude::*;

use crate::{TempDir, in_ci};

/// A database that belongs to one test: a fresh SQLite file in a temporary folder, or
/// a fresh database in the test PostgreSQL cluster, dropped afterwards.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    postgres_backend: bool,
    _dir: Option<TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = TempDir::new("db");
        let url = format!("sqlite://{}", dir.path().join("flotilla.db").display());
        Self {
            url,
            postgres_backend: false,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A new database in the cluster named by `FLOTILLA_TEST_POSTGRES_URL`. Without
    /// that variable: a failure in CI, a loud skip (`None`) elsewhere.
    pub fn postgres() -> Option<Self> {
        if !postgres_tests_on() {
            return None;
        }
        let admin_url = std::env::var("FLOTILLA_TEST_POSTGRES_URL").ok()?;
        Some(Self::postgres_in(&admin_url))
    }

    /// A new database in the cluster whose admin URL is `admin_url`.
    pub fn postgres_in(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!(
            "flotilla_test_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("cannot reach the test cluster {admin_url}: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let (base, _) = admin_url
            .split_once('?')
            .map(|(b, q)| (b, Some(q)))
            .unwrap_or((&admin_url, None));
        let (server, _) = base
            .rsplit_once('/')
            .expect("the admin URL names a database");
        let url = format!("{server}/{name}");
        Self {
            url,
            postgres_backend: true,
            _dir: None,
            postgres: Some((admin_url, name)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres_backend
    }

    /// As `/ready` names it: "sqlite" or "postgres".
    pub fn backend_name(&self) -> &'static str {
        if self.postgres_backend {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// Whether the PostgreSQL tests run: `FLOTILLA_TEST_POSTGRES_URL` is set (`make test`
/// sets it, with a throwaway cluster). Unset: a failure in CI, a loud skip elsewhere.
pub fn postgres_tests_on() -> bool {
    if std::env::var_os("FLOTILLA_TEST_POSTGRES_URL").is_some() {
        return true;
    }
    assert!(
        !in_ci(),
        "CI is set but FLOTILLA_TEST_POSTGRES_URL is not: the PostgreSQL tests \
         cannot be skipped in CI. Run them with `make test`, which starts a \
         throwaway cluster."
    );
    eprintln!(
        "SKIPPED (PostgreSQL): FLOTILLA_TEST_POSTGRES_URL is unset; `make test` \
         starts a throwaway cluster and sets it"
    );
    false
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

impl TestDb {
    /// A connection to the SQLite file that waits for the services' writers, as they
    /// wait for each other, instead of failing with "database is locked".
    fn sqlite_connection(&self) -> SqliteConnection {
        let path = self.url.trim_start_matches("sqlite://");
        let mut conn = SqliteConnection::establish(path).unwrap();
        diesel::sql_query("PRAGMA busy_timeout = 5000")
            .execute(&mut conn)
            .unwrap();
        conn
    }

    /// Runs a query whose one column is named `v` and is text; for tests that check
    /// what the services stored.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        let rows: Vec<Value> = if self.postgres_backend {
            diesel::sql_query(sql).load(&mut PgConnection::establish(&self.url).unwrap())
        } else {
            diesel::sql_query(sql).load(&mut self.sqlite_connection())
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.v).collect()
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &str) -> usize {
        self.try_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement that the database may refuse: the rows it changed, or the
    /// database's error message.
    pub fn try_execute(&self, sql: &str) -> Result<usize, String> {
        if self.postgres_backend {
            diesel::sql_query(sql).execute(&mut PgConnection::establish(&self.url).unwrap())
        } else {
            diesel::sql_query(sql).execute(&mut self.sqlite_connection())
        }
        .map_err(|e| e.to_string())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(mut admin) = PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

/// A PostgreSQL cluster of one test's own, for the tests that stop the server under a
/// running fleet (`scripts/pg-test-cluster.sh`); removed when dropped. Needs the
/// PostgreSQL programs, which `make test` installs when missing.
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    admin_url: String,
}

impl PgCluster {
    pub fn start() -> Self {
        let dir = TempDir::new("pg");
        let output = Self::script("start", dir.path());
        let admin_url = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            admin_url.starts_with("postgres://"),
            "no URL from the cluster script"
        );
        Self { dir, admin_url }
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Stops the server (a fast shutdown: open connections are cut), keeping the data.
    pub fn halt(&self) {
        Self::script("halt", self.dir.path());
    }

    /// Starts the server again on the same port; returns once it takes connections.
    pub fn resume(&self) {
        Self::script("resume", self.dir.path());
    }

    fn script(command: &str, dir: &std::path::Path) -> std::process::Output {
        let script = crate::workspace_root().join("scripts/pg-test-cluster.sh");
        let output = std::process::Command::new(script)
            .arg(command)
            .arg(dir)
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg-test-cluster.sh {command}: {e}"));
        assert!(
            output.status.success(),
            "pg-test-cluster.sh {command} failed"
        );
        output
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new(crate::workspace_root().join("scripts/pg-test-cluster.sh"))
                .arg("stop")
                .arg(self.dir.path())
                .output();
    }
}
