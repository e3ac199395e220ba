//! Services and cluster DNS end to end on the node tier: real nodes (network
//! namespaces of this host, see integration/src/nodes.rs), each with its
//! runtime shim, kubelet and kube-proxy, under a 3-replica control plane;
//! pods with real IPs on each node's `cbr0`. Needs root, runc and the CNI
//! plugins; without them each test prints `RKUBE-SKIP: node: <why>` and
//! returns.
//!
//! Clients are busybox pods (`wget -q -O -`, `nslookup`; never `wget -T`,
//! which segfaults in busybox 1.35) and the test itself from inside a
//! node's namespace (a thread that `setns`es there). Every wait polls a
//! condition against a deadline.

use rkube_api::client::Client;
use rkube_api::manifest::decode_value;
use rkube_api::proto::{object::Kind as Body, ListRequest, Pod};
use rkube_integration::nodes::{http_get_now, in_netns, LocalNode, NodeNet, NodeOptions};
use rkube_integration::{bin, seed_dir, wait_for, Cluster, Options};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const START: Duration = Duration::from_secs(60);
/// How long a change (Endpoints, readiness) may take to reach the proxies.
const SETTLE: Duration = Duration::from_secs(30);

struct Bench {
    // Field order is drop order: nodes, then the control plane, then the
    // bridge.
    nodes: Vec<LocalNode>,
    cluster: Cluster,
    _net: NodeNet,
}

