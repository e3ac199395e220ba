//! LoadBalancer Services (docs/compose.md, "LoadBalancer Services"): the
//! control plane's `--lb-pool` controller, and on the node tier (nodes are
//! network namespaces on a host bridge, see integration/src/nodes.rs) the
//! address announced by one node's kube-proxy, reached from the host (the
//! machine running the cluster), and taken over by another node when the
//! announcing one dies. Every wait polls against a deadline.

use rkube_api::client::Client;
use rkube_api::manifest::decode_value;
use rkube_api::proto::{object::Kind as Body, DeleteRequest, ListRequest, Pod, Service};
use rkube_integration::nodes::{http_get_now, LocalNode, NodeNet, NodeOptions};
use rkube_integration::{wait_for, Cluster, Options};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const START: Duration = Duration::from_secs(60);

async fn create(c: &Client, v: serde_json::Value) -> rkube_api::Object {
    c.create(decode_value(v).expect("a valid manifest"))
        .await
        .expect("create")
}

fn lb_service(name: &str, requested: Option<&str>) -> serde_json::Value {
    let mut spec = json!({"type": "LoadBalancer", "selector": {"app": "echo"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]});
    if let Some(ip) = requested {
        spec["loadBalancerIP"] = json!(ip);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})
}

async fn service(c: &Client, name: &str) -> Option<Service> {
    match c.get("Service", "default", name).await.ok()?.kind {
        Some(Body::Service(s)) => Some(s),
        _ => None,
    }
}

fn ingress(s: &Service) -> Vec<String> {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .map(|lb| lb.ingress.iter().map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

/// Waits until Service `name` shows exactly one ingress address; returns it.
async fn wait_ingress(c: &Client, name: &str) -> String {
    wait_for(
        &format!("service {name} gets an external IP"),
        START,
        || async {
            let s = service(c, name).await?;
            match ingress(&s).as_slice() {
                [ip] => Some(ip.clone()),
                _ => None,
            }
        },
    )
    .await
}

/// Reasons and messages of the Events about Service `name`.
async fn events_of(c: &Client, name: &str) -> Vec<(String, String)> {
    let list = c
        .list(ListRequest {
            kind: "Event".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect("list events");
    list.items
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Body::Event(e)) => Some(e),
            _ => None,
        })
        .filter(|e| {
            e.involved_object
                .as_ref()
                .is_some_and(|r| r.kind == "Service" && r.name == name)
        })
        .map(|e| (e.reason, e.message))
        .collect()
}

async fn wait_event(c: &Client, name: &str, reason: &str, says: &str) {
    wait_for(
        &format!("an Event {reason} saying {says:?} on service {name}"),
        START,
        || async {
            events_of(c, name)
                .await
                .iter()
                .any(|(r, m)| r == reason && m.contains(says))
                .then_some(())
        },
    )
    .await;
}

async fn delete_service(c: &Client, name: &str) {
    c.delete(DeleteRequest {
        kind: "Service".into(),
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    })
    .await
    .expect("delete service");
}

/// The pool on the control plane alone: unique addresses, pending with a
/// reason when full or when asked for an address outside it, released on
/// delete and on a type change, `get svc` showing EXTERNAL-IP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_addresses_are_unique_pending_when_exhausted_and_released() {
    let cluster = Cluster::start(Options {
        extra_args: vec![
            "--lb-pool".into(),
            "10.123.0.1-10.123.0.2".into(),
            "--controller-resync".into(),
            "2".into(),
        ],
        ..Default::default()
    })
    .await;
    let c = cluster.client();
    create(&c, lb_service("a", None)).await;
    create(&c, lb_service("b", None)).await;
    let ip_a = wait_ingress(&c, "a").await;
    let ip_b = wait_ingress(&c, "b").await;
    assert_ne!(ip_a, ip_b, "two Services share an address");
    for ip in [&ip_a, &ip_b] {
        assert!(["10.123.0.1", "10.123.0.2"].contains(&ip.as_str()), "{ip}");
    }
    wait_event(&c, "a", "EnsuredLoadBalancer", "Ensured load balancer").await;
    wait_event(&c, "a", "IPAllocated", &ip_a).await;

    // Full: the third stays pending and says why.
    create(&c, lb_service("c", None)).await;
    wait_event(&c, "c", "SyncLoadBalancerFailed", "no addresses left").await;
    let out = cluster.rkubectl(None, &["get", "svc", "c"]).ok();
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!((row[1], row[3]), ("LoadBalancer", "<pending>"), "{out}");
    let out = cluster.rkubectl(None, &["get", "svc", "a"]).ok();
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row[3], ip_a, "EXTERNAL-IP: {out}");

    // Deleting a frees its address for c.
    delete_service(&c, "a").await;
    assert_eq!(
        wait_ingress(&c, "c").await,
        ip_a,
        "c gets a's released address"
    );

    // b becomes a ClusterIP Service: status cleared, address released.
    let mut o = c.get("Service", "default", "b").await.expect("get b");
    if let Some(Body::Service(s)) = o.kind.as_mut() {
        let spec = s.spec.as_mut().unwrap();
        spec.r#type = "ClusterIP".into();
        spec.external_traffic_policy.clear();
        for p in &mut spec.ports {
            p.node_port = 0;
        }
    }
    c.update(o).await.expect("update b");
    wait_for("b's external IP cleared", START, || async {
        ingress(&service(&c, "b").await?).is_empty().then_some(())
    })
    .await;
    wait_event(&c, "b", "DeletedLoadBalancer", "Deleted load balancer").await;
    // Asked for by address: honoured once free.
    create(&c, lb_service("d", Some(&ip_b))).await;
    assert_eq!(wait_ingress(&c, "d").await, ip_b);
    // Asked for an address outside the pool, or one taken: pending, with why.
    create(&c, lb_service("e", Some("192.168.77.7"))).await;
    wait_event(
        &c,
        "e",
        "SyncLoadBalancerFailed",
        "not in the load-balancer pool",
    )
    .await;
    create(&c, lb_service("f", Some(&ip_b))).await;
    wait_event(
        &c,
        "f",
        "SyncLoadBalancerFailed",
        "already allocated to service default/d",
    )
    .await;
    for name in ["e", "f"] {
        assert!(ingress(&service(&c, name).await.unwrap()).is_empty());
    }
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
                        "ports": [{"name": "http", "containerPort": 8080}]
                    }]
                }
            }
        }
    })
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase == "Running"
            && !s.pod_ip.is_empty()
            && s.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// The pod named in an echo answer (`pod: <name>` line).
