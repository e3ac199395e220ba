//! Containers of a pod: created from an image as an OCI bundle whose root
//! filesystem is an overlay of the image's layers, joining the pause
//! process's namespaces; started, stopped (stop signal, grace period,
//! SIGKILL) and removed through runc and the task's monitor.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::host::mounts;
use crate::images::store::{ImageDefaults, ImageRecord};
use crate::oci::bundle::{container_spec, BindMount, ContainerSpec, Namespace};
use crate::oci::task::{Task, TaskStatus};
use crate::proto::{
    Container, ContainerConfig, ContainerEventType, ContainerFilter, ContainerMetadata,
    ContainerState, ContainerStatus, ImageSpec,
};
use crate::records;
use crate::runtime::Runtime;
use crate::sandbox::{labels_match, SandboxEntry};
use crate::users;

const KILL_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A container as kept on disk (`containers/<id>/container.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    /// The image as asked for, and what it resolved to.
    pub image: String,
    pub image_id: String,
    pub diff_ids: Vec<String>,
    pub created_at: i64,
    pub log_path: PathBuf,
    pub cgroup: String,
    /// The signal StopContainer sends first (the image's StopSignal).
    pub stop_signal: String,
}

pub struct ContainerEntry {
    pub id: String,
    pub dir: PathBuf,
    pub record: ContainerRecord,
    pub task: Task,
    /// One lifecycle verb at a time per container.
    pub op: tokio::sync::Mutex<()>,
}

impl ContainerEntry {
    pub fn new(record: ContainerRecord, dir: PathBuf) -> ContainerEntry {
        ContainerEntry {
            id: record.id.clone(),
            task: Task::new(&record.id, dir.clone()),
            dir,
            record,
            op: tokio::sync::Mutex::new(()),
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.task.bundle().join("rootfs")
    }

    pub fn name(&self) -> &str {
        self.record
            .config
            .metadata
            .as_ref()
            .map(|m| m.name.as_str())
            .unwrap_or_default()
    }

    fn metadata(&self) -> ContainerMetadata {
        self.record.config.metadata.clone().unwrap_or_default()
    }

    pub fn state(&self) -> ContainerState {
        match self.task.status() {
            TaskStatus::Created => ContainerState::ContainerCreated,
            TaskStatus::Running(_) => ContainerState::ContainerRunning,
            TaskStatus::Exited(_) => ContainerState::ContainerExited,
        }
    }

    pub fn status(&self) -> ContainerStatus {
        let r = &self.record;
        let mut s = ContainerStatus {
            id: r.id.clone(),
            metadata: Some(self.metadata()),
            created_at: r.created_at,
            image: Some(ImageSpec {
                image: r.image.clone(),
            }),
            image_ref: r.image_id.clone(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            mounts: r.config.mounts.clone(),
            log_path: r.log_path.display().to_string(),
            pod_sandbox_id: r.sandbox_id.clone(),
            ..Default::default()
        };
        match self.task.status() {
            TaskStatus::Created => s.state = ContainerState::ContainerCreated as i32,
            TaskStatus::Running(started) => {
                s.state = ContainerState::ContainerRunning as i32;
                s.started_at = started.started_at;
                s.pid = started.process.pid;
            }
            TaskStatus::Exited(exit) => {
                s.state = ContainerState::ContainerExited as i32;
                s.started_at = exit.started_at;
                s.finished_at = exit.finished_at;
                s.exit_code = exit.exit_code;
                s.reason = exit.reason;
                s.message = exit.message;
            }
        }
        s
    }

    fn to_list_item(&self) -> Container {
        let r = &self.record;
        Container {
            id: r.id.clone(),
            pod_sandbox_id: r.sandbox_id.clone(),
            metadata: Some(self.metadata()),
            image: Some(ImageSpec {
                image: r.image.clone(),
            }),
            image_ref: r.image_id.clone(),
            state: self.state() as i32,
            created_at: r.created_at,
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
        }
    }
}

impl Runtime {
    #[tracing::instrument(skip_all, fields(sandbox = %sandbox_id.get(..12).unwrap_or(sandbox_id), container = tracing::field::Empty))]
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: Option<ContainerConfig>,
    ) -> Result<String> {
        let config = config.ok_or_else(|| RuntimeError::invalid("config is required"))?;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| RuntimeError::invalid("config.metadata is required"))?;
        if meta.name.is_empty() {
            return Err(RuntimeError::invalid("config.metadata.name is required"));
        }
        tracing::Span::current().record("container", meta.name.as_str());
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(RuntimeError::invalid("config.image is required"));
        }
        let sandbox = self.sandbox(sandbox_id)?;
        let _sandbox_guard = sandbox.op.read().await;
        if !sandbox.is_ready() {
            return Err(RuntimeError::precondition(format!(
                "pod sandbox {} is not ready: {}",
                sandbox.id,
                sandbox.not_ready_reason()
            )));
        }
        if let Some(other) = self
            .containers_of(&sandbox.id)
            .into_iter()
            .find(|c| c.name() == meta.name && c.metadata().attempt == meta.attempt)
        {
            return Err(RuntimeError::AlreadyExists(format!(
                "the pod already has a container {:?} (attempt {}): {}",
                meta.name, meta.attempt, other.id
            )));
        }
        let image = self.images.resolve(&image_name).ok_or_else(|| {
            RuntimeError::not_found(format!(
                "image {image_name:?} is not present on this node: pull or load it first"
            ))
        })?;
        let id = records::new_id();
        let dir = self.container_dir(&id);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log_path = match (&sandbox.record().config.log_directory, &config.log_path) {
            (d, p) if !d.is_empty() && !p.is_empty() => Path::new(d).join(p),
            _ => dir.join("container.log"),
        };
        let defaults = image.defaults();
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            image: image_name,
            image_id: image.id.clone(),
            diff_ids: image.diff_ids.clone(),
            created_at: records::now_nanos(),
            log_path,
            cgroup: format!("{}/{}", sandbox.record().cgroup, id),
            stop_signal: if defaults.stop_signal.is_empty() {
                "SIGTERM".into()
            } else {
                defaults.stop_signal.clone()
            },
            config,
        };
        let entry = ContainerEntry::new(record, dir);
        if let Err(e) = self.prepare_bundle(&entry, &sandbox, &image, &defaults) {
            let _ = mounts::unmount(&entry.rootfs());
            let _ = fs::remove_dir_all(&entry.dir);
            return Err(e);
        }
        // The record is the commit point: without it, a restart discards
        // the directory.
        records::write(&entry.dir.join("container.json"), &entry.record)?;
        self.insert_container(Arc::new(entry));
        self.events
            .send(&id, &sandbox.id, ContainerEventType::ContainerCreatedEvent);
        Ok(id)
    }

    /// Mounts the root filesystem and writes config.json.
    fn prepare_bundle(
        &self,
        c: &ContainerEntry,
        sandbox: &SandboxEntry,
        image: &ImageRecord,
        defaults: &ImageDefaults,
    ) -> Result<()> {
        let cfg = &c.record.config;
        let lowers = self.images.layer_dirs(image)?;
        mounts::mount_overlay(
            &lowers,
            &c.dir.join("upper"),
            &c.dir.join("work"),
            &c.rootfs(),
        )?;
        let args = command_line(&cfg.command, &cfg.args, defaults)?;
        let sandbox_rec = sandbox.record();
        let env = environment(&defaults.env, cfg, &sandbox_rec.hostname);
        let cwd = if !cfg.working_dir.is_empty() {
            cfg.working_dir.clone()
        } else if !defaults.working_dir.is_empty() {
            defaults.working_dir.clone()
        } else {
            "/".to_string()
        };
        if !cwd.starts_with('/') {
            return Err(RuntimeError::invalid(format!(
                "working directory {cwd:?} is not absolute"
            )));
        }
        let linux = cfg.linux.clone().unwrap_or_default();
        let security = linux.security_context.clone().unwrap_or_default();
        let user = users::resolve(&c.rootfs(), Some(&security), &defaults.user)?;
        let mut binds = vec![
            BindMount {
                source: sandbox.hosts_file(),
                destination: "/etc/hosts".into(),
                readonly: false,
            },
            BindMount {
                source: sandbox.hostname_file(),
                destination: "/etc/hostname".into(),
                readonly: false,
            },
            BindMount {
                source: sandbox.resolv_file(),
                destination: "/etc/resolv.conf".into(),
                readonly: false,
            },
        ];
        for m in &cfg.mounts {
            if !m.container_path.starts_with('/') {
                return Err(RuntimeError::invalid(format!(
                    "mount destination {:?} is not absolute",
                    m.container_path
                )));
            }
            if !Path::new(&m.host_path).exists() {
                return Err(RuntimeError::invalid(format!(
                    "mount source {:?} does not exist on the node",
                    m.host_path
                )));
            }
            binds.push(BindMount {
                source: PathBuf::from(&m.host_path),
                destination: m.container_path.clone(),
                readonly: m.readonly,
            });
        }
        let pause_pid = sandbox.pause_pid().ok_or_else(|| {
            RuntimeError::precondition(format!("pod sandbox {} has no pause process", sandbox.id))
        })?;
        let pause_ns =
            |kind: &str| Namespace::Join(PathBuf::from(format!("/proc/{pause_pid}/ns/{kind}")));
        let network = match &sandbox_rec.netns {
            Some(path) => Namespace::Join(path.clone()),
            None => Namespace::Host,
        };
        let host_network = sandbox.host_network();
        let spec = container_spec(&ContainerSpec {
            args,
            env,
            cwd,
            user,
            rootfs: &c.rootfs(),
            readonly_rootfs: security.readonly_rootfs,
            shm: (!sandbox.host_ipc()).then(|| sandbox.shm_dir()).as_deref(),
            binds,
            network,
            ipc: if sandbox.host_ipc() {
                Namespace::Host
            } else {
                pause_ns("ipc")
            },
            uts: if host_network {
                Namespace::Host
            } else {
                pause_ns("uts")
            },
            cgroup: c.record.cgroup.clone(),
            resources: linux.resources.as_ref(),
            add_capabilities: &security
                .capabilities
                .clone()
                .unwrap_or_default()
                .add_capabilities,
            drop_capabilities: &security
                .capabilities
                .clone()
                .unwrap_or_default()
                .drop_capabilities,
            privileged: security.privileged,
            no_new_privileges: security.no_new_privs,
        })?;
        spec.save(c.task.bundle().join("config.json"))
            .context("writing the container's config.json")?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let c = self.container(id)?;
        let sandbox = self.sandbox(&c.record.sandbox_id)?;
        let _sandbox_guard = sandbox.op.read().await;
        let _guard = c.op.lock().await;
        match c.task.status() {
            TaskStatus::Created => {}
            TaskStatus::Running(_) => {
                return Err(RuntimeError::precondition(format!(
                    "container {} is already running",
                    c.id
                )))
            }
            TaskStatus::Exited(_) => {
                return Err(RuntimeError::precondition(format!(
                    "container {} has already run; create a new one",
                    c.id
                )))
            }
        }
        if !sandbox.is_ready() {
            return Err(RuntimeError::precondition(format!(
                "pod sandbox {} is not ready: {}",
                sandbox.id,
                sandbox.not_ready_reason()
            )));
        }
        match c
            .task
            .start(&self.runc, Some(&c.record.log_path), &c.record.cgroup)
            .await
        {
            Ok((_, monitor)) => {
                self.reap(monitor);
                self.events.wake();
                Ok(())
            }
            Err(e) => {
                self.events.wake();
                Err(RuntimeError::internal(format!(
                    "starting container {} ({}): {e:#}",
                    c.name(),
                    c.id
                )))
            }
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let c = self.container(id)?;
        let _guard = c.op.lock().await;
        if !c.task.is_running() {
            return Ok(());
        }
        if timeout > 0 {
            let signal = c.record.stop_signal.trim_start_matches("SIG").to_string();
            c.task.signal(&self.runc, &signal).await?;
            let deadline = Instant::now() + Duration::from_secs(timeout as u64);
            if c.task.wait_exited(deadline).await {
                return Ok(());
            }
            tracing::info!("still running after {timeout}s: SIGKILL");
        }
        c.task.kill(&self.runc, KILL_WAIT).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(RuntimeError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let sandbox = self.sandbox(&c.record.sandbox_id).ok();
        let _sandbox_guard = match &sandbox {
            Some(s) => Some(s.op.read().await),
            None => None,
        };
        self.remove_container_entry(&c).await
    }

    /// Kills, deletes and unmounts the container and removes its files
    /// (the caller holds the sandbox's lock).
    pub(crate) async fn remove_container_entry(&self, c: &ContainerEntry) -> Result<()> {
        let _guard = c.op.lock().await;
        c.task.kill(&self.runc, KILL_WAIT).await?;
        c.task.delete(&self.runc).await?;
        mounts::unmount(&c.rootfs())?;
        self.cgroups.remove_tree(&c.record.cgroup)?;
        match fs::remove_dir_all(&c.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::Error::from(e)
                    .context(format!("removing {}", c.dir.display()))
                    .into())
            }
        }
        self.forget_container(&c.id);
        self.events.send(
            &c.id,
            &c.record.sandbox_id,
            ContainerEventType::ContainerDeletedEvent,
        );
        Ok(())
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        Ok(self.container(id)?.status())
    }

    pub fn list_containers(&self, filter: Option<ContainerFilter>) -> Vec<Container> {
        let filter = filter.unwrap_or_default();
        let mut items: Vec<Container> = self
            .all_containers()
            .iter()
            .filter(|c| filter.id.is_empty() || c.id.starts_with(&filter.id))
            .filter(|c| {
                filter.pod_sandbox_id.is_empty()
                    || c.record.sandbox_id.starts_with(&filter.pod_sandbox_id)
            })
            // Labels before state: a container's state costs file reads and
            // /proc checks, and the kubelet lists by pod label all the time.
            .filter(|c| labels_match(&c.record.config.labels, &filter.label_selector))
            .map(|c| c.to_list_item())
            .filter(|c| filter.state.as_ref().is_none_or(|s| s.state == c.state))
            .collect();
        items.sort_by_key(|c| c.created_at);
        items
    }
}

/// Kubernetes' rules: `command` replaces the image's Entrypoint (and then
/// its Cmd is not used), `args` replace its Cmd.
fn command_line(command: &[String], args: &[String], image: &ImageDefaults) -> Result<Vec<String>> {
    let line: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        image.entrypoint.iter().chain(args).cloned().collect()
    } else {
        image.entrypoint.iter().chain(&image.cmd).cloned().collect()
    };
    if line.is_empty() {
        return Err(RuntimeError::invalid(
            "no command: the container sets none and the image has no Entrypoint or Cmd",
        ));
    }
    Ok(line)
}

/// The image's environment, overridden by the container's, plus PATH and
/// HOSTNAME when neither sets them.
fn environment(image_env: &[String], cfg: &ContainerConfig, hostname: &str) -> Vec<String> {
    fn set(vars: &mut Vec<(String, String)>, k: &str, v: &str) {
        match vars.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => vars.push((k.to_string(), v.to_string())),
        }
    }
    let mut vars: Vec<(String, String)> = Vec::new();
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(&mut vars, k, v);
    }
    for kv in &cfg.envs {
        set(&mut vars, &kv.key, &kv.value);
    }
    if !vars.iter().any(|(k, _)| k == "PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or_default();
        set(&mut vars, k, v);
    }
    if !vars.iter().any(|(k, _)| k == "HOSTNAME") {
        set(&mut vars, "HOSTNAME", hostname);
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::KeyValue;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageDefaults {
        ImageDefaults {
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image(&["/docker-entrypoint.sh"], &["nginx", "-g", "daemon off;"]);
        assert_eq!(
            command_line(&[], &[], &img).unwrap(),
            v(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"])
        );
        assert_eq!(
            command_line(&[], &v(&["-v"]), &img).unwrap(),
            v(&["/docker-entrypoint.sh", "-v"])
        );
        assert_eq!(command_line(&v(&["sh"]), &[], &img).unwrap(), v(&["sh"]));
        assert_eq!(
            command_line(&v(&["sh"]), &v(&["-c", "x"]), &img).unwrap(),
            v(&["sh", "-c", "x"])
        );
        assert!(command_line(&[], &[], &image(&[], &[])).is_err());
    }

    #[test]
    fn environment_merges_and_adds_path_and_hostname() {
        let cfg = ContainerConfig {
            envs: vec![
                KeyValue {
                    key: "A".into(),
                    value: "2".into(),
                },
                KeyValue {
                    key: "B".into(),
                    value: "x=y".into(),
                },
            ],
            ..Default::default()
        };
        let env = environment(&v(&["A=1", "NGINX_VERSION=1.22"]), &cfg, "web-0");
        assert_eq!(env[0], "A=2");
        assert!(env.contains(&"B=x=y".to_string()));
        assert!(env.contains(&"HOSTNAME=web-0".to_string()));
        assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin")));
    }
}
