use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// A database URL whose scheme has been checked: `sqlite://path/to/file.db`
/// (relative paths are relative to the working directory), `sqlite::memory:`, or
/// `postgres://user:password@host:port/database?options` (`postgresql://` too).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    backend: Backend,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let backend = if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Backend::Postgres
        } else if let Some(rest) = raw.strip_prefix("sqlite:") {
            let target = rest.strip_prefix("//").unwrap_or(rest);
            if target.is_empty() {
                return Err(
                    "the sqlite URL names no file: use sqlite://path/to/flotilla.db".into(),
                );
            }
            Backend::Sqlite
        } else {
            return Err(
                "expected a URL starting with sqlite:// or postgres:// (e.g. sqlite://var/flotilla.db)"
                    .into(),
            );
        };
        Ok(Self {
            raw: raw.to_owned(),
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What SQLite opens: a file path, or `:memory:`.
    pub(crate) fn sqlite_target(&self) -> &str {
        let rest = self.raw.strip_prefix("sqlite:").unwrap_or(&self.raw);
        rest.strip_prefix("//").unwrap_or(rest)
    }

    /// The SQLite file, when there is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self.backend {
            Backend::Sqlite if self.sqlite_target() != ":memory:" => {
                Some(Path::new(self.sqlite_target()))
            }
            _ => None,
        }
    }

    pub(crate) fn sqlite_dir(&self) -> Option<&Path> {
        self.sqlite_path()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
    }

    pub(crate) fn lock_path(&self) -> Option<PathBuf> {
        self.sqlite_path().map(|p| {
            let mut name = p.as_os_str().to_owned();
            name.push(".migrate-lock");
            PathBuf::from(name)
        })
    }

    /// libpq waits for ever on an unreachable host unless told otherwise.
    pub(crate) fn postgres_url_with_timeout(&self, timeout: Duration) -> String {
        if self.raw.contains("connect_timeout=") {
            return self.raw.clone();
        }
        let sep = if self.raw.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}connect_timeout={}",
            self.raw,
            timeout.as_secs().max(1)
        )
    }

    /// The URL with any password replaced, for messages and logs.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.raw.split_once("://") else {
            return self.raw.clone();
        };
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                if userinfo.contains(':') {
                    format!("{scheme}://{user}:***@{host}{tail}")
                } else {
                    format!("{scheme}://{user}@{host}{tail}")
                }
            }
            None => self.raw.clone(),
        }
        .replace_password_param()
    }
}

trait ReplacePasswordParam {
    fn replace_password_param(self) -> String;
}

impl ReplacePasswordParam for String {
    /// `?password=…` is also accepted by libpq.
    fn replace_password_param(self) -> String {
        let Some((base, query)) = self.split_once('?') else {
            return self;
        };
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        format!("{base}?{}", query.join("&"))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_backend_from_the_scheme() {
        let sqlite = DatabaseUrl::parse("sqlite://var/flotilla.db").unwrap();
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        assert_eq!(sqlite.sqlite_path(), Some(Path::new("var/flotilla.db")));
        assert_eq!(sqlite.sqlite_dir(), Some(Path::new("var")));
        let memory = DatabaseUrl::parse("sqlite::memory:").unwrap();
        assert_eq!(memory.sqlite_path(), None);
        for pg in ["postgres://u@h/db", "postgresql://u@h/db"] {
            assert_eq!(DatabaseUrl::parse(pg).unwrap().backend(), Backend::Postgres);
        }
    }

    #[test]
    fn refuses_unknown_schemes_and_empty_paths() {
        assert!(
            DatabaseUrl::parse("mysql://u@h/db")
                .unwrap_err()
                .contains("sqlite://")
        );
        assert!(DatabaseUrl::parse("var/flotilla.db").is_err());
        assert!(
            DatabaseUrl::parse("sqlite://")
                .unwrap_err()
                .contains("no file")
        );
    }

    #[test]
    fn never_shows_a_password() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.internal:5432/flotilla").unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://app:***@db.internal:5432/flotilla"
        );
        assert!(!format!("{url:?} {url}").contains("s3cret"));
        let url =
            DatabaseUrl::parse("postgres://app@h/db?password=s3cret&sslmode=require").unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://app@h/db?password=***&sslmode=require"
        );
    }

    #[test]
    fn adds_a_connect_timeout_unless_given() {
        let url = DatabaseUrl::parse("postgres://u@h/db").unwrap();
        assert_eq!(
            url.postgres_url_with_timeout(Duration::from_secs(3)),
            "postgres://u@h/db?connect_timeout=3"
        );
        let url = DatabaseUrl::parse("postgres://u@h/db?connect_timeout=9").unwrap();
        assert_eq!(
            url.postgres_url_with_timeout(Duration::from_secs(3)),
            url.raw
        );
    }
}