impl Bench {
    /// Nodes with a kube-proxy each, Ready, their proxies synced.
    async fn start(node_names: &[&str]) -> Option<Bench> {
        let net = NodeNet::create()?;
        let cluster = Cluster::start(Options {
            host: net.host_ip(),
            ..Default::default()
        })
        .await;
        let nodes = node_names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                LocalNode::start(
                    &net,
                    &cluster,
                    n,
                    i as u32 + 1,
                    NodeOptions::with_kube_proxy(),
                )
            })
            .collect();
        let b = Bench {
            nodes,
            cluster,
            _net: net,
        };
        for n in &b.nodes {
            b.wait_node_ready(&n.name).await;
        }
        for n in &b.nodes {
            wait_for(&format!("kube-proxy of {} synced", n.name), START, || {
                std::future::ready(n.proxy_synced().then_some(()))
            })
            .await;
        }
        Some(b)
    }

    fn client(&self) -> Client {
        self.cluster.client()
    }

    async fn wait_node_ready(&self, name: &str) {
        let c = self.client();
        wait_for(&format!("node {name} Ready with a pod CIDR"), START, || {
            let c = c.clone();
            async move {
                let o = c.get("Node", "", name).await.ok()?;
                let Some(Body::Node(n)) = o.kind else {
                    return None;
                };
                let ready = n
                    .status
                    .as_ref()?
                    .conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.status == "True");
                let cidr = n
                    .spec
                    .as_ref()
                    .map(|s| s.pod_cidr.clone())
                    .unwrap_or_default();
                (ready && !cidr.is_empty()).then_some(())
            }
        })
        .await;
    }

    async fn create(&self, v: serde_json::Value) -> rkube_api::Object {
        let obj = decode_value(v).expect("a valid manifest");
        self.client().create(obj).await.expect("create")
    }

    fn node(&self, name: &str) -> &LocalNode {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }

    fn node_mut(&mut self, name: &str) -> &mut LocalNode {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .expect("node")
    }

    async fn pod(&self, name: &str) -> Option<Pod> {
        match self.client().get("Pod", "default", name).await.ok()?.kind {
            Some(Body::Pod(p)) => Some(p),
            _ => None,
        }
    }

    /// Waits until `check` holds for the pod; returns it.
    async fn wait_pod<F>(&self, name: &str, what: &str, check: F) -> Pod
    where
        F: Fn(&Pod) -> bool,
    {
        let deadline = Instant::now() + START;
        let mut last = None;
        loop {
            if let Some(p) = self.pod(name).await {
                if check(&p) {
                    return p;
                }
                last = Some(p);
            }
            if Instant::now() > deadline {
                let shown = last
                    .map(|p| serde_json::to_string_pretty(&p.status).unwrap_or_default())
                    .unwrap_or_else(|| "(no such pod)".into());
                panic!("timed out waiting for pod {name}: {what}; its status:\n{shown}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_running(&self, name: &str) -> Pod {
        self.wait_pod(name, "Running and Ready", |p| {
            is_ready(p) && !ip_of(p).is_empty()
        })
        .await
    }

    /// The live (not terminating) pods matching `selector`.
    async fn pods(&self, selector: &str) -> Vec<Pod> {
        self.client()
            .list(ListRequest {
                kind: "Pod".into(),
                namespace: "default".into(),
                label_selector: selector.into(),
                ..Default::default()
            })
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter_map(|o| match o.kind {
                Some(Body::Pod(p)) => Some(p),
                _ => None,
            })
            .filter(|p| {
                p.metadata
                    .as_ref()
                    .is_some_and(|m| m.deletion_timestamp.is_empty())
            })
            .collect()
    }

    /// Waits until exactly `n` live pods match `selector`, all Running and
    /// Ready; returns them by name.
    async fn wait_replicas(&self, selector: &str, n: usize) -> BTreeMap<String, Pod> {
        wait_for(&format!("{n} ready pods {selector}"), START, || async {
            let pods = self.pods(selector).await;
            (pods.len() == n && pods.iter().all(|p| is_ready(p) && !ip_of(p).is_empty())).then(
                || {
                    pods.into_iter()
                        .map(|p| (name_of(&p), p))
                        .collect::<BTreeMap<_, _>>()
                },
            )
        })
        .await
    }

    /// The Endpoints' (ready, not ready) addresses.
    async fn endpoints(&self, ns: &str, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut ready = BTreeSet::new();
        let mut not_ready = BTreeSet::new();
        if let Ok(o) = self.client().get("Endpoints", ns, name).await {
            if let Some(Body::Endpoints(e)) = o.kind {
                for s in e.subsets {
                    ready.extend(s.addresses.into_iter().map(|a| a.ip));
                    not_ready.extend(s.not_ready_addresses.into_iter().map(|a| a.ip));
                }
            }
        }
        (ready, not_ready)
    }

    fn rkubectl(&self, args: &[&str]) -> rkube_integration::CmdResult {
        self.cluster.rkubectl(None, args)
    }

    fn exec(&self, pod: &str, cmd: &[&str]) -> rkube_integration::CmdResult {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(cmd);
        self.rkubectl(&args)
    }
}

fn name_of(p: &Pod) -> String {
    p.metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

fn ip_of(p: &Pod) -> String {
    p.status
        .as_ref()
        .map(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase == "Running"
            && s.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

fn service_ip_and_node_port(o: &rkube_api::Object) -> (String, i32) {
    let Some(Body::Service(s)) = &o.kind else {
        panic!("not a service: {o:?}")
    };
    let spec = s.spec.clone().unwrap_or_default();
    let node_port = spec.ports.first().map(|p| p.node_port).unwrap_or(0);
    (spec.cluster_ip, node_port)
}

/// The pod name in an echo answer (`pod: <name>` line).
fn echo_pod(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("pod: "))
        .map(|s| s.trim().to_string())
}

/// One GET from inside `node`'s namespace; the answering echo pod.
fn ask(node: &LocalNode, url: &str) -> Result<String, String> {
    let body = in_netns(&node.netns, url.to_string(), |u| http_get_now(&u))?;
    echo_pod(&body).ok_or_else(|| format!("not an echo answer: {body:?}"))
}

/// `n` sequential GETs from `node`; every one must be answered.
fn asks(node: &LocalNode, url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            ask(node, url)
                .unwrap_or_else(|e| panic!("request {i} from {} to {url}: {e}", node.name))
        })
        .collect()
}

/// Waits until requests from `node` reach exactly the pods `want` (a round
/// of 3×|want| requests, all answered, seeing each of them and no other).
async fn wait_serving_exactly(node: &LocalNode, url: &str, want: &BTreeSet<String>) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let got: Vec<Result<String, String>> =
            (0..want.len() * 3).map(|_| ask(node, url)).collect();
        let seen: BTreeSet<String> = got.iter().filter_map(|r| r.clone().ok()).collect();
        if got.iter().all(|r| r.is_ok()) && &seen == want {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "requests from {} to {url} still do not reach exactly {want:?}: {got:?}",
                node.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Round-robin, visibly: every run of `n` consecutive answers names `n`
/// different pods.
fn assert_round_robin(answers: &[String], n: usize) {
    for w in answers.windows(n) {
        let distinct: BTreeSet<&String> = w.iter().collect();
        assert_eq!(
            distinct.len(),
            n,
            "not round-robin over {n} pods: {answers:?}"
        );
    }
}

/// The echo pods named in a busybox client's output.
fn pods_in(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("pod: "))
        .map(|s| s.trim().to_string())
        .collect()
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            labels
                .iter()
                .all(|want| rest.contains(want))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The host pid of a pod's container (its runc state on the node).
fn container_pid(node: &LocalNode, pod: &Pod, container: &str) -> i32 {
    let id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.iter().find(|c| c.name == container))
        .map(|c| c.container_id.trim_start_matches("rkube://").to_string())
        .expect("a container id");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(node.dir.path().join("runc"))
        .args(["state", &id])
        .output()
        .expect("runc state");
    let state: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("runc state {id}: {e}"));
    state["pid"].as_i64().expect("a pid") as i32
}

/// Whether process `pid` has exited (a zombie or gone).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// What one request of a load loop saw.
struct Outcome {
    start: Instant,
    end: Instant,
    result: Result<String, String>,
}

/// Sequential GETs of `url` from inside `netns` until `stop` is set,
/// counting them in `done`.
fn load_loop(
    netns: String,
    url: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<Outcome>> {
    std::thread::spawn(move || {
        in_netns(&netns, (url, stop, done), |(url, stop, done)| {
            let mut out = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let start = Instant::now();
                let result = http_get_now(&url)
                    .and_then(|b| echo_pod(&b).ok_or_else(|| format!("not an echo answer: {b:?}")));
                out.push(Outcome {
                    start,
                    end: Instant::now(),
                    result,
                });
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok(out)
        })
        .expect("the load loop")
    })
}

fn echo_rc(replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "echo-rc"},
        "spec": {
            "replicas": replicas,
            "selector": {"app": "echo"},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "echo", "image": "echo",
                        "ports": [{"name": "http", "containerPort": 8080}],
                        // Ready unless a test marks the pod unready.
                        "readinessProbe": {
                            "exec": {"command": ["sh", "-c", "test ! -e /tmp/unready"]},
                            "periodSeconds": 1, "failureThreshold": 1
                        }
                    }]
                }
            }
        }
    })
}

