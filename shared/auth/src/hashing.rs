//! Argon2id password hashes in PHC string format.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, Salt, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

use crate::Password;

/// Argon2id cost parameters. The default is OWASP's: 19 MiB, 2 iterations, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(HashError::Params)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid Argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("Argon2 hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

fn hash_str(params: &HashParams, password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(HashError::Hash)?;
    let hash = params
        .argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(HashError::Hash)?;
    Ok(hash.to_string())
}

/// Hashes `password` with a fresh random salt. Slow on purpose: call it off the executor.
pub fn hash_password(params: &HashParams, password: &Password) -> Result<String, HashError> {
    hash_str(params, password.expose())
}

/// True when `candidate` matches the PHC string `phc`; false when it does not or when
/// `phc` is malformed. The cost parameters are read from `phc`.
pub fn verify_password(phc: &str, candidate: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(candidate.as_bytes(), &parsed)
        .is_ok()
}

/// Spends about as long as `verify_password` on a hash made with `params`, for when the
/// user does not exist, so that the answer time does not tell whether they do.
pub fn burn_time(params: &HashParams, candidate: &str) {
    // Verifying is one hash plus a comparison: hashing the candidate costs the same.
    let _ = hash_str(params, candidate);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::PasswordPolicy;

    /// Cheap parameters so tests stay fast.
    pub(crate) const FAST: HashParams = HashParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };

    pub(crate) fn password(s: &str) -> Password {
        PasswordPolicy::default()
            .check(s, "someone@example.org")
            .unwrap()
    }

    #[test]
    fn round_trip() {
        let phc = hash_password(&FAST, &password("correct horse battery staple")).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery staple"));
        assert!(!verify_password(&phc, "correct horse battery stapl"));
        assert!(!verify_password(&phc, ""));
    }

    #[test]
    fn salts_differ() {
        let pw = password("correct horse battery staple");
        assert_ne!(
            hash_password(&FAST, &pw).unwrap(),
            hash_password(&FAST, &pw).unwrap()
        );
    }

    #[test]
    fn default_params_are_owasp() {
        let phc = hash_password(
            &HashParams::default(),
            &password("correct horse battery staple"),
        )
        .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(&phc, "correct horse battery staple"));
    }

    #[test]
    fn garbage_hashes_do_not_verify() {
        for phc in [
            "",
            "garbage",
            "$argon2id$",
            "$argon2id$v=19$m=256,t=1,p=1$",
            "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$",
            "$argon2id$v=19$m=0,t=0,p=0$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAA",
            "$2b$12$abcdefghijklmnopqrstuv",
            "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$!!!!",
        ] {
            assert!(
                !verify_password(phc, "correct horse battery staple"),
                "{phc}"
            );
        }
    }

    #[test]
    fn bad_params_are_an_error() {
        let params = HashParams {
            memory_kib: 0,
            ..FAST
        };
        let err = hash_password(&params, &password("correct horse battery staple")).unwrap_err();
        assert!(matches!(err, HashError::Params(_)), "{err}");
    }

    #[test]
    fn burn_time_does_not_panic() {
        burn_time(&FAST, "whatever");
        burn_time(
            &HashParams {
                memory_kib: 0,
                ..FAST
            },
            "whatever",
        );
    }
}
