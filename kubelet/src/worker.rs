//! One worker per pod: drives the runtime towards the pod's spec (sandbox,
//! images, containers, restarts with back-off, probes), reports the pod's
//! status, and on deletion stops everything and removes the pod for good.
//!
//! The worker keeps no state that matters across a kubelet restart: the
//! sandbox and containers are found again in the runtime by their labels,
//! restart counts are the containers' attempt numbers. What is lost is
//! back-off timing and probe history, as in Kubernetes.

use crate::convert::{self, PodId};
use crate::events::{self, pod_ref};
use crate::probes::{self, Board, Outcome, ProbeKind};
use crate::Ctx;
use rkube_api::proto::{
    object::Kind as Body, Container, ContainerState, ContainerStateRunning,
    ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, DeleteRequest, Pod,
    PodCondition, PodIp, PodStatus, Preconditions,
};
use rkube_api::Object;
use rkube_runtime::proto as rt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Why a container is waiting, when the kubelet knows better than the
/// runtime (image errors, back-off, configuration errors).
#[derive(Clone, Debug)]
struct Waiting {
    reason: String,
    message: String,
}

struct Backoff {
    delay: Duration,
    last_start: Instant,
}

pub struct Worker {
    ctx: Arc<Ctx>,
    id: PodId,
    pod_rx: watch::Receiver<Option<Pod>>,
    wake: Arc<Notify>,
    board: Arc<Board>,
    probe_tasks: HashMap<(String, ProbeKind), JoinHandle<()>>,
    /// Per container name.
    backoff: HashMap<String, Backoff>,
    pull_backoff: HashMap<String, Backoff>,
    waiting: HashMap<String, Waiting>,
    sandbox_backoff: Option<Backoff>,
    sandbox_error: Option<Waiting>,
    last_status: Option<PodStatus>,
    last_pod: Option<Pod>,
    terminal: bool,
    next_wake: Option<Instant>,
    /// Containers whose start event was recorded.
    announced: std::collections::HashSet<String>,
}

fn ns_to_rfc3339(ns: i64) -> String {
    if ns <= 0 {
        return String::new();
    }
    chrono::DateTime::from_timestamp(ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn now_secs() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn deleting(p: &Pod) -> bool {
    p.metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty())
}

fn api_phase(p: &Pod) -> &str {
    p.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("")
}

/// Runtime state of one container name: its attempts, newest first.
#[derive(Default, Clone)]
struct Attempts {
    list: Vec<rt::ContainerStatus>,
}

impl Attempts {
    fn current(&self) -> Option<&rt::ContainerStatus> {
        self.list.first()
    }
    fn previous(&self) -> Option<&rt::ContainerStatus> {
        self.list.get(1)
    }
}

fn attempt_of(c: &rt::ContainerStatus) -> u32 {
    c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

fn restart_wanted(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn terminated_state(c: &rt::ContainerStatus) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: c.exit_code,
            signal: 0,
            reason: if c.reason.is_empty() {
                if c.exit_code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                }
            } else {
                c.reason.clone()
            },
            message: c.message.clone(),
            started_at: ns_to_rfc3339(c.started_at),
            finished_at: ns_to_rfc3339(c.finished_at),
            container_id: format!("rkube://{}", c.id),
        }),
        ..Default::default()
    }
}

impl Worker {
    pub fn new(
        ctx: Arc<Ctx>,
        id: PodId,
        pod_rx: watch::Receiver<Option<Pod>>,
        wake: Arc<Notify>,
    ) -> Worker {
        Worker {
            board: Arc::new(Board::new(wake.clone())),
            ctx,
            id,
            pod_rx,
            wake,
            probe_tasks: HashMap::new(),
            backoff: HashMap::new(),
            pull_backoff: HashMap::new(),
            waiting: HashMap::new(),
            sandbox_backoff: None,
            sandbox_error: None,
            last_status: None,
            last_pod: None,
            terminal: false,
            next_wake: None,
            announced: Default::default(),
        }
    }

    fn event(&self, ty: &str, reason: &str, msg: &str) {
        self.ctx.recorder.record(
            pod_ref(&self.id.namespace, &self.id.name, &self.id.uid),
            ty,
            reason,
            msg,
        );
    }

    fn wake_at(&mut self, t: Instant) {
        self.next_wake = Some(match self.next_wake {
            Some(w) if w < t => w,
            _ => t,
        });
    }

