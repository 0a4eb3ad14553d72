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

    /// The URL with any password replaced, for messages and logs: the one in the
    /// user part (even when it holds an unescaped `/`, `?` or `@`, which libpq would
    /// refuse but a message must not show), and the `password` and `sslpassword`
    /// query parameters libpq also takes (whatever their case or percent-encoding).
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.raw.split_once("://") else {
            return self.raw.clone();
        };
        // The user part ends at the last `@` before the first `=` (a query's), or,
        // with none there, before the query: a password may hold `/`, `?` or `@`; a
        // host or a database name never holds `@`.
        let head = &rest[..rest.find('=').unwrap_or(rest.len())];
        let before_query = &rest[..rest.find('?').unwrap_or(rest.len())];
        let at = head.rfind('@').or_else(|| before_query.rfind('@'));
        let (userinfo, after) = match at {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (host_and_path, query) = match after.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (after, None),
        };
        let mut out = format!("{scheme}://");
        if let Some(userinfo) = userinfo {
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@")),
                None => out.push_str(&format!("{userinfo}@")),
            }
        }
        out.push_str(host_and_path);
        if let Some(query) = query {
            out.push('?');
            out.push_str(&redact_query(query));
        }
        out
    }
}

/// The query parameters that hold a password, as libpq names them.
const PASSWORD_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// A URL's query with the value of each password parameter replaced.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(key).to_ascii_lowercase();
            if PASSWORD_PARAMS.contains(&name.trim()) && !value.is_empty() {
                format!("{key}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `%XX` decoded (what libpq does to a parameter's name); anything else kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(high)), Some(Some(low))) = (
                bytes.get(i + 1).map(|b| hex(*b)),
                bytes.get(i + 2).map(|b| hex(*b)),
            )
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            if bytes[i] == b'+' {
                out.push(b' ');
            } else {
                out.push(bytes[i]);
            }
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn never_shows_a_password_given_as_a_query_parameter() {
        let cases = [
            (
                "postgres://u@h/db?password=secret",
                "postgres://u@h/db?password=***",
            ),
            (
                "postgres://u@h/db?sslmode=require&PASSWORD=secret",
                "postgres://u@h/db?sslmode=require&PASSWORD=***",
            ),
            (
                "postgres://u@h/db?sslpassword=secret&sslmode=verify-full",
                "postgres://u@h/db?sslpassword=***&sslmode=verify-full",
            ),
            (
                "postgres://u@h/db?pass%77ord=secret",
                "postgres://u@h/db?pass%77ord=***",
            ),
            (
                "postgresql:///db?host=/run/postgresql&password=secret",
                "postgresql:///db?host=/run/postgresql&password=***",
            ),
            (
                "postgres://u:sec/ret@h/db?password=secret&password=secret",
                "postgres://u:***@h/db?password=***&password=***",
            ),
            ("postgres://u:s@c?ret@h/db", "postgres://u:***@h/db"),
            ("postgres://u:a=secret@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?options=a@b&password=secret",
                "postgres://u@h/db?options=a@b&password=***",
            ),
        ];
        for (raw, shown) in cases {
            let url = DatabaseUrl::parse(raw).unwrap();
            assert_eq!(url.redacted(), shown, "{raw}");
            assert!(!format!("{url:?} {url}").contains("secret"), "{raw}");
        }
        // Nothing else is touched.
        let url = DatabaseUrl::parse("postgres://u@h:5433/db?sslmode=require").unwrap();
        assert_eq!(url.redacted(), "postgres://u@h:5433/db?sslmode=require");
        let url = DatabaseUrl::parse("sqlite://var/flotilla.db").unwrap();
        assert_eq!(url.redacted(), "sqlite://var/flotilla.db");
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
