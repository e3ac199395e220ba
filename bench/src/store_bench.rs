//! store-bench: drives rkube's replicated store through its gRPC API and a
//! 3-member etcd cluster (Debian's etcd-server) the same way, in the same run,
//! and prints both: writes/s at each client count, p50/p99 latency, leader
//! failover time (SIGKILL of the leader to the first acknowledged write), and
//! a replica's memory holding N pods.
//!
//! Both stores fsync before acknowledging, run three members on loopback with
//! the same election timeout, and are written through their leader with
//! 256-byte values over one HTTP/2 connection shared by all clients.

use anyhow::{bail, Context, Result};
use clap::Parser;
use rkube_api::proto::{object::Kind as Body, Container, ObjectMeta, Pod, PodSpec};
use rkube_api::Object;
use rkube_integration::{free_port, wait_for, Cluster, Options};
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

mod etcd {
    tonic::include_proto!("etcdserverpb");
}

#[derive(Parser, Debug)]
#[command(about = "rkube store vs etcd: throughput, latency, failover, memory")]
struct Args {
    /// Seconds of load per client count.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Client counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// Leader kills to time.
    #[arg(long, default_value_t = 5)]
    failovers: usize,
    /// Pods to load for the memory figure (0 to skip).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Skip the etcd anchor (not recommended: figures need it beside them).
    #[arg(long)]
    skip_etcd: bool,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd: String,
}

