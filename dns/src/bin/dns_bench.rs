//! dns-bench: rkube's cluster DNS beside Knot DNS (Debian's `knot`), in the
//! same run, under Debian's `dnsperf`.
//!
//! A 3-replica control plane holds N Services; the `dns` server watches it.
//! Knot serves the same N names from a zone file. For each server and each
//! query mix (every name existing; 10% nonexistent) it reports:
//!
//! - throughput: dnsperf at full speed: queries/s, average latency, and the
//!   server's CPU time per query (utime+stime from /proc/<pid>/stat, before
//!   and after);
//! - latency: dnsperf at a fixed rate with per-query output: average and
//!   p99;
//!
//! then the servers' resident memory with N and with M (10,000) services.
//! Build with `cargo build --release --workspace --bins --features
//! rkube-dns/bench` (the binaries must sit next to this one).

use anyhow::{bail, Context, Result};
use clap::Parser;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rkube_api::client::Client;
use rkube_api::proto::{object::Kind as Body, ObjectMeta, Service, ServicePort, ServiceSpec};
use rkube_api::Object;
use rkube_integration::{bin, free_port, wait_for, Cluster, Options};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

#[derive(Parser, Debug)]
#[command(about = "rkube cluster DNS vs Knot DNS under dnsperf: qps, latency, CPU/query, memory")]
struct Args {
    /// Services served during the dnsperf runs.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Services for the second memory figure (0 to skip).
    #[arg(long, default_value_t = 10_000)]
    memory_services: usize,
    /// Seconds per dnsperf run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// dnsperf clients (sockets).
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// dnsperf queries outstanding at full speed.
    #[arg(long, default_value_t = 100)]
    outstanding: u32,
    /// Queries/s of the fixed-rate latency runs.
    #[arg(long, default_value_t = 10_000)]
    latency_qps: u32,
    /// The rkube server's UDP path (`direct` or `hickory`; see `dns --help`).
    #[arg(long, default_value = "direct")]
    udp_path: String,
    #[arg(long, default_value = "knotd")]
    knotd: String,
    #[arg(long, default_value = "dnsperf")]
    dnsperf: String,
}

const NAMESPACE: &str = "default";

fn service_name(i: usize) -> String {
    format!("svc-{i}")
}

/// 10.96.1.0 + i: inside the service CIDR, clear of the DNS address.
fn service_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 1, 0)) + i as u32)
}

fn fqdn(i: usize) -> String {
    format!("{}.{NAMESPACE}.svc.cluster.local.", service_name(i))
}

