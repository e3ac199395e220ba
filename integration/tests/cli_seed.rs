//! The seed's walkthrough with rkubectl against three real replicas: every
//! manifest in `shared/seed/manifests/` is created and then read, described,
//! labelled, scaled and deleted through each replica in turn; every file in
//! `shared/seed/bad-manifests/` is refused with the error its header names,
//! and nothing is stored.

use rkube_api::kinds::Kind;
use rkube_api::proto::ListRequest;
use rkube_integration::{seed_dir, wait_for, Cluster, Options};
use std::path::PathBuf;
use std::time::Duration;

fn manifest(name: &str) -> String {
    seed_dir()
        .join("manifests")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn bad(name: &str) -> String {
    seed_dir()
        .join("bad-manifests")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Object counts of every kind, to show that nothing was stored.
async fn census(c: &Cluster) -> Vec<(Kind, usize)> {
    let client = c.client();
    let mut out = Vec::new();
    for k in Kind::ALL {
        let l = client
            .list(ListRequest {
                kind: k.name().into(),
                ..Default::default()
            })
            .await
            .unwrap();
        out.push((k, l.items.len()));
    }
    out
}

fn write_nodes(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("nodes.yaml");
    let mut text = String::new();
    for n in ["wn1", "wn2", "wn3"] {
        text.push_str(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n  labels:\n    kubernetes.io/hostname: {n}\n---\n"
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn data_row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
        .split_whitespace()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_walkthrough_against_every_replica() {
    let c = Cluster::start(Options::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let nodes = write_nodes(tmp.path());
    let out = c
        .rkubectl(Some(0), &["create", "-f", nodes.to_str().unwrap()])
        .ok();
    assert!(out.contains("node/wn1 created"), "{out}");

    // Create each seed manifest through a different replica.
    let files = [
        ("nginx-pod.yml", "pod/nginx-pod created"),
        ("nginx-rc.yml", "replicationcontroller/nginx-rc created"),
        ("nginx-rs.yml", "replicaset.apps/nginx-rs created"),
        ("fluentds.yml", "daemonset.apps/fluentd-ds created"),
        (
            "nginx-ds-subsetnodes.yml",
            "daemonset.apps/nginx-ds created",
        ),
    ];
    for (i, (f, want)) in files.iter().enumerate() {
        let out = c
            .rkubectl(Some(i % 3), &["create", "-f", &manifest(f)])
            .ok();
        assert!(out.contains(want), "{f}: {out}");
    }
    // Creating again is refused by the server.
    let err = c
        .rkubectl(Some(1), &["create", "-f", &manifest("nginx-pod.yml")])
        .err();
    assert!(err.contains("AlreadyExists"), "{err}");

    for r in 0..3 {
        // Pods: kubectl's columns; Pending until a scheduler exists.
        let out = c.rkubectl(Some(r), &["get", "pods"]).ok();
        assert!(out.starts_with("NAME"), "{out}");
        for col in ["READY", "STATUS", "RESTARTS", "AGE"] {
            assert!(out.lines().next().unwrap().contains(col), "{out}");
        }
        let row = data_row(&out, "nginx-pod");
        assert_eq!(row[1], "0/1", "{out}");
        assert_eq!(row[2], "Pending", "{out}");

        let wide = c.rkubectl(Some(r), &["get", "po", "-o", "wide"]).ok();
        let header = wide.lines().next().unwrap();
        assert!(header.contains("IP") && header.contains("NODE"), "{wide}");

        let yaml = c
            .rkubectl(Some(r), &["get", "po", "nginx-pod", "-o", "yaml"])
            .ok();
        assert!(yaml.contains("kind: Pod"), "{yaml}");
        assert!(yaml.contains("name: nginx-pod"), "{yaml}");
        assert!(yaml.contains("image: nginx"), "{yaml}");
        assert!(yaml.contains("uid:"), "{yaml}");
        assert!(yaml.contains("resourceVersion:"), "{yaml}");
        assert!(yaml.contains("creationTimestamp:"), "{yaml}");
        assert!(yaml.contains("restartPolicy: Always"), "defaulted: {yaml}");

        let json = c
            .rkubectl(Some(r), &["get", "rc", "nginx-rc", "-o", "json"])
            .ok();
        let v: serde_json::Value = serde_json::from_str(&json).expect("-o json is JSON");
        assert_eq!(v["kind"], "ReplicationController");
        assert_eq!(v["spec"]["replicas"], 3);
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );

        let names = c.rkubectl(Some(r), &["get", "rs,ds", "-o", "name"]).ok();
        for n in [
            "replicaset.apps/nginx-rs",
            "daemonset.apps/fluentd-ds",
            "daemonset.apps/nginx-ds",
        ] {
            assert!(names.contains(n), "{names}");
        }

        let labels = c.rkubectl(Some(r), &["get", "po", "--show-labels"]).ok();
        assert!(labels.contains("app=nginx,tier=dev"), "{labels}");
        let sel = c.rkubectl(Some(r), &["get", "po", "-l", "app=nginx"]).ok();
        assert!(sel.contains("nginx-pod"), "{sel}");
        let none = c.rkubectl(Some(r), &["get", "po", "-l", "app in (nginx-app)"]);
        assert!(!none.stdout.contains("nginx-pod"), "{none:?}");

        let rc = c.rkubectl(Some(r), &["get", "rc"]).ok();
        assert!(rc.lines().next().unwrap().contains("DESIRED"), "{rc}");
        assert_eq!(data_row(&rc, "nginx-rc")[1], "3", "{rc}");

        let ds = c.rkubectl(Some(r), &["get", "ds", "-o", "wide"]).ok();
        assert!(ds.contains("NODE SELECTOR"), "{ds}");
        assert!(ds.contains("node=server"), "{ds}");
    }

    let d = c.rkubectl(Some(2), &["describe", "rc", "nginx-rc"]).ok();
    for want in [
        "Name:",
        "nginx-rc",
        "Selector:",
        "app=nginx-app",
        "Replicas:",
        "nginx-container",
    ] {
        assert!(d.contains(want), "describe rc lacks {want}:\n{d}");
    }
    let d = c.rkubectl(Some(1), &["describe", "rs", "nginx-rs"]).ok();
    assert!(
        d.contains("tier in (frontend)") || d.contains("tier in(frontend)"),
        "{d}"
    );
    let d = c.rkubectl(Some(0), &["describe", "pod", "nginx-pod"]).ok();
    for want in [
        "Name:",
        "nginx-pod",
        "Status:",
        "Pending",
        "nginx-container",
        "Image:",
    ] {
        assert!(d.contains(want), "describe pod lacks {want}:\n{d}");
    }

    // label, as the seed does for its DaemonSet's node subset.
    let out = c
        .rkubectl(Some(1), &["label", "nodes", "wn1", "wn2", "node=server"])
        .ok();
    assert!(
        out.contains("node/wn1 labeled") && out.contains("node/wn2 labeled"),
        "{out}"
    );
    let out = c
        .rkubectl(Some(2), &["get", "nodes", "-l", "node=server"])
        .ok();
    assert!(
        out.contains("wn1") && out.contains("wn2") && !out.contains("wn3"),
        "{out}"
    );
    let err = c
        .rkubectl(Some(0), &["label", "nodes", "wn1", "node=client"])
        .err();
    assert!(err.contains("--overwrite"), "{err}");
    c.rkubectl(
        Some(0),
        &["label", "nodes", "wn1", "node=client", "--overwrite"],
    )
    .ok();
    c.rkubectl(Some(0), &["label", "nodes", "wn1", "node-"])
        .ok();
    let out = c.rkubectl(Some(2), &["get", "nodes", "--show-labels"]).ok();
    assert!(!data_row(&out, "wn1").join(" ").contains("node="), "{out}");

    // scale, as the seed does: 6, then 2.
    for (r, n) in [(0, "6"), (1, "2")] {
        let out = c
            .rkubectl(
                Some(r),
                &["scale", "rc", "nginx-rc", &format!("--replicas={n}")],
            )
            .ok();
        assert!(
            out.contains("replicationcontroller/nginx-rc scaled"),
            "{out}"
        );
        let rc = c.rkubectl(Some(2), &["get", "rc", "nginx-rc"]).ok();
        assert_eq!(data_row(&rc, "nginx-rc")[1], n, "{rc}");
    }
    let out = c
        .rkubectl(None, &["scale", "rs", "nginx-rs", "--replicas=5"])
        .ok();
    assert!(out.contains("scaled"), "{out}");
    let err = c
        .rkubectl(None, &["scale", "rs", "nginx-rs", "--replicas=-1"])
        .err();
    assert!(!err.is_empty());

    // delete, by file and by name.
    let out = c
        .rkubectl(Some(2), &["delete", "-f", &manifest("nginx-pod.yml")])
        .ok();
    assert!(out.contains("pod \"nginx-pod\" deleted"), "{out}");
    let err = c.rkubectl(Some(0), &["get", "po", "nginx-pod"]).err();
    assert!(
        err.contains("NotFound") && err.contains("nginx-pod"),
        "{err}"
    );
    let out = c.rkubectl(Some(1), &["delete", "rc", "nginx-rc"]).ok();
    assert!(out.contains("nginx-rc\" deleted"), "{out}");
    let out = c
        .rkubectl(
            Some(0),
            &[
                "delete",
                "-f",
                &manifest("nginx-rs.yml"),
                "-f",
                &manifest("fluentds.yml"),
            ],
        )
        .ok();
    assert!(
        out.contains("nginx-rs") && out.contains("fluentd-ds"),
        "{out}"
    );
    let left = c.rkubectl(Some(2), &["get", "ds", "-o", "name"]).ok();
    assert_eq!(left.trim(), "daemonset.apps/nginx-ds", "{left}");

    // cluster-info names every replica and the leader.
    let info = c.rkubectl(None, &["cluster-info"]).ok();
    for r in &c.replicas {
        assert!(info.contains(&r.addr), "{info}");
    }
    assert!(info.contains("leader"), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_and_store_nothing() {
    let c = Cluster::start(Options::default()).await;
    // The leader creates its bootstrap namespaces one by one: count once
    // they all exist, so none lands between the two counts.
    wait_for(
        "the bootstrap namespaces",
        Duration::from_secs(20),
        || async {
            let client = c.client();
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                client.get("Namespace", "", ns).await.ok()?;
            }
            Some(())
        },
    )
    .await;
    let before = census(&c).await;
    let cases = [
        ("nginx-ds-apps-vi.yml", vec!["apps/vi", "DaemonSet"]),
        ("nginx-pod-bad-indent.yml", vec!["line 13"]),
        (
            "nginx-rs-seed-selector.yml",
            vec!["spec.selector.matchExpressions[0].app", "unknown field"],
        ),
        (
            "rs-selector-mismatch.yml",
            vec!["selector does not match template labels", "mismatch-rs"],
        ),
    ];
    for (file, wants) in &cases {
        for verb in ["create", "apply"] {
            let err = c.rkubectl(None, &[verb, "-f", &bad(file)]).err();
            for w in wants {
                assert!(err.contains(w), "{verb} {file}: expected {w:?} in:\n{err}");
            }
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    // The whole folder at once: refused before anything is sent.
    let dir = seed_dir().join("bad-manifests");
    c.rkubectl(None, &["create", "-f", dir.to_str().unwrap()])
        .err();
    assert_eq!(census(&c).await, before, "nothing may be stored");
    // And a good manifest still works afterwards.
    c.rkubectl(None, &["create", "-f", &manifest("nginx-rs.yml")])
        .ok();
}
