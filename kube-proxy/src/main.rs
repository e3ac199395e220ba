//! `kube-proxy`: one per node. Reads its flags, prepares the ClusterIP
//! interface and the metrics endpoint, then runs the sync loop until SIGINT
//! or SIGTERM. ClusterIPs stay on the interface when it exits (like
//! kube-proxy's rules); the next start removes the ones no Service has.

use anyhow::{bail, Context, Result};
use clap::Parser;
use ipnet::Ipv4Net;
use rkube_api::client::{Client, DEFAULT_SERVERS};
use rkube_kube_proxy::config::{self, CopyMode, Policy, ProxyConfig};
use rkube_kube_proxy::dataplane::DataPlane;
use rkube_kube_proxy::iface::ServiceInterface;
use rkube_kube_proxy::metrics::{self, Metrics};
use rkube_kube_proxy::proxier::Proxier;
use rkube_kube_proxy::report::Reporter;
use rkube_kube_proxy::{announce, splice, sync};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "kube-proxy",
    about = "rkube kube-proxy (userspace mode): serves ClusterIPs and NodePorts on this node, \
             forwarding to ready endpoints with round-robin, least-connections and client-IP affinity"
)]
struct Flags {
    /// Control-plane replicas, comma-separated host:port.
    #[arg(short = 's', long = "server", env = "RKUBE_SERVER", default_value = DEFAULT_SERVERS)]
    server: String,
    /// A kubeconfig (made by `rkube-pki init`): TLS, credentials and the
    /// replicas; without it --server is dialled in plaintext.
    #[arg(long, env = "RKUBE_KUBECONFIG")]
    kubeconfig: Option<std::path::PathBuf>,
    /// The interface ClusterIPs are put on (created if missing).
    #[arg(long, default_value = "rkube-svc0")]
    interface: String,
    /// Node addresses NodePorts listen on, comma-separated; 0.0.0.0 is every
    /// address of the node.
    #[arg(long, value_delimiter = ',', default_value = "0.0.0.0")]
    nodeport_addresses: Vec<IpAddr>,
    /// Default load-balancing policy: round-robin or least-conn (a Service
    /// overrides it with the annotation rkube.io/lb-policy).
    #[arg(long, default_value = "round-robin")]
    policy: Policy,
    /// How long connections to an endpoint that left its Service may go on
    /// (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = config::parse_duration)]
    endpoint_close_grace: Duration,
    /// How long a connect to an endpoint may take before the next endpoint
    /// is tried.
    #[arg(long, default_value = "1s", value_parser = config::parse_duration)]
    connect_timeout: Duration,
    /// UDP sessions end after this long without a datagram either way.
    #[arg(long, default_value = "30s", value_parser = config::parse_duration)]
    udp_idle_timeout: Duration,
    /// Where to serve GET /metrics (Prometheus text) and /healthz.
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_listen: SocketAddr,
    /// ClusterIPs outside this range are never put on the interface.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: Ipv4Net,
    /// How TCP bytes are copied: auto (splice when the kernel has it),
    /// splice, or copy (user-space buffers).
    #[arg(long, default_value = "auto")]
    copy_mode: CopyMode,
    /// This node's name, as Events name their source.
    #[arg(long)]
    hostname_override: Option<String>,
    /// Data-plane threads carrying traffic (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    worker_threads: usize,
    /// How long a LoadBalancer address's Lease (kube-system/lb-<ip>) lasts
    /// unrenewed before another Ready node takes the address over (renewed
    /// every third of it).
    #[arg(long, default_value = "10s", value_parser = config::parse_duration)]
    lb_lease_duration: Duration,
    /// The interface LoadBalancer addresses this node announces go on
    /// (default: the one holding the Node's InternalIP).
    #[arg(long)]
    lb_interface: Option<String>,
    /// Do not announce LoadBalancer addresses from this node.
    #[arg(long)]
    no_lb_announce: bool,
}

fn main() -> Result<()> {
    let flags = Flags::parse();
    // Watches, syncs and metrics: light work, one thread. Traffic runs on
    // the data-plane threads.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(flags))
}

async fn run(flags: Flags) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let copy_mode = match (flags.copy_mode, splice::available()) {
        (CopyMode::Copy, _) | (CopyMode::Auto, false) => CopyMode::Copy,
        (CopyMode::Splice | CopyMode::Auto, true) => CopyMode::Splice,
        (CopyMode::Splice, false) => bail!("--copy-mode splice: splice(2) is not available here"),
    };
    let config = Arc::new(ProxyConfig {
        default_policy: flags.policy,
        endpoint_close_grace: flags.endpoint_close_grace,
        connect_timeout: flags.connect_timeout.max(Duration::from_millis(1)),
        udp_idle_timeout: flags.udp_idle_timeout.max(Duration::from_millis(1)),
        nodeport_addresses: flags.nodeport_addresses.clone(),
        service_cidr: flags.service_cidr,
        copy_mode,
    });
    let node = flags.hostname_override.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    });

    let client = Client::for_daemon(flags.kubeconfig.as_deref(), &flags.server)
        .map_err(anyhow::Error::msg)
        .context("--server")?;
    let iface = ServiceInterface::ensure(&flags.interface)
        .await
        .with_context(|| format!("preparing --interface {}", flags.interface))?;
    let metrics = Metrics::new(match copy_mode {
        CopyMode::Splice => "splice",
        _ => "copy",
    });
    let listener = tokio::net::TcpListener::bind(flags.metrics_listen)
        .await
        .with_context(|| format!("binding --metrics-listen {}", flags.metrics_listen))?;
    tokio::spawn(metrics::serve(listener, metrics.clone()));

    let reporter = Reporter::new(Some(client.clone()), node.clone(), metrics.clone());
    let dataplane = Arc::new(
        DataPlane::start(flags.worker_threads).context("starting the data-plane threads")?,
    );
    let proxier = Proxier::start(
        config.clone(),
        dataplane.clone(),
        iface,
        metrics.clone(),
        reporter,
    )
    .await;
    tracing::info!(
        node = %node,
        interface = %flags.interface,
        nodeport_addresses = ?config.nodeport_addresses,
        policy = %config.default_policy,
        copy_mode = ?config.copy_mode,
        threads = dataplane.handles().len(),
        metrics = %flags.metrics_listen,
        "kube-proxy starting"
    );

    let shutdown = CancellationToken::new();
    let (announced_tx, announced) = tokio::sync::watch::channel(Default::default());
    if !flags.no_lb_announce {
        tokio::spawn(announce::run(
            client.clone(),
            announce::AnnounceConfig {
                node: node.clone(),
                lease_duration: flags.lb_lease_duration.max(Duration::from_secs(1)),
                interface: flags.lb_interface.clone(),
            },
            announced_tx,
            shutdown.clone(),
        ));
    } else {
        drop(announced_tx);
    }
    let sync_loop = tokio::spawn(sync::run(
        client,
        proxier,
        metrics,
        announced,
        shutdown.clone(),
    ));
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = sync_loop.await;
    Ok(())
}
