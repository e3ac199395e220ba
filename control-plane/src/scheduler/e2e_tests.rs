//! End-to-end tests of the scheduler (unit tests only): a single-replica
//! store in a temporary directory, real informers and handlers, and only
//! the scheduler running on them.

use super::testutil::{node, pod};
use crate::controllers::informer::Informers;
use crate::controllers::ControllerConfig;
use crate::handlers::Handlers;
use rkube_api::proto::{object::Kind as Body, Event, Pod};
use rkube_api::Object;
use std::time::Duration;

type Cluster = crate::testing::OneReplica;

async fn single_replica() -> Cluster {
    crate::testing::one_replica(10, 10, &["default"]).await
}

fn obj_pod(p: Pod) -> Object {
    Object::from_body(Body::Pod(p))
}

/// Creates a node with its status (create may or may not keep status).
async fn add_node(h: &Handlers, n: rkube_api::proto::Node) {
    let o = Object::from_body(Body::Node(n));
    h.create(o.clone(), false).await.unwrap();
    h.update(o, true, false).await.unwrap();
}

async fn get_pod(h: &Handlers, name: &str) -> Pod {
    match h.get("Pod", "default", name, "").await.unwrap().kind {
        Some(Body::Pod(p)) => p,
        _ => unreachable!(),
    }
}

fn node_of(p: &Pod) -> &str {
    p.spec.as_ref().map(|s| s.node_name.as_str()).unwrap_or("")
}

