//! `flotilla-admin promote EMAIL` / `demote EMAIL`: the first admin (and any later
//! one) from the command line, for a sysadmin on a server that reaches the database;
//! `reset-factors EMAIL`: the console's action of that name, for an admin who lost
//! their authenticator app while the console requires one (`FLOTILLA_ADMIN_REQUIRE_MFA`)
//! and so cannot reach the console to have it done. Each change is in the audit log
//! with the actor "command line (<unix user>)".

use std::os::unix::fs::MetadataExt as _;

use anyhow::{Context as _, bail};
use flotilla_accounts::{Actor, NewAuditEntry, Origin, Role, User};
use flotilla_contracts::AuditAction;
use flotilla_db::{AnyConnection, new_id, write_transaction};
use flotilla_kit::{Config, Env};

use crate::actions::{self, FactorsReset, reset_detail};

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

/// Admin's configuration and a connection to its database, for a command.
fn connect() -> anyhow::Result<(Config, AnyConnection)> {
    let env = Env::from_process();
    let service = &crate::SERVICE;
    let config = Config::from_env(&env, service.name, service.default_port)?;
    let conn = flotilla_db::open(&config.database)?;
    Ok((config, conn))
}

/// Who runs the command, as the audit log names them.
fn actor() -> Actor {
    Actor::CommandLine {
        unix_user: unix_user(),
    }
}

