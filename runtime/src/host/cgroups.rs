//! The host's cgroup hierarchies: v1 controllers (these machines mount them
//! in hybrid mode, with cgroup2 at /sys/fs/cgroup/unified) or a pure v2
//! tree. runc creates and fills a container's cgroups from the bundle; the
//! shim reads the OOM-kill counter after an exit and removes the pod's
//! parent cgroup when the pod goes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Controllers on v1 hierarchies (legacy or hybrid).
    V1,
    /// One unified v2 tree at /sys/fs/cgroup.
    V2,
}

#[derive(Clone, Debug)]
pub struct Cgroups {
    pub version: CgroupVersion,
    /// Every mounted hierarchy (for v2, just the root).
    pub hierarchies: Vec<PathBuf>,
    /// Where the memory controller's files are (v1: its hierarchy).
    memory: PathBuf,
}

impl Cgroups {
    /// Reads the mounted hierarchies from /proc/self/mountinfo.
    pub fn detect() -> anyhow::Result<Cgroups> {
        let mountinfo =
            fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        let mut memory = None;
        for line in mountinfo.lines() {
            // "<id> <parent> <maj:min> <root> <mountpoint> <opts> ... - <fstype> <source> <superopts>"
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mountpoint = left.split(' ').nth(4).unwrap_or_default();
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let superopts = right.nth(1).unwrap_or_default();
            if !mountpoint.starts_with(CGROUP_ROOT) {
                continue;
            }
            match fstype {
                "cgroup" => {
                    if superopts.split(',').any(|o| o == "memory") {
                        memory = Some(PathBuf::from(mountpoint));
                    }
                    v1.push(PathBuf::from(mountpoint));
                }
                "cgroup2" => v2.push(PathBuf::from(mountpoint)),
                _ => {}
            }
        }
        if v1.is_empty() {
            let root = v2
                .into_iter()
                .find(|p| p == Path::new(CGROUP_ROOT))
                .context("no cgroup hierarchy is mounted under /sys/fs/cgroup")?;
            return Ok(Cgroups {
                version: CgroupVersion::V2,
                hierarchies: vec![root.clone()],
                memory: root,
            });
        }
        let memory = memory.context("cgroup v1 is mounted without the memory controller")?;
        // In hybrid mode the unified tree is also a hierarchy runc uses.
        v1.extend(v2);
        Ok(Cgroups {
            version: CgroupVersion::V1,
            hierarchies: v1,
            memory,
        })
    }

    /// How many times the kernel's OOM killer acted in the cgroup at
    /// `path` (a cgroupsPath as given to runc); None if it is unknown.
    pub fn oom_kills(&self, path: &str) -> Option<u64> {
        let dir = self.memory.join(path.trim_start_matches('/'));
        let (file, key) = match self.version {
            CgroupVersion::V1 => ("memory.oom_control", "oom_kill"),
            CgroupVersion::V2 => ("memory.events", "oom_kill"),
        };
        let text = fs::read_to_string(dir.join(file)).ok()?;
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    }

    /// Directories of the cgroup at `path` (a cgroupsPath) that exist in
    /// any hierarchy.
    pub fn existing(&self, path: &str) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.join(path.trim_start_matches('/')))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Removes the cgroup at `path` and every cgroup below it, in every
    /// hierarchy. Cgroups still holding processes cannot be removed; that is
    /// an error naming them.
    pub fn remove_tree(&self, path: &str) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        for dir in self.existing(path) {
            remove_dir_tree(&dir, &mut failed);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("could not remove cgroups: {}", failed.join("; "))
        }
    }
}

/// Children first: a cgroup directory can only be removed when it has no
/// child cgroups (its files are virtual and go with it).
fn remove_dir_tree(dir: &Path, failed: &mut Vec<String>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_dir_tree(&entry.path(), failed);
            }
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => failed.push(format!("{}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_memory_hierarchy() {
        // Every Linux host this runs on mounts cgroups somewhere.
        let cg = Cgroups::detect().unwrap();
        assert!(!cg.hierarchies.is_empty());
        assert!(cg.oom_kills("/no/such/rkube/cgroup").is_none());
    }
}
