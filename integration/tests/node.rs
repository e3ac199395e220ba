//! The node tier: real kubelets and runtime shims on nodes that are network
//! namespaces of this host (see integration/src/nodes.rs), under a real
//! 3-replica control plane. Needs root, runc and the CNI plugins; without
//! them each test prints `RKUBE-SKIP: node: <why>` and returns.

use rkube_api::client::Client;
use rkube_api::manifest::decode_value;
use rkube_api::proto::{object::Kind as Body, DeleteRequest, ListRequest, Pod};
use rkube_integration::nodes::{LocalNode, NodeNet, NodeOptions};
use rkube_integration::{seed_dir, wait_for, Cluster, Options};
use serde_json::json;
use std::time::Duration;

const START: Duration = Duration::from_secs(60);

struct Bench {
    // Field order is drop order: nodes, then the control plane, then the
    // bridge.
    nodes: Vec<LocalNode>,
    cluster: Cluster,
    _net: NodeNet,
}

impl Bench {
    async fn start(node_names: &[&str]) -> Option<Bench> {
        let net = NodeNet::create()?;
        let cluster = Cluster::start(Options {
            host: net.host_ip(),
            extra_args: vec![
                "--node-monitor-grace-period".into(),
                "6".into(),
                "--pod-eviction-timeout".into(),
                "4".into(),
            ],
            ..Default::default()
        })
        .await;
        let nodes = node_names
            .iter()
            .enumerate()
            .map(|(i, n)| LocalNode::start(&net, &cluster, n, i as u32 + 1, NodeOptions::default()))
            .collect();
        let b = Bench {
            nodes,
            cluster,
            _net: net,
        };
        for n in &b.nodes {
            b.wait_node_ready(&n.name).await;
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

    async fn create(&self, v: serde_json::Value) {
        let obj = decode_value(v).expect("a valid manifest");
        self.client().create(obj).await.expect("create");
    }

    async fn pod(&self, name: &str) -> Option<Pod> {
        match self.client().get("Pod", "default", name).await.ok()?.kind {
            Some(Body::Pod(p)) => Some(p),
            _ => None,
        }
    }

    /// Waits until `check` holds for the pod; returns it. On timeout the
    /// failure shows the pod as last seen.
    async fn wait_pod<F>(&self, name: &str, what: &str, timeout: Duration, check: F) -> Pod
    where
        F: Fn(&Pod) -> bool,
    {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(p) = self.pod(name).await {
                if check(&p) {
                    return p;
                }
                last = Some(p);
            }
            if std::time::Instant::now() > deadline {
                let shown = last
                    .map(|p| serde_json::to_string_pretty(&p.status).unwrap_or_default())
                    .unwrap_or_else(|| "(no such pod)".into());
                panic!("timed out after {timeout:?} waiting for pod {name}: {what}; its status:\n{shown}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_running(&self, name: &str) -> Pod {
        self.wait_pod(name, "Running and Ready", START, |p| {
            let st = p.status.clone().unwrap_or_default();
            st.phase == "Running"
                && !st.pod_ip.is_empty()
                && st
                    .conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.status == "True")
        })
        .await
    }

    async fn delete(&self, name: &str) {
        let _ = self
            .client()
            .delete(DeleteRequest {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: name.into(),
                ..Default::default()
            })
            .await;
    }

    async fn wait_gone(&self, name: &str) {
        let c = self.client();
        wait_for(&format!("pod {name} gone"), START, || {
            let c = c.clone();
            async move { c.get("Pod", "default", name).await.is_err().then_some(()) }
        })
        .await;
    }

    fn node(&self, name: &str) -> &LocalNode {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }
}

fn ip_of(p: &Pod) -> String {
    p.status
        .as_ref()
        .map(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

fn node_of(p: &Pod) -> String {
    p.spec
        .as_ref()
        .map(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn container<'a>(p: &'a Pod, name: &str) -> Option<&'a rkube_api::proto::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .iter()
        .find(|c| c.name == name)
}

fn pinned(name: &str, node: &str, containers: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": name}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2, "containers": containers}
    })
}

/// The container log of a pod's container on its node (the kubelet's
/// /var/log/pods layout).
fn log_of(node: &LocalNode, pod: &Pod, container: &str) -> String {
    let m = pod.metadata.clone().unwrap_or_default();
    let dir = node
        .dir
        .path()
        .join("pods")
        .join(format!("default_{}_{}", m.name, m.uid))
        .join(container);
    let mut out = String::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut files: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            out.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_on_real_nodes_and_reach_each_other_without_nat() {
    let Some(b) = Bench::start(&["node-a", "node-b"]).await else {
        return;
    };
    let c = b.client();

    // Distinct pod CIDRs, allocated by the control plane.
    let cidrs: Vec<String> = c
        .list(ListRequest {
            kind: "Node".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Body::Node(n)) => n.spec.map(|s| s.pod_cidr),
            _ => None,
        })
        .collect();
    assert_eq!(cidrs.len(), 2);
    assert_ne!(cidrs[0], cidrs[1], "{cidrs:?}");

    // The seed's nginx pod, scheduled by the scheduler, serves HTTP on its
    // pod IP to its own node and to the other node.
    let manifest = seed_dir().join("manifests/nginx-pod.yml");
    b.cluster
        .rkubectl(None, &["create", "-f", manifest.to_str().unwrap()])
        .ok();
    let nginx = b.wait_running("nginx-pod").await;
    let ip = ip_of(&nginx);
    let home = node_of(&nginx);
    assert!(!home.is_empty());
    for n in &b.nodes {
        let body = wait_for(
            &format!("nginx answering {} on {ip}", n.name),
            START,
            || async { n.http_get(&format!("http://{ip}/")) },
        )
        .await;
        assert!(body.contains("Welcome to nginx"), "{}: {body}", n.name);
    }
    let wide = b
        .cluster
        .rkubectl(None, &["get", "pod", "nginx-pod", "-o", "wide"])
        .ok();
    assert!(wide.contains(&ip) && wide.contains(&home), "{wide}");

    // A pod on node A reaches a pod on node B by IP, and the server sees the
    // client pod's own address.
    b.create(pinned(
        "echo",
        "node-b",
        json!([{"name": "echo", "image": "echo", "ports": [{"containerPort": 8080}]}]),
    ))
    .await;
    let echo = b.wait_running("echo").await;
    let echo_ip = ip_of(&echo);
    let script =
        format!("while true; do wget -q -O - http://{echo_ip}:8080/ && echo; sleep 0.5; done");
    b.create(pinned(
        "client",
        "node-a",
        json!([{"name": "client", "image": "busybox", "command": ["sh", "-c", script]}]),
    ))
    .await;
    let client = b.wait_running("client").await;
    let client_ip = ip_of(&client);
    let seen = wait_for(
        "the echo server's answer in the client's log",
        START,
        || async {
            let log = log_of(b.node("node-a"), &client, "client");
            log.contains("echo").then_some(log)
        },
    )
    .await;
    assert!(
        seen.contains(&client_ip),
        "the server saw another address than {client_ip}: {seen}"
    );

    // Two containers of one pod share localhost; a second server on the
    // same port fails with the reason in its status.
    b.create(pinned(
        "pair",
        "node-a",
        json!([
            {"name": "web", "image": "nginx"},
            {"name": "side", "image": "busybox", "command": ["sh", "-c", "while true; do wget -q -O - http://127.0.0.1:80/ | head -c 200; echo; sleep 1; done"]}
        ]),
    ))
    .await;
    let pair = b.wait_running("pair").await;
    wait_for(
        "the sidecar reaching nginx over localhost",
        START,
        || async {
            log_of(b.node("node-a"), &pair, "side")
                .contains("nginx")
                .then_some(())
        },
    )
    .await;
    b.create(pinned(
        "clash",
        "node-b",
        json!([{"name": "one", "image": "nginx"}, {"name": "two", "image": "nginx"}]),
    ))
    .await;
    let clash = b
        .wait_pod(
            "clash",
            "a container failing on the taken port",
            START,
            |p| {
                p.status.as_ref().is_some_and(|s| {
                    s.container_statuses.iter().any(|c| {
                        let t = c
                            .last_state
                            .as_ref()
                            .and_then(|s| s.terminated.clone())
                            .or_else(|| c.state.as_ref().and_then(|s| s.terminated.clone()));
                        t.is_some_and(|t| t.message.contains("Address already in use"))
                    })
                })
            },
        )
        .await;
    let statuses = clash.status.unwrap().container_statuses;
    let failed_on_port = |c: &rkube_api::proto::ContainerStatus| {
        [c.state.as_ref(), c.last_state.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|s| s.terminated.as_ref())
            .any(|t| t.message.contains("Address already in use"))
    };
    let bad: Vec<_> = statuses.iter().filter(|c| failed_on_port(c)).collect();
    assert_eq!(
        bad.len(),
        1,
        "exactly one nginx fails on the taken port: {statuses:?}"
    );
    let good = statuses.iter().find(|c| !failed_on_port(c)).unwrap();
    assert_eq!(good.restart_count, 0, "{good:?}");
    assert!(
        good.state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .is_some(),
        "{good:?}"
    );

    // Restarting the kubelet restarts no container.
    let mut ids = Vec::new();
    for n in ["nginx-pod", "echo", "client", "pair"] {
        let p = b.pod(n).await.unwrap();
        for cs in &p.status.as_ref().unwrap().container_statuses {
            ids.push((
                n.to_string(),
                cs.name.clone(),
                cs.container_id.clone(),
                cs.restart_count,
            ));
        }
    }
    let mut b = b;
    for n in b.nodes.iter_mut() {
        n.restart_kubelet();
    }
    // The restarted kubelets post fresh node status; pods stay as they were.
    for n in ["node-a", "node-b"] {
        let since = chrono::Utc::now();
        wait_for(&format!("{n} heartbeating again"), START, || async {
            let o = b.client().get("Node", "", n).await.ok()?;
            let Some(Body::Node(node)) = o.kind else {
                return None;
            };
            let hb = node
                .status?
                .conditions
                .into_iter()
                .find(|c| c.r#type == "Ready" && c.status == "True")?
                .last_heartbeat_time;
            let t = chrono::DateTime::parse_from_rfc3339(&hb).ok()?;
            (t > since + chrono::Duration::seconds(2)).then_some(())
        })
        .await;
    }
    for (pod, cname, id, restarts) in &ids {
        let p = b.pod(pod).await.unwrap();
        let cs = container(&p, cname).unwrap();
        assert_eq!(
            &cs.container_id, id,
            "{pod}/{cname} was replaced after a kubelet restart"
        );
        assert_eq!(cs.restart_count, *restarts, "{pod}/{cname} restarted");
    }
    assert!(b.node(&home).http_get(&format!("http://{ip}/")).is_some());

    // Restarting the runtime shim restarts no container either, and the
    // kubelet goes on using the new shim.
    for n in b.nodes.iter_mut() {
        n.kill_shim();
        n.spawn_shim();
    }
    b.create(pinned(
        "after-shim",
        "node-a",
        json!([{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]),
    ))
    .await;
    b.wait_running("after-shim").await;
    for (pod, cname, id, restarts) in &ids {
        let p = b.pod(pod).await.unwrap();
        let cs = container(&p, cname).unwrap();
        assert_eq!(
            &cs.container_id, id,
            "{pod}/{cname} was replaced after a shim restart"
        );
        assert_eq!(cs.restart_count, *restarts, "{pod}/{cname} restarted");
    }
    assert!(b.node(&home).http_get(&format!("http://{ip}/")).is_some());

    // Deleting everything leaves nothing behind on either node.
    for n in ["nginx-pod", "echo", "client", "pair", "clash", "after-shim"] {
        b.delete(n).await;
    }
    for n in ["nginx-pod", "echo", "client", "pair", "clash", "after-shim"] {
        b.wait_gone(n).await;
    }
    for n in &b.nodes {
        let left = wait_for(&format!("{} clean", n.name), START, || async {
            let l = n.leftovers();
            l.is_empty().then_some(l)
        })
        .await;
        assert!(left.is_empty());
    }
}

fn terminated_reason(c: &rkube_api::proto::ContainerStatus) -> Option<String> {
    [c.state.as_ref(), c.last_state.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|s| s.terminated.as_ref())
        .map(|t| t.reason.clone())
        .next()
}

fn waiting_reason(p: &Pod, container_name: &str) -> String {
    container(p, container_name)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .map(|w| w.reason.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_containers_get_clear_reasons_and_restarts() {
    let Some(b) = Bench::start(&["node-f"]).await else {
        return;
    };
    let n = "node-f";

    // A steady pod that must survive everything below.
    b.create(pinned(
        "steady",
        n,
        json!([{"name": "web", "image": "nginx"}]),
    ))
    .await;
    let steady = b.wait_running("steady").await;
    let steady_id = container(&steady, "web").unwrap().container_id.clone();

    // Over its memory limit: OOMKilled, then restarted.
    b.create(pinned(
        "hog",
        n,
        json!([{"name": "hog", "image": "busybox",
            "command": ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); sleep 3600"],
            "resources": {"limits": {"memory": "32Mi"}}}]),
    ))
    .await;
    b.wait_pod("hog", "OOMKilled and restarted", START, |p| {
        container(p, "hog").is_some_and(|c| {
            c.restart_count >= 1
                && c.last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.reason == "OOMKilled" && t.exit_code == 137)
        })
    })
    .await;

    // Killing a container's process restarts it and counts the restart.
    b.create(pinned(
        "victim",
        n,
        json!([{"name": "sleeper", "image": "busybox", "command": ["sleep", "36001"]}]),
    ))
    .await;
    let victim = b.wait_running("victim").await;
    let first = container(&victim, "sleeper").unwrap().container_id.clone();
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", "sleep 36001"])
        .status()
        .unwrap();
    assert!(killed.success());
    let again = b
        .wait_pod(
            "victim",
            "restarted after its process was killed",
            START,
            |p| {
                container(p, "sleeper")
                    .is_some_and(|c| c.restart_count == 1 && c.ready && c.container_id != first)
            },
        )
        .await;
    let last = container(&again, "sleeper").unwrap();
    let t = last
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_str()), (137, "Error"), "{t:?}");

    // An image that does not exist: ErrImagePull, then ImagePullBackOff.
    b.create(pinned(
        "ghost",
        n,
        json!([{"name": "ghost", "image": "127.0.0.1:5999/no/such-image:1"}]),
    ))
    .await;
    b.wait_pod("ghost", "ErrImagePull", START, |p| {
        waiting_reason(p, "ghost") == "ErrImagePull"
    })
    .await;
    b.wait_pod("ghost", "ImagePullBackOff", START, |p| {
        waiting_reason(p, "ghost") == "ImagePullBackOff"
    })
    .await;

    // A command that does not exist: a clear reason, then back-off.
    b.create(pinned(
        "badcmd",
        n,
        json!([{"name": "bad", "image": "busybox", "command": ["/no/such/binary"]}]),
    ))
    .await;
    let bad = b
        .wait_pod(
            "badcmd",
            "CrashLoopBackOff for a missing binary",
            START,
            |p| waiting_reason(p, "bad") == "CrashLoopBackOff",
        )
        .await;
    let c = container(&bad, "bad").unwrap();
    let t = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .unwrap();
    assert!(t.message.contains("/no/such/binary"), "{t:?}");

    // An impossible limit: the configuration error names the field.
    b.create(pinned(
        "tiny",
        n,
        json!([{"name": "tiny", "image": "busybox", "command": ["sleep", "3600"],
            "resources": {"limits": {"memory": "1Ki"}}}]),
    ))
    .await;
    let tiny = b
        .wait_pod("tiny", "CreateContainerConfigError", START, |p| {
            waiting_reason(p, "tiny") == "CreateContainerConfigError"
        })
        .await;
    let msg = container(&tiny, "tiny")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .map(|w| w.message.clone())
        .unwrap();
    assert!(msg.contains("resources.limits.memory"), "{msg}");

    // A finished pod: Succeeded with reason Completed, not restarted.
    b.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "once"},
        "spec": {"nodeName": n, "restartPolicy": "Never",
            "containers": [{"name": "once", "image": "busybox", "command": ["sh", "-c", "echo done"]}]}
    }))
    .await;
    let once = b
        .wait_pod("once", "Succeeded", START, |p| {
            p.status.as_ref().is_some_and(|s| s.phase == "Succeeded")
        })
        .await;
    assert_eq!(
        terminated_reason(container(&once, "once").unwrap()).as_deref(),
        Some("Completed")
    );

    // Events name what happened.
    let events = b.cluster.rkubectl(None, &["describe", "pod", "ghost"]).ok();
    assert!(
        events.contains("Failed") && events.contains("no/such-image"),
        "{events}"
    );

    // The steady pod was never disturbed.
    let steady = b.pod("steady").await.unwrap();
    let c = container(&steady, "web").unwrap();
    assert_eq!(
        (c.container_id.as_str(), c.restart_count),
        (steady_id.as_str(), 0)
    );

    for p in ["steady", "hog", "victim", "ghost", "badcmd", "tiny", "once"] {
        b.delete(p).await;
    }
    for p in ["steady", "hog", "victim", "ghost", "badcmd", "tiny", "once"] {
        b.wait_gone(p).await;
    }
    let node = b.node(n);
    wait_for("node clean", START, || async {
        node.leftovers().is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_dns_files_host_network_and_graceful_deletion() {
    let Some(b) = Bench::start(&["node-p"]).await else {
        return;
    };
    let n = "node-p";

    // Readiness follows an httpGet probe; liveness (exec) failing restarts.
    b.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probed"},
        "spec": {"nodeName": n, "terminationGracePeriodSeconds": 2,
            "hostname": "web-0", "subdomain": "websvc",
            "containers": [{"name": "web", "image": "nginx",
                "ports": [{"name": "http", "containerPort": 80}],
                "readinessProbe": {"httpGet": {"path": "/ready.html", "port": "http"}, "periodSeconds": 1},
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2, "initialDelaySeconds": 30}
            }]}
    }))
    .await;
    let p = b
        .wait_pod(
            "probed",
            "Running but not Ready (no /ready.html)",
            START,
            |p| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase == "Running"
                        && s.conditions
                            .iter()
                            .any(|c| c.r#type == "Ready" && c.status == "False")
                        && !s.pod_ip.is_empty()
                })
            },
        )
        .await;
    assert!(!container(&p, "web").unwrap().ready);
    b.cluster
        .rkubectl(
            None,
            &[
                "exec",
                "probed",
                "--",
                "sh",
                "-c",
                "echo ok > /var/www/html/ready.html",
            ],
        )
        .ok();
    b.wait_running("probed").await;

    // The pod's resolver and hosts files.
    let resolv = b
        .cluster
        .rkubectl(None, &["exec", "probed", "--", "cat", "/etc/resolv.conf"])
        .ok();
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("ndots:5"), "{resolv}");
    let hosts = b
        .cluster
        .rkubectl(None, &["exec", "probed", "--", "cat", "/etc/hosts"])
        .ok();
    assert!(
        hosts.contains("web-0.websvc.default.svc.cluster.local"),
        "{hosts}"
    );
    let hostname = b
        .cluster
        .rkubectl(None, &["exec", "probed", "--", "hostname"])
        .ok();
    assert_eq!(hostname.trim(), "web-0");

    // dnsPolicy None with dnsConfig.
    b.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "custom-dns"},
        "spec": {"nodeName": n, "terminationGracePeriodSeconds": 1, "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["192.0.2.53"], "searches": ["example.test"], "options": [{"name": "ndots", "value": "2"}]},
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
    }))
    .await;
    b.wait_running("custom-dns").await;
    let resolv = b
        .cluster
        .rkubectl(
            None,
            &["exec", "custom-dns", "--", "cat", "/etc/resolv.conf"],
        )
        .ok();
    assert!(
        resolv.contains("nameserver 192.0.2.53")
            && resolv.contains("example.test")
            && resolv.contains("ndots:2"),
        "{resolv}"
    );
    assert!(!resolv.contains("10.96.0.10"), "{resolv}");

    // A host-network pod has the node's address.
    b.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hostnet"},
        "spec": {"nodeName": n, "hostNetwork": true, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
    }))
    .await;
    let hn = b.wait_running("hostnet").await;
    assert_eq!(ip_of(&hn), b.node(n).ip);

    // Liveness: remove the file the probe reads... it never existed, so
    // after the initial delay the container is restarted.
    let restarted = b
        .wait_pod(
            "probed",
            "restarted by its liveness probe",
            Duration::from_secs(90),
            |p| container(p, "web").is_some_and(|c| c.restart_count >= 1),
        )
        .await;
    assert!(container(&restarted, "web").unwrap().restart_count >= 1);
    let ev = b
        .cluster
        .rkubectl(None, &["describe", "pod", "probed"])
        .ok();
    assert!(ev.contains("Liveness probe failed"), "{ev}");

    // Graceful deletion: SIGTERM first; a process that ignores it is
    // killed when the grace period ends.
    b.create(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stubborn"},
        "spec": {"nodeName": n, "terminationGracePeriodSeconds": 3,
            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "trap 'echo got TERM' TERM; while true; do sleep 0.2; done"]}]}
    }))
    .await;
    b.wait_running("stubborn").await;
    let t0 = std::time::Instant::now();
    b.delete("stubborn").await;
    b.wait_gone("stubborn").await;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "deleted after {took:?}, before the grace period"
    );

    for p in ["probed", "custom-dns", "hostnet"] {
        b.delete(p).await;
    }
    for p in ["probed", "custom-dns", "hostnet"] {
        b.wait_gone(p).await;
    }
    let node = b.node(n);
    wait_for("node clean", START, || async {
        node.leftovers().is_empty().then_some(())
    })
    .await;
}