/// Waits until `f` holds of pod `name`.
async fn wait_pod(h: &Handlers, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let p = get_pod(h, name).await;
        if f(&p) {
            return p;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("pod {name}: timed out waiting for {what}: {p:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events_of(h: &Handlers, pod: &str) -> Vec<Event> {
    let (items, _) = h.list("Event", "default", "", "", "").await.unwrap();
    items
        .into_iter()
        .filter_map(|o| match o.kind {
            Some(Body::Event(e)) => Some(e),
            _ => None,
        })
        .filter(|e| e.involved_object.as_ref().is_some_and(|r| r.name == pod))
        .collect()
}

async fn wait_event(h: &Handlers, pod: &str, reason: &str) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(e) = events_of(h, pod)
            .await
            .into_iter()
            .find(|e| e.reason == reason)
        {
            return e;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("pod {pod}: no {reason} event");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn scheduled_condition(p: &Pod) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "PodScheduled")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn start_scheduler(h: &Handlers) -> Informers {
    let informers = Informers::new(h.clone());
    super::start(&informers, &ControllerConfig::default());
    informers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_spreads_and_reports() {
    let c = single_replica().await;
    let h = &c.handlers;
    for n in ["wn1", "wn2", "wn3"] {
        add_node(h, node(n).cpu("1").memory("1Gi").pods("10").build()).await;
    }
    let _informers = start_scheduler(h);

    // Three pods of one controller: one per node.
    for i in 0..3 {
        let p = pod(&format!("rc-{i}")).cpu("600m").owner("rc-uid").build();
        h.create(obj_pod(p), false).await.unwrap();
    }
    let mut nodes = Vec::new();
    for i in 0..3 {
        let p = wait_pod(h, &format!("rc-{i}"), "a node", |p| !node_of(p).is_empty()).await;
        nodes.push(node_of(&p).to_string());
        assert_eq!(
            scheduled_condition(&p).map(|c| c.0),
            Some("True".to_string())
        );
    }
    nodes.sort();
    assert_eq!(nodes, ["wn1", "wn2", "wn3"]);
    let p0 = get_pod(h, "rc-0").await;
    let ev = wait_event(h, "rc-0", "Scheduled").await;
    assert_eq!(ev.r#type, "Normal");
    assert_eq!(
        ev.message,
        format!("Successfully assigned default/rc-0 to {}", node_of(&p0))
    );
    assert_eq!(ev.source.as_ref().unwrap().component, "default-scheduler");

    // A fourth does not fit: FailedScheduling and PodScheduled=False.
    let big = pod("big").cpu("600m").build();
    h.create(obj_pod(big), false).await.unwrap();
    let msg = "0/3 nodes are available: 3 Insufficient cpu.";
    let p = wait_pod(h, "big", "Unschedulable", |p| {
        scheduled_condition(p).is_some_and(|c| c.1 == "Unschedulable")
    })
    .await;
    assert_eq!(
        scheduled_condition(&p),
        Some(("False".into(), "Unschedulable".into(), msg.into()))
    );
    assert!(node_of(&p).is_empty());
    let ev = wait_event(h, "big", "FailedScheduling").await;
    assert_eq!((ev.r#type.as_str(), ev.message.as_str()), ("Warning", msg));

    // Deleting a pod frees its node: the pending pod is retried (at the end
    // of its first back-off, 1 s) without waiting for the periodic resync
    // (30 s, longer than `wait_pod` waits), and goes there.
    let freed = node_of(&p0).to_string();
    h.delete("Pod", "default", "rc-0", "", None).await.unwrap();
    let p = wait_pod(h, "big", "a node", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), freed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_changes_requeue_pending_pods() {
    let c = single_replica().await;
    let h = &c.handlers;
    add_node(h, node("a").build()).await;
    add_node(h, node("b").unschedulable().build()).await;
    let _informers = start_scheduler(h);

    let p = pod("picky").node_selector("disk", "ssd").build();
    h.create(obj_pod(p), false).await.unwrap();
    let msg = "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
               1 node(s) were unschedulable.";
    wait_pod(h, "picky", "Unschedulable", |p| {
        scheduled_condition(p).is_some_and(|c| c.2 == msg)
    })
    .await;

    // A node that does not help: the pod is retried (after its back-off)
    // and the condition updated once with the new message; that write does
    // not trigger another attempt, so nothing more is written.
    add_node(h, node("c").label("disk", "hdd").build()).await;
    let msg3 = "0/3 nodes are available: 1 node(s) were unschedulable, \
                2 node(s) didn't match Pod's node affinity/selector.";
    let p = wait_pod(h, "picky", "the new message", |p| {
        scheduled_condition(p).is_some_and(|c| c.2 == msg3)
    })
    .await;
    let rv = p.metadata.unwrap().resource_version;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let p = get_pod(h, "picky").await;
    assert_eq!(p.metadata.as_ref().unwrap().resource_version, rv);
    let mut failed: Vec<(String, i32)> = events_of(h, "picky")
        .await
        .into_iter()
        .filter(|e| e.reason == "FailedScheduling")
        .map(|e| (e.message, e.count))
        .collect();
    failed.sort();
    assert_eq!(failed, [(msg.to_string(), 1), (msg3.to_string(), 1)]);

    // A DaemonSet-style pod pinned to the cordoned node, tolerating that.
    let ds = pod("ds-b")
        .pinned_to("b")
        .toleration(
            "node.kubernetes.io/unschedulable",
            "Exists",
            "",
            "NoSchedule",
        )
        .build();
    h.create(obj_pod(ds), false).await.unwrap();
    let p = wait_pod(h, "ds-b", "a node", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), "b");

    // Labelling a node lets the picky pod in.
    let labelled = Object::from_body(Body::Node(node("a").label("disk", "ssd").build()));
    let cur = h.get("Node", "", "a", "").await.unwrap();
    let mut upd = labelled;
    if let (Some(m), Some(cm)) = (upd.metadata_mut(), cur.metadata()) {
        m.resource_version = cm.resource_version.clone();
    }
    h.update(upd, false, false).await.unwrap();
    let p = wait_pod(h, "picky", "a node", |p| !node_of(p).is_empty()).await;
    assert_eq!(node_of(&p), "a");

    // Pods for another scheduler are left alone.
    let mut other = pod("other").build();
    other.spec.as_mut().unwrap().scheduler_name = "my-scheduler".into();
    h.create(obj_pod(other), false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p = get_pod(h, "other").await;
    assert!(node_of(&p).is_empty() && scheduled_condition(&p).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pods_fill_nodes_without_overcommit() {
    let c = single_replica().await;
    let h = &c.handlers;
    for i in 0..5 {
        add_node(h, node(&format!("n{i}")).cpu("1").pods("110").build()).await;
    }
    let _informers = start_scheduler(h);
    // 60 pods of 100m on 5 CPUs: 50 fit.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let h = h.clone();
        tasks.spawn(async move {
            let p = pod(&format!("p{i:02}")).cpu("100m").owner("rs").build();
            h.create(obj_pod(p), false).await.map(|_| ())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (items, _) = h.list("Pod", "default", "", "", "").await.unwrap();
        let pods: Vec<Pod> = items
            .into_iter()
            .filter_map(|o| match o.kind {
                Some(Body::Pod(p)) => Some(p),
                _ => None,
            })
            .collect();
        let bound = pods.iter().filter(|p| !node_of(p).is_empty()).count();
        let unschedulable = pods
            .iter()
            .filter(|p| scheduled_condition(p).is_some_and(|c| c.1 == "Unschedulable"))
            .count();
        if bound == 50 && unschedulable == 10 {
            let mut per_node = std::collections::HashMap::new();
            for p in &pods {
                if !node_of(p).is_empty() {
                    *per_node.entry(node_of(p).to_string()).or_insert(0) += 1;
                }
            }
            assert!(per_node.values().all(|&n| n == 10), "{per_node:?}");
            break;
        }
        assert!(bound <= 50, "over-committed: {bound} bound");
        if tokio::time::Instant::now() > deadline {
            panic!("bound {bound}, unschedulable {unschedulable}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// End-to-end rate (run in release with `--ignored --nocapture`): pods
/// created up front, then the scheduler started; time until all are bound
/// (each bind and its Scheduled event are Raft writes).
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bind_rate() {
    let c = single_replica().await;
    let h = &c.handlers;
    let (nodes, pods) = (5000, 10_000);
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in 0..50 {
        let h = h.clone();
        tasks.spawn(async move {
            for i in (chunk..nodes).step_by(50) {
                add_node(&h, node(&format!("node-{i:05}")).standard().build()).await;
            }
            for i in (chunk..pods).step_by(50) {
                let p = pod(&format!("p{i:05}")).cpu("10m").owner("rs").build();
                h.create(obj_pod(p), false).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let t = std::time::Instant::now();
    let _informers = start_scheduler(h);
    loop {
        // Counted in place: cloning every pod per poll would cost more than
        // what is measured.
        let bound = {
            let st = h.store().state();
            st.range("/registry/pods/")
                .filter(
                    |(_, s)| matches!(&s.object.kind, Some(Body::Pod(p)) if !node_of(p).is_empty()),
                )
                .count()
        };
        if bound == pods {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{bound} bound");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{pods} pods over {nodes} nodes bound in {secs:.2} s: {:.0} pods/s",
        pods as f64 / secs
    );
}
