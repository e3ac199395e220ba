//! pod-bench: pod startup latency through the whole stack — created in the
//! API to Running as the kubelet reports it — over N pods on M real nodes
//! (network namespaces of this host, each with its own runtime shim and
//! kubelet; see integration/src/nodes.rs), with a local image; plus the
//! memory of the kubelet, the shim, and per running pod.
//!
//! Anchor, in the same run: Docker on this machine starting the same image
//! (`docker run -d`, which returns once the container is running), the same
//! number of times.
//!
//! Needs root, runc and the CNI plugins (the node tier's prerequisites).
//! Build with `cargo build --release --workspace --bins` and run
//! `target/release/pod-bench`.

use anyhow::{Context, Result};
use clap::Parser;
use rkube_api::manifest::decode_value;
use rkube_api::proto::{object::Kind as Body, DeleteRequest, WatchRequest};
use rkube_bench::{percentile, pss_kib, rss_kib};
use rkube_integration::nodes::{images_dir, LocalNode, NodeNet, NodeOptions};
use rkube_integration::{Cluster, Options};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Pods created per second (Kubernetes' density test creates at a set
    /// rate rather than all at once).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Skip the Docker anchor.
    #[arg(long)]
    no_docker: bool,
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<28} n={:<4} p50={:>7.0}ms p90={:>7.0}ms p99={:>7.0}ms max={:>7.0}ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

fn cgroup_rss_kib(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path.join("memory.stat"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("total_rss "))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(0)
        / 1024
}

/// Memory of the node's helper processes (container monitors, pause), KiB:
/// (RSS sum, PSS sum). RSS counts the monitors' shared binary once per
/// process; PSS divides shared pages among them.
fn monitors_kib(node: &LocalNode) -> (u64, u64) {
    let needle = node.dir.path().display().to_string();
    let skip = [node.kubelet_pid(), node.shim_pid()];
    let (mut rss, mut pss) = (0, 0);
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.filter_map(Result::ok) {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if skip.contains(&Some(pid)) {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&needle) {
                rss += rss_kib(pid);
                pss += pss_kib(pid);
            }
        }
    }
    (rss, pss)
}

