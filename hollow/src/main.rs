//! hollow-nodes: registers simulated nodes with the control plane, renews
//! their leases and reports the pods bound to them as Running and Ready,
//! without running anything (like Kubernetes' kubemark). For tests and
//! benchmarks of the scheduler and controllers; it is not a kubelet.
//!
//! Like a kubelet, it finishes graceful deletions: a pod bound to one of its
//! nodes that gets a deletionTimestamp has no containers to stop, so it is
//! deleted at once with grace 0 and a uid precondition (also with
//! `--no-pod-status`).
//!
//! One process can simulate thousands of nodes. Killing the process (or
//! SIGSTOP) is a power failure of all its nodes; tests run one process per
//! node to fail one node at a time. The pod IPs it reports are fictitious
//! addresses from each node's podCIDR: nothing listens there.

use anyhow::{Context, Result};
use clap::Parser;
use rkube_api::client::Client;
use rkube_api::proto::{
    object::Kind as Body, ContainerState, ContainerStateRunning, ContainerStatus, DeleteRequest,
    Lease, LeaseSpec, ListRequest, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus,
    NodeSystemInfo, ObjectMeta, PodCondition, PodIp, Preconditions, WatchRequest,
};
use rkube_api::Object;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

#[derive(Parser, Debug, Clone)]
#[command(about = "Simulated nodes for tests and benchmarks (not a kubelet)")]
struct Args {
    /// Control-plane addresses, comma separated.
    #[arg(short = 's', long, env = "RKUBE_SERVER", default_value = rkube_api::client::DEFAULT_SERVERS)]
    server: String,
    /// A kubeconfig (made by `rkube-pki init`): TLS, credentials and the
    /// replicas; without it --server is dialled in plaintext.
    #[arg(long, env = "RKUBE_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Node names, comma separated (overrides --count/--prefix).
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    /// How many nodes, named <prefix><index>.
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[arg(long, default_value = "hollow-")]
    prefix: String,
    /// First index for generated names and pod CIDRs.
    #[arg(long, default_value_t = 0)]
    start_index: usize,
    /// Lease renewal period, seconds.
    #[arg(long, default_value_t = 1.0)]
    heartbeat: f64,
    /// Extra labels for every node, k=v comma separated.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    #[arg(long, default_value = "4")]
    cpu: String,
    #[arg(long, default_value = "16Gi")]
    memory: String,
    #[arg(long, default_value = "110")]
    pods: String,
    /// Do not report bound pods as Running (scheduler benchmarks measure
    /// binding only and spare the store the status writes). Graceful
    /// deletions are still finished.
    #[arg(long)]
    no_pod_status: bool,
}

struct HollowNode {
    name: String,
    index: usize,
    next_ip: std::sync::atomic::AtomicU32,
}

