//! One node under test: a shim process with settings of its own, clients
//! to it, helpers to run pods, and the leak audit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rkube_runtime::client::{clients, ImageClient, RuntimeClient};
use rkube_runtime::host::cgroups::Cgroups;
use rkube_runtime::host::{mounts, netns, procs};
use rkube_runtime::proto::*;

use super::{eventually, images_dir, skip_reason};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Node {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub runc_root: PathBuf,
    pub ipam_dir: PathBuf,
    /// "10.244.2xx" (the pod subnet is <prefix>.0/24).
    pub net_prefix: String,
    pub bridge: String,
    pub netns_prefix: String,
    pub cgroup_parent: String,
    pub preload: bool,
    shim: Option<Child>,
    starts: u32,
    pub rt: RuntimeClient,
    pub images: ImageClient,
}

impl Node {
    /// Starts a node with the project's images preloaded; None (after a
    /// skip line) when the host cannot run the node tier.
    pub async fn start(name: &str) -> Option<Node> {
        Self::start_with(name, true).await
    }

    pub async fn start_with(name: &str, preload: bool) -> Option<Node> {
        if let Some(why) = skip_reason() {
            println!("RKUBE-SKIP: node: {why}");
            return None;
        }
        // Traffic to the cluster ranges never leaves the machine.
        for range in ["10.244.0.0/16", "10.96.0.0/12"] {
            let _ = Command::new("ip")
                .args(["route", "replace", "unreachable", range])
                .status();
        }
        // Subnets 10.244.200-249: 5 slots per process id, 10 per process.
        let k = 200 + (std::process::id() % 5) * 10 + NEXT.fetch_add(1, Ordering::SeqCst) % 10;
        let dir = tempfile::Builder::new()
            .prefix(&format!("rkube-node-{name}-"))
            .tempdir()
            .expect("tempdir");
        let bridge = format!("rkt{k}");
        // A bridge of an earlier, crashed run of this slot.
        let _ = Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .status();
        let mut node = Node {
            name: name.into(),
            root: dir.path().join("root"),
            socket: dir.path().join("runtime.sock"),
            runc_root: dir.path().join("runc"),
            ipam_dir: dir.path().join("ipam"),
            net_prefix: format!("10.244.{k}"),
            bridge,
            netns_prefix: format!("rkt{k}-"),
            cgroup_parent: format!("/rkube-test-{k}"),
            preload,
            dir,
            shim: None,
            starts: 0,
            // Replaced once the shim answers.
            rt: RuntimeClient::new(
                tonic::transport::Endpoint::from_static("http://unused").connect_lazy(),
            ),
            images: ImageClient::new(
                tonic::transport::Endpoint::from_static("http://unused").connect_lazy(),
            ),
        };
        node.spawn_shim().await;
        Some(node)
    }

    fn shim_args(&self) -> Vec<String> {
        let mut args = vec![
            "--socket".into(),
            self.socket.display().to_string(),
            "--root".into(),
            self.root.display().to_string(),
            "--runc-root".into(),
            self.runc_root.display().to_string(),
            "--pod-cidr".into(),
            format!("{}.0/24", self.net_prefix),
            "--bridge".into(),
            self.bridge.clone(),
            "--network-name".into(),
            format!("rkube-{}", self.bridge),
            "--cni-data-dir".into(),
            self.ipam_dir.display().to_string(),
            "--netns-prefix".into(),
            self.netns_prefix.clone(),
            "--cgroup-parent".into(),
            self.cgroup_parent.clone(),
        ];
        if self.preload {
            args.push("--preload".into());
            args.push(images_dir().display().to_string());
        }
        args
    }