/// 200 pod create/delete cycles (in waves of 20) leave no netns, veth,
/// cgroup, mount, IP allocation, runc container or process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pod_cycles_leave_nothing_behind() {
    let Some(b) = Bench::start(&["node-c"]).await else {
        return;
    };
    let n = "node-c";
    let waves = 10;
    let per_wave = 20;
    for w in 0..waves {
        let names: Vec<String> = (0..per_wave).map(|i| format!("churn-{w}-{i}")).collect();
        for name in &names {
            b.create(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"nodeName": n, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
            }))
            .await;
        }
        for name in &names {
            b.wait_running(name).await;
        }
        for name in &names {
            b.delete(name).await;
        }
        for name in &names {
            b.wait_gone(name).await;
        }
        let node = b.node(n);
        let left = wait_for(&format!("node clean after wave {w}"), START, || async {
            let l = node.leftovers();
            l.is_empty().then_some(l)
        })
        .await;
        assert!(left.is_empty());
    }
    // The kubelet's own pod directories are gone too.
    let kubelet_pods = b.node(n).dir.path().join("kubelet/pods");
    let remaining = std::fs::read_dir(&kubelet_pods)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        remaining,
        0,
        "pod directories left in {}",
        kubelet_pods.display()
    );
    let log_dirs = std::fs::read_dir(b.node(n).dir.path().join("pods"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(log_dirs, 0, "pod log directories left");
}
