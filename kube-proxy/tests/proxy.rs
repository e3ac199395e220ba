//! kube-proxy end to end: a real 3-replica control plane, the real
//! `kube-proxy` binary and echo "pods", all inside a network namespace each
//! test makes (and deletes, also on panic), so no packet can leave the
//! machine. Services are created without a selector and their Endpoints by
//! hand, the Kubernetes pattern for endpoints a controller does not manage.
//!
//! Each test is a plain `#[test]`: it moves its own thread into the
//! namespace, then builds a current-thread runtime, so every socket and
//! every process it starts lives there. Every wait polls a condition
//! against a deadline; the one idle pause is the affinity timeout itself,
//! which is the stimulus under test.

use rkube_api::client::Client;
use rkube_api::proto::object::Kind as Body;
use rkube_api::proto::{DeleteRequest, ListRequest};
use rkube_api::Object;
use rkube_integration::{bin, wait_for, Cluster, Options};
use rkube_kube_proxy::config::POLICY_ANNOTATION;
use rkube_kube_proxy::testbed::{
    addresses_of, annotated, ask, endpoints, enter_netns, metric, runtime, service, service_object,
    tally, with_affinity, Conversation, Echo, ProxyProcess,
};
use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(20);
const POD_PORT: u16 = 8080;

/// Runs `body` on this thread inside a fresh network namespace.
fn in_netns<F, Fut>(what: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(ns) = enter_netns(what) else { return };
    let rt = runtime();
    rt.block_on(body());
    drop(rt);
    drop(ns);
}

/// The control plane and the proxy under test.
struct Env {
    // Dropped first, so a failing test prints the proxy's log.
    proxy: ProxyProcess,
    client: Client,
    _cluster: Cluster,
    _dir: tempfile::TempDir,
}