impl HollowNode {
    fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.index % 256)
    }

    fn host_ip(&self) -> String {
        format!("192.0.2.{}", self.index % 250 + 1)
    }

    fn next_pod_ip(&self) -> String {
        let n = self
            .next_ip
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("10.244.{}.{}", self.index % 256, n % 250 + 2)
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn node_object(n: &HollowNode, args: &Args) -> Object {
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert("kubernetes.io/hostname".into(), n.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("rkube.io/hollow".into(), "true".into());
    for l in &args.labels {
        if let Some((k, v)) = l.split_once('=') {
            labels.insert(k.into(), v.into());
        }
    }
    let resources: HashMap<String, String> = [
        ("cpu".to_string(), args.cpu.clone()),
        ("memory".to_string(), args.memory.clone()),
        ("pods".to_string(), args.pods.clone()),
    ]
    .into();
    Object::from_body(Body::Node(Node {
        metadata: Some(ObjectMeta {
            name: n.name.clone(),
            labels,
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            pod_cidr: n.pod_cidr(),
            pod_cidrs: vec![n.pod_cidr()],
            ..Default::default()
        }),
        status: Some(ready_status(n, &resources)),
        ..Default::default()
    }))
}

fn ready_status(n: &HollowNode, resources: &HashMap<String, String>) -> NodeStatus {
    let t = now();
    NodeStatus {
        capacity: resources.clone(),
        allocatable: resources.clone(),
        conditions: vec![NodeCondition {
            r#type: "Ready".into(),
            status: "True".into(),
            last_heartbeat_time: t.clone(),
            last_transition_time: t,
            reason: "KubeletReady".into(),
            message: "hollow node is posting ready status".into(),
        }],
        addresses: vec![
            NodeAddress {
                r#type: "InternalIP".into(),
                address: n.host_ip(),
            },
            NodeAddress {
                r#type: "Hostname".into(),
                address: n.name.clone(),
            },
        ],
        node_info: Some(NodeSystemInfo {
            kubelet_version: "hollow".into(),
            container_runtime_version: "hollow://0".into(),
            operating_system: "linux".into(),
            architecture: "amd64".into(),
            os_image: "hollow".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the node, or marks an existing one Ready again.
async fn register(c: &Client, n: &HollowNode, args: &Args) -> Result<()> {
    let obj = node_object(n, args);
    match c.create(obj.clone()).await {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => {
            for _ in 0..10 {
                let mut cur = c.get("Node", "", &n.name).await?;
                cur.take_status_from(&obj);
                match c.update_status(cur).await {
                    Ok(_) => return Ok(()),
                    Err(s) if s.code() == Code::Aborted => continue,
                    Err(s) => return Err(s.into()),
                }
            }
            anyhow::bail!("could not update node {}", n.name)
        }
        Err(s) => Err(s.into()),
    }
}

/// Renews the node's lease forever.
async fn heartbeat(c: Client, n: Arc<HollowNode>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        if let Err(e) = renew(&c, &n).await {
            tracing::warn!(node = %n.name, error = %e, "lease renewal failed");
        }
    }
}

async fn renew(c: &Client, n: &HollowNode) -> Result<()> {
    match c.get("Lease", "kube-node-lease", &n.name).await {
        Ok(mut lease) => {
            if let Some(Body::Lease(l)) = lease.kind.as_mut() {
                let spec = l.spec.get_or_insert_with(Default::default);
                spec.renew_time = now();
                spec.holder_identity = n.name.clone();
            }
            c.update(lease).await?;
        }
        Err(s) if s.code() == Code::NotFound => {
            let lease = Object::from_body(Body::Lease(Lease {
                metadata: Some(ObjectMeta {
                    name: n.name.clone(),
                    namespace: "kube-node-lease".into(),
                    ..Default::default()
                }),
                spec: Some(LeaseSpec {
                    holder_identity: n.name.clone(),
                    lease_duration_seconds: Some(40),
                    renew_time: now(),
                    ..Default::default()
                }),
                ..Default::default()
            }));
            c.create(lease).await?;
        }
        Err(s) => return Err(s.into()),
    }
    Ok(())
}

/// What the pod loop does with the pods bound to our nodes.
#[derive(Clone)]
struct Pods {
    nodes: Arc<HashMap<String, Arc<HollowNode>>>,
    /// Report pods Running and Ready (off with --no-pod-status).
    report_status: bool,
    /// Uids whose final delete is under way.
    finishing: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl Pods {
    /// Acts on one pod as seen in a list or watch event.
    fn handle(&self, c: &Client, p: Object) {
        let Some(Body::Pod(pod)) = p.kind.as_ref() else {
            return;
        };
        let on_ours = pod
            .spec
            .as_ref()
            .is_some_and(|s| self.nodes.contains_key(&s.node_name));
        if !on_ours {
            return;
        }
        let meta = pod.metadata.clone().unwrap_or_default();
        if !meta.deletion_timestamp.is_empty() {
            if self.finishing.lock().unwrap().insert(meta.uid.clone()) {
                let (c, finishing) = (c.clone(), self.finishing.clone());
                tokio::spawn(async move {
                    finish_pod(&c, &meta).await;
                    finishing.lock().unwrap().remove(&meta.uid);
                });
            }
            return;
        }
        if self.report_status {
            tokio::spawn(start_pod(c.clone(), self.nodes.clone(), p));
        }
    }
}

/// Completes a graceful deletion, as a kubelet does once the pod's
/// containers are stopped (a hollow pod has none): delete with grace 0 and
/// the pod's uid as precondition. Retries transient failures; NotFound (it
/// is gone) and Aborted (a namesake replaced it) end it.
async fn finish_pod(c: &Client, meta: &ObjectMeta) {
    let req = DeleteRequest {
        kind: "Pod".into(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        propagation_policy: String::new(),
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: String::new(),
        }),
        grace_period_seconds: Some(0),
    };
    let mut backoff = Duration::from_millis(50);
    for attempt in 0..60 {
        match c.delete(req.clone()).await {
            Ok(_) => return,
            Err(s) if matches!(s.code(), Code::NotFound | Code::Aborted) => return,
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable
                        | Code::DeadlineExceeded
                        | Code::Internal
                        | Code::Unknown
                        | Code::ResourceExhausted
                ) =>
            {
                tracing::debug!(pod = %meta.name, error = %s, attempt, "final delete failed; retrying");
            }
            Err(s) => {
                tracing::warn!(pod = %meta.name, error = %s, "final delete refused");
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    tracing::warn!(pod = %meta.name, "giving up on a final delete");
}

/// Reports every pod bound to one of our nodes as Running and Ready, and
/// finishes the deletion of those being deleted.
async fn run_pods(c: Client, pods: Pods) {
    loop {
        if let Err(e) = watch_pods(&c, &pods).await {
            tracing::debug!(error = %e, "pod watch ended; relisting");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn watch_pods(c: &Client, pods: &Pods) -> Result<()> {
    let list = c
        .list(ListRequest {
            kind: "Pod".into(),
            field_selector: "spec.nodeName!=".into(),
            ..Default::default()
        })
        .await?;
    for p in list.items {
        pods.handle(c, p);
    }
    let mut stream = c
        .watch(WatchRequest {
            kind: "Pod".into(),
            field_selector: "spec.nodeName!=".into(),
            resource_version: list.resource_version,
            ..Default::default()
        })
        .await?;
    while let Some(ev) = stream.next().await {
        let ev = ev?;
        if ev.r#type == "DELETED" {
            continue;
        }
        if let Some(p) = ev.object {
            pods.handle(c, p);
        }
    }
    Ok(())
}

async fn start_pod(c: Client, nodes: Arc<HashMap<String, Arc<HollowNode>>>, mut obj: Object) {
    let Some(Body::Pod(pod)) = obj.kind.as_mut() else {
        return;
    };
    let node_name = pod
        .spec
        .as_ref()
        .map(|s| s.node_name.clone())
        .unwrap_or_default();
    let Some(node) = nodes.get(&node_name) else {
        return;
    };
    let deleting = pod
        .metadata
        .as_ref()
        .is_some_and(|m| !m.deletion_timestamp.is_empty());
    let status = pod.status.get_or_insert_with(Default::default);
    if deleting || status.phase == "Running" || status.phase == "Succeeded" {
        return;
    }
    let t = now();
    status.phase = "Running".into();
    status.host_ip = node.host_ip();
    status.pod_ip = node.next_pod_ip();
    status.pod_ips = vec![PodIp {
        ip: status.pod_ip.clone(),
    }];
    status.start_time = t.clone();
    let scheduled = status
        .conditions
        .iter()
        .find(|c| c.r#type == "PodScheduled")
        .cloned();
    status.conditions = ["Initialized", "Ready", "ContainersReady"]
        .iter()
        .map(|ty| PodCondition {
            r#type: ty.to_string(),
            status: "True".into(),
            last_transition_time: t.clone(),
            ..Default::default()
        })
        .chain(scheduled)
        .collect();
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    if let Some(st) = pod.status.as_mut() {
        st.container_statuses = containers
            .iter()
            .map(|ct| ContainerStatus {
                name: ct.name.clone(),
                ready: true,
                started: Some(true),
                image: ct.image.clone(),
                container_id: format!("hollow://{}", ct.name),
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: t.clone(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
    }
    let (ns, name) = (obj.namespace().to_string(), obj.name().to_string());
    let mut obj = obj;
    // A write can fail or have an unknown outcome (a leader change); no
    // further event may come for this pod, so retry until it sticks.
    for attempt in 0..20 {
        match c.update_status(obj.clone()).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, attempt, "pod status update failed; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        match c.get("Pod", &ns, &name).await {
            Ok(cur) => {
                let running = matches!(&cur.kind, Some(Body::Pod(p))
                    if p.status.as_ref().is_some_and(|s| s.phase == "Running"));
                if running {
                    return;
                }
                // Keep our status, on the current version.
                let mut next = cur;
                next.take_status_from(&obj);
                obj = next;
            }
            Err(_) => return, // deleted
        }
    }
}

fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let names: Vec<String> = if args.names.is_empty() {
        (0..args.count)
            .map(|i| format!("{}{}", args.prefix, args.start_index + i))
            .collect()
    } else {
        args.names.clone()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = Client::for_daemon(args.kubeconfig.as_deref(), &args.server)
            .map_err(anyhow::Error::msg)?;
        let nodes: HashMap<String, Arc<HollowNode>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.clone(),
                    Arc::new(HollowNode {
                        name: n.clone(),
                        index: args.start_index + i + 1,
                        next_ip: Default::default(),
                    }),
                )
            })
            .collect();
        let nodes = Arc::new(nodes);
        // Register with bounded parallelism (thousands of nodes).
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut regs = Vec::new();
        for n in nodes.values() {
            let (c, n, a, sem) = (client.clone(), n.clone(), args.clone(), sem.clone());
            regs.push(tokio::spawn(async move {
                let _p = sem.acquire().await;
                register(&c, &n, &a)
                    .await
                    .with_context(|| format!("registering node {}", n.name))
            }));
        }
        for r in regs {
            r.await??;
        }
        tracing::info!(nodes = nodes.len(), "hollow nodes registered");
        let period = Duration::from_secs_f64(args.heartbeat.max(0.05));
        for n in nodes.values() {
            tokio::spawn(heartbeat(client.clone(), n.clone(), period));
        }
        tokio::spawn(run_pods(
            client.clone(),
            Pods {
                nodes: nodes.clone(),
                report_status: !args.no_pod_status,
                finishing: Default::default(),
            },
        ));
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}
