//! `proxy-bench`: kube-proxy (splice and copy modes) against HAProxy 2.6 in
//! TCP round-robin mode and against one backend directly, in the same run,
//! with wrk; plus the time from an Endpoints change to the first connection
//! that uses it.
//!
//! Everything runs in a network namespace this command makes (and deletes):
//! three nginx "pods" on 10.244.0.51-53:8080 (a small built-in HTTP server
//! when nginx is not installed), a one-replica control plane, the proxy,
//! HAProxy and wrk. Three traffic shapes: keep-alive (wrk's default: the
//! proxy only relays bytes), a new connection per request (`Connection:
//! close`: accept, pick, connect, relay, close each time) and 1 MiB
//! responses. `--variant` runs other kube-proxy flag sets side by side
//! (each its own process, Service and /16 of the service CIDR), and each
//! variant is also given as its median ratio to HAProxy in the same round.
//! Needs root and Debian's `wrk` and `haproxy` (`nginx-light` optional).
//!
//! Build with `cargo build --release --workspace --bins`, then run
//! `target/release/proxy-bench`.

use anyhow::{bail, Context, Result};
use clap::Parser;
use rkube_api::client::Client;
use rkube_integration::{bin, free_port, Cluster, Options};
use rkube_kube_proxy::netns::{self, Netns};
use rkube_kube_proxy::testbed::{
    addresses_of, endpoints, metric, service, service_object, ProxyProcess,
};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(
    name = "proxy-bench",
    about = "kube-proxy vs HAProxy vs direct, with wrk"
)]
struct Args {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Rounds over all targets; each figure is the median round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Endpoints changes timed.
    #[arg(long, default_value_t = 9)]
    changes: usize,
    /// Use the built-in HTTP server even when nginx is installed.
    #[arg(long)]
    builtin_backends: bool,
    /// Only traffic shapes whose name starts with this ("keep-alive",
    /// "new", "1 MiB").
    #[arg(long, default_value = "")]
    only: String,
    /// Extra kube-proxy flags (space-separated) for every variant, e.g.
    /// "--worker-threads 1".
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    proxy_flags: String,
    /// A kube-proxy variant to measure, as "LABEL|FLAGS" (FLAGS
    /// space-separated; ENV=VALUE words set the process's environment);
    /// repeatable, each runs as its own process side by side with the
    /// others. Default: "splice|--copy-mode splice" and
    /// "copy_bidirectional|--copy-mode copy".
    #[arg(long = "variant", allow_hyphen_values = true)]
    variants: Vec<String>,
}

const PODS: [&str; 3] = ["10.244.0.51", "10.244.0.52", "10.244.0.53"];
const NEW_POD: &str = "10.244.0.54";
const POD_PORT: u16 = 8080;

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(why) = netns::missing_prerequisite() {
        bail!("{why}");
    }
    for tool in ["wrk", "haproxy"] {
        if which(tool).is_none() {
            bail!("`{tool}` is not installed (apt-get install wrk haproxy)");
        }
    }
    let ns = Netns::create("rkube-kp-bench").map_err(anyhow::Error::msg)?;
    ns.enter().context("entering the namespace")?;
    // Many short connections: reuse TIME_WAIT ports, widen the port range
    // (both per namespace).
    sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
    sysctl("net.core.somaxconn", "4096")?;
    for ip in PODS.iter().chain([&NEW_POD]) {
        ns.add_address(&format!("{ip}/32"))
            .map_err(anyhow::Error::msg)?;
    }
    // Threads made after this point live in the namespace too.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(args));
    drop(rt);
    drop(ns);
    result
}

struct Target {
    name: String,
    addr: SocketAddr,
    /// Whose CPU time to count.
    pid: Option<u32>,
}

#[derive(Clone, Debug, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU seconds the middlebox used per 10k requests.
    cpu_per_10k: Option<f64>,
}

/// Child processes killed (and reaped) when dropped, also on errors.
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates a ClusterIP Service `name` at `cluster_ip` over the three pods.
async fn bench_service(client: &Client, name: &str, cluster_ip: &str) -> Result<SocketAddr> {
    let mut svc = service(name, "ClusterIP", &[("http", "TCP", 80)]);
    if let Some(spec) = svc.spec.as_mut() {
        spec.cluster_ip = cluster_ip.into();
    }
    let (ip, _) = addresses_of(&client.create(service_object(svc)).await?);
    let http = [("http", "TCP", POD_PORT as i32)];
    client.create(endpoints(name, &PODS, &[], &http)).await?;
    Ok(SocketAddr::new(ip, 80))
}

