//! Pod sandboxes: a pod's network namespace attached to the pod network,
//! its /etc/hosts, /etc/hostname, /etc/resolv.conf and /dev/shm, and the
//! pause process that holds the namespaces its containers join. Everything
//! a sandbox makes is undone by StopPodSandbox (processes, network) and
//! RemovePodSandbox (containers, cgroups, mounts, files); a RunPodSandbox
//! that fails half-way undoes what it did before answering.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::host::{mounts, netns};
use crate::network::pod_network::NetworkAttachment;
use crate::oci::bundle::{pause_spec, Namespace, PauseSpec};
use crate::oci::task::{Task, TaskStatus};
use crate::proto::{
    NamespaceMode, PodIp, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxNetworkStatus,
    PodSandboxState, PodSandboxStatus,
};
use crate::records;
use crate::runtime::Runtime;

/// How long a killed process may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A sandbox as kept on disk (`sandboxes/<id>/sandbox.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub created_at: i64,
    pub hostname: String,
    /// The pod's network namespace while it exists.
    pub netns: Option<PathBuf>,
    /// The pod network's answer while attached.
    pub network: Option<NetworkAttachment>,
    /// StopPodSandbox was called.
    pub stopped: bool,
    /// The pod's cgroup (parent of its containers' cgroups).
    pub cgroup: String,
}

pub struct SandboxEntry {
    pub id: String,
    pub dir: PathBuf,
    pub pause: Task,
    record: Mutex<SandboxRecord>,
    /// Container verbs hold it shared; stopping and removing the sandbox
    /// hold it alone.
    pub op: tokio::sync::RwLock<()>,
}

impl SandboxEntry {
    pub fn new(record: SandboxRecord, dir: PathBuf) -> SandboxEntry {
        SandboxEntry {
            id: record.id.clone(),
            pause: Task::new(&record.id, dir.join("pause")),
            dir,
            record: Mutex::new(record),
            op: tokio::sync::RwLock::new(()),
        }
    }

    pub fn record(&self) -> SandboxRecord {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the sandbox's labels match `selector` (without copying the
    /// record).
    fn matches(&self, selector: &HashMap<String, String>) -> bool {
        let rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        labels_match(&rec.config.labels, selector)
    }

    fn update(&self, change: impl FnOnce(&mut SandboxRecord)) -> anyhow::Result<()> {
        let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut rec);
        records::write(&self.dir.join("sandbox.json"), &*rec)
    }

    pub fn is_ready(&self) -> bool {
        !self.record().stopped && self.pause.is_running()
    }

    /// Why the sandbox is not ready (empty when it is).
    pub fn not_ready_reason(&self) -> String {
        if self.record().stopped {
            return "the sandbox was stopped".into();
        }
        match self.pause.status() {
            TaskStatus::Running(_) => String::new(),
            TaskStatus::Created => "the pause process has not started".into(),
            TaskStatus::Exited(e) => format!(
                "the pause process exited ({}, code {}{})",
                e.reason,
                e.exit_code,
                if e.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.message)
                }
            ),
        }
    }

    pub fn pause_pid(&self) -> Option<i32> {
        match self.pause.status() {
            TaskStatus::Running(s) => Some(s.process.pid),
            _ => None,
        }
    }

    fn mode(&self, pick: impl Fn(&crate::proto::NamespaceOption) -> i32) -> NamespaceMode {
        let rec = self.record();
        let opts = rec.config.namespace_options.unwrap_or_default();
        NamespaceMode::try_from(pick(&opts)).unwrap_or(NamespaceMode::Pod)
    }

    pub fn host_network(&self) -> bool {
        self.mode(|o| o.network) == NamespaceMode::Node
    }

    pub fn host_ipc(&self) -> bool {
        self.mode(|o| o.ipc) == NamespaceMode::Node
    }

    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    pub fn hostname_file(&self) -> PathBuf {
        self.dir.join("hostname")
    }

    pub fn resolv_file(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    pub fn shm_dir(&self) -> PathBuf {
        self.dir.join("shm")
    }

    fn to_list_item(&self) -> PodSandbox {
        let rec = self.record();
        PodSandbox {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: self.state() as i32,
            created_at: rec.created_at,
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        }
    }

    fn state(&self) -> PodSandboxState {
        if self.is_ready() {
            PodSandboxState::SandboxReady
        } else {
            PodSandboxState::SandboxNotready
        }
    }
}

