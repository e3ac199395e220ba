//! The kubelet's flags.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "kubelet",
    about = "rkube's node agent: runs the pods bound to this node"
)]
pub struct Config {
    /// Control-plane addresses, comma separated.
    #[arg(short = 's', long, env = "RKUBE_SERVER", default_value = rkube_api::client::DEFAULT_SERVERS)]
    pub server: String,
    /// A kubeconfig (made by `rkube-pki init`): TLS, credentials and the
    /// replicas; without it --server is dialled in plaintext.
    #[arg(long, env = "RKUBE_KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address (InternalIP): what other nodes route pod traffic
    /// to and where rkubectl reaches the kubelet. Default: the address of
    /// the interface holding the default route.
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Extra node labels, k=v comma separated.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints to register with, key[=value]:Effect comma separated.
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// The runtime shim's socket.
    #[arg(long, default_value = "/run/rkube/runtime.sock")]
    pub runtime_socket: PathBuf,
    /// The kubelet's state: pod volumes.
    #[arg(long, default_value = "/var/lib/rkube/kubelet")]
    pub root_dir: PathBuf,
    /// Container logs, as /var/log/pods/<ns>_<pod>_<uid>/<container>/<attempt>.log.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// The kubelet endpoint (logs, exec) listens here; its port is published
    /// in the Node's status.daemonEndpoints.
    #[arg(long, default_value = "0.0.0.0:10250")]
    pub listen: String,
    /// The cluster DNS service's address(es) for pods' resolv.conf.
    #[arg(long, value_delimiter = ',', default_value = "10.96.0.10")]
    pub cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The node's resolver configuration, for dnsPolicy Default.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Guard routes: traffic to these ranges never leaves the node unless a
    /// more specific route (a pod CIDR, a service address) takes it. Empty
    /// to install none.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10.244.0.0/16,10.96.0.0/12"
    )]
    pub unreachable_routes: Vec<String>,
    /// Do not manage routes to other nodes' pod CIDRs.
    #[arg(long)]
    pub no_routes: bool,
    /// Capacity overrides (default: what the machine has).
    #[arg(long)]
    pub cpu: Option<String>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long, default_value = "110")]
    pub max_pods: u32,
    /// Lease duration, seconds; renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: i32,
    /// How often the node's status (conditions) is posted, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub node_status_update_frequency: f64,
    /// Each pod is resynced at least this often, seconds (changes in the
    /// runtime and the API wake its worker at once).
    #[arg(long, default_value_t = 10.0)]
    pub sync_frequency: f64,
    /// Crash-loop back-off: first delay and cap, seconds (Kubernetes: 10, 300).
    #[arg(long, default_value_t = 10.0)]
    pub backoff_base: f64,
    #[arg(long, default_value_t = 300.0)]
    pub backoff_max: f64,
}

impl Config {
    pub fn node_status_period(&self) -> Duration {
        Duration::from_secs_f64(self.node_status_update_frequency.max(0.1))
    }
    pub fn lease_renew_period(&self) -> Duration {
        Duration::from_secs_f64((self.node_lease_duration_seconds.max(1) as f64 / 4.0).max(0.25))
    }
    pub fn sync_period(&self) -> Duration {
        Duration::from_secs_f64(self.sync_frequency.max(0.2))
    }
    pub fn backoff_base(&self) -> Duration {
        Duration::from_secs_f64(self.backoff_base.max(0.0))
    }
    pub fn backoff_max(&self) -> Duration {
        Duration::from_secs_f64(self.backoff_max.max(self.backoff_base))
    }
}
