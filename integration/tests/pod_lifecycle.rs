//! What the node agent relies on, against three real replicas: node
//! podCIDR allocation (distinct, reused, immutable, exhaustion), graceful
//! pod deletion (Terminating, shortened, finished by the node's agent —
//! here hollow nodes — or forced with rkubectl), and the pod garbage
//! collector finishing pods a dead node will never finish.

use rkube_api::client::Client;
use rkube_api::proto::{
    object::Kind as Body, Container, DeleteRequest, ListRequest, Node, NodeCondition, NodeSpec,
    NodeStatus, ObjectMeta, PatchRequest, Pod, PodSpec, Preconditions, WatchRequest,
};
use rkube_api::Object;
use rkube_integration::{wait_for, Cluster, HollowNodes, Options};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::Code;

fn node(name: &str, cidr: &str) -> Object {
    Object::from_body(Body::Node(Node {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            pod_cidr: cidr.into(),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn pod_cidr(o: &Object) -> String {
    match &o.kind {
        Some(Body::Node(n)) => {
            let s = n.spec.clone().unwrap_or_default();
            assert_eq!(s.pod_cidrs, vec![s.pod_cidr.clone()], "{s:?}");
            s.pod_cidr
        }
        _ => panic!("not a node: {o:?}"),
    }
}

fn pod(name: &str, node: &str, grace: Option<i64>) -> Object {
    Object::from_body(Body::Pod(Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            labels: [("app".to_string(), "lifecycle".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "busybox".into(),
                ..Default::default()
            }],
            node_name: node.into(),
            termination_grace_period_seconds: grace,
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn deletion_of(o: &Object) -> (String, Option<i64>) {
    let m = o.metadata().cloned().unwrap_or_default();
    (m.deletion_timestamp, m.deletion_grace_period_seconds)
}

async fn get_pod(c: &Client, name: &str) -> Option<Object> {
    match c.get("Pod", "default", name).await {
        Ok(o) => Some(o),
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => panic!("get pod {name}: {s:?}"),
    }
}

/// A Ready node with no agent behind it (nothing finishes its pods).
async fn quiet_node(c: &Client, name: &str) {
    let mut n = c.create(node(name, "")).await.unwrap();
    if let Some(Body::Node(n)) = n.kind.as_mut() {
        n.status = Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    c.update_status(n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs_on_any_replica() {
    let c = Cluster::start(Options {
        extra_args: [
            "--cluster-cidr",
            "10.200.0.0/22",
            "--node-cidr-mask-size",
            "26",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    // Concurrent creates through all three replicas never share a range.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let client = c.client_of(i % 3);
            tokio::spawn(async move { client.create(node(&format!("n{i}"), "")).await })
        })
        .collect();
    let mut ranges = BTreeSet::new();
    for t in tasks {
        let n = t.await.unwrap().expect("node created");
        let cidr = pod_cidr(&n);
        assert!(
            cidr.starts_with("10.200.") && cidr.ends_with("/26"),
            "{cidr}"
        );
        assert!(ranges.insert(cidr.clone()), "{cidr} handed out twice");
    }
    assert!(
        ranges.contains("10.200.0.0/26"),
        "the lowest is taken: {ranges:?}"
    );
    // Stored as answered, on every replica.
    let client = c.client();
    let list = client
        .list(ListRequest {
            kind: "Node".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let stored: BTreeSet<String> = list.items.iter().map(pod_cidr).collect();
    assert_eq!(stored, ranges);

    // Delete + create reuses the lowest free range.
    let owner = list
        .items
        .iter()
        .find(|n| pod_cidr(n) == "10.200.0.0/26")
        .unwrap()
        .name()
        .to_string();
    client
        .delete(DeleteRequest {
            kind: "Node".into(),
            name: owner.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = c.client_of(1).create(node("again", "")).await.unwrap();
    assert_eq!(pod_cidr(&again), "10.200.0.0/26");

    // A node with its own range keeps it, even a duplicate.
    let own = client.create(node("own", "10.200.0.64/26")).await;
    let own = own.unwrap();
    assert_eq!(pod_cidr(&own), "10.200.0.64/26");

    // Immutable once set: Update and Patch that change it are refused,
    // naming spec.podCIDR.
    let mut changed = again.clone();
    if let Some(Body::Node(n)) = changed.kind.as_mut() {
        let s = n.spec.as_mut().unwrap();
        s.pod_cidr = "10.200.3.192/26".into();
        s.pod_cidrs = vec![s.pod_cidr.clone()];
    }
    let e = client.update(changed).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("spec.podCIDR"), "{}", e.message());
    let e = client
        .patch(PatchRequest {
            kind: "Node".into(),
            name: "again".into(),
            patch: r#"{"spec":{"podCIDR":"10.200.3.128/26"}}"#.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("spec.podCIDR"), "{}", e.message());
    // Other changes are fine and keep it.
    let labelled = client
        .patch(PatchRequest {
            kind: "Node".into(),
            name: "again".into(),
            patch: r#"{"metadata":{"labels":{"zone":"a"}}}"#.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pod_cidr(&labelled), "10.200.0.0/26");

    // 16 ranges in a /22 of /26s: fill them, then the next is refused with
    // an error naming the cluster CIDR.
    let mut i = 0;
    loop {
        match client.create(node(&format!("fill{i}"), "")).await {
            Ok(n) => assert!(ranges.insert(pod_cidr(&n)) || pod_cidr(&n) == "10.200.0.0/26"),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("10.200.0.0/22"), "{}", e.message());
                break;
            }
        }
        i += 1;
        assert!(i <= 16, "more ranges than the cluster CIDR holds");
    }
    let nodes = client
        .list(ListRequest {
            kind: "Node".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // 12 - 1 + again + own (shares no marker) + fills = 16 allocated ranges.
    let distinct: BTreeSet<String> = nodes.items.iter().map(pod_cidr).collect();
    assert_eq!(distinct.len(), 16, "{distinct:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_terminate_gracefully() {
    let c = Cluster::start(Options::default()).await;
    let client = c.client();
    let _wn1 = HollowNodes::start(&c, &["wn1"], &[]);
    quiet_node(&client, "quiet").await;

    // On a node without an agent, a delete leaves the pod Terminating.
    let created = client.create(pod("stuck", "quiet", None)).await.unwrap();
    let uid = created.metadata().unwrap().uid.clone();
    let mut events = client
        .watch(WatchRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            field_selector: "metadata.name=stuck".into(),
            resource_version: created.resource_version().into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let out = c
        .rkubectl(None, &["delete", "pod", "stuck", "--wait=false"])
        .ok();
    assert!(out.contains("pod \"stuck\" deleted"), "{out}");
    let o = get_pod(&client, "stuck").await.expect("still there");
    let (ts, grace) = deletion_of(&o);
    assert!(!ts.is_empty());
    assert_eq!(grace, Some(30));
    let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ev.r#type, "MODIFIED");
    let table = c.rkubectl(None, &["get", "pods"]).ok();
    let row = table
        .lines()
        .find(|l| l.starts_with("stuck "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("Terminating"), "{table}");

    // Waiting for it times out (kubectl's message), a shorter grace
    // shortens it, and --force removes it at once with kubectl's warning.
    let err = c
        .rkubectl(None, &["delete", "pod", "stuck", "--timeout=1s"])
        .err();
    assert!(err.contains("timed out waiting"), "{err}");
    client
        .delete(DeleteRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "stuck".into(),
            grace_period_seconds: Some(5),
            ..Default::default()
        })
        .await
        .unwrap();
    let o = get_pod(&client, "stuck").await.unwrap();
    assert_eq!(deletion_of(&o).1, Some(5));
    let r = c.rkubectl(
        None,
        &["delete", "pod", "stuck", "--grace-period=0", "--force"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("pod \"stuck\" force deleted"), "{r:?}");
    assert!(
        r.stderr.contains(
            "Immediate deletion does not wait for confirmation that the running resource has \
             been terminated"
        ),
        "{r:?}"
    );
    assert!(get_pod(&client, "stuck").await.is_none());
    let mut types = Vec::new();
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(10), events.next()).await
    {
        types.push(ev.r#type.clone());
        if ev.r#type == "DELETED" {
            break;
        }
    }
    assert_eq!(
        types.last().map(String::as_str),
        Some("DELETED"),
        "{types:?}"
    );
    assert!(
        types[..types.len() - 1].iter().all(|t| t == "MODIFIED"),
        "{types:?}"
    );

    // On a hollow node, its agent finishes the deletion (grace 0 + uid):
    // rkubectl's default wait returns long before the 30 s grace.
    client.create(pod("served", "wn1", None)).await.unwrap();
    wait_for("served Running", Duration::from_secs(30), || async {
        let o = get_pod(&client, "served").await?;
        match o.kind {
            Some(Body::Pod(p)) if p.status.as_ref()?.phase == "Running" => Some(()),
            _ => None,
        }
    })
    .await;
    let started = Instant::now();
    let out = c.rkubectl(None, &["delete", "pod", "served"]).ok();
    assert!(out.contains("pod \"served\" deleted"), "{out}");
    assert!(get_pod(&client, "served").await.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // Unbound pods go at once.
    let mut unbound = pod("unbound", "", None);
    if let Some(Body::Pod(p)) = unbound.kind.as_mut() {
        p.spec.as_mut().unwrap().scheduler_name = "nobody".into();
    }
    client.create(unbound).await.unwrap();
    let gone = client
        .delete(DeleteRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "unbound".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(deletion_of(&gone).0.is_empty());
    assert!(get_pod(&client, "unbound").await.is_none());

    // A replaced pod is not deleted by a stale final delete.
    client.create(pod("reborn", "quiet", None)).await.unwrap();
    let e = client
        .delete(DeleteRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "reborn".into(),
            preconditions: Some(Preconditions {
                uid: uid.clone(),
                resource_version: String::new(),
            }),
            grace_period_seconds: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_dead_and_missing_nodes_are_collected() {
    let c = Cluster::start(Options {
        extra_args: [
            "--node-monitor-grace-period",
            "4",
            "--pod-eviction-timeout",
            "1",
            "--controller-resync",
            "5",
            "--pod-gc-orphan-quarantine",
            "2",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    })
    .await;
    let client = c.client();
    let mut wn1 = HollowNodes::start(&c, &["wn1"], &[]);
    let _wn2 = HollowNodes::start(&c, &["wn2"], &[]);
    client.create(pod("doomed", "wn1", Some(2))).await.unwrap();
    wait_for("doomed Running", Duration::from_secs(30), || async {
        let o = get_pod(&client, "doomed").await?;
        match o.kind {
            Some(Body::Pod(p)) if p.status.as_ref()?.phase == "Running" => Some(()),
            _ => None,
        }
    })
    .await;

    // wn1 dies: the pod is evicted (Terminating, 2 s grace) and, its node
    // being NotReady, force-deleted by the pod GC once the grace has passed.
    wn1.kill();
    let evicted = wait_for("doomed evicted", Duration::from_secs(30), || async {
        let o = get_pod(&client, "doomed").await;
        match o {
            None => Some(None),
            Some(o) if !deletion_of(&o).0.is_empty() => Some(Some(o)),
            Some(_) => None,
        }
    })
    .await;
    if let Some(o) = evicted {
        assert_eq!(deletion_of(&o).1, Some(2));
    }
    wait_for("doomed collected", Duration::from_secs(30), || async {
        get_pod(&client, "doomed").await.is_none().then_some(())
    })
    .await;

    // A pod bound to a node that does not exist is collected after the
    // quarantine.
    client.create(pod("orphan", "ghost", None)).await.unwrap();
    wait_for("orphan collected", Duration::from_secs(30), || async {
        get_pod(&client, "orphan").await.is_none().then_some(())
    })
    .await;

    let out = c.rkubectl(None, &["get", "events"]).ok();
    assert!(out.contains("DeletionByPodGC"), "{out}");
}
