//! A secure control plane (TLS everywhere, a CA made by `rkube-pki`):
//! strangers are refused, every credential does what it may and nothing
//! more, refusals change nothing, and the replicas reach each other only
//! with control-plane certificates.

use rkube_api::client::Client;
use rkube_api::kubeconfig::{ConnectConfig, TlsConfig};
use rkube_api::proto::internal::raft_peer_client::RaftPeerClient;
use rkube_api::proto::internal::RaftBatch;
use rkube_api::proto::{object::Kind as Body, ListRequest, PodStatus};
use rkube_api::Object;
use rkube_integration::{bin, free_port, wait_for, Cluster, Options};
use std::process::{Command, Stdio};
use std::time::Duration;
use tonic::Code;

fn one(yaml: &str) -> Object {
    let mut v = rkube_api::manifest::decode(yaml, "test").expect("test manifest");
    assert_eq!(v.len(), 1);
    v.remove(0)
}

fn node(name: &str) -> Object {
    one(&format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"
    ))
}

fn lease(ns: &str, name: &str) -> Object {
    one(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  holderIdentity: {name}\n"
    ))
}

fn pod_on(name: &str, node: &str) -> Object {
    one(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox\n"
    ))
}

async fn secure_cluster() -> Cluster {
    Cluster::start(Options {
        secure: true,
        ..Default::default()
    })
    .await
}

/// A client with the cluster's CA but the given identity (or none).
fn client_with(cluster: &Cluster, cert: Option<(Vec<u8>, Vec<u8>)>, token: Option<&str>) -> Client {
    let admin = cluster.connect_config("admin");
    let tls = admin.tls.clone().unwrap();
    Client::connect(&ConnectConfig {
        servers: admin.servers.clone(),
        tls: Some(TlsConfig {
            cert_pem: cert.as_ref().map(|c| c.0.clone()),
            key_pem: cert.map(|c| c.1),
            ..tls
        }),
        token: token.map(str::to_string),
        namespace: None,
    })
    .unwrap()
    .with_failover_timeout(Duration::from_secs(2))
}

