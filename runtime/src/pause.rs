//! The pause binary (built from `pause/pause.c` into the shim) and the
//! read-only root filesystem every sandbox's pause process runs in.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

static PAUSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// Writes `<dir>/rootfs/pause` (when missing or different) and returns the
/// root filesystem's path.
pub fn install(dir: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = dir.join("rootfs");
    for sub in ["", "proc", "dev"] {
        fs::create_dir_all(rootfs.join(sub))
            .with_context(|| format!("creating {}", rootfs.join(sub).display()))?;
    }
    let bin = rootfs.join("pause");
    if fs::read(&bin).ok().as_deref() != Some(PAUSE) {
        let tmp = rootfs.join(".pause.tmp");
        fs::write(&tmp, PAUSE).with_context(|| format!("writing {}", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &bin).with_context(|| format!("installing {}", bin.display()))?;
    }
    Ok(rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_a_static_pause_that_runs() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = install(dir.path()).unwrap();
        let out = std::process::Command::new(rootfs.join("pause"))
            .arg("-v")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "rkube pause 1");
        // Installing again leaves it alone.
        install(dir.path()).unwrap();
    }
}