/// A DNS server process being measured.
struct Server {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime, in clock ticks.
    fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields overall.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("malformed /proc/<pid>/stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = f.get(11).context("no utime")?.parse()?;
        let stime: u64 = f.get(12).context("no stime")?.parse()?;
        Ok(utime + stime)
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ask(port: u16, name: &str) -> Option<ResponseCode> {
    let s = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    s.send_to(&m.to_vec().ok()?, ("127.0.0.1", port))
        .await
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buf[..n])
        .ok()
        .map(|m| m.metadata.response_code)
}

async fn wait_resolves(port: u16, name: &str) {
    wait_for(
        &format!("{name} to resolve"),
        Duration::from_secs(120),
        || async { (ask(port, name).await == Some(ResponseCode::NoError)).then_some(()) },
    )
    .await;
}

async fn create_services(client: &Client, range: std::ops::Range<usize>) -> Result<()> {
    let mut tasks = JoinSet::new();
    for i in range {
        if tasks.len() >= 64 {
            if let Some(r) = tasks.join_next().await {
                r??;
            }
        }
        let client = client.clone();
        tasks.spawn(async move {
            let svc = Object {
                kind: Some(Body::Service(Service {
                    metadata: Some(ObjectMeta {
                        name: service_name(i),
                        namespace: NAMESPACE.into(),
                        ..Default::default()
                    }),
                    spec: Some(ServiceSpec {
                        cluster_ip: service_ip(i).to_string(),
                        ports: vec![ServicePort {
                            name: "http".into(),
                            protocol: "TCP".into(),
                            port: 80,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
            };
            client
                .create(svc)
                .await
                .map(|_| ())
                .map_err(|s| anyhow::anyhow!("creating {}: {s}", service_name(i)))
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn start_rkube_dns(cluster: &Cluster, dir: &Path, udp_path: &str) -> Result<Server> {
    let port = free_port();
    let log = std::fs::File::create(dir.join("dns.log"))?;
    let child = Command::new(bin("dns"))
        .args(["--server", &cluster.addresses()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        // Nothing here leaves the zone; a dead local port keeps forwarding
        // away from real resolvers.
        .args(["--upstream", "127.0.0.1:9"])
        .args(["--udp-path", udp_path])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("spawning dns")?;
    Ok(Server {
        name: "rkube dns",
        port,
        child,
    })
}

fn zone_file(n: usize) -> String {
    let mut z = String::from(
        "$ORIGIN cluster.local.\n$TTL 5\n\
         @ IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5\n\
         @ IN NS ns.dns.cluster.local.\nns.dns IN A 10.96.0.10\n",
    );
    for i in 0..n {
        let _ = writeln!(
            z,
            "{}.{NAMESPACE}.svc IN A {}",
            service_name(i),
            service_ip(i)
        );
    }
    z
}

fn start_knot(knotd: &str, dir: &Path, n: usize) -> Result<Server> {
    let port = free_port();
    let dir = dir.join(format!("knot-{n}"));
    std::fs::create_dir_all(dir.join("db"))?;
    std::fs::write(dir.join("cluster.local.zone"), zone_file(n))?;
    let d = dir.display();
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         database:\n    storage: \"{d}/db\"\n\
         log:\n  - target: stderr\n    any: warning\n\
         zone:\n  - domain: cluster.local.\n    storage: \"{d}\"\n    file: \"cluster.local.zone\"\n"
    );
    std::fs::write(dir.join("knot.conf"), conf)?;
    let log = std::fs::File::create(dir.join("knot.log"))?;
    let child = Command::new(knotd)
        .args(["-c", &format!("{d}/knot.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("spawning {knotd} (apt-get install -y knot)"))?;
    Ok(Server {
        name: "knot",
        port,
        child,
    })
}

fn write_queries(dir: &Path, n: usize, nx_every: Option<usize>) -> Result<PathBuf> {
    let mut q = String::new();
    for i in 0..n {
        match nx_every {
            Some(k) if i % k == 0 => {
                let _ = writeln!(q, "nx-{i}.{NAMESPACE}.svc.cluster.local A");
            }
            _ => {
                let _ = writeln!(q, "{} A", fqdn(i).trim_end_matches('.'));
            }
        }
    }
    let path = dir.join(match nx_every {
        Some(_) => "queries-nx.txt",
        None => "queries.txt",
    });
    std::fs::write(&path, q)?;
    Ok(path)
}

struct Throughput {
    qps: f64,
    completed: u64,
    lost: u64,
    avg_ms: f64,
    cpu_us_per_query: f64,
    rcodes: String,
}

struct Latency {
    avg_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

fn field<'a>(out: &'a str, label: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
}

fn first_number(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn throughput(args: &Args, server: &Server, queries: &Path) -> Result<Throughput> {
    let before = server.cpu_ticks()?;
    let out = Command::new(&args.dnsperf)
        .args(["-s", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-d", &queries.display().to_string()])
        .args(["-l", &args.duration.to_string()])
        .args(["-c", &args.clients.to_string()])
        .args(["-q", &args.outstanding.to_string()])
        .args(["-T", "1"])
        .output()
        .with_context(|| format!("running {} (apt-get install -y dnsperf)", args.dnsperf))?;
    let after = server.cpu_ticks()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let parse = || -> Option<Throughput> {
        let completed = first_number(field(&text, "Queries completed:")?)? as u64;
        Some(Throughput {
            qps: first_number(field(&text, "Queries per second:")?)?,
            completed,
            lost: first_number(field(&text, "Queries lost:")?)? as u64,
            avg_ms: first_number(field(&text, "Average Latency (s):")?)? * 1e3,
            cpu_us_per_query: (after - before) as f64 / clock_ticks() * 1e6
                / completed.max(1) as f64,
            rcodes: field(&text, "Response codes:")?.to_string(),
        })
    };
    match parse() {
        Some(t) => Ok(t),
        None => bail!(
            "unexpected dnsperf output for {}:\n{text}\n{}",
            server.name,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// dnsperf at a fixed rate, printing each answer's latency (`-v`).
fn latency(args: &Args, server: &Server, queries: &Path) -> Result<Latency> {
    let out = Command::new(&args.dnsperf)
        .args(["-s", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-d", &queries.display().to_string()])
        .args(["-l", &args.duration.min(5).to_string()])
        .args(["-Q", &args.latency_qps.to_string()])
        .args(["-c", &args.clients.to_string(), "-T", "1", "-v"])
        .output()
        .with_context(|| format!("running {}", args.dnsperf))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Verbose lines: "> NOERROR svc-1.default.svc.cluster.local A 0.000123".
    let mut secs: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with('>'))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    if secs.is_empty() {
        bail!(
            "no per-query latencies from dnsperf -v for {}:\n{text}",
            server.name
        );
    }
    secs.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| secs[((secs.len() - 1) as f64 * p).round() as usize] * 1e3;
    Ok(Latency {
        avg_ms: secs.iter().sum::<f64>() / secs.len() as f64 * 1e3,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        samples: secs.len(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    println!(
        "dns-bench: {} services, {} s per run, dnsperf -c {} -q {}, latency at {} q/s, \
         rkube UDP path {}",
        args.services,
        args.duration,
        args.clients,
        args.outstanding,
        args.latency_qps,
        args.udp_path
    );

    let cluster = Cluster::start(Options::default()).await;
    let client = cluster.client();
    create_services(&client, 0..args.services).await?;
    let rkube = start_rkube_dns(&cluster, dir.path(), &args.udp_path)?;
    wait_resolves(rkube.port, &fqdn(args.services.saturating_sub(1))).await;
    let knot = start_knot(&args.knotd, dir.path(), args.services)?;
    wait_resolves(knot.port, &fqdn(args.services.saturating_sub(1))).await;

    let all = write_queries(dir.path(), args.services, None)?;
    let nx = write_queries(dir.path(), args.services, Some(10))?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "\n| mix | server | queries/s | avg latency at full load | CPU per query | \
         avg / p50 / p99 at {} q/s | lost | response codes |\n|---|---|---|---|---|---|---|---|",
        args.latency_qps
    );
    for (mix, queries) in [("all names exist", &all), ("10% nonexistent", &nx)] {
        for server in [&rkube, &knot] {
            let t = throughput(&args, server, queries)?;
            let l = latency(&args, server, queries)?;
            let line = format!(
                "| {mix} | {} | {:.0} | {:.3} ms | {:.1} µs | {:.3} / {:.3} / {:.3} ms ({} samples) | {} of {} | {} |",
                server.name,
                t.qps,
                t.avg_ms,
                t.cpu_us_per_query,
                l.avg_ms,
                l.p50_ms,
                l.p99_ms,
                l.samples,
                t.lost,
                t.completed + t.lost,
                t.rcodes
            );
            println!("{line}");
            let _ = writeln!(report, "{line}");
        }
    }

    let _ = writeln!(
        report,
        "\n| memory (RSS) | rkube dns | knot |\n|---|---|---|"
    );
    let _ = writeln!(
        report,
        "| {} services | {} MiB | {} MiB |",
        args.services,
        rkube.rss_kib() / 1024,
        knot.rss_kib() / 1024
    );
    drop(knot);
    if args.memory_services > args.services {
        create_services(&client, args.services..args.memory_services).await?;
        wait_resolves(rkube.port, &fqdn(args.memory_services - 1)).await;
        let knot = start_knot(&args.knotd, dir.path(), args.memory_services)?;
        wait_resolves(knot.port, &fqdn(args.memory_services - 1)).await;
        let _ = writeln!(
            report,
            "| {} services | {} MiB | {} MiB |",
            args.memory_services,
            rkube.rss_kib() / 1024,
            knot.rss_kib() / 1024
        );
    }
    println!("{report}");
    drop(rkube);
    drop(cluster);
    Ok(())
}