    /// Starts the shim and waits until it answers.
    pub async fn spawn_shim(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("shim-{}.log", self.starts)))
            .expect("shim log");
        let child = Command::new(env!("CARGO_BIN_EXE_rkube-runtime"))
            .args(self.shim_args())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting rkube-runtime");
        self.shim = Some(child);
        let socket = self.socket.clone();
        let (rt, images) = eventually("the shim to answer", Duration::from_secs(120), || {
            let socket = socket.clone();
            async move {
                let (mut rt, images) = clients(&socket).await.ok()?;
                rt.version(VersionRequest::default()).await.ok()?;
                Some((rt, images))
            }
        })
        .await;
        self.rt = rt;
        self.images = images;
    }

    pub fn shim_pid(&self) -> Option<u32> {
        self.shim.as_ref().map(|c| c.id())
    }

    /// Kills the shim (SIGKILL: nothing graceful) and reaps it.
    pub fn kill_shim(&mut self) {
        if let Some(mut child) = self.shim.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn shim_log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("shim-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}-{}", &rkube_runtime::records::new_id()[..8]),
                namespace: "default".into(),
                attempt: 0,
            }),
            dns_config: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            }),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            ..Default::default()
        }
    }

    pub async fn run_pod(&mut self, config: PodSandboxConfig) -> String {
        self.rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id
    }

    pub async fn pod_status(&mut self, id: &str) -> PodSandboxStatus {
        self.rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .expect("PodSandboxStatus")
            .into_inner()
            .status
            .expect("a status")
    }

    pub async fn pod_ip(&mut self, id: &str) -> String {
        self.pod_status(id).await.network.unwrap_or_default().ip
    }

    pub fn container(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub async fn create(
        &mut self,
        sandbox: &str,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(config),
                sandbox_config: None,
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// Creates and starts a container; panics if either fails.
    pub async fn run(&mut self, sandbox: &str, config: ContainerConfig) -> String {
        let id = self.create(sandbox, config).await.expect("CreateContainer");
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect("StartContainer");
        id
    }

    pub async fn status(&mut self, id: &str) -> ContainerStatus {
        self.rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status")
    }

    /// Waits until the container reaches `state`.
    pub async fn wait_state(
        &mut self,
        id: &str,
        state: ContainerState,
        timeout: Duration,
    ) -> ContainerStatus {
        let socket = self.socket.clone();
        let id = id.to_string();
        eventually(&format!("container {id} to be {state:?}"), timeout, || {
            let socket = socket.clone();
            let id = id.clone();
            async move {
                let (mut rt, _) = clients(&socket).await.ok()?;
                let s = rt
                    .container_status(ContainerStatusRequest { container_id: id })
                    .await
                    .ok()?
                    .into_inner()
                    .status?;
                (s.state == state as i32).then_some(s)
            }
        })
        .await
    }

    /// The container's whole log so far, as text.
    pub async fn logs(&mut self, id: &str) -> String {
        let mut stream = self
            .rt
            .container_logs(ContainerLogsRequest {
                container_id: id.into(),
                ..Default::default()
            })
            .await
            .expect("ContainerLogs")
            .into_inner();
        let mut text = String::new();
        while let Some(entry) = stream.message().await.expect("a log entry") {
            text.push_str(&String::from_utf8_lossy(&entry.content));
            if !entry.partial {
                text.push('\n');
            }
        }
        text
    }

    pub async fn exec(&mut self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        self.rt
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 30,
            })
            .await
            .expect("ExecSync")
            .into_inner()
    }

    pub async fn remove_pod(&mut self, id: &str) {
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .expect("StopPodSandbox");
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .expect("RemovePodSandbox");
    }

    /// Removes every pod, then fails if anything a pod made is left.
    pub async fn assert_clean(&mut self) {
        let pods = self
            .rt
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items;
        for pod in pods {
            self.rt
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: pod.id,
                })
                .await
                .expect("RemovePodSandbox");
        }
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "left behind: {left:#?}\nshim log:\n{}",
            self.shim_log()
        );
    }

    /// Everything pods of this node made that still exists: network
    /// namespaces, veths on the bridge, cgroups, mounts, host-local
    /// allocations, processes, runc containers, iptables rules.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for ns in netns::list(&self.netns_prefix) {
            left.push(format!("netns {ns}"));
        }
        let veths = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for line in veths.lines().filter(|l| !l.trim().is_empty()) {
            left.push(format!(
                "veth {}",
                line.split(':').nth(1).unwrap_or(line).trim()
            ));
        }
        if let Ok(cg) = Cgroups::detect() {
            for hierarchy in &cg.hierarchies {
                let parent = hierarchy.join(self.cgroup_parent.trim_start_matches('/'));
                if let Ok(entries) = std::fs::read_dir(&parent) {
                    for e in entries.flatten().filter(|e| e.path().is_dir()) {
                        left.push(format!("cgroup {}", e.path().display()));
                    }
                }
            }
        }
        for m in mounts::mounts_under(self.dir.path()) {
            left.push(format!("mount {}", m.display()));
        }
        if let Ok(entries) = std::fs::read_dir(self.ipam_dir.join(format!("rkube-{}", self.bridge)))
        {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n != "lock" && !n.starts_with("last_reserved_ip") {
                    left.push(format!("host-local allocation {n}"));
                }
            }
        }
        let me = std::process::id() as i32;
        let shim = self.shim_pid().map(|p| p as i32);
        for pid in procs::find_by_cmdline(&self.root.display().to_string()) {
            if pid != me && Some(pid) != shim {
                left.push(format!("process {pid}"));
            }
        }
        let runc = Command::new("runc")
            .arg("--root")
            .arg(&self.runc_root)
            .args(["list", "-q"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in runc.lines().filter(|l| !l.trim().is_empty()) {
            left.push(format!("runc container {id}"));
        }
        let rules = Command::new("iptables-save")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for rule in rules
            .lines()
            .filter(|l| l.contains(&format!("{}.", self.net_prefix)))
        {
            left.push(format!("iptables {rule}"));
        }
        left
    }
}

impl Drop for Node {
    /// Best effort, so a failed test does not leave its pods running.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- shim log of node {} ---\n{}",
                self.name,
                self.shim_log()
            );
        }
        self.kill_shim();
        let runc = |args: &[&str]| {
            Command::new("runc")
                .arg("--root")
                .arg(&self.runc_root)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
        };
        if let Ok(out) = runc(&["list", "-q"]) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = runc(&["delete", "--force", id]);
            }
        }
        for pid in procs::find_by_cmdline(&self.root.display().to_string()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let mut mounted = mounts::mounts_under(self.dir.path());
        mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounted {
            let _ = mounts::unmount(&m);
        }
        for ns in netns::list(&self.netns_prefix) {
            let _ = netns::remove(&PathBuf::from(netns::NETNS_DIR).join(ns));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Ok(cg) = Cgroups::detect() {
            let _ = cg.remove_tree(&self.cgroup_parent);
        }
        // Rules the firewall and portmap plugins made for this node's pods.
        let saved = Command::new("iptables-save")
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut table = "filter".to_string();
        for line in saved.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if let Some(rule) = line.strip_prefix("-A ") {
                if rule.contains(&format!("{}.", self.net_prefix)) {
                    // The shell keeps iptables-save's quoting intact.
                    let _ = Command::new("sh")
                        .arg("-c")
                        .arg(format!("iptables -t {table} -D {rule}"))
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}