/// A busybox pod that only sleeps (a client to exec in).
fn client_pod(name: &str, node: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
    })
}

/// Issue 6's "Done when" on real pods: a ClusterIP (here NodePort) Service
/// over an RC of echo pods on two nodes, each node running kube-proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_traffic_reaches_ready_pods_round_robin_through_scaling_kills_and_readiness() {
    let Some(b) = Bench::start(&["node-a", "node-b"]).await else {
        return;
    };
    b.create(echo_rc(3)).await;
    let svc = b
        .create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "echo-svc"},
            "spec": {"type": "NodePort", "selector": {"app": "echo"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        }))
        .await;
    let (cip, node_port) = service_ip_and_node_port(&svc);
    let o = cip.parse::<Ipv4Addr>().expect("a ClusterIP").octets();
    assert!(
        o[0] == 10 && o[1] & 0xf0 == 96,
        "{cip} is not in 10.96.0.0/12"
    );
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    let url = format!("http://{cip}:80/");
    b.create(client_pod("client", "node-b")).await;

    let pods = b.wait_replicas("app=echo", 3).await;
    let names: BTreeSet<String> = pods.keys().cloned().collect();
    let ips: BTreeSet<String> = pods.values().map(ip_of).collect();
    wait_for("Endpoints with the 3 pods", START, || async {
        (b.endpoints("default", "echo-svc").await.0 == ips).then_some(())
    })
    .await;

    // kubectl's shapes: get svc, get ep, describe svc.
    let out = b.rkubectl(&["get", "svc", "echo-svc"]).ok();
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..5],
        [
            "echo-svc",
            "NodePort",
            cip.as_str(),
            "<none>",
            format!("80:{node_port}/TCP").as_str()
        ],
        "{out}"
    );
    let out = b.rkubectl(&["get", "ep", "echo-svc"]).ok();
    assert!(out.starts_with("NAME"), "{out}");
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], "echo-svc", "{out}");
    let listed: BTreeSet<String> = row[1]
        .split(',')
        .map(|e| e.trim_end_matches(":8080").to_string())
        .collect();
    assert_eq!(listed, ips, "{out}");
    let out = b.rkubectl(&["describe", "svc", "echo-svc"]).ok();
    for want in [
        "Name:",
        "echo-svc",
        "Selector:",
        "app=echo",
        "Type:",
        "NodePort",
        &cip,
        "TargetPort:",
        &format!("{node_port}/TCP"),
        "Session Affinity:",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let ep_line = out
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_else(|| panic!("no Endpoints line in:\n{out}"));
    for ip in &ips {
        assert!(ep_line.contains(&format!("{ip}:8080")), "{ep_line}");
    }

    // From a node: every replica, in turn.
    let a = b.node("node-a");
    wait_serving_exactly(a, &url, &names).await;
    let answers = asks(a, &url, 12);
    assert_eq!(
        answers.iter().collect::<BTreeSet<_>>().len(),
        3,
        "{answers:?}"
    );
    assert_round_robin(&answers, 3);

    // From a pod (through its own node's proxy): every replica, in turn.
    let client_ip = ip_of(&b.wait_running("client").await);
    let out = b
        .exec(
            "client",
            &[
                "sh",
                "-c",
                &format!("for i in 1 2 3 4 5 6 7 8 9; do wget -q -O - {url} || echo FAILED; done"),
            ],
        )
        .ok();
    let seen = pods_in(&out);
    assert_eq!(seen.len(), 9, "{out}");
    // Userspace mode: the pods see the client's node (its cbr0 address for
    // a local pod, its own address for a remote one), not the client pod.
    let gateway = format!("{}.1", client_ip.rsplit_once('.').unwrap().0);
    let node_b = b.node("node-b").ip.clone();
    for l in out.lines().filter_map(|l| l.strip_prefix("client: ")) {
        let from = l.rsplit_once(':').unwrap().0;
        assert!(from == gateway || from == node_b, "client {from}: {out}");
    }
    assert_eq!(
        seen.iter().cloned().collect::<BTreeSet<_>>(),
        names,
        "{out}"
    );
    assert_round_robin(&seen, 3);

    // NodePort: on every node's address, from the host and from each node.
    for target in &b.nodes {
        let np = format!("http://{}:{node_port}/", target.ip);
        let body = wait_for(&format!("NodePort on {}", target.ip), SETTLE, || {
            std::future::ready(http_get_now(&np).ok())
        })
        .await;
        assert!(names.contains(&echo_pod(&body).unwrap()), "{body}");
        for from in &b.nodes {
            let got = asks(from, &np, 3);
            assert_eq!(
                got.iter().collect::<BTreeSet<_>>().len(),
                3,
                "{} -> {np}: {got:?}",
                from.name
            );
        }
    }

    // Scaling up adds the new pods to the rotation, scaling down removes
    // the deleted ones.
    b.rkubectl(&["scale", "rc", "echo-rc", "--replicas=5"]).ok();
    let five: BTreeSet<String> = b.wait_replicas("app=echo", 5).await.into_keys().collect();
    wait_serving_exactly(b.node("node-a"), &url, &five).await;
    wait_serving_exactly(b.node("node-b"), &url, &five).await;
    assert_round_robin(&asks(b.node("node-a"), &url, 10), 5);
    b.rkubectl(&["scale", "rc", "echo-rc", "--replicas=2"]).ok();
    let two: BTreeSet<String> = b.wait_replicas("app=echo", 2).await.into_keys().collect();
    assert!(two.is_subset(&five), "{two:?} {five:?}");
    wait_serving_exactly(b.node("node-a"), &url, &two).await;
    wait_serving_exactly(b.node("node-b"), &url, &two).await;
    b.rkubectl(&["scale", "rc", "echo-rc", "--replicas=3"]).ok();
    let pods = b.wait_replicas("app=echo", 3).await;
    let names: BTreeSet<String> = pods.keys().cloned().collect();
    wait_serving_exactly(b.node("node-a"), &url, &names).await;

    // A pod whose readiness probe fails gets no traffic; once it passes
    // again it is back in the rotation.
    let unready = names.iter().next().unwrap().clone();
    let unready_ip = ip_of(&pods[&unready]);
    b.exec(&unready, &["touch", "/tmp/unready"]).ok();
    b.wait_pod(&unready, "not Ready", |p| !is_ready(p)).await;
    wait_for("the unready pod in notReadyAddresses", SETTLE, || async {
        let (ready, not_ready) = b.endpoints("default", "echo-svc").await;
        (!ready.contains(&unready_ip) && not_ready.contains(&unready_ip)).then_some(())
    })
    .await;
    let rest: BTreeSet<String> = names.iter().filter(|n| **n != unready).cloned().collect();
    wait_serving_exactly(b.node("node-a"), &url, &rest).await;
    wait_serving_exactly(b.node("node-b"), &url, &rest).await;
    let answers = asks(b.node("node-a"), &url, 20);
    assert!(!answers.contains(&unready), "{answers:?}");
    let out = b
        .exec(
            "client",
            &[
                "sh",
                "-c",
                &format!("for i in 1 2 3 4 5 6 7 8; do wget -q -O - {url} || echo FAILED; done"),
            ],
        )
        .ok();
    assert!(!out.contains("FAILED") && !out.contains(&unready), "{out}");
    assert_eq!(pods_in(&out).len(), 8, "{out}");
    b.exec(&unready, &["rm", "/tmp/unready"]).ok();
    wait_serving_exactly(b.node("node-a"), &url, &names).await;

    // Under load from node A: one pod's process is killed (SIGKILL; the
    // kubelet restarts it), another pod is deleted (the RC replaces it).
    // Connections made after the kill all succeed: the proxy tries the
    // next endpoint when one refuses (the retry rule). Only a request in
    // flight at the instant of the kill may fail.
    let errors_before = metric(
        &b.node("node-a").proxy_metrics().unwrap_or_default(),
        "rkube_proxy_endpoint_errors_total",
        &["service=\"default/echo-svc\""],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load = load_loop(
        b.node("node-a").netns.clone(),
        url.clone(),
        stop.clone(),
        done.clone(),
    );
    let mut sorted = names.iter();
    let victim = sorted.next().unwrap().clone();
    let deleted = sorted.next().unwrap().clone();
    let victim_pod = b.pod(&victim).await.unwrap();
    let victim_node = victim_pod.spec.as_ref().unwrap().node_name.clone();
    wait_for("100 requests of load before the kill", START, || {
        std::future::ready((done.load(Ordering::SeqCst) >= 100).then_some(()))
    })
    .await;
    let pid = container_pid(b.node(&victim_node), &victim_pod, "echo");
    let kill_start = Instant::now();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
    // It has stopped accepting once it is a zombie (its sockets closed) or
    // gone; a connection the kernel accepted for it until then is reset.
    let kill_done = loop {
        if exited(pid) {
            break Instant::now();
        }
        assert!(kill_start.elapsed() < START, "{pid} survived SIGKILL");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    b.wait_pod(&victim, "restarted and Ready", |p| {
        is_ready(p)
            && p.status.as_ref().is_some_and(|s| {
                s.container_statuses
                    .iter()
                    .any(|c| c.name == "echo" && c.restart_count >= 1)
            })
    })
    .await;
    b.rkubectl(&["delete", "pod", &deleted]).ok();
    let after = b.wait_replicas("app=echo", 3).await;
    assert!(!after.contains_key(&deleted));
    let now_names: BTreeSet<String> = after.keys().cloned().collect();
    wait_serving_exactly(b.node("node-b"), &url, &now_names).await;
    stop.store(true, Ordering::SeqCst);
    let outcomes = load.join().expect("the load loop");
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    // In flight while the process was dying: started before it had exited,
    // ended after the kill was sent.
    let in_flight = |o: &&Outcome| o.start <= kill_done && o.end >= kill_start;
    let bad: Vec<String> = failed
        .iter()
        .filter(|o| !in_flight(o))
        .map(|o| {
            format!(
                "{:?} at +{:?} after the kill (exit seen at +{:?})",
                o.result,
                o.start.saturating_duration_since(kill_start),
                kill_done - kill_start
            )
        })
        .collect();
    let seen: BTreeSet<String> = outcomes
        .iter()
        .filter_map(|o| o.result.clone().ok())
        .collect();
    println!(
        "load: {} requests, {} failed ({} in flight at the kill)",
        outcomes.len(),
        failed.len(),
        failed.len() - bad.len()
    );
    assert!(outcomes.len() > 50, "only {} requests", outcomes.len());
    assert!(bad.is_empty(), "requests failed after the kill: {bad:?}");
    assert!(failed.len() <= 1, "{} requests failed", failed.len());
    assert!(
        seen.contains(&victim) && seen.contains(&deleted),
        "{seen:?}"
    );
    let errors_after = metric(
        &b.node("node-a").proxy_metrics().unwrap_or_default(),
        "rkube_proxy_endpoint_errors_total",
        &["service=\"default/echo-svc\""],
    );
    println!("endpoint errors absorbed by the retry rule: {errors_before} -> {errors_after}");
    // The retry rule was exercised: connections were refused by the killed
    // pod, and no client saw it.
    assert!(errors_after > errors_before, "no endpoint error seen");

    // sessionAffinity: ClientIP keeps each client on one pod (its expiry
    // is kube-proxy/tests/proxy.rs's).
    let mut svc = b
        .client()
        .get("Service", "default", "echo-svc")
        .await
        .unwrap();
    if let Some(Body::Service(s)) = &mut svc.kind {
        s.spec.as_mut().unwrap().session_affinity = "ClientIP".into();
    }
    b.client().update(svc).await.expect("update service");
    let sticky = wait_for("ClientIP affinity applied on node-a", SETTLE, || {
        let answers = asks(b.node("node-a"), &url, 6);
        let distinct: BTreeSet<String> = answers.iter().cloned().collect();
        std::future::ready((distinct.len() == 1).then_some(answers))
    })
    .await;
    assert_eq!(
        asks(b.node("node-a"), &url, 6),
        sticky,
        "a client left its pod"
    );
    let out = wait_for("ClientIP affinity applied on node-b", SETTLE, || {
        let out = b
            .exec(
                "client",
                &[
                    "sh",
                    "-c",
                    &format!("for i in 1 2 3 4 5 6; do wget -q -O - {url}; done"),
                ],
            )
            .ok();
        let seen: BTreeSet<String> = pods_in(&out).into_iter().collect();
        std::future::ready((pods_in(&out).len() == 6 && seen.len() == 1).then_some(out))
    })
    .await;
    assert!(!out.is_empty());

    // Everything goes; the nodes are left clean.
    b.rkubectl(&["delete", "rc", "echo-rc"]).ok();
    b.rkubectl(&["delete", "svc", "echo-svc"]).ok();
    b.rkubectl(&["delete", "pod", "client", "--now"]).ok();
    for n in ["node-a", "node-b"] {
        let node = b.node(n);
        wait_for(&format!("{n} clean"), START, || async {
            node.leftovers().is_empty().then_some(())
        })
        .await;
    }
}

// ------------------------------------------------------------------ DNS

/// A DNS query for `name` (type A, recursion desired).
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Skips a (possibly compressed) name at `i`; the offset after it.
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *m.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

/// The response code and A records of an answer to query `id`.
fn dns_answer(m: &[u8], id: u16) -> Result<(u8, Vec<Ipv4Addr>), String> {
    if m.len() < 12 || u16::from_be_bytes([m[0], m[1]]) != id {
        return Err(format!("not an answer to query {id}: {m:?}"));
    }
    let rcode = m[3] & 0x0f;
    let qd = u16::from_be_bytes([m[4], m[5]]);
    let an = u16::from_be_bytes([m[6], m[7]]);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(m, i).ok_or("truncated question")? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        i = skip_name(m, i).ok_or("truncated answer")?;
        let h = m.get(i..i + 10).ok_or("truncated answer")?;
        let (rtype, len) = (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[8], h[9]]) as usize,
        );
        let data = m.get(i + 10..i + 10 + len).ok_or("truncated rdata")?;
        if rtype == 1 && len == 4 {
            addrs.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        i += 10 + len;
    }
    Ok((rcode, addrs))
}

