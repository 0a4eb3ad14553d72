//! `make bench`: what checking an access token costs a service, per request.
//! Prints "verify_us sign_us": the median of 15 rounds of 2,000 checks each (header,
//! EdDSA signature, claims) and of signings.

use std::time::Instant;

use flotilla_auth::access_token::{self, Claims, TokenSettings};
use flotilla_auth::keys::SigningKey;

fn main() -> anyhow::Result<()> {
    let settings = TokenSettings {
        issuer: "http://127.0.0.1:8080/login".into(),
        audience: "flotilla".into(),
        ttl_secs: 900,
        leeway_secs: 30,
    };
    let key = SigningKey::generate();
    let public = access_token::decoding_key(&key.public_x())
        .ok_or_else(|| anyhow::anyhow!("the public key does not decode"))?;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: "0b7e6c1e-4f5a-4c1e-9d7e-3a2b1c0d9e8f".into(),
        sid: "5d1f2e3a-6b7c-4d8e-9f0a-1b2c3d4e5f60".into(),
        role: "user".into(),
        email_verified: true,
        email: "ada@example.org".into(),
        preferred_username: None,
        name: None,
        amr: vec!["pwd".to_owned()],
        csrf: flotilla_auth::new_token(),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
        iat: now,
        nbf: now,
        exp: now + 900,
    };
    let token = access_token::sign(&key, &claims)?;
    let rounds = 15;
    let per_round = 2_000;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut verify = Vec::new();
    let mut sign = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..per_round {
            access_token::key_id(&token).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            access_token::verify(&settings, &token, &public)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        verify.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
        let started = Instant::now();
        for _ in 0..per_round {
            access_token::sign(&key, &claims)?;
        }
        sign.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
    }
    println!("{:.1} {:.1}", median(verify), median(sign));
    Ok(())
}
