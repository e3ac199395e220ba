//! The shim's settings, from its command line.

use std::path::PathBuf;

#[derive(Clone, Debug, clap::Args)]
pub struct ShimOptions {
    /// The unix socket the gRPC API listens on.
    #[arg(long, default_value = "/run/rkube/runtime.sock")]
    pub socket: PathBuf,
    /// State: sandboxes, containers, images. Must allow overlayfs upper
    /// directories (not fuse-overlayfs: inside a Docker node, a volume).
    #[arg(long, default_value = "/var/lib/rkube/runtime")]
    pub root: PathBuf,
    /// runc's state directory (a tmpfs, so a reboot clears it).
    #[arg(long, default_value = "/run/rkube/runc")]
    pub runc_root: PathBuf,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    pub runc: PathBuf,
    /// Where CNI plugins are looked up (comma-separated).
    #[arg(
        long = "cni-bin-dir",
        default_value = "/usr/lib/cni,/opt/cni/bin",
        value_delimiter = ','
    )]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The node's pod CIDR (else from UpdateRuntimeConfig; kept on disk).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The pods' bridge.
    #[arg(long, default_value = "cbr0")]
    pub bridge: String,
    /// The CNI network's name (host-local keeps its allocations under it).
    #[arg(long, default_value = "rkube")]
    pub network_name: String,
    /// host-local's data directory.
    #[arg(long, default_value = "/var/lib/cni/networks")]
    pub cni_data_dir: PathBuf,
    /// Prefix of the pods' network namespace names under /run/netns.
    #[arg(long, default_value = "rkube-")]
    pub netns_prefix: String,
    /// The cgroup under which every pod gets one (`<parent>/<sandbox id>`).
    #[arg(long, default_value = "/rkube")]
    pub cgroup_parent: String,
    /// Load every OCI archive (*.tar) in this directory at start.
    #[arg(long)]
    pub preload: Option<PathBuf>,
}