async fn run(args: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let use_nginx = !args.builtin_backends && which("nginx").is_some();
    let mut children = Children::default();
    if use_nginx {
        for (i, ip) in PODS.iter().enumerate() {
            children.0.push(start_nginx(dir.path(), i + 1, ip)?);
        }
    } else {
        for (i, ip) in PODS.iter().enumerate() {
            let l = TcpListener::bind((ip.parse::<std::net::IpAddr>()?, POD_PORT)).await?;
            tokio::spawn(builtin_http(l, format!("pod-{}", i + 1)));
        }
    }
    for ip in PODS {
        wait_tcp(SocketAddr::new(ip.parse()?, POD_PORT)).await?;
    }

    let cluster = Cluster::start(Options {
        replicas: 1,
        ..Default::default()
    })
    .await;
    let client = cluster.client();
    // The proxies run side by side, each owning a /16 of the service CIDR
    // (and its own interface), so every round measures all targets under
    // the same machine load.
    let variants: Vec<(String, String)> = if args.variants.is_empty() {
        vec![
            ("splice".into(), "--copy-mode splice".into()),
            ("copy_bidirectional".into(), "--copy-mode copy".into()),
        ]
    } else {
        args.variants
            .iter()
            .map(|v| match v.split_once('|') {
                Some((label, flags)) => (label.to_string(), flags.to_string()),
                None => (v.clone(), String::new()),
            })
            .collect()
    };
    if variants.len() > 16 {
        bail!("at most 16 variants");
    }
    let mut proxies = Vec::new();
    for (i, (label, flags)) in variants.iter().enumerate() {
        let name = if i == 0 {
            "bench".to_string()
        } else {
            format!("bench-{i}")
        };
        let vip = bench_service(&client, &name, &format!("10.{}.0.100", 96 + i)).await?;
        let cidr = format!("10.{}.0.0/16", 96 + i);
        let iface = format!("rkube-svc{i}");
        let mut argv: Vec<String> = ["--service-cidr", &cidr, "--interface", &iface]
            .into_iter()
            .map(String::from)
            .collect();
        let mut envs = Vec::new();
        for word in flags
            .split_whitespace()
            .chain(args.proxy_flags.split_whitespace())
        {
            match word.split_once('=') {
                Some((k, v)) if !k.starts_with('-') => envs.push((k.to_string(), v.to_string())),
                _ => argv.push(word.to_string()),
            }
        }
        let argv: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = ProxyProcess::start_with_env(
            &bin("kube-proxy"),
            &cluster.addresses(),
            dir.path(),
            &argv,
            "warn",
            &envs,
        );
        proxies.push((format!("kube-proxy ({label})"), vip, p));
    }
    for (_, vip, p) in &proxies {
        p.wait_synced(Duration::from_secs(30)).await;
        wait_tcp(*vip).await?;
    }

    let haproxy_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    children.0.push(start_haproxy(dir.path(), haproxy_addr)?);
    let haproxy_pid = children.0.last().map(|c| c.id());
    wait_tcp(haproxy_addr).await?;

    let (change_latencies, api_latencies) =
        endpoint_change_latency(&client, &proxies[0].2, proxies[0].1, args.changes).await?;

    let mut targets = vec![
        Target {
            name: "direct to one backend".into(),
            addr: SocketAddr::new(PODS[0].parse()?, POD_PORT),
            pid: None,
        },
        Target {
            name: "HAProxy 2.6 (tcp, roundrobin)".into(),
            addr: haproxy_addr,
            pid: haproxy_pid,
        },
    ];
    for (name, vip, p) in &proxies {
        targets.push(Target {
            name: name.clone(),
            addr: *vip,
            pid: p.pid(),
        });
    }
    let shapes = [
        ("keep-alive", "/", false),
        ("new connection per request", "/", true),
        ("1 MiB responses, keep-alive", "/big", false),
    ];
    let mut results: Vec<(String, String, Vec<Figures>)> = Vec::new();
    for (shape, path, close) in shapes {
        if !shape.starts_with(args.only.as_str()) {
            continue;
        }
        let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); targets.len()];
        // Rounds interleave the targets, each round starting one target
        // later, so drift in the machine's load spreads over all of them.
        for round in 0..args.rounds {
            for k in 0..targets.len() {
                let i = (round + k) % targets.len();
                let t = &targets[i];
                let f = wrk(&args, t, path, close)?;
                eprintln!("{shape:>28} | {:<32} | round: {f:?}", t.name);
                rounds[i].push(f);
            }
        }
        for (t, r) in targets.iter().zip(rounds) {
            eprintln!("{shape:>28} | {:<32} | {:?}", t.name, median(&r));
            results.push((shape.to_string(), t.name.clone(), r));
        }
    }
    drop(proxies);
    drop(children);

    println!(
        "\nwrk -t{} -c{} -d{}s --latency, {} round(s) per figure (median round); backends: {}\n",
        args.threads,
        args.connections,
        args.duration,
        args.rounds,
        if use_nginx {
            "3 nginx (1 worker each)"
        } else {
            "3 built-in HTTP servers"
        }
    );
    println!(
        "| traffic | target | requests/s | p50 | p99 | CPU s per 10k req | errors | vs HAProxy, same round: requests/s, p99 (median) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (shape, name, rounds) in &results {
        let f = median(rounds);
        let haproxy = results
            .iter()
            .find(|(s, n, _)| s == shape && n.starts_with("HAProxy"))
            .map(|(_, _, r)| r);
        let paired = match haproxy {
            Some(h) if !name.starts_with("HAProxy") && !name.starts_with("direct") => {
                let rps = median_of(rounds.iter().zip(h).map(|(a, b)| a.rps / b.rps));
                let p99 = median_of(rounds.iter().zip(h).map(|(a, b)| a.p99_ms / b.p99_ms));
                format!("{rps:.2}x, {p99:.2}x")
            }
            _ => "—".into(),
        };
        println!(
            "| {shape} | {name} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {paired} |",
            f.rps,
            f.p50_ms,
            f.p99_ms,
            f.cpu_per_10k
                .map(|c| format!("{c:.3}"))
                .unwrap_or_else(|| "—".into()),
            f.errors
        );
    }
    let mut c = change_latencies.clone();
    c.sort();
    let mut a = api_latencies.clone();
    a.sort();
    if !c.is_empty() {
        println!(
            "\nEndpoints change -> first connection to the new endpoint ({} changes): median {:.1} ms, min {:.1} ms, max {:.1} ms (of which the API write: median {:.1} ms)",
            c.len(),
            ms(c[c.len() / 2]),
            ms(c[0]),
            ms(c[c.len() - 1]),
            ms(a[a.len() / 2]),
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median of some ratios (the upper one of an even count).
fn median_of(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The round with the median requests/s.
fn median(rounds: &[Figures]) -> Figures {
    let mut v = rounds.to_vec();
    v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    v.get(v.len() / 2).cloned().unwrap_or_default()
}

fn wrk(args: &Args, t: &Target, path: &str, close: bool) -> Result<Figures> {
    let cpu0 = t.pid.and_then(cpu_seconds);
    let mut cmd = Command::new("wrk");
    cmd.args([
        &format!("-t{}", args.threads),
        &format!("-c{}", args.connections),
        &format!("-d{}s", args.duration),
        "--latency",
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.arg(format!("http://{}{path}", t.addr)).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut f = parse_wrk(&text).with_context(|| format!("parsing wrk output:\n{text}"))?;
    if let (Some(a), Some(b)) = (cpu0, t.pid.and_then(cpu_seconds)) {
        let requests = f.rps * args.duration as f64;
        if requests > 0.0 {
            f.cpu_per_10k = Some((b - a) / requests * 10_000.0);
        }
    }
    Ok(f)
}

fn parse_wrk(text: &str) -> Option<Figures> {
    let mut f = Figures::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => f.rps = v.parse().ok()?,
            ["50%", v] => f.p50_ms = wrk_ms(v)?,
            ["99%", v] => f.p99_ms = wrk_ms(v)?,
            ["Socket", "errors:", rest @ ..] => {
                f.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            ["Non-2xx", "or", "3xx", "responses:", v] => f.errors += v.parse::<u64>().ok()?,
            _ => {}
        }
    }
    (f.rps > 0.0).then_some(f)
}

/// wrk's durations: `512.00us`, `1.20ms`, `2.00s`.
fn wrk_ms(v: &str) -> Option<f64> {
    if let Some(x) = v.strip_suffix("us") {
        Some(x.parse::<f64>().ok()? / 1000.0)
    } else if let Some(x) = v.strip_suffix("ms") {
        x.parse().ok()
    } else if let Some(x) = v.strip_suffix('m') {
        Some(x.parse::<f64>().ok()? * 60_000.0)
    } else {
        Some(v.strip_suffix('s')?.parse::<f64>().ok()? * 1000.0)
    }
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

/// Times Endpoints changes: add a fourth pod, then measure until the
/// proxy's first connection to it while a client connects back to back.
async fn endpoint_change_latency(
    client: &Client,
    proxy: &ProxyProcess,
    vip: SocketAddr,
    changes: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let http = [("http", "TCP", POD_PORT as i32)];
    let listener = TcpListener::bind((NEW_POD.parse::<std::net::IpAddr>()?, POD_PORT)).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let acceptor = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = tx.send(Instant::now());
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\npod-4\n")
                    .await;
            });
        }
    });
    let mut latencies = Vec::new();
    let mut api = Vec::new();
    let four: Vec<&str> = PODS.iter().copied().chain([NEW_POD]).collect();
    for _ in 0..changes {
        client.update(endpoints("bench", &PODS, &[], &http)).await?;
        wait_ready_endpoints(proxy, 3).await?;
        while rx.try_recv().is_ok() {}
        let stop = tokio_util::sync::CancellationToken::new();
        let prober = tokio::spawn(probe(vip, stop.clone()));
        let t0 = Instant::now();
        client.update(endpoints("bench", &four, &[], &http)).await?;
        api.push(t0.elapsed());
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .context("no connection reached the new endpoint within 10 s")?
            .context("acceptor ended")?;
        latencies.push(first.saturating_duration_since(t0));
        stop.cancel();
        let _ = prober.await;
    }
    acceptor.abort();
    client.update(endpoints("bench", &PODS, &[], &http)).await?;
    wait_ready_endpoints(proxy, 3).await?;
    Ok((latencies, api))
}