fn echo_pod(body: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix("pod: "))
        .map(|s| s.trim().to_string())
}

/// One GET from the host (the machine running the cluster).
fn ask(url: &str) -> Result<String, String> {
    let body = http_get_now(url)?;
    echo_pod(&body).ok_or_else(|| format!("not an echo answer: {body:?}"))
}

/// Which nodes have `ip` on an interface.
fn announcers(nodes: &[LocalNode], ip: &str) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| {
            let out = n.exec(&["ip", "-o", "-4", "addr", "show"]);
            String::from_utf8_lossy(&out.stdout).contains(&format!("inet {ip}/32"))
        })
        .map(|n| n.name.clone())
        .collect()
}

async fn lease_holder(c: &Client, ip: &str) -> Option<String> {
    match c
        .get("Lease", "kube-system", &format!("lb-{ip}"))
        .await
        .ok()?
        .kind
    {
        Some(Body::Lease(l)) => l.spec.map(|s| s.holder_identity).filter(|h| !h.is_empty()),
        _ => None,
    }
}

/// Issue 6's "LoadBalancer answers from the machine running the cluster,
/// and keeps answering when a node is killed": a LoadBalancer Service over
/// three echo pods on three nodes (kube-proxy on each), its address from a
/// pool on the nodes' bridge; requests from the host reach every pod; the
/// announcing node is killed (its kubelet, kube-proxy, shim, pods and
/// network namespace gone) and another node takes the address over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_answers_from_the_host_and_survives_its_node() {
    let Some(net) = NodeNet::create() else {
        return;
    };
    let pool = format!("{p}.200-{p}.250", p = net.prefix);
    let cluster = Cluster::start(Options {
        host: net.host_ip(),
        extra_args: vec![
            "--lb-pool".into(),
            pool,
            "--node-monitor-grace-period".into(),
            "10".into(),
        ],
        ..Default::default()
    })
    .await;
    const LEASE: Duration = Duration::from_secs(3);
    let mut opts = NodeOptions::with_kube_proxy();
    opts.kube_proxy
        .as_mut()
        .unwrap()
        .extend(["--lb-lease-duration".to_string(), "3s".to_string()]);
    let mut nodes: Vec<LocalNode> = ["lb-a", "lb-b", "lb-c"]
        .iter()
        .enumerate()
        .map(|(i, n)| LocalNode::start(&net, &cluster, n, i as u32 + 1, opts.clone()))
        .collect();
    let c = cluster.client();
    for n in &nodes {
        wait_for(&format!("kube-proxy of {} synced", n.name), START, || {
            std::future::ready(n.proxy_synced().then_some(()))
        })
        .await;
    }
    create(&c, echo_rc(3)).await;
    create(&c, lb_service("echo-lb", None)).await;
    let ip = wait_ingress(&c, "echo-lb").await;
    assert!(
        ip.starts_with(&format!("{}.", net.prefix)) && ip.ends_with(".200"),
        "{ip} is the pool's first address"
    );
    let pods: BTreeSet<String> = wait_for("3 ready echo pods", START, || async {
        let list = c
            .list(ListRequest {
                kind: "Pod".into(),
                namespace: "default".into(),
                label_selector: "app=echo".into(),
                ..Default::default()
            })
            .await
            .ok()?;
        let ready: BTreeSet<String> = list
            .items
            .iter()
            .filter_map(|o| match &o.kind {
                Some(Body::Pod(p)) if is_ready(p) => Some(o.name().to_string()),
                _ => None,
            })
            .collect();
        (ready.len() == 3).then_some(ready)
    })
    .await;

    // From the host: every pod answers through ingress-IP:80.
    let url = format!("http://{ip}:80/");
    wait_for(
        "the external IP reaching all 3 pods from the host",
        START,
        || {
            let got: Vec<Result<String, String>> = (0..9).map(|_| ask(&url)).collect();
            let seen: BTreeSet<String> = got.iter().filter_map(|r| r.clone().ok()).collect();
            std::future::ready((got.iter().all(|r| r.is_ok()) && seen == pods).then_some(()))
        },
    )
    .await;
    let holder = wait_for("the lease names a holder", START, || lease_holder(&c, &ip)).await;
    assert_eq!(
        announcers(&nodes, &ip),
        vec![holder.clone()],
        "exactly the lease holder has the address"
    );
    let out = cluster.rkubectl(None, &["get", "svc", "echo-lb"]).ok();
    assert!(out.contains(&ip), "EXTERNAL-IP in:\n{out}");

    // Kill the announcing node: everything of it goes, its netns too.
    let i = nodes.iter().position(|n| n.name == holder).unwrap();
    let killed = Instant::now();
    drop(nodes.remove(i));
    let new_holder = wait_for("another node takes the lease", START, || async {
        lease_holder(&c, &ip).await.filter(|h| *h != holder)
    })
    .await;
    let took = killed.elapsed();
    // Answers again from the host, through the new node.
    wait_for(
        "the external IP answering again from the host",
        START,
        || std::future::ready((0..3).all(|_| ask(&url).is_ok()).then_some(())),
    )
    .await;
    let answering = killed.elapsed();
    println!(
        "LB failover: lease taken by {new_holder} {:.1}s after {holder} was killed, \
         answering again after {:.1}s (lease duration {LEASE:?})",
        took.as_secs_f64(),
        answering.as_secs_f64()
    );
    assert!(
        took < LEASE * 4,
        "takeover took {took:?} with a {LEASE:?} lease"
    );
    assert_eq!(announcers(&nodes, &ip), vec![new_holder.clone()]);
    // Spread over the surviving pods once the dead node's are replaced.
    let answers: Vec<String> = (0..12)
        .map(|k| ask(&url).unwrap_or_else(|e| panic!("request {k} to {url}: {e}")))
        .collect();
    assert!(
        answers.iter().collect::<BTreeSet<_>>().len() >= 2,
        "not spread over pods: {answers:?}"
    );
    drop(nodes);
    drop(cluster);
}
