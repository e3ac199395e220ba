//! The runtime: everything a node runs, as one value the gRPC services call
//! into — the image store, the pod network, runc, and the sandboxes and
//! containers this shim knows (re-read from disk at start, so containers
//! started by an earlier shim are adopted, not restarted). The verbs live
//! beside it: `sandbox.rs`, `container.rs`, `exec.rs`, `image_verbs.rs`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::container::{ContainerEntry, ContainerRecord};
use crate::error::{Result, RuntimeError};
use crate::events::{self, Events};
use crate::host::cgroups::Cgroups;
use crate::images::store::ImageStore;
use crate::network::pod_network::{PodNetwork, PodNetworkOptions};
use crate::oci::runc::Runc;
use crate::options::ShimOptions;
use crate::proto;
use crate::records;
use crate::sandbox::{SandboxEntry, SandboxRecord};

pub const RUNTIME_NAME: &str = "rkube-runtime";
pub const API_VERSION: &str = "rkube.runtime.v1";

pub struct Runtime {
    pub opts: ShimOptions,
    pub images: Arc<ImageStore>,
    pub network: PodNetwork,
    pub runc: Runc,
    pub cgroups: Cgroups,
    /// The pause process's root filesystem.
    pub pause_rootfs: PathBuf,
    pub events: Events,
    sandboxes: Mutex<HashMap<String, Arc<SandboxEntry>>>,
    containers: Mutex<HashMap<String, Arc<ContainerEntry>>>,
}

impl Runtime {
    /// Opens the state under `--root`, adopting the sandboxes and containers
    /// found there, and starts the event watcher.
    pub async fn open(opts: ShimOptions) -> anyhow::Result<Arc<Runtime>> {
        let root = opts.root.clone();
        for dir in ["sandboxes", "containers", "tmp"] {
            fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating {}", root.join(dir).display()))?;
        }
        fs::create_dir_all(&opts.runc_root)
            .with_context(|| format!("creating {}", opts.runc_root.display()))?;
        let runc_binary = which(&opts.runc)
            .with_context(|| format!("{} not found (install runc)", opts.runc.display()))?;
        let cgroups = Cgroups::detect()?;
        let images = Arc::new(ImageStore::open(&root.join("images"))?);
        let network = PodNetwork::new(
            PodNetworkOptions {
                bin_dirs: opts.cni_bin_dirs.clone(),
                bridge: opts.bridge.clone(),
                network_name: opts.network_name.clone(),
                ipam_data_dir: opts.cni_data_dir.clone(),
                state_file: root.join("network.json"),
            },
            opts.pod_cidr.as_deref(),
        )?;
        let pause_rootfs = crate::pause::install(&root.join("pause"))?;
        let rt = Arc::new(Runtime {
            runc: Runc {
                binary: runc_binary,
                root: opts.runc_root.clone(),
            },
            opts,
            images,
            network,
            cgroups,
            pause_rootfs,
            events: Events::default(),
            sandboxes: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashMap::new()),
        });
        rt.adopt()?;
        tokio::spawn(events::watch(Arc::downgrade(&rt)));
        Ok(rt)
    }

    /// Reads every sandbox and container record under --root.
    fn adopt(&self) -> anyhow::Result<()> {
        for dir in subdirs(&self.opts.root.join("sandboxes"))? {
            match records::read::<SandboxRecord>(&dir.join("sandbox.json")) {
                Ok(Some(rec)) => {
                    let entry = SandboxEntry::new(rec, dir);
                    tracing::info!(sandbox = %entry.id, ready = entry.is_ready(), "adopted sandbox");
                    self.lock_sandboxes()
                        .insert(entry.id.clone(), Arc::new(entry));
                }
                Ok(None) => {
                    tracing::warn!("removing {}: no sandbox record", dir.display());
                    let _ = fs::remove_dir_all(&dir);
                }
                Err(e) => tracing::warn!("skipping {}: {e:#}", dir.display()),
            }
        }
        for dir in subdirs(&self.opts.root.join("containers"))? {
            match records::read::<ContainerRecord>(&dir.join("container.json")) {
                Ok(Some(rec)) => {
                    let entry = ContainerEntry::new(rec, dir);
                    tracing::info!(container = %entry.id, running = entry.task.is_running(), "adopted container");
                    self.lock_containers()
                        .insert(entry.id.clone(), Arc::new(entry));
                }
                Ok(None) => {
                    // Created no further than its directory; nothing else
                    // (mount, runc state) exists without the record.
                    let _ = crate::host::mounts::unmount(&dir.join("bundle/rootfs"));
                    let _ = fs::remove_dir_all(&dir);
                }
                Err(e) => tracing::warn!("skipping {}: {e:#}", dir.display()),
            }
        }
        Ok(())
    }

    fn lock_sandboxes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SandboxEntry>>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ContainerEntry>>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn all_sandboxes(&self) -> Vec<Arc<SandboxEntry>> {
        self.lock_sandboxes().values().cloned().collect()
    }

    pub fn all_containers(&self) -> Vec<Arc<ContainerEntry>> {
        self.lock_containers().values().cloned().collect()
    }

    pub fn containers_of(&self, sandbox_id: &str) -> Vec<Arc<ContainerEntry>> {
        self.lock_containers()
            .values()
            .filter(|c| c.record.sandbox_id == sandbox_id)
            .cloned()
            .collect()
    }

    pub(crate) fn insert_sandbox(&self, entry: Arc<SandboxEntry>) {
        self.lock_sandboxes().insert(entry.id.clone(), entry);
    }

    pub(crate) fn forget_sandbox(&self, id: &str) {
        self.lock_sandboxes().remove(id);
    }

    pub(crate) fn insert_container(&self, entry: Arc<ContainerEntry>) {
        self.lock_containers().insert(entry.id.clone(), entry);
    }

    pub(crate) fn forget_container(&self, id: &str) {
        self.lock_containers().remove(id);
    }

    /// The sandbox with this id (or unique id prefix of 6+ characters).
    pub fn sandbox(&self, id: &str) -> Result<Arc<SandboxEntry>> {
        find(&self.lock_sandboxes(), id, "pod sandbox")
    }

    /// The container with this id (or unique id prefix of 6+ characters).
    pub fn container(&self, id: &str) -> Result<Arc<ContainerEntry>> {
        find(&self.lock_containers(), id, "container")
    }

    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.opts.root.join("sandboxes").join(id)
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.opts.root.join("containers").join(id)
    }

    /// RuntimeReady and NetworkReady.
    pub fn conditions(&self) -> Vec<proto::RuntimeCondition> {
        let runtime_problem = if !self.runc.binary.is_file() {
            Some(format!("{} is gone", self.runc.binary.display()))
        } else {
            None
        };
        let network_problem = self.network.not_ready_reason();
        let condition =
            |kind: &str, problem: Option<String>, reason: &str| proto::RuntimeCondition {
                r#type: kind.into(),
                status: problem.is_none(),
                reason: if problem.is_some() {
                    reason.into()
                } else {
                    String::new()
                },
                message: problem.unwrap_or_default(),
            };
        vec![
            condition("RuntimeReady", runtime_problem, "RuntimeNotReady"),
            condition("NetworkReady", network_problem, "NetworkPluginNotReady"),
        ]
    }
}

