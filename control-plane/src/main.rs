//! control-plane: one replica of rkube's control plane.

use clap::Parser;
use rkube_control_plane::controllers::ControllerConfig;
use rkube_control_plane::node_ipam::{self, CidrConfig};
use rkube_control_plane::server::{parse_peers, run, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "control-plane",
    about = "One replica of rkube's Raft-replicated control plane"
)]
struct Args {
    /// This replica's id (one of the ids in --peers).
    #[arg(long, env = "RKUBE_ID")]
    id: u64,
    /// Every replica as ID=HOST:PORT, comma separated (the same on all).
    #[arg(long, env = "RKUBE_PEERS")]
    peers: String,
    /// Address to serve the API and peer traffic on (default: this
    /// replica's address in --peers, on all interfaces).
    #[arg(long, env = "RKUBE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where the Raft log and snapshots live.
    #[arg(long, env = "RKUBE_DATA_DIR")]
    data_dir: PathBuf,
    /// Raft tick in milliseconds.
    #[arg(long, default_value_t = 50)]
    tick_ms: u64,
    /// Election timeout in ticks (randomised between this and twice this).
    #[arg(long, default_value_t = 10)]
    election_ticks: usize,
    #[arg(long, default_value_t = 2)]
    heartbeat_ticks: usize,
    /// Snapshot and compact the log every this many applied entries.
    #[arg(long, default_value_t = 20_000)]
    snapshot_interval: u64,
    /// Entries kept behind a snapshot for followers that lag a little.
    #[arg(long, default_value_t = 5_000)]
    snapshot_keep: u64,
    /// Changes kept for watches to resume from.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Seconds a node's lease may lapse before it is NotReady and tainted
    /// unreachable.
    #[arg(long, default_value_t = 40.0)]
    node_monitor_grace_period: f64,
    /// Seconds pods stay on an unreachable/not-ready node before eviction
    /// (their default tolerationSeconds).
    #[arg(long, default_value_t = 300.0)]
    pod_eviction_timeout: f64,
    /// Seconds between full resyncs of every controller.
    #[arg(long, default_value_t = 30.0)]
    controller_resync: f64,
    /// The pods' address range: each Node created without spec.podCIDR
    /// gets the lowest free block of it (the same on every replica).
    #[arg(long, default_value = node_ipam::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// The prefix length of each node's podCIDR block.
    #[arg(long, default_value_t = node_ipam::DEFAULT_NODE_CIDR_MASK_SIZE)]
    node_cidr_mask_size: u8,
    /// Seconds a pod bound to a node that does not exist is left alone
    /// before the pod garbage collector deletes it (the node may register
    /// late).
    #[arg(long, default_value_t = 40.0)]
    pod_gc_orphan_quarantine: f64,
    /// Addresses for LoadBalancer Services: a range (172.28.5.200-172.28.5.250),
    /// a CIDR or one address, on the nodes' network. Empty: LoadBalancer
    /// Services stay pending (no external IP), as in Kubernetes without a
    /// cloud provider.
    #[arg(long, default_value = "")]
    lb_pool: String,
    /// Which leader-only loops run, as kube-controller-manager's flag: `*`
    /// for all, `NAME` to enable, `-NAME` to disable (`*,-scheduler`).
    /// Names: scheduler, replication, daemonset, nodelifecycle, endpoint,
    /// garbagecollector, podgc, loadbalancer.
    #[arg(long, default_value = "*")]
    controllers: String,
    /// This replica's certificate (PEM), served to clients and presented
    /// to peers; issued by `rkube-pki init`.
    #[arg(long, env = "RKUBE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "RKUBE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM): client and peer certificates must chain to it.
    #[arg(long, env = "RKUBE_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// Static bearer tokens, one `token,user,uid[,"group,..."]` per line.
    #[arg(long, env = "RKUBE_TOKEN_AUTH_FILE")]
    token_auth_file: Option<PathBuf>,
    /// Serve plaintext and let anyone do anything. For tests and benchmarks
    /// only; without it the TLS flags are required.
    #[arg(long, env = "RKUBE_INSECURE")]
    insecure: bool,
    /// Join a running cluster: with a new (empty) data directory, start with
    /// no configuration and wait for the leader, after `rkubectl member add
    /// ID ADDRESS` elsewhere. --peers then names the current members (and
    /// this replica). Ignored once the directory holds state.
    #[arg(long, env = "RKUBE_JOIN")]
    join: bool,
}

fn main() -> anyhow::Result<()> {
    rkube_control_plane::logging::init();
    let args = Args::parse();
    let peers = parse_peers(&args.peers)?;
    let pod_cidrs = CidrConfig::new(&args.cluster_cidr, args.node_cidr_mask_size)
        .map_err(anyhow::Error::msg)?;
    let lb_pool = match args.lb_pool.trim() {
        "" => None,
        p => Some(
            p.parse::<rkube_control_plane::controllers::loadbalancer::LbPool>()
                .map_err(anyhow::Error::msg)?,
        ),
    };
    let listen = match args.listen {
        Some(l) => l,
        None => {
            let own = peers
                .iter()
                .find(|(id, _)| *id == args.id)
                .map(|(_, a)| a.clone())
                .ok_or_else(|| anyhow::anyhow!("--id {} is not among the peers", args.id))?;
            let port = own
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| anyhow::anyhow!("peer address {own:?} has no port"))?;
            SocketAddr::from(([0, 0, 0, 0], port))
        }
    };
    let security = match (&args.tls_cert, &args.tls_key, &args.client_ca, args.insecure) {
        (Some(c), Some(k), Some(ca), false) => Some(
            rkube_control_plane::server::Security::load(c, k, ca, args.token_auth_file.as_deref())?,
        ),
        (None, None, None, true) => {
            if args.token_auth_file.is_some() {
                anyhow::bail!("--token-auth-file needs TLS: it cannot be used with --insecure");
            }
            tracing::warn!("--insecure: plaintext, no authentication; anyone who reaches the port can do anything");
            None
        }
        (_, _, _, true) => anyhow::bail!("--insecure cannot be combined with --tls-cert/--tls-key/--client-ca"),
        (None, None, None, false) => anyhow::bail!(
            "no TLS settings: give --tls-cert, --tls-key and --client-ca (made by `rkube-pki init`), \
             or --insecure for a plaintext test cluster"
        ),
        _ => anyhow::bail!("--tls-cert, --tls-key and --client-ca go together"),
    };
    let cfg = ServerConfig {
        id: args.id,
        peers,
        join: args.join,
        listen,
        data_dir: args.data_dir,
        tick: Duration::from_millis(args.tick_ms.max(1)),
        election_ticks: args.election_ticks,
        heartbeat_ticks: args.heartbeat_ticks,
        snapshot_interval: args.snapshot_interval.max(1),
        snapshot_keep: args.snapshot_keep,
        history_limit: args.history,
        pod_cidrs,
        controllers: ControllerConfig {
            node_monitor_grace: secs(args.node_monitor_grace_period),
            pod_eviction_timeout: secs(args.pod_eviction_timeout),
            resync: secs(args.controller_resync.max(0.1)),
            orphan_quarantine: secs(args.pod_gc_orphan_quarantine),
            lb_pool,
            enabled: args.controllers.parse().map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
        security,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutting down");
        };
        run(cfg, shutdown).await
    })
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}
