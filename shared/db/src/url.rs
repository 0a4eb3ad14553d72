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
        let Some(parts) = self.parts() else {
            return self.raw.clone();
        };
        let mut out = format!("{}://", parts.scheme);
        if let Some(userinfo) = parts.userinfo {
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@")),
                None => out.push_str(&format!("{userinfo}@")),
            }
        }
        out.push_str(parts.host_and_path);
        if let Some(query) = parts.query {
            out.push('?');
            out.push_str(&redact_query(query));
        }
        out
    }

    /// How a libpq program (`pg_dump`, `pg_restore`) is pointed at this PostgreSQL
    /// database without the password on its command line, which every user of the host
    /// can read in the process list: the URL without the password (with a connect
    /// timeout, as the services use), and the password apart, for `PGPASSWORD`. An
    /// `sslpassword` parameter has no such variable, so it is refused.
    pub fn libpq_target(&self, connect_timeout: Duration) -> Result<LibpqTarget, String> {
        let parts = match (self.backend, self.parts()) {
            (Backend::Postgres, Some(parts)) => parts,
            _ => return Err("not a postgres:// URL".into()),
        };
        let mut password = None;
        let mut out = format!("{}://", parts.scheme);
        if let Some(userinfo) = parts.userinfo {
            match userinfo.split_once(':') {
                Some((user, secret)) => {
                    out.push_str(&format!("{user}@"));
                    password = Some(percent_decode_value(secret));
                }
                None => out.push_str(&format!("{userinfo}@")),
            }
        }
        out.push_str(parts.host_and_path);
        let mut kept = Vec::new();
        for pair in parts
            .query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match percent_decode(key).to_ascii_lowercase().trim() {
                // libpq reads the query after the user part: a later value wins.
                "password" => password = Some(percent_decode_value(value)),
                "sslpassword" => {
                    return Err(
                        "its sslpassword parameter cannot be handed to pg_dump or pg_restore \
                         without showing it in the process list: use a client key without \
                         a passphrase, readable by the flotilla user only"
                            .into(),
                    );
                }
                _ => kept.push(pair),
            }
        }
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        let url = DatabaseUrl {
            raw: out,
            backend: Backend::Postgres,
        }
        .postgres_url_with_timeout(connect_timeout);
        Ok(LibpqTarget {
            url,
            password: password.filter(|p| !p.is_empty()),
        })
    }

    /// The URL cut where libpq cuts it, for [`Self::redacted`] and
    /// [`Self::libpq_target`]; `None` without `://`.
    fn parts(&self) -> Option<UrlParts<'_>> {
        let (scheme, rest) = self.raw.split_once("://")?;
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
        Some(UrlParts {
            scheme,
            userinfo,
            host_and_path,
            query,
        })
    }
}

/// A URL's pieces as libpq reads them.
struct UrlParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    host_and_path: &'a str,
    query: Option<&'a str>,
}

/// A PostgreSQL database as a libpq program is given it: see
/// [`DatabaseUrl::libpq_target`].
pub struct LibpqTarget {
    /// The URL without any password: safe on a command line.
    pub url: String,
    /// The password, for `PGPASSWORD`; never shown.
    pub password: Option<String>,
}

impl fmt::Debug for LibpqTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibpqTarget")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
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

/// `%XX` decoded (what libpq does to a parameter's name, where a `+` is a space too);
/// anything else kept.
fn percent_decode(text: &str) -> String {
    decode_percents(text, true)
}

/// A value as libpq decodes it in a URL: `%XX` only (a `+` stays a `+`).
fn percent_decode_value(text: &str) -> String {
    decode_percents(text, false)
}

fn decode_percents(text: &str, plus_is_space: bool) -> String {
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
            out.push(if plus_is_space && bytes[i] == b'+' {
                b' '
            } else {
                bytes[i]
            });
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
    fn a_libpq_program_gets_the_url_without_the_password() {
        let timeout = Duration::from_secs(3);
        let target = |raw: &str| DatabaseUrl::parse(raw).unwrap().libpq_target(timeout);
        let t = target("postgres://app:s3cret@db.internal:5432/flotilla").unwrap();
        assert_eq!(
            t.url,
            "postgres://app@db.internal:5432/flotilla?connect_timeout=3"
        );
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert!(!format!("{t:?}").contains("s3cret"));
        // Percent-encoded as libpq decodes it; a `+` is a `+`.
        let t = target("postgres://app:a%40b+c%2F@h/db?sslmode=require").unwrap();
        assert_eq!(
            t.url,
            "postgres://app@h/db?sslmode=require&connect_timeout=3"
        );
        assert_eq!(t.password.as_deref(), Some("a@b+c/"));
        // As a query parameter (any case), which wins over the user part's.
        let t = target("postgres://app:one@h/db?PassWord=two&application_name=x").unwrap();
        assert_eq!(
            t.url,
            "postgres://app@h/db?application_name=x&connect_timeout=3"
        );
        assert_eq!(t.password.as_deref(), Some("two"));
        // An unescaped `@` or `/` in the password (libpq refuses it; we never show it).
        let t = target("postgres://u:s@c/ret@h/db").unwrap();
        assert!(!t.url.contains("ret"), "{}", t.url);
        let t = target("postgres://u@h/db").unwrap();
        assert_eq!(t.password, None);
        assert_eq!(t.url, "postgres://u@h/db?connect_timeout=3");
        let err = target("postgres://u@h/db?sslpassword=secret").unwrap_err();
        assert!(
            err.contains("sslpassword") && !err.contains("=secret"),
            "{err}"
        );
        assert!(target("sqlite://var/flotilla.db").is_err());
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