async fn start(proxy_flags: &[&str]) -> Env {
    let cluster = Cluster::start(Options::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = ProxyProcess::start(
        &bin("kube-proxy"),
        &cluster.addresses(),
        dir.path(),
        proxy_flags,
    );
    proxy.wait_synced(WAIT).await;
    Env {
        proxy,
        client: cluster.client(),
        _cluster: cluster,
        _dir: dir,
    }
}

/// Puts `ip` on the namespace's `lo`: a pod address.
fn pod_address(ip: &str) {
    let out = std::process::Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .expect("running ip");
    assert!(
        out.status.success(),
        "ip addr add {ip}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pod(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("pod ip"), port)
}

/// Starts TCP echo pods `pod-<n>` on `ip:8080` for each `(n, ip)`.
async fn echo_pods(pods: &[(&str, &str)]) -> Vec<Echo> {
    let mut v = Vec::new();
    for (name, ip) in pods {
        pod_address(ip);
        v.push(Echo::tcp(name, pod(ip, POD_PORT)).await);
    }
    v
}

async fn create_service(c: &Client, svc: rkube_api::proto::Service) -> (IpAddr, Vec<u16>) {
    let created = c
        .create(service_object(svc))
        .await
        .unwrap_or_else(|e| panic!("creating a service: {e}"));
    addresses_of(&created)
}

/// Creates or replaces Endpoints.
async fn put_endpoints(c: &Client, obj: Object) {
    match c.create(obj.clone()).await {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {
            c.update(obj).await.expect("updating endpoints");
        }
        Err(s) => panic!("creating endpoints: {s}"),
    }
}

async fn delete(c: &Client, kind: &str, name: &str) {
    c.delete(DeleteRequest {
        kind: kind.into(),
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("deleting {kind} {name}: {e}"));
}

/// Waits until `addr` answers through the proxy.
async fn wait_serving(addr: SocketAddr) {
    wait_for(&format!("{addr} to answer"), WAIT, || async move {
        ask(addr, None).await.ok()
    })
    .await;
}

/// `n` questions, each on a new connection; every one must be answered.
async fn asks(addr: SocketAddr, n: usize, source: Option<IpAddr>) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        match ask(addr, source).await {
            Ok(name) => names.push(name),
            Err(e) => panic!("request {i} to {addr} failed: {e} (answers so far: {names:?})"),
        }
    }
    names
}

async fn metric_value(env: &Env, name: &str, labels: &[&str]) -> Option<f64> {
    metric(&env.proxy.metrics_text().await?, name, labels)
}

/// Waits until a metric satisfies `ok`.
async fn wait_metric(env: &Env, name: &str, labels: &[&str], ok: impl Fn(f64) -> bool) -> f64 {
    wait_for(
        &format!("{name}{labels:?} to reach the expected value"),
        WAIT,
        || async { metric_value(env, name, labels).await.filter(|v| ok(*v)) },
    )
    .await
}

fn interface_addresses() -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "rkube-svc0"])
        .output()
        .expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn round_robin_nodeport_not_ready_scaling_and_grace() {
    in_netns("round robin", || async {
        let env = start(&["--endpoint-close-grace", "3s"]).await;
        let c = &env.client;
        let pods = echo_pods(&[
            ("pod-1", "10.244.0.11"),
            ("pod-2", "10.244.0.12"),
            ("pod-3", "10.244.0.13"),
            ("pod-4", "10.244.0.14"),
            ("pod-5", "10.244.0.15"),
        ])
        .await;
        let http = [("http", "TCP", POD_PORT as i32)];
        let (ip, node_ports) =
            create_service(c, service("web", "NodePort", &[("http", "TCP", 80)])).await;
        put_endpoints(
            c,
            endpoints(
                "web",
                &["10.244.0.11", "10.244.0.12", "10.244.0.13"],
                &["10.244.0.14"],
                &http,
            ),
        )
        .await;
        let vip = SocketAddr::new(ip, 80);
        wait_serving(vip).await;
        assert!(interface_addresses().contains(&format!("{ip}/32")));

        // Round-robin, visibly: every three answers name three pods.
        let names = asks(vip, 30, None).await;
        for w in names.chunks(3) {
            let set: BTreeSet<&String> = w.iter().collect();
            assert_eq!(set.len(), 3, "not round-robin: {names:?}");
        }
        let t = tally(&names);
        for p in ["pod-1", "pod-2", "pod-3"] {
            assert_eq!(t.get(p), Some(&10), "{t:?}");
        }
        // Not-ready addresses get nothing.
        assert_eq!(pods[3].hits.load(Ordering::Relaxed), 0);

        // NodePort on a node address.
        let np = SocketAddr::from(([127, 0, 0, 1], node_ports[0]));
        let t = tally(&asks(np, 9, None).await);
        assert_eq!(t.len(), 3, "NodePort should reach all pods: {t:?}");

        // Metrics count connections.
        let web = ["service=\"default/web\"", "port=\"http\""];
        let conns = metric_value(&env, "rkube_proxy_connections_total", &web).await;
        assert!(conns.is_some_and(|v| v >= 39.0), "connections: {conns:?}");
        assert_eq!(
            metric_value(&env, "rkube_proxy_ready_endpoints", &web).await,
            Some(3.0)
        );

        // Scale down: pod-3 leaves.
        put_endpoints(
            c,
            endpoints("web", &["10.244.0.11", "10.244.0.12"], &[], &http),
        )
        .await;
        wait_for("pod-3 out of rotation", WAIT, || async {
            let t = tally(&asks(vip, 6, None).await);
            (t.len() == 2 && !t.contains_key("pod-3")).then_some(())
        })
        .await;
        let t = tally(&asks(vip, 12, None).await);
        assert!(!t.contains_key("pod-3"), "{t:?}");

        // Scale up: pod-3 and pod-5.
        put_endpoints(
            c,
            endpoints(
                "web",
                &["10.244.0.11", "10.244.0.12", "10.244.0.13", "10.244.0.15"],
                &[],
                &http,
            ),
        )
        .await;
        wait_for("four pods in rotation", WAIT, || async {
            (tally(&asks(vip, 8, None).await).len() == 4).then_some(())
        })
        .await;

        // An open connection to an endpoint that leaves lives on for the
        // grace, then closes; new connections avoid the endpoint at once.
        let mut held = Conversation::open(vip, None).await.expect("connect");
        let victim = held.ask("first").await.expect("first answer");
        let victim_ip = match victim.as_str() {
            "pod-1" => "10.244.0.11",
            "pod-2" => "10.244.0.12",
            "pod-3" => "10.244.0.13",
            _ => "10.244.0.15",
        };
        let rest: Vec<&str> = ["10.244.0.11", "10.244.0.12", "10.244.0.13", "10.244.0.15"]
            .into_iter()
            .filter(|a| *a != victim_ip)
            .collect();
        let removed_at = Instant::now();
        put_endpoints(c, endpoints("web", &rest, &[], &http)).await;
        assert_eq!(held.ask("still").await.expect("within the grace"), victim);
        wait_for("new connections to avoid the removed pod", WAIT, || async {
            let t = tally(&asks(vip, 6, None).await);
            (!t.contains_key(&victim)).then_some(())
        })
        .await;
        tokio::time::timeout(WAIT, held.closed())
            .await
            .expect("the held connection closes after the grace");
        let lived = removed_at.elapsed();
        assert!(
            lived >= Duration::from_millis(2500),
            "closed after {lived:?}, before the 3 s grace"
        );
        wait_metric(&env, "rkube_proxy_drained_connections_total", &web, |v| {
            v >= 1.0
        })
        .await;

        // The Service goes: its address leaves the interface.
        delete(c, "Service", "web").await;
        wait_for("the ClusterIP to leave the interface", WAIT, || async {
            (!interface_addresses().contains(&format!("{ip}/32"))).then_some(())
        })
        .await;
        assert!(ask(vip, None).await.is_err());
        drop(pods);
    });
}

