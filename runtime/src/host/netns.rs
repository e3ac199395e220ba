//! Named network namespaces, as `ip netns` makes them: a bind mount of a
//! namespace onto a file under /run/netns, which keeps the namespace alive
//! without any process in it. The pod's namespace exists before its pause
//! process so the network can be attached first and outlive restarts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

pub const NETNS_DIR: &str = "/run/netns";

/// Creates the named network namespace `name` and returns its path.
pub fn create(name: &str) -> anyhow::Result<PathBuf> {
    prepare_dir()?;
    let path = Path::new(NETNS_DIR).join(name);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    // unshare() changes only the calling thread's namespace, so a thread of
    // its own makes the namespace and bind-mounts it, then ends.
    let target = path.clone();
    let made = std::thread::spawn(move || -> anyhow::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        mount(
            Some(own.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {own} on {}", target.display()))
    })
    .join()
    .map_err(|_| anyhow!("the thread creating netns {name} panicked"))?;
    if let Err(e) = made {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Removes a named network namespace; a missing one is not an error.
pub fn remove(path: &Path) -> anyhow::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e).with_context(|| format!("unmounting {}", path.display())),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Names under /run/netns that start with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Makes /run/netns a shared mount point (once per process), as iproute2
/// does, so that unmounting a namespace there also unmounts the copies that
/// other mount namespaces made of it, and the namespace can go away.
fn prepare_dir() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = Path::new(NETNS_DIR);
        fs::create_dir_all(dir).map_err(|e| format!("creating {NETNS_DIR}: {e}"))?;
        let share = || {
            mount(
                None::<&str>,
                dir,
                Some("none"),
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
        };
        match share() {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EINVAL) => {
                mount(
                    Some(dir),
                    dir,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| format!("bind-mounting {NETNS_DIR} on itself: {e}"))?;
                share().map_err(|e| format!("making {NETNS_DIR} shared: {e}"))
            }
            Err(e) => Err(format!("making {NETNS_DIR} shared: {e}")),
        }
    })
    .clone()
    .map_err(|e| anyhow!(e))
}
