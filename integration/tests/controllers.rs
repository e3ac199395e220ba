//! The scheduler and controllers against three real replicas and hollow
//! nodes (one `hollow-nodes` process per node, so one node can fail alone):
//! the seed's RC, RS and DaemonSet walkthroughs, node failure and recovery,
//! and the leader killed in the middle of a scale.

use rkube_api::proto::{object::Kind as Body, ListRequest};
use rkube_api::Object;
use rkube_integration::{seed_dir, wait_for, Cluster, HollowNodes, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn manifest(name: &str) -> String {
    seed_dir()
        .join("manifests")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn fast_failure_options() -> Options {
    Options {
        extra_args: [
            // Short, but not so short that a loaded CI machine's scheduling
            // hiccups look like dead nodes (target: repaired within 10 s).
            "--node-monitor-grace-period",
            "4",
            "--pod-eviction-timeout",
            "2",
            "--controller-resync",
            "5",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    }
}

/// Active pods matching `selector`: name -> node.
async fn pods(c: &Cluster, selector: &str) -> BTreeMap<String, (String, String)> {
    let l = c
        .client()
        .list(ListRequest {
            kind: "Pod".into(),
            namespace: "default".into(),
            label_selector: selector.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    l.items
        .iter()
        .filter_map(|o| match &o.kind {
            Some(Body::Pod(p)) => {
                let deleting = !p.metadata.as_ref().unwrap().deletion_timestamp.is_empty();
                let phase = p
                    .status
                    .as_ref()
                    .map(|s| s.phase.clone())
                    .unwrap_or_default();
                (!deleting && phase != "Succeeded" && phase != "Failed").then(|| {
                    (
                        o.name().to_string(),
                        (p.spec.as_ref().unwrap().node_name.clone(), phase),
                    )
                })
            }
            _ => None,
        })
        .collect()
}

/// Waits until exactly `n` pods match and all are Running.
async fn wait_running(c: &Cluster, selector: &str, n: usize) -> BTreeMap<String, (String, String)> {
    wait_for(
        &format!("{n} Running pods with {selector}"),
        Duration::from_secs(60),
        || async {
            let p = pods(c, selector).await;
            (p.len() == n && p.values().all(|(_, ph)| ph == "Running")).then_some(p)
        },
    )
    .await
}

fn nodes_of(p: &BTreeMap<String, (String, String)>) -> Vec<String> {
    let mut v: Vec<String> = p.values().map(|(n, _)| n.clone()).collect();
    v.sort();
    v
}

async fn node_ready(c: &Cluster, name: &str) -> String {
    match c.client().get("Node", "", name).await.map(|o| o.kind) {
        Ok(Some(Body::Node(n))) => n
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.r#type == "Ready"))
            .map(|c| c.status)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controller_and_replica_set_walkthrough() {
    let c = Cluster::start(Options::default()).await;
    let _nodes: Vec<HollowNodes> = ["wn1", "wn2", "wn3"]
        .iter()
        .map(|n| HollowNodes::start(&c, &[n], &[]))
        .collect();

    c.rkubectl(None, &["create", "-f", &manifest("nginx-rc.yml")])
        .ok();
    let p = wait_running(&c, "app=nginx-app", 3).await;
    assert_eq!(
        nodes_of(&p),
        vec!["wn1", "wn2", "wn3"],
        "spread over the nodes: {p:?}"
    );
    let out = c.rkubectl(None, &["get", "po", "-l", "app=nginx-app"]).ok();
    assert_eq!(
        out.lines().filter(|l| l.contains("Running")).count(),
        3,
        "{out}"
    );
    let rc = c.rkubectl(None, &["get", "rc", "nginx-rc"]).ok();
    let row: Vec<&str> = rc.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[1..4], &["3", "3", "3"], "DESIRED CURRENT READY: {rc}");

    c.rkubectl(None, &["scale", "rc", "nginx-rc", "--replicas=6"])
        .ok();
    wait_running(&c, "app=nginx-app", 6).await;
    c.rkubectl(None, &["scale", "rc", "nginx-rc", "--replicas=2"])
        .ok();
    let p = wait_running(&c, "app=nginx-app", 2).await;

    // A deleted pod is replaced.
    let victim = p.keys().next().unwrap().clone();
    c.rkubectl(None, &["delete", "pod", &victim]).ok();
    let p = wait_running(&c, "app=nginx-app", 2).await;
    assert!(!p.contains_key(&victim), "{p:?}");

    // delete -f removes the controller and its pods.
    c.rkubectl(None, &["delete", "-f", &manifest("nginx-rc.yml")])
        .ok();
    wait_running(&c, "app=nginx-app", 0).await;

    // The ReplicaSet with matchExpressions.
    c.rkubectl(None, &["create", "-f", &manifest("nginx-rs.yml")])
        .ok();
    wait_running(&c, "tier in (frontend),app=nginx-app", 3).await;
    c.rkubectl(None, &["scale", "rs", "nginx-rs", "--replicas=5"])
        .ok();
    wait_running(&c, "tier=frontend", 5).await;
    let d = c.rkubectl(None, &["describe", "rs", "nginx-rs"]).ok();
    assert!(
        d.contains("SuccessfulCreate"),
        "events shown by describe:\n{d}"
    );
    // Orphan deletion leaves the pods, without an owner.
    c.rkubectl(None, &["delete", "rs", "nginx-rs", "--cascade=orphan"])
        .ok();
    wait_for("the ReplicaSet gone", Duration::from_secs(20), || async {
        c.client()
            .get("ReplicaSet", "default", "nginx-rs")
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let left = wait_running(&c, "tier=frontend", 5).await;
    for name in left.keys() {
        let o = c.client().get("Pod", "default", name).await.unwrap();
        assert!(
            o.metadata().unwrap().owner_references.is_empty(),
            "orphaned pods lose their owner reference: {o:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_follow_nodes_and_labels() {
    let c = Cluster::start(Options::default()).await;
    let _nodes: Vec<HollowNodes> = ["wn1", "wn2", "wn3"]
        .iter()
        .map(|n| HollowNodes::start(&c, &[n], &[]))
        .collect();
    wait_for("3 ready nodes", Duration::from_secs(20), || async {
        for n in ["wn1", "wn2", "wn3"] {
            if node_ready(&c, n).await != "True" {
                return None;
            }
        }
        Some(())
    })
    .await;
    c.rkubectl(None, &["create", "-f", &manifest("fluentds.yml")])
        .ok();
    c.rkubectl(
        None,
        &["create", "-f", &manifest("nginx-ds-subsetnodes.yml")],
    )
    .ok();
    let f = wait_running(&c, "name=fluentd", 3).await;
    assert_eq!(nodes_of(&f), vec!["wn1", "wn2", "wn3"]);
    wait_running(&c, "name=nginx", 0).await;

    c.rkubectl(None, &["label", "nodes", "wn1", "wn2", "node=server"])
        .ok();
    let n = wait_running(&c, "name=nginx", 2).await;
    assert_eq!(nodes_of(&n), vec!["wn1", "wn2"]);
    c.rkubectl(None, &["label", "nodes", "wn3", "node=server"])
        .ok();
    let n = wait_running(&c, "name=nginx", 3).await;
    assert_eq!(nodes_of(&n), vec!["wn1", "wn2", "wn3"]);
    c.rkubectl(None, &["label", "nodes", "wn1", "node-"]).ok();
    let n = wait_running(&c, "name=nginx", 2).await;
    assert_eq!(nodes_of(&n), vec!["wn2", "wn3"]);

    let ds = c.rkubectl(None, &["get", "ds", "nginx-ds"]).ok();
    let row: Vec<&str> = ds.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[1..6], &["2", "2", "2", "2", "2"], "{ds}");

    // A new node gets fluentd, and not nginx (no label).
    let _wn4 = HollowNodes::start(&c, &["wn4"], &[]);
    let f = wait_running(&c, "name=fluentd", 4).await;
    assert_eq!(nodes_of(&f), vec!["wn1", "wn2", "wn3", "wn4"]);
    let n = wait_running(&c, "name=nginx", 2).await;
    assert_eq!(nodes_of(&n), vec!["wn2", "wn3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_repaired_and_rejoins() {
    let c = Cluster::start(fast_failure_options()).await;
    let mut nodes: BTreeMap<&str, HollowNodes> = ["wn1", "wn2", "wn3"]
        .into_iter()
        .map(|n| (n, HollowNodes::start(&c, &[n], &[])))
        .collect();
    c.rkubectl(None, &["create", "-f", &manifest("nginx-rs.yml")])
        .ok();
    c.rkubectl(None, &["create", "-f", &manifest("fluentds.yml")])
        .ok();
    let rs = wait_running(&c, "tier=frontend", 3).await;
    wait_running(&c, "name=fluentd", 3).await;

    let victim = rs.values().next().unwrap().0.clone();
    let killed = Instant::now();
    nodes.get_mut(victim.as_str()).unwrap().kill();
    wait_for(
        "the dead node NotReady/Unknown",
        Duration::from_secs(30),
        || async { (node_ready(&c, &victim).await != "True").then_some(()) },
    )
    .await;
    let out = c.rkubectl(None, &["get", "nodes"]).ok();
    assert!(out.contains("NotReady") || out.contains("Unknown"), "{out}");
    let repaired = wait_for(
        "the ReplicaSet's pods Running on the other nodes",
        Duration::from_secs(40),
        || async {
            let p = pods(&c, "tier=frontend").await;
            (p.len() == 3 && p.values().all(|(n, ph)| n != &victim && ph == "Running")).then_some(p)
        },
    )
    .await;
    println!(
        "node {victim} killed: its pods Running elsewhere after {:?}",
        killed.elapsed()
    );
    assert_eq!(repaired.len(), 3);
    // DaemonSet pods are neither moved nor duplicated.
    let f = pods(&c, "name=fluentd").await;
    assert_eq!(nodes_of(&f), vec!["wn1", "wn2", "wn3"], "{f:?}");

    // The node comes back: Ready again, its stale RS pods gone, its DS pod kept.
    nodes.get_mut(victim.as_str()).unwrap().restart();
    wait_for("the node Ready again", Duration::from_secs(30), || async {
        (node_ready(&c, &victim).await == "True").then_some(())
    })
    .await;
    let out = c.rkubectl(None, &["describe", "node", &victim]).ok();
    assert!(
        !out.contains("node.kubernetes.io/unreachable"),
        "taint removed:\n{out}"
    );
    let rs = wait_running(&c, "tier=frontend", 3).await;
    assert!(rs.values().all(|(n, _)| n != &victim) || rs.len() == 3);
    let f = wait_running(&c, "name=fluentd", 3).await;
    assert_eq!(nodes_of(&f), vec!["wn1", "wn2", "wn3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_scale_ends_with_exactly_thirty_pods() {
    let mut c = Cluster::start(Options::default()).await;
    let _nodes: Vec<HollowNodes> = ["wn1", "wn2", "wn3"]
        .iter()
        .map(|n| HollowNodes::start(&c, &[n], &[]))
        .collect();
    c.rkubectl(None, &["create", "-f", &manifest("nginx-rc.yml")])
        .ok();
    wait_running(&c, "app=nginx-app", 3).await;
    let leader = c.leader_index().await;
    c.rkubectl(None, &["scale", "rc", "nginx-rc", "--replicas=30"])
        .ok();
    // Kill the leader as soon as the controllers have started creating.
    wait_for(
        "the scale-up under way",
        Duration::from_secs(20),
        || async { (pods(&c, "app=nginx-app").await.len() > 3).then_some(()) },
    )
    .await;
    c.kill(leader);
    let p = wait_running(&c, "app=nginx-app", 30).await;
    assert_eq!(p.len(), 30);
    // And it stays at 30 once the new leader's controllers settle.
    let rc = wait_for("rc status 30/30", Duration::from_secs(30), || async {
        let o: Object = c
            .client()
            .get("ReplicationController", "default", "nginx-rc")
            .await
            .ok()?;
        match o.kind {
            Some(Body::ReplicationController(rc)) => {
                let s = rc.status.unwrap_or_default();
                (s.replicas == 30 && s.ready_replicas == 30).then_some(s)
            }
            _ => None,
        }
    })
    .await;
    assert_eq!(rc.replicas, 30);
    let names: BTreeSet<String> = pods(&c, "app=nginx-app").await.into_keys().collect();
    assert_eq!(names.len(), 30);
}