/// Connects back to back (a small HTTP GET each) until stopped.
async fn probe(vip: SocketAddr, stop: tokio_util::sync::CancellationToken) {
    while !stop.is_cancelled() {
        if let Ok(mut s) = TcpStream::connect(vip).await {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut buf)).await;
        }
    }
}

async fn wait_ready_endpoints(proxy: &ProxyProcess, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = proxy.metrics_text().await.unwrap_or_default();
        if metric(
            &text,
            "rkube_proxy_ready_endpoints",
            &["service=\"default/bench\""],
        ) == Some(n as f64)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the proxy never showed {n} ready endpoints");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_tcp(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("{addr} never accepted a connection");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn start_nginx(dir: &Path, n: usize, ip: &str) -> Result<Child> {
    let prefix = dir.join(format!("nginx-{n}"));
    std::fs::create_dir_all(&prefix)?;
    std::fs::write(prefix.join("big"), big_body())?;
    let conf = prefix.join("nginx.conf");
    let p = prefix.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\n\
             master_process off;\n\
             daemon off;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {p}/body;\n\
               proxy_temp_path {p}/proxy;\n\
               fastcgi_temp_path {p}/fastcgi;\n\
               uwsgi_temp_path {p}/uwsgi;\n\
               scgi_temp_path {p}/scgi;\n\
               keepalive_requests 10000000;\n\
               sendfile on;\n\
               server {{\n\
                 listen {ip}:{POD_PORT} backlog=4096;\n\
                 location = /big {{ alias {p}/big; }}\n\
                 location / {{ return 200 \"pod-{n}\\n\"; }}\n\
               }}\n\
             }}\n"
        ),
    )?;
    let child = Command::new("nginx")
        .args(["-e", &format!("{p}/error.log"), "-p"])
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(child)
}

fn start_haproxy(dir: &Path, listen: SocketAddr) -> Result<Child> {
    let cfg = dir.join("haproxy.cfg");
    let servers: String = PODS
        .iter()
        .enumerate()
        .map(|(i, ip)| format!("  server pod-{} {ip}:{POD_PORT}\n", i + 1))
        .collect();
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 8192\n\
             defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n\
             listen bench\n  bind {listen}\n  balance roundrobin\n{servers}"
        ),
    )?;
    let log = std::fs::File::create(dir.join("haproxy.log"))?;
    Command::new("haproxy")
        .arg("-f")
        .arg(&cfg)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting haproxy")
}

