//! Command-line flags of the `dns` server and what they resolve to.

use crate::resolv_conf;
use crate::server::UdpPath;
use clap::Parser;
use ipnet::IpNet;
use rkube_api::client::DEFAULT_SERVERS;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "dns",
    about = "rkube cluster DNS: authoritative for the cluster domain, fed by watches of \
             Services, Endpoints and Pods; other names are forwarded upstream"
)]
pub struct Config {
    /// Control-plane replicas, comma-separated host:port.
    #[arg(short = 's', long = "server", env = "RKUBE_SERVER", default_value = DEFAULT_SERVERS)]
    pub server: String,
    /// A kubeconfig (made by `rkube-pki init`): TLS, credentials and the
    /// replicas; without it --server is dialled in plaintext.
    #[arg(long, env = "RKUBE_KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Where to answer DNS, over UDP and TCP.
    #[arg(long, default_value = "0.0.0.0:53")]
    pub listen: SocketAddr,
    /// Where to serve GET /metrics (Prometheus text) and /readyz.
    #[arg(long, default_value = "0.0.0.0:9153")]
    pub metrics_listen: SocketAddr,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub domain: String,
    /// TTL of every answer, and of negative answers (the SOA minimum), seconds.
    #[arg(long, default_value_t = 5)]
    pub ttl: u32,
    /// Upstream resolvers for other names, IP[:PORT],... (default: the
    /// nameservers in --resolv-conf).
    #[arg(long, value_delimiter = ',', value_parser = resolv_conf::parse_upstream)]
    pub upstream: Vec<SocketAddr>,
    /// Where the default upstreams come from.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// How long each upstream has to answer, milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub upstream_timeout_ms: u64,
    /// Forwarded queries in flight at most; beyond it they fail with SERVFAIL.
    #[arg(long, default_value_t = 1024)]
    pub max_forwards: usize,
    /// Address ranges whose reverse names this server owns (unknown
    /// addresses in them are NXDOMAIN; other reverse names are forwarded).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10.96.0.0/12,10.244.0.0/16"
    )]
    pub reverse_cidrs: Vec<IpNet>,
    /// The DNS service's address, published as ns.dns.<domain>.
    #[arg(long, default_value = "10.96.0.10")]
    pub nameserver_ip: IpAddr,
    /// UDP sockets sharing --listen (SO_REUSEPORT); default: one per CPU.
    #[arg(long)]
    pub udp_sockets: Option<usize>,
    /// Which code reads UDP: `direct` (inline answers) or `hickory`
    /// (hickory-server's task-per-datagram server, for comparison).
    #[arg(long, value_enum, default_value = "direct")]
    pub udp_path: UdpPath,
    /// Idle TCP connections are closed after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub tcp_idle_timeout_secs: u64,
}

impl Config {
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms.max(1))
    }

    /// `--upstream`, or the resolv.conf nameservers, minus this server
    /// itself (forwarding to ourselves would loop).
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        let candidates = if self.upstream.is_empty() {
            match std::fs::read_to_string(&self.resolv_conf) {
                Ok(text) => resolv_conf::nameservers(&text),
                Err(e) => {
                    tracing::warn!(path = %self.resolv_conf.display(), error = %e,
                        "cannot read resolv.conf: no upstreams, outside names will SERVFAIL");
                    Vec::new()
                }
            }
        } else {
            self.upstream.clone()
        };
        candidates
            .into_iter()
            .filter(|u| {
                let own = u.port() == self.listen.port()
                    && (u.ip() == self.listen.ip()
                        || (self.listen.ip().is_unspecified() && u.ip().is_loopback()));
                if own {
                    tracing::warn!(upstream = %u, "skipping an upstream that is this server");
                }
                !own
            })
            .collect()
    }

    pub fn udp_sockets(&self) -> usize {
        self.udp_sockets
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_skip_this_server() {
        let c = Config::parse_from([
            "dns",
            "--listen",
            "0.0.0.0:53",
            "--upstream",
            "127.0.0.1:53,127.0.0.1:5300,10.0.0.2",
        ]);
        let got: Vec<String> = c.upstreams().iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["127.0.0.1:5300", "10.0.0.2:53"]);
    }
}
