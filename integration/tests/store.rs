//! The replicated store under failure, through the gRPC API: three real
//! replicas on loopback, killed with SIGKILL and restarted.

use rkube_api::client::Client;
use rkube_api::proto::{
    object::Kind as Body, Container, ListRequest, ObjectMeta, Pod, PodSpec, WatchRequest,
};
use rkube_api::Object;
use rkube_integration::{wait_for, Cluster, Options};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;

fn pod(name: &str) -> Object {
    Object::from_body(Body::Pod(Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: [("app".to_string(), "store-test".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "busybox".into(),
                ..Default::default()
            }],
            // These tests watch the store alone: keep the scheduler (which
            // would mark the pods Unschedulable) out of them.
            scheduler_name: "store-test".into(),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn list_pods() -> ListRequest {
    ListRequest {
        kind: "Pod".into(),
        namespace: "default".into(),
        ..Default::default()
    }
}

/// Creates `name` until the store says it exists. An ambiguous failure
/// (leader lost mid-write) is retried; AlreadyExists after such a retry means
/// the first attempt landed. Returns whether the write is known to be stored.
async fn create_until_known(c: &Client, name: &str) -> bool {
    for _ in 0..100 {
        match c.create(pod(name)).await {
            Ok(_) => return true,
            Err(s) if s.code() == Code::AlreadyExists => return true,
            Err(s)
                if matches!(
                    s.code(),
                    Code::DeadlineExceeded | Code::Unavailable | Code::Unknown | Code::Internal
                ) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(s) => panic!("create {name}: unexpected {s:?}"),
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_kill_and_replica_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(Options {
        snapshot_interval: 200,
        snapshot_keep: 20,
        ..Default::default()
    })
    .await;
    let leader = cluster.leader_index().await;
    let client = cluster.client();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, acked, count, stop) = (client.clone(), acked.clone(), count.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("w{w}-{n}");
                if create_until_known(&c, &name).await {
                    acked.lock().unwrap().insert(name);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
            }
        }));
    }
    wait_for(
        "150 acknowledged writes",
        Duration::from_secs(60),
        || async { (count.load(Ordering::SeqCst) >= 150).then_some(()) },
    )
    .await;
    cluster.kill(leader);
    // Enough writes that the survivors snapshot and compact past the
    // killed replica's log.
    wait_for(
        "600 acknowledged writes after the kill",
        Duration::from_secs(60),
        || async { (count.load(Ordering::SeqCst) >= 600).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let list = client.list(list_pods()).await.unwrap();
    let names: Vec<String> = list.items.iter().map(|o| o.name().to_string()).collect();
    let stored: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(names.len(), stored.len(), "no object twice");
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    let uids: HashSet<String> = list
        .items
        .iter()
        .map(|o| o.metadata().unwrap().uid.clone())
        .collect();
    assert_eq!(uids.len(), list.items.len());

    // The killed replica comes back and catches up, by snapshot: the
    // survivors compacted the entries it missed.
    let rev: i64 = list.resource_version.parse().unwrap();
    cluster.restart(leader);
    let st = cluster.wait_revision(leader, rev).await;
    assert!(
        st.snapshot_index > 0,
        "the restarted replica should hold a snapshot: {st:?}"
    );
    assert!(
        cluster.log_of(leader).contains("installing snapshot"),
        "the restarted replica should have caught up by snapshot:\n{}",
        cluster.log_of(leader)
    );
    let local = cluster
        .client_of(leader)
        .list(ListRequest {
            resource_version: "0".into(),
            ..list_pods()
        })
        .await
        .unwrap();
    let local_names: BTreeSet<String> = local.items.iter().map(|o| o.name().to_string()).collect();
    assert_eq!(
        local_names, stored,
        "the restarted replica has the same state"
    );
    // And the cluster keeps taking writes with it.
    assert!(create_until_known(&client, "after-restart").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_replicas_restarted_keep_all_state() {
    let mut cluster = Cluster::start(Options::default()).await;
    let client = cluster.client();
    for i in 0..50 {
        assert!(create_until_known(&client, &format!("p{i}")).await);
    }
    let before = client.list(list_pods()).await.unwrap();
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_ready().await;
    let after = client.list(list_pods()).await.unwrap();
    let key = |l: &rkube_api::proto::ObjectList| -> BTreeMap<String, String> {
        l.items
            .iter()
            .map(|o| (o.name().to_string(), o.resource_version().to_string()))
            .collect()
    };
    assert_eq!(key(&before), key(&after));
    assert_eq!(after.items.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_on_a_follower_sees_every_change_once_in_order_across_leader_change() {
    let mut cluster = Cluster::start(Options::default()).await;
    let leader = cluster.leader_index().await;
    let follower = (leader + 1) % 3;
    let client = cluster.client();
    let start: i64 = client
        .list(list_pods())
        .await
        .unwrap()
        .resource_version
        .parse()
        .unwrap();
    let mut stream = cluster
        .client_of(follower)
        .watch(WatchRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            resource_version: start.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev2 = events.clone();
    let reader = tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            let ev = ev.expect("watch stream error");
            let o = ev.object.unwrap();
            ev2.lock().unwrap().push((
                ev.r#type,
                o.name().to_string(),
                ev.resource_version.parse::<i64>().unwrap(),
            ));
        }
    });
    for i in 0..40 {
        assert!(create_until_known(&client, &format!("a{i}")).await);
    }
    // Updates and deletes too, so every change type crosses the failover.
    let p = client.get("Pod", "default", "a0").await.unwrap();
    let mut p2 = p.clone();
    p2.metadata_mut()
        .unwrap()
        .labels
        .insert("x".into(), "y".into());
    client.update(p2).await.unwrap();
    cluster.kill(leader);
    for i in 40..80 {
        assert!(create_until_known(&client, &format!("a{i}")).await);
    }
    client
        .delete(rkube_api::proto::DeleteRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "a1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // Expected: 80 ADDED, 1 MODIFIED, 1 DELETED.
    let got = wait_for("82 watch events", Duration::from_secs(30), || async {
        let e = events.lock().unwrap().clone();
        (e.len() >= 82).then_some(e)
    })
    .await;
    reader.abort();
    let revs: Vec<i64> = got.iter().map(|e| e.2).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revisions strictly increase (in order, none twice): {revs:?}"
    );
    assert!(revs[0] > start);
    let added: BTreeSet<&str> = got
        .iter()
        .filter(|e| e.0 == "ADDED")
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(added.len(), 80, "{got:?}");
    assert_eq!(got.iter().filter(|e| e.0 == "MODIFIED").count(), 1);
    assert_eq!(got.iter().filter(|e| e.0 == "DELETED").count(), 1);
    assert_eq!(got.len(), 82, "no extra events: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_and_changes_nothing() {
    let cluster = Cluster::start(Options {
        history: 20,
        ..Default::default()
    })
    .await;
    let client = cluster.client();

    // Garbage on the gRPC port: the connection is dropped, the server serves on.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&cluster.replicas[0].addr)
            .await
            .unwrap();
        let junk: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        let _ = s.write_all(&junk).await;
        let mut buf = vec![0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        let mut s = tokio::net::TcpStream::connect(&cluster.replicas[0].addr)
            .await
            .unwrap();
        let _ = s
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\xff\xff\xff\xff")
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    }
    assert!(cluster.status_of(0).await.is_some(), "replica still serves");

    // Over 1.5 MiB.
    let mut big = pod("big");
    if let Some(Body::Pod(p)) = big.kind.as_mut() {
        p.spec.as_mut().unwrap().containers[0].args = vec!["x".repeat(1024); 2048];
    }
    let e = client.create(big).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("1.5 MiB"), "{}", e.message());
    assert_eq!(
        client
            .get("Pod", "default", "big")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Invalid name.
    let e = client.create(pod("Bad_Name")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("metadata.name"), "{}", e.message());

    // Missing namespace.
    let mut p = pod("x");
    p.metadata_mut().unwrap().namespace = "nope".into();
    let e = client.create(p).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Conflicting update.
    let created = client.create(pod("c")).await.unwrap();
    let mut a = created.clone();
    a.metadata_mut()
        .unwrap()
        .labels
        .insert("v".into(), "1".into());
    client.update(a).await.unwrap();
    let mut stale = created.clone();
    stale
        .metadata_mut()
        .unwrap()
        .labels
        .insert("v".into(), "2".into());
    let e = client.update(stale).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    let now = client.get("Pod", "default", "c").await.unwrap();
    assert_eq!(
        now.metadata().unwrap().labels.get("v").map(String::as_str),
        Some("1")
    );

    // Duplicate create.
    assert_eq!(
        client.create(pod("c")).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    // Bad selector.
    let e = client
        .list(ListRequest {
            label_selector: "a in (x".into(),
            ..list_pods()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A watch from compacted history is told to relist.
    for i in 0..30 {
        client.create(pod(&format!("h{i}"))).await.unwrap();
    }
    let e = match client
        .watch(WatchRequest {
            kind: "Pod".into(),
            resource_version: "1".into(),
            ..Default::default()
        })
        .await
    {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
    };
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert!(e.message().contains("too old"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_addresses_that_are_released_on_delete() {
    use rkube_api::proto::{Service, ServicePort, ServiceSpec};
    let cluster = Cluster::start(Options::default()).await;
    let client = cluster.client();
    let svc = |name: &str, ty: &str, ip: &str, node_port: i32| {
        Object::from_body(Body::Service(Service {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                r#type: ty.into(),
                cluster_ip: ip.into(),
                selector: [("app".to_string(), "x".to_string())].into(),
                ports: vec![ServicePort {
                    port: 80,
                    node_port,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }))
    };
    let spec_of = |o: &Object| match &o.kind {
        Some(Body::Service(s)) => s.spec.clone().unwrap(),
        _ => panic!("not a service"),
    };
    // Concurrent creates never share an address.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = client.clone();
        let s = svc(&format!("s{i}"), "NodePort", "", 0);
        tasks.push(tokio::spawn(async move { c.create(s).await.unwrap() }));
    }
    let mut ips = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for t in tasks {
        let spec = spec_of(&t.await.unwrap());
        assert!(spec.cluster_ip.starts_with("10."), "{spec:?}");
        assert_eq!(spec.cluster_ips, vec![spec.cluster_ip.clone()]);
        assert!(ips.insert(spec.cluster_ip));
        let np = spec.ports[0].node_port;
        assert!((30000..=32767).contains(&np));
        assert!(ports.insert(np));
    }
    // A requested address that is taken is refused, naming it.
    let taken = ips.iter().next().unwrap().clone();
    let e = client
        .create(svc("dup", "ClusterIP", &taken, 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("already allocated"), "{}", e.message());
    let e = client
        .create(svc("out", "ClusterIP", "192.168.0.1", 0))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("not in the valid range"),
        "{}",
        e.message()
    );
    // An update without the address keeps it; a delete releases it.
    let s0 = client.get("Service", "default", "s0").await.unwrap();
    let ip0 = spec_of(&s0).cluster_ip;
    let mut upd = s0.clone();
    if let Some(Body::Service(s)) = upd.kind.as_mut() {
        let spec = s.spec.as_mut().unwrap();
        spec.cluster_ip.clear();
        spec.cluster_ips.clear();
        spec.selector.insert("tier".into(), "web".into());
    }
    let after = client.update(upd).await.unwrap();
    assert_eq!(spec_of(&after).cluster_ip, ip0);
    client
        .delete(rkube_api::proto::DeleteRequest {
            kind: "Service".into(),
            namespace: "default".into(),
            name: "s0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = client
        .create(svc("reuse", "ClusterIP", &ip0, 0))
        .await
        .unwrap();
    assert_eq!(spec_of(&again).cluster_ip, ip0);
    let headless = client
        .create(svc("hl", "ClusterIP", "None", 0))
        .await
        .unwrap();
    assert_eq!(spec_of(&headless).cluster_ip, "None");
}
