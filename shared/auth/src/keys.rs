//! Ed25519 signing keys, one PEM file each (`<kid>.pem`, PKCS#8 as `openssl genpkey
//! -algorithm ed25519` writes it) in the keys folder, which only `flotilla-login`
//! reads. The key id is the creation time plus a random suffix, so the names sort by
//! age: the newest key signs, and every key in the folder is published in the JWKS
//! until it is pruned, which keeps the tokens an older key signed verifiable until
//! they expire.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{NaiveDateTime, TimeDelta, Utc};
use jsonwebtoken::EncodingKey;

/// PKCS#8 v1 for Ed25519 is this fixed prefix and the 32-byte seed (RFC 8410).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const KID_TIME: &str = "%Y%m%dT%H%M%S%3fZ";

/// One key pair. The private half never leaves this struct except as PEM on disk.
pub struct SigningKey {
    pub kid: String,
    der: Vec<u8>,
    public: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// A new random key whose id says when it was made.
    pub fn generate() -> Self {
        let seed: [u8; 32] = rand::random();
        let suffix: [u8; 3] = rand::random();
        let kid = format!(
            "{}-{}",
            Utc::now().format(KID_TIME),
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Self::from_seed(kid, seed)
    }

    fn from_seed(kid: String, seed: [u8; 32]) -> Self {
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        Self { kid, der, public }
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pem(kid: &str, pem: &str) -> anyhow::Result<Self> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        if !pem.contains("-----BEGIN PRIVATE KEY-----") {
            bail!("not a PEM private key (expected -----BEGIN PRIVATE KEY-----)");
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| anyhow!("the PEM body is not base64: {e}"))?;
        if der.len() != 48 || der[..16] != PKCS8_PREFIX {
            bail!("not an Ed25519 PKCS#8 key");
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&der[16..]);
        Ok(Self::from_seed(kid.to_owned(), seed))
    }

    pub fn to_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.der);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ed_der(&self.der)
    }

    /// The public key as the `x` of a JWK (base64url, no padding).
    pub fn public_x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }

    /// The public half, as published.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": self.public_x(),
        })
    }

    /// An Ed25519 signature of `message` (login's device cookies, [`crate::device`]).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&self.der[16..]);
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        ed25519_dalek::Signer::sign(&key, message).to_bytes()
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let (Ok(public), Ok(signature)) = (
            ed25519_dalek::VerifyingKey::from_bytes(&self.public),
            ed25519_dalek::Signature::from_slice(signature),
        ) else {
            return false;
        };
        public.verify_strict(message, &signature).is_ok()
    }

    /// When the key was made, read from its id (`None` for ids named by hand).
    pub fn created(&self) -> Option<NaiveDateTime> {
        let stamp = self.kid.split('-').next()?;
        NaiveDateTime::parse_from_str(stamp, KID_TIME).ok()
    }
}

/// The keys of a folder, oldest first.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl KeyRing {
    /// Reads every `*.pem` of `dir` (a missing folder is an empty ring); a folder or
    /// key that group or others may use is refused ([`flotilla_kit::files::Refusal`]).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        // As ssh does with a private key: refused when other users may read it.
        flotilla_kit::files::check_dir(dir, flotilla_kit::files::Access::Private)?;
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let Some(kid) = pem_kid(&path) else { continue };
            flotilla_kit::files::check_file(&path)?;
            let pem = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let key = SigningKey::from_pem(&kid, &pem)
                .with_context(|| format!("{} is not usable", path.display()))?;
            keys.push(key);
        }
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        Ok(Self { keys })
    }

    /// The folder's keys, making a first one when there is none (development, and
    /// the first start of a new fleet). Returns whether it made one.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<(Self, bool)> {
        let ring = Self::load(dir)?;
        if !ring.keys.is_empty() {
            return Ok((ring, false));
        }
        add(dir)?;
        Ok((Self::load(dir)?, true))
    }

    /// The key that signs: the newest.
    pub fn current(&self) -> Option<&SigningKey> {
        self.keys.last()
    }

    /// The key named `kid`, if the folder still has it.
    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The JSON Web Key Set of the public keys.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() })
    }
}

fn pem_kid(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let kid = name.strip_suffix(".pem")?;
    let valid = !kid.is_empty()
        && kid.len() <= 64
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    valid.then(|| kid.to_owned())
}

