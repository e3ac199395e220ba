//! The node's own objects: registration, status (conditions, addresses,
//! capacity), the heartbeat Lease, and handing the podCIDR the control plane
//! allocated to the runtime.

use crate::config::Config;
use anyhow::{Context, Result};
use rkube_api::client::Client;
use rkube_api::proto::{
    object::Kind as Body, DaemonEndpoint, Lease, LeaseSpec, Node, NodeAddress, NodeCondition,
    NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, ObjectMeta, Taint,
};
use rkube_api::Object;
use rkube_runtime::client::RuntimeClient;
use rkube_runtime::proto as rt;
use std::collections::HashMap;
use std::time::Duration;
use tonic::Code;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Facts about this node that go into its Node object.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub ip: String,
    pub kubelet_port: u16,
    pub capacity: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub taints: Vec<Taint>,
    pub system: NodeSystemInfo,
    /// The pod CIDR the runtime uses, once known: a Node deleted under a
    /// running kubelet is registered again with it, so its pods keep
    /// addresses inside the node's range.
    pub pod_cidr: Option<String>,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl NodeInfo {
    pub fn gather(cfg: &Config, name: &str, ip: &str, kubelet_port: u16) -> Result<NodeInfo> {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_ki = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
            })
            .unwrap_or_else(|| "0".into());
        let mut capacity = HashMap::new();
        capacity.insert(
            "cpu".to_string(),
            cfg.cpu.clone().unwrap_or_else(|| cpus.to_string()),
        );
        capacity.insert(
            "memory".to_string(),
            cfg.memory.clone().unwrap_or_else(|| format!("{mem_ki}Ki")),
        );
        capacity.insert("pods".to_string(), cfg.max_pods.to_string());
        let mut labels = HashMap::new();
        labels.insert("kubernetes.io/hostname".to_string(), name.to_string());
        labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        labels.insert(
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
        );
        for l in &cfg.node_labels {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("--node-labels: {l:?} is not key=value"))?;
            labels.insert(k.trim().to_string(), v.trim().to_string());
        }
        let mut taints = Vec::new();
        for t in &cfg.register_with_taints {
            let (kv, effect) = t.rsplit_once(':').with_context(|| {
                format!("--register-with-taints: {t:?} is not key[=value]:Effect")
            })?;
            let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
            taints.push(Taint {
                key: key.into(),
                value: value.into(),
                effect: effect.into(),
                ..Default::default()
            });
        }
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| "linux".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        Ok(NodeInfo {
            name: name.into(),
            ip: ip.into(),
            kubelet_port,
            capacity,
            labels,
            taints,
            pod_cidr: None,
            system: NodeSystemInfo {
                machine_id,
                boot_id,
                kernel_version: kernel,
                os_image,
                kubelet_version: format!("rkube-v{}", env!("CARGO_PKG_VERSION")),
                operating_system: "linux".into(),
                architecture: std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
                ..Default::default()
            },
        })
    }

    /// The node's status with a Ready condition as `ready` says.
    pub fn status(&self, ready: Result<(), String>, previous: Option<&NodeStatus>) -> NodeStatus {
        let t = now();
        let (status, reason, message) = match &ready {
            Ok(()) => (
                "True",
                "KubeletReady",
                "kubelet is posting ready status".to_string(),
            ),
            Err(why) => ("False", "KubeletNotReady", why.clone()),
        };
        let prev =
            |ty: &str| previous.and_then(|p| p.conditions.iter().find(|c| c.r#type == ty).cloned());
        let cond = |ty: &str, status: &str, reason: &str, message: String| {
            let transition = match prev(ty) {
                Some(c) if c.status == status => c.last_transition_time,
                _ => t.clone(),
            };
            NodeCondition {
                r#type: ty.into(),
                status: status.into(),
                last_heartbeat_time: t.clone(),
                last_transition_time: transition,
                reason: reason.into(),
                message,
            }
        };
        NodeStatus {
            capacity: self.capacity.clone(),
            allocatable: self.capacity.clone(),
            conditions: vec![
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available".into(),
                ),
                cond(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure".into(),
                ),
                cond(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available".into(),
                ),
                cond("Ready", status, reason, message),
            ],
            addresses: vec![
                NodeAddress {
                    r#type: "InternalIP".into(),
                    address: self.ip.clone(),
                },
                NodeAddress {
                    r#type: "Hostname".into(),
                    address: self.name.clone(),
                },
            ],
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: self.kubelet_port as i32,
                }),
            }),
            node_info: Some(self.system.clone()),
            ..Default::default()
        }
    }
}

/// Why the runtime is not ready, if it is not.
pub async fn runtime_ready(runtime: &mut RuntimeClient) -> Result<(), String> {
    let st = runtime
        .status(rt::StatusRequest { verbose: false })
        .await
        .map_err(|e| format!("container runtime is down: {}", e.message()))?
        .into_inner();
    for c in st.conditions {
        if !c.status {
            return Err(format!(
                "container runtime {} is false: {}{}",
                c.r#type,
                c.reason,
                if c.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.message)
                }
            ));
        }
    }
    Ok(())
}