impl Runtime {
    #[tracing::instrument(skip_all, fields(pod = tracing::field::Empty, sandbox = tracing::field::Empty))]
    pub async fn run_pod_sandbox(&self, config: Option<PodSandboxConfig>) -> Result<String> {
        let config = config.ok_or_else(|| RuntimeError::invalid("config is required"))?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| RuntimeError::invalid("config.metadata is required"))?;
        if meta.name.is_empty() {
            return Err(RuntimeError::invalid("config.metadata.name is required"));
        }
        tracing::Span::current().record("pod", format!("{}/{}", meta.namespace, meta.name));
        let host_network = config
            .namespace_options
            .as_ref()
            .map(|o| o.network == NamespaceMode::Node as i32)
            .unwrap_or(false);
        if !host_network {
            if let Some(reason) = self.network.not_ready_reason() {
                return Err(RuntimeError::Unavailable(format!(
                    "pod network not ready: {reason}"
                )));
            }
        }
        let hostname = pod_hostname(if config.hostname.is_empty() {
            &meta.name
        } else {
            &config.hostname
        });
        let id = records::new_id();
        tracing::Span::current().record("sandbox", &id[..12]);
        let dir = self.sandbox_dir(&id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let record = SandboxRecord {
            id: id.clone(),
            config,
            created_at: records::now_nanos(),
            hostname,
            netns: None,
            network: None,
            stopped: false,
            cgroup: format!("{}/{}", self.opts.cgroup_parent.trim_end_matches('/'), id),
        };
        records::write(&dir.join("sandbox.json"), &record)?;
        let entry = Arc::new(SandboxEntry::new(record, dir));
        self.insert_sandbox(entry.clone());
        let guard = entry.op.write().await;
        match self.set_up_sandbox(&entry).await {
            Ok(()) => {
                tracing::info!(ip = %entry.record().network.map(|n| n.ip).unwrap_or_default(), "sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!("sandbox failed, undoing: {e:#}");
                if let Err(undo) = self.remove_sandbox_locked(&entry).await {
                    tracing::error!("undoing a failed sandbox left something behind: {undo:#}");
                }
                drop(guard);
                Err(e)
            }
        }
    }

    async fn set_up_sandbox(&self, entry: &SandboxEntry) -> Result<()> {
        let rec = entry.record();
        let meta = rec.config.metadata.clone().unwrap_or_default();
        let host_network = entry.host_network();
        let mut network_ns = Namespace::Host;
        if !host_network {
            let name = format!("{}{}", self.opts.netns_prefix, &rec.id[..12]);
            let path = netns::create(&name).context("creating the pod's network namespace")?;
            entry.update(|r| r.netns = Some(path.clone()))?;
            let attached = self
                .network
                .attach(&rec.id, &path, &meta, &rec.config.port_mappings)
                .await
                .context("attaching the pod network")?;
            entry.update(|r| r.network = Some(attached))?;
            network_ns = Namespace::Join(path);
        }
        self.write_pod_files(entry)?;
        if !entry.host_ipc() {
            mounts::mount_tmpfs(&entry.shm_dir(), "mode=1777,size=65536k")?;
        }
        let private = |host: bool| {
            if host {
                Namespace::Host
            } else {
                Namespace::New
            }
        };
        let spec = pause_spec(&PauseSpec {
            rootfs: &self.pause_rootfs,
            hostname: &rec.hostname,
            network: network_ns,
            ipc: private(entry.host_ipc()),
            // A host-network pod also has the node's hostname.
            uts: private(host_network),
            cgroup: format!("{}/pause", rec.cgroup),
        })?;
        fs::create_dir_all(entry.pause.bundle()).context("creating the pause bundle")?;
        spec.save(entry.pause.bundle().join("config.json"))
            .context("writing the pause bundle")?;
        let (_, monitor) = entry
            .pause
            .start(&self.runc, None, &format!("{}/pause", rec.cgroup))
            .await
            .context("starting the pause process")?;
        self.reap(monitor);
        Ok(())
    }

    /// Waits for a monitor this shim started, so it never lingers as a
    /// zombie, and has the event watcher look at once.
    pub(crate) fn reap(&self, mut monitor: tokio::process::Child) {
        let wake = self.events.waker();
        tokio::spawn(async move {
            let _ = monitor.wait().await;
            wake.notify_one();
        });
    }

    /// /etc/hostname, /etc/hosts and /etc/resolv.conf of the pod.
    fn write_pod_files(&self, entry: &SandboxEntry) -> anyhow::Result<()> {
        let rec = entry.record();
        let cfg = &rec.config;
        fs::write(entry.hostname_file(), format!("{}\n", rec.hostname))?;
        let mut hosts = String::new();
        if entry.host_network() {
            hosts.push_str(&fs::read_to_string("/etc/hosts").unwrap_or_default());
        } else {
            hosts.push_str("# Kubernetes-managed hosts file (rkube).\n");
            hosts.push_str("127.0.0.1\tlocalhost\n");
            hosts.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
            hosts.push_str("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\n");
            hosts.push_str("fe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
            if let Some(net) = &rec.network {
                let mut names = Vec::new();
                if !cfg.subdomain.is_empty() && !cfg.cluster_domain.is_empty() {
                    let ns = cfg
                        .metadata
                        .as_ref()
                        .map(|m| m.namespace.as_str())
                        .unwrap_or("default");
                    names.push(format!(
                        "{}.{}.{}.svc.{}",
                        rec.hostname, cfg.subdomain, ns, cfg.cluster_domain
                    ));
                }
                names.push(rec.hostname.clone());
                hosts.push_str(&format!("{}\t{}\n", net.ip, names.join(" ")));
            }
        }
        if !cfg.host_aliases.is_empty() {
            hosts.push_str("\n# Entries added by HostAliases.\n");
            for alias in &cfg.host_aliases {
                hosts.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
            }
        }
        fs::write(entry.hosts_file(), hosts)?;
        let resolv = match &cfg.dns_config {
            Some(dns) if !entry.host_network() || !dns.servers.is_empty() => {
                let mut s = String::new();
                for server in &dns.servers {
                    s.push_str(&format!("nameserver {server}\n"));
                }
                if !dns.searches.is_empty() {
                    s.push_str(&format!("search {}\n", dns.searches.join(" ")));
                }
                if !dns.options.is_empty() {
                    s.push_str(&format!("options {}\n", dns.options.join(" ")));
                }
                s
            }
            _ => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        fs::write(entry.resolv_file(), resolv)?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let entry = match self.sandbox(id) {
            Ok(e) => e,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _guard = entry.op.write().await;
        self.stop_sandbox_locked(&entry).await
    }

    async fn stop_sandbox_locked(&self, entry: &SandboxEntry) -> Result<()> {
        for c in self.containers_of(&entry.id) {
            c.task.kill(&self.runc, KILL_WAIT).await?;
        }
        entry.pause.kill(&self.runc, KILL_WAIT).await?;
        let rec = entry.record();
        if let Some(net) = &rec.network {
            let meta = rec.config.metadata.clone().unwrap_or_default();
            self.network
                .detach(
                    &rec.id,
                    rec.netns.as_deref(),
                    &meta,
                    &rec.config.port_mappings,
                    Some(&net.result),
                )
                .await
                .context("detaching the pod network")?;
            entry.update(|r| r.network = None)?;
        }
        if let Some(path) = &rec.netns {
            netns::remove(path)?;
            entry.update(|r| r.netns = None)?;
        }
        entry.update(|r| r.stopped = true)?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let entry = match self.sandbox(id) {
            Ok(e) => e,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _guard = entry.op.write().await;
        self.remove_sandbox_locked(&entry).await
    }

    async fn remove_sandbox_locked(&self, entry: &SandboxEntry) -> Result<()> {
        for c in self.containers_of(&entry.id) {
            self.remove_container_entry(&c).await?;
        }
        self.stop_sandbox_locked(entry).await?;
        entry.pause.delete(&self.runc).await?;
        mounts::unmount(&entry.shm_dir())?;
        let rec = entry.record();
        self.cgroups.remove_tree(&rec.cgroup)?;
        match fs::remove_dir_all(&entry.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("removing {}", entry.dir.display()))
                    .into())
            }
        }
        self.forget_sandbox(&entry.id);
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(PodSandboxStatus, HashMap<String, String>)> {
        let entry = self.sandbox(id)?;
        let rec = entry.record();
        let mut info = HashMap::new();
        if verbose {
            if let (Some(net), Some(path)) = (&rec.network, &rec.netns) {
                info.insert("cniResult".into(), net.result.to_string());
                let meta = rec.config.metadata.clone().unwrap_or_default();
                let check = self
                    .network
                    .check(&rec.id, path, &meta, &rec.config.port_mappings, &net.result)
                    .await;
                info.insert(
                    "cniCheck".into(),
                    match check {
                        Ok(()) => "ok".into(),
                        Err(e) => format!("{e:#}"),
                    },
                );
            }
        }
        let network = rec.network.as_ref().map(|n| PodSandboxNetworkStatus {
            ip: n.ip.clone(),
            additional_ips: n
                .additional_ips
                .iter()
                .map(|ip| PodIp { ip: ip.clone() })
                .collect(),
        });
        let status = PodSandboxStatus {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: entry.state() as i32,
            created_at: rec.created_at,
            network: Some(network.unwrap_or_default()),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
            netns_path: rec
                .netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            pause_pid: entry.pause_pid().unwrap_or(0),
            hostname: rec.hostname.clone(),
            reason: entry.not_ready_reason(),
        };
        Ok((status, info))
    }

    pub fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
        let filter = filter.unwrap_or_default();
        let mut items: Vec<PodSandbox> = self
            .all_sandboxes()
            .iter()
            .filter(|s| filter.id.is_empty() || s.id.starts_with(&filter.id))
            // Labels first: a sandbox's state costs file reads and /proc
            // checks, and the kubelet lists by pod label all the time.
            .filter(|s| s.matches(&filter.label_selector))
            .map(|s| s.to_list_item())
            .filter(|s| filter.state.as_ref().is_none_or(|st| st.state == s.state))
            .collect();
        items.sort_by_key(|s| s.created_at);
        items
    }
}

pub fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A hostname the kernel and resolvers accept: at most 63 characters, as
/// the kubelet truncates pod names, without a trailing '-' or '.'.
fn pod_hostname(name: &str) -> String {
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with('-') || h.ends_with('.') {
        h.pop();
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_truncated_like_the_kubelet() {
        assert_eq!(pod_hostname("nginx-pod"), "nginx-pod");
        let long = format!("{}-{}", "a".repeat(62), "b");
        assert_eq!(pod_hostname(&long), "a".repeat(62));
    }

    #[test]
    fn label_selectors_need_every_pair() {
        let labels: HashMap<String, String> = [
            ("app".to_string(), "nginx".to_string()),
            ("tier".into(), "dev".into()),
        ]
        .into();
        assert!(labels_match(&labels, &HashMap::new()));
        assert!(labels_match(
            &labels,
            &[("app".to_string(), "nginx".to_string())].into()
        ));
        assert!(!labels_match(
            &labels,
            &[("app".to_string(), "web".to_string())].into()
        ));
    }
}
