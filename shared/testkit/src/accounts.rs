//! Accounts for load runs, made straight in the database: far faster than signing each
//! up through the fleet (two Argon2 hashes and a mail each).

use std::time::Duration;

use anyhow::{Context, anyhow};
use flotilla_db::diesel::connection::SimpleConnection;
use flotilla_db::{DatabaseUrl, PoolConfig, new_id};

/// Makes `count` verified accounts in `DATABASE_URL`, `<label>-<i>@example.org`, with
/// the password hash of the account `template` (so its password): their addresses.
pub fn accounts_like(template: &str, label: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let raw = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let url = DatabaseUrl::parse(&raw).map_err(|e| anyhow!("DATABASE_URL: {e}"))?;
    let mut conn = flotilla_db::open(&PoolConfig {
        url,
        max_size: 1,
        timeout: Duration::from_secs(10),
        busy_timeout: Duration::from_secs(10),
    })?;
    let now = chrono::Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S");
    let emails: Vec<String> = (0..count)
        .map(|i| format!("{label}-{i}@example.org"))
        .collect();
    let mut sql = String::from("BEGIN;\n");
    for email in &emails {
        sql.push_str(&format!(
            "INSERT INTO users (id, email, password_hash, role, is_public, email_verified_at, \
             created_at, updated_at) SELECT '{}', '{email}', password_hash, 'user', 0, '{now}', \
             '{now}', '{now}' FROM users WHERE email = '{template}';\n",
            new_id()
        ));
    }
    sql.push_str("COMMIT;\n");
    conn.batch_execute(&sql)?;
    Ok(emails)
}
