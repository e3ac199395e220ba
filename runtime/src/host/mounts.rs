//! The mounts the shim makes itself: a container's root filesystem (an
//! overlay of the image's layers under a private upper directory) and a
//! pod's /dev/shm (a tmpfs its containers share).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The kernel copies mount options into one page.
const MAX_MOUNT_DATA: usize = 4000;

/// Mounts an overlay at `target`; `lowers` are the image's layers, lowest
/// first.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> anyhow::Result<()> {
    anyhow::ensure!(!lowers.is_empty(), "an overlay needs at least one layer");
    // overlayfs wants the top-most lower directory first.
    let lowerdir: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    anyhow::ensure!(
        data.len() < MAX_MOUNT_DATA,
        "the image has too many layers ({}) for one overlay mount",
        lowers.len()
    );
    for dir in [upper, work, target] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .with_context(|| {
        format!(
            "mounting the overlay root filesystem at {} (upper dir on {}; overlayfs refuses \
             upper dirs on fuse-overlayfs: put --root on a volume or tmpfs)",
            target.display(),
            upper.display()
        )
    })
}

/// Mounts a tmpfs at `target` with `options` (e.g. "mode=1777,size=64m").
pub fn mount_tmpfs(target: &Path, options: &str) -> anyhow::Result<()> {
    fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    mount(
        Some("shm"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options),
    )
    .with_context(|| format!("mounting a tmpfs at {}", target.display()))
}

/// Unmounts `target` (lazily, so a process still inside cannot block it);
/// a path that is not mounted is fine.
pub fn unmount(target: &Path) -> anyhow::Result<()> {
    loop {
        match umount2(target, MntFlags::MNT_DETACH) {
            // Unmount again in case something was mounted twice there.
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("unmounting {}", target.display())),
        }
    }
}

/// Mount points at or below `prefix` in this mount namespace.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(prefix))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            match u8::from_str_radix(&code, 8) {
                Ok(b) => out.push(b as char),
                Err(_) => {
                    out.push('\\');
                    out.push_str(&code);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn the_root_is_mounted() {
        assert!(mounts_under(Path::new("/")).contains(&PathBuf::from("/")));
    }
}
