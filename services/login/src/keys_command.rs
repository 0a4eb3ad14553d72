//! `flotilla-login keys …`: the signing keys, for sysadmins.
//!
//! Rotation: `keys generate` adds a key. Every login instance that reads the folder
//! publishes it in its JWKS at its next read (within `FLOTILLA_KEYS_RELOAD_SECS`, 30 s
//! by default), and signs with it once it is `FLOTILLA_KEYS_PUBLISH_SECS` old (360 s
//! by default): by then every service has fetched the JWKS that holds it, so none
//! refuses its first tokens. Until then the old key signs; afterwards it stays
//! published so the tokens it signed stay valid. Once they have expired (the access
//! token lifetime, and a margin, after the new key began to sign), `keys prune`
//! removes the old key. `keys list` shows which key signs, and from when a new one
//! will.

use chrono::{NaiveDateTime, TimeDelta, Utc};
use flotilla_auth::keys::{self, KeyRing, Role};
use flotilla_kit::Env;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let env = Env::from_process();
    let data_dir = flotilla_kit::config::data_dir(&env)?;
    let dir = env.path("FLOTILLA_KEYS_DIR", data_dir.join("keys"))?;
    let lead = crate::keys_publish(&env)?;
    match args.first().map(String::as_str) {
        Some("generate") => {
            let key = keys::add(&dir)?;
            println!("{}", key.kid);
            let ring = KeyRing::load(&dir)?;
            let role = ring
                .roles_at(Utc::now().naive_utc(), lead)
                .find(|(k, _)| k.kid == key.kid)
                .map(|(_, role)| role);
            let path = dir.join(format!("{}.pem", key.kid));
            match role {
                Some(Role::Waiting { signs_from }) => log::info!(
                    "wrote {}: flotilla-login publishes it when it reads the folder again (every FLOTILLA_KEYS_RELOAD_SECS, 30 s by default) and signs with it from {} (FLOTILLA_KEYS_PUBLISH_SECS after it was made)",
                    path.display(),
                    rfc3339(signs_from)
                ),
                _ => log::info!(
                    "wrote {}: it signs once flotilla-login reads the folder again (every FLOTILLA_KEYS_RELOAD_SECS, 30 s by default)",
                    path.display()
                ),
            }
        }
        Some("list") => {
            let ring = KeyRing::load(&dir)?;
            for (key, role) in ring.roles_at(Utc::now().naive_utc(), lead) {
                let role = match role {
                    Role::Signing => "signing".to_owned(),
                    Role::Waiting { signs_from } => {
                        format!("published, signs from {}", rfc3339(signs_from))
                    }
                    Role::Published => "published".to_owned(),
                };
                println!("{}\t{role}", key.kid);
            }
        }
        Some("prune") => {
            let ttl = env.number("FLOTILLA_ACCESS_TOKEN_TTL_SECS", 900, 5..=86_400)?;
            // A margin for clocks and for the reload interval.
            let grace = TimeDelta::seconds(ttl + 120);
            for path in keys::prune(&dir, lead, grace)? {
                println!("removed {}", path.display());
            }
        }
        Some("jwks") => {
            println!("{}", KeyRing::load(&dir)?.jwks());
        }
        other => anyhow::bail!(
            "usage: flotilla-login keys generate|list|prune|jwks (got {})",
            other.map_or("nothing".to_owned(), |o| format!("{o:?}"))
        ),
    }
    Ok(())
}

/// A time of a key's id (UTC), as RFC 3339 to the millisecond, as precise as the id.
fn rfc3339(at: NaiveDateTime) -> String {
    at.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