#[test]
fn retry_rule_empty_services_and_bad_ports() {
    in_netns("retry rule", || async {
        let env = start(&["--connect-timeout", "300ms"]).await;
        let c = &env.client;
        let mut pods = echo_pods(&[
            ("pod-1", "10.244.0.21"),
            ("pod-2", "10.244.0.22"),
            ("pod-3", "10.244.0.23"),
        ])
        .await;
        let http = [("http", "TCP", POD_PORT as i32)];
        let (ip, _) = create_service(c, service("api", "ClusterIP", &[("http", "TCP", 80)])).await;
        put_endpoints(
            c,
            endpoints(
                "api",
                &["10.244.0.21", "10.244.0.22", "10.244.0.23"],
                &[],
                &http,
            ),
        )
        .await;
        let vip = SocketAddr::new(ip, 80);
        wait_serving(vip).await;

        // Load from 4 clients; pod-2 stops accepting a third of the way in.
        let done = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (done, stopped) = (done.clone(), stopped.clone());
            workers.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..60 {
                    let after_stop = stopped.load(Ordering::SeqCst);
                    if let Err(e) = ask(vip, None).await {
                        failures.push((after_stop, e.to_string()));
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            }));
        }
        let d = done.clone();
        wait_for("load to get going", WAIT, || {
            let d = d.clone();
            async move { (d.load(Ordering::SeqCst) >= 80).then_some(()) }
        })
        .await;
        pods[1].stop_accepting().await;
        stopped.store(true, Ordering::SeqCst);
        let mut failures = Vec::new();
        for w in workers {
            failures.extend(w.await.expect("worker"));
        }
        let after: Vec<_> = failures.iter().filter(|(after, _)| *after).collect();
        assert!(
            after.is_empty(),
            "requests started after pod-2 stopped accepting failed: {after:?}"
        );
        // Only requests in flight at the moment it stopped may have failed.
        assert!(failures.len() <= 4, "{failures:?}");
        let api = ["service=\"default/api\""];
        wait_metric(&env, "rkube_proxy_endpoint_errors_total", &api, |v| {
            v >= 1.0
        })
        .await;

        // Endpoints that refuse (no listener), are unreachable (the guard
        // route) or never answer (a full accept queue) cost no request.
        pod_address("10.244.0.24");
        pod_address("10.244.0.25");
        let silent = std::net::TcpListener::bind(pod("10.244.0.25", POD_PORT)).expect("bind");
        let silent = {
            let s = socket2::Socket::from(silent);
            s.listen(0).expect("listen");
            s
        };
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(pod("10.244.0.25", POD_PORT)),
            )
            .await
            {
                fillers.push(s);
            }
        }
        put_endpoints(
            c,
            endpoints(
                "api",
                &[
                    "10.244.0.21",
                    "10.244.0.24",
                    "10.244.9.9",
                    "10.244.0.25",
                    "10.244.0.23",
                ],
                &[],
                &http,
            ),
        )
        .await;
        wait_metric(&env, "rkube_proxy_ready_endpoints", &api, |v| v == 5.0).await;
        let before = metric_value(&env, "rkube_proxy_endpoint_errors_total", &api)
            .await
            .unwrap_or(0.0);
        let t = tally(&asks(vip, 20, None).await);
        assert!(
            t.keys().all(|k| k == "pod-1" || k == "pod-3"),
            "only live pods answer: {t:?}"
        );
        let after = metric_value(&env, "rkube_proxy_endpoint_errors_total", &api)
            .await
            .unwrap_or(0.0);
        assert!(after >= before + 3.0, "endpoint errors {before} -> {after}");
        drop((silent, fillers));

        // No ready endpoint (none at all, or only not-ready ones): the
        // connection is refused or reset at once.
        let (empty_ip, _) =
            create_service(c, service("empty", "ClusterIP", &[("http", "TCP", 80)])).await;
        let (nr_ip, _) =
            create_service(c, service("notready", "ClusterIP", &[("http", "TCP", 80)])).await;
        put_endpoints(c, endpoints("notready", &[], &["10.244.0.21"], &http)).await;
        for (name, ip) in [("empty", empty_ip), ("notready", nr_ip)] {
            let labels = [format!("service=\"default/{name}\"")];
            let labels: Vec<&str> = labels.iter().map(|s| s.as_str()).collect();
            wait_metric(&env, "rkube_proxy_ready_endpoints", &labels, |v| v == 0.0).await;
            let addr = SocketAddr::new(ip, 80);
            for _ in 0..3 {
                let t0 = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(2), ask(addr, None)).await;
                assert!(
                    matches!(r, Ok(Err(_))),
                    "{name}: expected a prompt refusal, got {r:?}"
                );
                assert!(
                    t0.elapsed() < Duration::from_secs(1),
                    "{name}: took {:?}",
                    t0.elapsed()
                );
            }
            wait_metric(&env, "rkube_proxy_rejected_total", &labels, |v| v >= 3.0).await;
        }

        // A port name no endpoint defines: reported, as a metric and an
        // Event; every other Service keeps working.
        create_service(c, service("named", "ClusterIP", &[("web", "TCP", 80)])).await;
        put_endpoints(c, endpoints("named", &["10.244.0.21"], &[], &http)).await;
        wait_metric(
            &env,
            "rkube_proxy_service_problems",
            &[
                "service=\"default/named\"",
                "reason=\"EndpointPortNotFound\"",
            ],
            |v| v >= 1.0,
        )
        .await;
        wait_for("an EndpointPortNotFound event", WAIT, || async {
            let list = c
                .list(ListRequest {
                    kind: "Event".into(),
                    namespace: "default".into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            list.items
                .iter()
                .any(|o| match &o.kind {
                    Some(Body::Event(e)) => {
                        e.reason == "EndpointPortNotFound"
                            && e.involved_object
                                .as_ref()
                                .is_some_and(|r| r.name == "named")
                    }
                    _ => false,
                })
                .then_some(())
        })
        .await;
        asks(vip, 3, None).await;

        // A Service port with the number of another Service's NodePort:
        // both are served, each address reaching its own Service.
        let (_, nps) =
            create_service(c, service("holder", "NodePort", &[("http", "TCP", 80)])).await;
        put_endpoints(c, endpoints("holder", &["10.244.0.23"], &[], &http)).await;
        let shared = nps[0];
        let (overlap_ip, _) = create_service(
            c,
            service("overlap", "ClusterIP", &[("http", "TCP", shared as i32)]),
        )
        .await;
        put_endpoints(c, endpoints("overlap", &["10.244.0.21"], &[], &http)).await;
        let node = SocketAddr::from(([127, 0, 0, 1], shared));
        let overlap = SocketAddr::new(overlap_ip, shared);
        wait_for("both services on the shared port number", WAIT, || async {
            let a = ask(node, None).await.ok()?;
            let b = ask(overlap, None).await.ok()?;
            (a == "pod-3" && b == "pod-1").then_some(())
        })
        .await;

        // A NodePort a process on the node already holds: reported; the
        // port comes up once the process lets go.
        let (held, held_port) = loop {
            let p: u16 = 31000 + rand::random::<u16>() % 1500;
            if let Ok(l) = std::net::TcpListener::bind(("0.0.0.0", p)) {
                break (l, p);
            }
        };
        let mut svc = service("taken", "NodePort", &[("http", "TCP", 80)]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.ports[0].node_port = held_port as i32;
        }
        create_service(c, svc).await;
        put_endpoints(c, endpoints("taken", &["10.244.0.21"], &[], &http)).await;
        wait_metric(
            &env,
            "rkube_proxy_service_problems",
            &["service=\"default/taken\"", "reason=\"PortConflict\""],
            |v| v >= 1.0,
        )
        .await;
        // Everything else keeps working.
        asks(vip, 3, None).await;
        assert_eq!(ask(node, None).await.expect("holder"), "pod-3");
        drop(held);
        wait_for("the freed NodePort to come up", WAIT, || async {
            ask(SocketAddr::from(([127, 0, 0, 1], held_port)), None)
                .await
                .ok()
                .filter(|n| n == "pod-1")
        })
        .await;
        let problems = env.proxy.metrics_text().await.unwrap_or_default();
        assert!(
            metric(
                &problems,
                "rkube_proxy_service_problems",
                &["service=\"default/taken\""]
            )
            .is_none(),
            "the conflict should be resolved:\n{problems}"
        );
        drop(pods);
    });
}