/// Creates the Node, or (re-registering after a restart) refreshes its
/// status, addresses and our labels. Returns the stored Node.
pub async fn register(client: &Client, info: &NodeInfo, ready: Result<(), String>) -> Result<Node> {
    let node = Node {
        metadata: Some(ObjectMeta {
            name: info.name.clone(),
            labels: info.labels.clone(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            taints: info.taints.clone(),
            pod_cidr: info.pod_cidr.clone().unwrap_or_default(),
            pod_cidrs: info.pod_cidr.iter().cloned().collect(),
            ..Default::default()
        }),
        status: Some(info.status(ready.clone(), None)),
        ..Default::default()
    };
    match client.create(Object::from_body(Body::Node(node))).await {
        Ok(o) => match o.kind {
            Some(Body::Node(n)) => Ok(n),
            _ => anyhow::bail!("the API answered a create of Node with another kind"),
        },
        Err(s) if s.code() == Code::AlreadyExists => {
            for _ in 0..20 {
                let mut cur = client.get("Node", "", &info.name).await?;
                if let Some(Body::Node(n)) = cur.kind.as_mut() {
                    let meta = n.metadata.get_or_insert_with(Default::default);
                    let mut changed = false;
                    for (k, v) in &info.labels {
                        if meta.labels.get(k) != Some(v) {
                            meta.labels.insert(k.clone(), v.clone());
                            changed = true;
                        }
                    }
                    if changed {
                        match client.update(cur.clone()).await {
                            Ok(o) => cur = o,
                            Err(s) if s.code() == Code::Aborted => continue,
                            Err(s) => return Err(s.into()),
                        }
                    }
                }
                if let Some(Body::Node(n)) = cur.kind.as_mut() {
                    n.status = Some(info.status(ready.clone(), n.status.as_ref()));
                }
                match client.update_status(cur).await {
                    Ok(o) => match o.kind {
                        Some(Body::Node(n)) => return Ok(n),
                        _ => anyhow::bail!("unexpected kind"),
                    },
                    Err(s) if s.code() == Code::Aborted => continue,
                    Err(s) => return Err(s.into()),
                }
            }
            anyhow::bail!("could not update node {} (conflicts)", info.name)
        }
        Err(s) => Err(anyhow::Error::from(s).context(format!("registering node {}", info.name))),
    }
}

/// Waits until the control plane has given the node a pod CIDR.
pub async fn wait_pod_cidr(client: &Client, name: &str) -> String {
    let mut delay = Duration::from_millis(100);
    loop {
        match client.get("Node", "", name).await {
            Ok(o) => {
                if let Some(Body::Node(n)) = &o.kind {
                    let cidr = n
                        .spec
                        .as_ref()
                        .map(|s| s.pod_cidr.clone())
                        .unwrap_or_default();
                    if !cidr.is_empty() {
                        return cidr;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading our Node"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Posts the node's status every `period`, forever.
pub async fn status_loop(
    client: Client,
    mut runtime: RuntimeClient,
    info: NodeInfo,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ready = runtime_ready(&mut runtime).await;
        if let Err(e) = post_status(&client, &info, ready).await {
            tracing::warn!(error = %e, "node status update failed");
        }
    }
}

async fn post_status(client: &Client, info: &NodeInfo, ready: Result<(), String>) -> Result<()> {
    for _ in 0..5 {
        let mut cur = match client.get("Node", "", &info.name).await {
            Ok(c) => c,
            Err(s) if s.code() == Code::NotFound => {
                // Deleted under us (`rkubectl delete node`): register again,
                // as Kubernetes' kubelet does.
                register(client, info, ready.clone()).await?;
                return Ok(());
            }
            Err(s) => return Err(s.into()),
        };
        if let Some(Body::Node(n)) = cur.kind.as_mut() {
            n.status = Some(info.status(ready.clone(), n.status.as_ref()));
        }
        match client.update_status(cur).await {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == Code::Aborted => continue,
            Err(s) => return Err(s.into()),
        }
    }
    anyhow::bail!("node status: too many conflicts")
}

/// Renews the node's Lease forever.
pub async fn lease_loop(client: Client, name: String, duration_seconds: i32, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = renew(&client, &name, duration_seconds).await {
            tracing::warn!(error = %e, "lease renewal failed");
        }
    }
}

async fn renew(client: &Client, name: &str, duration_seconds: i32) -> Result<()> {
    match client.get("Lease", LEASE_NAMESPACE, name).await {
        Ok(mut lease) => {
            if let Some(Body::Lease(l)) = lease.kind.as_mut() {
                let spec = l.spec.get_or_insert_with(Default::default);
                spec.renew_time = now();
                spec.holder_identity = name.into();
                spec.lease_duration_seconds = Some(duration_seconds);
            }
            client.update(lease).await?;
        }
        Err(s) if s.code() == Code::NotFound => {
            let lease = Object::from_body(Body::Lease(Lease {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    namespace: LEASE_NAMESPACE.into(),
                    ..Default::default()
                }),
                spec: Some(LeaseSpec {
                    holder_identity: name.into(),
                    lease_duration_seconds: Some(duration_seconds),
                    renew_time: now(),
                    acquire_time: now(),
                    ..Default::default()
                }),
                ..Default::default()
            }));
            client.create(lease).await?;
        }
        Err(s) => return Err(s.into()),
    }
    Ok(())
}

/// The address of the interface that holds the default route.
pub fn default_ip() -> Option<String> {
    // A UDP "connect" picks the source address without sending anything.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    if ip.is_unspecified() {
        None
    } else {
        Some(ip.to_string())
    }
}