/// Writes a new key into `dir` (made 0700 if new), readable by its owner only, by
/// rename so that a reader never sees half a key. The new key signs from the next
/// load on.
pub fn add(dir: &Path) -> anyhow::Result<SigningKey> {
    create_private_dir(dir)?;
    let newest = KeyRing::load(dir)?.current().map(|k| k.kid.clone());
    let mut key = SigningKey::generate();
    // The names must sort by age; two keys within a millisecond wait for the next.
    while newest.as_ref().is_some_and(|n| *n >= key.kid) {
        std::thread::sleep(std::time::Duration::from_millis(1));
        key = SigningKey::generate();
    }
    let path = dir.join(format!("{}.pem", key.kid));
    let temp = dir.join(format!(".{}.pem.tmp", key.kid));
    {
        let mut file = private_file(&temp)?;
        file.write_all(key.to_pem().as_bytes())
            .and_then(|_| file.sync_all())
            .with_context(|| format!("cannot write {}", temp.display()))?;
    }
    fs::rename(&temp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(key)
}

/// Deletes the keys that stopped signing more than `grace` ago (their successor was
/// made before then); the newest key is always kept. Returns the removed files.
pub fn prune(dir: &Path, grace: TimeDelta) -> anyhow::Result<Vec<PathBuf>> {
    let ring = KeyRing::load(dir)?;
    let cutoff = Utc::now().naive_utc() - grace;
    let mut removed = Vec::new();
    for pair in ring.keys.windows(2) {
        let superseded = pair[1].created().is_some_and(|at| at < cutoff);
        if superseded {
            let path = dir.join(format!("{}.pem", pair[0].kid));
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn private_file(path: &Path) -> anyhow::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-keys-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_key_survives_pem_and_matches_openssl_layout() {
        let key = SigningKey::generate();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
        let again = SigningKey::from_pem(&key.kid, &pem).unwrap();
        assert_eq!(again.public_x(), key.public_x());
        assert_eq!(URL_SAFE_NO_PAD.decode(key.public_x()).unwrap().len(), 32);
        assert!(key.created().is_some());
        assert!(SigningKey::from_pem("x", "-----BEGIN PRIVATE KEY-----\nAAAA\n").is_err());
        assert!(SigningKey::from_pem("x", "hello").is_err());
    }

    #[test]
    fn keys_open_to_other_users_are_refused_naming_the_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("modes");
        let key = add(&dir).unwrap();
        let path = dir.join(format!("{}.pem", key.kid));
        let chmod =
            |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        chmod(&path, 0o644);
        let err = KeyRing::load(&dir).unwrap_err();
        assert!(err.downcast_ref::<flotilla_kit::files::Refusal>().is_some());
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        chmod(&path, 0o600);
        chmod(&dir, 0o755);
        let err = KeyRing::load(&dir).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("chmod 700 {}", dir.display())),
            "{err}"
        );
        chmod(&dir, 0o700);
        assert_eq!(KeyRing::load(&dir).unwrap().keys().len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_newest_key_signs_and_all_are_published() {
        let dir = temp_dir("ring");
        let (ring, created) = KeyRing::load_or_create(&dir).unwrap();
        assert!(created);
        assert_eq!(ring.keys().len(), 1);
        let first = ring.current().unwrap().kid.clone();
        let second = add(&dir).unwrap();
        let ring = KeyRing::load(&dir).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.current().unwrap().kid, second.kid);
        let jwks = ring.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(kids.contains(&first.as_str()) && kids.contains(&second.kid.as_str()));
        assert!(
            !jwks.to_string().contains("\"d\""),
            "no private part published"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(format!("{}.pem", second.kid)))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Within the grace period nothing goes; after it, the superseded key does.
        assert!(prune(&dir, TimeDelta::minutes(15)).unwrap().is_empty());
        let removed = prune(&dir, TimeDelta::seconds(-5)).unwrap();
        assert_eq!(removed.len(), 1);
        let ring = KeyRing::load(&dir).unwrap();
        assert_eq!(ring.keys().len(), 1);
        assert_eq!(ring.current().unwrap().kid, second.kid);
        fs::remove_dir_all(&dir).unwrap();
    }
}