/// One A query to `server` over UDP (a single datagram, no retry: an
/// answer must come within a second) or TCP; the addresses.
fn dns_ask((server, name, tcp): (SocketAddr, String, bool)) -> Result<Vec<Ipv4Addr>, String> {
    use std::io::{Read, Write};
    let id: u16 = rand::random();
    let q = dns_query(id, &name);
    let t = Duration::from_secs(1);
    let answer = if tcp {
        let mut s = std::net::TcpStream::connect_timeout(&server, t).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(t)).ok();
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed).map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).map_err(|e| format!("tcp: {e}"))?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).map_err(|e| format!("tcp: {e}"))?;
        buf
    } else {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(t)).ok();
        s.send_to(&q, server).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        let n = s.recv(&mut buf).map_err(|e| format!("udp: {e}"))?;
        buf.truncate(n);
        buf
    };
    match dns_answer(&answer, id)? {
        (0, addrs) => Ok(addrs),
        (rcode, _) => Err(format!("rcode {rcode}")),
    }
}

/// `name`'s A records asked from inside `node`'s namespace.
fn lookup_from(
    node: &LocalNode,
    server: &str,
    name: &str,
    tcp: bool,
) -> Result<Vec<Ipv4Addr>, String> {
    let server: SocketAddr = server.parse().expect("server address");
    in_netns(&node.netns, (server, name.to_string(), tcp), dns_ask)
}

