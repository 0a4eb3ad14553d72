//! Ed25519 signing keys, one PEM file each (`<kid>.pem`, PKCS#8 as `openssl genpkey
//! -algorithm ed25519` writes it) in the keys folder, which only `flotilla-login`
//! reads. The key id is the creation time plus a random suffix, so the names sort by
//! age. Every key in the folder is published in the JWKS until it is pruned, which
//! keeps the tokens an older key signed verifiable until they expire.
//!
//! A new key is published at once but signs only once it is `lead` old
//! ([`KeyRing::signing_at`]): time for every verifier to fetch the JWKS that holds it
//! before it meets a token the key signed. Until then the key before it goes on
//! signing. [`prune`] removes a key once its successor has signed for longer than an
//! access token lives.

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

/// What a key of the folder does at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It signs.
    Signing,
    /// It is published, and signs from `signs_from` on.
    Waiting { signs_from: NaiveDateTime },
    /// It is published, for the tokens it signed before a newer key took over.
    Published,
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

    /// The newest key: not necessarily the one that signs ([`Self::signing_at`]).
    pub fn newest(&self) -> Option<&SigningKey> {
        self.keys.last()
    }

    /// The key that signs at `now`: the newest made at least `lead` before, so that
    /// every verifier has had `lead` to fetch it; when no key is that old, the oldest
    /// (a fleet's first key signs at once). A key whose id tells no time (named by
    /// hand) counts as old enough. `None` only when the ring is empty.
    pub fn signing_at(&self, now: NaiveDateTime, lead: TimeDelta) -> Option<&SigningKey> {
        let made_by = now.checked_sub_signed(lead).unwrap_or(NaiveDateTime::MIN);
        self.keys
            .iter()
            .rev()
            .find(|k| k.created().is_none_or(|at| at <= made_by))
            .or_else(|| self.keys.first())
    }

    /// What each key does at `now`, oldest first. A key newer than the one that signs
    /// waits for its turn, which comes when it is `lead` old.
    pub fn roles_at(
        &self,
        now: NaiveDateTime,
        lead: TimeDelta,
    ) -> impl Iterator<Item = (&SigningKey, Role)> {
        let signing = self.signing_at(now, lead).map(|k| k.kid.as_str());
        self.keys.iter().map(move |key| {
            let role = match (signing, key.created()) {
                (Some(kid), _) if kid == key.kid => Role::Signing,
                // Newer than the signing key, so too young to sign (an id without
                // a time would count as old enough and sign itself).
                (Some(kid), Some(at)) if key.kid.as_str() > kid => Role::Waiting {
                    signs_from: at.checked_add_signed(lead).unwrap_or(NaiveDateTime::MAX),
                },
                _ => Role::Published,
            };
            (key, role)
        })
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
/// rename so that a reader never sees half a key. login publishes it from its next
/// load on, and signs with it once it is old enough ([`KeyRing::signing_at`]).
pub fn add(dir: &Path) -> anyhow::Result<SigningKey> {
    create_private_dir(dir)?;
    let newest = KeyRing::load(dir)?.newest().map(|k| k.kid.clone());
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

/// Deletes the keys that stopped signing more than `grace` ago: their successor was
/// made more than `lead + grace` ago, and so has signed since `lead` after it was
/// made. The newest key is always kept, and so is a key whose successor's id tells no
/// time. Returns the removed files.
pub fn prune(dir: &Path, lead: TimeDelta, grace: TimeDelta) -> anyhow::Result<Vec<PathBuf>> {
    prune_at(dir, Utc::now().naive_utc(), lead, grace)
}

fn prune_at(
    dir: &Path,
    now: NaiveDateTime,
    lead: TimeDelta,
    grace: TimeDelta,
) -> anyhow::Result<Vec<PathBuf>> {
    let ring = KeyRing::load(dir)?;
    let cutoff = lead
        .checked_add(&grace)
        .and_then(|wait| now.checked_sub_signed(wait))
        .unwrap_or(NaiveDateTime::MIN);
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
    fn every_key_is_published_and_a_new_one_sorts_last() {
        let dir = temp_dir("ring");
        let (ring, created) = KeyRing::load_or_create(&dir).unwrap();
        assert!(created);
        assert_eq!(ring.keys().len(), 1);
        let first = ring.newest().unwrap().kid.clone();
        let second = add(&dir).unwrap();
        let ring = KeyRing::load(&dir).unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.newest().unwrap().kid, second.kid);
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
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A key as `generate` names it, made at `at` (`KID_TIME`).
    fn key_made_at(at: &str) -> SigningKey {
        SigningKey::from_seed(format!("{at}-0a0b0c"), rand::random())
    }

    fn time(at: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(at, KID_TIME).unwrap()
    }

    fn signing(ring: &KeyRing, now: NaiveDateTime, lead: TimeDelta) -> &str {
        &ring.signing_at(now, lead).unwrap().kid
    }

    fn roles(ring: &KeyRing, now: NaiveDateTime, lead: TimeDelta) -> Vec<Role> {
        ring.roles_at(now, lead).map(|(_, role)| role).collect()
    }

    const LEAD: TimeDelta = TimeDelta::seconds(360);

    #[test]
    fn a_lone_new_key_signs_at_once() {
        let made = "20260301T120000000Z";
        let ring = KeyRing {
            keys: vec![key_made_at(made)],
        };
        assert_eq!(signing(&ring, time(made), LEAD), ring.keys[0].kid);
        assert_eq!(roles(&ring, time(made), LEAD), [Role::Signing]);
        assert!(KeyRing::default().signing_at(time(made), LEAD).is_none());
    }

    #[test]
    fn a_new_key_is_published_at_once_and_signs_once_it_is_lead_old() {
        let (old, new) = ("20260301T000000000Z", "20260301T120000000Z");
        let ring = KeyRing {
            keys: vec![key_made_at(old), key_made_at(new)],
        };
        let (old_kid, new_kid) = (&ring.keys[0].kid, &ring.keys[1].kid);
        let signs_from = time(new) + LEAD;
        assert_eq!(signing(&ring, time(new), LEAD), old_kid);
        assert_eq!(
            signing(&ring, signs_from - TimeDelta::milliseconds(1), LEAD),
            old_kid
        );
        assert_eq!(
            roles(&ring, time(new), LEAD),
            [Role::Signing, Role::Waiting { signs_from }]
        );
        assert_eq!(signing(&ring, signs_from, LEAD), new_kid);
        assert_eq!(
            roles(&ring, signs_from, LEAD),
            [Role::Published, Role::Signing]
        );
        // A lead of 0: the newest key signs from the moment it is read.
        assert_eq!(signing(&ring, time(new), TimeDelta::zero()), new_kid);
        assert_eq!(
            roles(&ring, time(new), TimeDelta::zero()),
            [Role::Published, Role::Signing]
        );
    }

    #[test]
    fn keys_newer_than_the_signing_one_each_wait_their_turn() {
        // Only new keys (a fleet's first key and another made soon after): the oldest
        // signs, as no key is old enough.
        let (first, second, third) = (
            "20260301T120000000Z",
            "20260301T120001000Z",
            "20260301T120100000Z",
        );
        let ring = KeyRing {
            keys: vec![key_made_at(first), key_made_at(second), key_made_at(third)],
        };
        let now = time(third);
        assert_eq!(signing(&ring, now, LEAD), ring.keys[0].kid);
        assert_eq!(
            roles(&ring, now, LEAD),
            [
                Role::Signing,
                Role::Waiting {
                    signs_from: time(second) + LEAD
                },
                Role::Waiting {
                    signs_from: time(third) + LEAD
                },
            ]
        );
        assert_eq!(signing(&ring, time(second) + LEAD, LEAD), ring.keys[1].kid);
        assert_eq!(signing(&ring, time(third) + LEAD, LEAD), ring.keys[2].kid);
    }

    #[test]
    fn a_key_named_by_hand_counts_as_old_enough() {
        let new = "20260301T120000000Z";
        let by_hand = |kid: &str| SigningKey::from_seed(kid.to_owned(), rand::random());
        // Sorted before the new key: it signs until the new key is lead old.
        let ring = KeyRing {
            keys: vec![by_hand("0-first"), key_made_at(new)],
        };
        assert_eq!(signing(&ring, time(new), LEAD), "0-first");
        assert_eq!(signing(&ring, time(new) + LEAD, LEAD), ring.keys[1].kid);
        // Sorted after it: it signs at once, being the newest.
        let ring = KeyRing {
            keys: vec![key_made_at(new), by_hand("production")],
        };
        assert_eq!(signing(&ring, time(new), LEAD), "production");
        assert_eq!(
            roles(&ring, time(new), LEAD),
            [Role::Published, Role::Signing]
        );
    }

    #[test]
    fn prune_waits_until_the_successor_has_signed_for_the_grace() {
        let dir = temp_dir("prune");
        let first = add(&dir).unwrap();
        let second = add(&dir).unwrap();
        let made = second.created().unwrap();
        let grace = TimeDelta::seconds(1020);
        let at = |offset: TimeDelta| made + offset;
        // The successor signs from `made + LEAD`, so the old key stays `LEAD` longer
        // than the grace alone would keep it.
        assert!(prune_at(&dir, at(grace), LEAD, grace).unwrap().is_empty());
        assert!(
            prune_at(&dir, at(LEAD + grace), LEAD, grace)
                .unwrap()
                .is_empty()
        );
        let removed = prune_at(
            &dir,
            at(LEAD + grace + TimeDelta::milliseconds(1)),
            LEAD,
            grace,
        )
        .unwrap();
        assert_eq!(removed, [dir.join(format!("{}.pem", first.kid))]);
        let ring = KeyRing::load(&dir).unwrap();
        assert_eq!(ring.keys().len(), 1);
        assert_eq!(ring.newest().unwrap().kid, second.kid);
        // The newest key always stays.
        assert!(
            prune_at(&dir, at(TimeDelta::days(365)), LEAD, grace)
                .unwrap()
                .is_empty()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