fn code_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("the call was expected to be refused");
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused() {
    let cluster = secure_cluster().await;
    let admin = cluster.client();
    admin
        .get("Namespace", "", "default")
        .await
        .expect("admin reads");

    // No credentials over TLS: Unauthenticated, naming what is missing.
    let anon = client_with(&cluster, None, None);
    let (code, msg) = code_of(anon.get("Namespace", "", "default").await);
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    assert!(msg.contains("anonymous"), "{msg}");
    let (code, _) = code_of(anon.create(node("intruder")).await);
    assert_eq!(code, Code::Unauthenticated);
    let (code, _) = code_of(anon.cluster_status().await);
    assert_eq!(code, Code::Unauthenticated);

    // A wrong token: Unauthenticated.
    let bad = client_with(&cluster, None, Some("0000000000000000000000000000"));
    let (code, msg) = code_of(bad.get("Namespace", "", "default").await);
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    assert!(msg.contains("invalid bearer token"), "{msg}");

    // Plaintext to a TLS port: no answer at all.
    let plain = Client::from_list(&cluster.addresses())
        .unwrap()
        .with_failover_timeout(Duration::from_secs(1));
    assert!(plain.get("Namespace", "", "default").await.is_err());

    // A certificate from another CA: the handshake fails.
    let other = tempfile::tempdir().unwrap();
    rkube_pki::bootstrap(
        other.path(),
        &rkube_pki::Plan {
            servers: vec!["127.0.0.1:1".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let forged = client_with(
        &cluster,
        Some((
            std::fs::read(other.path().join("admin.crt")).unwrap(),
            std::fs::read(other.path().join("admin.key")).unwrap(),
        )),
        None,
    );
    let e = forged.get("Namespace", "", "default").await.unwrap_err();
    assert_ne!(e.code(), Code::Ok);

    // Nothing the strangers tried was stored.
    let (code, _) = code_of(admin.get("Node", "", "intruder").await);
    assert_eq!(code, Code::NotFound);

    // The admin's token works as the admin's certificate does.
    let token = cluster.client_as("admin-token");
    token
        .create(node("by-token"))
        .await
        .expect("token admin writes");

    // rkubectl: with the kubeconfig it works; without it, a clear failure.
    let out = cluster.rkubectl(None, &["get", "nodes"]).ok();
    assert!(out.contains("by-token"), "{out}");
    let out = Command::new(bin("rkubectl"))
        .args(["-s", &cluster.addresses(), "get", "nodes"])
        .env_remove("RKUBECONFIG")
        .env("HOME", other.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_touch_only_their_own() {
    let cluster = secure_cluster().await;
    let admin = cluster.client();
    let wn1 = cluster.client_as("node-wn1");
    // Issued before wn1 acts, so wn2 exists to be attacked.
    let wn2 = cluster.client_as("node-wn2");
    wn2.create(node("wn2")).await.expect("wn2 registers itself");
    if let Err(e) = admin
        .create(one(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-node-lease\n",
        ))
        .await
    {
        assert_eq!(e.code(), Code::AlreadyExists, "{e}");
    }

    // Its own Node and Lease: yes.
    wn1.create(node("wn1")).await.expect("wn1 registers itself");
    let mut me = wn1.get("Node", "", "wn1").await.unwrap();
    if let Some(Body::Node(n)) = me.kind.as_mut() {
        n.metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("zone".into(), "a".into());
    }
    wn1.update(me).await.expect("wn1 updates its Node");
    wn1.create(lease("kube-node-lease", "wn1"))
        .await
        .expect("wn1 takes its Lease");

    // Another node's Node and Lease: no, and nothing changes.
    let (code, msg) = code_of(wn1.create(node("wn3")).await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("system:node:wn1"), "{msg}");
    let mut theirs = admin.get("Node", "", "wn2").await.unwrap();
    let before = theirs.resource_version().to_string();
    if let Some(Body::Node(n)) = theirs.kind.as_mut() {
        n.spec.get_or_insert_with(Default::default).unschedulable = true;
    }
    let (code, _) = code_of(wn1.update(theirs).await);
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(
        admin
            .get("Node", "", "wn2")
            .await
            .unwrap()
            .resource_version(),
        before
    );
    let (code, _) = code_of(wn1.create(lease("kube-node-lease", "wn2")).await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = code_of(wn1.create(lease("default", "wn1")).await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = code_of(admin.get("Node", "", "wn3").await);
    assert_eq!(code, Code::NotFound);

    // Pods: it reads them, changes only those bound to it.
    admin.create(pod_on("mine", "wn1")).await.unwrap();
    admin.create(pod_on("theirs", "wn2")).await.unwrap();
    let all = wn1
        .list(ListRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .expect("nodes read pods");
    assert_eq!(all.items.len(), 2);
    let mut mine = wn1.get("Pod", "default", "mine").await.unwrap();
    if let Some(Body::Pod(p)) = mine.kind.as_mut() {
        p.status = Some(PodStatus {
            phase: "Running".into(),
            ..Default::default()
        });
    }
    wn1.update_status(mine).await.expect("wn1 reports its pod");
    let mut theirs = wn1.get("Pod", "default", "theirs").await.unwrap();
    let before = theirs.resource_version().to_string();
    if let Some(Body::Pod(p)) = theirs.kind.as_mut() {
        p.status = Some(PodStatus {
            phase: "Failed".into(),
            ..Default::default()
        });
    }
    let (code, msg) = code_of(wn1.update_status(theirs.clone()).await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("bound to node wn1"), "{msg}");
    // Claiming the other node's pod by rewriting nodeName: refused too.
    if let Some(Body::Pod(p)) = theirs.kind.as_mut() {
        p.spec.as_mut().unwrap().node_name = "wn1".into();
    }
    let (code, _) = code_of(wn1.update_status(theirs).await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = code_of(
        wn1.delete(rkube_api::proto::DeleteRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "theirs".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    assert_eq!(
        admin
            .get("Pod", "default", "theirs")
            .await
            .unwrap()
            .resource_version(),
        before
    );
    // Creating pods, or Services: not a node's business.
    let (code, _) = code_of(wn1.create(pod_on("sneaky", "wn1")).await);
    assert_eq!(code, Code::PermissionDenied);
    // Its own pod it may delete.
    wn1.delete(rkube_api::proto::DeleteRequest {
        kind: "Pod".into(),
        namespace: "default".into(),
        name: "mine".into(),
        grace_period_seconds: Some(0),
        ..Default::default()
    })
    .await
    .expect("wn1 deletes its pod");

    // kube-proxy: its announcement Leases and reads, nothing else.
    let proxy = cluster.client_as("kube-proxy");
    proxy
        .create(lease("kube-system", "lb-172.28.5.200"))
        .await
        .expect("kube-proxy announces");
    let (code, _) = code_of(proxy.create(lease("kube-node-lease", "wn1x")).await);
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = code_of(proxy.create(node("proxy-node")).await);
    assert_eq!(code, Code::PermissionDenied);
    // DNS: reads only.
    let dns = cluster.client_as("kube-dns");
    dns.get("Pod", "default", "theirs")
        .await
        .expect("dns reads");
    let (code, _) = code_of(dns.create(node("dns-node")).await);
    assert_eq!(code, Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_peers_need_control_plane_certificates() {
    let cluster = secure_cluster().await;
    let admin_cfg = cluster.connect_config("admin");
    for who in ["admin", "node-wn1"] {
        let cfg = cluster.connect_config(who);
        let tls = cfg.tls.clone().unwrap();
        let ep = rkube_api::client::endpoint(&cluster.replicas[0].addr, Some(&tls)).unwrap();
        let mut peer = RaftPeerClient::new(ep.connect().await.expect("TLS connect"));
        let e = peer
            .send(RaftBatch {
                from: 2,
                messages: vec![],
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e}");
    }
    // A token cannot speak Raft either.
    let tls = admin_cfg.tls.clone().unwrap();
    let ep = rkube_api::client::endpoint(
        &cluster.replicas[0].addr,
        Some(&TlsConfig {
            cert_pem: None,
            key_pem: None,
            ..tls.clone()
        }),
    )
    .unwrap();
    let mut peer = RaftPeerClient::new(ep.connect().await.expect("TLS connect"));
    let e = peer
        .send(RaftBatch {
            from: 2,
            messages: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    // The replicas themselves do (writes commit over TLS, a leader kill
    // is survived).
    let client = cluster.client();
    client.create(node("n-before")).await.unwrap();
    let mut cluster = cluster;
    let leader = cluster.leader_index().await;
    cluster.kill(leader);
    wait_for(
        "a write after the leader was killed",
        Duration::from_secs(20),
        || {
            let c = cluster.client();
            async move { c.create(node("n-after")).await.ok() }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_reads_the_api_with_its_own_credential() {
    if Command::new("dig").arg("-v").output().is_err() {
        println!("RKUBE-SKIP: security: dig is not installed");
        return;
    }
    let cluster = secure_cluster().await;
    let admin = cluster.client();
    let svc = admin
        .create(one(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n",
        ))
        .await
        .unwrap();
    let Some(Body::Service(s)) = svc.kind else {
        panic!("not a service")
    };
    let ip = s.spec.unwrap().cluster_ip;
    let port = free_port();
    let metrics = free_port();
    let mut child = Command::new(bin("dns"))
        .args([
            "--kubeconfig",
            cluster.kubeconfig("kube-dns").to_str().unwrap(),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args(["--upstream", "127.0.0.1:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning dns");
    let answer = wait_for(
        "the service's record over the secure API",
        Duration::from_secs(20),
        || {
            let out = Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "+short",
                    "+time=1",
                    "+tries=1",
                    "web.default.svc.cluster.local",
                ])
                .output()
                .ok();
            let ip = ip.clone();
            async move {
                let text = String::from_utf8_lossy(&out?.stdout).trim().to_string();
                (text == ip).then_some(text)
            }
        },
    )
    .await;
    assert_eq!(answer, ip);
    let _ = child.kill();
    let _ = child.wait();
}
