//! `flotilla-seed --accounts N [--public]`: fills the database of `DATABASE_URL`
//! (migrated first if it is not) with N made-up accounts, for benchmarks (`make
//! bench`'s user search; with `--public`, the static site's build).
//! Never part of a deployment: it lives in the test kit.
//!
//! The mix: addresses of varied shapes and domains (some in capitals), a username for
//! four accounts in five, 90% verified, 1% disabled, 0.5% closed (anonymised as a real
//! closing leaves them), one admin in 100,000, creation times spread over the two years
//! before now in order, a sign-in for one account in three, and a password hash that
//! matches no password. With `--public`, every account that can have a public page
//! (a username, verified, neither disabled nor closed: about 71% of them) has one, with
//! a display name and a bio. Deterministic: the same N gives the same accounts (but new ids
//! and times). Multi-row INSERTs of literal values (generated here, plain ASCII), 100,000
//! rows per transaction: no bind limit to mind on PostgreSQL (65,535).

use std::time::Instant;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use flotilla_db::diesel::connection::SimpleConnection;
use flotilla_db::{AnyConnection, DatabaseUrl, PoolConfig, new_id};

const FIRST: &[&str] = &[
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "dennis",
    "barbara",
    "edsger",
    "donald",
    "john",
    "mary",
    "james",
    "patricia",
    "robert",
    "jennifer",
    "michael",
    "linda",
    "david",
    "elizabeth",
    "sofia",
    "lucas",
    "emma",
    "noah",
    "olivia",
    "liam",
    "mia",
    "hugo",
    "chloe",
    "yuki",
    "hiro",
    "amara",
    "kwame",
    "priya",
    "arjun",
    "fatima",
    "omar",
    "zoe",
    "xavier",
    "ines",
];
const LAST: &[&str] = &[
    "lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "ritchie", "liskov",
    "dijkstra", "knuth", "smith", "johnson", "williams", "brown", "jones", "garcia", "miller",
    "davis", "martin", "bernard", "dubois", "moreau", "tanaka", "suzuki", "okafor", "mensah",
    "patel", "sharma", "haddad", "nguyen", "kowalski", "novak", "rossi", "ferrari", "silva",
];
const WORDS: &[&str] = &[
    "blue", "river", "stone", "quick", "fox", "cloud", "pixel", "night", "owl", "maple", "delta",
    "echo", "nova", "orbit", "rust", "spark", "tiger", "velvet", "wave", "zen",
];
/// Weighted: the big providers first and most often.
const DOMAINS: &[&str] = &[
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "outlook.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
    "example.org",
    "example.com",
    "fastmail.com",
    "mail.de",
    "orange.fr",
    "uni-heidelberg.de",
    "acme.io",
    "corp.example.net",
];
/// A well-formed Argon2id hash of 32 zero bytes: no password hashes to it.
const NO_PASSWORD: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VlZGVkLWFjY291bnQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const ROWS_PER_INSERT: usize = 1_000;
const ROWS_PER_TRANSACTION: usize = 100_000;

/// xorshift64*: reproducible without a dependency's feature.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("flotilla-seed: {e:#}");
        std::process::exit(1);
    }
}