#[test]
fn client_ip_affinity_and_least_connections() {
    in_netns("affinity", || async {
        let env = start(&[]).await;
        let c = &env.client;
        let _pods = echo_pods(&[
            ("pod-1", "10.244.0.31"),
            ("pod-2", "10.244.0.32"),
            ("pod-3", "10.244.0.33"),
        ])
        .await;
        let http = [("http", "TCP", POD_PORT as i32)];
        let ready = ["10.244.0.31", "10.244.0.32", "10.244.0.33"];

        // ClientIP affinity with a 3 s timeout.
        let (ip, _) = create_service(
            c,
            with_affinity(service("sticky", "ClusterIP", &[("http", "TCP", 80)]), 3),
        )
        .await;
        put_endpoints(c, endpoints("sticky", &ready, &[], &http)).await;
        let vip = SocketAddr::new(ip, 80);
        wait_serving(vip).await;
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let first = asks(vip, 1, Some(a)).await.remove(0);
        let t = tally(&asks(vip, 10, Some(a)).await);
        assert_eq!(t.len(), 1, "client A moved: {t:?}");
        assert!(t.contains_key(&first));
        let b_pod = asks(vip, 1, Some(b)).await.remove(0);
        assert_ne!(b_pod, first, "a new client is balanced");
        assert_eq!(tally(&asks(vip, 5, Some(b)).await).len(), 1);
        assert_eq!(asks(vip, 3, Some(a)).await, vec![first.clone(); 3]);
        // A quiet period longer than the timeout (the stimulus under test)
        // ends the affinity: A is balanced afresh, onto the next pod in
        // turn, and sticks there.
        tokio::time::sleep(Duration::from_millis(3600)).await;
        let next = asks(vip, 1, Some(a)).await.remove(0);
        assert_ne!(next, first, "affinity should have expired");
        assert_eq!(asks(vip, 3, Some(a)).await, vec![next.clone(); 3]);

        // Least connections (by annotation).
        let (ip, _) = create_service(
            c,
            annotated(
                service("lc", "ClusterIP", &[("http", "TCP", 80)]),
                POLICY_ANNOTATION,
                "least-conn",
            ),
        )
        .await;
        put_endpoints(c, endpoints("lc", &ready, &[], &http)).await;
        let vip = SocketAddr::new(ip, 80);
        wait_serving(vip).await;
        let lc = ["service=\"default/lc\""];
        wait_metric(&env, "rkube_proxy_active_connections", &lc, |v| v == 0.0).await;
        let mut held = Vec::new();
        for i in 0..3 {
            let mut conv = Conversation::open(vip, None).await.expect("connect");
            let name = conv.ask(&format!("hold{i}")).await.expect("answer");
            held.push((name, conv));
        }
        let names: BTreeSet<&String> = held.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 3, "equal load rotates");
        // Close the connection on one pod: it is now the least loaded.
        let (freed, conv) = held.remove(1);
        drop(conv);
        wait_metric(&env, "rkube_proxy_active_connections", &lc, |v| v == 2.0).await;
        let mut again = Conversation::open(vip, None).await.expect("connect");
        assert_eq!(again.ask("x").await.expect("answer"), freed);
        // Everyone at one again; free another pod.
        let (freed, conv) = held.remove(0);
        drop(conv);
        wait_metric(&env, "rkube_proxy_active_connections", &lc, |v| v == 2.0).await;
        assert_eq!(asks(vip, 1, None).await, vec![freed]);
        drop(again);
    });
}

