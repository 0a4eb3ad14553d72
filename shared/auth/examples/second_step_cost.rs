//! `make bench`: what a second step's check costs login, per sign-in, beside its one
//! Argon2 hash. Prints "totp_us recovery_us": the median of 15 rounds of 2,000 each of
//! the work an authenticator code takes (the sealed secret opened, RFC 6238 checked
//! with its drift) and of a recovery code's (normalised, and its HMAC for the lookup).
//! The database's one guarded write per sign-in comes on top, and `make bench`'s
//! HTTP measurement has it.

use std::time::Instant;

use flotilla_auth::factors::{FactorKey, TotpSecret, normalise_recovery_code};

fn main() -> anyhow::Result<()> {
    let key = FactorKey::from_hex(&"5a".repeat(32))
        .ok_or_else(|| anyhow::anyhow!("the key does not read"))?;
    let owner = b"totp:0b7e6c1e-4f5a-4c1e-9d7e-3a2b1c0d9e8f";
    let secret = TotpSecret::generate();
    let sealed = key.seal(secret.as_bytes(), owner);
    let now = u64::try_from(chrono::Utc::now().timestamp())?;
    let code = secret.code_at(now);
    let rounds = 15;
    let per_round = 2_000;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut totp, mut recovery) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..per_round {
            let opened = key
                .open(&sealed, owner)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let secret = TotpSecret::from_bytes(opened)
                .ok_or_else(|| anyhow::anyhow!("the secret is short"))?;
            secret
                .check(&code, now, None)
                .ok_or_else(|| anyhow::anyhow!("the code is not right"))?;
        }
        totp.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
        let started = Instant::now();
        for _ in 0..per_round {
            let normal = normalise_recovery_code("ABCDE FGHJK");
            std::hint::black_box(key.recovery_hash("0b7e6c1e", &normal));
        }
        recovery.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
    }
    println!("{:.1} {:.1}", median(totp), median(recovery));
    Ok(())
}