fn usage() -> anyhow::Error {
    anyhow::anyhow!("usage: DATABASE_URL=… flotilla-seed --accounts N [--public]")
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (accounts, public): (usize, bool) = match args.as_slice() {
        [flag, n] if flag == "--accounts" => (n.parse().map_err(|_| usage())?, false),
        [flag, n, public] if flag == "--accounts" && public == "--public" => {
            (n.parse().map_err(|_| usage())?, true)
        }
        _ => return Err(usage()),
    };
    let raw = std::env::var("DATABASE_URL").map_err(|_| usage())?;
    let url = DatabaseUrl::parse(&raw).map_err(|e| anyhow::anyhow!("DATABASE_URL: {e}"))?;
    let config = PoolConfig {
        url: url.clone(),
        max_size: 1,
        timeout: std::time::Duration::from_secs(30),
        busy_timeout: std::time::Duration::from_secs(30),
    };
    let mut conn = flotilla_db::open(&config)?;
    flotilla_db::migrate(&mut conn, &url)?;
    if let AnyConnection::Sqlite(_) = conn {
        // A large page cache for the index inserts (this connection only).
        conn.batch_execute("PRAGMA cache_size = -262144;")?;
    }
    let started = Instant::now();
    let now = Utc::now().naive_utc();
    let first = now - TimeDelta::days(730);
    let step = TimeDelta::days(730).num_microseconds().unwrap_or(1) / accounts.max(1) as i64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut users = Vec::with_capacity(ROWS_PER_INSERT);
    let mut events = Vec::with_capacity(ROWS_PER_INSERT);
    let mut statements = String::new();
    let mut in_transaction = 0;
    let mut sign_ins = 0usize;
    for i in 0..accounts {
        let jitter = rng.below(step.max(1) as usize) as i64;
        let created = first + TimeDelta::microseconds(step * i as i64 + jitter);
        let (row, sign_in) = account(&mut rng, i, created, now, public);
        users.push(row);
        if let Some(event) = sign_in {
            events.push(event);
            sign_ins += 1;
        }
        if users.len() == ROWS_PER_INSERT || i + 1 == accounts {
            statements.push_str(&insert_users(&users));
            if !events.is_empty() {
                statements.push_str(&insert_events(&events));
            }
            users.clear();
            events.clear();
        }
        in_transaction += 1;
        if in_transaction == ROWS_PER_TRANSACTION || i + 1 == accounts {
            conn.batch_execute(&format!("BEGIN; {statements} COMMIT;"))?;
            statements.clear();
            in_transaction = 0;
        }
    }
    if let AnyConnection::Postgresql(_) = conn {
        // What autovacuum would do soon after: the planner's figures for the new rows.
        conn.batch_execute("ANALYZE users; ANALYZE auth_events;")?;
    }
    println!(
        "seeded {accounts} accounts and {sign_ins} sign-ins in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn ts(at: NaiveDateTime) -> String {
    // diesel's own text for a timestamp on SQLite, so that stored values and bound
    // ones compare as the times they are.
    format!("'{}'", at.format("%F %T%.f"))
}

fn text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn nullable(value: Option<String>) -> String {
    value.unwrap_or_else(|| "NULL".into())
}

/// One `users` row as SQL values, and its sign-in event's values, if any.
fn account(
    rng: &mut Rng,
    i: usize,
    created: NaiveDateTime,
    now: NaiveDateTime,
    public: bool,
) -> (String, Option<String>) {
    let id = new_id();
    let (first, last, word) = (rng.pick(FIRST), rng.pick(LAST), rng.pick(WORDS));
    let domain = rng.pick(DOMAINS);
    let mut email = match rng.below(4) {
        0 => format!("{first}.{last}{i}@{domain}"),
        1 => format!("{first}{i}@{domain}"),
        2 => format!("{last}.{}{i}@{domain}", &first[..1]),
        _ => format!("{word}{}{i}@{domain}", rng.pick(WORDS)),
    };
    if rng.below(10) == 0 {
        // Some people type their address in capitals; the search must not care.
        let mut chars = email.chars();
        email = chars
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
            .unwrap_or_default();
    }
    let mut username = (rng.below(5) != 0).then(|| match rng.below(3) {
        0 => format!("{first}_{word}{i}"),
        1 => format!("{word}{last}{i}"),
        _ => format!("{}{first}{i}", &last[..2]),
    });
    let closed = rng.below(200) == 0;
    let disabled = !closed && rng.below(100) == 0;
    let verified = rng.below(10) != 0;
    let role = if i % 100_000 == 7 { "admin" } else { "user" };
    let mut hash = Some(text(NO_PASSWORD));
    let deleted_at = closed.then(|| created + TimeDelta::days(rng.below(300) as i64));
    let deleted_at = deleted_at.map(|at| at.min(now));
    if closed {
        // As a closing leaves the row until its purge.
        email = format!("deleted-{id}@deleted.invalid");
        username = None;
        hash = None;
    }
    let verified_at = verified.then(|| created + TimeDelta::minutes(rng.below(60) as i64 + 1));
    let disabled_at = disabled.then(|| now - TimeDelta::days(rng.below(30) as i64));
    let shown = public && username.is_some() && verified && !disabled && !closed;
    let (display_name, bio) = if shown {
        let name = format!(
            "{}{} {}{}",
            first[..1].to_ascii_uppercase(),
            &first[1..],
            last[..1].to_ascii_uppercase(),
            &last[1..]
        );
        (
            Some(text(&name)),
            Some(text(&format!(
                "Writes about {word} & <{}>.",
                rng.pick(WORDS)
            ))),
        )
    } else {
        (None, None)
    };
    let row = format!(
        "({}, {}, {}, {}, {}, {}, '{role}', {}, {}, {}, {}, {}, {})",
        text(&id),
        text(&email),
        nullable(username.as_deref().map(text)),
        nullable(display_name),
        nullable(bio),
        nullable(hash),
        i32::from(shown),
        nullable(verified_at.map(|t| ts(t.min(now)))),
        nullable(disabled_at.map(ts)),
        ts(created),
        ts(created),
        nullable(deleted_at.map(ts)),
    );
    let signed_in = !closed && verified && rng.below(3) == 0;
    let event = signed_in.then(|| {
        let span = (now - created).num_seconds().max(1) as usize;
        let at = created + TimeDelta::seconds(rng.below(span) as i64);
        format!(
            "({}, 'login.success', '127.0.0.1', 'flotilla-seed', {})",
            text(&id),
            ts(at)
        )
    });
    (row, event)
}

fn insert_users(rows: &[String]) -> String {
    format!(
        "INSERT INTO users (id, email, username, display_name, bio, password_hash, role, \
         is_public, email_verified_at, disabled_at, created_at, updated_at, deleted_at) \
         VALUES {};\n",
        rows.join(",\n")
    )
}

fn insert_events(rows: &[String]) -> String {
    format!(
        "INSERT INTO auth_events (user_id, kind, client_addr, user_agent, created_at) \
         VALUES {};\n",
        rows.join(",\n")
    )
}