/// Sends `msg` from `socket` to `to` and returns (answer, where it came from).
async fn udp_ask(socket: &UdpSocket, to: SocketAddr, msg: &str) -> Option<(String, SocketAddr)> {
    socket.send_to(msg.as_bytes(), to).await.ok()?;
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let (name, echoed) = text.split_once(' ')?;
    (echoed == msg).then(|| (name.to_string(), from))
}

async fn udp_client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("udp bind")
}

#[test]
fn udp_sessions_nodeport_and_expiry() {
    in_netns("udp", || async {
        let env = start(&["--udp-idle-timeout", "1s"]).await;
        let c = &env.client;
        let mut pods = Vec::new();
        for (name, ip) in [
            ("pod-1", "10.244.0.41"),
            ("pod-2", "10.244.0.42"),
            ("pod-3", "10.244.0.43"),
        ] {
            pod_address(ip);
            pods.push(Echo::udp(name, pod(ip, 5353)).await);
        }
        let dns = [("dns", "UDP", 5353)];
        let (ip, nps) = create_service(c, service("dns", "NodePort", &[("dns", "UDP", 53)])).await;
        put_endpoints(
            c,
            endpoints(
                "dns",
                &["10.244.0.41", "10.244.0.42", "10.244.0.43"],
                &[],
                &dns,
            ),
        )
        .await;
        let vip = SocketAddr::new(ip, 53);
        wait_for("the UDP service to answer", WAIT, || async {
            udp_ask(&udp_client().await, vip, "hello").await
        })
        .await;
        let labels = ["service=\"default/dns\""];
        wait_metric(&env, "rkube_proxy_active_connections", &labels, |v| {
            v == 0.0
        })
        .await;

        // Three clients, three sessions, three pods; replies come from the
        // service address; a client stays on its pod.
        let clients = [udp_client().await, udp_client().await, udp_client().await];
        let mut names = BTreeSet::new();
        for (i, s) in clients.iter().enumerate() {
            let (name, from) = udp_ask(s, vip, &format!("q{i}")).await.expect("udp answer");
            assert_eq!(from, vip, "the reply must come from the ClusterIP");
            for j in 0..4 {
                let (again, _) = udp_ask(s, vip, &format!("q{i}.{j}"))
                    .await
                    .expect("udp answer");
                assert_eq!(again, name, "a session stays on its pod");
            }
            names.insert(name);
        }
        assert_eq!(names.len(), 3, "sessions are balanced: {names:?}");

        // NodePort.
        let np = SocketAddr::from(([127, 0, 0, 1], nps[0]));
        assert!(udp_ask(&udp_client().await, np, "via-nodeport")
            .await
            .is_some());

        // Idle sessions expire; the client is served again afterwards.
        wait_metric(&env, "rkube_proxy_active_connections", &labels, |v| {
            v == 0.0
        })
        .await;
        assert!(udp_ask(&clients[0], vip, "back").await.is_some());
        let bytes = metric_value(
            &env,
            "rkube_proxy_bytes_total",
            &[labels[0], "direction=\"out\""],
        )
        .await;
        assert!(bytes.is_some_and(|b| b > 0.0), "bytes out: {bytes:?}");

        // The retry rule for UDP: an endpoint nothing listens on (a dead
        // replica still listed) refuses; the datagram it refused goes to
        // the next endpoint, so every fresh client is answered at once.
        pod_address("10.244.0.44");
        put_endpoints(
            c,
            endpoints("dns", &["10.244.0.41", "10.244.0.44"], &[], &dns),
        )
        .await;
        wait_metric(&env, "rkube_proxy_ready_endpoints", &labels, |v| v == 2.0).await;
        let errors_before = metric_value(&env, "rkube_proxy_endpoint_errors_total", &labels)
            .await
            .unwrap_or(0.0);
        for i in 0..6 {
            let (name, _) = udp_ask(&udp_client().await, vip, &format!("retry{i}"))
                .await
                .unwrap_or_else(|| panic!("fresh client {i} got no answer"));
            assert_eq!(name, "pod-1");
        }
        let errors = metric_value(&env, "rkube_proxy_endpoint_errors_total", &labels).await;
        assert!(
            errors.is_some_and(|e| e >= errors_before + 3.0),
            "refusals by the dead endpoint: {errors_before} -> {errors:?}"
        );

        // No endpoints: datagrams are dropped (and counted).
        put_endpoints(c, endpoints("dns", &[], &[], &dns)).await;
        wait_metric(&env, "rkube_proxy_ready_endpoints", &labels, |v| v == 0.0).await;
        let s = udp_client().await;
        wait_for("a dropped datagram to be counted", WAIT, || async {
            assert!(udp_ask(&s, vip, "nobody").await.is_none());
            metric_value(&env, "rkube_proxy_rejected_total", &labels)
                .await
                .filter(|v| *v >= 1.0)
        })
        .await;
        pods.clear();
    });
}