async fn rkube(args: &Args) -> Result<()> {
    let net =
        NodeNet::create().context("the node tier cannot run here (see the RKUBE-SKIP line)")?;
    let cluster = Cluster::start(Options {
        host: net.host_ip(),
        ..Default::default()
    })
    .await;
    let nodes: Vec<LocalNode> = (0..args.nodes)
        .map(|i| {
            let opts = NodeOptions {
                kubelet_args: vec!["--sync-frequency".into(), "10".into()],
                ..Default::default()
            };
            LocalNode::start(&net, &cluster, &format!("bench-{i}"), i + 1, opts)
        })
        .collect();
    let client = cluster.client();
    // All nodes Ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = client
            .list(rkube_api::proto::ListRequest {
                kind: "Node".into(),
                ..Default::default()
            })
            .await?;
        let ready = list
            .items
            .iter()
            .filter(|o| match &o.kind {
                Some(Body::Node(n)) => n.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.r#type == "Ready" && c.status == "True")
                }),
                _ => false,
            })
            .count();
        if ready == nodes.len() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "nodes not Ready after 60s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let base: Vec<(u64, u64)> = nodes
        .iter()
        .map(|n| {
            (
                rss_kib(n.kubelet_pid().unwrap()),
                rss_kib(n.shim_pid().unwrap()),
            )
        })
        .collect();

    // Watch for Running before creating anything.
    let list = client
        .list(rkube_api::proto::ListRequest {
            kind: "Pod".into(),
            ..Default::default()
        })
        .await?;
    let mut stream = client
        .watch(WatchRequest {
            kind: "Pod".into(),
            resource_version: list.resource_version,
            ..Default::default()
        })
        .await?;
    let created: std::sync::Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let creator = {
        let (client, created) = (client.clone(), created.clone());
        let (pods, rate) = (args.pods, args.rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
            for i in 0..pods {
                tick.tick().await;
                let name = format!("startup-{i}");
                let obj = decode_value(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name},
                    "spec": {"terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}]}
                }))
                .unwrap();
                created.lock().unwrap().insert(name, Instant::now());
                client.create(obj).await.expect("create");
            }
        })
    };
    let mut latencies = HashMap::new();
    let t0 = Instant::now();
    while latencies.len() < args.pods {
        let ev = tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await
            .context("no pod event for 120s")?
            .context("watch ended")??;
        let Some(Body::Pod(p)) = ev.object.and_then(|o| o.kind) else {
            continue;
        };
        let name = p
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let running = p.status.as_ref().is_some_and(|s| s.phase == "Running");
        if running && !latencies.contains_key(&name) {
            if let Some(t) = created.lock().unwrap().get(&name) {
                latencies.insert(name, t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let wall = t0.elapsed();
    creator.await?;
    summary(
        "rkube: created -> Running",
        latencies.values().copied().collect(),
    );
    println!(
        "rkube: {} pods on {} nodes in {:.1}s at {:.0} pods/s offered",
        args.pods,
        nodes.len(),
        wall.as_secs_f64(),
        args.rate
    );
    let mut per_pod_monitor = 0.0;
    let mut per_pod_monitor_pss = 0.0;
    let mut per_pod_cgroup = 0.0;
    for (n, (k0, s0)) in nodes.iter().zip(&base) {
        let k = rss_kib(n.kubelet_pid().unwrap());
        let s = rss_kib(n.shim_pid().unwrap());
        let pods_here = latencies.len() as f64 / nodes.len() as f64;
        let (rss, pss) = monitors_kib(n);
        per_pod_monitor += rss as f64 / pods_here / nodes.len() as f64;
        per_pod_monitor_pss += pss as f64 / pods_here / nodes.len() as f64;
        per_pod_cgroup +=
            cgroup_rss_kib(&n.pods_memory_cgroup()) as f64 / pods_here / nodes.len() as f64;
        println!(
            "{}: kubelet RSS {:.1} MiB (idle {:.1}), shim RSS {:.1} MiB (idle {:.1})",
            n.name,
            k as f64 / 1024.0,
            *k0 as f64 / 1024.0,
            s as f64 / 1024.0,
            *s0 as f64 / 1024.0
        );
    }
    println!(
        "per running pod: monitors+pause RSS {:.2} MiB (PSS {:.2} MiB), pod cgroup RSS (the pod's own processes) {:.2} MiB",
        per_pod_monitor / 1024.0,
        per_pod_monitor_pss / 1024.0,
        per_pod_cgroup / 1024.0
    );
    // Clean up (the harness removes the rest when dropped).
    for i in 0..args.pods {
        let _ = client
            .delete(DeleteRequest {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: format!("startup-{i}"),
                grace_period_seconds: Some(0),
                ..Default::default()
            })
            .await;
    }
    drop(nodes);
    drop(cluster);
    drop(net);
    Ok(())
}

fn docker(args: &[&str]) -> Result<String> {
    let o = std::process::Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        o.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn docker_anchor(pods: usize) -> Result<()> {
    // Docker 20.10 cannot load an OCI layout: import the image's single
    // layer (the busybox root filesystem) instead.
    let archive = images_dir().join("busybox.tar");
    let dir = tempfile::tempdir()?;
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()?;
    anyhow::ensure!(st.success(), "unpacking {}", archive.display());
    let blob = |digest: &str| {
        dir.path()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json"))?)?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json: no manifest")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest_digest))?)?;
    let layers = manifest["layers"]
        .as_array()
        .context("manifest: no layers")?;
    anyhow::ensure!(
        layers.len() == 1,
        "the busybox image has {} layers, expected 1",
        layers.len()
    );
    let layer = blob(layers[0]["digest"].as_str().context("layer digest")?);
    let image = "rkube-pod-bench/busybox:latest".to_string();
    docker(&["import", layer.to_str().unwrap(), &image])?;
    let label = format!("rkube-pod-bench={}", std::process::id());
    let mut ms = Vec::new();
    for i in 0..pods {
        let t = Instant::now();
        docker(&[
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "--label",
            &label,
            "--name",
            &format!("rkube-pod-bench-{}-{i}", std::process::id()),
            &image,
            "sleep",
            "3600",
        ])?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    summary("docker run -d (anchor)", ms);
    let ids = docker(&["ps", "-q", "--filter", &format!("label={label}")])?;
    let ids: Vec<&str> = ids.lines().collect();
    if !ids.is_empty() {
        let mut a = vec!["rm", "-f"];
        a.extend(ids);
        let _ = docker(&a);
    }
    let _ = docker(&["rmi", &image]);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    rkube(&args).await?;
    if !args.no_docker {
        if let Err(e) = docker_anchor(args.pods) {
            println!("docker anchor failed: {e:#}");
        }
    }
    Ok(())
}