const DNS_IP: &str = "10.96.0.10";

/// Starts a `dns` replica in `node`'s namespace, answering on the node's
/// address (like a host-network pod), with no upstream.
async fn start_dns(node: &mut LocalNode, servers: &str) {
    let args: Vec<String> = [
        "--server",
        servers,
        "--listen",
        &format!("{}:53", node.ip),
        "--metrics-listen",
        "127.0.0.1:9153",
        // No upstream: names outside the zone SERVFAIL, nothing leaves.
        "--resolv-conf",
        "/dev/null",
        "--udp-sockets",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    node.start_process("dns", &bin("dns"), &args);
    let netns = node.netns.clone();
    wait_for(&format!("dns on {} ready", node.name), START, || {
        std::future::ready(
            in_netns(&netns, (), |_| http_get_now("http://127.0.0.1:9153/readyz")).ok(),
        )
    })
    .await;
}

/// Issue 5's "Done when" from inside a pod: two `dns` replicas behind the
/// `kube-dns` Service at 10.96.0.10 (udp+tcp 53) through kube-proxy; a
/// busybox pod resolves `nginx-svc` by its short name (the kubelet's search
/// list) and its full name, and reaches nginx by name; losing a replica
/// loses no lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_dns_from_a_pod_through_the_kube_dns_service_survives_a_replica() {
    let Some(mut b) = Bench::start(&["node-a", "node-b"]).await else {
        return;
    };
    let servers = b.cluster.addresses();
    for n in ["node-a", "node-b"] {
        start_dns(b.node_mut(n), &servers).await;
    }
    let replica_ips: Vec<String> = b.nodes.iter().map(|n| n.ip.clone()).collect();

    // The kube-dns Service: no selector, its Endpoints name the replicas.
    let svc = b
        .create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": DNS_IP, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}
        }))
        .await;
    assert_eq!(service_ip_and_node_port(&svc).0, DNS_IP);
    let dns_endpoints = |ips: &[String]| {
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "subsets": [{
                "addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                          {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
            }]
        })
    };
    b.create(dns_endpoints(&replica_ips)).await;

    // The seed's nginx RC behind nginx-svc.
    let manifest = seed_dir().join("manifests/nginx-rc.yml");
    b.rkubectl(&["create", "-f", manifest.to_str().unwrap()])
        .ok();
    let svc = b
        .create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "nginx-svc"},
            "spec": {"selector": {"app": "nginx-app"}, "ports": [{"port": 80}]}
        }))
        .await;
    let (nginx_ip, _) = service_ip_and_node_port(&svc);
    let nginx_addr: Ipv4Addr = nginx_ip.parse().unwrap();
    let fqdn = "nginx-svc.default.svc.cluster.local";
    b.wait_replicas("app=nginx-app", 3).await;

    // From each node, through the Service, over UDP and TCP.
    let dns = format!("{DNS_IP}:53");
    for n in &b.nodes {
        for tcp in [false, true] {
            let got = wait_for(
                &format!("{fqdn} from {} (tcp: {tcp})", n.name),
                SETTLE,
                || std::future::ready(lookup_from(n, &dns, fqdn, tcp).ok()),
            )
            .await;
            assert_eq!(got, [nginx_addr]);
        }
    }

    // From a pod: the kubelet's resolv.conf points at the Service.
    b.create(client_pod("dnsclient", "node-b")).await;
    b.wait_running("dnsclient").await;
    let resolv = b.exec("dnsclient", &["cat", "/etc/resolv.conf"]).ok();
    assert!(resolv.contains(&format!("nameserver {DNS_IP}")), "{resolv}");
    // The short name through the search list. busybox's nslookup asks every
    // search domain at once and prints each answer; it exits 1 because the
    // other expansions (nginx-svc.svc.cluster.local, ...) are NXDOMAIN
    // (docs/platform.md), so only its output is checked.
    let short = b.exec("dnsclient", &["nslookup", "nginx-svc"]);
    println!(
        "nslookup nginx-svc (exit {}):\n{}{}",
        short.code, short.stdout, short.stderr
    );
    assert!(
        short.stdout.contains(&format!("Name:\t{fqdn}"))
            && short.stdout.contains(&format!("Address: {nginx_ip}")),
        "nslookup nginx-svc:\n{}\n{}",
        short.stdout,
        short.stderr
    );
    let full = b.exec("dnsclient", &["nslookup", fqdn]).ok();
    assert!(full.contains(&format!("Address: {nginx_ip}")), "{full}");
    // A name that does not exist is NXDOMAIN.
    let missing = b.exec(
        "dnsclient",
        &["nslookup", "no-such-svc.default.svc.cluster.local"],
    );
    assert!(
        missing.code != 0 && missing.stdout.contains("NXDOMAIN"),
        "{missing:?}"
    );
    // wget by name reaches nginx through its Service (glibc's resolver in
    // static busybox, ndots:5, first search domain).
    let page = b
        .exec("dnsclient", &["wget", "-q", "-O", "-", "http://nginx-svc/"])
        .ok();
    assert!(page.contains("Welcome to nginx"), "{page}");

    // One replica dies (its Endpoints still name it, as until a controller
    // noticed): every lookup is still answered, the proxy sending queries
    // the dead replica refuses to the other one.
    b.node_mut("node-a").stop_process("dns");
    // (A few: each refusal is an ICMP port unreachable, which the kernel
    // rate-limits per peer.)
    for i in 0..3 {
        for n in &b.nodes {
            for tcp in [false, true] {
                let got = lookup_from(n, &dns, fqdn, tcp).unwrap_or_else(|e| {
                    panic!(
                        "lookup {i} from {} (tcp: {tcp}) after a replica died: {e}",
                        n.name
                    )
                });
                assert_eq!(got, [nginx_addr]);
            }
        }
    }
    for i in 0..4 {
        let t0 = Instant::now();
        let out = b.exec("dnsclient", &["nslookup", fqdn]);
        assert!(
            out.code == 0 && out.stdout.contains(&format!("Address: {nginx_ip}")),
            "nslookup {i} after a replica died: {out:?}"
        );
        println!("nslookup {i} with one replica dead: {:?}", t0.elapsed());
    }
    let page = b
        .exec("dnsclient", &["wget", "-q", "-O", "-", "http://nginx-svc/"])
        .ok();
    assert!(page.contains("Welcome to nginx"), "{page}");
    // The proxies did meet the dead replica (and absorbed it).
    let refusals: f64 = b
        .nodes
        .iter()
        .map(|n| {
            metric(
                &n.proxy_metrics().unwrap_or_default(),
                "rkube_proxy_endpoint_errors_total",
                &["service=\"kube-system/kube-dns\""],
            )
        })
        .sum();
    println!("kube-dns endpoint errors absorbed by the proxies: {refusals}");
    assert!(refusals > 0.0, "no query met the dead replica");

    // The dead replica leaves the Endpoints: still answered.
    let mut ep = decode_value(dns_endpoints(&replica_ips[1..])).unwrap();
    let cur = b
        .client()
        .get("Endpoints", "kube-system", "kube-dns")
        .await
        .unwrap();
    if let (Some(Body::Endpoints(new)), Some(Body::Endpoints(old))) = (&mut ep.kind, &cur.kind) {
        new.metadata = old.metadata.clone();
    }
    b.client().update(ep).await.expect("update endpoints");
    let out = b.exec("dnsclient", &["nslookup", fqdn]).ok();
    assert!(out.contains(&format!("Address: {nginx_ip}")), "{out}");
}
