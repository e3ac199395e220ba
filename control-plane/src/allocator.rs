//! Service address allocation: ClusterIPs from the service CIDR and
//! NodePorts from 30000-32767, unique cluster-wide.
//!
//! Each allocated address is a marker key in the store
//! (`/registry/serviceips/<ip>`, `/registry/servicenodeports/<port>`),
//! written in the same transaction as the Service with an "absent" compare,
//! so two concurrent creates can never get the same address; a collision
//! simply retries with another candidate.

use rkube_api::proto::internal::{compare::Target, op::Op as OpKind, Compare, Op};
use rkube_api::proto::Service;
use rkube_api::Object;
use std::net::Ipv4Addr;

pub const SERVICE_CIDR: &str = "10.96.0.0/12";
/// Reserved for the cluster DNS service; handed out only when asked for.
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const NODE_PORT_MIN: u16 = 30000;
pub const NODE_PORT_MAX: u16 = 32767;

const BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const SIZE: u32 = 1 << 20; // /12

pub fn ip_key(ip: &str) -> String {
    format!("/registry/serviceips/{ip}")
}

pub fn port_key(port: i32) -> String {
    format!("/registry/servicenodeports/{port}")
}

pub fn in_service_cidr(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    n > BASE && n < BASE + SIZE - 1
}

/// Addresses never handed out automatically: the network and broadcast
/// addresses, the API's conventional 10.96.0.1, and the DNS address.
fn reserved(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    n <= BASE + 1 || n >= BASE + SIZE - 1 || ip == DNS_SERVICE_IP
}

/// A free ClusterIP, probing from a random start.
pub fn pick_ip(is_used: impl Fn(&str) -> bool, seed: u32) -> Option<Ipv4Addr> {
    for i in 0..SIZE {
        let ip = Ipv4Addr::from(BASE + (seed.wrapping_add(i) % SIZE));
        if !reserved(ip) && !is_used(&ip.to_string()) {
            return Some(ip);
        }
    }
    None
}

/// A free NodePort, probing from a random start.
pub fn pick_port(is_used: impl Fn(i32) -> bool, seed: u32) -> Option<i32> {
    let span = (NODE_PORT_MAX - NODE_PORT_MIN) as u32 + 1;
    (0..span)
        .map(|i| NODE_PORT_MIN as i32 + (seed.wrapping_add(i) % span) as i32)
        .find(|p| !is_used(*p))
}