/// The body of `/big`: 1 MiB.
fn big_body() -> Vec<u8> {
    (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A minimal keep-alive HTTP/1.1 responder (`/big`: 1 MiB), for machines
/// without nginx.
async fn builtin_http(listener: TcpListener, name: String) {
    let small = format!("{name}\n");
    let head = |len: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n")
    };
    let small = std::sync::Arc::new([head(small.len()).into_bytes(), small.into_bytes()].concat());
    let big = std::sync::Arc::new([head(1 << 20).into_bytes(), big_body()].concat());
    while let Ok((mut s, _)) = listener.accept().await {
        let (small, big) = (small.clone(), big.clone());
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 8192];
            let mut pending = Vec::new();
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                    pending.drain(..end + 4);
                    let body = if head.starts_with("get /big") {
                        &big
                    } else {
                        &small
                    };
                    if s.write_all(body).await.is_err() {
                        return;
                    }
                    if head.contains("connection: close") {
                        return;
                    }
                }
            }
        });
    }
}

fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    // This thread is in the namespace; a child process reads /proc/sys/net
    // of its own namespace, so write through one.
    let status = Command::new("sh")
        .args(["-c", &format!("echo '{value}' > {path}")])
        .status()?;
    if !status.success() {
        bail!("setting {key}");
    }
    Ok(())
}

fn which(tool: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