fn change_role(args: &[String], role: Role) -> anyhow::Result<()> {
    let [email] = args else {
        bail!("usage: flotilla-admin promote|demote EMAIL");
    };
    let (_, mut conn) = connect()?;
    let outcome = set_role(&mut conn, email, role, &actor(), &host())?;
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

pub fn reset_factors(args: &[String]) -> anyhow::Result<()> {
    let [email] = args else {
        bail!("usage: flotilla-admin reset-factors EMAIL");
    };
    let (config, mut conn) = connect()?;
    let reset = reset_by_email(&mut conn, email, &actor(), &host(), &config.public_url)?;
    let Some(reset) = reset else {
        println!(
            "{email} has no second factor (no authenticator app, passkey or recovery code): \
             nothing changed"
        );
        return Ok(());
    };
    println!(
        "{email}: {} (recorded in the audit log); the owner is mailed. They sign in with \
         their password alone and can set up a new authenticator app. The services deny \
         the ended sessions at their next revocation catch-up, the worker sends the mail \
         at its next pass.",
        reset_detail(&reset.removed, reset.ended.len())
    );
    Ok(())
}

/// The console's reset of second factors for the open account of `email`, with its
/// audit entry, in one transaction; `None` when it has no factor (nothing is done).
fn reset_by_email(
    conn: &mut AnyConnection,
    email: &str,
    actor: &Actor,
    host: &str,
    public_url: &str,
) -> anyhow::Result<Option<FactorsReset>> {
    let lookup = email.trim().to_lowercase();
    write_transaction(conn, |conn| {
        let Some(account) = User::by_email(conn, &lookup)? else {
            bail!("no open account has the address {email:?}");
        };
        // As the console's actions: a sign-in racing the reset commits first, so its
        // session is ended here.
        User::lock(conn, &account.id)?;
        let now = flotilla_jobs::now();
        let origin = Origin::new(host.to_owned(), "flotilla-admin reset-factors");
        let Some(reset) = actions::reset_factors(conn, &account, &origin, public_url, now)
            .context("resetting the second factors")?
        else {
            return Ok(None);
        };
        NewAuditEntry {
            actor,
            action: AuditAction::FactorsReset,
            target: Some((&account.id, &account.email)),
            client_addr: host,
            request_id: &format!("cli-{}", new_id()),
            detail: &reset_detail(&reset.removed, reset.ended.len()),
        }
        .record(conn, now)?;
        Ok(Some(reset))
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
    use flotilla_accounts::Factors;

    use super::*;
    use crate::test_support::{account, each_backend, session, with_factors};

    fn shell() -> Actor {
        Actor::CommandLine {
            unix_user: "ops".into(),
        }
    }

    #[test]
    fn a_reset_removes_every_factor_ends_every_session_and_records_it_all() {
        each_backend(|db, conn| {
            let name = db.backend_name();
            account(conn, "u1", "Ada@Example.org");
            account(conn, "u2", "bob@example.org");
            with_factors(conn, "u1", true, 3);
            with_factors(conn, "u2", true, 10);
            session(conn, "s1", "u1", "pwd otp mfa");
            session(conn, "s2", "u1", "pwd");
            session(conn, "s3", "u2", "pwd otp mfa");

            let host = "command line on test";
            let url = "https://example.org";
            let reset = reset_by_email(conn, " ada@example.ORG ", &shell(), host, url)
                .unwrap()
                .unwrap();
            assert!(reset.removed.totp.is_some(), "{name}");
            assert_eq!(reset.removed.recovery_codes_left, 3, "{name}");
            let mut ended = reset.ended.clone();
            ended.sort();
            assert_eq!(ended, ["s1", "s2"], "{name}");

            assert_eq!(
                Factors::of(conn, "u1").unwrap(),
                Factors::default(),
                "{name}"
            );
            let bob = Factors::of(conn, "u2").unwrap();
            assert!(
                bob.totp.is_some() && bob.recovery_codes_left == 10,
                "{name}: {bob:?}"
            );
            let reasons = db.strings(
                "SELECT id || ':' || COALESCE(revoked_reason, 'live') AS v FROM sessions ORDER BY id",
            );
            assert_eq!(reasons, ["s1:revoked", "s2:revoked", "s3:live"], "{name}");
            let events = db.strings(
                "SELECT kind || '|' || user_id || '|' || client_addr AS v FROM auth_events",
            );
            assert_eq!(events, [format!("factors.reset|u1|{host}")], "{name}");
            let audit = db.strings(
                "SELECT actor || '|' || action || '|' || target_id || '|' || detail AS v \
                 FROM audit_log",
            );
            assert_eq!(
                audit,
                [
                    "command line (ops)|account.factors_reset|u1|authenticator app and 3 \
                  recovery codes removed, 2 sessions ended"
                ],
                "{name}"
            );
            let mails = db.strings("SELECT recipient || '|' || payload AS v FROM jobs");
            assert_eq!(mails.len(), 1, "{name}: {mails:?}");
            assert!(
                mails[0].starts_with("Ada@Example.org|"),
                "{name}: {mails:?}"
            );
            assert!(mails[0].contains("\"reset\""), "{name}: {mails:?}");
            assert!(
                mails[0].contains("https://example.org/profile#security"),
                "{name}"
            );
            assert!(
                !mails[0].contains("sealed-stand-in"),
                "{name}: no secret in a mail"
            );
        });
    }

    #[test]
    fn recovery_codes_left_without_an_app_are_reset_too() {
        each_backend(|db, conn| {
            account(conn, "u1", "ada@example.org");
            with_factors(conn, "u1", false, 2);
            let reset = reset_by_email(conn, "ada@example.org", &shell(), "here", "https://x")
                .unwrap()
                .unwrap();
            assert_eq!(
                reset_detail(&reset.removed, reset.ended.len()),
                "2 recovery codes removed, 0 sessions ended",
                "{}",
                db.backend_name()
            );
            assert_eq!(Factors::of(conn, "u1").unwrap(), Factors::default());
        });
    }

    #[test]
    fn an_account_without_factors_is_left_as_it_was() {
        each_backend(|db, conn| {
            let name = db.backend_name();
            account(conn, "u1", "ada@example.org");
            session(conn, "s1", "u1", "pwd");
            let reset = reset_by_email(conn, "ada@example.org", &shell(), "here", "https://x");
            assert!(reset.unwrap().is_none(), "{name}");
            for table in ["auth_events", "audit_log", "jobs"] {
                let rows = db.strings(&format!("SELECT CAST(COUNT(*) AS TEXT) AS v FROM {table}"));
                assert_eq!(rows, ["0"], "{name}: {table}");
            }
            let live = db.strings("SELECT id AS v FROM sessions WHERE revoked_at IS NULL");
            assert_eq!(live, ["s1"], "{name}");
        });
    }

    #[test]
    fn an_unknown_address_is_named() {
        each_backend(|_, conn| {
            let error = reset_by_email(conn, "nobody@example.org", &shell(), "here", "https://x")
                .err()
                .unwrap();
            assert_eq!(
                error.to_string(),
                "no open account has the address \"nobody@example.org\""
            );
        });
    }

    #[test]
    fn a_user_is_named_from_the_passwd_file() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nada:x:1000:1000::/home/ada:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("ada"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 7), None);
    }
}
