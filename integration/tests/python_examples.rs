//! The Python gRPC example scripts (`examples/python/`) against a real
//! cluster: three replicas, hollow nodes, the scheduler and controllers.

use rkube_integration::{wait_for, Cluster, CmdResult, HollowNodes, Options};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python")
        .join(name)
}

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn run(c: &Cluster, gen: &std::path::Path, name: &str, args: &[&str]) -> CmdResult {
    Command::new("python3")
        .arg(script(name))
        .args(args)
        .env("RKUBE_SERVER", c.addresses())
        .env("RKUBE_PY_GEN", gen)
        .stdin(Stdio::null())
        .output()
        .expect("running python3")
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scripts_drive_the_cluster() {
    if !python_ready() {
        println!(
            "RKUBE-SKIP: python-examples: python3 with grpcio and grpcio-tools is not installed"
        );
        return;
    }
    let c = Cluster::start(Options::default()).await;
    let _nodes: Vec<HollowNodes> = ["wn1", "wn2"]
        .iter()
        .map(|n| HollowNodes::start(&c, &[n], &[]))
        .collect();
    let gen = tempfile::tempdir().unwrap();

    // Create the seed's pod from a dict; it gets scheduled and runs.
    let out = run(&c, gen.path(), "create_pod.py", &[]).ok();
    assert!(out.contains("\"name\": \"nginx-pod\""), "{out}");
    wait_for("nginx-pod Running", Duration::from_secs(30), || async {
        let out = run(&c, gen.path(), "list_pods_nodes.py", &[]).ok();
        out.lines()
            .any(|l| l.contains("nginx-pod") && l.contains("Running"))
            .then_some(())
    })
    .await;
    let out = run(&c, gen.path(), "list_pods_nodes.py", &[]).ok();
    assert!(
        out.contains("wn1\tTrue") && out.contains("wn2\tTrue"),
        "{out}"
    );

    // Watch live: start the watcher, wait until its watch is open, then
    // cause the changes it must print.
    let mut watcher = Command::new("python3")
        .arg(script("watch_events.py"))
        .args(["Pod", "--count", "2", "--namespace", "default"])
        .env("RKUBE_SERVER", c.addresses())
        .env("RKUBE_PY_GEN", gen.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the watcher lists within 30 s")
        .unwrap_or_default();
    assert!(first.starts_with("listed"), "{first}");
    run(&c, gen.path(), "create_pod.py", &["second-pod"]).ok();
    let mut lines = Vec::new();
    while let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
        lines.push(l);
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    let out = lines.join("\n");
    assert!(out.contains("ADDED Pod default/second-pod"), "{out}");

    // Scale a ReplicaSet.
    c.rkubectl(
        None,
        &[
            "create",
            "-f",
            &rkube_integration::seed_dir()
                .join("manifests/nginx-rs.yml")
                .to_string_lossy(),
        ],
    )
    .ok();
    let out = run(&c, gen.path(), "scale_replicaset.py", &["nginx-rs", "4"]).ok();
    assert!(out.contains("spec.replicas=4"), "{out}");
    wait_for("4 RS pods", Duration::from_secs(30), || async {
        let out = c.rkubectl(None, &["get", "po", "-l", "tier=frontend"]).ok();
        (out.lines().filter(|l| l.contains("Running")).count() == 4).then_some(())
    })
    .await;

    // Drain wn1: cordoned, its pods recreated on wn2.
    let out = run(&c, gen.path(), "drain_node.py", &["wn1"]).ok();
    assert!(out.contains("node/wn1 drained"), "{out}");
    let nodes = c.rkubectl(None, &["get", "nodes"]).ok();
    assert!(nodes.contains("SchedulingDisabled"), "{nodes}");
    wait_for("RS pods all on wn2", Duration::from_secs(30), || async {
        let out = c
            .rkubectl(None, &["get", "po", "-l", "tier=frontend", "-o", "wide"])
            .ok();
        let rows: Vec<&str> = out.lines().skip(1).collect();
        (rows.len() == 4
            && rows
                .iter()
                .all(|l| l.contains("wn2") && l.contains("Running")))
        .then_some(())
    })
    .await;
}