fn uses_node_ports(svc: &Service) -> bool {
    matches!(
        svc.spec.as_ref().map(|s| s.r#type.as_str()),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Every marker key a stored Service holds.
pub fn held_keys(obj: &Object) -> Vec<String> {
    let Some(rkube_api::proto::object::Kind::Service(svc)) = &obj.kind else {
        return vec![];
    };
    let Some(spec) = &svc.spec else { return vec![] };
    let mut keys = Vec::new();
    if let Ok(ip) = spec.cluster_ip.parse::<Ipv4Addr>() {
        keys.push(ip_key(&ip.to_string()));
    }
    for p in &spec.ports {
        if p.node_port != 0 {
            keys.push(port_key(p.node_port));
        }
    }
    keys
}

/// What allocation adds to a Service's transaction.
#[derive(Default, Debug)]
pub struct Allocation {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
    /// For each compare: was the address asked for by the user (a collision
    /// is then an error) rather than picked (a collision is retried)?
    pub requested: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AllocError {
    Invalid(String),
    Exhausted(String),
}

/// Fills in `svc`'s ClusterIP and NodePorts, keeping those of `old` (an
/// update), and returns the compares and marker writes that make them
/// unique, plus deletes of markers `old` held that `svc` no longer uses.
pub fn allocate(
    svc: &mut Service,
    old: Option<&Service>,
    is_used_ip: impl Fn(&str) -> bool,
    is_used_port: impl Fn(i32) -> bool,
    seed: u32,
) -> Result<Allocation, AllocError> {
    let mut a = Allocation::default();
    let node_ports = uses_node_ports(svc);
    let old_spec = old.and_then(|o| o.spec.clone()).unwrap_or_default();
    let Some(spec) = svc.spec.as_mut() else {
        return Ok(a);
    };
    // ClusterIP.
    if spec.r#type != "ExternalName" {
        if spec.cluster_ip.is_empty() && !old_spec.cluster_ip.is_empty() {
            spec.cluster_ip = old_spec.cluster_ip.clone();
        }
        if spec.cluster_ip.is_empty() {
            let ip = pick_ip(&is_used_ip, seed).ok_or_else(|| {
                AllocError::Exhausted(format!(
                    "spec.clusterIP: no addresses left in the service range {SERVICE_CIDR}"
                ))
            })?;
            spec.cluster_ip = ip.to_string();
            a.claim(ip_key(&spec.cluster_ip), None);
        } else if spec.cluster_ip != "None" && spec.cluster_ip != old_spec.cluster_ip {
            let ip: Ipv4Addr = spec.cluster_ip.parse().map_err(|_| {
                AllocError::Invalid(format!(
                    "spec.clusterIP: Invalid value: {:?}: must be a valid IPv4 address or \"None\"",
                    spec.cluster_ip
                ))
            })?;
            if !in_service_cidr(ip) {
                return Err(AllocError::Invalid(format!(
                    "spec.clusterIP: Invalid value: {:?}: provided IP is not in the valid \
                     range. The range of valid IPs is {SERVICE_CIDR}",
                    spec.cluster_ip
                )));
            }
            a.claim(
                ip_key(&spec.cluster_ip),
                Some(format!(
                    "spec.clusterIP: Invalid value: {:?}: provided IP is already allocated",
                    spec.cluster_ip
                )),
            );
        }
        if spec.cluster_ip != "None" {
            spec.cluster_ips = vec![spec.cluster_ip.clone()];
        }
    }
    // NodePorts.
    let mut taken_here: Vec<i32> = Vec::new();
    for (i, p) in spec.ports.iter_mut().enumerate() {
        if !node_ports {
            p.node_port = 0;
            continue;
        }
        if p.node_port == 0 {
            if let Some(prev) = old_spec
                .ports
                .iter()
                .find(|o| o.port == p.port && o.protocol == p.protocol && o.node_port != 0)
            {
                p.node_port = prev.node_port;
            }
        }
        let held_before = old_spec.ports.iter().any(|o| o.node_port == p.node_port);
        if p.node_port == 0 {
            let port = pick_port(|x| is_used_port(x) || taken_here.contains(&x), seed)
                .ok_or_else(|| {
                    AllocError::Exhausted(format!(
                        "spec.ports[{i}].nodePort: no node ports left in {NODE_PORT_MIN}-{NODE_PORT_MAX}"
                    ))
                })?;
            p.node_port = port;
            a.claim(port_key(port), None);
        } else if !held_before {
            if !(NODE_PORT_MIN as i32..=NODE_PORT_MAX as i32).contains(&p.node_port) {
                return Err(AllocError::Invalid(format!(
                    "spec.ports[{i}].nodePort: Invalid value: {}: provided port is not in the \
                     valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}",
                    p.node_port
                )));
            }
            if taken_here.contains(&p.node_port) {
                return Err(AllocError::Invalid(format!(
                    "spec.ports[{i}].nodePort: Duplicate value: {}",
                    p.node_port
                )));
            }
            a.claim(
                port_key(p.node_port),
                Some(format!(
                    "spec.ports[{i}].nodePort: Invalid value: {}: provided port is already allocated",
                    p.node_port
                )),
            );
        }
        taken_here.push(p.node_port);
    }
    // Release what the old version held and this one does not.
    if let Some(old) = old {
        let now: Vec<String> = held_keys(&Object::from_body(
            rkube_api::proto::object::Kind::Service(svc.clone()),
        ));
        for k in held_keys(&Object::from_body(rkube_api::proto::object::Kind::Service(
            old.clone(),
        ))) {
            if !now.contains(&k) {
                a.ops.push(Op {
                    key: k,
                    op: Some(OpKind::Delete(true)),
                });
            }
        }
    }
    Ok(a)
}

impl Allocation {
    fn claim(&mut self, key: String, requested: Option<String>) {
        self.compares.push(Compare {
            key: key.clone(),
            target: Some(Target::Absent(true)),
        });
        self.ops.push(Op {
            key,
            op: Some(OpKind::Put(Object::default())),
        });
        self.requested.push(requested.unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rkube_api::proto::{ServicePort, ServiceSpec};

    fn svc(ty: &str, ip: &str, ports: &[(i32, i32)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                r#type: ty.into(),
                cluster_ip: ip.into(),
                ports: ports
                    .iter()
                    .map(|(p, n)| ServicePort {
                        port: *p,
                        node_port: *n,
                        protocol: "TCP".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn picks_free_addresses_skipping_reserved() {
        let ip = pick_ip(|_| false, 0).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 96, 0, 2));
        let ip = pick_ip(|s| s == "10.96.0.2", 0).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 96, 0, 3));
        assert_ne!(pick_ip(|_| false, 10).unwrap(), DNS_SERVICE_IP);
        assert!(in_service_cidr(pick_ip(|_| false, u32::MAX).unwrap()));
        assert_eq!(pick_port(|_| false, 0), Some(30000));
        assert_eq!(pick_port(|p| p < 32767, 0), Some(32767));
        assert_eq!(pick_port(|_| true, 0), None);
    }

    #[test]
    fn allocates_cluster_ip_and_node_ports() {
        let mut s = svc("NodePort", "", &[(80, 0), (443, 0)]);
        let a = allocate(&mut s, None, |_| false, |_| false, 7).unwrap();
        let spec = s.spec.unwrap();
        assert!(!spec.cluster_ip.is_empty());
        assert_eq!(spec.cluster_ips, vec![spec.cluster_ip.clone()]);
        assert_ne!(spec.ports[0].node_port, 0);
        assert_ne!(spec.ports[0].node_port, spec.ports[1].node_port);
        assert_eq!(a.compares.len(), 3);
        assert!(a.requested.iter().all(|r| r.is_empty()));
    }

    #[test]
    fn requested_addresses_are_checked() {
        let mut s = svc("ClusterIP", "10.97.1.1", &[(80, 0)]);
        let a = allocate(&mut s, None, |_| false, |_| false, 0).unwrap();
        assert_eq!(a.compares[0].key, "/registry/serviceips/10.97.1.1");
        assert!(a.requested[0].contains("already allocated"));
        let mut bad = svc("ClusterIP", "192.168.1.1", &[(80, 0)]);
        assert!(matches!(
            allocate(&mut bad, None, |_| false, |_| false, 0),
            Err(AllocError::Invalid(m)) if m.contains("not in the valid range")
        ));
        let mut bad = svc("NodePort", "", &[(80, 80)]);
        assert!(allocate(&mut bad, None, |_| false, |_| false, 0).is_err());
        let mut headless = svc("ClusterIP", "None", &[(80, 0)]);
        let a = allocate(&mut headless, None, |_| false, |_| false, 0).unwrap();
        assert!(a.compares.is_empty());
    }

    #[test]
    fn updates_keep_and_release() {
        let mut old = svc("NodePort", "", &[(80, 0)]);
        allocate(&mut old, None, |_| false, |_| false, 3).unwrap();
        let mut new = svc("NodePort", "", &[(80, 0)]);
        let a = allocate(&mut new, Some(&old), |_| true, |_| true, 3).unwrap();
        assert_eq!(
            new.spec.as_ref().unwrap().cluster_ip,
            old.spec.as_ref().unwrap().cluster_ip
        );
        assert_eq!(
            new.spec.as_ref().unwrap().ports[0].node_port,
            old.spec.as_ref().unwrap().ports[0].node_port
        );
        assert!(a.compares.is_empty(), "nothing new to claim");
        let mut to_cluster_ip = svc("ClusterIP", "", &[(80, 0)]);
        let a = allocate(&mut to_cluster_ip, Some(&old), |_| true, |_| true, 3).unwrap();
        assert_eq!(a.ops.len(), 1, "the node port is released: {a:?}");
    }
}
