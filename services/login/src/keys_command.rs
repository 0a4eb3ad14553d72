//! `flotilla-login keys …`: the signing keys, for sysadmins.
//!
//! Rotation: `keys generate` adds a key, which signs from the next reload (within
//! `FLOTILLA_KEYS_RELOAD_SECS`, 30 s by default,
//! on every login instance that reads the folder); the old key stays published so the
//! tokens it signed stay valid. Once they have expired (the access token lifetime
//! after the new key was made), `keys prune` removes the old key.

use chrono::TimeDelta;
use flotilla_auth::keys::{self, KeyRing};
use flotilla_kit::Env;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let env = Env::from_process();
    let data_dir = flotilla_kit::config::data_dir(&env)?;
    let dir = env.path("FLOTILLA_KEYS_DIR", data_dir.join("keys"))?;
    match args.first().map(String::as_str) {
        Some("generate") => {
            let key = keys::add(&dir)?;
            println!("{}", key.kid);
            log::info!(
                "wrote {}: it signs once flotilla-login reads the folder again (every FLOTILLA_KEYS_RELOAD_SECS, 30 s by default)",
                dir.join(format!("{}.pem", key.kid)).display()
            );
        }
        Some("list") => {
            let ring = KeyRing::load(&dir)?;
            let current = ring.current().map(|k| k.kid.clone());
            for key in ring.keys() {
                let role = if Some(&key.kid) == current.as_ref() {
                    "signing"
                } else {
                    "published"
                };
                println!("{}\t{role}", key.kid);
            }
        }
        Some("prune") => {
            let ttl = env.number("FLOTILLA_ACCESS_TOKEN_TTL_SECS", 900, 5..=86_400)?;
            // A margin for clocks and for the reload interval.
            let grace = TimeDelta::seconds(ttl + 120);
            for path in keys::prune(&dir, grace)? {
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