struct LoadResult {
    clients: usize,
    ops: u64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl LoadResult {
    fn line(&self, who: &str) -> String {
        format!(
            "{who:<6} clients={:<3} writes/s={:>9.0}  p50={:>7.2}ms  p99={:>7.2}ms  errors={}",
            self.clients,
            self.ops as f64 / self.secs,
            self.p50_ms,
            self.p99_ms,
            self.errors
        )
    }
}

use rkube_bench::percentile;

/// Runs `clients` loops of `op(client, seq)` for `duration`.
async fn run_load<F, Fut>(clients: usize, duration: Duration, op: F) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (op, errors) = (op.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(c, seq).await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    LoadResult {
        clients,
        ops: all.len() as u64,
        secs,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn value_256() -> String {
    "v".repeat(256)
}

fn bench_object(name: String, value: &str) -> Object {
    Object::from_body(Body::Pod(Pod {
        metadata: Some(ObjectMeta {
            name,
            annotations: [("bench/value".to_string(), value.to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "nginx".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// A pod shaped like the seed's RC pods, for the memory figure.
fn realistic_pod(i: usize) -> Object {
    let mut o = rkube_api::manifest::decode(
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nginx-{i}\n  labels: {{app: nginx-app, tier: frontend}}\n\
             spec:\n  containers:\n  - name: nginx-container\n    image: nginx\n    ports:\n    - containerPort: 80\n"
        ),
        "pod",
    )
    .expect("pod manifest")
    .remove(0);
    o.set_type_meta();
    o
}

// ---------------------------------------------------------------- rkube

/// Three replicas as the store alone, like an API server over etcd with no
/// controller manager: `--controllers=` runs no scheduler or controller, so
/// the benchmark's Pending pods cause no FailedScheduling events or status
/// writes (which would triple the writes behind each measured create). The
/// snapshot interval is the binary's default, not the tests' smaller one.
fn store_only() -> Options {
    Options {
        snapshot_interval: 20_000,
        extra_args: vec!["--controllers=".into()],
        ..Options::default()
    }
}

async fn bench_rkube(args: &Args) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cluster = Cluster::start(store_only()).await;
    let leader = cluster.leader_index().await;
    let client = cluster.client_of(leader);
    let value = value_256();
    for &n in &args.clients {
        let (c, v) = (client.clone(), value.clone());
        let prefix = format!("b{n}-");
        let r = run_load(n, Duration::from_secs(args.duration), move |cl, seq| {
            let c = c.clone();
            let o = bench_object(format!("{prefix}{cl}-{seq}"), &v);
            async move { c.create(o).await.is_ok() }
        })
        .await;
        println!("{}", r.line("rkube"));
        out.push(r.line("rkube"));
    }
    let times = failovers(args.failovers, &mut cluster).await?;
    let line = failover_line("rkube", &times);
    println!("{line}");
    out.push(line);
    drop(cluster);
    if args.pods > 0 {
        // A fresh cluster holding only the pods.
        let cluster = Cluster::start(store_only()).await;
        let leader = cluster.leader_index().await;
        let c = cluster.client();
        let next = Arc::new(AtomicU64::new(0));
        let total = args.pods as u64;
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (c, next) = (c.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let o = realistic_pod(i as usize);
                    for _ in 0..20 {
                        match c.create(o.clone()).await {
                            Ok(_) => break,
                            Err(s) if s.code() == tonic::Code::AlreadyExists => break,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let rev = cluster
            .status_of(leader)
            .await
            .map(|s| s.revision)
            .unwrap_or(0);
        for i in 0..cluster.replicas.len() {
            cluster.wait_revision(i, rev).await;
        }
        let mut parts = Vec::new();
        for i in 0..cluster.replicas.len() {
            if let Some(pid) = cluster.pid(i) {
                parts.push(format!("cp{}={:.1}MB", i + 1, rss_mb(pid)?));
            }
        }
        let line = format!(
            "rkube  memory holding {} pods, RSS per replica: {}",
            args.pods,
            parts.join(" ")
        );
        println!("{line}");
        out.push(line);
    }
    Ok(out)
}

async fn failovers(n: usize, cluster: &mut Cluster) -> Result<Vec<f64>> {
    let mut times = Vec::new();
    for round in 0..n {
        let leader = cluster.leader_index().await;
        let client = cluster.client();
        // Warm the client's connections to every replica.
        let _ = client
            .create(bench_object(format!("warm-{round}"), "w"))
            .await;
        let seq = Arc::new(AtomicU64::new(0));
        let killed_at = Instant::now();
        cluster.kill(leader);
        let t = wait_for(
            "a write acknowledged after the kill",
            Duration::from_secs(30),
            || {
                let c = client.clone();
                let seq = seq.clone();
                async move {
                    let i = seq.fetch_add(1, Ordering::Relaxed);
                    c.create(bench_object(format!("fo-{round}-{i}"), "x"))
                        .await
                        .ok()
                        .map(|_| killed_at.elapsed().as_secs_f64())
                }
            },
        )
        .await;
        times.push(t);
        cluster.restart(leader);
        cluster.wait_ready().await;
        let rev = cluster
            .status_of(cluster.leader_index().await)
            .await
            .map(|s| s.revision)
            .unwrap_or(0);
        cluster.wait_revision(leader, rev).await;
    }
    Ok(times)
}

fn failover_line(who: &str, times: &[f64]) -> String {
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{who:<6} failover (kill -9 leader -> first acked write) over {} runs: median={:.0}ms min={:.0}ms max={:.0}ms",
        t.len(),
        percentile(&t, 0.5) * 1000.0,
        t.first().copied().unwrap_or(f64::NAN) * 1000.0,
        t.last().copied().unwrap_or(f64::NAN) * 1000.0
    )
}

fn rss_mb(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: f64 = v.trim().trim_end_matches("kB").trim().parse()?;
            return Ok(kb / 1024.0);
        }
    }
    bail!("no VmRSS for pid {pid}")
}

// ---------------------------------------------------------------- etcd

struct Etcd {
    members: Vec<(String, Option<Child>, Vec<String>)>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start(bin: &str) -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, p))| format!("e{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (c, p)) in ports.iter().enumerate() {
            let args: Vec<String> = vec![
                format!("--name=e{i}"),
                format!("--data-dir={}", dir.path().join(format!("e{i}")).display()),
                format!("--listen-client-urls=http://127.0.0.1:{c}"),
                format!("--advertise-client-urls=http://127.0.0.1:{c}"),
                format!("--listen-peer-urls=http://127.0.0.1:{p}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
                format!("--initial-cluster={cluster}"),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=rkube-bench".into(),
                // The same election timing as rkube's defaults
                // (50 ms tick x 10 = 500 ms).
                "--heartbeat-interval=100".into(),
                "--election-timeout=500".into(),
                "--log-level=error".into(),
            ];
            members.push((format!("127.0.0.1:{c}"), None, args));
        }
        let mut e = Etcd { members, _dir: dir };
        for i in 0..3 {
            e.spawn(i, bin)?;
        }
        Ok(e)
    }

    fn spawn(&mut self, i: usize, bin: &str) -> Result<()> {
        let m = &mut self.members[i];
        let child = Command::new(bin)
            .args(&m.2)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {bin} (apt-get install etcd-server)"))?;
        m.1 = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn channel(&self, i: usize) -> Channel {
        Channel::from_shared(format!("http://{}", self.members[i].0))
            .expect("uri")
            .connect_timeout(Duration::from_millis(300))
            .connect_lazy()
    }

    /// The index of the leader, once all running members agree on one.
    async fn leader(&self) -> usize {
        wait_for("an etcd leader", Duration::from_secs(30), || async {
            let mut leader = None;
            let mut ids = Vec::new();
            for i in 0..3 {
                if self.members[i].1.is_none() {
                    ids.push(0);
                    continue;
                }
                let mut m = etcd::maintenance_client::MaintenanceClient::new(self.channel(i));
                let s = tokio::time::timeout(
                    Duration::from_millis(500),
                    m.status(etcd::StatusRequest {}),
                )
                .await
                .ok()?
                .ok()?
                .into_inner();
                if s.leader == 0 || leader.is_some_and(|l| l != s.leader) {
                    return None;
                }
                leader = Some(s.leader);
                ids.push(s.header.map(|h| h.member_id).unwrap_or(0));
            }
            let l = leader?;
            ids.iter().position(|id| *id == l)
        })
        .await
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

async fn etcd_put(ch: &Channel, key: String, value: &str) -> bool {
    let mut kv = etcd::kv_client::KvClient::new(ch.clone());
    kv.put(etcd::PutRequest {
        key: key.into_bytes(),
        value: value.as_bytes().to_vec(),
    })
    .await
    .is_ok()
}

async fn bench_etcd(args: &Args) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut e = Etcd::start(&args.etcd)?;
    let leader = e.leader().await;
    let ch = e.channel(leader);
    let value = value_256();
    for &n in &args.clients {
        let (ch, v) = (ch.clone(), value.clone());
        let r = run_load(n, Duration::from_secs(args.duration), move |cl, seq| {
            let ch = ch.clone();
            let v = v.clone();
            async move { etcd_put(&ch, format!("/bench/{n}/{cl}/{seq}"), &v).await }
        })
        .await;
        println!("{}", r.line("etcd"));
        out.push(r.line("etcd"));
    }
    let mut times = Vec::new();
    for round in 0..args.failovers {
        let leader = e.leader().await;
        let chans: Vec<Channel> = (0..3).map(|i| e.channel(i)).collect();
        let _ = etcd_put(&chans[(leader + 1) % 3], "warm".into(), "w").await;
        let killed_at = Instant::now();
        e.kill(leader);
        let seq = AtomicU64::new(0);
        let t = wait_for(
            "an etcd write after the kill",
            Duration::from_secs(30),
            || {
                let i = seq.fetch_add(1, Ordering::Relaxed);
                let ch = chans[(leader + 1 + (i as usize % 2)) % 3].clone();
                async move {
                    let mut kv = etcd::kv_client::KvClient::new(ch);
                    let mut req = tonic::Request::new(etcd::PutRequest {
                        key: format!("fo-{round}-{i}").into_bytes(),
                        value: b"x".to_vec(),
                    });
                    req.set_timeout(Duration::from_millis(500));
                    kv.put(req)
                        .await
                        .ok()
                        .map(|_| killed_at.elapsed().as_secs_f64())
                }
            },
        )
        .await;
        times.push(t);
        e.spawn(leader, &args.etcd)?;
        e.leader().await;
    }
    let line = failover_line("etcd", &times);
    println!("{line}");
    out.push(line);
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        println!(
            "# store-bench: {} s per point, clients {:?}",
            args.duration, args.clients
        );
        let mut lines = bench_rkube(&args).await?;
        if !args.skip_etcd {
            lines.extend(bench_etcd(&args).await?);
        }
        println!("\n# summary");
        for l in lines {
            println!("{l}");
        }
        Ok(())
    })
}
