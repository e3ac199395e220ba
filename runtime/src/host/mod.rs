//! What the shim asks of the Linux host directly (not through runc or a CNI
//! plugin): network namespaces, cgroup hierarchies, mounts, processes.

pub mod cgroups;
pub mod mounts;
pub mod netns;
pub mod procs;