fn find<T: Clone>(map: &HashMap<String, T>, id: &str, what: &str) -> Result<T> {
    if id.is_empty() {
        return Err(RuntimeError::invalid(format!("no {what} id given")));
    }
    if let Some(v) = map.get(id) {
        return Ok(v.clone());
    }
    if id.len() >= 6 {
        let mut hits = map.iter().filter(|(k, _)| k.starts_with(id));
        if let Some((_, v)) = hits.next() {
            if hits.next().is_some() {
                return Err(RuntimeError::invalid(format!(
                    "{what} id prefix {id} is ambiguous"
                )));
            }
            return Ok(v.clone());
        }
    }
    Err(RuntimeError::not_found(format!("{what} {id} not found")))
}

fn subdirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// `name` if it is a path, else the first match in PATH.
fn which(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_id_or_unique_prefix() {
        let mut map = HashMap::new();
        map.insert("abcdef0001".to_string(), 1);
        map.insert("abcdef0002".to_string(), 2);
        assert_eq!(find(&map, "abcdef0002", "x").unwrap(), 2);
        assert!(matches!(
            find(&map, "abcdef", "x"),
            Err(RuntimeError::InvalidArgument(_))
        ));
        assert_eq!(find(&map, "abcdef00010", "x").ok(), None);
        assert!(matches!(
            find(&map, "abc", "x"),
            Err(RuntimeError::NotFound(_))
        ));
        assert!(matches!(
            find(&map, "", "x"),
            Err(RuntimeError::InvalidArgument(_))
        ));
    }
}
