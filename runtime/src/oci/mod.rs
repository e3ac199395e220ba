//! Running OCI bundles: the runc command line, bundle specs, the per-task
//! monitor process that owns a container's lifetime, and the CRI log format.

pub mod bundle;
pub mod cri_log;
pub mod exec_monitor;
pub mod monitor;
pub mod runc;
pub mod task;
