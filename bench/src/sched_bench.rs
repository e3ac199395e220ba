//! sched-bench: scheduler and controller throughput with many hollow nodes.
//! Creates ReplicaSets of mixed sizes adding up to N pods over M hollow
//! nodes and measures, from a watch, how fast pods are created and bound:
//! pods bound per second, and p50/p99 from a pod's creation (first seen) to
//! its binding (first seen with a node).
//!
//! Kubernetes' scheduler_perf floors for 5,000 nodes are 680-810 pods/s
//! (published figures, not measured here: there is no Kubernetes to run).

use anyhow::Result;
use clap::Parser;
use rkube_api::proto::{object::Kind as Body, ListRequest, WatchRequest};
use rkube_integration::{wait_for, Cluster, Options};
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

#[derive(Parser, Debug)]
#[command(about = "Scheduler + controller throughput over hollow nodes")]
struct Args {
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    #[arg(long, default_value_t = 30000)]
    pods: usize,
    /// Hollow node lease period, seconds.
    #[arg(long, default_value_t = 10.0)]
    heartbeat: f64,
}

fn rs_manifest(name: &str, replicas: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  \
         selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    \
         spec:\n      containers:\n      - name: c\n        image: nginx\n        resources:\n          requests: {{cpu: 10m, memory: 16Mi}}\n"
    )
}

use rkube_bench::percentile as pct;

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let cluster = Cluster::start(Options::default()).await;
        let client = cluster.client();
        let hollow_bin = rkube_integration::bin("hollow-nodes");
        let hollow = Command::new(hollow_bin)
            .args([
                "-s",
                &cluster.addresses(),
                "--count",
                &args.nodes.to_string(),
                "--heartbeat",
                &args.heartbeat.to_string(),
                "--no-pod-status",
                "--cpu",
                "32",
                "--memory",
                "256Gi",
            ])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()?;
        // Killed however this run ends.
        struct KillOnDrop(std::process::Child);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let hollow = KillOnDrop(hollow);
        let t = Instant::now();
        wait_for(
            "all hollow nodes registered",
            Duration::from_secs(600),
            || {
                let c = client.clone();
                let n = args.nodes;
                async move {
                    let l = c
                        .list(ListRequest {
                            kind: "Node".into(),
                            ..Default::default()
                        })
                        .await
                        .ok()?;
                    (l.items.len() >= n).then_some(())
                }
            },
        )
        .await;
        println!(
            "# {} hollow nodes registered in {:.1}s",
            args.nodes,
            t.elapsed().as_secs_f64()
        );

        let rv = client
            .list(ListRequest {
                kind: "Pod".into(),
                ..Default::default()
            })
            .await?
            .resource_version;
        let mut stream = client
            .watch(WatchRequest {
                kind: "Pod".into(),
                resource_version: rv,
                ..Default::default()
            })
            .await?;
        let total = args.pods;
        let watcher = tokio::spawn(async move {
            let mut added: HashMap<String, Instant> = HashMap::new();
            let mut bound = std::collections::HashSet::new();
            let mut lat = Vec::new();
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            while let Some(Ok(ev)) = stream.next().await {
                let Some(o) = ev.object else { continue };
                let now = Instant::now();
                let key = format!("{}/{}", o.namespace(), o.name());
                let node = match &o.kind {
                    Some(Body::Pod(p)) => p
                        .spec
                        .as_ref()
                        .map(|s| s.node_name.clone())
                        .unwrap_or_default(),
                    _ => continue,
                };
                let t0 = *added.entry(key.clone()).or_insert(now);
                first.get_or_insert(now);
                if !node.is_empty() && ev.r#type != "DELETED" {
                    if bound.insert(key) {
                        lat.push(now.duration_since(t0).as_secs_f64() * 1000.0);
                        last = now;
                    }
                    if lat.len() >= total {
                        break;
                    }
                }
            }
            (first, last, lat)
        });
        let sizes = [10usize, 50, 100, 500, 1000, 2000];
        let mut created = 0;
        let mut i = 0;
        let dir = tempfile::tempdir()?;
        while created < total {
            let n = sizes[i % sizes.len()].min(total - created);
            let path = dir.path().join(format!("rs{i}.yaml"));
            std::fs::write(&path, rs_manifest(&format!("bench-{i}"), n))?;
            // A leader change can leave a create's outcome unknown: retry;
            // AlreadyExists then means the first attempt landed.
            for attempt in 0..10 {
                let r =
                    cluster.rkubectl(None, &["create", "-f", path.to_str().unwrap_or_default()]);
                if r.code == 0 || r.stderr.contains("AlreadyExists") {
                    break;
                }
                eprintln!("# create rs{i} attempt {attempt}: {}", r.stderr.trim());
            }
            created += n;
            i += 1;
        }
        println!("# created {i} ReplicaSets totalling {total} pods");
        let (first, last, mut lat) =
            tokio::time::timeout(Duration::from_secs(1800), watcher).await??;
        lat.sort_by(|a, b| a.total_cmp(b));
        let span = first
            .map(|f| last.duration_since(f).as_secs_f64())
            .unwrap_or(f64::NAN);
        println!(
            "rkube scheduler+controllers: {} pods on {} hollow nodes: {:.0} pods bound/s \
             (first pod seen to last bound {:.1}s), creation->binding p50={:.0}ms p99={:.0}ms",
            lat.len(),
            args.nodes,
            lat.len() as f64 / span,
            span,
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        drop(hollow);
        Ok(())
    })
}