    /// Runs until the pod is gone and everything of it is removed.
    pub async fn run(mut self) {
        let sync_period = self.ctx.cfg.sync_period();
        loop {
            let pod = self.pod_rx.borrow_and_update().clone();
            self.next_wake = None;
            match pod {
                None => {
                    self.teardown().await;
                    return;
                }
                Some(p) if deleting(&p) => {
                    self.last_pod = Some(p.clone());
                    if self.terminate(&p).await {
                        // Wait for the API to confirm (the manager sends None).
                        while self.pod_rx.changed().await.is_ok() {
                            if self.pod_rx.borrow().is_none() {
                                break;
                            }
                        }
                        return;
                    }
                    self.wake_at(Instant::now() + Duration::from_secs(1));
                }
                Some(p) => {
                    self.last_pod = Some(p.clone());
                    if let Err(e) = self.sync(&p).await {
                        tracing::warn!(pod = %self.id.full_name(), error = %e, "pod sync failed");
                        self.wake_at(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            let deadline = self
                .next_wake
                .unwrap_or_else(|| Instant::now() + sync_period)
                .min(Instant::now() + sync_period);
            tokio::select! {
                r = self.pod_rx.changed() => {
                    if r.is_err() {
                        // The manager is gone (process exiting): leave the pod running.
                        return;
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
    }

    /// The runtime label selector for this pod's sandboxes and containers.
    fn uid_selector(&self) -> HashMap<String, String> {
        HashMap::from([(crate::labels::POD_UID.to_string(), self.id.uid.clone())])
    }

    async fn sandboxes(&self) -> Result<Vec<rt::PodSandbox>, tonic::Status> {
        let mut list = self
            .ctx
            .runtime
            .clone()
            .list_pod_sandbox(rt::ListPodSandboxRequest {
                filter: Some(rt::PodSandboxFilter {
                    label_selector: self.uid_selector(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .items;
        // Newest first.
        list.sort_by_key(|s| {
            std::cmp::Reverse((
                s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                s.created_at,
            ))
        });
        Ok(list)
    }

    /// Every container of the pod in the runtime, by name, newest attempt
    /// first.
    async fn containers(&self) -> Result<HashMap<String, Attempts>, tonic::Status> {
        let mut rt_client = self.ctx.runtime.clone();
        let list = rt_client
            .list_containers(rt::ListContainersRequest {
                filter: Some(rt::ContainerFilter {
                    label_selector: self.uid_selector(),
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .containers;
        let mut by_name: HashMap<String, Vec<rt::Container>> = HashMap::new();
        for c in list {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            by_name.entry(name).or_default().push(c);
        }
        let mut out: HashMap<String, Attempts> = HashMap::new();
        for (name, mut items) in by_name {
            items.sort_by_key(|c| {
                std::cmp::Reverse((
                    c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                    c.created_at,
                ))
            });
            let mut attempts = Attempts::default();
            for (i, c) in items.into_iter().enumerate() {
                if i >= 2 {
                    // Only the current attempt and the one before it (for
                    // `logs --previous` and lastState) are kept.
                    if c.state == rt::ContainerState::ContainerExited as i32 {
                        let _ = rt_client
                            .remove_container(rt::RemoveContainerRequest {
                                container_id: c.id.clone(),
                            })
                            .await;
                    }
                    continue;
                }
                match rt_client
                    .container_status(rt::ContainerStatusRequest {
                        container_id: c.id.clone(),
                    })
                    .await
                {
                    Ok(s) => attempts
                        .list
                        .push(s.into_inner().status.unwrap_or_default()),
                    Err(s) if s.code() == tonic::Code::NotFound => continue,
                    Err(s) => return Err(s),
                }
            }
            out.insert(name, attempts);
        }
        Ok(out)
    }

    /// Brings the runtime in line with the pod; then reports status.
    async fn sync(&mut self, pod: &Pod) -> anyhow::Result<()> {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = if spec.restart_policy.is_empty() {
            "Always".to_string()
        } else {
            spec.restart_policy.clone()
        };
        if matches!(api_phase(pod), "Succeeded" | "Failed") && !self.terminal {
            // Finished before (perhaps before a kubelet restart): keep it so.
            self.terminal = true;
            self.stop_sandboxes().await;
            return Ok(());
        }
        if self.terminal {
            return Ok(());
        }

        // 1. The sandbox.
        let sandboxes = self.sandboxes().await?;
        let ready = sandboxes
            .iter()
            .find(|s| s.state == rt::PodSandboxState::SandboxReady as i32)
            .cloned();
        let containers_before = self.containers().await?;
        let sandbox_id = match ready {
            Some(s) => s.id,
            None => {
                if !sandboxes.is_empty() {
                    self.event(
                        events::NORMAL,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.",
                    );
                    self.stop_sandboxes().await;
                }
                if let Some(b) = &self.sandbox_backoff {
                    let at = b.last_start + b.delay;
                    if Instant::now() < at {
                        self.wake_at(at);
                        self.post_status(pod, None, &containers_before, &policy)
                            .await;
                        return Ok(());
                    }
                }
                match self.create_sandbox(pod, sandboxes.len() as u32).await {
                    Ok(id) => {
                        self.sandbox_error = None;
                        self.sandbox_backoff = None;
                        id
                    }
                    Err(msg) => {
                        self.event(
                            events::WARNING,
                            "FailedCreatePodSandBox",
                            &format!("Failed to create pod sandbox: {msg}"),
                        );
                        self.sandbox_error = Some(Waiting {
                            reason: "ContainerCreating".into(),
                            message: msg,
                        });
                        let delay = self
                            .sandbox_backoff
                            .as_ref()
                            .map(|b| (b.delay * 2).min(self.ctx.cfg.backoff_max()))
                            .unwrap_or(Duration::from_secs(1));
                        self.sandbox_backoff = Some(Backoff {
                            delay,
                            last_start: Instant::now(),
                        });
                        self.wake_at(Instant::now() + delay);
                        self.post_status(pod, None, &containers_before, &policy)
                            .await;
                        return Ok(());
                    }
                }
            }
        };
        self.ctx
            .sandbox_owner
            .lock()
            .unwrap()
            .insert(sandbox_id.clone(), self.id.uid.clone());
        let sandbox = self
            .ctx
            .runtime
            .clone()
            .pod_sandbox_status(rt::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap_or_default();
        let pod_ip = if spec.host_network {
            self.ctx.node_ip.clone()
        } else {
            sandbox
                .network
                .as_ref()
                .map(|n| n.ip.clone())
                .unwrap_or_default()
        };

        // 2. Containers.
        // A new sandbox changes no container: the list from above holds.
        let mut containers = containers_before;
        let mut changed = false;
        for c in &spec.containers {
            let attempts = containers.get(&c.name).cloned().unwrap_or_default();
            let cur = attempts.current().cloned();
            let in_sandbox = cur.as_ref().is_some_and(|x| x.pod_sandbox_id == sandbox_id);
            match cur {
                Some(st)
                    if in_sandbox && st.state == rt::ContainerState::ContainerRunning as i32 =>
                {
                    self.waiting.remove(&c.name);
                    if !self.announced.contains(&st.id) {
                        self.announced.insert(st.id.clone());
                    }
                    if let Some(why) = self.ensure_probes(c, &st.id, &pod_ip) {
                        // Liveness or startup failed: restart the container.
                        self.event(
                            events::NORMAL,
                            "Killing",
                            &format!("Container {} failed {why}, will be restarted", c.name),
                        );
                        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
                        let _ = self
                            .ctx
                            .runtime
                            .clone()
                            .stop_container(rt::StopContainerRequest {
                                container_id: st.id.clone(),
                                timeout: grace,
                            })
                            .await;
                        changed = true;
                    }
                }
                Some(st)
                    if in_sandbox && st.state == rt::ContainerState::ContainerCreated as i32 =>
                {
                    // Created but never started (the kubelet stopped in between).
                    if let Err(s) = self
                        .ctx
                        .runtime
                        .clone()
                        .start_container(rt::StartContainerRequest {
                            container_id: st.id.clone(),
                        })
                        .await
                    {
                        self.event(
                            events::WARNING,
                            "Failed",
                            &format!("Error: {}", s.message()),
                        );
                    }
                    changed = true;
                }
                other => {
                    // None yet, exited, or left in a dead sandbox.
                    let next_attempt = other.as_ref().map(|x| attempt_of(x) + 1).unwrap_or(0);
                    if let Some(st) = &other {
                        if in_sandbox && !restart_wanted(&policy, st.exit_code) {
                            continue;
                        }
                        if !in_sandbox
                            && policy != "Always"
                            && st.state == rt::ContainerState::ContainerExited as i32
                            && !restart_wanted(&policy, st.exit_code)
                        {
                            continue;
                        }
                        // Back-off between restarts; a container that ran
                        // long enough starts afresh.
                        let ran = if st.started_at > 0 && st.finished_at > st.started_at {
                            Duration::from_nanos((st.finished_at - st.started_at) as u64)
                        } else {
                            Duration::ZERO
                        };
                        if ran >= self.ctx.cfg.backoff_max() * 2 {
                            self.backoff.remove(&c.name);
                        }
                        if let Some(b) = self.backoff.get(&c.name) {
                            let at = b.last_start + b.delay;
                            if Instant::now() < at {
                                let msg = format!(
                                    "back-off {}s restarting failed container={} pod={}_{}({})",
                                    b.delay.as_secs_f64().ceil() as u64,
                                    c.name,
                                    self.id.name,
                                    self.id.namespace,
                                    self.id.uid
                                );
                                if self.waiting.get(&c.name).map(|w| w.reason.as_str())
                                    != Some("CrashLoopBackOff")
                                {
                                    self.event(
                                        events::WARNING,
                                        "BackOff",
                                        "Back-off restarting failed container",
                                    );
                                }
                                self.waiting.insert(
                                    c.name.clone(),
                                    Waiting {
                                        reason: "CrashLoopBackOff".into(),
                                        message: msg,
                                    },
                                );
                                self.wake_at(at);
                                continue;
                            }
                        }
                    }
                    let sandbox_cfg = sandbox_config_for(self, pod, 0);
                    match self
                        .start_container(pod, c, next_attempt, &sandbox_id, &sandbox_cfg)
                        .await
                    {
                        Ok(()) => {
                            self.waiting.remove(&c.name);
                        }
                        Err(w) => {
                            self.waiting.insert(c.name.clone(), w);
                        }
                    }
                    if other.is_some() {
                        let base = self.ctx.cfg.backoff_base();
                        let delay = match self.backoff.get(&c.name) {
                            Some(b) => (b.delay * 2).min(self.ctx.cfg.backoff_max()),
                            None => base,
                        };
                        self.backoff.insert(
                            c.name.clone(),
                            Backoff {
                                delay,
                                last_start: Instant::now(),
                            },
                        );
                    }
                    changed = true;
                }
            }
        }
        if changed {
            containers = self.containers().await?;
        }
        // Forget probes of containers that are no longer running.
        let running: std::collections::HashSet<String> = containers
            .values()
            .filter_map(|a| a.current())
            .filter(|c| c.state == rt::ContainerState::ContainerRunning as i32)
            .map(|c| c.id.clone())
            .collect();
        self.probe_tasks.retain(|(id, _), t| {
            let keep = running.contains(id);
            if !keep {
                t.abort();
            }
            keep
        });
        self.board.retain(&|id| running.contains(id));

        // 3. Status, and the end of a pod that will not run again.
        let phase = self
            .post_status(pod, Some((&sandbox_id, &pod_ip)), &containers, &policy)
            .await;
        if matches!(phase.as_str(), "Succeeded" | "Failed") {
            self.terminal = true;
            self.stop_probes();
            self.stop_sandboxes().await;
        }
        Ok(())
    }

    async fn create_sandbox(&mut self, pod: &Pod, attempt: u32) -> Result<String, String> {
        let dirs = convert::pod_dirs(&self.ctx.cfg.root_dir, &self.ctx.cfg.pod_log_dir, &self.id);
        convert::prepare_volumes(pod, &dirs.volumes)?;
        std::fs::create_dir_all(&dirs.logs)
            .map_err(|e| format!("creating {}: {e}", dirs.logs.display()))?;
        let cfg = sandbox_config_for(self, pod, attempt);
        let r = self
            .ctx
            .runtime
            .clone()
            .run_pod_sandbox(rt::RunPodSandboxRequest { config: Some(cfg) })
            .await
            .map_err(|s| s.message().to_string())?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    /// Pulls the image as the pull policy says; `Err` is the waiting reason.
    async fn ensure_image(&mut self, c: &Container) -> Result<(), Waiting> {
        let policy = convert::pull_policy(c).to_string();
        let present = self
            .ctx
            .images
            .clone()
            .image_status(rt::ImageStatusRequest {
                image: Some(rt::ImageSpec {
                    image: c.image.clone(),
                }),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().image.is_some())
            .unwrap_or(false);
        match policy.as_str() {
            "Never" if !present => {
                let message = format!(
                    "Container image \"{}\" is not present with pull policy of Never",
                    c.image
                );
                self.event(events::WARNING, "ErrImageNeverPull", &message);
                return Err(Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message,
                });
            }
            "Never" => return Ok(()),
            "IfNotPresent" if present => {
                self.event(
                    events::NORMAL,
                    "Pulled",
                    &format!("Container image \"{}\" already present on machine", c.image),
                );
                return Ok(());
            }
            _ => {}
        }
        if let Some(b) = self.pull_backoff.get(&c.name) {
            let at = b.last_start + b.delay;
            if Instant::now() < at {
                self.wake_at(at);
                let message = format!("Back-off pulling image \"{}\"", c.image);
                self.event(events::NORMAL, "BackOff", &message);
                return Err(Waiting {
                    reason: "ImagePullBackOff".into(),
                    message,
                });
            }
        }
        self.event(
            events::NORMAL,
            "Pulling",
            &format!("Pulling image \"{}\"", c.image),
        );
        let started = Instant::now();
        let r = self
            .ctx
            .images
            .clone()
            .pull_image(rt::PullImageRequest {
                image: Some(rt::ImageSpec {
                    image: c.image.clone(),
                }),
                auth: None,
            })
            .await;
        match r {
            Ok(_) => {
                self.pull_backoff.remove(&c.name);
                self.event(
                    events::NORMAL,
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{}\" in {:.3}s",
                        c.image,
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(())
            }
            Err(s) if present => {
                // Policy Always, registry unreachable (this cluster has no
                // route to public registries): use the local copy.
                self.event(
                    events::WARNING,
                    "Pulled",
                    &format!(
                        "Using the local copy of image \"{}\": pull failed: {}",
                        c.image,
                        s.message()
                    ),
                );
                Ok(())
            }
            Err(s) => {
                let message = format!("Failed to pull image \"{}\": {}", c.image, s.message());
                self.event(events::WARNING, "Failed", &message);
                self.event(events::WARNING, "Failed", "Error: ErrImagePull");
                let delay = self
                    .pull_backoff
                    .get(&c.name)
                    .map(|b| (b.delay * 2).min(self.ctx.cfg.backoff_max()))
                    .unwrap_or(self.ctx.cfg.backoff_base().max(Duration::from_millis(500)));
                self.pull_backoff.insert(
                    c.name.clone(),
                    Backoff {
                        delay,
                        last_start: Instant::now(),
                    },
                );
                self.wake_at(Instant::now() + delay);
                Err(Waiting {
                    reason: "ErrImagePull".into(),
                    message,
                })
            }
        }
    }

    async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sandbox_id: &str,
        sandbox_config: &rt::PodSandboxConfig,
    ) -> Result<(), Waiting> {
        self.ensure_image(c).await?;
        let dirs = convert::pod_dirs(&self.ctx.cfg.root_dir, &self.ctx.cfg.pod_log_dir, &self.id);
        let cfg = convert::container_config(pod, c, attempt, &dirs.volumes).map_err(|message| {
            self.event(events::WARNING, "Failed", &format!("Error: {message}"));
            Waiting {
                reason: "CreateContainerConfigError".into(),
                message,
            }
        })?;
        let _ = std::fs::create_dir_all(dirs.logs.join(&c.name));
        let mut runtime = self.ctx.runtime.clone();
        let id = runtime
            .create_container(rt::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(cfg),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .map_err(|s| {
                let message = s.message().to_string();
                self.event(events::WARNING, "Failed", &format!("Error: {message}"));
                Waiting {
                    reason: "CreateContainerError".into(),
                    message,
                }
            })?
            .into_inner()
            .container_id;
        self.event(
            events::NORMAL,
            "Created",
            &format!("Created container {}", c.name),
        );
        match runtime
            .start_container(rt::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            Ok(_) => {
                self.event(
                    events::NORMAL,
                    "Started",
                    &format!("Started container {}", c.name),
                );
                self.announced.insert(id);
                Ok(())
            }
            Err(s) => {
                let message = s.message().to_string();
                self.event(events::WARNING, "Failed", &format!("Error: {message}"));
                // The runtime keeps the container as exited (StartError);
                // the next sync restarts it with back-off.
                Err(Waiting {
                    reason: "RunContainerError".into(),
                    message,
                })
            }
        }
    }

    /// Starts the probe tasks a running container needs; returns why the
    /// container must be restarted, if a liveness or startup probe failed.
    fn ensure_probes(&mut self, c: &Container, container_id: &str, pod_ip: &str) -> Option<String> {
        let target = probes::Target {
            container_id: container_id.to_string(),
            pod_ip: pod_ip.to_string(),
            ports: c.ports.clone(),
        };
        let started = c.startup_probe.is_none()
            || self.board.get(container_id, ProbeKind::Startup) == Outcome::Success;
        if let Outcome::Failure(m) = self.board.get(container_id, ProbeKind::Startup) {
            self.event(
                events::WARNING,
                "Unhealthy",
                &format!("Startup probe failed: {m}"),
            );
            return Some("startup probe".into());
        }
        if let Outcome::Failure(m) = self.board.get(container_id, ProbeKind::Liveness) {
            self.event(
                events::WARNING,
                "Unhealthy",
                &format!("Liveness probe failed: {m}"),
            );
            return Some("liveness probe".into());
        }
        let mut want: Vec<(ProbeKind, rkube_api::proto::Probe)> = Vec::new();
        if !started {
            want.extend(c.startup_probe.clone().map(|p| (ProbeKind::Startup, p)));
        } else {
            want.extend(c.liveness_probe.clone().map(|p| (ProbeKind::Liveness, p)));
            want.extend(c.readiness_probe.clone().map(|p| (ProbeKind::Readiness, p)));
        }
        for (kind, p) in want {
            let key = (container_id.to_string(), kind);
            if self.probe_tasks.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(probes::run(
                kind,
                p,
                target.clone(),
                self.ctx.runtime.clone(),
                self.board.clone(),
            ));
            self.probe_tasks.insert(key, task);
        }
        if started {
            if let Some(t) = self
                .probe_tasks
                .remove(&(container_id.to_string(), ProbeKind::Startup))
            {
                t.abort();
            }
        }
        if let Outcome::Failure(m) = self.board.get(container_id, ProbeKind::Readiness) {
            tracing::debug!(pod = %self.id.full_name(), container = %c.name, %m, "not ready");
        }
        None
    }

    fn stop_probes(&mut self) {
        for (_, t) in self.probe_tasks.drain() {
            t.abort();
        }
    }

    /// The pod's status from the runtime's state; posted when it changed.
    /// Returns the phase.
    async fn post_status(
        &mut self,
        pod: &Pod,
        sandbox: Option<(&str, &str)>,
        containers: &HashMap<String, Attempts>,
        policy: &str,
    ) -> String {
        let spec = pod.spec.clone().unwrap_or_default();
        let prev = pod.status.clone().unwrap_or_default();
        let mut statuses = Vec::new();
        let (mut all_done, mut all_ok, mut any_running, mut any_started) =
            (true, true, false, false);
        for c in &spec.containers {
            let a = containers.get(&c.name).cloned().unwrap_or_default();
            let cur = a.current().filter(|x| {
                sandbox.is_some_and(|(sid, _)| x.pod_sandbox_id == sid)
                    || x.state == rt::ContainerState::ContainerExited as i32
            });
            let mut cs = ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone(),
                restart_count: a.current().map(attempt_of).unwrap_or(0) as i32,
                started: Some(false),
                ..Default::default()
            };
            let waiting = self.waiting.get(&c.name).cloned();
            match cur {
                Some(st)
                    if st.state == rt::ContainerState::ContainerRunning as i32
                        && waiting.is_none() =>
                {
                    any_running = true;
                    any_started = true;
                    all_done = false;
                    cs.container_id = format!("rkube://{}", st.id);
                    cs.image_id = st.image_ref.clone();
                    cs.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: ns_to_rfc3339(st.started_at),
                        }),
                        ..Default::default()
                    });
                    let started = c.startup_probe.is_none()
                        || self.board.get(&st.id, ProbeKind::Startup) == Outcome::Success;
                    cs.started = Some(started);
                    cs.ready = started
                        && (c.readiness_probe.is_none()
                            || self.board.get(&st.id, ProbeKind::Readiness) == Outcome::Success);
                    if let Some(p) = a.previous() {
                        cs.last_state = Some(terminated_state(p));
                    }
                }
                Some(st) if st.state == rt::ContainerState::ContainerExited as i32 => {
                    any_started = true;
                    cs.container_id = format!("rkube://{}", st.id);
                    cs.image_id = st.image_ref.clone();
                    let will_restart = restart_wanted(policy, st.exit_code);
                    if let Some(w) = waiting.filter(|_| will_restart) {
                        all_done = false;
                        cs.state = Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: w.reason,
                                message: w.message,
                            }),
                            ..Default::default()
                        });
                        cs.last_state = Some(terminated_state(st));
                    } else if will_restart {
                        all_done = false;
                        cs.state = Some(terminated_state(st));
                        if let Some(p) = a.previous() {
                            cs.last_state = Some(terminated_state(p));
                        }
                    } else {
                        if st.exit_code != 0 {
                            all_ok = false;
                        }
                        cs.state = Some(terminated_state(st));
                        if let Some(p) = a.previous() {
                            cs.last_state = Some(terminated_state(p));
                        }
                    }
                }
                _ => {
                    all_done = false;
                    let w = waiting
                        .or_else(|| self.sandbox_error.clone())
                        .unwrap_or(Waiting {
                            reason: "ContainerCreating".into(),
                            message: String::new(),
                        });
                    cs.state = Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: w.reason,
                            message: w.message,
                        }),
                        ..Default::default()
                    });
                    if let Some(p) = a
                        .current()
                        .filter(|x| x.state == rt::ContainerState::ContainerExited as i32)
                    {
                        any_started = true;
                        cs.last_state = Some(terminated_state(p));
                    }
                }
            }
            statuses.push(cs);
        }
        let phase = if !spec.containers.is_empty() && all_done {
            if all_ok {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if sandbox.is_some() && (any_running || any_started) {
            "Running"
        } else {
            "Pending"
        };
        let all_ready = !statuses.is_empty() && statuses.iter().all(|c| c.ready);
        let t = now_secs();
        let cond = |ty: &str, ok: bool, reason: &str, message: String| {
            let status = if ok { "True" } else { "False" };
            let transition = prev
                .conditions
                .iter()
                .find(|c| c.r#type == ty && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| t.clone());
            PodCondition {
                r#type: ty.into(),
                status: status.into(),
                last_transition_time: transition,
                reason: if ok { String::new() } else { reason.into() },
                message: if ok { String::new() } else { message },
                ..Default::default()
            }
        };
        let not_ready: Vec<String> = statuses
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.clone())
            .collect();
        let (reason, msg) = if matches!(phase, "Succeeded" | "Failed") {
            ("PodCompleted", String::new())
        } else {
            (
                "ContainersNotReady",
                format!("containers with unready status: [{}]", not_ready.join(" ")),
            )
        };
        let mut conditions = vec![
            cond("Initialized", true, "", String::new()),
            cond("Ready", all_ready, reason, msg.clone()),
            cond("ContainersReady", all_ready, reason, msg),
        ];
        conditions.extend(
            prev.conditions
                .iter()
                .filter(|c| c.r#type == "PodScheduled")
                .cloned(),
        );
        let pod_ip = sandbox
            .map(|(_, ip)| ip.to_string())
            .unwrap_or_else(|| prev.pod_ip.clone());
        let status = PodStatus {
            phase: phase.into(),
            conditions,
            host_ip: self.ctx.node_ip.clone(),
            pod_ips: if pod_ip.is_empty() {
                vec![]
            } else {
                vec![PodIp { ip: pod_ip.clone() }]
            },
            pod_ip,
            start_time: if prev.start_time.is_empty() {
                t.clone()
            } else {
                prev.start_time.clone()
            },
            container_statuses: statuses,
            qos_class: prev.qos_class.clone(),
            nominated_node_name: prev.nominated_node_name.clone(),
            ..Default::default()
        };
        let unchanged = self.last_status.as_ref() == Some(&status)
            || (self.last_status.is_none() && pod.status.as_ref() == Some(&status));
        if !unchanged {
            match self.write_status(pod, status.clone()).await {
                Ok(()) => self.last_status = Some(status),
                Err(e) => {
                    tracing::warn!(pod = %self.id.full_name(), error = %e, "status update failed");
                    self.wake_at(Instant::now() + Duration::from_millis(500));
                }
            }
        }
        phase.to_string()
    }

    async fn write_status(&self, pod: &Pod, status: PodStatus) -> Result<(), tonic::Status> {
        let mut p = pod.clone();
        p.status = Some(status);
        if let Some(m) = p.metadata.as_mut() {
            // Unconditional: the kubelet owns the pod's status.
            m.resource_version.clear();
        }
        match self
            .ctx
            .client
            .update_status(Object::from_body(Body::Pod(p)))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s),
        }
    }

    /// Stops and removes every sandbox but the newest (kept, stopped, so
    /// logs and restart counts survive until the pod goes).
    async fn stop_sandboxes(&mut self) {
        let Ok(list) = self.sandboxes().await else {
            return;
        };
        let mut rt_client = self.ctx.runtime.clone();
        for (i, s) in list.iter().enumerate() {
            if s.state == rt::PodSandboxState::SandboxReady as i32 {
                if let Err(e) = rt_client
                    .stop_pod_sandbox(rt::StopPodSandboxRequest {
                        pod_sandbox_id: s.id.clone(),
                    })
                    .await
                {
                    tracing::warn!(pod = %self.id.full_name(), error = %e.message(), "stopping sandbox");
                }
            }
            if i > 0 {
                let _ = rt_client
                    .remove_pod_sandbox(rt::RemovePodSandboxRequest {
                        pod_sandbox_id: s.id.clone(),
                    })
                    .await;
            }
        }
    }

    /// Graceful deletion: stop containers within the grace period, remove
    /// everything, then delete the pod for good. True when done.
    async fn terminate(&mut self, pod: &Pod) -> bool {
        let grace = pod
            .metadata
            .as_ref()
            .and_then(|m| m.deletion_grace_period_seconds)
            .or(pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        self.stop_probes();
        if let Err(e) = self.remove_everything(grace).await {
            tracing::warn!(pod = %self.id.full_name(), error = %e, "tearing down");
            return false;
        }
        let r = self
            .ctx
            .client
            .delete(DeleteRequest {
                kind: "Pod".into(),
                namespace: self.id.namespace.clone(),
                name: self.id.name.clone(),
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: self.id.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        match r {
            Ok(_) => true,
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::NotFound | tonic::Code::Aborted | tonic::Code::FailedPrecondition
                ) =>
            {
                true
            }
            Err(s) => {
                tracing::warn!(pod = %self.id.full_name(), error = %s, "final delete failed; retrying");
                false
            }
        }
    }

    /// The pod vanished from the API (or was never there: an orphan found
    /// in the runtime): remove what is left.
    async fn teardown(&mut self) {
        self.stop_probes();
        let grace = self
            .last_pod
            .as_ref()
            .and_then(|p| {
                p.metadata
                    .as_ref()
                    .and_then(|m| m.deletion_grace_period_seconds)
                    .or(p
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds))
            })
            .unwrap_or(2)
            .min(30);
        for attempt in 0..5 {
            match self.remove_everything(grace).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(pod = %self.id.full_name(), error = %e, attempt, "tearing down");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn remove_everything(&mut self, grace: i64) -> anyhow::Result<()> {
        let containers = self.containers().await?;
        let mut stops = Vec::new();
        for (name, a) in &containers {
            for c in &a.list {
                if c.state == rt::ContainerState::ContainerRunning as i32 {
                    self.event(
                        events::NORMAL,
                        "Killing",
                        &format!("Stopping container {name}"),
                    );
                    let mut r = self.ctx.runtime.clone();
                    let id = c.id.clone();
                    stops.push(tokio::spawn(async move {
                        r.stop_container(rt::StopContainerRequest {
                            container_id: id,
                            timeout: grace,
                        })
                        .await
                    }));
                }
            }
        }
        for s in stops {
            if let Ok(Err(e)) = s.await {
                if e.code() != tonic::Code::NotFound {
                    anyhow::bail!("stopping a container: {}", e.message());
                }
            }
        }
        let mut rt_client = self.ctx.runtime.clone();
        for s in self.sandboxes().await? {
            rt_client
                .stop_pod_sandbox(rt::StopPodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("stopping sandbox: {}", e.message()))?;
            rt_client
                .remove_pod_sandbox(rt::RemovePodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("removing sandbox: {}", e.message()))?;
            self.ctx.sandbox_owner.lock().unwrap().remove(&s.id);
        }
        let dirs = convert::pod_dirs(&self.ctx.cfg.root_dir, &self.ctx.cfg.pod_log_dir, &self.id);
        for d in [&dirs.root, &dirs.logs] {
            if d.exists() {
                if let Err(e) = std::fs::remove_dir_all(d) {
                    tracing::warn!(dir = %d.display(), error = %e, "removing pod directory");
                }
            }
        }
        Ok(())
    }
}

fn sandbox_config_for(w: &Worker, pod: &Pod, attempt: u32) -> rt::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let dns = crate::dns::pod_dns(
        &spec,
        &w.id.namespace,
        &w.ctx.cfg.cluster_dns,
        &w.ctx.cfg.cluster_domain,
        &w.ctx.host_resolv,
    )
    .unwrap_or_else(|e| {
        tracing::warn!(pod = %w.id.full_name(), error = %e, "DNS configuration; using the node's");
        rt::DnsConfig {
            servers: w.ctx.host_resolv.servers.clone(),
            searches: w.ctx.host_resolv.searches.clone(),
            options: w.ctx.host_resolv.options.clone(),
        }
    });
    let dirs = convert::pod_dirs(&w.ctx.cfg.root_dir, &w.ctx.cfg.pod_log_dir, &w.id);
    convert::sandbox_config(pod, attempt, dns, &w.ctx.cfg.cluster_domain, &dirs.logs)
}
