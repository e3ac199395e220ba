//! Host ports: a container port with `hostPort` set occupies that port (and
//! protocol, and host IP) on the node, so two pods that want the same one
//! cannot share a node.
//!
//! As in Kubernetes, two host ports conflict when their protocol and port
//! are equal and their IPs are equal or either is the wildcard `0.0.0.0`
//! (an empty `hostIP` is the wildcard; an empty protocol is TCP).

use rkube_api::proto::PodSpec;

const WILDCARD_IP: &str = "0.0.0.0";

/// One host port a pod occupies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// A normalised host port (defaults filled in).
    pub fn new(protocol: &str, ip: &str, port: i32) -> HostPort {
        HostPort {
            protocol: if protocol.is_empty() { "TCP" } else { protocol }.to_string(),
            ip: if ip.is_empty() { WILDCARD_IP } else { ip }.to_string(),
            port,
        }
    }

    /// Whether this and `other` cannot both be bound on one node.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == WILDCARD_IP || other.ip == WILDCARD_IP)
    }
}

/// The host ports a pod spec's containers occupy.
pub fn pod_host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let mut out: Vec<HostPort> = spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter(|p| p.host_port > 0)
        .map(|p| HostPort::new(&p.protocol, &p.host_ip, p.host_port))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{Container, ContainerPort};

    fn port(host_port: i32, protocol: &str, ip: &str) -> ContainerPort {
        ContainerPort {
            host_port,
            container_port: 80,
            protocol: protocol.into(),
            host_ip: ip.into(),
            ..Default::default()
        }
    }

    #[test]
    fn collects_only_host_ports_normalised() {
        let spec = PodSpec {
            containers: vec![
                Container {
                    ports: vec![port(0, "TCP", ""), port(8080, "", "")],
                    ..Default::default()
                },
                Container {
                    ports: vec![port(53, "UDP", "10.0.0.1"), port(8080, "TCP", "")],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            pod_host_ports(&spec),
            vec![
                HostPort::new("TCP", "0.0.0.0", 8080),
                HostPort::new("UDP", "10.0.0.1", 53),
            ]
        );
    }

    #[test]
    fn conflict_rules() {
        let any = HostPort::new("TCP", "", 80);
        let ip1 = HostPort::new("TCP", "10.0.0.1", 80);
        let ip2 = HostPort::new("TCP", "10.0.0.2", 80);
        assert!(any.conflicts_with(&any));
        assert!(any.conflicts_with(&ip1) && ip1.conflicts_with(&any));
        assert!(ip1.conflicts_with(&ip1));
        assert!(!ip1.conflicts_with(&ip2));
        assert!(!any.conflicts_with(&HostPort::new("UDP", "", 80)));
        assert!(!any.conflicts_with(&HostPort::new("TCP", "", 81)));
    }
}
