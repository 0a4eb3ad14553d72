//! A release tarball (`make release`), unpacked on the deploying machine for its
//! MANIFEST and its render-proxy.sh, and checked before it goes anywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Release {
    pub tarball: PathBuf,
    pub version: String,
    /// The unpacked release: `flotilla-<version>/`.
    pub dir: PathBuf,
}

impl Release {
    /// Unpacks `tarball` (default: the newest `dist/flotilla-*.tar.gz`) under `scratch`
    /// and checks its checksums.
    pub fn open(tarball: Option<&Path>, scratch: &Path) -> Result<Release, String> {
        let tarball = match tarball {
            Some(path) => path.to_path_buf(),
            None => newest(Path::new("dist"))?,
        };
        let into = scratch.join("release");
        std::fs::create_dir_all(&into).map_err(|e| format!("{}: {e}", into.display()))?;
        let output = Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&into)
            .output()
            .map_err(|e| format!("tar: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{}: not a release tarball: {}",
                tarball.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let mut tops = std::fs::read_dir(&into)
            .map_err(|e| format!("{}: {e}", into.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path());
        let (Some(dir), None) = (tops.next(), tops.next()) else {
            return Err(format!("{}: expected one top folder", tarball.display()));
        };
        let manifest = std::fs::read_to_string(dir.join("MANIFEST"))
            .map_err(|e| format!("{}: MANIFEST: {e}", tarball.display()))?;
        let version = manifest
            .lines()
            .find_map(|l| l.strip_prefix("version="))
            .ok_or_else(|| format!("{}: MANIFEST has no version", tarball.display()))?
            .to_owned();
        let expected = format!("flotilla-{version}");
        if dir.file_name().and_then(|n| n.to_str()) != Some(expected.as_str()) {
            return Err(format!(
                "{}: its folder is not {expected}",
                tarball.display()
            ));
        }
        let check = Command::new("sha256sum")
            .args(["--quiet", "-c", "SHA256SUMS"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("sha256sum: {e}"))?;
        if !check.status.success() {
            return Err(format!(
                "{}: a file does not match SHA256SUMS: {}",
                tarball.display(),
                String::from_utf8_lossy(&check.stdout).trim()
            ));
        }
        Ok(Release {
            tarball,
            version,
            dir,
        })
    }
}

/// The newest release tarball in `dist`.
fn newest(dist: &Path) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(dist).map_err(|e| {
        format!(
            "no release given and {}: {e}: run `make release`, or pass --release FILE",
            dist.display()
        )
    })?;
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("flotilla-") && name.ends_with(".tar.gz")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
        .ok_or_else(|| {
            format!(
                "no release in {}: run `make release`, or pass --release FILE",
                dist.display()
            )
        })
}
