//! Argon2id password hashes in PHC string format.

use std::sync::{Mutex, MutexGuard, PoisonError};

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Argon2's working memory (19 MiB by default), kept after a hash for the next one, at
/// most one copy per hash running at once (the pool's workers). Allocating it per hash
/// made glibc keep freed copies in arena after arena (hundreds of MB after a signup
/// flood). Kept for the whole process rather than per thread, so that the thread that
/// sees the pool idle can give every copy back at once ([`release_spare_memory`]).
static SPARE: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

fn spare() -> MutexGuard<'static, Vec<Vec<Block>>> {
    // Only pushes and pops happen under the lock: a poisoned list is still whole.
    SPARE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Argon2 into `out`, on a spare copy of its memory (made if none is spare).
fn argon2_into(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let mut memory = spare().pop().unwrap_or_default();
    let blocks = argon2.params().block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let hashed = argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks]);
    spare().push(memory);
    hashed
}

/// Drops the spare Argon2 memory (hashes running keep theirs) and has the allocator
/// give its free pages back to the system; returns the bytes dropped. The next hash
/// makes its memory anew: about 4 ms more for 19 MiB here (`make bench` measures it).
pub fn release_spare_memory() -> usize {
    let dropped = std::mem::take(&mut *spare());
    let bytes = dropped
        .iter()
        .map(|memory| memory.capacity() * std::mem::size_of::<Block>())
        .sum();
    drop(dropped);
    if bytes > 0 {
        flotilla_kit::memory::give_back_free_memory();
    }
    bytes
}

fn hash_str(params: &HashParams, password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(&mut salt);
    let salt_string = SaltString::encode_b64(&salt).map_err(HashError::Hash)?;
    let argon2 = params.argon2()?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon2, password.as_bytes(), &salt, &mut out).map_err(HashError::Params)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon2.params()).map_err(HashError::Hash)?,
        salt: Some(salt_string.as_salt()),
        hash: Some(Output::new(&out).map_err(HashError::Hash)?),
    };
    Ok(phc.to_string())
}

/// Hashes `password` with a fresh random salt. Slow on purpose: call it off the executor.
pub fn hash_password(params: &HashParams, password: &Password) -> Result<String, HashError> {
    hash_str(params, password.expose())
}

/// True when `candidate` matches the PHC string `phc`; false when it does not or when
/// `phc` is malformed. The algorithm, version and cost parameters are read from `phc`.
pub fn verify_password(phc: &str, candidate: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Some(expected), Some(salt)) = (
        Algorithm::try_from(parsed.algorithm),
        parsed.hash,
        parsed.salt,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2_into(&argon2, candidate.as_bytes(), salt, &mut out).is_err() {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(&out).is_ok_and(|actual| actual == expected)
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

    /// The reused-memory path writes and reads the same PHC strings as argon2's own.
    #[test]
    fn agrees_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let pw = "correct horse battery staple";
        let ours = hash_password(&FAST, &password(pw)).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(pw.as_bytes(), &parsed)
                .is_ok()
        );
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = FAST
            .argon2()
            .unwrap()
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert!(verify_password(&theirs, pw));
        assert!(!verify_password(&theirs, "wrong"));
        // The same memory serves settings of other sizes, in either order.
        assert!(verify_password(
            &hash_password(&HashParams::default(), &password(pw)).unwrap(),
            pw
        ));
        assert!(verify_password(&ours, pw));
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
