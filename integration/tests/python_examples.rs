//! The Python gRPC example scripts (`examples/python/`) against a real
//! cluster: three replicas, hollow nodes, the scheduler and controllers.
//! The cluster is secure (TLS, a PKI made for the test): the scripts read
//! the admin's kubeconfig from RKUBECONFIG (client certificate) or the
//! admin token's (bearer token); a kubeconfig without credentials is
//! refused. A plaintext cluster with the short-form config still works.

use rkube_integration::{wait_for, Cluster, CmdResult, HollowNodes, Options};
use std::path::{Path, PathBuf};
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

/// A script under the configuration file `config` (RKUBECONFIG), with no
/// RKUBE_SERVER and no ~/.rkube/config to fall back on.
fn run_with(config: &Path, gen: &Path, name: &str, args: &[&str]) -> CmdResult {
    Command::new("python3")
        .arg(script(name))
        .args(args)
        .env_remove("RKUBE_SERVER")
        .env("RKUBECONFIG", config)
        .env("HOME", gen)
        .env("RKUBE_PY_GEN", gen)
        .stdin(Stdio::null())
        .output()
        .expect("running python3")
        .into()
}

/// A script as the cluster's admin (its kubeconfig: client certificate).
fn run(c: &Cluster, gen: &Path, name: &str, args: &[&str]) -> CmdResult {
    run_with(&c.kubeconfig("admin"), gen, name, args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scripts_drive_the_cluster() {
    if !python_ready() {
        println!(
            "RKUBE-SKIP: python-examples: python3 with grpcio and grpcio-tools is not installed"
        );
        return;
    }
    let c = Cluster::start(Options {
        secure: true,
        ..Default::default()
    })
    .await;
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
        .env_remove("RKUBE_SERVER")
        .env("RKUBECONFIG", c.kubeconfig("admin"))
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

    // The admin's bearer token (call credentials over TLS) works too.
    let out = run_with(
        &c.kubeconfig("admin-token"),
        gen.path(),
        "list_pods_nodes.py",
        &[],
    )
    .ok();
    assert!(out.contains("second-pod"), "{out}");

    // Strangers: TLS with the CA but no credentials is refused with
    // UNAUTHENTICATED; the script says so in one line.
    let anon = gen.path().join("anonymous.kubeconfig");
    std::fs::write(
        &anon,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: rkube\n  cluster:\n    servers: [{}]\n    \
             certificate-authority: {}\ncontexts:\n- name: anonymous\n  context: {{cluster: rkube}}\n\
             current-context: anonymous\n",
            c.addresses().replace(',', ", "),
            c.pki_dir().unwrap().join("ca.crt").display()
        ),
    )
    .unwrap();
    let err = run_with(&anon, gen.path(), "list_pods_nodes.py", &[]).err();
    assert!(err.contains("error: UNAUTHENTICATED"), "{err}");
    assert!(!err.contains("Traceback"), "{err}");
    // A node may not create pods: PERMISSION_DENIED.
    let err = run_with(
        &c.kubeconfig("node-wn1"),
        gen.path(),
        "create_pod.py",
        &["by-node"],
    )
    .err();
    assert!(err.contains("error: PERMISSION_DENIED"), "{err}");
    // Bad configuration: named, no traceback.
    let err = run_with(
        &gen.path().join("missing"),
        gen.path(),
        "list_pods_nodes.py",
        &[],
    )
    .err();
    assert!(
        err.contains("(from RKUBECONFIG) does not exist") && !err.contains("Traceback"),
        "{err}"
    );
    let bad = gen.path().join("bad.kubeconfig");
    let admin_text = std::fs::read_to_string(c.kubeconfig("admin")).unwrap();
    std::fs::write(
        &bad,
        admin_text.replace("certificate-authority-data", "certificate-authority-dat"),
    )
    .unwrap();
    let err = run_with(&bad, gen.path(), "list_pods_nodes.py", &[]).err();
    assert!(err.contains("no certificate-authority"), "{err}");

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

/// A plaintext cluster (`--insecure`): the short-form config
/// (`servers: [...]`) and RKUBE_SERVER alone both still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_scripts_plaintext_short_form() {
    if !python_ready() {
        println!(
            "RKUBE-SKIP: python-examples: python3 with grpcio and grpcio-tools is not installed"
        );
        return;
    }
    let c = Cluster::start(Options::default()).await;
    let _nodes = HollowNodes::start(&c, &["wn1"], &[]);
    let gen = tempfile::tempdir().unwrap();
    let short = gen.path().join("config");
    let list: Vec<String> = c.addresses().split(',').map(str::to_string).collect();
    std::fs::write(&short, format!("servers: [{}]\n", list.join(", "))).unwrap();
    let out = run_with(&short, gen.path(), "create_pod.py", &[]).ok();
    assert!(out.contains("\"name\": \"nginx-pod\""), "{out}");
    wait_for("wn1 listed Ready", Duration::from_secs(30), || async {
        let out = run_with(&short, gen.path(), "list_pods_nodes.py", &[]).ok();
        out.contains("wn1\tTrue").then_some(())
    })
    .await;
    // RKUBE_SERVER without any file.
    let out: CmdResult = Command::new("python3")
        .arg(script("list_pods_nodes.py"))
        .env_remove("RKUBECONFIG")
        .env("HOME", gen.path().join("nohome"))
        .env("RKUBE_SERVER", c.addresses())
        .env("RKUBE_PY_GEN", gen.path())
        .stdin(Stdio::null())
        .output()
        .expect("running python3")
        .into();
    assert!(out.ok().contains("nginx-pod"));
}
