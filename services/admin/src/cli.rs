//! `flotilla-admin promote EMAIL` / `demote EMAIL`: the first admin (and any later
//! one) from the command line, for a sysadmin on a server that reaches the database.
//! Each change is in the audit log with the actor "command line (<unix user>)".

use std::os::unix::fs::MetadataExt as _;

use anyhow::{Context as _, bail};
use flotilla_accounts::{Actor, NewAuditEntry, Role, User};
use flotilla_contracts::AuditAction;
use flotilla_db::{AnyConnection, new_id, write_transaction};
use flotilla_kit::{Config, Env};

/// What a role change did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Changed,
    Already,
}

pub fn promote(args: &[String]) -> anyhow::Result<()> {
    change_role(args, Role::Admin)
}

pub fn demote(args: &[String]) -> anyhow::Result<()> {
    change_role(args, Role::User)
}

fn change_role(args: &[String], role: Role) -> anyhow::Result<()> {
    let [email] = args else {
        bail!("usage: flotilla-admin promote|demote EMAIL");
    };
    let env = Env::from_process();
    let service = &crate::SERVICE;
    let config = Config::from_env(&env, service.name, service.default_port)?;
    let mut conn = flotilla_db::open(&config.database)?;
    let actor = Actor::CommandLine {
        unix_user: unix_user(),
    };
    let outcome = set_role(&mut conn, email, role, &actor, &host())?;
    let (done, already) = match role {
        Role::Admin => ("is now an admin", "is an admin already"),
        Role::User => ("is no longer an admin", "is not an admin"),
    };
    match outcome {
        Outcome::Changed => println!("{email} {done} (recorded in the audit log)"),
        Outcome::Already => println!("{email} {already}: nothing changed"),
    }
    Ok(())
}

/// Gives the open account of `email` the role, with its audit entry, in one
/// transaction.
fn set_role(
    conn: &mut AnyConnection,
    email: &str,
    role: Role,
    actor: &Actor,
    host: &str,
) -> anyhow::Result<Outcome> {
    let lookup = email.trim().to_lowercase();
    write_transaction(conn, |conn| {
        let Some(account) = User::by_email(conn, &lookup)? else {
            bail!("no open account has the address {email:?}");
        };
        if account.role == role {
            return Ok(Outcome::Already);
        }
        if role == Role::Admin && account.is_disabled() {
            bail!("{email} is disabled: enable it in the console first");
        }
        if role == Role::User && User::is_last_admin(conn, &account.id)? {
            bail!(
                "{email} is the last admin who can act: promote another account first \
                 (`flotilla-admin promote EMAIL`)"
            );
        }
        let now = flotilla_jobs::now();
        User::set_role(conn, &account.id, role, now).context("changing the role")?;
        let action = match role {
            Role::Admin => AuditAction::Promoted,
            Role::User => AuditAction::Demoted,
        };
        NewAuditEntry {
            actor,
            action,
            target: Some((&account.id, &account.email)),
            client_addr: host,
            request_id: &format!("cli-{}", new_id()),
            detail: "",
        }
        .record(conn, now)?;
        Ok(Outcome::Changed)
    })
}

/// The Unix user running the command (the owner of `/proc/self`, named from
/// `/etc/passwd`), and the one who ran `sudo`, if any.
fn unix_user() -> String {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let name = uid.map(|uid| {
        std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|passwd| user_name(&passwd, uid))
            .unwrap_or_else(|| format!("uid {uid}"))
    });
    let name = name.unwrap_or_else(|| "unknown".to_owned());
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != name => format!("{name} via sudo by {by}"),
        _ => name,
    }
}

/// The name of `uid` in a passwd file.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_owned())
    })
}

/// Where the command ran, for the audit log's address column.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("command line on {}", name.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_named_from_the_passwd_file() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nada:x:1000:1000::/home/ada:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("ada"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 7), None);
    }
}
