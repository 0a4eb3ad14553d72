//! The modes of what holds secrets, checked at start as ssh checks a private key: the
//! data folder (`FLOTILLA_DATA_DIR`: the SQLite database, the bus secret, the keys) must
//! not be readable or writable by group or others, and a secret's own folder and files
//! (the signing keys, the bus secret) not reachable by them at all. A folder flotilla
//! creates gets the right mode; one found too open stops the process with a message
//! naming it and the `chmod` that fixes it (a configuration error, exit status 78).

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A folder or file that cannot be used as it is; a configuration error (exit 78).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// Who besides the owner may use a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Owner only (0700): a folder of secrets.
    Private,
    /// Others may pass through to a name they know, never list or write (0711): the
    /// data folder, so that nginx reaches the static site inside it.
    Traverse,
}

impl Access {
    fn refused_bits(self) -> u32 {
        match self {
            Access::Private => 0o077,
            Access::Traverse => 0o066,
        }
    }

    fn mode(self) -> u32 {
        match self {
            Access::Private => 0o700,
            Access::Traverse => 0o711,
        }
    }
}

/// Creates `dir` (and its missing parents) with `access`'s mode, or checks the mode of
/// the folder already there.
pub fn ensure_dir(dir: &Path, access: Access) -> Result<(), Refusal> {
    match fs::metadata(dir) {
        Ok(_) => check_dir(dir, access),
        Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(access.mode())
            .create(dir)
            .map_err(|e| Refusal(format!("cannot create {}: {e}", dir.display()))),
        Err(e) => Err(Refusal(format!("cannot read {}: {e}", dir.display()))),
    }
}

/// Refuses a folder that group or others may read or write (or, `Private`, enter).
pub fn check_dir(dir: &Path, access: Access) -> Result<(), Refusal> {
    let meta =
        fs::metadata(dir).map_err(|e| Refusal(format!("cannot read {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Refusal(format!("{} is not a folder", dir.display())));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & access.refused_bits() != 0 {
        return Err(Refusal(format!(
            "{} is open to other users (mode {mode:04o}); it holds secrets, so flotilla \
             refuses to use it: run `chmod {:o} {}`",
            dir.display(),
            access.mode(),
            dir.display()
        )));
    }
    Ok(())
}

/// Refuses a secret file that group or others may read or write.
pub fn check_file(path: &Path) -> Result<(), Refusal> {
    let meta =
        fs::metadata(path).map_err(|e| Refusal(format!("cannot read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Refusal(format!(
            "{} is open to other users (mode {mode:04o}); it is a secret, so flotilla \
             refuses to use it: run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// The content of the secret file `path`, made first with `make()` (mode 0600) if
/// there is none. Several processes starting at once agree: the content is written to
/// a file of this process's own and linked into place, which fails for all but the
/// first; the others read what it wrote, never a half-written file.
pub fn read_or_create_secret(path: &Path, make: impl FnOnce() -> String) -> Result<String, String> {
    if !path.exists() {
        let temp = path.with_file_name(format!(
            ".{}.{}-{:016x}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("secret"),
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(make().as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| fs::hard_link(&temp, path));
        let _ = fs::remove_file(&temp);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
    }
    check_file(path).map_err(|e| e.0)?;
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flotilla-files-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_missing_folder_is_made_with_its_mode() {
        let root = temp_dir("make");
        let data = root.join("var");
        ensure_dir(&data, Access::Traverse).unwrap();
        assert_eq!(mode(&data), 0o711);
        let keys = data.join("keys");
        ensure_dir(&keys, Access::Private).unwrap();
        assert_eq!(mode(&keys), 0o700);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_folder_open_to_others_is_refused_with_the_fix() {
        let dir = temp_dir("open");
        fs::create_dir_all(&dir).unwrap();
        for (mode, traverse_ok, private_ok) in [
            (0o700, true, true),
            (0o711, true, false),
            (0o710, true, false),
            (0o750, false, false),
            (0o755, false, false),
            (0o701, true, false),
            (0o703, false, false),
            (0o770, false, false),
        ] {
            chmod(&dir, mode);
            assert_eq!(
                check_dir(&dir, Access::Traverse).is_ok(),
                traverse_ok,
                "{mode:o}"
            );
            assert_eq!(
                ensure_dir(&dir, Access::Private).is_ok(),
                private_ok,
                "{mode:o}"
            );
        }
        chmod(&dir, 0o755);
        let refused = check_dir(&dir, Access::Traverse).unwrap_err().0;
        assert!(refused.contains(&dir.display().to_string()), "{refused}");
        assert!(refused.contains("mode 0755"), "{refused}");
        assert!(
            refused.contains(&format!("chmod 711 {}", dir.display())),
            "{refused}"
        );
        let file = dir.join("key.pem");
        fs::write(&file, "x").unwrap();
        chmod(&file, 0o644);
        let refused = check_file(&file).unwrap_err().0;
        assert!(
            refused.contains(&format!("chmod 600 {}", file.display())),
            "{refused}"
        );
        chmod(&file, 0o400);
        assert!(check_file(&file).is_ok());
        assert!(check_dir(&file, Access::Private).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn processes_starting_together_share_one_secret() {
        let dir = temp_dir("secret");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bus.secret");
        let made: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|n| {
                    let path = path.clone();
                    scope.spawn(move || read_or_create_secret(&path, || format!("{n:064}")))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert!(made.iter().all(|s| *s == made[0]), "{made:?}");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        chmod(&path, 0o640);
        assert!(read_or_create_secret(&path, String::new).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
